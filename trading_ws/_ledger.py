"""The manager's bookkeeping, without I/O: who holds what, what upstream holds, and where ticks go.

One `BrokerLedger` per configured broker. Each instrument's entry (`Upstream`) keeps two things apart:
what its subscribers want (their ranks, changed synchronously when a change is planned) and what upstream
holds (`rank` and `shard`, changed only once a feed's request has completed, by `record`; the feeds'
requests are all or nothing). A change of one subscriber (`BrokerLedger.change`: add, remove, set_mode)
is applied to the wanted side at once and answered with a `Plan`: the requests that raise upstream (new
instruments, higher modes), in order, and the connections to open for them. The shell makes them; if one
fails or is cancelled, `rollback` puts the subscriber back as it was and marks what upstream may hold
beyond what is wanted `dirty`; once they all succeeded, `commit` finishes the change, and the requests
that lower upstream (`plan_lower`: unsubscribe, downgrade) follow. So a held instrument is always
subscribed upstream in at least the mode its holders want, and whatever is left above that is lowered
later (the shell's tidy task, or the next change).

The tables here are the router's: `_fanout.route` (the hot path, in the feeds' reader tasks: one call per
frame, one list per subscriber per frame, never an await) reads `by_key` and each entry's holders and ranks.
The stale scan (`scan_stale`) is given the time, as is everything here: this module reads no clock, makes
no request and starts no task.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Final, Protocol

import attrs

from ._errors import SubscriptionLimitError
from ._model import Broker, Event, Gap, Mode, OrderUpdate

if TYPE_CHECKING:
    from .brokers._interface import InstrumentInfo

__all__ = [
    "MODES",
    "BrokerLedger",
    "Change",
    "Connection",
    "EventSink",
    "OrderSink",
    "Plan",
    "Request",
    "Shard",
    "SubscriberState",
    "Upstream",
]

#: The modes by rank (`Mode.rank`; rank -1 in a `Request` means "unsubscribe").
MODES: Final = tuple(sorted(Mode, key=lambda mode: mode.rank))


# ---------------------------------------------------------------------------------------------------------
# What the ledger is handed: the subscriber's queue, the order-update streams, a connection's state


class EventSink(Protocol):
    """A subscriber's queue as the ledger uses it (`SubscriberQueue`): synchronous, never blocking."""

    dropped: int
    conflated: int

    @property
    def closed(self) -> bool: ...

    def put(self, events: list[Event]) -> None: ...

    def discard_ticks(self, keys: set[tuple[int | None, int]]) -> int: ...

    def close(self, error: BaseException | None = None, *, drain: bool = True) -> None: ...


class OrderSink(Protocol):
    """An order-update stream as the ledger uses it (`OrderUpdates`)."""

    _since: float

    def _put(self, event: OrderUpdate | Gap) -> None: ...

    def _close(self, error: BaseException | None = None) -> None: ...


class Connection(Protocol):
    """What the ledger reads of a connection (a `BrokerFeed`)."""

    @property
    def connected(self) -> bool: ...


def _nothing() -> None:
    return None


# ---------------------------------------------------------------------------------------------------------
# Records


@attrs.define(eq=False)
class SubscriberState:
    """One subscriber, as its `Subscription` and the router both see it.

    The ledger changes `mode`, `keys` and `waiting` (under the shell's lock) and the router reads them;
    the router clears `waiting` as first ticks arrive and calls `notify` whenever `waiting` may have
    become empty or non-empty (the subscription's readiness hook).
    """

    queue: EventSink
    mode: Mode
    keys: dict[Hashable, str] = attrs.field(factory=dict)
    """The instruments held: key -> symbol (including those of a change in progress)."""
    waiting: set[Hashable] = attrs.field(factory=set)
    """The instruments held that have not delivered a tick to this subscriber yet."""
    last_tick_at: float | None = None
    notify: Callable[[], None] = _nothing


@attrs.define(eq=False)
class Shard:
    """One connection of a broker."""

    index: int
    feed: Connection
    keys: set[Hashable] = attrs.field(factory=set)
    """The instruments subscribed on it (as far as its feed has taken the requests)."""
    ticks: int = 0
    reconnects: int = 0
    last_tick_at: float | None = None
    lost_at: float | None = None
    """Wall-clock time the connection was lost (for `Gap`), None while up."""
    failed: BaseException | None = None


