"""Fan-out: the router that hands each broker frame to the subscribers' queues, and those queues (bounded,
with explicit slow-consumer policies).

The manager's reader hands each subscriber one list per broker frame with `SubscriberQueue.put`, which is
synchronous and never blocks: a slow subscriber cannot stall the reader or any other subscriber. Every
event pending counts against the queue's `capacity`; what happens when a subscriber falls `capacity`
events behind is its `Overflow` policy, for ticks and the other market events alike. Status events
(connection changes, gaps, staleness, the broker's messages) are never dropped; they may take the queue
past `capacity`, by a bounded margin only (see `SubscriberQueue`).

This is a bounded memory channel specialised for market data: a plain `trio.MemoryChannel` cannot drop
its oldest item or replace a pending tick with a newer one, which is what slow consumers need. As with a
memory channel, the consumer side is atomic with respect to cancellation: a cancelled `get` or `get_batch`
took nothing from the queue.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

import attrs
import trio

from ._errors import ConfigurationError, FeedClosedError, TradingWsError
from ._model import (
    BrokerError,
    BrokerMessage,
    Connected,
    Disconnected,
    Event,
    Gap,
    MarketStatus,
    Mode,
    OrderUpdate,
    Reconnecting,
    Resubscribed,
    Stale,
    Tick,
    ltp_tick,
    quote_tick,
)

if TYPE_CHECKING:
    from ._ledger import BrokerLedger, Shard, SubscriberState

__all__ = [
    "Overflow",
    "QueueStatistics",
    "SlowConsumerError",
    "SubscriberQueue",
    "coerce_overflow",
    "reduce_tick",
    "route",
]

_CHECKPOINT_EVERY: Final = 256
#: `Mode.rank` by mode, for the router: a dictionary lookup per tick measured faster than the attribute.
_RANKS: Final = {mode: mode.rank for mode in Mode}
_STATUS_TYPES: Final = (Connected, Disconnected, Reconnecting, Resubscribed)
#: The events a subscriber queue never drops or conflates (everything else is market data, which follows
#: the overflow policy).
_KEPT_TYPES: Final = (
    Connected,
    Disconnected,
    Reconnecting,
    Resubscribed,
    Gap,
    Stale,
    BrokerMessage,
    BrokerError,
)
#: The least margin past its capacity a queue allows for events it never drops (see `SubscriberQueue`).
_KEPT_MARGIN: Final = 64
#: How many distinct order updates per broker are remembered to recognise the copies other connections
#: deliver (they arrive within milliseconds of each other).
_ORDERS_REMEMBERED: Final = 4096


def _nothing() -> None:
    return None


class SlowConsumerError(TradingWsError):
    """A subscription fell too far behind and was ended: with ``Overflow.BLOCK``, more than its capacity;
    with any policy, so far that even the margin for the events it never drops (status events) was used
    up (see `SubscriberQueue`).

    Attributes:
        lost: events that could not be queued when it ended.
    """

    def __init__(self, message: str, lost: int) -> None:
        super().__init__(message)
        self.lost = lost


class Overflow(enum.StrEnum):
    """What a subscription does when its consumer falls `buffer` events behind: with a tick, or another
    market event (`Candle`, `OpenInterest`, `MarketStatus`, `InstrumentPropertyChange`), that does not
    fit. Status events are never dropped or conflated (see `SubscriberQueue`).

    Wherever a policy is taken, its string value does as well (``overflow="conflate"``), as for `Mode`;
    members compare equal to their values.
    """

    BLOCK = "block"
    """Lose nothing: events wait in the subscription's buffer. The feed never waits for a slow consumer
    (that would stall everyone), so when the buffer is full the subscription ends with
    `SlowConsumerError` — loudly, never by silently skipping ticks."""
    DROP_OLDEST = "drop_oldest"
    """Keep the newest market events; the oldest pending ticks and market events are dropped (and
    counted) to keep the queue at `buffer`."""
    DROP_NEWEST = "drop_newest"
    """Keep the oldest; new ticks and market events that do not fit are dropped (and counted)."""
    CONFLATE = "conflate"
    """Keep only the latest pending tick per instrument (and the latest market event per event type and
    instrument, or per type and segment for `MarketStatus`), in the order they first became pending: a
    slow consumer always reads the newest price of everything it holds. Replaced ones are counted as
    ``conflated`` (superseded, not lost); the buffer bounds the number of entries pending, and a new
    one that does not fit is dropped (and counted as ``dropped``)."""


_OVERFLOWS: Final = {member.value: member for member in Overflow}


def coerce_overflow(value: object) -> Overflow:
    """`value` as an `Overflow`: a member, or one of its string values (``"block"``, ``"drop_oldest"``,
    ``"drop_newest"``, ``"conflate"``).

    Every entry point that takes a policy calls this before it records anything, so that a bad one is
    refused up front instead of silently meaning ``BLOCK``. Does not block.

    Raises:
        ConfigurationError: anything else (``"CONFLATE"``, ``"drop"``, None, 1...); the message lists the
            accepted values.
    """
    if type(value) is Overflow:
        return value
    if isinstance(value, str):
        member = _OVERFLOWS.get(value)
        if member is not None:
            return member
    accepted = ", ".join(repr(v) for v in _OVERFLOWS)
    raise ConfigurationError(f"overflow must be an Overflow or one of {accepted}, got {value!r:.40}")


@attrs.frozen
class QueueStatistics:
    """Counters of one subscriber queue."""

    received: int
    """Events offered to this subscriber (ticks, other market events and status events)."""
    delivered: int
    """Events handed to the consumer."""
    dropped: int
    """Ticks and market events lost to the overflow policy: never delivered, and nothing newer of theirs
    was kept instead (status events are never dropped)."""
    depth: int
    """Events waiting now (every kind: what counts against the buffer)."""
    peak: int
    """The most events ever waiting at once."""
    discarded: int = 0
    """Queued ticks removed because their symbol was removed from the subscription (not drops)."""
    conflated: int = 0
    """Ticks and market events replaced by a newer one of the same key before they were read
    (``CONFLATE`` only): superseded, not lost. Always
    ``received == delivered + dropped + conflated + depth + discarded``."""


class SubscriberQueue:
    """A bounded, never-blocking-the-producer queue of events for one consumer.

    `put` (synchronous, for the producer) applies the overflow policy; `get`/`get_batch` (async, for the
    consumer) wait for events. `close` ends the queue: the consumer drains what is pending, then gets
    `FeedClosedError`, or the error given to `close`.

    Every pending event counts against `capacity` (and in ``depth`` and ``peak``). Ticks and the other
    market events (`Candle`, `OpenInterest`, `MarketStatus`, `InstrumentPropertyChange`) follow the
    `Overflow` policy (``CONFLATE`` keys a tick by instrument, another market event by its type and
    instrument, or type and segment). Status events (`Connected`, `Disconnected`, `Reconnecting`,
    `Resubscribed`, `Gap`, `Stale`, and the broker's `BrokerMessage` and `BrokerError`) are never dropped
    or conflated: one that arrives when the queue is full is queued all the same (``DROP_OLDEST`` first
    drops the oldest pending ticks and market events to make room for it; the other policies let it
    pass `capacity`), up to a hard limit of ``capacity + max(capacity, 64)`` events pending; a status
    event beyond that ends the queue with `SlowConsumerError` (whatever the policy: it cannot be skipped
    silently, and a consumer that far behind is not reading). Market events arriving while the queue
    is at or past `capacity` do not fit (``BLOCK`` ends, ``DROP_OLDEST`` drops the oldest market events,
    ``DROP_NEWEST`` and ``CONFLATE`` the new ones).

    Raises:
        ConfigurationError: a capacity below 1, or an unknown overflow policy (see `coerce_overflow`).
    """

    def __init__(self, capacity: int, overflow: Overflow) -> None:
        if type(capacity) is not int or capacity < 1:
            raise ConfigurationError(f"capacity must be an int of at least 1, got {capacity!r:.40}")
        self._capacity = capacity
        self._limit = capacity + max(capacity, _KEPT_MARGIN)
        self._overflow = overflow = coerce_overflow(overflow)
        self._events: deque[Event] = deque()
        self._conflated: dict[object, Event] = {}
        self._depth = 0  # events pending, of every kind
        self._serial = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False
        self._error: BaseException | None = None
        self._since_checkpoint = 0
        self.on_close: Callable[[], None] = _nothing
        """Called once, synchronously, when the queue is closed (the subscription's end hook)."""
        self.received = 0
        self.delivered = 0
        self.dropped = 0
        self.conflated = 0
        self.discarded = 0
        self.peak = 0

    # ---------------------------------------------------------------------------------------------
    # Producer side (synchronous, never blocks)

    def put(self, events: list[Event]) -> None:
        """Queue a batch (ticks, market and status events) under the overflow policy. Never blocks.

        Does nothing once the queue is closed.
        """
        if self._closed:
            return
        count = len(events)
        self.received += count
        if self._overflow is Overflow.CONFLATE:
            if not self._put_conflated(events):
                return
        elif self._depth + count <= self._capacity:  # the common case: no look at the events
            self._events.extend(events)
            self._depth += count
        elif not self._put_over(events):
            return
        if self._depth > self.peak:
            self.peak = self._depth
        self._lot.unpark_all()

    def _put_over(self, events: list[Event]) -> bool:
        """`put` of a batch that does not fit in full (``BLOCK``, ``DROP_OLDEST``, ``DROP_NEWEST``); False
        if it ended the queue."""
        overflow = self._overflow
        capacity = self._capacity
        limit = self._limit
        append = self._events.append
        depth = self._depth
        lost = 0
        refused = 0
        for event in events:
            if type(event) is Tick or not isinstance(event, _KEPT_TYPES):
                if depth < capacity or overflow is Overflow.DROP_OLDEST:
                    append(event)
                    depth += 1
                elif overflow is Overflow.DROP_NEWEST:
                    self.dropped += 1
                else:
                    lost += 1  # BLOCK: lossless or loudly over
            elif depth < limit or overflow is Overflow.DROP_OLDEST:
                append(event)
                depth += 1
            else:
                refused += 1
        self._depth = depth
        if overflow is Overflow.DROP_OLDEST and depth > capacity:
            self._drop_oldest(depth - capacity)
            if self._depth > limit:  # status events alone hold more than the hard limit
                refused = self._depth - limit
        if lost:
            self._end_slow(f"fell more than {capacity} events behind (Overflow.BLOCK)", lost + refused)
            return False
        if refused:
            self._end_slow(
                f"fell more than {limit} events behind, the margin for status events (never dropped) "
                "included",
                refused,
            )
            return False
        return True

    def _end_slow(self, why: str, lost: int) -> None:
        self.close(
            SlowConsumerError(f"subscriber {why}; {lost} events could not be queued", lost), drain=False
        )

    def _drop_oldest(self, excess: int) -> None:
        """Drop the `excess` oldest pending ticks and market events (as many as there are); status events
        stay, in their order."""
        events = self._events
        kept: list[Event] = []
        while excess > 0 and events:
            event = events.popleft()
            if type(event) is Tick or not isinstance(event, _KEPT_TYPES):
                excess -= 1
                self._depth -= 1
                self.dropped += 1
            else:
                kept.append(event)
        events.extendleft(reversed(kept))

    def _put_conflated(self, events: list[Event]) -> bool:
        """`put` for ``CONFLATE``; False if it ended the queue."""
        pending = self._conflated
        capacity = self._capacity
        key: object
        for event in events:
            if type(event) is Tick:
                key = (event.segment, event.instrument_token)
            elif isinstance(event, _KEPT_TYPES):
                if self._depth >= self._limit:
                    self._end_slow(
                        f"fell more than {self._limit} events behind, the margin for status events "
                        "(never dropped) included",
                        1,
                    )
                    return False
                self._serial += 1
                pending[("status", self._serial)] = event
                self._depth += 1
                continue
            elif isinstance(event, MarketStatus):
                key = (MarketStatus, event.segment)
            else:
                key = (type(event), getattr(event, "segment", None), getattr(event, "instrument_token", None))
            if key in pending:
                pending[key] = event  # keeps its place: fair across instruments
                self.conflated += 1
            elif self._depth < capacity:
                pending[key] = event
                self._depth += 1
            else:
                self.dropped += 1
        return True

    def discard_ticks(self, keys: set[tuple[int | None, int]]) -> int:
        """Remove queued ticks whose ``(segment, instrument_token)`` is in `keys`; returns how many."""
        removed = 0
        if self._overflow is Overflow.CONFLATE:
            for key in [k for k in self._conflated if k in keys]:
                del self._conflated[key]
                removed += 1
        else:
            kept: deque[Event] = deque()
            for event in self._events:
                if type(event) is Tick and (event.segment, event.instrument_token) in keys:
                    removed += 1
                else:
                    kept.append(event)
            self._events = kept
        self._depth -= removed
        self.discarded += removed
        return removed

    def close(self, error: BaseException | None = None, *, drain: bool = True) -> None:
        """End the queue. The consumer gets what is pending (unless `drain` is false), then `error`
        (default: `FeedClosedError`). Idempotent: only the first call's error counts."""
        if self._closed:
            return
        self._closed = True
        self._error = error
        if not drain:
            self._events.clear()
            self._conflated.clear()
            self._depth = 0
        self._lot.unpark_all()
        self.on_close()

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    def raise_if_closed(self) -> None:
        """Raise what the consumer gets once the queue is drained, if it is closed: the error given to
        `close`, or `FeedClosedError`. Does not block; returns if the queue is open."""
        if self._closed:
            self._raise_closed()

    # ---------------------------------------------------------------------------------------------
    # Consumer side

    def _take_all(self) -> list[Event]:
        if self._overflow is Overflow.CONFLATE:
            batch = list(self._conflated.values())
            self._conflated.clear()
        else:
            batch = list(self._events)
            self._events.clear()
        self._depth = 0
        self.delivered += len(batch)
        return batch

    def _pending(self) -> bool:
        return bool(self._conflated) if self._overflow is Overflow.CONFLATE else bool(self._events)

    def _raise_closed(self) -> None:
        if self._error is not None:
            raise self._error
        raise FeedClosedError("the subscription is closed")

    async def get_batch(self) -> list[Event]:
        """Everything pending, waiting until there is something. Checkpoints.

        Cancellation: if cancelled, nothing was taken from the queue.

        Raises:
            the error the queue was closed with (e.g. `SlowConsumerError`), or `FeedClosedError`, once
            nothing is pending any more.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        parked = False
        while not self._pending():
            if self._closed:
                self._raise_closed()
            await self._lot.park()
            parked = True
        batch = self._take_all()
        if not parked:  # parking was the schedule point; a second one would keep the batch alive longer
            await trio.lowlevel.cancel_shielded_checkpoint()
        return batch

    async def get(self) -> Event:
        """The next event, waiting if none is pending. Checkpoints at least once per 256 events.

        Cancellation: if cancelled, nothing was taken from the queue (the periodic checkpoint comes
        before the event is taken, never after).

        Raises:
            as `get_batch`.
        """
        if self._since_checkpoint >= _CHECKPOINT_EVERY:
            return await self._get_slow()
        if self._overflow is Overflow.CONFLATE:
            if not self._conflated:
                return await self._get_slow()
            key = next(iter(self._conflated))
            event = self._conflated.pop(key)
        else:
            if not self._events:
                return await self._get_slow()
            event = self._events.popleft()
        self._depth -= 1
        self.delivered += 1
        self._since_checkpoint += 1
        return event

    async def _get_slow(self) -> Event:
        """`get` when nothing is pending or a checkpoint is due: a full checkpoint, then one event."""
        await trio.lowlevel.checkpoint_if_cancelled()  # cancelled: nothing taken
        self._since_checkpoint = 0
        if self._pending():
            await trio.lowlevel.cancel_shielded_checkpoint()  # the schedule point, before taking anything
        while not self._pending():  # (re-checked: a close without draining may have emptied the queue)
            if self._closed:
                self._raise_closed()
            await self._lot.park()  # cancelled while parked: nothing taken
        return await self.get()  # takes one without checkpointing (the counter was reset)

    def statistics(self) -> QueueStatistics:
        """The queue's counters right now. Does not block."""
        return QueueStatistics(
            self.received,
            self.delivered,
            self.dropped,
            self._depth,
            self.peak,
            self.discarded,
            self.conflated,
        )


# ---------------------------------------------------------------------------------------------------------
# The router: one frame's events into the queues of the subscribers holding each instrument


def route(ledger: BrokerLedger, shard: Shard, batch: list[Event], now: float) -> None:
    """Hand one frame's events from connection `shard` to the subscribers holding each instrument, as the
    broker's `ledger` records them (the hot path: one list per subscriber per frame, never an await).

    An instrument's ticks go to whoever holds it, whether or not its subscribe request has completed (a
    snapshot may come with the answer, before the request returns); a richer tick is reduced (once per
    mode) for holders of a lower mode. Status events go to everyone on the connection (with a `Gap` when
    a loss ends), order updates to the broker's order streams, other per-instrument events to the
    instrument's holders. `now` is the trio clock. Does not block; raises nothing of its own.
    """
    by_key = ledger.by_key
    by_segment = ledger.keyed_by_segment
    ranks = _RANKS
    per_sub: dict[SubscriberState, list[Event]] = {}
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
            tick_rank = ranks[event.mode]
            reduced: dict[int, Tick] | None = None
            for sub, rank in upstream.subscribers.items():
                delivered: Tick = event
                if rank < tick_rank:
                    if reduced is None:
                        reduced = {}
                    cached = reduced.get(rank)
                    if cached is None:
                        cached = reduced[rank] = reduce_tick(event, rank)
                    delivered = cached
                pending = per_sub.get(sub)
                if pending is None:
                    per_sub[sub] = [delivered]
                else:
                    pending.append(delivered)
                if sub.waiting:
                    sub.waiting.discard(upstream.info.key)
                    sub.notify()
                out += 1
        elif isinstance(event, _STATUS_TYPES):
            _on_status(ledger, shard, event, per_sub)
        elif type(event) is OrderUpdate:
            _on_order_update(ledger, event)
        else:
            # Other per-instrument events (candles, open interest...) go to the instrument's holders;
            # segment-wide ones (market status, broker messages) to everyone on this connection.
            token = getattr(event, "instrument_token", None)
            if token is not None:
                segment = getattr(event, "segment", None)
                holder = by_key.get((segment, token) if by_segment else token)
                if holder is None:
                    continue
                if hasattr(event, "symbol"):
                    event.symbol = holder.info.symbol
                targets: Iterable[SubscriberState] = holder.subscribers
            else:
                targets = ledger.subscribers_of(shard)
            for sub in targets:
                per_sub.setdefault(sub, []).append(event)
    if ticks:
        shard.ticks += ticks
        shard.last_tick_at = now
        ledger.ticks_in += ticks
        ledger.ticks_out += out
    for sub, events in per_sub.items():
        if ticks:
            sub.last_tick_at = now
        sub.queue.put(events)


def _on_status(
    ledger: BrokerLedger, shard: Shard, event: Event, per_sub: dict[SubscriberState, list[Event]]
) -> None:
    _order_status(ledger, shard, event)
    subs = ledger.subscribers_of(shard)
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
            symbols = tuple(sorted(s for k, s in sub.keys.items() if k in shard.keys))
            gap = Gap(ledger.broker, shard.index, symbols, start, event.at)
            per_sub.setdefault(sub, []).extend((event, gap))
        return
    for sub in subs:
        per_sub.setdefault(sub, []).append(event)


def _on_order_update(ledger: BrokerLedger, update: OrderUpdate) -> None:
    """Hand an order update to the broker's streams, unless another connection brought it first."""
    listeners = ledger.order_listeners
    if not listeners:
        return
    fingerprint = _fingerprint(update)
    if fingerprint is not None:
        seen = ledger.orders_seen
        if fingerprint in seen:
            return
        seen[fingerprint] = None
        if len(seen) > _ORDERS_REMEMBERED:
            del seen[next(iter(seen))]
    for listener in listeners:
        listener._put(update)


def _order_status(ledger: BrokerLedger, shard: Shard, event: Event) -> None:
    """Track the spans during which no connection of the broker is up (order updates cannot arrive) and
    hand each one, once it ends, to the order-update streams as a `Gap`."""
    if isinstance(event, Disconnected):
        others_up = any(s.feed.connected for s in ledger.shards if s is not shard and s.failed is None)
        if ledger.orders_down_since is None and not others_up:
            ledger.orders_down_since = event.at
    elif isinstance(event, Connected) and ledger.orders_down_since is not None:
        start, ledger.orders_down_since = ledger.orders_down_since, None
        for listener in ledger.order_listeners:
            since = max(start, listener._since)
            if since < event.at:
                listener._put(Gap(ledger.broker, shard.index, (), since, event.at))


def reduce_tick(tick: Tick, rank: int) -> Tick:
    """A copy of `tick` carrying only what mode `rank` carries (LTP: the price; QUOTE: no depth).

    The builders' leading arguments are passed by position (each names the field it reads): a call with
    twenty keywords costs about twice as much, and a reduction runs once per mode per tick.
    """
    if rank == 0:
        return ltp_tick(
            tick.broker,
            tick.instrument_token,
            tick.tradable,
            tick.last_price,
            None,  # last_quantity
            None,  # exchange_time
            tick.received_at,
            tick.segment,
            tick.symbol,
        )
    return quote_tick(
        tick.broker,
        tick.instrument_token,
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
        None,  # depth
        tick.received_at,
        tick.segment,
        oi=tick.oi,
        oi_day_high=tick.oi_day_high,
        oi_day_low=tick.oi_day_low,
        symbol=tick.symbol,
    )


def _fingerprint(update: OrderUpdate) -> bytes | None:
    """What identifies an order update across connections: a digest of its payload (the copies other
    connections deliver are identical; `received_at` is not part of it). None if it cannot be serialised
    (it is then delivered without being compared)."""
    try:
        text = json.dumps(update.data, sort_keys=True, separators=(",", ":"), default=repr)
    except (TypeError, ValueError, RecursionError):
        return None
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
