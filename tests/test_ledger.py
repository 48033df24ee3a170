"""The manager's ledger, synchronously (no trio): plans, commits, rollbacks, failures, routing, staleness,
and a state machine running random changes (with failed and cancelled requests) against a simple model."""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Hashable, Iterable
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import trading_ws._ledger as ledger_module
from trading_ws import (
    Broker,
    ConnectError,
    Disconnected,
    Event,
    Gap,
    Mode,
    Resubscribed,
    SubscriptionLimitError,
    Tick,
)
from trading_ws._fanout import route
from trading_ws._ledger import BrokerLedger, Change, Plan, Request, Shard, SubscriberState
from trading_ws.brokers._interface import InstrumentInfo

# ---------------------------------------------------------------------------------------------------------
# Helpers: what the shell would hand the ledger


class Link:
    """A connection as the ledger reads it."""

    def __init__(self) -> None:
        self.connected = True


class Inbox:
    """A subscriber queue that records every batch (the `EventSink` protocol)."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []
        self.dropped = 0
        self.conflated = 0
        self.discarded: set[tuple[int | None, int]] = set()
        self.error: BaseException | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, events: list[Event]) -> None:
        if not self._closed:
            self.batches.append(events)

    def discard_ticks(self, keys: set[tuple[int | None, int]]) -> int:
        self.discarded |= keys
        return 0

    def close(self, error: BaseException | None = None, *, drain: bool = True) -> None:
        if not self._closed:
            self._closed = True
            self.error = error

    def events(self) -> list[Event]:
        out = [event for batch in self.batches for event in batch]
        self.batches.clear()
        return out


def info(token: int) -> InstrumentInfo:
    return InstrumentInfo(f"NSE:S{token}", token, token, 1)


def make_ledger(per_connection: int = 3, connections: int = 2) -> BrokerLedger:
    return BrokerLedger("kite", Broker.KITE, per_connection, connections, keyed_by_segment=False)


def subscriber(mode: Mode = Mode.QUOTE) -> tuple[SubscriberState, Inbox]:
    inbox = Inbox()
    return SubscriberState(inbox, mode), inbox


def mode_of(sub: SubscriberState) -> Mode:
    """The subscriber's mode now (a call, so that mypy does not narrow it across changes)."""
    return sub.mode


def make(ledger: BrokerLedger, request: Request, now: float = 0.0) -> None:
    """Make a request as the shell does: open the connection it needs, then record it."""
    while request.shard >= len(ledger.shards):
        ledger.add_shard(Shard(len(ledger.shards), Link()))
    ledger.record(request, now)


def apply(ledger: BrokerLedger, change: Change, now: float = 0.0) -> list[Request]:
    """Carry out, commit and lower a change in full; returns the lowering requests made."""
    for request in change.plan.requests:
        make(ledger, request, now)
    ledger.commit(change)
    return lower(ledger, change.touched, now)


def lower(ledger: BrokerLedger, keys: Iterable[Hashable], now: float = 0.0) -> list[Request]:
    requests = ledger.plan_lower(keys)
    for request in requests:
        ledger.record(request, now)
        ledger.lowered(request)
    return requests


def summary(plan: Plan) -> list[tuple[int, int, list[Hashable]]]:
    return [(r.shard, r.rank, sorted(r.keys, key=repr)) for r in plan.requests]


def tick(token: int, mode: Mode = Mode.FULL) -> Tick:
    return Tick(Broker.KITE, token, mode, True, 100.0 + token, 5, volume=10, segment=1)


def check_structure(ledger: BrokerLedger) -> None:
    """What holds whatever happened: counts match holders, entries and connections agree, caps hold."""
    for key, upstream in ledger.by_key.items():
        assert upstream.info.key == key
        counts = [0, 0, 0]
        for sub, rank in upstream.subscribers.items():
            counts[rank] += 1
            assert key in sub.keys
        assert counts == upstream.counts
        assert (upstream.shard is None) == (upstream.rank < 0), key
        assert upstream.subscribers or upstream.rank >= 0, f"{key} leaked: nobody wants it, nothing holds it"
        if upstream.shard is not None:
            assert key in upstream.shard.keys
    for shard in ledger.shards:
        assert len(shard.keys) <= ledger.per_connection
        for key in shard.keys:
            assert ledger.by_key[key].shard is shard
    assert ledger.live_shards() <= ledger.connections


