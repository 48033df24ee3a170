"""`open_market_data`: one subscribe API over every configured broker.

Inside: per broker, an instrument table (symbol -> upstream state with its subscribers and their modes),
shards (connections, each holding at most the broker's per-connection limit), and a token bucket for requests.
Each shard's feed calls the router, synchronously, with one batch per frame (in the feed's reader task, or,
for an XTS subscribe answer's snapshots, in the task that made the request), and the router puts the events
into the queues of the subscribers that hold each instrument (`SubscriberQueue.put` never blocks); the shard's
own task only waits for its feed to end. Order updates go to the broker's order-update streams instead,
each distinct update once, whichever connection it came on.

Subscription changes for one broker are serialised by a lock and applied upstream as the difference of
reference counts: one upstream subscription per instrument at the highest mode any subscriber wants. Each
instrument's entry keeps two things apart: what its subscribers want (changed synchronously, under the
lock, when a change is planned) and what upstream holds (`rank` and `shard`, changed only once a feed's
request has completed; the feeds' requests are all or nothing). A change first makes the requests that
raise upstream (new instruments, higher modes); if one fails or is cancelled, the change is undone in the
ledger and nothing of it remains but, at worst, upstream subscriptions nobody wants, which are harmless
and are lowered later. Only then is the change applied in full, and the requests that lower upstream
(unsubscribe, downgrade) follow; what they leave undone is marked `dirty` and finished by the manager's
tidy task. So a held instrument is always subscribed upstream in at least the mode its holders want.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Hashable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final

import attrs
import trio

from ._errors import (
    ConfigurationError,
    ConnectError,
    FeedClosedError,
    SubscriptionError,
    SubscriptionLimitError,
    TradingWsError,
)
from ._fanout import Overflow, QueueStatistics, SlowConsumerError, SubscriberQueue, coerce_overflow
from ._model import (
    Broker,
    Connected,
    Disconnected,
    Event,
    Gap,
    Mode,
    OrderUpdate,
    Reconnecting,
    Resubscribed,
    Stale,
    Tick,
    coerce_mode,
)
from ._ratelimit import TokenBucket
from ._transport import open_service_nursery
from .brokers._interface import BrokerConfig, BrokerFeed, InstrumentInfo

__all__ = [
    "BrokerStatistics",
    "ConnectionStatistics",
    "MarketData",
    "MarketDataStatistics",
    "OrderUpdates",
    "Subscription",
    "SubscriptionStatistics",
    "UnknownSymbolError",
    "open_market_data",
]

logger = logging.getLogger("trading_ws.manager")

_RANK: Final = {Mode.LTP: 0, Mode.QUOTE: 1, Mode.FULL: 2}
_MODES: Final = (Mode.LTP, Mode.QUOTE, Mode.FULL)
_STATUS_TYPES: Final = (Connected, Disconnected, Reconnecting, Resubscribed)
#: How long leaving a subscribe block waits (shielded) for its upstream unsubscribe; the rest is finished
#: in the background.
_LEAVE_TIMEOUT: Final = 5.0
#: How many distinct order updates per broker are remembered to recognise the copies other connections
#: deliver (they arrive within milliseconds of each other).
_ORDERS_REMEMBERED: Final = 4096
#: How many unknown symbols an `UnknownSymbolError` message names (its ``symbols`` has them all).
_NAMED_IN_MESSAGE: Final = 20


class UnknownSymbolError(SubscriptionError):
    """Symbols that no configured broker's instrument master knows; nothing of the request was applied.

    Attributes:
        symbols: the unknown symbols, in request order (all of them; the message names the first 20).
    """

    def __init__(self, symbols: Sequence[str], brokers: Sequence[str]) -> None:
        names = ", ".join(repr(s)[:60] for s in symbols[:_NAMED_IN_MESSAGE])
        if len(symbols) > _NAMED_IN_MESSAGE:
            names += f" and {len(symbols) - _NAMED_IN_MESSAGE} more"
        super().__init__(f"unknown symbol(s) {names} (searched: {', '.join(brokers)})")
        self.symbols = tuple(symbols)


# ---------------------------------------------------------------------------------------------------------
# Argument checks: every public entry point refuses a bad argument before it records or sends anything


def _check_symbols(symbols: object, what: str = "symbols") -> list[str]:
    """`symbols` as a list without repeats, or ConfigurationError: it must be an iterable of str."""
    if isinstance(symbols, (str, bytes, bytearray)):
        raise ConfigurationError(
            f"{what} must be an iterable of str, not a bare string: write [{symbols!r:.40}]"
        )
    try:
        items = list(symbols)  # type: ignore[call-overload]
    except TypeError:
        raise ConfigurationError(f"{what} must be an iterable of str, got {type(symbols).__name__}") from None
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(f"{what} must all be str, got {item!r:.40}")
    return list(dict.fromkeys(items))


def _check_label(value: object, what: str) -> None:
    if value is not None and not isinstance(value, str):
        raise ConfigurationError(f"{what} must be a str or None, got {value!r:.40}")


def _check_buffer(value: object) -> int:
    if type(value) is not int or value < 1:
        raise ConfigurationError(f"buffer must be an int of at least 1, got {value!r:.40}")
    return value


def _sends_order_updates(config: BrokerConfig) -> bool:
    """Whether the broker pushes order updates over its market-data connections (Kite does; XTS sends
    them on a separate interactive socket)."""
    return config.broker is Broker.KITE


def _fingerprint(update: OrderUpdate) -> bytes | None:
    """What identifies an order update across connections: a digest of its payload (the copies other
    connections deliver are identical; `received_at` is not part of it). None if it cannot be serialised
    (it is then delivered without being compared)."""
    try:
        text = json.dumps(update.data, sort_keys=True, separators=(",", ":"), default=repr)
    except (TypeError, ValueError, RecursionError):
        return None
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


# ---------------------------------------------------------------------------------------------------------
# Statistics records


@attrs.frozen
class ConnectionStatistics:
    """One broker connection of a manager."""

    connection: int
    connected: bool
    instruments: int
    ticks: int
    """Ticks received on this connection."""
    reconnects: int
    last_tick_age: float | None
    """Seconds since the last tick on this connection (trio clock), None before the first."""


@attrs.frozen
class BrokerStatistics:
    """One configured broker of a manager."""

    name: str
    broker: Broker
    instruments: int
    """Instruments subscribed upstream (counted once the broker's connection has taken the request)."""
    connections: tuple[ConnectionStatistics, ...]
    rate_limited_seconds: float
    """Total time requests waited for the broker's rate limiter."""


@attrs.frozen
class MarketDataStatistics:
    """A whole manager (see `MarketData.statistics`)."""

    brokers: tuple[BrokerStatistics, ...]
    subscriptions: int
    ticks_in: int
    """Ticks received from all brokers."""
    ticks_out: int
    """Tick deliveries offered to subscriber queues (one tick to three subscribers counts three)."""
    dropped: int
    """Ticks lost to subscribers' overflow policies, summed."""
    conflated: int = 0
    """Ticks replaced by a newer one of the same instrument in ``CONFLATE`` queues, summed (not lost)."""


@attrs.frozen
class SubscriptionStatistics:
    """One subscription (see `Subscription.statistics`)."""

    symbols: int
    mode: Mode
    overflow: Overflow
    queue: QueueStatistics
    last_tick_age: float | None
    """Seconds since this subscription last received a tick (trio clock), None before the first."""


# ---------------------------------------------------------------------------------------------------------
# Internal state


@attrs.define(eq=False)
class _Upstream:
    """One (broker, instrument): who wants it, and how it is subscribed upstream."""

    info: InstrumentInfo
    subscribers: dict[Subscription, int] = attrs.field(factory=dict)
    """Subscriber -> the rank of the mode it wants."""
    rank: int = -1
    """The rank subscribed upstream (-1: not subscribed), set once the feed has taken the request."""
    shard: _Shard | None = None
    """The connection it is subscribed on (None: not subscribed)."""
    last_tick_at: float | None = None
    subscribed_at: float = 0.0
    """When it was subscribed upstream (trio clock): the reference for staleness before a first tick."""
    stale: bool = False
    counts: list[int] = attrs.field(factory=lambda: [0, 0, 0])
    """How many subscribers want each mode rank: the wanted mode in O(1), not O(subscribers)."""

    def hold(self, sub: Subscription, rank: int) -> None:
        old = self.subscribers.get(sub)
        if old is not None:
            self.counts[old] -= 1
        self.subscribers[sub] = rank
        self.counts[rank] += 1

    def release(self, sub: Subscription) -> None:
        old = self.subscribers.pop(sub, None)
        if old is not None:
            self.counts[old] -= 1

    def wanted(self) -> int:
        """The highest rank any subscriber wants, -1 if none."""
        counts = self.counts
        return 2 if counts[2] else 1 if counts[1] else 0 if counts[0] else -1


@attrs.define(eq=False)
class _Shard:
    """One connection of a broker."""

    index: int
    feed: BrokerFeed
    keys: set[Hashable] = attrs.field(factory=set)
    """The instruments subscribed on it (as far as its feed has taken the requests)."""
    ticks: int = 0
    reconnects: int = 0
    last_tick_at: float | None = None
    lost_at: float | None = None
    """Wall-clock time the connection was lost (for `Gap`), None while up."""
    failed: BaseException | None = None


@attrs.define(eq=False)
class _BrokerState:
    config: BrokerConfig
    limiter: TokenBucket
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    master: Mapping[str, InstrumentInfo] | None = None
    by_key: dict[Hashable, _Upstream] = attrs.field(factory=dict)
    shards: list[_Shard] = attrs.field(factory=list)
    dirty: set[Hashable] = attrs.field(factory=set)
    """Instruments that may be subscribed upstream above what their subscribers want (a change was
    cancelled or failed part-way): the tidy task, or the next change, lowers them."""
    order_listeners: set[OrderUpdates] = attrs.field(factory=set)
    orders_seen: dict[bytes, None] = attrs.field(factory=dict)
    """Fingerprints of the latest order updates (insertion-ordered, bounded): copies are skipped."""
    orders_down_since: float | None = None
    """Wall-clock time since which no connection of this broker is up (order updates cannot arrive)."""


# ---------------------------------------------------------------------------------------------------------
# Subscription


class Subscription:
    """A live subscription: an async iterator of events for its symbols (see `MarketData.subscribe`).

    Yields `Tick` objects (shared with other subscribers: treat them as read-only) and the status events
    of the connections carrying its symbols (`Connected`, `Disconnected`, `Reconnecting`,
    `Resubscribed`, `Gap`, `Stale`), and other per-instrument or per-connection broker events; never
    `OrderUpdate` (see `MarketData.order_updates`). Ends with `SlowConsumerError` (``Overflow.BLOCK``
    overflowed), the broker's terminal error (its credentials were refused for good), or
    `FeedClosedError` after the ``async with`` block or the manager ended.

    Iterating is atomic with respect to cancellation: a cancelled ``__anext__`` or `receive_batch` took
    nothing from the subscription's queue.
    """

    _ids = itertools.count(1)

    def __init__(
        self,
        manager: MarketData,
        broker: _BrokerState,
        mode: Mode,
        user_id: str | None,
        buffer: int,
        overflow: Overflow,
    ) -> None:
        self.id = next(self._ids)
        self.user_id = user_id
        self._manager = manager
        self._broker = broker
        self._mode = mode
        self._queue = SubscriberQueue(buffer, overflow)
        self._overflow = overflow
        self._keys: dict[Hashable, str] = {}  # key -> symbol
        self._waiting_first: set[Hashable] = set()
        self._ready = trio.Event()
        self.last_tick_at: float | None = None

    def __repr__(self) -> str:
        return (
            f"<Subscription #{self.id} user={self.user_id!r} broker={self._broker.config.name!r} "
            f"mode={self._mode.value} symbols={len(self._keys)}>"
        )

    @property
    def mode(self) -> Mode:
        """The mode this subscription receives ticks in (richer ticks are reduced to it)."""
        return self._mode

    @property
    def symbols(self) -> frozenset[str]:
        """The symbols held now (including those of a change in progress, until it is undone)."""
        return frozenset(self._keys.values())

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    def __anext__(self) -> Awaitable[Event]:
        """The next event; checkpoints at least once per 256 events.

        Returns the queue's own coroutine: one coroutine frame per event instead of two.

        Cancellation: if cancelled, nothing was taken from the queue.
        """
        return self._queue.get()

    async def receive_batch(self) -> list[Event]:
        """Everything pending (waiting for at least one event): the cheapest way to keep up.

        Cancellation: if cancelled, nothing was taken from the queue.

        Raises:
            SlowConsumerError, the broker's terminal error, or FeedClosedError, as the iterator does.
        """
        return await self._queue.get_batch()

    async def add(self, symbols: Iterable[str]) -> None:
        """Start receiving `symbols` too (in this subscription's mode).

        Returns once every new instrument is subscribed upstream (its first tick may come later: see
        `wait_ready`). Blocks while another change for the same broker is in progress, for the broker's
        rate limiter, and, if the instruments need one, while a new connection opens.

        Cancellation: all or nothing. If cancelled (or failing), the subscription holds exactly what it
        held before: ticks of the new symbols that arrived in the meantime and are still queued are
        discarded (counted in ``statistics().queue.discarded``), and an upstream request it had already
        completed is undone in the background. A connection it opened stays open for later use.

        Raises:
            ConfigurationError: `symbols` is not an iterable of str (a bare string included).
            UnknownSymbolError: some symbols are unknown; nothing is added.
            SubscriptionLimitError: the broker's connections cannot hold them; nothing is added.
            AuthenticationError, ConnectError: a connection was needed and could not be opened, or the
                connection failed while the request was made; nothing is added.
            SubscriptionError: the broker refused the request; nothing is added.
            FeedClosedError: the subscription has ended.
        """
        wanted = _check_symbols(symbols)
        await self._manager._change(self, add=wanted, remove=(), mode=self._mode)

    async def remove(self, symbols: Iterable[str]) -> None:
        """Stop receiving `symbols`; their ticks still queued are discarded (counted in
        ``statistics().queue.discarded``), so no tick of a symbol no longer held is ever delivered.
        Unknown or unheld symbols are ignored. The upstream unsubscribe (when no other subscription
        holds the instrument) is made before this returns; blocks while another change for the same
        broker is in progress, and for the broker's rate limiter.

        Cancellation: if cancelled while waiting for another change, nothing was removed. Past that
        point the removal is applied at once, in full: a cancellation during the upstream unsubscribe
        that follows leaves the symbols removed, and the unsubscribe is completed in the background.

        Raises:
            ConfigurationError: `symbols` is not an iterable of str (a bare string included).
            FeedClosedError: the subscription has ended.
        """
        gone = _check_symbols(symbols)
        await self._manager._change(self, add=(), remove=gone, mode=self._mode)

    async def set_mode(self, mode: Mode | str) -> None:
        """Receive all symbols in `mode` (a `Mode`, or ``"ltp"``, ``"quote"``, ``"full"``) from now on,
        upgrading the upstream subscription if needed, downgrading it when no other subscriber needs
        more. Blocks as `add` does.

        Cancellation: an upgrade is all or nothing, as `add`: if cancelled, the mode is unchanged (ticks
        of the richer mode already queued stay queued). A downgrade is applied at once once no other
        change is in progress (if cancelled before, nothing changed): a cancellation during the upstream
        request that follows leaves the new mode in force, and the request is completed in the
        background.

        Raises:
            ConfigurationError: `mode` is not a mode.
            AuthenticationError, ConnectError, SubscriptionError: as for `add`; the mode is unchanged.
            FeedClosedError: the subscription has ended.
        """
        new = coerce_mode(mode)
        await self._manager._change(self, add=(), remove=(), mode=new)

    async def wait_ready(self) -> None:
        """Wait until every symbol held has delivered its first tick (a snapshot counts).

        Blocks until then; the caller owns the timeout (``with trio.fail_after(5): await
        sub.wait_ready()``). Symbols added later are waited for as well.

        Cancellation: only waits; cancelling it changes nothing.
        """
        await self._ready.wait()

    def statistics(self) -> SubscriptionStatistics:
        """This subscription's counters. Does not block."""
        now = trio.current_time()
        return SubscriptionStatistics(
            symbols=len(self._keys),
            mode=self._mode,
            overflow=self._overflow,
            queue=self._queue.statistics(),
            last_tick_age=None if self.last_tick_at is None else now - self.last_tick_at,
        )

    def _update_ready(self) -> None:
        if not self._waiting_first and not self._ready.is_set():
            self._ready.set()
        elif self._waiting_first and self._ready.is_set():
            self._ready = trio.Event()


# ---------------------------------------------------------------------------------------------------------
# Order updates


class OrderUpdates:
    """The order updates of one broker, each delivered once: an async iterator (see
    `MarketData.order_updates`).

    Yields `OrderUpdate` for every distinct update the broker pushes, on whichever of its connections it
    arrives first (the copies the other connections deliver are skipped), and `Gap` (with no symbols)
    when a span ends during which none of the broker's connections was up: updates of that span may
    have been missed, and the broker does not send them again, so fetch the order book to catch up.

    Ends, once what is queued has been read, with `SlowConsumerError` when `buffer` events were waiting
    unread (never silently skipping one), the broker's terminal error when its last connection failed
    for good, or `FeedClosedError` after the ``async with`` block or the manager ended.
    """

    def __init__(self, broker: str, buffer: int) -> None:
        self.broker = broker
        """The name of the configured broker the updates come from."""
        self._capacity = buffer
        self._events: deque[OrderUpdate | Gap] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False
        self._error: BaseException | None = None
        self._since = time.time()

    def __repr__(self) -> str:
        return f"<OrderUpdates broker={self.broker!r} pending={len(self._events)}>"

    def __aiter__(self) -> AsyncIterator[OrderUpdate | Gap]:
        return self

    async def __anext__(self) -> OrderUpdate | Gap:
        """As `receive`."""
        return await self.receive()

    async def receive(self) -> OrderUpdate | Gap:
        """The next order update (or gap), waiting for one. Always checkpoints.

        Cancellation: if cancelled, nothing was taken.

        Raises:
            SlowConsumerError, the broker's terminal error, or FeedClosedError, once nothing is pending
            (see the class).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._events:
            await trio.lowlevel.cancel_shielded_checkpoint()
        while not self._events:
            if self._closed:
                if self._error is not None:
                    raise self._error
                raise FeedClosedError("the order update stream is closed")
            await self._lot.park()
        return self._events.popleft()

    def _put(self, event: OrderUpdate | Gap) -> None:
        if self._closed:
            return
        if len(self._events) >= self._capacity:
            self._close(
                SlowConsumerError(
                    f"order updates of broker {self.broker!r}: {self._capacity} were waiting unread; "
                    "the stream ended rather than skip one",
                    1,
                )
            )
            return
        self._events.append(event)
        self._lot.unpark()

    def _close(self, error: BaseException | None = None) -> None:
        if not self._closed:
            self._closed = True
            self._error = error
            self._lot.unpark_all()


# ---------------------------------------------------------------------------------------------------------
# The manager


def _reduce(tick: Tick, rank: int) -> Tick:
    """A copy of `tick` carrying only what mode `rank` carries (LTP: the price; QUOTE: no depth)."""
    if rank == 0:
        return Tick(
            tick.broker,
            tick.instrument_token,
            Mode.LTP,
            tick.tradable,
            tick.last_price,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            tick.received_at,
            tick.symbol,
            tick.segment,
        )
    return Tick(
        tick.broker,
        tick.instrument_token,
        Mode.QUOTE,
        tick.tradable,
        tick.last_price,
        tick.last_quantity,
        tick.average_price,
        tick.volume,
        tick.total_buy_quantity,
        tick.total_sell_quantity,
        tick.ohlc,
        tick.change,
        tick.last_trade_time,
        tick.exchange_time,
        tick.oi,
        tick.oi_day_high,
        tick.oi_day_low,
        None,
        tick.received_at,
        tick.symbol,
        tick.segment,
    )


class MarketData:
    """The unified manager; create it with `open_market_data`."""

    def __init__(self, brokers: Sequence[BrokerConfig], nursery: trio.Nursery, stale_after: float | None):
        _check_brokers(brokers)
        self._brokers: dict[str, _BrokerState] = {
            config.name: _BrokerState(config, TokenBucket(config.rate_limit)) for config in brokers
        }
        self._nursery = nursery
        self._stale_after = stale_after
        self._subscriptions: set[Subscription] = set()
        self._closed = False
        self._ticks_in = 0
        self._ticks_out = 0
        self._dropped_closed = 0
        self._conflated_closed = 0
        self._tidy_wanted = trio.Event()

    def __repr__(self) -> str:
        return f"<MarketData brokers={list(self._brokers)} subscriptions={len(self._subscriptions)}>"

    # ----------------------------------------------------------------------------------- public API

    def subscribe(
        self,
        symbols: Iterable[str],
        *,
        mode: Mode | str = Mode.QUOTE,
        broker: str | None = None,
        user_id: str | None = None,
        buffer: int = 10_000,
        overflow: Overflow | str = Overflow.BLOCK,
    ) -> AbstractAsyncContextManager[Subscription]:
        """Subscribe to `symbols` for the duration of the ``async with`` block.

        Symbols are exchange-qualified (``"NSE:INFY"``, ``"NFO:NIFTY26DECFUT"``, ``"NSE:NIFTY 50"``) and
        resolved through the broker's instrument master (loaded once, on first use). Entering returns
        once every symbol is subscribed upstream (ticks may not have arrived yet: see
        `Subscription.wait_ready`). Entering blocks for the master's load, while another change for the
        same broker is in progress, for the broker's rate limiter, and while a new connection opens if
        one is needed. Leaving the block unsubscribes; the upstream subscription ends only when no other
        subscription holds the instrument (or is downgraded to the highest mode still wanted).

        The arguments are checked when `subscribe` is called, before anything is recorded or sent.

        Args:
            symbols: the instruments: an iterable of str (a list, a tuple...), never a bare string.
            mode: the amount of data per tick (a `Mode`, or ``"ltp"``, ``"quote"``, ``"full"``);
                richer upstream ticks are reduced to it.
            broker: the configured broker's name; default: the first broker whose master knows every
                symbol.
            user_id: a label for statistics and reprs.
            buffer: how many ticks may wait for the consumer (for ``CONFLATE``: how many instruments).
            overflow: what happens when they do not fit (an `Overflow`, or its value: ``"block"``,
                ``"drop_oldest"``, ``"drop_newest"``, ``"conflate"``).

        Cancellation: entering is all or nothing. If it is cancelled (or fails), there is no
        subscription: nothing is held, and an upstream request already completed for it is undone in the
        background; a connection it opened stays open for later use. Leaving the block runs shielded
        from cancellation for at most 5 seconds: the symbols are let go of at once, and an upstream
        unsubscribe the broker has not taken by then is completed in the background.

        Raises:
            ConfigurationError: a bad argument (an unknown broker name, a buffer below 1, a mode or
                policy that is not one, symbols that are not an iterable of str), raised by the call.
            UnknownSymbolError: symbols no broker knows (all of them are named; nothing is subscribed).
            SubscriptionLimitError: the broker's connections cannot hold the new instruments.
            AuthenticationError, ConnectError: a new connection was needed and could not be opened.
            SubscriptionError: the broker refused the request.
            FeedClosedError: the manager is closed.
        """
        wanted = _check_symbols(symbols)
        chosen_mode = coerce_mode(mode)
        chosen_overflow = coerce_overflow(overflow)
        _check_label(broker, "broker")
        _check_label(user_id, "user_id")
        size = _check_buffer(buffer)
        if broker is not None and broker not in self._brokers:
            raise ConfigurationError(f"no broker named {broker!r:.60} (configured: {list(self._brokers)})")
        return self._subscribe(wanted, chosen_mode, broker, user_id, size, chosen_overflow)

    @asynccontextmanager
    async def _subscribe(
        self,
        wanted: list[str],
        mode: Mode,
        broker: str | None,
        user_id: str | None,
        buffer: int,
        overflow: Overflow,
    ) -> AsyncIterator[Subscription]:
        state = await self._pick_broker(wanted, broker)
        subscription = Subscription(self, state, mode, user_id, buffer, overflow)
        self._subscriptions.add(subscription)
        try:
            await self._change(subscription, add=wanted, remove=(), mode=mode)
            yield subscription
        finally:
            with trio.CancelScope(shield=True):
                await self._release(subscription)

    def order_updates(
        self, broker: str | None = None, *, buffer: int = 1000
    ) -> AbstractAsyncContextManager[OrderUpdates]:
        """Receive the broker's order updates for the duration of the ``async with`` block, each once.

        Needs no symbol subscription: entering opens a connection to the broker if none is open (and
        keeps it open for the manager's lifetime, as every connection). Kite pushes the updates of the
        account's orders on every market-data connection; this stream delivers each distinct update
        once, from whichever connection brings it first. Subscriptions never receive `OrderUpdate`.
        See `OrderUpdates` for what the stream yields and how it ends. Several streams may be open at
        once; each gets every update.

        Args:
            broker: the configured broker's name; default: the first configured broker that sends order
                updates over its market-data connection (Kite).
            buffer: how many updates may wait unread; one more ends the stream with
                `SlowConsumerError` (an order update is never dropped silently).

        Cancellation: entering is all or nothing: if cancelled (or failing), no stream was opened (a
        connection it opened stays open for later use). Leaving the block does not block.

        Raises:
            ConfigurationError: no such broker, a broker that does not send order updates, no configured
                broker that does, or a buffer below 1; raised by the call.
            AuthenticationError, ConnectError: a connection was needed and could not be opened.
            FeedClosedError: the manager is closed.
        """
        _check_label(broker, "broker")
        size = _check_buffer(buffer)
        if broker is None:
            state = next((s for s in self._brokers.values() if _sends_order_updates(s.config)), None)
            if state is None:
                raise ConfigurationError(
                    f"none of the configured brokers ({list(self._brokers)}) sends order updates over its "
                    "market-data connection (Kite does)"
                )
        else:
            state = self._brokers.get(broker)
            if state is None:
                raise ConfigurationError(
                    f"no broker named {broker!r:.60} (configured: {list(self._brokers)})"
                )
            if not _sends_order_updates(state.config):
                raise ConfigurationError(
                    f"broker {broker!r} ({state.config.broker.value}) does not send order updates over its "
                    "market-data connection"
                )
        return self._order_updates(state, size)

    @asynccontextmanager
    async def _order_updates(self, state: _BrokerState, buffer: int) -> AsyncIterator[OrderUpdates]:
        if self._closed:
            raise FeedClosedError("the market data manager is closed")
        stream = OrderUpdates(state.config.name, buffer)
        async with state.lock:
            if self._closed:
                raise FeedClosedError("the market data manager is closed")
            if not any(shard.failed is None for shard in state.shards):
                await self._open_shard(state)
            state.order_listeners.add(stream)
        try:
            yield stream
        finally:
            state.order_listeners.discard(stream)
            stream._close()

    def statistics(self) -> MarketDataStatistics:
        """Counters for every broker, connection and subscription. Does not block."""
        now = trio.current_time()
        brokers = []
        for name, state in self._brokers.items():
            connections = tuple(
                ConnectionStatistics(
                    connection=shard.index,
                    connected=shard.feed.connected,
                    instruments=len(shard.keys),
                    ticks=shard.ticks,
                    reconnects=shard.reconnects,
                    last_tick_age=None if shard.last_tick_at is None else now - shard.last_tick_at,
                )
                for shard in state.shards
            )
            instruments = sum(1 for u in state.by_key.values() if u.rank >= 0)
            brokers.append(
                BrokerStatistics(name, state.config.broker, instruments, connections, state.limiter.waited)
            )
        dropped = self._dropped_closed + sum(s._queue.dropped for s in self._subscriptions)
        conflated = self._conflated_closed + sum(s._queue.conflated for s in self._subscriptions)
        return MarketDataStatistics(
            tuple(brokers), len(self._subscriptions), self._ticks_in, self._ticks_out, dropped, conflated
        )

    # ----------------------------------------------------------------------------------- resolution

    async def _master(self, state: _BrokerState) -> Mapping[str, InstrumentInfo]:
        if state.master is None:
            async with state.lock:
                if state.master is None:
                    state.master = await state.config.load_instruments()
                    logger.info("loaded %d instruments for broker %r", len(state.master), state.config.name)
        return state.master

    async def _pick_broker(self, symbols: Sequence[str], name: str | None) -> _BrokerState:
        if self._closed:
            raise FeedClosedError("the market data manager is closed")
        if name is not None:
            state = self._brokers[name]  # checked by subscribe
            master = await self._master(state)
            unknown = [s for s in symbols if s not in master]
            if unknown:
                raise UnknownSymbolError(unknown, [name])
            return state
        best: tuple[int, _BrokerState] | None = None
        for state in self._brokers.values():
            master = await self._master(state)
            known = sum(1 for s in symbols if s in master)
            if known == len(symbols):
                return state
            if best is None or known > best[0]:
                best = (known, state)
        assert best is not None
        master = await self._master(best[1])
        unknown = [s for s in symbols if s not in master]
        raise UnknownSymbolError(unknown, list(self._brokers))

    # ----------------------------------------------------------------------------------- changes

    async def _change(
        self, sub: Subscription, *, add: Sequence[str], remove: Sequence[str], mode: Mode
    ) -> None:
        """Apply one subscription's change, all or nothing (see the module docstring).

        Plans and applies the change to the ledger synchronously, makes the requests that raise upstream
        (undoing the change if one fails or is cancelled), then the ones that lower it.
        """
        if self._closed or sub._queue.closed:
            raise FeedClosedError("the subscription has ended")
        state = sub._broker
        master = await self._master(state)
        unknown = [s for s in add if s not in master]
        if unknown:
            raise UnknownSymbolError(unknown, [state.config.name])
        async with state.lock:
            if self._closed or sub._queue.closed:  # ended while waiting for the lock
                raise FeedClosedError("the subscription has ended")
            if state.dirty:  # what earlier changes left upstream: lowered first, so capacity is right
                await self._lower(state, set(state.dirty))
            # Plan: what changes, and do the new instruments fit?
            old_mode = sub._mode
            old_rank, new_rank = _RANK[old_mode], _RANK[mode]
            adding = {master[s].key: master[s] for s in add if master[s].key not in sub._keys}
            removing = [master[s].key for s in remove if s in master and master[s].key in sub._keys]
            self._check_capacity(state, sum(1 for key in adding if self._unplaced(state, key)))
            # Apply it to the ledger (synchronously), remembering what undoes it.
            removed: dict[Hashable, tuple[str, bool]] = {}
            gone: set[tuple[int | None, int]] = set()
            for key in removing:
                held = state.by_key[key]
                held.release(sub)
                removed[key] = (sub._keys.pop(key), key in sub._waiting_first)
                sub._waiting_first.discard(key)
                gone.add((held.info.segment, held.info.token))
            if new_rank != old_rank:
                sub._mode = mode
                for key in sub._keys:
                    state.by_key[key].hold(sub, new_rank)
            for key, info in adding.items():
                upstream = state.by_key.get(key)
                if upstream is None:
                    upstream = state.by_key[key] = _Upstream(info)
                upstream.hold(sub, new_rank)
                sub._keys[key] = info.symbol
                # Ready means a tick of it reached this subscriber, even if others had them before.
                sub._waiting_first.add(key)
            sub._update_ready()
            touched = set(adding) | set(removed) | (set(sub._keys) if new_rank != old_rank else set())
            raising = set(adding) | (set(sub._keys) if new_rank > old_rank else set())
            # Raise upstream; until that is done, the change can still be undone.
            try:
                if raising:
                    await self._raise(state, raising)
                if self._closed or sub._queue.closed:
                    raise FeedClosedError("the subscription ended while it was being changed")
            except BaseException as exc:
                self._undo(sub, adding, removed, old_mode)
                self._settle(state, touched)
                if type(exc) is FeedClosedError:
                    if self._closed or sub._queue.closed:
                        raise FeedClosedError("the subscription has ended") from exc
                    raise ConnectError(
                        f"broker {state.config.name!r}: the connection failed while the request was made; "
                        "nothing of the change was applied"
                    ) from exc
                raise
            # Applied in full. Ticks of removed symbols still queued go; then lower upstream.
            if gone:
                sub._queue.discard_ticks(gone)
            await self._lower(state, touched)

    def _undo(
        self,
        sub: Subscription,
        adding: Mapping[Hashable, InstrumentInfo],
        removed: Mapping[Hashable, tuple[str, bool]],
        old_mode: Mode,
    ) -> None:
        """Put a subscription back as it was before a change that did not complete (lock held)."""
        state = sub._broker
        ended = self._closed or sub._queue.closed  # left meanwhile: it let go of everything, keep it so
        for key in adding:
            upstream = state.by_key.get(key)
            if upstream is not None:
                upstream.release(sub)
            sub._keys.pop(key, None)
            sub._waiting_first.discard(key)
        if adding:
            sub._queue.discard_ticks({(info.segment, info.token) for info in adding.values()})
        sub._mode = old_mode
        if not ended:
            old_rank = _RANK[old_mode]
            for key, (symbol, waiting) in removed.items():
                sub._keys[key] = symbol
                if waiting:
                    sub._waiting_first.add(key)
            for key in sub._keys:
                state.by_key[key].hold(sub, old_rank)
        sub._update_ready()

    def _settle(self, state: _BrokerState, keys: Iterable[Hashable]) -> None:
        """After an undone change: entries nobody wants and nothing holds upstream go; those held upstream
        above what is wanted are left to the tidy task."""
        for key in keys:
            upstream = state.by_key.get(key)
            if upstream is None:
                continue
            if upstream.rank > upstream.wanted():
                state.dirty.add(key)
            elif upstream.rank < 0 and not upstream.subscribers:
                del state.by_key[key]
        if state.dirty:
            self._tidy_wanted.set()

    @staticmethod
    def _unplaced(state: _BrokerState, key: Hashable) -> bool:
        """Whether instrument `key` is not subscribed upstream on a live connection."""
        upstream = state.by_key.get(key)
        return upstream is None or upstream.shard is None or upstream.shard.failed is not None

    def _check_capacity(self, state: _BrokerState, new: int) -> None:
        if not new:
            return
        config = state.config
        held = sum(1 for key in state.by_key if not self._unplaced(state, key))
        total = config.max_instruments_per_connection * config.max_connections
        if held + new > total:
            raise SubscriptionLimitError(
                f"{config.name}: {new} more instruments would exceed {total} "
                f"({config.max_connections} connections x {config.max_instruments_per_connection}); "
                f"{held} are subscribed"
            )

    async def _raise(self, state: _BrokerState, keys: Iterable[Hashable]) -> None:
        """Subscribe upstream what the subscribers of `keys` want beyond what is subscribed (lock held):
        higher modes on their connections, then new instruments on connections with room (opening
        connections as needed). Each request is recorded once made; an error propagates."""
        upgrades: dict[tuple[_Shard, int], list[_Upstream]] = {}
        unplaced: list[tuple[int, _Upstream]] = []
        for key in keys:
            upstream = state.by_key[key]
            wanted = upstream.wanted()
            if wanted < 0:
                continue
            shard = upstream.shard
            if shard is None or shard.failed is not None:  # a failed connection's: placed afresh
                unplaced.append((wanted, upstream))
            elif wanted > upstream.rank:
                upgrades.setdefault((shard, wanted), []).append(upstream)
        for (shard, rank), group in upgrades.items():
            await self._request(state, shard, group, rank)
        limit = state.config.max_instruments_per_connection
        while unplaced:
            room = next((s for s in state.shards if s.failed is None and len(s.keys) < limit), None)
            if room is None:
                room = await self._open_shard(state)
            take = limit - len(room.keys)
            batch, unplaced = unplaced[:take], unplaced[take:]
            by_rank: dict[int, list[_Upstream]] = {}
            for rank, upstream in batch:
                by_rank.setdefault(rank, []).append(upstream)
            for rank, group in by_rank.items():
                await self._request(state, room, group, rank)

    async def _lower(self, state: _BrokerState, keys: Iterable[Hashable]) -> None:
        """Take upstream down to what the subscribers of `keys` want (lock held): unsubscribe what
        nobody wants, downgrade what is wanted in a lower mode.

        Keys left to do stay in `dirty`. A request that fails is logged (the keys stay dirty, for the next
        change or the tidy task); a cancellation propagates, and the tidy task finishes the rest.
        """
        drops: dict[_Shard, list[_Upstream]] = {}
        downs: dict[tuple[_Shard, int], list[_Upstream]] = {}
        for key in keys:
            upstream = state.by_key.get(key)
            if upstream is None:
                state.dirty.discard(key)
                continue
            wanted = upstream.wanted()
            shard = upstream.shard
            if wanted >= upstream.rank or shard is None or shard.failed is not None:
                state.dirty.discard(key)  # nothing to lower (a failed connection's are dealt with there)
                if upstream.rank < 0 and not upstream.subscribers:
                    del state.by_key[key]
                continue
            state.dirty.add(key)
            if wanted < 0:
                drops.setdefault(shard, []).append(upstream)
            else:
                downs.setdefault((shard, wanted), []).append(upstream)
        requests = [(shard, group, -1) for shard, group in drops.items()]
        requests += [(shard, group, rank) for (shard, rank), group in downs.items()]
        for shard, group, rank in requests:
            try:
                await self._request(state, shard, group, rank)
            except trio.Cancelled:
                self._tidy_wanted.set()
                raise
            except FeedClosedError:
                continue  # the connection is gone, and what it held with it
            except Exception as exc:
                logger.warning(
                    "broker %r connection %d: %s of %d instruments failed (%s: %s); tried again later",
                    state.config.name,
                    shard.index,
                    "unsubscribe" if rank < 0 else f"downgrade to {_MODES[rank].value}",
                    len(group),
                    type(exc).__name__,
                    exc,
                )
                continue
            for upstream in group:
                key = upstream.info.key
                if upstream.wanted() >= upstream.rank:
                    state.dirty.discard(key)
                if upstream.rank < 0 and not upstream.subscribers and state.by_key.get(key) is upstream:
                    del state.by_key[key]

    async def _request(self, state: _BrokerState, shard: _Shard, group: list[_Upstream], rank: int) -> None:
        """One upstream request on `shard`: subscribe `group` in mode `rank`, or unsubscribe it (rank
        -1); its effect is recorded once the feed has taken it (a feed's request is all or nothing)."""
        keys = [upstream.info.key for upstream in group]
        try:
            if rank < 0:
                await shard.feed.unsubscribe(keys)
            else:
                await shard.feed.subscribe(keys, _MODES[rank])
        except trio.Cancelled:
            raise  # a cancelled request was not made
        except BaseException:
            # It may or may not have reached the broker: count a subscribe as made (more upstream than
            # wanted is harmless and is lowered later; less would starve a holder), an unsubscribe as not.
            if rank >= 0:
                self._record(shard, group, rank, uncertain=True)
            state.dirty.update(keys)
            raise
        self._record(shard, group, rank)

    @staticmethod
    def _record(shard: _Shard, group: list[_Upstream], rank: int, *, uncertain: bool = False) -> None:
        now = trio.current_time()
        for upstream in group:
            key = upstream.info.key
            if rank < 0:
                if upstream.shard is shard:
                    shard.keys.discard(key)
                    upstream.shard = None
                    upstream.rank = -1
                    upstream.last_tick_at = None
                    upstream.stale = False
                continue
            if upstream.shard is not shard:
                if upstream.shard is not None:
                    upstream.shard.keys.discard(key)
                upstream.shard = shard
                upstream.rank = -1
                shard.keys.add(key)
            if upstream.rank < 0:
                upstream.subscribed_at = now
                upstream.stale = False
            upstream.rank = max(upstream.rank, rank) if uncertain else rank

    async def _open_shard(self, state: _BrokerState) -> _Shard:
        """Open a new connection for `state` (lock held). Cancelled or failing: no connection."""
        if sum(1 for s in state.shards if s.failed is None) >= state.config.max_connections:
            raise SubscriptionLimitError(f"{state.config.name}: every connection is full")
        index = len(state.shards)
        shard: _Shard = await self._nursery.start(self._run_shard, state, index)
        state.shards.append(shard)
        return shard

    async def _release(self, sub: Subscription) -> None:
        """Leaving a subscribe block (runs shielded): close its queue and let go of its instruments at
        once (without waiting for the lock: nothing of it is in flight any more), then lower upstream,
        for at most `_LEAVE_TIMEOUT` seconds; the tidy task finishes what is left."""
        self._subscriptions.discard(sub)
        self._dropped_closed += sub._queue.dropped
        self._conflated_closed += sub._queue.conflated
        sub._queue.close()
        state = sub._broker
        keys = list(sub._keys)
        for key in keys:
            upstream = state.by_key.get(key)
            if upstream is not None:
                upstream.release(sub)
        sub._keys.clear()
        sub._waiting_first.clear()
        if self._closed or not keys:
            return
        state.dirty.update(keys)
        with trio.move_on_after(_LEAVE_TIMEOUT):  # a broker that does not take our unsubscribe
            async with state.lock:
                await self._lower(state, keys)
        if state.dirty:
            self._tidy_wanted.set()

    async def _tidy(self) -> None:
        """Lower upstream where cancelled or failed changes left more than is wanted (`dirty`), in the
        background; runs for the manager's lifetime."""
        while True:
            await self._tidy_wanted.wait()
            self._tidy_wanted = trio.Event()
            for state in self._brokers.values():
                if state.dirty:
                    async with state.lock:
                        await self._lower(state, set(state.dirty))

    # ----------------------------------------------------------------------------------- shards

    async def _run_shard(
        self, state: _BrokerState, index: int, *, task_status: trio.TaskStatus[_Shard]
    ) -> None:
        """Own connection `index` of a broker: open it and route its batches until it fails or is
        cancelled. Startup errors propagate to the call that needed the connection.

        The feed calls the router itself, in its reader task, for every batch (no task hop per frame);
        this task only waits for the feed to end. Events that arrive before the feed is handed over (its
        first `Connected`) are routed as soon as it is, which is before any instrument is placed on
        the connection, so they reach nobody: subscribers see status events from the first loss on.

        When the connection fails for good, its instruments are taken off it, so that a later
        subscriber of one of them gets a fresh connection instead of joining the dead one.
        """
        shard: _Shard | None = None
        started = False
        early: list[Event] = []

        def sink(batch: list[Event]) -> None:
            if shard is None:
                early.extend(batch)
            else:
                self._route(state, shard, batch)

        try:
            async with state.config.open_feed(index, state.limiter, sink) as feed:
                shard = _Shard(index, feed)
                if early:
                    self._route(state, shard, early)
                    early.clear()
                task_status.started(shard)
                started = True
                try:
                    while True:  # a feed that ignores the sink still hands its batches out here
                        self._route(state, shard, await feed.receive_batch())
                except FeedClosedError:
                    return
                except Exception as exc:
                    # Failed for good: handled before the feed's block ends (closing it may take a
                    # while), so no newcomer is placed on it in the meantime.
                    await self._fail_shard(state, shard, exc)
        except Exception as exc:
            if not started or shard is None:
                raise  # never started: the subscribe call that opened it sees the error
            if shard.failed is None:  # an error while the feed's block ended
                await self._fail_shard(state, shard, exc)

    async def _fail_shard(self, state: _BrokerState, shard: _Shard, exc: Exception) -> None:
        """Connection `shard` failed for good (credentials refused and not renewable, attempts exhausted,
        or a bug in routing): end every subscription on it with `exc`, and take its instruments off it,
        so that a later subscriber gets a fresh connection. The manager and other connections go on.
        Order-update streams end too when it was the broker's last live connection."""
        shard.failed = exc
        logger.error(
            "broker %r connection %d failed: %s",
            state.config.name,
            shard.index,
            exc,
            exc_info=None if isinstance(exc, TradingWsError) else exc,
        )
        ended = self._subscribers_of(state, shard)
        for sub in ended:
            sub._queue.close(exc)
        if not any(s.failed is None for s in state.shards):
            for listener in state.order_listeners:
                listener._close(exc)
            state.order_listeners.clear()
        async with state.lock:
            late = self._subscribers_of(state, shard) - ended  # joined while this waited for the lock
            for sub in late:
                sub._queue.close(exc)
            ended |= late
            for key in list(shard.keys):
                upstream = state.by_key.get(key)
                if upstream is None or upstream.shard is not shard:
                    continue
                for sub in ended:  # the ended subscriptions let go of what they held here
                    if sub in upstream.subscribers:
                        upstream.release(sub)
                        sub._keys.pop(key, None)
                        sub._waiting_first.discard(key)
                upstream.shard = None
                upstream.rank = -1
                upstream.last_tick_at = None
                upstream.stale = False
                state.dirty.discard(key)
                if not upstream.subscribers:
                    del state.by_key[key]
            shard.keys.clear()

    def _subscribers_of(self, state: _BrokerState, shard: _Shard) -> set[Subscription]:
        subs: set[Subscription] = set()
        for key in shard.keys:
            upstream = state.by_key.get(key)
            if upstream is not None:
                subs.update(upstream.subscribers)
        return subs

    def _route(self, state: _BrokerState, shard: _Shard, batch: list[Event]) -> None:
        """Hand one frame's events to the subscribers holding each instrument (the hot path).

        An instrument's ticks go to whoever holds it, whether or not its subscribe request has completed
        (a snapshot may come with the answer, before the request returns).
        """
        by_key = state.by_key
        by_segment = state.config.keyed_by_segment
        per_sub: dict[Subscription, list[Event]] = {}
        now = trio.current_time()
        ticks = 0
        out = 0
        for event in batch:
            if type(event) is Tick:
                ticks += 1
                upstream = by_key.get(
                    (event.segment, event.instrument_token) if by_segment else event.instrument_token
                )
                if upstream is None:
                    continue  # in flight when it was unsubscribed
                event.symbol = upstream.info.symbol
                upstream.last_tick_at = now
                if upstream.stale:
                    upstream.stale = False
                tick_rank = _RANK[event.mode]
                reduced: dict[int, Tick] | None = None
                for sub, rank in upstream.subscribers.items():
                    delivered: Tick = event
                    if rank < tick_rank:
                        if reduced is None:
                            reduced = {}
                        cached = reduced.get(rank)
                        if cached is None:
                            cached = reduced[rank] = _reduce(event, rank)
                        delivered = cached
                    pending = per_sub.get(sub)
                    if pending is None:
                        per_sub[sub] = [delivered]
                    else:
                        pending.append(delivered)
                    if sub._waiting_first:
                        sub._waiting_first.discard(upstream.info.key)
                        sub._update_ready()
                    out += 1
            elif isinstance(event, _STATUS_TYPES):
                self._on_status(state, shard, event, per_sub)
            elif type(event) is OrderUpdate:
                self._on_order_update(state, event)
            else:
                # Other per-instrument events (candles, open interest...) go to the instrument's holders;
                # segment-wide ones (market status, broker messages) to everyone on this connection.
                token = getattr(event, "instrument_token", None)
                if token is not None:
                    segment = getattr(event, "segment", None)
                    upstream = by_key.get((segment, token) if by_segment else token)
                    if upstream is None:
                        continue
                    if hasattr(event, "symbol"):
                        event.symbol = upstream.info.symbol
                    targets: Iterable[Subscription] = upstream.subscribers
                else:
                    targets = self._subscribers_of(state, shard)
                for sub in targets:
                    per_sub.setdefault(sub, []).append(event)
        if ticks:
            shard.ticks += ticks
            shard.last_tick_at = now
            self._ticks_in += ticks
            self._ticks_out += out
        for sub, events in per_sub.items():
            if ticks:
                sub.last_tick_at = now
            sub._queue.put(events)

    def _on_status(
        self, state: _BrokerState, shard: _Shard, event: Event, per_sub: dict[Subscription, list[Event]]
    ) -> None:
        self._order_status(state, shard, event)
        subs = self._subscribers_of(state, shard)
        if isinstance(event, Disconnected):
            if shard.lost_at is None:
                shard.lost_at = event.at
            shard.reconnects += 1
        elif (
            isinstance(event, (Resubscribed, Connected))
            and shard.lost_at is not None
            # With instruments held, the gap ends at Resubscribed (when data can flow again).
            and not (isinstance(event, Connected) and shard.keys)
        ):
            start, shard.lost_at = shard.lost_at, None
            for sub in subs:
                symbols = tuple(sorted(s for k, s in sub._keys.items() if k in shard.keys))
                gap = Gap(state.config.broker, shard.index, symbols, start, event.at)
                per_sub.setdefault(sub, []).extend((event, gap))
            return
        for sub in subs:
            per_sub.setdefault(sub, []).append(event)

    # ----------------------------------------------------------------------------------- order updates

    def _on_order_update(self, state: _BrokerState, update: OrderUpdate) -> None:
        """Hand an order update to the broker's streams, unless another connection brought it first."""
        listeners = state.order_listeners
        if not listeners:
            return
        fingerprint = _fingerprint(update)
        if fingerprint is not None:
            seen = state.orders_seen
            if fingerprint in seen:
                return
            seen[fingerprint] = None
            if len(seen) > _ORDERS_REMEMBERED:
                del seen[next(iter(seen))]
        for listener in listeners:
            listener._put(update)

    def _order_status(self, state: _BrokerState, shard: _Shard, event: Event) -> None:
        """Track the spans during which no connection of the broker is up (order updates cannot arrive)
        and hand each one, once it ends, to the order-update streams as a `Gap`."""
        if isinstance(event, Disconnected):
            others_up = any(s.feed.connected for s in state.shards if s is not shard and s.failed is None)
            if state.orders_down_since is None and not others_up:
                state.orders_down_since = event.at
        elif isinstance(event, Connected) and state.orders_down_since is not None:
            start, state.orders_down_since = state.orders_down_since, None
            for listener in state.order_listeners:
                since = max(start, listener._since)
                if since < event.at:
                    listener._put(Gap(state.config.broker, shard.index, (), since, event.at))

    # ----------------------------------------------------------------------------------- liveness

    async def _watch_stale(self, after: float) -> None:
        """Every so often, tell subscribers about instruments that stopped ticking on a live connection."""
        period = max(0.05, min(1.0, after / 4))
        while True:
            await trio.sleep(period)
            now = trio.current_time()
            wall = time.time()
            for state in self._brokers.values():
                quiet: dict[Subscription, list[str]] = {}
                for upstream in state.by_key.values():
                    shard = upstream.shard
                    if upstream.rank < 0 or upstream.stale or shard is None or not shard.feed.connected:
                        continue
                    last = upstream.last_tick_at
                    if now - (upstream.subscribed_at if last is None else last) < after:
                        continue
                    upstream.stale = True
                    for sub in upstream.subscribers:
                        quiet.setdefault(sub, []).append(upstream.info.symbol)
                for sub, symbols in quiet.items():
                    sub._queue.put([Stale(state.config.broker, tuple(sorted(symbols)), after, wall)])

    def _close(self) -> None:
        self._closed = True
        for sub in list(self._subscriptions):
            sub._queue.close()
        for state in self._brokers.values():
            for listener in state.order_listeners:
                listener._close()
            state.order_listeners.clear()


def _check_brokers(brokers: Sequence[object]) -> None:
    if not brokers:
        raise ConfigurationError("open_market_data needs at least one broker")
    names: set[str] = set()
    for config in brokers:
        if not isinstance(config, BrokerConfig):
            raise ConfigurationError(
                f"a broker must be a broker configuration (KiteBroker, XtsBroker...), got {config!r:.60}"
            )
        name = config.name
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a broker's name must be a non-empty str, got {name!r:.60}")
        if name in names:
            raise ConfigurationError(f"two brokers are named {name!r}; give one another name")
        names.add(name)


def open_market_data(
    *brokers: BrokerConfig, stale_after: float | None = None
) -> AbstractAsyncContextManager[MarketData]:
    """Open the unified market-data manager over `brokers` for the duration of the ``async with`` block.

    Connections open lazily, when a subscription (or an order-update stream) first needs one, and each
    runs in its own task inside this block's nursery; leaving the block closes them all and ends every
    subscription. The arguments are checked when `open_market_data` is called.

    Args:
        brokers: broker configurations (`KiteBroker`, ...), each with a unique `name`.
        stale_after: if set, a subscription receives `Stale` when one of its instruments has not ticked
            for this many seconds while its connection was up: a positive, finite number of seconds.

    Cancellation: entering only opens the block's nursery (nothing to undo); leaving it cancels the
    manager's tasks and waits for its connections to close.

    Raises:
        ConfigurationError: no broker, something that is not a broker configuration, two brokers with
            the same name, or a `stale_after` that is not a positive finite number (nan, inf, a bool...).
    """
    _check_brokers(brokers)
    if stale_after is not None and not (
        type(stale_after) in (int, float) and math.isfinite(stale_after) and stale_after > 0
    ):
        raise ConfigurationError(f"stale_after must be a positive number of seconds, got {stale_after!r:.40}")
    return _open_market_data(brokers, stale_after)


@asynccontextmanager
async def _open_market_data(
    brokers: Sequence[BrokerConfig], stale_after: float | None
) -> AsyncIterator[MarketData]:
    async with open_service_nursery() as nursery:
        manager = MarketData(brokers, nursery, stale_after)
        nursery.start_soon(manager._tidy)
        if stale_after is not None:
            nursery.start_soon(manager._watch_stale, stale_after)
        try:
            yield manager
        finally:
            manager._close()
            nursery.cancel_scope.cancel()
