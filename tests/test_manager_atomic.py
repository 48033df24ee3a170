"""The manager's changes are all or nothing, whatever await they are cancelled at, and its arguments are
checked before anything is recorded or sent.

Runs against the in-memory `trading_ws.testing.FakeBroker`, whose every await point can be parked and
cancelled, with the rate limiter on trio's (autojumping) clock.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import pytest
import trio
import trio.testing
from hypothesis import given, settings, strategies as st
from test_manager_fake import SYMBOLS, fake, tick

from trading_ws import (
    ConfigurationError,
    ConnectError,
    Disconnected,
    FeedClosedError,
    MarketData,
    Mode,
    Overflow,
    RateLimit,
    Subscription,
    SubscriptionError,
    Tick,
    UnknownSymbolError,
    open_market_data,
)
from trading_ws.testing import FakeBroker, FakeConnection, Point, Request

A, B, C, D = SYMBOLS[:4]


async def cancel_when_parked(broker: FakeBroker, point: Point, call: Callable[[], Awaitable[object]]) -> None:
    """Run `call`, and cancel it once it waits at `point` (which the test holds)."""
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            await call()
            pytest.fail("the call was not cancelled")  # pragma: no cover

        nursery.start_soon(run)
        await broker.wait_parked(point)
        nursery.cancel_scope.cancel()


async def cancel_when_blocked(call: Callable[[], Awaitable[object]]) -> None:
    """Run `call`, and cancel it once every task is blocked (it waits somewhere)."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()


async def ticks_of(sub: Subscription) -> list[Tick]:
    return [e for e in await sub.receive_batch() if isinstance(e, Tick)]


def feed(broker: FakeBroker, index: int = 0) -> FakeConnection:
    return broker.connections[index]


class Nameless(FakeBroker):
    """A broker whose name is empty (FakeBroker itself refuses one)."""

    @property
    def name(self) -> str:
        """Empty."""
        return ""


def mode_of(sub: Subscription) -> Mode:
    """The subscription's mode now (a call, so that mypy does not narrow it across awaits)."""
    return sub.mode


def instruments(md: MarketData) -> int:
    return md.statistics().brokers[0].instruments


# ---------------------------------------------------------------------------------------------------------
# Subscription.add


