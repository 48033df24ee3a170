"""What the manager needs from a broker, and nothing of its wire format.

A broker configuration (`KiteBroker`, `XtsBroker`) is a value that knows the broker's limits, can load
its instrument master, and can open one feed connection. A feed connection accepts subscribe and
unsubscribe requests by instrument key and hands batches of model events (one frame each) to the
manager's sink, synchronously, in the feed's reader task (or in the task whose request produced them).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

import attrs

from .._model import Broker, Event, Mode
from .._ratelimit import RateLimit, TokenBucket
from ._queue import Sink

__all__ = ["BrokerConfig", "BrokerFeed", "InstrumentInfo"]


@attrs.frozen
class InstrumentInfo:
    """One instrument of a broker's master, as the manager needs it."""

    symbol: str
    """Exchange-qualified name, e.g. ``"NSE:INFY"``, ``"NFO:NIFTY26DECFUT"``, ``"NSE:NIFTY 50"``."""
    key: Hashable
    """What the feed subscribes with and routes by (Kite: the instrument token; XTS: (segment, id))."""
    token: int
    """The value ticks carry in `Tick.instrument_token`."""
    segment: int | None
    """The value ticks carry in `Tick.segment`."""
    tradable: bool = True


@runtime_checkable
class BrokerFeed(Protocol):
    """One live connection to a broker, as the manager drives it."""

    @property
    def connected(self) -> bool:
        """Whether the connection is up right now."""
        ...

    async def subscribe(self, keys: Iterable[Hashable], mode: Mode) -> None:
        """Subscribe instrument keys in `mode` (or change their mode)."""
        ...

    async def unsubscribe(self, keys: Iterable[Hashable]) -> None:
        """Unsubscribe instrument keys."""
        ...

    async def receive_batch(self) -> list[Event]:
        """The next batch of events that did not go to the sink (a feed opened with a sink hands it
        every batch, and this call only waits for the end); raises the feed's terminal error when it
        fails for good, `FeedClosedError` once closed."""
        ...


@runtime_checkable
class BrokerConfig(Protocol):
    """A broker the manager can use (see `KiteBroker`)."""

    @property
    def broker(self) -> Broker:
        """Which protocol."""
        ...

    @property
    def name(self) -> str:
        """The label used in ``subscribe(..., broker=name)`` (unique within one manager)."""
        ...

    @property
    def max_instruments_per_connection(self) -> int: ...

    @property
    def max_connections(self) -> int: ...

    @property
    def rate_limit(self) -> RateLimit:
        """How fast subscribe/unsubscribe requests and connection attempts may go to this broker."""
        ...

    @property
    def keyed_by_segment(self) -> bool:
        """True if ticks route by ``(tick.segment, tick.instrument_token)``, False by the token alone."""
        ...

    async def load_instruments(self) -> Mapping[str, InstrumentInfo]:
        """The instrument master, by exchange-qualified symbol. Called once per manager."""
        ...

    def open_feed(
        self, connection_id: int, limiter: TokenBucket, sink: Sink | None = None
    ) -> AbstractAsyncContextManager[BrokerFeed]:
        """Open connection number `connection_id` (entering connects; raises if it cannot).

        With a `sink`, every batch of events (frames, status events, snapshots) is passed to it, in
        order, instead of being queued for `BrokerFeed.receive_batch`: from the feed's reader task, or
        from the task whose request produced the batch (the snapshots a subscribe answer carries). The
        sink is a plain function that never blocks and never calls back into the feed.
        """
        ...
