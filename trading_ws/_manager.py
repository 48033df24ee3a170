"""`open_market_data`: one subscribe API over every configured broker.

The manager is a shell around a sans-IO ledger (`_ledger.BrokerLedger`, one per broker): the ledger keeps
who holds what, what upstream holds and on which connection, routes each frame's events to the holders'
queues, and answers each change of a subscription with a plan; the shell here resolves symbols through
the broker's instrument master, makes the plan's requests under the broker's lock (opening connections
in its nursery as the plan asks), commits or rolls back the change, and owns the tasks: one per
connection, the tidy task (which lowers upstream where a failed or cancelled change left more than is
wanted) and the stale watcher.

Each connection's feed calls the router, synchronously, with one batch per frame (in the feed's reader
task, or, for an XTS subscribe answer's snapshots, in the task that made the request), and the router
puts the events into the queues of the subscribers that hold each instrument (`SubscriberQueue.put` never
blocks); the connection's own task only waits for its feed to end. Order updates go to the broker's
order-update streams instead, each distinct update once, whichever connection it came on.

A change is applied upstream as the difference of reference counts: one upstream subscription per
instrument at the highest mode any subscriber wants. It first makes the requests that raise upstream (new
instruments, higher modes); if one fails or is cancelled, the change is rolled back in the ledger and
nothing of it remains but, at worst, upstream subscriptions nobody wants, which are harmless and are
lowered later. Only then is the change committed in full, and the requests that lower upstream
(unsubscribe, downgrade) follow; what they leave undone stays `dirty` in the ledger and is finished by
the tidy task (a lowering the broker refuses is retried there, with backoff, until it is taken or its
connection ends). So a held instrument is always subscribed upstream in at least the mode its holders want.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Hashable, Iterable, Mapping, Sequence
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
from ._fanout import Overflow, SubscriberQueue, coerce_overflow, route
from ._ledger import MODES, BrokerLedger, Plan, Request, Shard, SubscriberState
from ._model import Broker, Event, Mode, Stale, coerce_mode
from ._ratelimit import TokenBucket
from ._stats import (
    BrokerStatistics as BrokerStatistics,
    ConnectionStatistics as ConnectionStatistics,
    MarketDataStatistics as MarketDataStatistics,
    SubscriptionStatistics as SubscriptionStatistics,
)
from ._subscription import (
    OrderUpdates as OrderUpdates,
    Subscription as Subscription,
    check_symbols as _check_symbols,
)
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

#: How long leaving a subscribe block waits (shielded) for its upstream unsubscribe; the rest is finished
#: in the background.
_LEAVE_TIMEOUT: Final = 5.0
#: The tidy task's backoff (trio clock) after a pass that left something it could not lower (the broker
#: refused or failed the unsubscribe or downgrade): first retry after this many seconds, doubling...
_TIDY_RETRY_FIRST: Final = 1.0
#: ...up to this many seconds between retries, for as long as it fails (until the connection ends).
_TIDY_RETRY_MAX: Final = 60.0
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


# ---------------------------------------------------------------------------------------------------------
# The shell's per-broker state


@attrs.define(eq=False)
class _BrokerState:
    config: BrokerConfig
    limiter: TokenBucket
    ledger: BrokerLedger
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    master: Mapping[str, InstrumentInfo] | None = None
    feeds: list[BrokerFeed] = attrs.field(factory=list)
    """The feed of each connection, by index (the ledger's `Shard` only reads whether it is up)."""


def _broker_state(config: BrokerConfig) -> _BrokerState:
    ledger = BrokerLedger(
        config.name,
        config.broker,
        config.max_instruments_per_connection,
        config.max_connections,
        config.keyed_by_segment,
    )
    return _BrokerState(config, TokenBucket(config.rate_limit), ledger)


# ---------------------------------------------------------------------------------------------------------
# The manager


class MarketData:
    """The unified manager; create it with `open_market_data`."""

    def __init__(self, brokers: Sequence[BrokerConfig], nursery: trio.Nursery, stale_after: float | None):
        _check_brokers(brokers)
        self._brokers: dict[str, _BrokerState] = {config.name: _broker_state(config) for config in brokers}
        self._nursery = nursery
        self._stale_after = stale_after
        self._subscriptions: set[SubscriberState] = set()
        self._closed = False
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
            buffer: how many events may wait for the consumer, of every kind (for ``CONFLATE``: how
                many instruments and events pending); status events, never dropped, may pass it by a
                bounded margin (see `SubscriberQueue`).
            overflow: what happens when ticks and other market events do not fit (an `Overflow`, or its
                value: ``"block"``, ``"drop_oldest"``, ``"drop_newest"``, ``"conflate"``).

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
        queue = SubscriberQueue(buffer, overflow)
        record = SubscriberState(queue, mode)
        subscription = Subscription(
            record,
            queue,
            functools.partial(self._change, state, record),
            broker=state.config.name,
            user_id=user_id,
            overflow=overflow,
        )
        self._subscriptions.add(record)
        try:
            await self._change(state, record, wanted, (), mode)
            yield subscription
        finally:
            with trio.CancelScope(shield=True):
                await self._release(state, record)

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
            if not state.ledger.live_shards():
                await self._open_shard(state)
            state.ledger.order_listeners.add(stream)
        try:
            yield stream
        finally:
            state.ledger.order_listeners.discard(stream)
            stream._close()

    def statistics(self) -> MarketDataStatistics:
        """Counters for every broker, connection and subscription. Does not block."""
        now = trio.current_time()
        brokers = []
        ticks_in = ticks_out = 0
        for name, state in self._brokers.items():
            ledger = state.ledger
            connections = tuple(
                ConnectionStatistics(
                    connection=shard.index,
                    connected=shard.feed.connected,
                    instruments=len(shard.keys),
                    ticks=shard.ticks,
                    reconnects=shard.reconnects,
                    last_tick_age=None if shard.last_tick_at is None else now - shard.last_tick_at,
                )
                for shard in ledger.shards
            )
            brokers.append(
                BrokerStatistics(
                    name, state.config.broker, ledger.instruments(), connections, state.limiter.waited
                )
            )
            ticks_in += ledger.ticks_in
            ticks_out += ledger.ticks_out
        dropped = self._dropped_closed + sum(s.queue.dropped for s in self._subscriptions)
        conflated = self._conflated_closed + sum(s.queue.conflated for s in self._subscriptions)
        return MarketDataStatistics(
            tuple(brokers), len(self._subscriptions), ticks_in, ticks_out, dropped, conflated
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
        self,
        state: _BrokerState,
        sub: SubscriberState,
        add: Sequence[str],
        remove: Sequence[str],
        mode: Mode | None,
    ) -> None:
        """Apply one subscription's change, all or nothing (see the module docstring). `mode` None keeps
        the subscription's mode, as it is once the lock is taken (the ledger reads it then).

        The ledger applies it to what is wanted and plans the requests that raise upstream; they are made
        here (the change is rolled back if one fails or is cancelled), then the ones that lower upstream.
        """
        if self._closed or sub.queue.closed:
            raise FeedClosedError("the subscription has ended")
        master = await self._master(state)
        unknown = [s for s in add if s not in master]
        if unknown:
            raise UnknownSymbolError(unknown, [state.config.name])
        ledger = state.ledger
        async with state.lock:
            if self._closed or sub.queue.closed:  # ended while waiting for the lock
                raise FeedClosedError("the subscription has ended")
            if ledger.dirty:  # what earlier changes left upstream: lowered first, so capacity is right
                await self._lower(state, set(ledger.dirty))
            change = ledger.change(
                sub, [master[s] for s in add], [master[s].key for s in remove if s in master], mode
            )
            try:
                await self._carry_out(state, change.plan)
                if self._closed or sub.queue.closed:
                    raise FeedClosedError("the subscription ended while it was being changed")
            except BaseException as exc:
                ledger.rollback(change)
                if ledger.dirty:
                    self._tidy_wanted.set()
                if type(exc) is FeedClosedError:
                    if self._closed or sub.queue.closed:
                        raise FeedClosedError("the subscription has ended") from exc
                    raise ConnectError(
                        f"broker {state.config.name!r}: the connection failed while the request was made; "
                        "nothing of the change was applied"
                    ) from exc
                raise
            ledger.commit(change)
            await self._lower(state, change.touched)

    async def _carry_out(self, state: _BrokerState, plan: Plan) -> None:
        """Make a plan's requests in order, opening the connections it asks for (lock held). Each request
        is recorded once made; an error propagates."""
        for request in plan.requests:
            if request.shard >= len(state.feeds):  # a connection the plan opens (they come in order)
                assert request.shard in plan.opens, (request.shard, plan.opens)
                await self._open_shard(state)
            await self._request(state, request)

    async def _lower(self, state: _BrokerState, keys: Iterable[Hashable]) -> None:
        """Take upstream down to what the subscribers of `keys` want (lock held).

        Keys left to do stay dirty. A request that fails is logged (the keys stay dirty: the next change
        lowers them first, and the tidy task retries them, with backoff, until the broker takes the
        request or the connection ends); a cancellation propagates, and the tidy task finishes the rest.
        """
        ledger = state.ledger
        for request in ledger.plan_lower(keys):
            try:
                await self._request(state, request)
            except trio.Cancelled:
                self._tidy_wanted.set()
                raise
            except FeedClosedError:
                continue  # the connection is gone, and what it held with it
            except Exception as exc:
                self._tidy_wanted.set()
                logger.warning(
                    "broker %r connection %d: %s of %d instruments failed (%s: %s); retried in the "
                    "background until it succeeds or the connection ends",
                    state.config.name,
                    request.shard,
                    "unsubscribe" if request.rank < 0 else f"downgrade to {MODES[request.rank].value}",
                    len(request.upstreams),
                    type(exc).__name__,
                    exc,
                )
                continue
            ledger.lowered(request)

    async def _request(self, state: _BrokerState, request: Request) -> None:
        """One upstream request; recorded in the ledger once the feed has taken it (a feed's request is
        all or nothing), or, if it failed otherwise than by a cancellation, as uncertain."""
        feed = state.feeds[request.shard]
        try:
            if request.rank < 0:
                await feed.unsubscribe(request.keys)
            else:
                await feed.subscribe(request.keys, MODES[request.rank])
        except trio.Cancelled:
            raise  # a cancelled request was not made
        except BaseException:
            state.ledger.failed(request, trio.current_time())
            raise
        state.ledger.record(request, trio.current_time())

    async def _open_shard(self, state: _BrokerState) -> Shard:
        """Open a new connection for `state` (lock held). Cancelled or failing: no connection."""
        if not state.ledger.can_open():
            raise SubscriptionLimitError(f"{state.config.name}: every connection is full")
        index = len(state.feeds)
        started: tuple[Shard, BrokerFeed] = await self._nursery.start(self._run_shard, state, index)
        shard, feed = started
        state.feeds.append(feed)
        state.ledger.add_shard(shard)
        return shard

    async def _release(self, state: _BrokerState, sub: SubscriberState) -> None:
        """Leaving a subscribe block (runs shielded): close its queue and let go of its instruments at
        once (without waiting for the lock: nothing of it is in flight any more), then lower upstream,
        for at most `_LEAVE_TIMEOUT` seconds; the tidy task finishes what is left."""
        self._subscriptions.discard(sub)
        self._dropped_closed += sub.queue.dropped
        self._conflated_closed += sub.queue.conflated
        sub.queue.close()
        keys = state.ledger.leave(sub)
        if self._closed or not keys:
            return
        with trio.move_on_after(_LEAVE_TIMEOUT):  # a broker that does not take our unsubscribe
            async with state.lock:
                await self._lower(state, keys)
        if state.ledger.dirty:
            self._tidy_wanted.set()

    async def _tidy(self) -> None:
        """Lower upstream where cancelled or failed changes, or refused lowerings, left more than is
        wanted (`dirty`), in the background; runs for the manager's lifetime.

        Woken by whatever leaves something dirty. A pass after which something is still dirty (the
        broker failed or refused an unsubscribe or downgrade: `_lower` logged it) is retried after a
        backoff on trio's clock (`_TIDY_RETRY_FIRST` seconds, doubling up to `_TIDY_RETRY_MAX`), for as
        long as it fails; what a connection that failed for good held is no longer dirty (`detach`), so
        the retries end with the request's success or the connection's end. A pass that leaves nothing
        dirty resets the backoff.
        """
        delay = 0.0
        while True:
            if delay:
                with trio.move_on_after(delay):  # retry then, or sooner if something new is dirty
                    await self._tidy_wanted.wait()
            else:
                await self._tidy_wanted.wait()
            self._tidy_wanted = trio.Event()
            for state in self._brokers.values():
                if state.ledger.dirty:
                    async with state.lock:
                        if state.ledger.dirty:
                            await self._lower(state, set(state.ledger.dirty))
            if any(state.ledger.dirty for state in self._brokers.values()):
                delay = min(_TIDY_RETRY_MAX, delay * 2) if delay else _TIDY_RETRY_FIRST
                self._tidy_wanted = trio.Event()  # the failures of this pass set it: wait the delay
            else:
                delay = 0.0

    # ----------------------------------------------------------------------------------- shards

    async def _run_shard(
        self, state: _BrokerState, index: int, *, task_status: trio.TaskStatus[tuple[Shard, BrokerFeed]]
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
        shard: Shard | None = None
        started = False
        early: list[Event] = []

        def sink(batch: list[Event]) -> None:
            if shard is None:
                early.extend(batch)
            else:
                self._route(state, shard, batch)

        try:
            async with state.config.open_feed(index, state.limiter, sink) as feed:
                shard = Shard(index, feed)
                if early:
                    self._route(state, shard, early)
                    early.clear()
                task_status.started((shard, feed))
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

    async def _fail_shard(self, state: _BrokerState, shard: Shard, exc: Exception) -> None:
        """Connection `shard` failed for good (credentials refused and not renewable, attempts exhausted,
        or a bug in routing): end every subscription on it with `exc`, and take its instruments off it,
        so that a later subscriber gets a fresh connection. The manager and other connections go on.
        Order-update streams end too when it was the broker's last live connection."""
        logger.error(
            "broker %r connection %d failed: %s",
            state.config.name,
            shard.index,
            exc,
            exc_info=None if isinstance(exc, TradingWsError) else exc,
        )
        ended = state.ledger.fail(shard, exc)
        async with state.lock:
            state.ledger.detach(shard, ended, exc)

    def _route(self, state: _BrokerState, shard: Shard, batch: list[Event]) -> None:
        """Hand one frame's events to their subscribers (the ledger's router; the hot path)."""
        route(state.ledger, shard, batch, trio.current_time())

    # ----------------------------------------------------------------------------------- liveness

    async def _watch_stale(self, after: float) -> None:
        """Every so often, tell subscribers about instruments that stopped ticking on a live connection."""
        period = max(0.05, min(1.0, after / 4))
        while True:
            await trio.sleep(period)
            now = trio.current_time()
            wall = time.time()
            for state in self._brokers.values():
                broker = state.config.broker
                for sub, symbols in state.ledger.scan_stale(now, after).items():
                    sub.queue.put([Stale(broker, symbols, after, wall)])

    def _close(self) -> None:
        self._closed = True
        for sub in list(self._subscriptions):
            sub.queue.close()
        for state in self._brokers.values():
            state.ledger.close_order_streams()


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