@attrs.define(eq=False)
class Upstream:
    """One (broker, instrument): who wants it, and how it is subscribed upstream."""

    info: InstrumentInfo
    subscribers: dict[SubscriberState, int] = attrs.field(factory=dict)
    """Subscriber -> the rank of the mode it wants."""
    rank: int = -1
    """The rank subscribed upstream (-1: not subscribed), set once the feed has taken the request."""
    shard: Shard | None = None
    """The connection it is subscribed on (None: not subscribed)."""
    last_tick_at: float | None = None
    subscribed_at: float = 0.0
    """When it was subscribed upstream: the reference for staleness before a first tick."""
    stale: bool = False
    counts: list[int] = attrs.field(factory=lambda: [0, 0, 0])
    """How many subscribers want each mode rank: the wanted mode in O(1), not O(subscribers)."""

    def hold(self, sub: SubscriberState, rank: int) -> None:
        old = self.subscribers.get(sub)
        if old is not None:
            self.counts[old] -= 1
        self.subscribers[sub] = rank
        self.counts[rank] += 1

    def release(self, sub: SubscriberState) -> None:
        old = self.subscribers.pop(sub, None)
        if old is not None:
            self.counts[old] -= 1

    def wanted(self) -> int:
        """The highest rank any subscriber wants, -1 if none."""
        counts = self.counts
        return 2 if counts[2] else 1 if counts[1] else 0 if counts[0] else -1


@attrs.frozen
class Request:
    """One upstream request: subscribe `upstreams` on connection `shard` in mode rank `rank`, or
    unsubscribe them (rank -1)."""

    shard: int
    rank: int
    upstreams: tuple[Upstream, ...]

    @property
    def keys(self) -> list[Hashable]:
        """The instrument keys the feed is asked about."""
        return [upstream.info.key for upstream in self.upstreams]


@attrs.frozen
class Plan:
    """The requests that raise upstream for one change, in the order they are to be made.

    A request to a connection index in `opens` needs that connection opened first (the indices follow
    the broker's existing connections, in order).
    """

    requests: tuple[Request, ...] = ()
    opens: tuple[int, ...] = ()


@attrs.define(eq=False)
class Change:
    """One subscriber's change in progress: its `plan`, and what `BrokerLedger.rollback` needs to undo it."""

    sub: SubscriberState
    plan: Plan
    adding: dict[Hashable, InstrumentInfo]
    removed: dict[Hashable, tuple[str, bool]]
    """Key -> (symbol, whether it was waiting for its first tick)."""
    old_mode: Mode
    touched: set[Hashable]
    """Every instrument whose wanted mode may have changed: what `plan_lower` is asked about after."""
    gone: set[tuple[int | None, int]]
    """(segment, token) of the removed instruments: their queued ticks go on commit."""


# ---------------------------------------------------------------------------------------------------------
# The ledger


