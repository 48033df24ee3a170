"""`open_market_data`: one subscribe API over every configured broker.

Inside: per broker, an instrument table (symbol -> upstream state with its subscribers and their modes),
shards (connections, each holding at most the broker's per-connection limit), and a token bucket for requests.
Each shard's feed calls the router, synchronously, with one batch per frame (in the feed's reader task, or,
for an XTS subscribe answer's snapshots, in the task that made the request), and the router puts the events
into the queues of the subscribers that hold each instrument (`SubscriberQueue.put` never blocks); the shard's
own task only waits for its feed to end. Subscription changes for one broker are serialised by a lock and
applied upstream as the difference of reference counts: one upstream subscription per instrument at the
highest mode any subscriber wants.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Hashable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Final

import attrs
import trio

from ._errors import (
    ConfigurationError,
    FeedClosedError,
    SubscriptionError,
    SubscriptionLimitError,
    TradingWsError,
)
from ._fanout import Overflow, QueueStatistics, SubscriberQueue
from ._model import (
    Broker,
    Connected,
    Disconnected,
    Event,
    Gap,
    Mode,
    Reconnecting,
    Resubscribed,
    Stale,
    Tick,
)
from ._ratelimit import TokenBucket
from ._transport import open_service_nursery
from .brokers._interface import BrokerConfig, BrokerFeed, InstrumentInfo

__all__ = [
    "BrokerStatistics",
    "ConnectionStatistics",
    "MarketData",
    "MarketDataStatistics",
    "Subscription",
    "SubscriptionStatistics",
    "UnknownSymbolError",
    "open_market_data",
]

logger = logging.getLogger("trading_ws.manager")

_RANK: Final = {Mode.LTP: 0, Mode.QUOTE: 1, Mode.FULL: 2}
_MODES: Final = (Mode.LTP, Mode.QUOTE, Mode.FULL)
_STATUS_TYPES: Final = (Connected, Disconnected, Reconnecting, Resubscribed)


class UnknownSymbolError(SubscriptionError):
    """Symbols that no configured broker's instrument master knows; nothing of the request was applied.

    Attributes:
        symbols: the unknown symbols, in request order.
    """

    def __init__(self, symbols: Sequence[str], brokers: Sequence[str]) -> None:
        names = ", ".join(repr(s) for s in symbols)
        super().__init__(f"unknown symbol(s) {names} (searched: {', '.join(brokers)})")
        self.symbols = tuple(symbols)


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
    """Instruments subscribed upstream."""
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
    """Ticks dropped by subscribers' overflow policies, summed."""


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
    """The rank subscribed upstream (-1: not subscribed)."""
    shard: _Shard | None = None
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


# ---------------------------------------------------------------------------------------------------------
# Subscription