# ---------------------------------------------------------------------------------------------------------
# Plans


def test_a_first_subscribe_opens_a_connection_and_subscribes_after_it() -> None:
    ledger = make_ledger()
    sub, _ = subscriber(Mode.QUOTE)
    change = ledger.change(sub, [info(1), info(2)], (), Mode.QUOTE)
    assert change.plan.opens == (0,)
    assert summary(change.plan) == [(0, 1, [1, 2])]
    # Wanted at once, not upstream until the request is recorded.
    assert sub.keys == {1: "NSE:S1", 2: "NSE:S2"}
    assert sub.waiting == {1, 2}
    assert ledger.instruments() == 0
    assert apply(ledger, change, now=5.0) == []
    assert ledger.instruments() == 2
    assert {k: (u.rank, u.shard.index if u.shard else None) for k, u in ledger.by_key.items()} == {
        1: (1, 0),
        2: (1, 0),
    }
    assert ledger.by_key[1].subscribed_at == 5.0
    check_structure(ledger)


def test_new_instruments_fill_connections_in_order_then_open_more() -> None:
    ledger = make_ledger(per_connection=3, connections=3)
    first, _ = subscriber()
    apply(ledger, ledger.change(first, [info(1), info(2)], (), Mode.QUOTE))
    second, _ = subscriber(Mode.FULL)
    change = ledger.change(second, [info(t) for t in (2, 3, 4, 5, 6)], (), Mode.FULL)
    # Instrument 2 is upgraded where it is; the new ones fill connection 0's last place, then a new one.
    assert change.plan.opens == (1,)
    assert summary(change.plan) == [(0, 2, [2]), (0, 2, [3]), (1, 2, [4, 5, 6])]
    apply(ledger, change)
    assert [s.keys for s in ledger.shards] == [{1, 2, 3}, {4, 5, 6}]
    check_structure(ledger)


def test_an_addition_beyond_every_connection_is_refused_with_nothing_applied() -> None:
    ledger = make_ledger(per_connection=2, connections=2)
    sub, _ = subscriber()
    apply(ledger, ledger.change(sub, [info(1), info(2), info(3)], (), Mode.QUOTE))
    other, _ = subscriber()
    with pytest.raises(SubscriptionLimitError, match="2 more instruments would exceed 4"):
        ledger.change(other, [info(1), info(4), info(5)], (), Mode.QUOTE)
    assert other.keys == {}
    assert other.waiting == set()
    assert set(ledger.by_key) == {1, 2, 3}
    assert other not in ledger.by_key[1].subscribers
    # One more fits (instrument 1 is shared, not new).
    apply(ledger, ledger.change(other, [info(1), info(4)], (), Mode.QUOTE))
    assert set(other.keys) == {1, 4}
    check_structure(ledger)


def test_modes_upstream_follow_the_highest_holder_up_and_down() -> None:
    ledger = make_ledger()
    low, _ = subscriber(Mode.LTP)
    high, _ = subscriber(Mode.FULL)
    apply(ledger, ledger.change(low, [info(1)], (), Mode.LTP))
    assert ledger.by_key[1].rank == 0
    change = ledger.change(high, [info(1)], (), Mode.FULL)
    assert summary(change.plan) == [(0, 2, [1])]
    assert change.plan.opens == ()
    apply(ledger, change)
    assert ledger.by_key[1].rank == 2
    # The FULL holder goes to QUOTE: nothing to raise, a downgrade after.
    change = ledger.change(high, (), (), Mode.QUOTE)
    assert change.plan == Plan()
    assert [(r.shard, r.rank, r.keys) for r in apply(ledger, change)] == [(0, 1, [1])]
    assert ledger.by_key[1].rank == 1
    # It leaves: down to LTP; the last holder leaves: unsubscribed, and the entry goes.
    assert [(r.rank, r.keys) for r in lower(ledger, ledger.leave(high))] == [(0, [1])]
    assert [(r.rank, r.keys) for r in lower(ledger, ledger.leave(low))] == [(-1, [1])]
    assert ledger.by_key == {}
    assert ledger.dirty == set()
    assert ledger.shards[0].keys == set()


