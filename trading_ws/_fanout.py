"""Fan-out: the router that hands each broker frame to the subscribers' queues, and those queues (bounded,
with explicit slow-consumer policies).

The manager's reader hands each subscriber one list per broker frame with `SubscriberQueue.put`, which is
synchronous and never blocks: a slow subscriber cannot stall the reader or any other subscriber. What
happens when a subscriber falls `capacity` ticks behind is its `Overflow` policy. Status events
(connection changes, gaps) are never dropped and never count against the capacity.

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
    Connected,
    Disconnected,
    Event,
    Gap,
    Mode,
    OrderUpdate,
    Reconnecting,
    Resubscribed,
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
#: How many distinct order updates per broker are remembered to recognise the copies other connections
#: deliver (they arrive within milliseconds of each other).
_ORDERS_REMEMBERED: Final = 4096


def _nothing() -> None:
    return None


class SlowConsumerError(TradingWsError):
    """A subscription with ``Overflow.BLOCK`` fell more than its capacity behind and was ended.

    Attributes:
        lost: ticks that could not be queued when it ended.
    """

    def __init__(self, message: str, lost: int) -> None:
        super().__init__(message)
        self.lost = lost


class Overflow(enum.StrEnum):
    """What a subscription does when its consumer falls `buffer` ticks behind.

    Wherever a policy is taken, its string value does as well (``overflow="conflate"``), as for `Mode`;
    members compare equal to their values.
    """

    BLOCK = "block"
    """Lose nothing: ticks wait in the subscription's buffer. The feed never waits for a slow consumer
    (that would stall everyone), so when the buffer is full the subscription ends with
    `SlowConsumerError` — loudly, never by silently skipping ticks."""
    DROP_OLDEST = "drop_oldest"
    """Keep the newest `buffer` ticks; the oldest pending ones are dropped (and counted)."""
    DROP_NEWEST = "drop_newest"
    """Keep the oldest `buffer` ticks; new ones that do not fit are dropped (and counted)."""
    CONFLATE = "conflate"
    """Keep only the latest pending tick per instrument, in the order instruments first became
    pending: a slow consumer always reads the newest price of everything it holds. Replaced ticks are
    counted as ``conflated`` (superseded, not lost); the buffer bounds the number of instruments pending,
    and a tick of a new instrument that does not fit is dropped (and counted as ``dropped``)."""


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
    """Ticks offered to this subscriber."""
    delivered: int
    """Events handed to the consumer (ticks and status events)."""
    dropped: int
    """Ticks lost to the overflow policy: never delivered, and no newer tick of theirs was kept instead."""
    depth: int
    """Ticks waiting now."""
    peak: int
    """The most ticks ever waiting at once."""
    discarded: int = 0
    """Queued ticks removed because their symbol was removed from the subscription (not drops)."""
    conflated: int = 0
    """Ticks replaced by a newer tick of the same instrument before they were read (``CONFLATE`` only):
    superseded, not lost. Always
    ``received == (ticks consumed) + dropped + conflated + depth + discarded``."""


class SubscriberQueue:
    """A bounded, never-blocking-the-producer queue of events for one consumer.

    `put` (synchronous, for the producer) applies the overflow policy; `get`/`get_batch` (async, for the
    consumer) wait for events. `close` ends the queue: the consumer drains what is pending, then gets
    `FeedClosedError`, or the error given to `close`.

    Raises:
        ConfigurationError: a capacity below 1, or an unknown overflow policy (see `coerce_overflow`).
    """

    def __init__(self, capacity: int, overflow: Overflow) -> None:
        if type(capacity) is not int or capacity < 1:
            raise ConfigurationError(f"capacity must be an int of at least 1, got {capacity!r:.40}")
        self._capacity = capacity
        self._overflow = overflow = coerce_overflow(overflow)
        self._events: deque[Event] = deque()
        self._conflated: dict[object, Event] = {}
        self._ticks = 0  # ticks pending (status events excluded)
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
        """Queue a batch (ticks and status events) under the overflow policy. Never blocks.

        Does nothing once the queue is closed.
        """
        if self._closed:
            return
        overflow = self._overflow
        if overflow is Overflow.CONFLATE:
            self._put_conflated(events)
        else:
            incoming = 0
            for event in events:
                if type(event) is Tick:
                    incoming += 1
            self.received += incoming
            room = self._capacity - self._ticks
            if incoming <= room:
                self._events.extend(events)
                self._ticks += incoming
            elif overflow is Overflow.DROP_OLDEST:
                self._events.extend(events)
                self._ticks += incoming
                self._drop_oldest(self._ticks - self._capacity)
            elif overflow is Overflow.DROP_NEWEST:
                self._put_newest_dropped(events, room)
            else:  # BLOCK: lossless or loudly over
                lost = incoming - max(room, 0)
                self.close(
                    SlowConsumerError(
                        f"subscriber fell more than {self._capacity} ticks behind (Overflow.BLOCK); "
                        f"{lost} ticks could not be queued",
                        lost,
                    ),
                    drain=False,
                )
                return
        if self._ticks > self.peak:
            self.peak = self._ticks
        self._lot.unpark_all()

    def _drop_oldest(self, excess: int) -> None:
        events = self._events
        kept: list[Event] = []
        while excess > 0:
            event = events.popleft()
            if type(event) is Tick:
                excess -= 1
                self._ticks -= 1
                self.dropped += 1
            else:
                kept.append(event)  # status events are never dropped
        events.extendleft(reversed(kept))

    def _put_newest_dropped(self, events: list[Event], room: int) -> None:
        append = self._events.append
        for event in events:
            if type(event) is Tick:
                if room > 0:
                    room -= 1
                    self._ticks += 1
                    append(event)
                else:
                    self.dropped += 1
            else:
                append(event)

    def _put_conflated(self, events: list[Event]) -> None:
        pending = self._conflated
        for event in events:
            if type(event) is Tick:
                self.received += 1
                key = (event.segment, event.instrument_token)
                if key in pending:
                    pending[key] = event  # keeps its place: fair across instruments
                    self.conflated += 1
                elif self._ticks < self._capacity:
                    pending[key] = event
                    self._ticks += 1
                else:
                    self.dropped += 1
            else:
                self._serial += 1
                pending[("status", self._serial)] = event

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
        self._ticks -= removed
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
            self._ticks = 0
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
        self._ticks = 0
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
        if type(event) is Tick:
            self._ticks -= 1
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
            self._ticks,
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