class Subscription:
    """A live subscription: an async iterator of events for its symbols (see `MarketData.subscribe`).

    Yields `Tick` objects (shared with other subscribers: treat them as read-only) and the status events
    of the connections carrying its symbols (`Connected`, `Disconnected`, `Reconnecting`,
    `Resubscribed`, `Gap`, `Stale`). Ends with `SlowConsumerError` (``Overflow.BLOCK`` overflowed), the
    broker's terminal error (its credentials were refused for good), or `FeedClosedError` after the
    ``async with`` block or the manager ended.
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
        """The symbols held now."""
        return frozenset(self._keys.values())

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    def __anext__(self) -> Awaitable[Event]:
        """The next event; checkpoints at least once per 256 events.

        Returns the queue's own coroutine: one coroutine frame per event instead of two.
        """
        return self._queue.get()

    async def receive_batch(self) -> list[Event]:
        """Everything pending (waiting for at least one event): the cheapest way to keep up.

        Raises:
            SlowConsumerError, the broker's terminal error, or FeedClosedError, as the iterator does.
        """
        return await self._queue.get_batch()

    async def add(self, symbols: Iterable[str]) -> None:
        """Start receiving `symbols` too (in this subscription's mode).

        Raises:
            UnknownSymbolError: some symbols are unknown; nothing is added.
            SubscriptionLimitError: the broker's connections cannot hold them; nothing is added.
            FeedClosedError: the subscription has ended.
        """
        await self._manager._change(self, add=list(symbols), remove=(), mode=self._mode)

    async def remove(self, symbols: Iterable[str]) -> None:
        """Stop receiving `symbols`; their ticks still queued are discarded (counted in
        ``statistics().queue.discarded``), so no tick of a symbol no longer held is ever delivered.
        Unknown or unheld symbols are ignored.

        Raises:
            FeedClosedError: the subscription has ended.
        """
        await self._manager._change(self, add=(), remove=list(symbols), mode=self._mode)

    async def set_mode(self, mode: Mode) -> None:
        """Receive all symbols in `mode` from now on (upgrading the upstream subscription if needed,
        downgrading it when no other subscriber needs more).

        Raises:
            FeedClosedError: the subscription has ended.
        """
        await self._manager._change(self, add=(), remove=(), mode=mode)

    async def wait_ready(self) -> None:
        """Wait until every symbol held has delivered its first tick (a snapshot counts).

        Blocks until then; the caller owns the timeout (``with trio.fail_after(5): await
        sub.wait_ready()``). Symbols added later are waited for as well.
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
        self._brokers: dict[str, _BrokerState] = {}
        for config in brokers:
            if config.name in self._brokers:
                raise ConfigurationError(f"two brokers are named {config.name!r}; give one another name")
            self._brokers[config.name] = _BrokerState(config, TokenBucket(config.rate_limit))
        if not self._brokers:
            raise ConfigurationError("open_market_data needs at least one broker")
        self._nursery = nursery
        self._stale_after = stale_after
        self._subscriptions: set[Subscription] = set()
        self._closed = False
        self._ticks_in = 0
        self._ticks_out = 0
        self._dropped_closed = 0

    def __repr__(self) -> str:
        return f"<MarketData brokers={list(self._brokers)} subscriptions={len(self._subscriptions)}>"

    # ----------------------------------------------------------------------------------- public API

    @asynccontextmanager
    async def subscribe(
        self,
        symbols: Iterable[str],
        *,
        mode: Mode = Mode.QUOTE,
        broker: str | None = None,
        user_id: str | None = None,
        buffer: int = 10_000,
        overflow: Overflow = Overflow.BLOCK,
    ) -> AsyncIterator[Subscription]:
        """Subscribe to `symbols` for the duration of the block.

        Symbols are exchange-qualified (``"NSE:INFY"``, ``"NFO:NIFTY26DECFUT"``, ``"NSE:NIFTY 50"``) and
        resolved through the broker's instrument master (loaded once, on first use). Entering returns
        once every symbol is subscribed upstream (ticks may not have arrived yet: see
        `Subscription.wait_ready`). Leaving the block unsubscribes; the upstream subscription ends only
        when no other subscription holds the instrument (or is downgraded to the highest mode still
        wanted).

        Args:
            symbols: the instruments.
            mode: the amount of data per tick; richer upstream ticks are reduced to it.
            broker: the configured broker's name; default: the first broker whose master knows every
                symbol.
            user_id: a label for statistics and reprs.
            buffer: how many ticks may wait for the consumer (for ``CONFLATE``: how many instruments).
            overflow: what happens when they do not fit (see `Overflow`).

        Raises:
            UnknownSymbolError: symbols no broker knows (all of them are named; nothing is subscribed).
            SubscriptionLimitError: the broker's connections cannot hold the new instruments.
            ConfigurationError: an unknown broker name, or a buffer below 1.
            AuthenticationError, ConnectError: a new connection was needed and could not be opened.
            FeedClosedError: the manager is closed.
        """
        wanted = list(dict.fromkeys(symbols))
        if buffer < 1:
            raise ConfigurationError("buffer must be at least 1")
        state = await self._pick_broker(wanted, broker)
        subscription = Subscription(self, state, mode, user_id, buffer, overflow)
        self._subscriptions.add(subscription)
        try:
            await self._change(subscription, add=wanted, remove=(), mode=mode)
            yield subscription
        finally:
            with trio.CancelScope(shield=True):
                await self._release(subscription)

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
        return MarketDataStatistics(
            tuple(brokers), len(self._subscriptions), self._ticks_in, self._ticks_out, dropped
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
            state = self._brokers.get(name)
            if state is None:
                raise ConfigurationError(f"no broker named {name!r} (configured: {list(self._brokers)})")
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
        """Apply one subscription's change atomically (all or nothing before any upstream request)."""
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
            new_rank = _RANK[mode]
            add_infos = [master[s] for s in add if master[s].key not in sub._keys]
            remove_keys = [master[s].key for s in remove if s in master and master[s].key in sub._keys]
            # Plan: which upstream entries change, and do new ones fit?
            fresh = [i for i in add_infos if i.key not in state.by_key or state.by_key[i.key].rank < 0]
            self._check_capacity(state, len(fresh))
            touched: set[Hashable] = set()
            for info in add_infos:
                upstream = state.by_key.get(info.key)
                if upstream is None:
                    upstream = state.by_key[info.key] = _Upstream(info)
                upstream.hold(sub, new_rank)
                sub._keys[info.key] = info.symbol
                # Ready means a tick of it reached this subscriber, even if others had them before.
                sub._waiting_first.add(info.key)
                touched.add(info.key)
            gone: set[tuple[int | None, int]] = set()
            for key in remove_keys:
                upstream = state.by_key[key]
                upstream.release(sub)
                del sub._keys[key]
                sub._waiting_first.discard(key)
                touched.add(key)
                gone.add((upstream.info.segment, upstream.info.token))
            if gone:
                sub._queue.discard_ticks(gone)
            if new_rank != _RANK[sub._mode]:
                sub._mode = mode
                for key in sub._keys:
                    state.by_key[key].hold(sub, new_rank)
                    touched.add(key)
            sub._update_ready()
            await self._sync_upstream(state, touched)

    def _check_capacity(self, state: _BrokerState, new: int) -> None:
        if not new:
            return
        config = state.config
        held = sum(1 for u in state.by_key.values() if u.rank >= 0)
        total = config.max_instruments_per_connection * config.max_connections
        if held + new > total:
            raise SubscriptionLimitError(
                f"{config.name}: {new} more instruments would exceed {total} "
                f"({config.max_connections} connections x {config.max_instruments_per_connection}); "
                f"{held} are subscribed"
            )

    async def _sync_upstream(self, state: _BrokerState, keys: Iterable[Hashable]) -> None:
        """Bring the upstream subscriptions of `keys` in line with their subscribers (lock held)."""
        unsubscribe: dict[_Shard, list[Hashable]] = {}
        subscribe: dict[tuple[int, int], list[Hashable]] = {}  # (shard index, rank) -> keys
        placements: list[tuple[_Upstream, int]] = []
        for key in keys:
            upstream = state.by_key[key]
            wanted = upstream.wanted()
            if wanted < 0:  # wanted by nobody any more (or never subscribed, or its connection failed)
                if upstream.shard is not None:  # None: never placed, or its connection failed
                    unsubscribe.setdefault(upstream.shard, []).append(key)
                    upstream.shard.keys.discard(key)
                    upstream.shard = None
                upstream.rank = -1
                upstream.last_tick_at = None
                if not upstream.subscribers:
                    del state.by_key[key]
                continue
            if wanted == upstream.rank:
                continue
            placements.append((upstream, wanted))
        for shard, gone in unsubscribe.items():
            if shard.failed is None:
                await shard.feed.unsubscribe(gone)
        for upstream, wanted in placements:
            if upstream.shard is None:
                upstream.shard = await self._shard_with_room(state)
                upstream.shard.keys.add(upstream.info.key)
            subscribe.setdefault((upstream.shard.index, wanted), []).append(upstream.info.key)
            if upstream.rank < 0:
                upstream.subscribed_at = trio.current_time()
            upstream.rank = wanted
        for (index, rank), group in subscribe.items():
            await state.shards[index].feed.subscribe(group, _MODES[rank])

    async def _shard_with_room(self, state: _BrokerState) -> _Shard:
        limit = state.config.max_instruments_per_connection
        live = [s for s in state.shards if s.failed is None]
        for existing in live:
            if len(existing.keys) < limit:
                return existing
        if len(live) >= state.config.max_connections:  # pragma: no cover (capacity checked)
            raise SubscriptionLimitError(f"{state.config.name}: every connection is full")
        index = len(state.shards)
        shard: _Shard = await self._nursery.start(self._run_shard, state, index)
        state.shards.append(shard)
        return shard

    async def _release(self, sub: Subscription) -> None:
        """Leaving a subscribe block: drop its references, then close its queue. Runs shielded."""
        self._subscriptions.discard(sub)
        self._dropped_closed += sub._queue.dropped
        state = sub._broker
        keys = list(sub._keys)
        sub._queue.close()
        if self._closed or not keys:
            return
        with trio.move_on_after(5.0):  # a broker that does not take our unsubscribe must not hang exit
            async with state.lock:
                for key in keys:
                    upstream = state.by_key.get(key)
                    if upstream is not None:
                        upstream.release(sub)
                sub._keys.clear()
                with contextlib.suppress(FeedClosedError):  # the connection is gone, and its subscriptions
                    await self._sync_upstream(state, [k for k in keys if k in state.by_key])

    # ----------------------------------------------------------------------------------- shards

    async def _run_shard(
        self, state: _BrokerState, index: int, *, task_status: trio.TaskStatus[_Shard]
    ) -> None:
        """Own connection `index` of a broker: open it and route its batches until it fails or is
        cancelled. Startup errors propagate to the subscribe call that needed the connection.

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
        so that a later subscriber gets a fresh connection. The manager and other connections go on."""
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
        async with state.lock:
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
        """Hand one frame's events to the subscribers holding each instrument (the hot path)."""
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
                if upstream is None or upstream.rank < 0:
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


@asynccontextmanager
async def open_market_data(
    *brokers: BrokerConfig, stale_after: float | None = None
) -> AsyncIterator[MarketData]:
    """Open the unified market-data manager over `brokers` for the duration of the block.

    Connections open lazily, when a subscription first needs one, and each runs in its own task inside
    this block's nursery; leaving the block closes them all and ends every subscription.

    Args:
        brokers: broker configurations (`KiteBroker`, ...), each with a unique `name`.
        stale_after: if set, a subscription receives `Stale` when one of its instruments has not ticked
            for this many seconds while its connection was up.

    Raises:
        ConfigurationError: no broker, or two with the same name, or a non-positive `stale_after`.
    """
    if stale_after is not None and not (stale_after > 0 and math.isfinite(stale_after)):
        raise ConfigurationError("stale_after must be a positive number of seconds")
    async with open_service_nursery() as nursery:
        manager = MarketData(brokers, nursery, stale_after)
        if stale_after is not None:
            nursery.start_soon(manager._watch_stale, stale_after)
        try:
            yield manager
        finally:
            manager._close()
            nursery.cancel_scope.cancel()
