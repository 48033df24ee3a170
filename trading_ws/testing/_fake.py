"""`FakeBroker`: a `BrokerConfig` whose connections live in memory and are driven by the test."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Hashable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal

import attrs
import trio

from .._errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    FeedClosedError,
    SubscriptionError,
)
from .._model import (
    Broker,
    Connected,
    Disconnected,
    Event,
    Mode,
    Reconnecting,
    Resubscribed,
    Tick,
    coerce_mode,
)
from .._ratelimit import RateLimit, TokenBucket
from .._validate import check_flag, check_instance, check_int, check_label, check_seconds
from ..brokers._interface import InstrumentInfo
from ..brokers._queue import Sink
from ._checks import SEGMENT, check_events, coerce_broker, finite, instrument_tokens, tick_fields
from ._gates import Gates, Point

__all__ = ["FakeBroker", "FakeConnection", "Request"]


@attrs.frozen
class Request:
    """One subscribe or unsubscribe request a `FakeConnection` completed (see `FakeConnection.requests`)."""

    connection: int
    """The connection it was made on."""
    action: Literal["subscribe", "unsubscribe"]
    """``"subscribe"`` (which also changes the mode of instruments already subscribed) or
    ``"unsubscribe"``."""
    symbols: tuple[str, ...]
    """The instruments, in the order the manager listed them."""
    mode: Mode | None
    """The mode subscribed in; None for an unsubscribe."""


class FakeConnection:
    """One in-memory connection of a `FakeBroker` (a `BrokerFeed`), opened by the manager.

    The test drives it: `push` hands the manager a frame of events, `drop` and `reconnect` make it go down
    and come back with the status events a real feed emits, `fail` ends it for good. `subscriptions` and
    `requests` show what the manager asked of it. Instances are made by `FakeBroker.open_feed`; reach them
    through `FakeBroker.connections`.

    None of the methods for the test blocks: each hands its events to the manager at once, in the calling
    task, as a feed's reader task would (the manager routes them synchronously, so after the call every
    subscriber concerned has them queued).
    """

    def __init__(self, broker: FakeBroker, index: int, limiter: TokenBucket, sink: Sink | None) -> None:
        self._broker = broker
        self._index = index
        self._limiter = limiter
        self._sink = sink
        self._modes: dict[Hashable, Mode] = {}
        self._requests: list[Request] = []
        self._up = True
        self._attempt = 0
        self._failure: Exception | None = None
        self._closed = False
        self._pending: deque[list[Event]] = deque()  # batches for `receive_batch` when there is no sink
        self._lot = trio.lowlevel.ParkingLot()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "failed" if self._failure else "up" if self._up else "down"
        return f"<FakeConnection {self._broker.name}#{self._index} {state}, {len(self._modes)} instruments>"

    # ------------------------------------------------------------------------------------- observing

    @property
    def index(self) -> int:
        """The connection's number, as the manager counts them (0 for the first one it opened)."""
        return self._index

    @property
    def connected(self) -> bool:
        """Whether the connection is up: opened, not dropped (or reconnected since), not failed or closed."""
        return self._up and self._failure is None and not self._closed

    @property
    def closed(self) -> bool:
        """Whether the manager has closed the connection (its block ended)."""
        return self._closed

    @property
    def failed(self) -> Exception | None:
        """The error the connection failed with for good (`fail`, refused credentials on `reconnect`, or an
        exception raised while the manager routed a pushed frame); None while it has not."""
        return self._failure

    @property
    def subscriptions(self) -> dict[str, Mode]:
        """What the manager has subscribed on this connection, by symbol, in its mode (a copy).

        Changed only by completed requests: a request cancelled or failed at its await point changes
        nothing. Kept while the connection is down: a real feed subscribes the same again when it is back.
        """
        symbol = self._broker._symbol_of
        return {symbol(key): mode for key, mode in self._modes.items()}

    @property
    def requests(self) -> list[Request]:
        """The requests the manager completed on this connection, oldest first (a copy)."""
        return list(self._requests)

    # ------------------------------------------------------------------------------------- driving

    def push(self, *events: Event) -> None:
        """Hand the manager one frame of `events` on this connection, as the feed's reader task would.

        Any event a feed yields goes (`Tick`, `OrderUpdate`, `BrokerMessage`, `BrokerError`, `Candle`,
        `OpenInterest`, `MarketStatus`, `InstrumentPropertyChange`), whether or not its instrument is
        subscribed here (a tick of an instrument the manager no longer holds is dropped by the manager, as
        one in flight would be). Does not block. If routing the frame raises (a bug, in the manager or an
        event's own code), the connection fails for good with that error, as a real feed's does: its
        subscriptions end with it.

        Raises:
            ConfigurationError: an event is not one of those: not a trading_ws event at all, a connection
                status event (`Connected`, `Disconnected`, `Reconnecting`, `Resubscribed`: use `drop`,
                `reconnect` or `fail`, which keep `connected` in step with what the manager is told), or a
                `Gap` or `Stale` (the manager makes those). Checked before anything is delivered.
            RuntimeError: the connection is down, failed or closed (a real one delivers nothing then).
        """
        check_events(events)
        self._check_usable("push to")
        if not self._up:
            raise RuntimeError(f"{self!r} is down: reconnect() it before pushing")
        self._deliver(list(events))

    def drop(self, reason: str = "connection lost (dropped by the test)", *, delay: float = 1.0) -> None:
        """The connection is lost, or (when already down) a reconnect attempt failed.

        The manager is told as by a real feed's reconnect loop: `Disconnected` with `reason`, then
        `Reconnecting` with the attempt number (1 after a loss, one more for each further failed attempt)
        and `delay`. The subscriptions are kept; `reconnect` brings the connection back. While it is down,
        `connected` is False and requests are still recorded (a real feed makes them on reconnecting).
        Does not block.

        Raises:
            ConfigurationError: `reason` is not a string, or `delay` not a finite number of seconds >= 0.
            RuntimeError: the connection has failed or is closed.
        """
        if not isinstance(reason, str):
            raise ConfigurationError(f"reason must be a string, got {type(reason).__name__}")
        delay = check_seconds("delay", delay, allow_zero=True)
        self._check_usable("drop")
        self._attempt = 1 if self._up else self._attempt + 1
        self._up = False
        broker, now = self._broker.broker, self._broker._now()
        self._deliver([Disconnected(broker, self._index, reason, now)])
        self._deliver([Reconnecting(broker, self._index, self._attempt, delay, now)])

    def reconnect(self) -> None:
        """The connection is back after `drop`: the manager gets `Connected`, then (if the connection holds
        instruments) `Resubscribed` with their number, as from a real feed that subscribed them again; the
        manager then sends each subscription holding them a `Gap`.

        If the broker refuses credentials (`FakeBroker.refuse_credentials`), the attempt fails instead and
        the connection fails for good with `AuthenticationError` (after a `Disconnected`), as a real feed
        whose credentials cannot be renewed. Does not block.

        Raises:
            RuntimeError: the connection is up, has failed or is closed.
        """
        self._check_usable("reconnect")
        if self._up:
            raise RuntimeError(f"{self!r} is up: drop() it first")
        if self._broker._refused:
            self._end(AuthenticationError("the broker refused the credentials"), announce=True)
            return
        self._up = True
        self._attempt = 0
        broker, now = self._broker.broker, self._broker._now()
        self._deliver([Connected(broker, self._index, now)])
        if self._modes:
            self._deliver([Resubscribed(broker, self._index, len(self._modes), now)])

    def fail(self, error: Exception | None = None) -> None:
        """The connection fails for good with `error` (default: a `ConnectError`), as a real feed does when
        its reconnect attempts run out: the manager gets `Disconnected`, then the connection ends, and the
        manager ends every subscription holding one of its instruments with `error`. A later subscriber
        of those instruments gets a fresh connection. Does not block.

        Raises:
            ConfigurationError: `error` is not None or an exception instance.
            RuntimeError: the connection has failed already or is closed.
        """
        if error is None:
            error = ConnectError("the connection failed for good (by the test)")
        if not isinstance(error, Exception):
            raise ConfigurationError(f"fail takes an exception instance, not {error!r:.60}")
        self._check_usable("fail")
        self._end(error, announce=True)

    # ------------------------------------------------------------------------------------- BrokerFeed

    async def subscribe(self, keys: Iterable[Hashable], mode: Mode) -> None:
        """Subscribe instrument keys in `mode` (the manager calls this; a test reads `subscriptions`).

        Waits for the broker's rate limiter, then passes the ``"subscribe"`` await point (see
        `FakeBroker.hold`, `FakeBroker.fail_next`), then records the request.

        Cancellation: all or nothing; a request cancelled before it completes records nothing.

        Raises:
            FeedClosedError: the connection has failed or is closed (from the failure, if any).
            SubscriptionError: a key is not one of the broker's instruments.
            Exception: what `FakeBroker.fail_next` queued for ``"subscribe"``.
        """
        wanted = list(keys)
        mode = Mode(mode)
        symbols = tuple(self._broker._symbol_of(key) for key in wanted)
        await self._request("subscribe")
        for key in wanted:
            self._modes[key] = mode
        self._requests.append(Request(self._index, "subscribe", symbols, mode))
        self._broker._requests.append(self._requests[-1])

    async def unsubscribe(self, keys: Iterable[Hashable]) -> None:
        """Unsubscribe instrument keys (the manager calls this; a test reads `subscriptions`).

        Waits for the broker's rate limiter, then passes the ``"unsubscribe"`` await point, then records
        the request.

        Cancellation: all or nothing; a request cancelled before it completes records nothing.

        Raises:
            FeedClosedError: the connection has failed or is closed (from the failure, if any).
            SubscriptionError: a key is not one of the broker's instruments.
            Exception: what `FakeBroker.fail_next` queued for ``"unsubscribe"``.
        """
        gone = list(keys)
        symbols = tuple(self._broker._symbol_of(key) for key in gone)
        await self._request("unsubscribe")
        for key in gone:
            self._modes.pop(key, None)
        self._requests.append(Request(self._index, "unsubscribe", symbols, None))
        self._broker._requests.append(self._requests[-1])

    async def receive_batch(self) -> list[Event]:
        """The next batch not handed to a sink (opened without one); with a sink (as the manager opens
        it), waits until the connection ends.

        Cancellation: takes nothing.

        Raises:
            Exception: the error the connection failed with.
            FeedClosedError: the connection is closed.
        """
        await trio.lowlevel.checkpoint()
        while not self._pending and self._failure is None and not self._closed:
            await self._lot.park()
        if self._pending:
            return self._pending.popleft()
        if self._failure is not None:
            raise self._failure
        raise FeedClosedError(f"{self!r} is closed")

    # ------------------------------------------------------------------------------------- internals

    async def _request(self, point: Point) -> None:
        self._check_open()
        await self._limiter.acquire()
        await self._broker._gates.pass_through(point)
        self._check_open()

    def _check_open(self) -> None:
        if self._failure is not None:
            raise FeedClosedError(f"{self!r}: {self._failure}") from self._failure
        if self._closed:
            raise FeedClosedError(f"{self!r} is closed")

    def _check_usable(self, what: str) -> None:
        if self._failure is not None or self._closed:
            raise RuntimeError(f"cannot {what} {self!r}")

    def _deliver(self, batch: list[Event]) -> None:
        if self._sink is None:
            self._pending.append(batch)
            self._lot.unpark_all()
            return
        try:
            self._sink(batch)
        except Exception as exc:  # the reader task would end with it
            self._end(exc, announce=False)

    def _end(self, error: Exception, *, announce: bool) -> None:
        if announce:
            self._deliver([Disconnected(self._broker.broker, self._index, str(error), self._broker._now())])
        if self._failure is None:
            self._failure = error
            self._up = False
            self._lot.unpark_all()

    def _close(self) -> None:
        self._closed = True
        self._lot.unpark_all()