async def test_add_cancelled_while_waiting_for_the_rate_limiter_adds_nothing_and_a_retry_works(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The issue's case: the symbol was held but never sent, and a second add did not repair it."""
    broker = fake(rate_limit=RateLimit(rate=1.0, burst=2))
    async with open_market_data(broker) as md, md.subscribe([A]) as sub:
        with trio.move_on_after(0.5) as scope:  # the bucket is empty: the next token comes in 1 s
            await sub.add([B])
        assert scope.cancelled_caught
        assert sub.symbols == {A}
        assert feed(broker).subscriptions == {A: Mode.QUOTE}
        assert instruments(md) == 1
        await sub.add([B])
        assert sub.symbols == {A, B}
        assert feed(broker).subscriptions == {A: Mode.QUOTE, B: Mode.QUOTE}
        feed(broker).push(tick(A), tick(B))
        with trio.fail_after(1):
            await sub.wait_ready()
        assert {t.symbol for t in await ticks_of(sub)} == {A, B}


@pytest.mark.parametrize("point", ["subscribe", "connect"])
async def test_add_cancelled_in_flight_leaves_the_subscription_as_it_was(
    point: Point, autojump_clock: trio.testing.MockClock
) -> None:
    """Cancelled while the request is made (or while the connection it needs opens): the subscription
    holds what it held, nothing is recorded upstream, ticks that arrived meanwhile are not kept, and the
    same add works afterwards."""
    broker = fake(max_instruments_per_connection=1 if point == "connect" else 100)
    async with open_market_data(broker) as md, md.subscribe([A]) as sub:
        feed(broker).push(tick(A))
        await sub.wait_ready()
        broker.hold(point)
        async with trio.open_nursery() as nursery:

            async def add() -> None:
                await sub.add([B])

            nursery.start_soon(add)
            await broker.wait_parked(point)
            if point == "subscribe":  # a tick of B arriving while the request is in flight
                feed(broker).push(tick(B))
            nursery.cancel_scope.cancel()
        broker.release(point)
        assert sub.symbols == {A}
        assert broker.subscriptions == {A: Mode.QUOTE}
        assert instruments(md) == 1
        assert [t.symbol for t in await ticks_of(sub)] == [A]  # no tick of B is left queued
        stats = sub.statistics().queue
        assert stats.received == stats.delivered + stats.discarded
        with trio.fail_after(1):
            await sub.wait_ready()  # still ready: nothing is waited for
        await sub.add([B])
        assert broker.subscriptions == {A: Mode.QUOTE, B: Mode.QUOTE}
        feed(broker, -1).push(tick(B))
        with trio.fail_after(1):
            await sub.wait_ready()
        assert [t.symbol for t in await ticks_of(sub)] == [B]


async def test_add_cancelled_while_waiting_for_another_change_adds_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = fake()
    async with open_market_data(broker) as md, md.subscribe([A]) as sub, md.subscribe([C]) as other:
        broker.hold("subscribe")
        async with trio.open_nursery() as nursery:

            async def other_add() -> None:
                await other.add([D])

            nursery.start_soon(other_add)  # holds the broker's lock, parked in its request
            await broker.wait_parked("subscribe")

            async def add() -> None:
                await sub.add([B])

            await cancel_when_blocked(add)  # waits for the lock
            assert sub.symbols == {A}
            broker.release("subscribe")
        assert sub.symbols == {A}
        assert other.symbols == {C, D}
        assert broker.subscriptions == {A: Mode.QUOTE, C: Mode.QUOTE, D: Mode.QUOTE}
        await sub.add([B])
        assert B in broker.subscriptions


async def test_a_failed_request_adds_nothing_and_what_it_may_have_left_upstream_is_undone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A request that fails (not cancelled) may or may not have reached the broker: the add is undone,
    the error is raised, and the instrument is unsubscribed again in the background."""
    broker = fake()
    async with open_market_data(broker) as md, md.subscribe([A]) as sub:
        broker.fail_next("subscribe", SubscriptionError("refused by the fake"))
        with pytest.raises(SubscriptionError, match="refused"):
            await sub.add([B])
        assert sub.symbols == {A}
        await trio.testing.wait_all_tasks_blocked()  # the tidy task has run
        assert Request(0, "unsubscribe", (B,), None) in feed(broker).requests
        assert broker.subscriptions == {A: Mode.QUOTE}
        assert instruments(md) == 1
        await sub.add([B])
        assert sub.symbols == {A, B}
        assert B in broker.subscriptions


async def test_a_connection_failing_under_a_request_is_a_connect_error_and_nothing_is_added(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The connection fails for good while a request is made on it: a subscription that held an
    instrument there ends with the failure; one that was only adding gets ConnectError, holds nothing,
    and goes on (a later add gets a fresh connection)."""
    broker = fake()
    async with open_market_data(broker) as md, md.subscribe([A]) as held, md.subscribe([]) as adding:
        broker.hold("subscribe")
        async with trio.open_nursery() as nursery:

            async def add() -> None:
                with pytest.raises(ConnectError, match="nothing of the change"):
                    await adding.add([B])

            nursery.start_soon(add)
            await broker.wait_parked("subscribe")
            feed(broker).fail(ConnectError("gone for good"))
            broker.release("subscribe")
        with pytest.raises(ConnectError, match="gone for good"):
            async for event in held:  # A was on the failed connection: that subscription ended
                assert isinstance(event, Disconnected)
        await trio.testing.wait_all_tasks_blocked()
        assert adding.symbols == frozenset()
        assert instruments(md) == 0
        assert md.statistics().brokers[0].connections[0].instruments == 0
        await adding.add([B])
        assert [c.connection for c in md.statistics().brokers[0].connections] == [0, 1]
        assert broker.subscriptions == {B: Mode.QUOTE}


async def test_a_newcomer_waiting_while_a_connection_fails_gets_a_fresh_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A subscription asking for an instrument of a connection that fails meanwhile (its failure waiting
    for the change in progress) is placed on a fresh connection, never on the dead one."""
    broker = fake()
    async with (
        open_market_data(broker) as md,
        md.subscribe([A]) as first,
        md.subscribe([]) as busy,
        md.subscribe([]) as newcomer,
    ):
        broker.hold("subscribe")
        async with trio.open_nursery() as nursery:

            async def busy_add() -> None:
                with pytest.raises(ConnectError):
                    await busy.add([C])  # holds the lock, its request parked on connection 0

            async def newcomer_add() -> None:
                await newcomer.add([A])

            nursery.start_soon(busy_add)
            await broker.wait_parked("subscribe")
            nursery.start_soon(newcomer_add)
            await trio.testing.wait_all_tasks_blocked()  # the newcomer waits for the lock
            feed(broker).fail(ConnectError("gone for good"))
            await trio.testing.wait_all_tasks_blocked()  # the failure waits for the lock too
            broker.release("subscribe")
        with pytest.raises(ConnectError, match="gone for good"):
            async for event in first:
                assert isinstance(event, Disconnected)
        await trio.testing.wait_all_tasks_blocked()
        assert newcomer.symbols == {A}
        assert feed(broker, 1).subscriptions == {A: Mode.QUOTE}
        feed(broker, 1).push(tick(A))
        with trio.fail_after(1):
            await newcomer.wait_ready()
        assert [t.symbol for t in await ticks_of(newcomer)] == [A]


# ---------------------------------------------------------------------------------------------------------
# subscribe (entering the block)


@pytest.mark.parametrize("point", ["master", "connect", "subscribe", "limiter"])
async def test_subscribe_cancelled_anywhere_leaves_nothing_and_a_retry_works(
    point: Point | Literal["limiter"], autojump_clock: trio.testing.MockClock
) -> None:
    # The limiter case: one token for the connection, the request waits a second for the next.
    limit = RateLimit(rate=1.0, burst=1) if point == "limiter" else None
    broker = fake(rate_limit=limit)
    async with open_market_data(broker) as md:
        if point == "limiter":
            with trio.move_on_after(0.5):
                async with md.subscribe([A, B]):
                    pytest.fail("must not be entered")  # pragma: no cover
        else:
            broker.hold(point)

            async def enter() -> None:
                async with md.subscribe([A, B]):
                    pytest.fail("must not be entered")  # pragma: no cover

            await cancel_when_parked(broker, point, enter)
            broker.release(point)
        stats = md.statistics()
        assert stats.subscriptions == 0
        assert stats.brokers[0].instruments == 0
        assert broker.subscriptions == {}
        async with md.subscribe([A, B], mode="full") as sub:
            assert broker.subscriptions == {A: Mode.FULL, B: Mode.FULL}
            broker.connections[-1].push(tick(A), tick(B))
            await sub.wait_ready()
            assert [t.symbol for t in await ticks_of(sub)] == [A, B]


# ---------------------------------------------------------------------------------------------------------
# Subscription.remove and leaving the block


async def test_remove_cancelled_while_waiting_for_another_change_removes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = fake()
    async with open_market_data(broker) as md, md.subscribe([A, B]) as sub, md.subscribe([C]) as other:
        broker.hold("subscribe")
        async with trio.open_nursery() as nursery:

            async def other_add() -> None:
                await other.add([D])

            nursery.start_soon(other_add)
            await broker.wait_parked("subscribe")

            async def remove() -> None:
                await sub.remove([B])

            await cancel_when_blocked(remove)
            broker.release("subscribe")
        assert sub.symbols == {A, B}
        feed(broker).push(tick(B))
        assert [t.symbol for t in await ticks_of(sub)] == [B]
        assert B in broker.subscriptions
        assert instruments(md) == 4


async def test_remove_cancelled_during_the_unsubscribe_has_removed_and_the_unsubscribe_completes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Once the lock is taken the removal is applied at once; a cancellation during the unsubscribe that
    follows leaves the symbol removed, and the unsubscribe is completed in the background."""
    broker = fake()
    async with open_market_data(broker) as md, md.subscribe([A, B]) as sub:
        broker.hold("unsubscribe")

        async def remove() -> None:
            await sub.remove([B])

        await cancel_when_parked(broker, "unsubscribe", remove)
        assert sub.symbols == {A}
        feed(broker).push(tick(A), tick(B))
        assert [t.symbol for t in await ticks_of(sub)] == [A]  # B is no longer delivered
        assert B in broker.subscriptions  # not yet unsubscribed...
        broker.release("unsubscribe")
        await trio.testing.wait_all_tasks_blocked()
        assert B not in broker.subscriptions  # ...but it is, in the background
        assert instruments(md) == 1
        await sub.add([B])  # and B can be added again
        assert broker.subscriptions == {A: Mode.QUOTE, B: Mode.QUOTE}


async def test_a_failed_unsubscribe_is_logged_not_raised_and_the_next_change_makes_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = fake()
    async with open_market_data(broker) as md, md.subscribe([A, B]) as sub:
        broker.fail_next("unsubscribe", RuntimeError("the broker is having a day"))
        await sub.remove([B])  # applied: the upstream part is the manager's business
        assert sub.symbols == {A}
        assert B in broker.subscriptions
        assert "having a day" in caplog.text
        await sub.add([C])  # makes the unsubscribe first, then its own request
        assert broker.subscriptions == {A: Mode.QUOTE, C: Mode.QUOTE}
        assert [r.action for r in feed(broker).requests[-2:]] == ["unsubscribe", "subscribe"]
        assert instruments(md) == 2


async def test_an_unsubscribe_refused_three_times_is_retried_with_backoff_until_taken(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Everyone leaves; the broker refuses the unsubscribe on leaving, on the tidy task's first pass and
    on its retry 1 s later; the next retry, 2 s after that, is taken: nothing stays upstream, and the
    connection's place is free again without any change having to come first."""
    broker = fake(max_instruments_per_connection=1, max_connections=1)
    async with open_market_data(broker) as md:
        async with md.subscribe([A]):
            for n in range(3):
                broker.fail_next("unsubscribe", SubscriptionError(f"refused {n}"))
        start = trio.current_time()
        await trio.testing.wait_all_tasks_blocked()
        assert broker.subscriptions == {A: Mode.QUOTE}  # refused on leaving and on the first pass
        await trio.sleep(2.5)
        assert broker.subscriptions == {A: Mode.QUOTE}  # refused again at +1 s
        await trio.sleep(0.5)
        await trio.testing.wait_all_tasks_blocked()
        assert trio.current_time() - start == pytest.approx(3.0)
        assert broker.subscriptions == {}  # taken at +3 s
        assert instruments(md) == 0
        assert [m for m in caplog.messages if "retried in the background" in m] == [
            "broker 'fake' connection 0: unsubscribe of 1 instruments failed "
            f"(SubscriptionError: refused {n}); retried in the background until it succeeds or the "
            "connection ends"
            for n in range(3)
        ]
        made = len(broker.requests)
        async with md.subscribe([B]) as sub:  # the only place is free: no leftover to lower first
            assert sub.symbols == {B}
            assert [(r.action, r.symbols) for r in broker.requests[made:]] == [("subscribe", (B,))]
        await trio.testing.wait_all_tasks_blocked()
        assert broker.subscriptions == {}


async def test_a_refused_unsubscribe_is_retried_with_a_bounded_backoff_until_the_connection_ends(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    broker = fake()
    async with open_market_data(broker) as md:
        async with md.subscribe([A]):
            for _ in range(20):
                broker.fail_next("unsubscribe", SubscriptionError("refused"))
        start = trio.current_time()
        await trio.sleep(10 * 60)
        refusals = [m for m in caplog.messages if "retried in the background" in m]
        # On leaving, the tidy task's first pass at once, then retries at +1, 3, 7, 15, 31, 63 s (the
        # delay doubling from 1 s) and every 60 s from there (123 ... 543 s): 16 by 600 s.
        assert len(refusals) == 16
        assert broker.subscriptions == {A: Mode.QUOTE}
        feed(broker).fail()
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(10 * 60)
        assert [m for m in caplog.messages if "retried in the background" in m] == refusals  # no more
        assert trio.current_time() - start == pytest.approx(1200.0)
        assert instruments(md) == 0
        async with md.subscribe([A]) as sub:  # a fresh connection
            assert sub.symbols == {A}
            assert broker.subscriptions == {A: Mode.QUOTE}


async def test_a_refused_downgrade_is_retried_until_taken_and_the_backoff_resets(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = fake()
    async with open_market_data(broker) as md, md.subscribe([A], mode=Mode.FULL) as sub:
        broker.fail_next("subscribe", SubscriptionError("refused"))
        broker.fail_next("subscribe", SubscriptionError("refused again"))
        await sub.set_mode(Mode.LTP)  # in force at once; the downgrade is the manager's business
        assert mode_of(sub) is Mode.LTP
        await trio.testing.wait_all_tasks_blocked()
        assert broker.subscriptions == {A: Mode.FULL}
        await trio.sleep(1)
        await trio.testing.wait_all_tasks_blocked()
        assert broker.subscriptions == {A: Mode.LTP}
        # A later refusal starts again from the first delay (1 s), not from where the last one stopped.
        await sub.set_mode(Mode.QUOTE)
        await sub.add([B])
        assert broker.subscriptions == {A: Mode.QUOTE, B: Mode.QUOTE}  # the upgrade went through
        broker.fail_next("unsubscribe", SubscriptionError("refused"))
        broker.fail_next("unsubscribe", SubscriptionError("refused again"))
        await sub.remove([B])
        await trio.testing.wait_all_tasks_blocked()
        assert broker.subscriptions == {A: Mode.QUOTE, B: Mode.QUOTE}
        await trio.sleep(1)
        await trio.testing.wait_all_tasks_blocked()
        assert broker.subscriptions == {A: Mode.QUOTE}
        assert instruments(md) == 1


async def test_leaving_while_the_broker_does_not_take_the_unsubscribe(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Leaving a block is bounded (5 s): the subscription lets go of its symbols at once, and what the
    broker did not take in time is unsubscribed later, in the background."""
    broker = fake()
    async with open_market_data(broker) as md, md.subscribe([B]) as staying:
        async with md.subscribe([A]):
            broker.hold("unsubscribe")
            start = trio.current_time()
        assert trio.current_time() - start == pytest.approx(5.0)  # the bound, on trio's mock clock
        assert md.statistics().subscriptions == 1
        assert staying.symbols == {B}
        feed(broker).push(tick(A), tick(B))
        assert [t.symbol for t in await ticks_of(staying)] == [B]
        broker.release("unsubscribe")
        await trio.testing.wait_all_tasks_blocked()
        assert broker.subscriptions == {B: Mode.QUOTE}
        assert instruments(md) == 1


async def test_a_subscription_left_while_its_add_is_in_flight_holds_nothing_afterwards(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = fake()
    async with open_market_data(broker) as md:
        errors: list[BaseException] = []
        async with trio.open_nursery() as nursery:
            async with md.subscribe([A]) as sub:
                broker.hold("subscribe")

                async def add() -> None:
                    try:
                        await sub.add([B])
                    except FeedClosedError as exc:
                        errors.append(exc)

                nursery.start_soon(add)
                await broker.wait_parked("subscribe")
            broker.release("subscribe")
        assert len(errors) == 1
        assert sub.symbols == frozenset()
        await trio.testing.wait_all_tasks_blocked()
        assert broker.subscriptions == {}
        assert instruments(md) == 0


# ---------------------------------------------------------------------------------------------------------
# Subscription.set_mode


async def test_set_mode_upgrade_cancelled_in_flight_keeps_the_old_mode_and_a_retry_works(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = fake()
    async with open_market_data(broker) as md, md.subscribe([A], mode=Mode.LTP) as sub:
        broker.hold("subscribe")

        async def upgrade() -> None:
            await sub.set_mode(Mode.FULL)

        await cancel_when_parked(broker, "subscribe", upgrade)
        broker.release("subscribe")
        assert sub.mode is Mode.LTP
        assert sub.statistics().mode is Mode.LTP
        assert broker.subscriptions == {A: Mode.LTP}
        feed(broker).push(tick(A, Mode.FULL))
        assert [t.mode for t in await ticks_of(sub)] == [Mode.LTP]  # still reduced to its mode
        await sub.set_mode("full")
        assert sub.statistics().mode is Mode.FULL
        assert broker.subscriptions == {A: Mode.FULL}
        assert instruments(md) == 1


async def test_set_mode_downgrade_cancelled_during_the_request_has_downgraded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = fake()
    async with open_market_data(broker) as md, md.subscribe([A], mode=Mode.FULL) as sub:
        broker.hold("subscribe")

        async def downgrade() -> None:
            await sub.set_mode(Mode.LTP)

        await cancel_when_parked(broker, "subscribe", downgrade)
        assert sub.mode is Mode.LTP
        feed(broker).push(tick(A, Mode.FULL))
        assert [t.mode for t in await ticks_of(sub)] == [Mode.LTP]
        broker.release("subscribe")
        await trio.testing.wait_all_tasks_blocked()
        assert broker.subscriptions == {A: Mode.LTP}  # completed in the background
        assert instruments(md) == 1


async def test_an_add_queued_behind_a_cancelled_upgrade_keeps_the_old_mode(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two changes of one subscription at once: the add reads the mode under the lock, after the
    upgrade in flight was cancelled and undone, so the upgrade does not come back with it."""
    broker = fake()
    async with open_market_data(broker) as md, md.subscribe([A], mode=Mode.QUOTE) as sub:
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def upgrade() -> None:
                with scope:
                    await sub.set_mode(Mode.FULL)

            broker.hold("subscribe")
            nursery.start_soon(upgrade)
            await broker.wait_parked("subscribe")
            assert mode_of(sub) is Mode.FULL  # the change in flight, applied to what is wanted
            nursery.start_soon(sub.add, [B])
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert mode_of(sub) is Mode.QUOTE  # undone
            broker.release("subscribe")
        assert scope.cancelled_caught
        assert mode_of(sub) is Mode.QUOTE
        assert sub.symbols == {A, B}
        assert broker.subscriptions == {A: Mode.QUOTE, B: Mode.QUOTE}
        assert [(r.action, r.symbols, r.mode) for r in broker.requests[-1:]] == [
            ("subscribe", (B,), Mode.QUOTE)
        ]


async def test_an_add_queued_behind_a_completed_set_mode_keeps_the_new_mode(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """set_mode then add, queued in that order behind another change: both complete, and the mode is
    the one set_mode set (the add did not put back the mode it saw when it was called)."""
    broker = fake()
    async with open_market_data(broker) as md, md.subscribe([A], mode=Mode.QUOTE) as sub:
        async with trio.open_nursery() as nursery:

            async def other() -> None:
                async with md.subscribe([C]):
                    await trio.sleep_forever()

            broker.hold("subscribe")
            nursery.start_soon(other)  # holds the broker's lock, parked at its subscribe
            await broker.wait_parked("subscribe")
            nursery.start_soon(sub.set_mode, Mode.LTP)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(sub.add, [B])
            await trio.testing.wait_all_tasks_blocked()
            assert mode_of(sub) is Mode.QUOTE  # both wait for the lock
            assert sub.symbols == {A}
            broker.release("subscribe")
            await trio.testing.wait_all_tasks_blocked()
            assert mode_of(sub) is Mode.LTP
            assert sub.symbols == {A, B}
            assert broker.subscriptions == {A: Mode.LTP, B: Mode.LTP, C: Mode.QUOTE}
            feed(broker).push(tick(A, Mode.FULL), tick(B, Mode.FULL))
            assert [(t.symbol, t.mode) for t in await ticks_of(sub)] == [(A, Mode.LTP), (B, Mode.LTP)]
            nursery.cancel_scope.cancel()
        assert mode_of(sub) is Mode.LTP


# ---------------------------------------------------------------------------------------------------------
# Arguments: accepted as documented, or ConfigurationError before anything is recorded or sent

_ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.binary(max_size=4),
    st.tuples(st.integers()),
    st.sampled_from([object(), Mode.LTP, Overflow.CONFLATE, math.inf, -0.0, [A], {A: 1}]),
)
_SYMBOL_LISTS = st.one_of(
    st.lists(st.sampled_from(SYMBOLS[:4]), max_size=3),
    st.lists(st.one_of(st.sampled_from(SYMBOLS[:4]), st.text(max_size=8)), max_size=3),
    st.lists(st.one_of(st.sampled_from(SYMBOLS[:4]), _ANYTHING), max_size=3).map(tuple),
    st.sampled_from(SYMBOLS[:4]),  # a bare string: an iterable of characters, refused
    _ANYTHING,
)
_MODES = st.one_of(st.sampled_from(list(Mode)), st.sampled_from(["ltp", "quote", "full"]), _ANYTHING)
_OVERFLOWS = st.one_of(
    st.sampled_from(list(Overflow)),
    st.sampled_from(["block", "drop_oldest", "drop_newest", "conflate"]),
    _ANYTHING,
)
_BUFFERS = st.one_of(st.integers(-2, 20), _ANYTHING)
_NAMES = st.one_of(st.none(), st.just("fake"), _ANYTHING)


def symbols_ok(value: object) -> bool:
    if isinstance(value, (str, bytes)):
        return False
    try:
        items = list(value)  # type: ignore[call-overload]
    except TypeError:
        return False
    return all(isinstance(s, str) for s in items)


def mode_ok(value: object) -> bool:
    return isinstance(value, str) and value in {"ltp", "quote", "full"}


def overflow_ok(value: object) -> bool:
    return isinstance(value, str) and value in {"block", "drop_oldest", "drop_newest", "conflate"}


def buffer_ok(value: object) -> bool:
    return type(value) is int and value >= 1


@settings(max_examples=300, deadline=None)
@given(
    symbols=_SYMBOL_LISTS,
    mode=_MODES,
    overflow=_OVERFLOWS,
    buffer=_BUFFERS,
    name=_NAMES,
    user_id=st.one_of(st.none(), st.text(max_size=5), _ANYTHING),
)
async def test_subscribe_arguments_are_accepted_as_documented_or_refused_before_anything_happens(
    symbols: Any, mode: Any, overflow: Any, buffer: Any, name: Any, user_id: Any
) -> None:
    broker = fake()
    valid = (
        symbols_ok(symbols)
        and mode_ok(mode)
        and overflow_ok(overflow)
        and buffer_ok(buffer)
        and (name is None or name == "fake")
        and (user_id is None or isinstance(user_id, str))
    )
    async with open_market_data(broker) as md:
        before = md.statistics()
        if not valid:
            with pytest.raises(ConfigurationError):
                async with md.subscribe(
                    symbols, mode=mode, overflow=overflow, buffer=buffer, broker=name, user_id=user_id
                ):
                    pytest.fail("must not be entered")  # pragma: no cover
            assert md.statistics() == before
            assert broker.connections == []
            assert broker.master_loads == 0
            return
        wanted = list(dict.fromkeys(symbols))
        unknown = [s for s in wanted if s not in SYMBOLS]
        if unknown:
            with pytest.raises(UnknownSymbolError) as info:
                async with md.subscribe(
                    symbols, mode=mode, overflow=overflow, buffer=buffer, broker=name, user_id=user_id
                ):
                    pytest.fail("must not be entered")  # pragma: no cover
            assert list(info.value.symbols) == unknown
            assert md.statistics() == before
            return
        async with md.subscribe(
            symbols, mode=mode, overflow=overflow, buffer=buffer, broker=name, user_id=user_id
        ) as sub:
            assert sub.symbols == set(wanted)
            assert sub.mode == mode
            assert sub.mode is Mode(mode)
            assert sub.statistics().overflow is Overflow(overflow)
            assert broker.subscriptions == {s: Mode(mode) for s in wanted}


@settings(max_examples=200, deadline=None)
@given(method=st.sampled_from(["add", "remove", "set_mode"]), value=st.one_of(_SYMBOL_LISTS, _MODES))
async def test_a_change_with_a_bad_argument_changes_nothing(method: str, value: Any) -> None:
    broker = fake()
    async with open_market_data(broker) as md, md.subscribe([A], mode=Mode.QUOTE) as sub:
        requests = list(feed(broker).requests)
        before = (sub.symbols, sub.mode, md.statistics())
        ok = mode_ok(value) if method == "set_mode" else symbols_ok(value)
        call = getattr(sub, method)
        if ok:
            try:
                await call(value)
            except UnknownSymbolError:
                assert (sub.symbols, sub.mode, md.statistics()) == before
            return
        with pytest.raises(ConfigurationError):
            await call(value)
        assert (sub.symbols, sub.mode, md.statistics()) == before
        assert feed(broker).requests == requests


@given(stale_after=st.one_of(st.floats(allow_nan=True, allow_infinity=True), _ANYTHING))
async def test_stale_after_is_a_positive_finite_number_or_none(stale_after: Any) -> None:
    ok = stale_after is None or (
        type(stale_after) in (int, float) and math.isfinite(stale_after) and stale_after > 0
    )
    if ok:
        async with open_market_data(fake(), stale_after=stale_after) as md:
            assert md.statistics().subscriptions == 0
    else:
        with pytest.raises(ConfigurationError, match="stale_after"):
            open_market_data(fake(), stale_after=stale_after)


@pytest.mark.parametrize(
    "brokers",
    [(), (fake(), fake()), (object(),), ("kite",), (None,), (Nameless(SYMBOLS),)],
    ids=["none", "same-name", "object", "str", "None", "empty-name"],
)
def test_open_market_data_refuses_bad_brokers_when_called(brokers: tuple[Any, ...]) -> None:
    with pytest.raises(ConfigurationError):
        open_market_data(*brokers)


async def test_an_unknown_broker_name_is_refused_when_subscribe_is_called(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_market_data(fake()) as md:
        with pytest.raises(ConfigurationError, match="no broker named 'xts'"):
            md.subscribe([A], broker="xts")
        with pytest.raises(ConfigurationError, match="a bare string"):
            md.subscribe(A)
        assert md.statistics().subscriptions == 0


async def test_many_unknown_symbols_make_a_bounded_message(autojump_clock: trio.testing.MockClock) -> None:
    async with open_market_data(fake()) as md:
        unknown = [f"NSE:NOPE{n}" for n in range(5000)]
        with pytest.raises(UnknownSymbolError) as info:
            async with md.subscribe(unknown):
                pytest.fail("must not be entered")  # pragma: no cover
        assert info.value.symbols == tuple(unknown)
        assert len(str(info.value)) < 1000
        assert "4980 more" in str(info.value)