def test_a_change_without_a_mode_keeps_the_mode_it_finds_after_an_undone_or_a_done_change() -> None:
    """add/remove pass no mode: the ledger reads it when the change is applied (under the shell's lock),
    so an upgrade undone before it does not come back, and a set_mode done before it is not undone."""
    ledger = make_ledger()
    sub, _ = subscriber(Mode.QUOTE)
    apply(ledger, ledger.change(sub, [info(1)], (), Mode.QUOTE))
    upgrade = ledger.change(sub, (), (), Mode.FULL)
    assert mode_of(sub) is Mode.FULL  # in flight
    ledger.rollback(upgrade)
    change = ledger.change(sub, [info(2)], (), None)
    assert summary(change.plan) == [(0, 1, [2])]
    apply(ledger, change)
    assert mode_of(sub) is Mode.QUOTE
    assert {k: u.subscribers for k, u in ledger.by_key.items()} == {1: {sub: 1}, 2: {sub: 1}}
    apply(ledger, ledger.change(sub, (), (), Mode.LTP))
    apply(ledger, ledger.change(sub, [info(3)], [1], None))
    assert mode_of(sub) is Mode.LTP
    assert {k: (u.subscribers, u.rank) for k, u in ledger.by_key.items()} == {
        2: ({sub: 0}, 0),
        3: ({sub: 0}, 0),
    }
    check_structure(ledger)


def test_remove_is_final_on_commit_and_its_ticks_are_discarded() -> None:
    ledger = make_ledger()
    sub, inbox = subscriber()
    apply(ledger, ledger.change(sub, [info(1), info(2)], (), Mode.QUOTE))
    change = ledger.change(sub, (), [2, 99], Mode.QUOTE)
    assert change.plan == Plan()
    assert sub.keys == {1: "NSE:S1"}
    lowered = apply(ledger, change)
    assert inbox.discarded == {(1, 2)}
    assert [(r.rank, r.keys) for r in lowered] == [(-1, [2])]
    assert set(ledger.by_key) == {1}


def test_a_rolled_back_addition_leaves_the_subscriber_as_it_was_and_what_was_made_dirty() -> None:
    ledger = make_ledger(per_connection=2, connections=2)
    sub, inbox = subscriber(Mode.LTP)
    apply(ledger, ledger.change(sub, [info(1)], (), Mode.LTP))
    sub.waiting.clear()
    change = ledger.change(sub, [info(2), info(3), info(4)], [1], Mode.QUOTE)
    # 1 is removed (not upgraded); the new ones take connection 0's last place, then a new connection.
    assert summary(change.plan) == [(0, 1, [2]), (1, 1, [3, 4])]
    assert change.plan.opens == (1,)
    make(ledger, change.plan.requests[0])  # the first request was made, the second was cancelled
    ledger.rollback(change)
    assert sub.keys == {1: "NSE:S1"}
    assert sub.mode is Mode.LTP
    assert sub.waiting == set()
    assert inbox.discarded == {(1, 2), (1, 3), (1, 4)}
    assert ledger.by_key[1].subscribers == {sub: 0}
    made = set(change.plan.requests[0].keys)
    assert ledger.dirty == made  # subscribed upstream, wanted by nobody: lowered later
    assert set(ledger.by_key) == {1} | made
    lowered = lower(ledger, set(ledger.dirty))
    assert [(r.rank, set(r.keys)) for r in lowered] == [(-1, made)]
    assert set(ledger.by_key) == {1}
    assert ledger.dirty == set()
    check_structure(ledger)


def test_a_failed_subscribe_counts_as_made_and_is_dirty() -> None:
    ledger = make_ledger()
    low, _ = subscriber(Mode.LTP)
    apply(ledger, ledger.change(low, [info(1)], (), Mode.LTP))
    high, _ = subscriber(Mode.FULL)
    change = ledger.change(high, [info(1)], (), Mode.FULL)
    ledger.failed(change.plan.requests[0], 1.0)  # it may have reached the broker
    ledger.rollback(change)
    assert ledger.by_key[1].rank == 2  # more than wanted: harmless, never less
    assert ledger.dirty == {1}
    assert [(r.rank, r.keys) for r in lower(ledger, set(ledger.dirty))] == [(0, [1])]
    assert ledger.dirty == set()