class FakeBroker:
    """A broker for `trading_ws.open_market_data` that lives in memory and is driven by the test.

    It implements the manager's `BrokerConfig`: the manager loads its instrument master and opens
    `FakeConnection` objects on it, with no socket and no clock of its own, so a test runs it under
    trio's ``autojump_clock`` (or any clock) and checks exact outcomes. The test

    - sends market data: `tick` builds a tick of one of its instruments, `push` hands events to the
      connections subscribed to them (`FakeConnection.push` to one connection);
    - breaks connections: `FakeConnection.drop`, `FakeConnection.reconnect`, `FakeConnection.fail`,
      `refuse_credentials`;
    - parks any await of the manager and cancels it there, or makes it fail: `hold`, `wait_parked`,
      `release`, `fail_next` at the points ``"master"``, ``"connect"``, ``"subscribe"`` and
      ``"unsubscribe"``;
    - checks what the manager asked for: `subscriptions`, `requests`, `connections`, `master_loads`.

    Time follows trio's clock: the timestamps of the events it makes (`Connected.at`,
    `Disconnected.at`..., `Tick.received_at`) are wall-clock seconds that advance with
    ``trio.current_time()`` from the broker's first use, so under ``autojump_clock`` a connection dropped
    for 30 virtual seconds makes a `Gap` of exactly 30 seconds.

    `instruments` is the master: symbols (``"NSE:INFY"``), given tokens 1, 2, 3... in order, or a mapping
    of symbol to token. Every instrument is tradable, in segment 1. `broker` is `Broker.KITE` or
    `Broker.XTS`, or its value ``"kite"`` or ``"xts"`` (lower case, exactly); it does not set
    `keyed_by_segment`. A `FakeBroker` serves one manager. Does not block.

    Raises:
        ConfigurationError: any argument that is not as described, checked before anything is built:
            `instruments` not an iterable of symbols (a bare string or bytes included) or a mapping of
            symbol to token; an empty or repeated symbol; a token that is not a positive int or is
            repeated; `name` not a printable, non-blank string of at most 64 characters; `broker` not a
            `Broker` or one of its values; a limit that is not a positive int; `rate_limit` not a
            `RateLimit` or None; `keyed_by_segment` not a bool.
    """

    def __init__(
        self,
        instruments: Iterable[str] | Mapping[str, int],
        *,
        name: str = "fake",
        broker: Broker | Literal["kite", "xts"] = Broker.KITE,
        max_instruments_per_connection: int = 3000,
        max_connections: int = 3,
        rate_limit: RateLimit | None = None,
        keyed_by_segment: bool = False,
    ) -> None:
        tokens = instrument_tokens(instruments)
        self._name = check_label("name", name)
        self._broker = coerce_broker(broker)
        self._per_connection = check_int("max_instruments_per_connection", max_instruments_per_connection, 1)
        self._max_connections = check_int("max_connections", max_connections, 1)
        check_instance("rate_limit", rate_limit, RateLimit, optional=True)
        self._rate_limit = rate_limit if rate_limit is not None else RateLimit(rate=1e9, burst=1_000_000)
        self._by_segment = check_flag("keyed_by_segment", keyed_by_segment)
        self._tokens = tokens
        self._symbols: dict[Hashable, str] = {self._key(token): symbol for symbol, token in tokens.items()}
        self._gates = Gates()
        self._refused = False
        self._connections: list[FakeConnection] = []
        self._requests: list[Request] = []
        self._master_loads = 0
        self._epoch: float | None = None  # time.time() - trio.current_time(), fixed at the first use

    def __repr__(self) -> str:
        return f"<FakeBroker {self._name!r} ({self._broker.value}), {len(self._tokens)} instruments>"

    # ------------------------------------------------------------------------------------- instruments

    @property
    def instruments(self) -> dict[str, int]:
        """The instrument master: symbol -> token (a copy)."""
        return dict(self._tokens)

    def tick(
        self,
        symbol: str,
        last_price: float = 100.0,
        *,
        mode: Mode | Literal["ltp", "quote", "full"] = Mode.LTP,
        **fields: Any,
    ) -> Tick:
        """A `Tick` of `symbol` as a feed decodes it (its token, tradable, segment 1, no symbol yet: the
        manager sets that), received now (`received_at`, on the broker's clock: see `FakeBroker`).

        `mode` is a `Mode` or its value (``"ltp"``, ``"quote"``, ``"full"``). `fields` sets any other
        `Tick` attribute but `symbol` (``volume=10``, ``ohlc=...``, ``segment=2``), each of its type: an
        int for the quantities, open interest and `segment`, a finite number for `average_price`, `change`
        and `received_at`, a bool for `tradable`, an `Ohlc`, a `Depth`, a `datetime`; None wherever the
        attribute may be None. Prices are stored as floats. Does not block.

        Raises:
            ConfigurationError: `symbol` is not one of the broker's instruments; `last_price` is not a
                finite number; `mode` is not a mode; a field is unknown, is `broker` or
                `instrument_token` (they follow from the broker and `symbol`), or has the wrong type.
        """
        if not isinstance(symbol, str) or symbol not in self._tokens:
            raise ConfigurationError(f"{self._name}: no instrument {symbol!r:.60} (see instruments)")
        values: dict[str, Any] = {
            "broker": self._broker,
            "instrument_token": self._tokens[symbol],
            "mode": coerce_mode(mode),
            "tradable": True,
            "last_price": finite("last_price", last_price),
            "segment": SEGMENT,
        }
        values.update(tick_fields(fields))
        values.setdefault("received_at", self._now())
        return Tick(**values)

    # ------------------------------------------------------------------------------------- driving

    def push(self, *events: Event) -> int:
        """Send `events` the way a broker does, and return on how many connections they went out.

        Each connection that is up gets, in one frame, the events of instruments subscribed on it (a tick,
        a candle...) and every event that names no instrument (an order update, a broker message, market
        status); a connection with nothing to get gets no frame. Does not block.

        Raises:
            ConfigurationError: an event is not one a feed yields (see `FakeConnection.push`); checked
                before any connection gets anything.
        """
        check_events(events)
        sent = 0
        for connection in list(self._connections):
            if not connection.connected:
                continue
            frame = [event for event in events if self._carries(connection, event)]
            if frame:
                connection.push(*frame)
                sent += 1
        return sent

    def refuse_credentials(self, refuse: bool = True) -> None:
        """From now on (until called with False), refuse the credentials, as a broker does once an access
        token has expired: loading the master and opening a connection raise `AuthenticationError` (the
        manager hands it to the subscribe call that needed them), and a `FakeConnection.reconnect` fails
        its connection for good with it. Connections that are up stay up. Does not block.

        Raises:
            ConfigurationError: `refuse` is not a bool.
        """
        self._refused = check_flag("refuse", refuse)

    def hold(self, point: Point) -> None:
        """From now on, every call that reaches `point` parks there until `release` (each request waits for
        the rate limiter first, and records nothing until it has passed). Every call: the manager's own
        background requests too (the tidy task's unsubscribes and mode downgrades, the unsubscribe when a
        subscription leaves), not only the application's. Does not block.

        Raises:
            ConfigurationError: `point` is not ``"master"``, ``"connect"``, ``"subscribe"`` or
                ``"unsubscribe"``.
        """
        self._gates.hold(point)

    def release(self, point: Point) -> None:
        """Let the calls parked at `point` go on, and later ones pass. The calls parked now go on whatever
        happens next: ``release(point); hold(point)`` lets them through and parks only later calls. Does
        not block.

        Raises:
            ConfigurationError: an unknown `point`.
        """
        self._gates.release(point)

    async def wait_parked(self, point: Point) -> None:
        """Block until a call is parked at `point` and not released (at once if one is already). Use it to
        cancel that call at exactly that await, or to act while it waits. After ``release(point);
        hold(point)`` it waits for a new call: the released ones do not count.

        Cancellation: nothing to undo.

        Raises:
            RuntimeError: `point` is not held (the wait could never end), or is released before a call
                parks there.
            ConfigurationError: an unknown `point`.
        """
        await self._gates.wait_parked(point)

    def waiting(self, point: Point) -> int:
        """How many calls are parked at `point` now and not released. Does not block.

        Raises:
            ConfigurationError: an unknown `point`.
        """
        return self._gates.waiting(point)

    def fail_next(self, point: Point, error: Exception) -> None:
        """Make the next call that reaches `point` raise `error` (once; several calls queue their errors in
        order). A failed request records nothing. The call may be the manager's own: what the manager
        does with the error is its business (see docs/testing.md). Does not block.

        Raises:
            ConfigurationError: an unknown `point`, or `error` is not an exception instance.
        """
        self._gates.fail_next(point, error)

    # ------------------------------------------------------------------------------------- observing

    @property
    def connections(self) -> list[FakeConnection]:
        """Every connection the manager opened, in order, including those that failed or were closed (a
        copy). The manager numbers them the same way: ``connections[n].index == n``."""
        return list(self._connections)

    @property
    def subscriptions(self) -> dict[str, Mode]:
        """What is subscribed on the connections that have not failed or been closed, by symbol, in its
        mode (a new dict). Does not block."""
        merged: dict[str, Mode] = {}
        for connection in self._connections:
            if connection.failed is None and not connection.closed:
                merged.update(connection.subscriptions)
        return merged

    @property
    def requests(self) -> list[Request]:
        """Every request the manager completed, on any connection, oldest first (a copy)."""
        return list(self._requests)

    @property
    def master_loads(self) -> int:
        """How many times the instrument master was loaded (the manager loads it once)."""
        return self._master_loads

    # ------------------------------------------------------------------------------------- BrokerConfig

    @property
    def broker(self) -> Broker:
        """Which broker the fake stands for (`Broker.KITE` sends order updates to the manager)."""
        return self._broker

    @property
    def name(self) -> str:
        """The label for ``subscribe(..., broker=name)``."""
        return self._name

    @property
    def max_instruments_per_connection(self) -> int:
        """How many instruments the manager places on one connection."""
        return self._per_connection

    @property
    def max_connections(self) -> int:
        """How many connections the manager may open."""
        return self._max_connections

    @property
    def rate_limit(self) -> RateLimit:
        """The pace of requests and connection openings (by default, no practical limit)."""
        return self._rate_limit

    @property
    def keyed_by_segment(self) -> bool:
        """True if the manager routes ticks by ``(segment, token)`` as for XTS, False by token as for Kite."""
        return self._by_segment

    async def load_instruments(self) -> Mapping[str, InstrumentInfo]:
        """The instrument master (the manager calls this once).

        Passes the ``"master"`` await point.

        Cancellation: nothing is loaded or counted.

        Raises:
            AuthenticationError: credentials are refused (`refuse_credentials`).
            Exception: what `fail_next` queued for ``"master"``.
        """
        await self._gates.pass_through("master")
        if self._refused:
            raise AuthenticationError("the broker refused the credentials (loading the master)")
        self._master_loads += 1
        return {
            symbol: InstrumentInfo(symbol, self._key(token), token, SEGMENT)
            for symbol, token in self._tokens.items()
        }

    def open_feed(
        self, connection_id: int, limiter: TokenBucket, sink: Sink | None = None
    ) -> AbstractAsyncContextManager[FakeConnection]:
        """Open connection number `connection_id` (the manager calls this): entering waits for the rate
        limiter, passes the ``"connect"`` await point, then hands `sink` a `Connected` and yields the
        `FakeConnection`, which is closed when the block ends.

        Cancellation: entering cancelled opens nothing.

        Raises:
            AuthenticationError: credentials are refused (`refuse_credentials`).
            Exception: what `fail_next` queued for ``"connect"``.
        """
        return self._open(connection_id, limiter, sink)

    @asynccontextmanager
    async def _open(
        self, index: int, limiter: TokenBucket, sink: Sink | None
    ) -> AsyncIterator[FakeConnection]:
        await limiter.acquire()
        await self._gates.pass_through("connect")
        if self._refused:
            raise AuthenticationError("the broker refused the credentials (opening a connection)")
        connection = FakeConnection(self, index, limiter, sink)
        self._connections.append(connection)
        try:
            connection._deliver([Connected(self._broker, index, self._now())])
            yield connection
        finally:
            connection._close()

    # ------------------------------------------------------------------------------------- internals

    def _now(self) -> float:
        """Wall-clock time that follows trio's clock (from the broker's first use in a run)."""
        try:
            now = trio.current_time()
        except RuntimeError:  # outside trio.run
            return time.time()
        if self._epoch is None:
            self._epoch = time.time() - now
        return self._epoch + now

    def _key(self, token: int) -> Hashable:
        return (SEGMENT, token) if self._by_segment else token

    def _symbol_of(self, key: Hashable) -> str:
        try:
            return self._symbols[key]
        except (KeyError, TypeError):
            raise SubscriptionError(f"{self._name}: no instrument with key {key!r}") from None

    def _carries(self, connection: FakeConnection, event: Event) -> bool:
        token = getattr(event, "instrument_token", None)
        if token is None:
            return True
        key = (getattr(event, "segment", SEGMENT), token) if self._by_segment else token
        return key in connection._modes