class BrokerLedger:
    """The bookkeeping of one broker: its instruments, connections, subscribers and order streams.

    Nothing here blocks or reads a clock; every method is synchronous. The shell calls the change methods
    under its per-broker lock; the router runs in the feeds' reader tasks, and `leave` and `fail` without the
    lock (they only let go of things).
    """

    def __init__(
        self, name: str, broker: Broker, per_connection: int, connections: int, keyed_by_segment: bool
    ) -> None:
        self.name = name
        self.broker = broker
        self.per_connection = per_connection
        self.connections = connections
        self.keyed_by_segment = keyed_by_segment
        self.by_key: dict[Hashable, Upstream] = {}
        self.shards: list[Shard] = []
        self.dirty: set[Hashable] = set()
        """Instruments that may be subscribed upstream above what their subscribers want (a change was
        cancelled or failed part-way): the next change, or the shell's tidy task, lowers them."""
        self.order_listeners: set[OrderSink] = set()
        self.orders_seen: dict[bytes, None] = {}
        """Fingerprints of the latest order updates (insertion-ordered, bounded): copies are skipped."""
        self.orders_down_since: float | None = None
        """Wall-clock time since which no connection is up (order updates cannot arrive)."""
        self.ticks_in = 0
        self.ticks_out = 0

    def __repr__(self) -> str:
        return (
            f"<BrokerLedger {self.name!r} instruments={len(self.by_key)} shards={len(self.shards)} "
            f"dirty={len(self.dirty)}>"
        )

    # ----------------------------------------------------------------------------------- reading

    def live_shards(self) -> int:
        """How many connections have not failed."""
        return sum(1 for shard in self.shards if shard.failed is None)

    def can_open(self) -> bool:
        """Whether another connection may be opened (the broker's connection cap)."""
        return self.live_shards() < self.connections

    def instruments(self) -> int:
        """Instruments subscribed upstream (counted once a connection has taken the request)."""
        return sum(1 for upstream in self.by_key.values() if upstream.rank >= 0)

    def placed(self, key: Hashable) -> bool:
        """Whether instrument `key` is subscribed upstream on a live connection."""
        upstream = self.by_key.get(key)
        return upstream is not None and upstream.shard is not None and upstream.shard.failed is None

    def subscribers_of(self, shard: Shard) -> set[SubscriberState]:
        """Every subscriber holding an instrument subscribed on `shard`."""
        subs: set[SubscriberState] = set()
        by_key = self.by_key
        for key in shard.keys:
            upstream = by_key.get(key)
            if upstream is not None:
                subs.update(upstream.subscribers)
        return subs

    def add_shard(self, shard: Shard) -> None:
        """Record a connection the shell has opened (its index is the next one)."""
        assert shard.index == len(self.shards), (shard.index, len(self.shards))
        self.shards.append(shard)

    # ----------------------------------------------------------------------------------- changes

    def change(
        self,
        sub: SubscriberState,
        add: Iterable[InstrumentInfo],
        remove: Iterable[Hashable],
        mode: Mode | None,
    ) -> Change:
        """Apply one subscriber's change to what is wanted, and plan the requests that raise upstream.

        `add` are instruments to hold (those held already are skipped), `remove` keys to let go of (those
        not held before the change are skipped), `mode` the subscriber's mode from now on (for every
        instrument it holds), or None to keep the mode it has now. Pass None rather than the mode read
        earlier: read before the shell's lock, it may be that of a change still in progress (undone
        later) or miss one that completes first. The removal is final once the change is committed;
        until then `rollback` undoes all of it.

        Raises:
            SubscriptionLimitError: the broker's connections cannot hold the new instruments; nothing
                was applied.
        """
        held = sub.keys
        adding = {info.key: info for info in add if info.key not in held}
        removing = [key for key in dict.fromkeys(remove) if key in held]
        self._check_capacity(sum(1 for key in adding if not self.placed(key)))
        old_mode = sub.mode
        if mode is None:
            mode = old_mode
        old_rank, new_rank = old_mode.rank, mode.rank
        by_key = self.by_key
        removed: dict[Hashable, tuple[str, bool]] = {}
        gone: set[tuple[int | None, int]] = set()
        for key in removing:
            entry = by_key[key]
            entry.release(sub)
            removed[key] = (held.pop(key), key in sub.waiting)
            sub.waiting.discard(key)
            gone.add((entry.info.segment, entry.info.token))
        if new_rank != old_rank:
            sub.mode = mode
            for key in held:
                by_key[key].hold(sub, new_rank)
        for key, info in adding.items():
            upstream = by_key.get(key)
            if upstream is None:
                upstream = by_key[key] = Upstream(info)
            upstream.hold(sub, new_rank)
            held[key] = info.symbol
            sub.waiting.add(key)  # ready means a tick reached this subscriber, even if others had them
        sub.notify()
        touched = set(adding) | set(removed) | (set(held) if new_rank != old_rank else set())
        raising = list(adding) + ([k for k in held if k not in adding] if new_rank > old_rank else [])
        change = Change(sub, Plan(), adding, removed, old_mode, touched, gone)
        try:
            change.plan = self._plan_raise(raising)
        except SubscriptionLimitError:
            self.rollback(change)
            raise
        return change

    def commit(self, change: Change) -> None:
        """The change's requests all completed: it stays. Queued ticks of removed instruments go."""
        if change.gone:
            change.sub.queue.discard_ticks(change.gone)

    def rollback(self, change: Change) -> None:
        """The change's requests did not all complete: put the subscriber back as it was (unless its
        queue has closed meanwhile: it then let go of everything, and keeps nothing), and settle the
        instruments touched (what upstream holds beyond what is wanted becomes `dirty`)."""
        sub = change.sub
        by_key = self.by_key
        for key in change.adding:
            upstream = by_key.get(key)
            if upstream is not None:
                upstream.release(sub)
            sub.keys.pop(key, None)
            sub.waiting.discard(key)
        if change.adding:
            sub.queue.discard_ticks({(info.segment, info.token) for info in change.adding.values()})
        sub.mode = change.old_mode
        if not sub.queue.closed:
            old_rank = change.old_mode.rank
            for key, (symbol, waiting) in change.removed.items():
                sub.keys[key] = symbol
                if waiting:
                    sub.waiting.add(key)
            for key in sub.keys:
                by_key[key].hold(sub, old_rank)
        sub.notify()
        self._settle(change.touched)

    def leave(self, sub: SubscriberState) -> list[Hashable]:
        """A subscriber lets go of everything at once (its queue is closed); returns the keys it held,
        now `dirty` until lowered."""
        keys = list(sub.keys)
        by_key = self.by_key
        for key in keys:
            upstream = by_key.get(key)
            if upstream is not None:
                upstream.release(sub)
        sub.keys.clear()
        sub.waiting.clear()
        sub.notify()
        self.dirty.update(keys)
        return keys

    def plan_lower(self, keys: Iterable[Hashable]) -> list[Request]:
        """The requests that take upstream down to what the subscribers of `keys` want: unsubscribe what
        nobody wants, downgrade what is wanted in a lower mode. Their keys become `dirty` until `lowered`;
        entries nobody wants or holds upstream go at once."""
        drops: dict[Shard, list[Upstream]] = {}
        downs: dict[tuple[Shard, int], list[Upstream]] = {}
        by_key = self.by_key
        dirty = self.dirty
        for key in keys:
            upstream = by_key.get(key)
            if upstream is None:
                dirty.discard(key)
                continue
            wanted = upstream.wanted()
            shard = upstream.shard
            if wanted >= upstream.rank or shard is None or shard.failed is not None:
                dirty.discard(key)  # nothing to lower (a failed connection's are dealt with by `detach`)
                if upstream.rank < 0 and not upstream.subscribers:
                    del by_key[key]
                continue
            dirty.add(key)
            if wanted < 0:
                drops.setdefault(shard, []).append(upstream)
            else:
                downs.setdefault((shard, wanted), []).append(upstream)
        requests = [Request(shard.index, -1, tuple(group)) for shard, group in drops.items()]
        requests += [Request(shard.index, rank, tuple(group)) for (shard, rank), group in downs.items()]
        return requests

    def record(self, request: Request, now: float, *, uncertain: bool = False) -> None:
        """The feed took `request` (or, `uncertain`, failed with it: a subscribe counts as made, at
        least in its mode, since more upstream than wanted is harmless and less would starve a holder;
        its keys become `dirty`). `now` stamps newly subscribed instruments for the stale scan."""
        shard = self.shards[request.shard]
        rank = request.rank
        for upstream in request.upstreams:
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
        if uncertain:
            self.dirty.update(request.keys)

    def failed(self, request: Request, now: float) -> None:
        """`request` failed (not cancelled): it may or may not have reached the broker."""
        if request.rank >= 0:
            self.record(request, now, uncertain=True)
        else:
            self.dirty.update(request.keys)

    def lowered(self, request: Request) -> None:
        """A request of `plan_lower` was taken (and recorded): its keys are clean if nothing is above
        what is wanted any more, and entries nobody wants go."""
        by_key = self.by_key
        for upstream in request.upstreams:
            key = upstream.info.key
            if upstream.wanted() >= upstream.rank:
                self.dirty.discard(key)
            if upstream.rank < 0 and not upstream.subscribers and by_key.get(key) is upstream:
                del by_key[key]

    def _settle(self, keys: Iterable[Hashable]) -> None:
        """After an undone change: entries nobody wants and nothing holds upstream go; those held upstream
        above what is wanted become `dirty`."""
        by_key = self.by_key
        for key in keys:
            upstream = by_key.get(key)
            if upstream is None:
                continue
            if upstream.rank > upstream.wanted():
                self.dirty.add(key)
            elif upstream.rank < 0 and not upstream.subscribers:
                del by_key[key]

    def _check_capacity(self, new: int) -> None:
        if not new:
            return
        held = sum(1 for key in self.by_key if self.placed(key))
        total = self.per_connection * self.connections
        if held + new > total:
            raise SubscriptionLimitError(
                f"{self.name}: {new} more instruments would exceed {total} "
                f"({self.connections} connections x {self.per_connection}); {held} are subscribed"
            )

    def _plan_raise(self, keys: Iterable[Hashable]) -> Plan:
        """Higher modes on the instruments' connections first, then new instruments (and those of failed
        connections) on connections with room, filled in order, opening connections as needed."""
        upgrades: dict[tuple[int, int], list[Upstream]] = {}
        unplaced: list[tuple[int, Upstream]] = []
        for key in keys:
            upstream = self.by_key[key]
            wanted = upstream.wanted()
            if wanted < 0:
                continue
            shard = upstream.shard
            if shard is None or shard.failed is not None:  # a failed connection's: placed afresh
                unplaced.append((wanted, upstream))
            elif wanted > upstream.rank:
                upgrades.setdefault((shard.index, wanted), []).append(upstream)
        requests = [Request(index, rank, tuple(group)) for (index, rank), group in upgrades.items()]
        limit = self.per_connection
        rooms = [
            (s.index, limit - len(s.keys)) for s in self.shards if s.failed is None and len(s.keys) < limit
        ]
        opens: list[int] = []
        while unplaced:
            if rooms:
                index, take = rooms.pop(0)
            else:
                if self.live_shards() + len(opens) >= self.connections:
                    raise SubscriptionLimitError(f"{self.name}: every connection is full")
                index, take = len(self.shards) + len(opens), limit
                opens.append(index)
            batch, unplaced = unplaced[:take], unplaced[take:]
            by_rank: dict[int, list[Upstream]] = {}
            for rank, upstream in batch:
                by_rank.setdefault(rank, []).append(upstream)
            requests += [Request(index, rank, tuple(group)) for rank, group in by_rank.items()]
        return Plan(tuple(requests), tuple(opens))

    # ----------------------------------------------------------------------------------- failures

    def fail(self, shard: Shard, error: BaseException) -> set[SubscriberState]:
        """Connection `shard` failed for good: end the subscribers holding its instruments with `error`
        (and the order streams, if it was the last live connection). Returns those subscribers; `detach`
        (under the lock) finishes."""
        shard.failed = error
        ended = self.subscribers_of(shard)
        for sub in ended:
            sub.queue.close(error)
        if not any(s.failed is None for s in self.shards):
            for listener in self.order_listeners:
                listener._close(error)
            self.order_listeners.clear()
        return ended

    def detach(self, shard: Shard, ended: set[SubscriberState], error: BaseException) -> None:
        """Take a failed connection's instruments off it (so that a later subscriber gets a fresh
        connection); subscribers that joined it meanwhile end too, and the ended ones let go of what they
        held there."""
        late = self.subscribers_of(shard) - ended
        for sub in late:
            sub.queue.close(error)
        ended = ended | late
        by_key = self.by_key
        for key in list(shard.keys):
            upstream = by_key.get(key)
            if upstream is None or upstream.shard is not shard:
                continue
            for sub in ended:
                if sub in upstream.subscribers:
                    upstream.release(sub)
                    sub.keys.pop(key, None)
                    sub.waiting.discard(key)
            upstream.shard = None
            upstream.rank = -1
            upstream.last_tick_at = None
            upstream.stale = False
            self.dirty.discard(key)
            if not upstream.subscribers:
                del by_key[key]
        shard.keys.clear()
        for sub in ended:
            sub.notify()

    # ----------------------------------------------------------------------------------- liveness

    def scan_stale(self, now: float, after: float) -> dict[SubscriberState, tuple[str, ...]]:
        """Instruments that have not ticked for `after` seconds at `now` (or since they were subscribed)
        on a live connection, newly: each is marked stale (until its next tick) and reported once, as
        subscriber -> its quiet symbols, sorted."""
        quiet: dict[SubscriberState, list[str]] = {}
        for upstream in self.by_key.values():
            shard = upstream.shard
            if upstream.rank < 0 or upstream.stale or shard is None or not shard.feed.connected:
                continue
            last = upstream.last_tick_at
            if now - (upstream.subscribed_at if last is None else last) < after:
                continue
            upstream.stale = True
            for sub in upstream.subscribers:
                quiet.setdefault(sub, []).append(upstream.info.symbol)
        return {sub: tuple(sorted(symbols)) for sub, symbols in quiet.items()}

    def close_order_streams(self, error: BaseException | None = None) -> None:
        """End every order-update stream (the manager is closing)."""
        for listener in self.order_listeners:
            listener._close(error)
        self.order_listeners.clear()