def test_a_failed_lowering_stays_dirty_until_made() -> None:
    ledger = make_ledger()
    sub, _ = subscriber()
    apply(ledger, ledger.change(sub, [info(1)], (), Mode.QUOTE))
    keys = ledger.leave(sub)
    assert keys == [1]
    assert ledger.dirty == {1}
    [request] = ledger.plan_lower(keys)
    ledger.failed(request, 0.0)
    assert ledger.dirty == {1}
    assert ledger.by_key[1].rank == 1
    assert [(r.rank, r.keys) for r in lower(ledger, set(ledger.dirty))] == [(-1, [1])]
    assert ledger.by_key == {}
    assert ledger.dirty == set()


def test_a_subscriber_ended_during_its_change_keeps_nothing_after_the_rollback() -> None:
    ledger = make_ledger()
    sub, inbox = subscriber()
    apply(ledger, ledger.change(sub, [info(1)], (), Mode.QUOTE))
    change = ledger.change(sub, [info(2)], [1], Mode.QUOTE)
    inbox.close()
    ledger.leave(sub)
    ledger.rollback(change)
    assert sub.keys == {}
    assert all(not u.subscribers for u in ledger.by_key.values())
    lower(ledger, set(ledger.dirty))
    assert ledger.by_key == {}


def test_a_failed_connection_ends_its_holders_and_a_newcomer_gets_a_fresh_one() -> None:
    ledger = make_ledger(per_connection=3, connections=2)
    held, held_inbox = subscriber()
    apply(ledger, ledger.change(held, [info(1), info(2)], (), Mode.QUOTE))
    error = ConnectError("gone for good")
    ended = ledger.fail(ledger.shards[0], error)
    assert ended == {held}
    assert held_inbox.error is error
    assert ledger.live_shards() == 0
    assert ledger.can_open()
    ledger.detach(ledger.shards[0], ended, error)
    assert ledger.by_key == {}
    assert ledger.shards[0].keys == set()
    assert held.keys == {}
    newcomer, _ = subscriber()
    change = ledger.change(newcomer, [info(1)], (), Mode.QUOTE)
    assert change.plan.opens == (1,)
    assert summary(change.plan) == [(1, 1, [1])]
    apply(ledger, change)
    assert ledger.by_key[1].shard is ledger.shards[1]
    check_structure(ledger)


# ---------------------------------------------------------------------------------------------------------
# Routing and staleness


def test_route_hands_each_holder_its_mode_once_per_frame_and_marks_readiness() -> None:
    ledger = make_ledger()
    full, full_inbox = subscriber(Mode.FULL)
    ltp, ltp_inbox = subscriber(Mode.LTP)
    notified: list[int] = []
    ltp.notify = lambda: notified.append(len(ltp.waiting))
    apply(ledger, ledger.change(full, [info(1), info(2)], (), Mode.FULL))
    apply(ledger, ledger.change(ltp, [info(2)], (), Mode.LTP))
    notified.clear()
    frame: list[Event] = [tick(1), tick(2), tick(77)]
    route(ledger, ledger.shards[0], frame, now=3.0)
    assert len(full_inbox.batches) == 1
    assert len(ltp_inbox.batches) == 1
    got_full = full_inbox.events()
    assert [(t.instrument_token, t.mode, t.symbol) for t in got_full if isinstance(t, Tick)] == [
        (1, Mode.FULL, "NSE:S1"),
        (2, Mode.FULL, "NSE:S2"),
    ]
    assert got_full[0] is frame[0]  # shared, not copied
    [reduced] = ltp_inbox.events()
    assert isinstance(reduced, Tick)
    assert (reduced.instrument_token, reduced.mode, reduced.last_price, reduced.volume) == (
        2,
        Mode.LTP,
        102.0,
        None,
    )
    assert ltp.waiting == set()
    assert notified == [0]
    assert (ledger.ticks_in, ledger.ticks_out) == (3, 3)
    assert ledger.shards[0].ticks == 3
    assert full.last_tick_at == 3.0


def test_status_events_reach_everyone_on_the_connection_with_a_gap_when_the_loss_ends() -> None:
    ledger = make_ledger()
    sub, inbox = subscriber()
    apply(ledger, ledger.change(sub, [info(1)], (), Mode.QUOTE))
    shard = ledger.shards[0]
    route(ledger, shard, [Disconnected(Broker.KITE, 0, "reset", 10.0)], 1.0)
    route(ledger, shard, [Resubscribed(Broker.KITE, 0, 1, 12.0)], 2.0)
    events = inbox.events()
    assert [type(e) for e in events] == [Disconnected, Resubscribed, Gap]
    gap = events[2]
    assert isinstance(gap, Gap)
    assert (gap.symbols, gap.start, gap.end) == (("NSE:S1",), 10.0, 12.0)
    assert shard.reconnects == 1


def test_the_stale_scan_reports_each_quiet_instrument_once_per_quiet_spell() -> None:
    ledger = make_ledger()
    sub, _ = subscriber()
    apply(ledger, ledger.change(sub, [info(1), info(2)], (), Mode.QUOTE), now=0.0)
    route(ledger, ledger.shards[0], [tick(1)], 4.0)
    assert ledger.scan_stale(4.5, after=5.0) == {}
    assert ledger.scan_stale(5.0, after=5.0) == {sub: ("NSE:S2",)}  # never ticked since subscribed
    assert ledger.scan_stale(9.5, after=5.0) == {sub: ("NSE:S1",)}
    assert ledger.scan_stale(30.0, after=5.0) == {}  # reported once
    route(ledger, ledger.shards[0], [tick(2)], 31.0)
    assert ledger.scan_stale(36.0, after=5.0) == {sub: ("NSE:S2",)}
    link = ledger.shards[0].feed
    assert isinstance(link, Link)
    link.connected = False
    route(ledger, ledger.shards[0], [tick(2)], 40.0)
    assert ledger.scan_stale(100.0, after=5.0) == {}  # a connection that is down is not quiet


def runtime_imports(module: ModuleType) -> set[str]:
    """The modules `module` imports when it runs (what ``if TYPE_CHECKING:`` imports is left out), with
    package-relative ones as ``trading_ws.<name>``."""
    tree = ast.parse(inspect.getsource(module))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(f"trading_ws.{node.module}" if node.level else node.module or "")
    return names


def test_the_ledger_is_sans_io() -> None:
    """No trio, no clock, no await, here or in what it imports: the shell passes the time in and makes
    the requests."""
    io = {"trio", "time", "anyio", "asyncio", "socket"}
    seen: set[str] = set()
    todo = ["trading_ws._ledger"]
    while todo:
        name = todo.pop()
        seen.add(name)
        imported = runtime_imports(importlib.import_module(name))
        assert not {n for n in imported if n.split(".")[0] in io}, (name, imported)
        todo += [n for n in imported if n.startswith("trading_ws.") and n not in seen]
    assert seen == {"trading_ws._ledger", "trading_ws._errors", "trading_ws._model"}
    tree = ast.parse(inspect.getsource(ledger_module))
    assert not [node for node in ast.walk(tree) if isinstance(node, (ast.Await, ast.AsyncFunctionDef))]


# ---------------------------------------------------------------------------------------------------------
# Random sequences against a model


TOKENS = range(1, 9)
PER_CONNECTION = 3
CONNECTIONS = 2
#: How each request of a change goes (a new connection may fail to open; a subscriber, this one or another,
#: may leave its block meanwhile).
OUTCOMES = st.lists(
    st.sampled_from(["ok", "ok", "ok", "fails", "cancelled", "connect_fails", "it leaves", "another leaves"]),
    max_size=4,
)
#: How each lowering request goes (a failure is logged and stays dirty; a cancellation leaves the rest).
LOWERING = st.lists(st.sampled_from(["ok", "ok", "fails", "fails unsent", "cancelled"]), max_size=3)


class LedgerMachine(RuleBasedStateMachine):
    """Subscribers join, add, remove, change mode and leave; requests fail or are cancelled at random
    points (the change is rolled back), lowerings fail, connections fail. The model: who holds what in
    which mode, and who has ended."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = make_ledger(PER_CONNECTION, CONNECTIONS)
        self.held: dict[SubscriberState, set[int]] = {}
        self.mode: dict[SubscriberState, Mode] = {}
        self.ended: set[SubscriberState] = set()
        self.now = 0.0
        self.broker: dict[tuple[int, Hashable], int] = {}
        """What the broker holds: (connection, instrument) -> mode rank."""

    # ------------------------------------------------------------------------- helpers

    def _send(self, request: Request) -> None:
        """The broker takes a request."""
        for key in request.keys:
            if request.rank < 0:
                self.broker.pop((request.shard, key), None)
            else:
                self.broker[request.shard, key] = request.rank

    def _make(self, request: Request, outcome: str) -> bool:
        """Make one request of a change as the shell would: True if it was taken."""
        ledger = self.ledger
        if request.shard >= len(ledger.shards):
            if outcome == "connect_fails":
                return False
            while request.shard >= len(ledger.shards):
                ledger.add_shard(Shard(len(ledger.shards), Link()))
        if outcome == "cancelled":
            return False  # a cancelled request was not made
        self._send(request)  # a subscribe that fails may have reached the broker: say it did
        if outcome == "fails":
            ledger.failed(request, self.now)
            return False
        ledger.record(request, self.now)
        return True

    def _lower(self, keys: Iterable[Hashable], outcomes: list[str]) -> None:
        """Lower as the shell does: a failure is logged (and stays dirty), a cancellation leaves the rest."""
        for i, request in enumerate(self.ledger.plan_lower(keys)):
            outcome = outcomes[i % len(outcomes)] if outcomes else "ok"
            assert self.ledger.shards[request.shard].failed is None
            if outcome == "cancelled":
                return
            if outcome != "fails unsent":
                self._send(request)
            if outcome.startswith("fails"):
                self.ledger.failed(request, self.now)
                continue
            self.ledger.record(request, self.now)
            self.ledger.lowered(request)

    def _live(self) -> list[SubscriberState]:
        return [s for s in self.held if s not in self.ended]

    # ------------------------------------------------------------------------- rules

    def _change(
        self,
        sub: SubscriberState,
        add: set[int],
        remove: set[int],
        mode: Mode | None,
        outcomes: list[str],
        lowering: list[str],
    ) -> None:
        """One change as the shell makes it: lower what is dirty, plan, make the requests (each may fail
        or be cancelled: rolled back), commit, lower. `mode` None keeps the mode (add and remove pass it,
        so the ledger reads the mode when the change is applied, after any earlier change was committed
        or rolled back)."""
        ledger = self.ledger
        self.now += 1.0
        if ledger.dirty:
            self._lower(set(ledger.dirty), [])
        before = {k: (dict(u.subscribers), u.rank) for k, u in ledger.by_key.items()}
        new = [t for t in add if t not in self.held[sub] and not ledger.placed(t)]
        placed = sum(1 for k in ledger.by_key if ledger.placed(k))
        try:
            change = ledger.change(sub, [info(t) for t in sorted(add)], sorted(remove), mode)
        except SubscriptionLimitError:
            assert placed + len(new) > PER_CONNECTION * CONNECTIONS
            assert {k: (dict(u.subscribers), u.rank) for k, u in ledger.by_key.items()} == before
            return
        assert placed + len(new) <= PER_CONNECTION * CONNECTIONS
        left: list[Hashable] = []  # what subscribers that left meanwhile held: lowered after (the lock)
        for i, request in enumerate(change.plan.requests):
            outcome = outcomes[i] if i < len(outcomes) else "ok"
            if outcome == "another leaves":  # a subscribe block is left (that needs no lock)
                others = [s for s in self.held if s is not sub]
                if others:
                    left += self._leave_now(others[0])
                outcome = "ok"
            if outcome == "it leaves":  # its own block is left while the request is in flight
                left += self._leave_now(sub)
                self._make(request, "ok")
                ledger.rollback(change)  # the shell finds the queue closed: FeedClosedError
                self._lower(left, [])
                return
            if not self._make(request, outcome):
                ledger.rollback(change)  # the model is unchanged
                self._lower(left, [])
                return
        ledger.commit(change)
        self.held[sub] = (self.held[sub] - remove) | add
        if mode is not None:
            self.mode[sub] = mode
        self._lower(change.touched, lowering)
        self._lower(left, [])

    def _leave_now(self, sub: SubscriberState) -> list[Hashable]:
        """A subscriber's block is left: its queue closes and it lets go of everything at once."""
        sub.queue.close()
        keys = self.ledger.leave(sub)
        assert set(keys) >= self.held.pop(sub)  # (and what a change in flight is adding)
        del self.mode[sub]
        self.ended.discard(sub)
        return keys

    @rule(
        mode=st.sampled_from(Mode),
        symbols=st.sets(st.sampled_from(TOKENS), max_size=5),
        outcomes=OUTCOMES,
    )
    def subscribe(self, mode: Mode, symbols: set[int], outcomes: list[str]) -> None:
        """Entering a subscribe block: a failed entry leaves the subscription, which then leaves."""
        sub, _ = subscriber(mode)
        self.held[sub] = set()
        self.mode[sub] = mode
        self._change(sub, symbols, set(), mode, outcomes, [])
        if sub in self.held and not self.held[sub] and symbols:  # it failed: the block is never entered
            sub.queue.close()
            self._lower(self.ledger.leave(sub), [])
            del self.held[sub], self.mode[sub]

    @precondition(lambda self: bool(self._live()))
    @rule(
        data=st.data(),
        symbols=st.sets(st.sampled_from(TOKENS), max_size=5),
        outcomes=OUTCOMES,
        lowering=LOWERING,
    )
    def add(self, data: st.DataObject, symbols: set[int], outcomes: list[str], lowering: list[str]) -> None:
        sub = data.draw(st.sampled_from(self._live()))
        self._change(sub, symbols, set(), None, outcomes, lowering)

    @precondition(lambda self: bool(self._live()))
    @rule(data=st.data(), symbols=st.sets(st.sampled_from(TOKENS), max_size=4), lowering=LOWERING)
    def remove(self, data: st.DataObject, symbols: set[int], lowering: list[str]) -> None:
        sub = data.draw(st.sampled_from(self._live()))
        self._change(sub, set(), symbols, None, [], lowering)

    @precondition(lambda self: bool(self._live()))
    @rule(data=st.data(), mode=st.sampled_from(Mode), outcomes=OUTCOMES, lowering=LOWERING)
    def set_mode(self, data: st.DataObject, mode: Mode, outcomes: list[str], lowering: list[str]) -> None:
        sub = data.draw(st.sampled_from(self._live()))
        self._change(sub, set(), set(), mode, outcomes, lowering)

    @precondition(lambda self: bool(self._live()))
    @rule(
        data=st.data(),
        mode=st.sampled_from(Mode),
        outcomes=OUTCOMES,
        symbols=st.sets(st.sampled_from(TOKENS), max_size=3),
        then=OUTCOMES,
    )
    def set_mode_then_add(
        self, data: st.DataObject, mode: Mode, outcomes: list[str], symbols: set[int], then: list[str]
    ) -> None:
        """Two changes of one subscriber queued on the lock: a set_mode (done or undone), then an add
        that keeps whatever mode the first one left."""
        sub = data.draw(st.sampled_from(self._live()))
        self._change(sub, set(), set(), mode, outcomes, [])
        if sub in self._live():
            self._change(sub, symbols, set(), None, then, [])

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data(), lowering=LOWERING)
    def leave(self, data: st.DataObject, lowering: list[str]) -> None:
        sub = data.draw(st.sampled_from(list(self.held)))
        held = self.held[sub]
        keys = self._leave_now(sub)
        assert set(keys) == held
        self._lower(keys, lowering)

    @rule()
    def tidy(self) -> None:
        self._lower(set(self.ledger.dirty), [])

    @precondition(lambda self: any(s.failed is None and s.keys for s in self.ledger.shards))
    @rule(data=st.data())
    def connection_fails(self, data: st.DataObject) -> None:
        """Its holders end (their queues closed) and let go of what they held there."""
        shard = data.draw(st.sampled_from([s for s in self.ledger.shards if s.failed is None and s.keys]))
        lost = set(shard.keys)
        error = ConnectError("gone for good")
        ended = self.ledger.fail(shard, error)
        self.broker = {
            (index, key): rank for (index, key), rank in self.broker.items() if index != shard.index
        }
        assert ended == {s for s, held in self.held.items() if held & lost}
        self.ledger.detach(shard, ended, error)
        for sub in ended:
            assert sub.queue.closed
            self.ended.add(sub)
            self.held[sub] -= lost

    @rule(data=st.data())
    def route_a_frame(self, data: st.DataObject) -> None:
        """Every live holder gets exactly its instruments' ticks, in its own mode at most."""
        live = [s for s in self.ledger.shards if s.failed is None]
        if not live:
            return
        shard = data.draw(st.sampled_from(live))
        mode = data.draw(st.sampled_from(Mode))
        self.now += 1.0
        route(self.ledger, shard, [tick(t, mode) for t in TOKENS], self.now)
        for sub, held in self.held.items():
            assert isinstance(sub.queue, Inbox)
            got = [e for e in sub.queue.events() if isinstance(e, Tick)]
            assert sorted(e.instrument_token for e in got) == ([] if sub in self.ended else sorted(held))
            assert all(e.mode.rank == min(self.mode[sub].rank, mode.rank) for e in got)

    # ------------------------------------------------------------------------- invariants

    @invariant()
    def structure_holds(self) -> None:
        check_structure(self.ledger)

    @invariant()
    def holders_match_the_model(self) -> None:
        """The routing table (instrument -> holders and their ranks) is the model's."""
        expected: dict[Hashable, dict[SubscriberState, int]] = {}
        for sub, held in self.held.items():
            assert set(sub.keys) == held
            assert sub.mode is self.mode[sub]
            for token in held:
                expected.setdefault(token, {})[sub] = self.mode[sub].rank
        actual = {k: dict(u.subscribers) for k, u in self.ledger.by_key.items() if u.subscribers}
        assert actual == expected

    @invariant()
    def upstream_is_the_highest_mode_wanted(self) -> None:
        """Held: on a live connection in at least the wanted mode; exactly it unless dirty."""
        for key, upstream in self.ledger.by_key.items():
            wanted = max(upstream.subscribers.values(), default=-1)
            assert upstream.wanted() == wanted
            if wanted >= 0:
                assert upstream.shard is not None, key
                assert upstream.shard.failed is None, key
                assert upstream.rank >= wanted, key
            if key not in self.ledger.dirty:
                assert upstream.rank == wanted, (key, upstream.rank, wanted)

    @invariant()
    def the_broker_holds_what_the_ledger_says(self) -> None:
        """Every holder is served upstream at least in its mode; the ledger knows everything upstream
        (so it can lower it), believes no less than the broker has, and exactly that unless dirty."""
        ledger = self.ledger
        for (index, key), rank in self.broker.items():
            upstream = ledger.by_key.get(key)
            assert upstream is not None, key
            assert upstream.shard is ledger.shards[index], key
            assert upstream.rank >= rank, key
        for key, upstream in ledger.by_key.items():
            if upstream.shard is None:
                continue
            upstream_rank = self.broker.get((upstream.shard.index, key), -1)
            assert upstream_rank >= upstream.wanted(), key
            if key not in ledger.dirty:
                assert upstream_rank == upstream.rank, key

    def teardown(self) -> None:
        """Everyone leaves and the tidy task runs: nothing is left."""
        for sub in list(self.held):
            sub.queue.close()
            self._lower(self.ledger.leave(sub), [])
        self._lower(set(self.ledger.dirty), [])
        assert self.ledger.by_key == {}
        assert self.ledger.dirty == set()
        assert all(not shard.keys for shard in self.ledger.shards)
        assert self.broker == {}  # nothing leaks upstream


LedgerMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_ledger_against_a_model = LedgerMachine.TestCase
