"""`trading_ws.testing`: the documented example runs, `FakeBroker` keeps the contracts the manager relies
on (and that docs/testing.md promises), and the simulators' names load lazily, naming the extra when it
is missing."""

from __future__ import annotations

import importlib.util
import inspect
import math
import re
import subprocess
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings, strategies as st

import trading_ws.testing
from trading_ws import (
    AuthenticationError,
    Broker,
    BrokerMessage,
    Candle,
    ConfigurationError,
    Connected,
    ConnectError,
    Depth,
    Disconnected,
    Event,
    FeedClosedError,
    Gap,
    InstrumentPropertyChange,
    MarketStatus,
    Mode,
    Ohlc,
    OpenInterest,
    OrderUpdate,
    RateLimit,
    Reconnecting,
    Resubscribed,
    Stale,
    Subscription,
    SubscriptionError,
    Tick,
    open_market_data,
)
from trading_ws._ratelimit import TokenBucket
from trading_ws.brokers._interface import BrokerConfig, BrokerFeed
from trading_ws.testing import FakeBroker, FakeConnection, Request

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "test_with_fakebroker.py"


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("example_test_with_fakebroker", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE_TESTS: dict[str, Callable[[trio.testing.MockClock], Coroutine[Any, Any, None]]] = {
    name: function
    for name, function in inspect.getmembers(load_example(), inspect.iscoroutinefunction)
    if name.startswith("test_")
}


# ---------------------------------------------------------------------------------------------------------
# docs/examples/test_with_fakebroker.py


def test_the_example_has_its_tests() -> None:
    assert sorted(EXAMPLE_TESTS) == [
        "test_a_connection_lost_for_good_ends_the_strategy",
        "test_alerts_once_per_crossing",
        "test_no_crossing_is_inferred_across_a_gap",
        "test_refused_credentials_fail_the_start",
    ]


@pytest.mark.parametrize("name", sorted(EXAMPLE_TESTS))
def test_each_example_test_passes_under_the_autojump_clock(name: str) -> None:
    clock = trio.testing.MockClock(autojump_threshold=0)
    trio.run(EXAMPLE_TESTS[name], clock, clock=clock)


def test_the_example_breaks_when_the_strategy_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its assertions are real: a strategy that forgets the gap rule fails the gap test, one that alerts
    on every tick above the level fails the crossing test."""
    example = load_example()
    source = EXAMPLE.read_text(encoding="utf-8")
    broken = source.replace("below.pop(symbol, None)", "pass")
    assert broken != source
    namespace: dict[str, Any] = {"__name__": "broken_example"}
    exec(compile(broken, str(EXAMPLE), "exec"), namespace)
    clock = trio.testing.MockClock(autojump_threshold=0)
    with pytest.raises(AssertionError):
        trio.run(namespace["test_no_crossing_is_inferred_across_a_gap"], clock, clock=clock)
    greedy = source.replace("if below.get(event.symbol) and", "if")
    assert greedy != source
    exec(compile(greedy, str(EXAMPLE), "exec"), namespace)
    clock = trio.testing.MockClock(autojump_threshold=0)
    with pytest.raises(AssertionError):
        trio.run(namespace["test_alerts_once_per_crossing"], clock, clock=clock)
    assert example.LEVELS == {"NSE:INFY": 1500.0, "NSE:TCS": 4000.0}


def test_the_example_runs_with_pytest_as_documented(pytester: pytest.Pytester) -> None:
    """``pytest docs/examples/test_with_fakebroker.py`` with pytest-trio in trio mode, as docs/testing.md
    says (in process: a fresh pytest session over a copy of the file)."""
    pytester.makepyfile(test_with_fakebroker=EXAMPLE.read_text(encoding="utf-8"))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-o", "trio_mode=true")
    result.assert_outcomes(passed=4)


def page_tests() -> dict[str, Callable[[trio.testing.MockClock], Coroutine[Any, Any, None]]]:
    """The test functions of docs/testing.md's python blocks that run on FakeBroker (their one argument is
    the autojump clock; the simulator's block needs a network and is only type-checked)."""
    text = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    found = {}
    for n, code in enumerate(re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)):
        namespace: dict[str, Any] = {"__name__": f"testing_md_{n}"}
        exec(compile(code, f"docs/testing.md block {n + 1}", "exec"), namespace)
        for name, function in namespace.items():
            if name.startswith("test_") and list(inspect.signature(function).parameters) == [
                "autojump_clock"
            ]:
                found[name] = function
    return found


PAGE_TESTS = page_tests()


def test_the_pages_examples_are_found() -> None:
    assert sorted(PAGE_TESTS) == [
        "test_a_cancelled_subscribe_leaves_nothing",
        "test_a_drop_is_a_gap",
        "test_a_refused_unsubscribe_is_tried_again",
        "test_an_expired_token_ends_the_subscription",
        "test_let_one_request_through_and_catch_the_next",
        "test_my_subscription",
        "test_two_users_share_one_upstream",
    ]


@pytest.mark.parametrize("name", sorted(PAGE_TESTS))
def test_each_example_of_the_page_passes(name: str) -> None:
    clock = trio.testing.MockClock(autojump_threshold=0)
    trio.run(PAGE_TESTS[name], clock, clock=clock)


async def receive(sub: Subscription) -> list[Event]:
    """The subscription's next batch, which must be there already (fails rather than hangs)."""
    with trio.fail_after(1):
        return await sub.receive_batch()


# ---------------------------------------------------------------------------------------------------------
# FakeBroker: construction


def test_the_fake_keeps_the_manager_protocols() -> None:
    broker = FakeBroker(["NSE:A"])
    assert isinstance(broker, BrokerConfig)
    assert FakeConnection.__init__ is not None
    checked: tuple[type[BrokerConfig], type[BrokerFeed]] = (FakeBroker, FakeConnection)  # mypy checks
    assert checked


def test_the_master_from_symbols_or_a_mapping() -> None:
    assert FakeBroker(["NSE:A", "NSE:B"]).instruments == {"NSE:A": 1, "NSE:B": 2}
    assert FakeBroker({"NSE:INFY": 408065}).instruments == {"NSE:INFY": 408065}


@pytest.mark.parametrize(
    ("instruments", "options"),
    [
        ("NSE:A", {}),
        (["NSE:A", "NSE:A"], {}),
        ([""], {}),
        ([5], {}),
        ({"NSE:A": 0}, {}),
        ({"NSE:A": True}, {}),
        ({"NSE:A": 1, "NSE:B": 1}, {}),
        (["NSE:A"], {"name": ""}),
        (["NSE:A"], {"max_connections": 0}),
        (["NSE:A"], {"max_instruments_per_connection": 1.5}),
    ],
    ids=repr,
)
def test_bad_arguments_are_refused_up_front(instruments: Any, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        FakeBroker(instruments, **options)


def test_tick_builds_a_decoded_tick() -> None:
    broker = FakeBroker({"NSE:INFY": 408065}, broker=Broker.XTS)
    tick = broker.tick("NSE:INFY", 1500.5, mode=Mode.QUOTE, volume=7)
    assert (tick.broker, tick.instrument_token, tick.segment, tick.mode) == (
        Broker.XTS,
        408065,
        1,
        Mode.QUOTE,
    )
    assert (tick.last_price, tick.volume, tick.symbol, tick.tradable) == (1500.5, 7, None, True)
    with pytest.raises(ConfigurationError, match="no instrument 'NSE:TCS'"):
        broker.tick("NSE:TCS")


# ---------------------------------------------------------------------------------------------------------
# FakeConnection: requests are all or nothing


async def test_a_request_is_all_or_nothing(autojump_clock: trio.testing.MockClock) -> None:
    broker = FakeBroker(["NSE:A", "NSE:B"])
    async with broker.open_feed(0, TokenBucket(broker.rate_limit)) as feed:
        assert await feed.receive_batch() == [Connected(Broker.KITE, 0, broker._now())]
        broker.hold("subscribe")
        with trio.move_on_after(1) as scope:
            await feed.subscribe([1, 2], Mode.FULL)
        assert scope.cancelled_caught
        assert (feed.subscriptions, feed.requests, broker.waiting("subscribe")) == ({}, [], 0)
        broker.release("subscribe")
        await feed.subscribe([1, 2], Mode.FULL)
        assert feed.subscriptions == {"NSE:A": Mode.FULL, "NSE:B": Mode.FULL}
        broker.fail_next("unsubscribe", SubscriptionError("refused"))
        with pytest.raises(SubscriptionError, match="refused"):
            await feed.unsubscribe([1])
        assert feed.subscriptions == {"NSE:A": Mode.FULL, "NSE:B": Mode.FULL}
        await feed.unsubscribe([1])
        assert feed.subscriptions == {"NSE:B": Mode.FULL}
        assert feed.requests == [
            Request(0, "subscribe", ("NSE:A", "NSE:B"), Mode.FULL),
            Request(0, "unsubscribe", ("NSE:A",), None),
        ]
        with pytest.raises(SubscriptionError, match="no instrument"):
            await feed.subscribe([99], Mode.LTP)
        assert isinstance(feed, BrokerFeed)
    assert feed.closed
    with pytest.raises(FeedClosedError):
        await feed.subscribe([1], Mode.LTP)
    with pytest.raises(FeedClosedError):
        await feed.receive_batch()


async def test_requests_wait_for_the_rate_limiter(autojump_clock: trio.testing.MockClock) -> None:
    broker = FakeBroker(["NSE:A", "NSE:B", "NSE:C"], rate_limit=RateLimit(rate=2.0, burst=1))
    async with open_market_data(broker) as md:
        start = trio.current_time()
        async with md.subscribe(["NSE:A"]), md.subscribe(["NSE:B"]), md.subscribe(["NSE:C"]):
            # the connection takes the one token; then one request every half second
            assert trio.current_time() - start == pytest.approx(1.5)
            assert len(broker.requests) == 3


async def test_wait_parked_needs_a_hold(autojump_clock: trio.testing.MockClock) -> None:
    broker = FakeBroker(["NSE:A"])
    with pytest.raises(RuntimeError, match="hold"):
        await broker.wait_parked("connect")
    with pytest.raises(ConfigurationError, match="no await point"):
        broker.hold("login")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="exception instance"):
        broker.fail_next("master", "boom")  # type: ignore[arg-type]


async def test_failures_queue_in_order(autojump_clock: trio.testing.MockClock) -> None:
    broker = FakeBroker(["NSE:A"])
    broker.fail_next("master", ConnectError("first"))
    broker.fail_next("master", SubscriptionError("second"))
    with pytest.raises(ConnectError, match="first"):
        await broker.load_instruments()
    with pytest.raises(SubscriptionError, match="second"):
        await broker.load_instruments()
    assert list(await broker.load_instruments()) == ["NSE:A"]
    assert broker.master_loads == 1


# ---------------------------------------------------------------------------------------------------------
# Driving the manager


async def test_push_goes_only_where_the_instrument_is_subscribed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = FakeBroker(["NSE:A", "NSE:B", "NSE:C"], max_instruments_per_connection=1)
    async with open_market_data(broker) as md, md.subscribe(["NSE:A", "NSE:B"]) as sub:
        assert [c.subscriptions for c in broker.connections] == [{"NSE:A": Mode.QUOTE}, {"NSE:B": Mode.QUOTE}]
        assert (
            broker.push(broker.tick("NSE:A", 1.0), broker.tick("NSE:B", 2.0), broker.tick("NSE:C", 3.0)) == 2
        )
        ticks = [(t.symbol, t.last_price) for t in await receive(sub) if isinstance(t, Tick)]
        assert ticks == [("NSE:A", 1.0), ("NSE:B", 2.0)]  # one frame from each connection, none of C
        with pytest.raises(ValueError, match="status event"):
            broker.push(Connected(Broker.KITE, 0, 0.0))


async def test_order_updates_go_to_every_connection(autojump_clock: trio.testing.MockClock) -> None:
    broker = FakeBroker(["NSE:A"])
    async with open_market_data(broker) as md, md.subscribe(["NSE:A"]), md.order_updates() as updates:
        update = OrderUpdate(Broker.KITE, {"order_id": "1", "status": "COMPLETE"}, broker._now())
        assert broker.push(update) == 1
        assert await updates.receive() == update


async def test_drop_reconnect_and_the_gap_are_exact(autojump_clock: trio.testing.MockClock) -> None:
    broker = FakeBroker(["NSE:A", "NSE:B"])
    async with open_market_data(broker) as md, md.subscribe(["NSE:A", "NSE:B"]) as sub:
        [connection] = broker.connections
        down = broker._now()
        connection.drop("cable cut", delay=2.5)
        assert not connection.connected
        with pytest.raises(RuntimeError, match="down"):
            connection.push(broker.tick("NSE:A"))
        assert broker.push(broker.tick("NSE:A")) == 0  # nothing is up to carry it
        await trio.sleep(2.5)
        connection.drop()  # the first attempt failed too
        await trio.sleep(4.0)
        connection.reconnect()
        up = broker._now()
        assert await receive(sub) == [
            Disconnected(Broker.KITE, 0, "cable cut", down),
            Reconnecting(Broker.KITE, 0, 1, 2.5, down),
            Disconnected(Broker.KITE, 0, "connection lost (dropped by the test)", down + 2.5),
            Reconnecting(Broker.KITE, 0, 2, 1.0, down + 2.5),
            Connected(Broker.KITE, 0, up),
            Resubscribed(Broker.KITE, 0, 2, up),
            Gap(Broker.KITE, 0, ("NSE:A", "NSE:B"), down, up),
        ]
        assert up - down == pytest.approx(6.5)
        assert broker.connections[0].connected
        with pytest.raises(RuntimeError, match="is up"):
            connection.reconnect()


async def test_fail_ends_the_subscriptions_and_a_new_subscriber_gets_a_new_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = FakeBroker(["NSE:A"])
    async with open_market_data(broker) as md:
        async with md.subscribe(["NSE:A"]) as sub:
            [connection] = broker.connections
            error = ConnectError("gone")
            connection.fail(error)
            assert connection.failed is error
            with pytest.raises(ConnectError, match="gone"):
                async for _ in sub:
                    pass
            with pytest.raises(RuntimeError):
                connection.fail()
            assert broker.subscriptions == {}
        async with md.subscribe(["NSE:A"]):
            assert [c.index for c in broker.connections] == [0, 1]
            assert broker.subscriptions == {"NSE:A": Mode.QUOTE}


async def test_refused_credentials(autojump_clock: trio.testing.MockClock) -> None:
    broker = FakeBroker(["NSE:A"])
    broker.refuse_credentials()
    async with open_market_data(broker) as md:
        with pytest.raises(AuthenticationError):
            async with md.subscribe(["NSE:A"]):
                pass
        broker.refuse_credentials(False)
        async with md.subscribe(["NSE:A"]):
            [connection] = broker.connections
            broker.refuse_credentials()
            assert connection.connected  # an open connection stays up
            connection.drop()
            connection.reconnect()
            assert isinstance(connection.failed, AuthenticationError)
    assert broker.master_loads == 1


async def test_an_error_raised_by_the_sink_fails_the_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """As a real feed's reader task ends with what the manager's routing raised."""
    broker = FakeBroker(["NSE:A"])
    seen: list[list[Event]] = []

    def sink(batch: list[Event]) -> None:
        seen.append(batch)
        if any(isinstance(event, Tick) for event in batch):
            raise ZeroDivisionError("a bug in routing")

    async with broker.open_feed(0, TokenBucket(broker.rate_limit), sink=sink) as feed:
        feed.push(broker.tick("NSE:A"))
        assert isinstance(feed.failed, ZeroDivisionError)
        assert not feed.connected
        with pytest.raises(ZeroDivisionError):
            await feed.receive_batch()
        with pytest.raises(RuntimeError, match="cannot push"):
            feed.push(broker.tick("NSE:A"))
    assert [[type(e) for e in batch] for batch in seen] == [[Connected], [Tick]]


async def test_a_refused_upgrade_is_brought_back_to_the_mode_still_wanted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """As docs/testing.md says of fail_next at an upgrade's "subscribe": the call raises, and the manager
    then subscribes the instruments again in the mode still wanted (the refused request may have been
    made)."""
    broker = FakeBroker(["NSE:INFY"])
    async with open_market_data(broker) as md, md.subscribe(["NSE:INFY"]) as sub:
        broker.fail_next("subscribe", SubscriptionError("refused"))
        with pytest.raises(SubscriptionError, match="refused"):
            await sub.set_mode(Mode.FULL)
        assert sub.mode is Mode.QUOTE
        await trio.testing.wait_all_tasks_blocked()
        assert broker.requests == [
            Request(0, "subscribe", ("NSE:INFY",), Mode.QUOTE),
            Request(0, "subscribe", ("NSE:INFY",), Mode.QUOTE),
        ]
        assert broker.subscriptions == {"NSE:INFY": Mode.QUOTE}


# ---------------------------------------------------------------------------------------------------------
# Gates: release lets the parked calls go on, whatever follows


async def test_release_then_hold_lets_the_parked_calls_go_on(autojump_clock: trio.testing.MockClock) -> None:
    broker = FakeBroker(["NSE:A", "NSE:B"])
    async with broker.open_feed(0, TokenBucket(broker.rate_limit)) as feed, trio.open_nursery() as nursery:
        broker.hold("subscribe")
        nursery.start_soon(feed.subscribe, [1], Mode.LTP)
        nursery.start_soon(feed.subscribe, [2], Mode.QUOTE)
        await trio.testing.wait_all_tasks_blocked()
        assert (broker.waiting("subscribe"), feed.requests) == (2, [])
        broker.release("subscribe")
        broker.hold("subscribe")  # no checkpoint between: the two released calls still go on
        assert broker.waiting("subscribe") == 0  # released calls no longer count
        start = trio.current_time()
        with trio.move_on_after(5) as scope:
            await broker.wait_parked("subscribe")  # nothing new parks: it waits the 5 s out
        assert scope.cancelled_caught
        assert trio.current_time() - start == 5
        assert set(feed.requests) == {  # in either order: trio runs the two released calls in any
            Request(0, "subscribe", ("NSE:A",), Mode.LTP),
            Request(0, "subscribe", ("NSE:B",), Mode.QUOTE),
        }
        assert len(feed.requests) == 2
        # the hold still catches the next call, and wait_parked returns for it, at the moment it parks
        parked_at: list[float] = []

        async def watch() -> None:
            await broker.wait_parked("subscribe")
            parked_at.append(trio.current_time())

        nursery.start_soon(watch)
        await trio.sleep(3)
        assert parked_at == []
        nursery.start_soon(feed.subscribe, [1], Mode.FULL)
        await trio.testing.wait_all_tasks_blocked()
        assert parked_at == [start + 8]
        assert (broker.waiting("subscribe"), len(feed.requests)) == (1, 2)
        broker.release("subscribe")
        await trio.testing.wait_all_tasks_blocked()
        assert (broker.waiting("subscribe"), feed.requests[-1]) == (
            0,
            Request(0, "subscribe", ("NSE:A",), Mode.FULL),
        )


async def test_release_then_hold_through_the_manager(autojump_clock: trio.testing.MockClock) -> None:
    """The review's case: let the subscribe through, catch the add that follows."""
    broker = FakeBroker(["NSE:A", "NSE:B"])
    async with open_market_data(broker) as md, trio.open_nursery() as nursery:
        entered = trio.Event()

        async def subscriber() -> None:
            async with md.subscribe(["NSE:A"]) as sub:
                entered.set()
                await sub.add(["NSE:B"])
                await trio.sleep_forever()

        broker.hold("subscribe")
        nursery.start_soon(subscriber)
        await broker.wait_parked("subscribe")
        broker.release("subscribe")
        broker.hold("subscribe")
        with trio.fail_after(10):  # on the virtual clock: a call re-parked by the hold fails, not hangs
            await entered.wait()
            await broker.wait_parked("subscribe")
        assert broker.requests == [Request(0, "subscribe", ("NSE:A",), Mode.QUOTE)]
        assert broker.waiting("subscribe") == 1
        broker.release("subscribe")
        await trio.testing.wait_all_tasks_blocked()
        assert broker.requests == [
            Request(0, "subscribe", ("NSE:A",), Mode.QUOTE),
            Request(0, "subscribe", ("NSE:B",), Mode.QUOTE),
        ]
        assert broker.subscriptions == {"NSE:A": Mode.QUOTE, "NSE:B": Mode.QUOTE}
        nursery.cancel_scope.cancel()


async def test_a_watcher_outlives_release_then_hold_and_fails_on_a_release(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = FakeBroker(["NSE:A"])
    outcomes: list[str] = []

    async def watch() -> None:
        try:
            await broker.wait_parked("master")
        except RuntimeError as exc:
            outcomes.append(f"{trio.current_time():g}: {exc}")
        else:
            outcomes.append(f"{trio.current_time():g}: parked")

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        broker.hold("master")
        nursery.start_soon(watch)
        await trio.sleep(1)
        broker.release("master")
        broker.hold("master")  # the watcher, woken by the release, sees the point held again: waits on
        await trio.sleep(1)
        nursery.start_soon(broker.load_instruments)
        await trio.testing.wait_all_tasks_blocked()
        assert outcomes == [f"{start + 2:g}: parked"]
        nursery.start_soon(watch)  # one is parked now: returns at once
        await trio.testing.wait_all_tasks_blocked()
        assert outcomes[1:] == [f"{start + 2:g}: parked"]
        broker.release("master")
        broker.hold("master")
        nursery.start_soon(watch)
        await trio.sleep(1)
        broker.release("master")  # released with nothing parked: the wait could never end
    assert outcomes[2:] == [f"{start + 3:g}: 'master' was released before a call parked there"]
    assert broker.master_loads == 1


_GATE_STEPS = st.lists(st.sampled_from(["call", "hold", "release", "cancel", "settle"]), max_size=40)


@given(_GATE_STEPS)
@settings(max_examples=150, deadline=None)
def test_the_gate_rule(steps: list[str]) -> None:
    """Whatever the order of calls, holds, releases and cancellations: a call that reaches a held point
    parks; a call parked before a release goes on (even if the point is held again before it runs); a
    cancelled one records nothing; `waiting` counts the parked calls not released, and `wait_parked`
    returns at once exactly when there is one."""

    async def main() -> None:
        broker = FakeBroker(["NSE:A"])
        expected: list[str] = []  # per call: new, parked, released, done, cancelled
        outcome: list[str] = []  # per call: running, done, cancelled
        scopes: list[trio.CancelScope] = []
        held = False

        async def call(n: int) -> None:
            with scopes[n]:
                await broker.load_instruments()
                outcome[n] = "done"
                return
            outcome[n] = "cancelled"

        async def settle() -> None:
            await trio.testing.wait_all_tasks_blocked()
            for n, state in enumerate(expected):
                if state == "new":
                    expected[n] = "parked" if held else "done"
                elif state == "released":
                    expected[n] = "done"
            assert outcome == ["running" if s == "parked" else s for s in expected]
            parked = expected.count("parked")
            assert broker.waiting("master") == parked
            assert broker.master_loads == expected.count("done")
            if not held:
                with pytest.raises(RuntimeError):
                    await broker.wait_parked("master")
                return
            with trio.move_on_after(1) as scope:
                await broker.wait_parked("master")
            assert scope.cancelled_caught == (parked == 0)

        async with trio.open_nursery() as nursery:
            for step in [*steps, "settle", "release", "settle"]:
                if step == "call":
                    expected.append("new")
                    outcome.append("running")
                    scopes.append(trio.CancelScope())
                    nursery.start_soon(call, len(scopes) - 1)
                elif step == "hold":
                    held = True
                    broker.hold("master")
                elif step == "release":
                    held = False
                    broker.release("master")
                    expected[:] = ["released" if s == "parked" else s for s in expected]
                elif step == "cancel" and "parked" in expected:
                    n = expected.index("parked")
                    expected[n] = "cancelled"
                    scopes[n].cancel()
                elif step == "settle":
                    await settle()
        assert outcome.count("running") == 0

    clock = trio.testing.MockClock(autojump_threshold=0)
    trio.run(main, clock=clock)


# ---------------------------------------------------------------------------------------------------------
# Arguments of FakeBroker and its helpers: ConfigurationError up front

_ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.sampled_from(
        [object(), Mode.LTP, Broker.XTS, math.inf, -0.0, datetime(2024, 1, 1), Ohlc(1.0, 2.0, 0.5, 1.5)]
    ),
)


@pytest.mark.parametrize(
    ("instruments", "options", "message"),
    [
        (None, {}, "iterable of symbols"),
        (5, {}, "iterable of symbols"),
        (b"AB", {}, "bare bytes"),
        (bytearray(b"AB"), {}, "bare bytearray"),
        ("NSE:A", {}, "bare str"),
        (["NSE:A"], {"name": 5}, "name"),
        (["NSE:A"], {"name": "x" * 65}, "name"),
        (["NSE:A"], {"name": " "}, "name"),
        (["NSE:A"], {"broker": "KITE"}, "broker"),
        (["NSE:A"], {"broker": "zerodha"}, "broker"),
        (["NSE:A"], {"broker": None}, "broker"),
        (["NSE:A"], {"broker": 1}, "broker"),
        (["NSE:A"], {"max_connections": True}, "max_connections"),
        (["NSE:A"], {"max_connections": "3"}, "max_connections"),
        (["NSE:A"], {"max_instruments_per_connection": -1}, "max_instruments_per_connection"),
        (["NSE:A"], {"rate_limit": 5}, "rate_limit"),
        (["NSE:A"], {"rate_limit": (1.0, 1)}, "rate_limit"),
        (["NSE:A"], {"keyed_by_segment": "no"}, "keyed_by_segment"),
        (["NSE:A"], {"keyed_by_segment": None}, "keyed_by_segment"),
        (["NSE:A"], {"keyed_by_segment": 1}, "keyed_by_segment"),
    ],
    ids=repr,
)
def test_the_constructor_names_the_bad_argument(
    instruments: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        FakeBroker(instruments, **options)


@given(st.one_of(_ANYTHING, st.sampled_from(["kite", "xts", "KITE", "Xts", " kite", "kite "])))
def test_broker_is_a_broker_or_its_exact_value(value: object) -> None:
    if isinstance(value, Broker) or value in ("kite", "xts"):
        assert FakeBroker(["NSE:A"], broker=value).broker is Broker(value)
    else:
        with pytest.raises(ConfigurationError, match="broker must be a Broker or one of 'kite', 'xts'"):
            FakeBroker(["NSE:A"], broker=value)  # type: ignore[arg-type]


@given(_ANYTHING)
def test_keyed_by_segment_and_rate_limit_take_only_their_types(value: object) -> None:
    if isinstance(value, bool):
        assert FakeBroker(["NSE:A"], keyed_by_segment=value).keyed_by_segment is value
    else:
        with pytest.raises(ConfigurationError, match="keyed_by_segment"):
            FakeBroker(["NSE:A"], keyed_by_segment=value)  # type: ignore[arg-type]
    if value is None:
        assert FakeBroker(["NSE:A"], rate_limit=value).rate_limit.rate == 1e9
    else:
        with pytest.raises(ConfigurationError, match="rate_limit"):
            FakeBroker(["NSE:A"], rate_limit=value)  # type: ignore[arg-type]


@given(st.one_of(_ANYTHING, st.lists(st.one_of(st.text(max_size=4), _ANYTHING), max_size=3)))
def test_instruments_are_an_iterable_of_symbols(value: object) -> None:
    good = (
        isinstance(value, list)
        and all(isinstance(symbol, str) and symbol for symbol in value)
        and len(set(value)) == len(value)
    )
    if good:
        assert isinstance(value, list)
        assert FakeBroker(value).instruments == {symbol: n for n, symbol in enumerate(value, start=1)}
    else:
        with pytest.raises(ConfigurationError):
            FakeBroker(value)  # type: ignore[arg-type]


@given(st.one_of(_ANYTHING, st.sampled_from(["ltp", "quote", "full", "FULL", "Quote", "depth"])))
def test_tick_takes_a_mode_or_its_value(mode: object) -> None:
    broker = FakeBroker(["NSE:A"])
    if isinstance(mode, str) and mode in ("ltp", "quote", "full"):
        assert broker.tick("NSE:A", mode=mode).mode is Mode(mode)  # type: ignore[arg-type]
    else:
        with pytest.raises(ConfigurationError, match="mode must be a Mode"):
            broker.tick("NSE:A", mode=mode)  # type: ignore[arg-type]


def finite(value: object) -> bool:
    """Whether `value` is an int or a float (not a bool) that a float holds, finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


@given(st.one_of(_ANYTHING, st.floats(allow_nan=False, allow_infinity=False), st.just(10**400)))
def test_tick_takes_a_finite_price(price: object) -> None:
    broker = FakeBroker(["NSE:A"])
    if finite(price):
        tick = broker.tick("NSE:A", price)  # type: ignore[arg-type]
        assert type(tick.last_price) is float
        assert tick.last_price == float(price)  # type: ignore[arg-type]
    else:
        with pytest.raises(ConfigurationError, match="last_price"):
            broker.tick("NSE:A", price)  # type: ignore[arg-type]


#: A valid value of every `Tick` attribute `FakeBroker.tick` lets a test set, and what else it accepts.
_TICK_FIELD_VALUES: dict[str, tuple[object, str]] = {
    "tradable": (False, "bool"),
    "last_quantity": (3, "int?"),
    "average_price": (99.5, "number?"),
    "volume": (10, "int?"),
    "total_buy_quantity": (4, "int?"),
    "total_sell_quantity": (5, "int?"),
    "ohlc": (Ohlc(1.0, 2.0, 0.5, 1.5), "Ohlc?"),
    "change": (-1.25, "number?"),
    "last_trade_time": (datetime(2024, 1, 1, 9, 15), "datetime?"),
    "exchange_time": (datetime(2024, 1, 1, 9, 15, 1), "datetime?"),
    "oi": (7, "int?"),
    "oi_day_high": (8, "int?"),
    "oi_day_low": (6, "int?"),
    "depth": (Depth([], []), "Depth?"),
    "received_at": (1_700_000_000.5, "number"),
    "segment": (2, "int?"),
}


def field_ok(kind: str, value: object) -> bool:
    """Whether `FakeBroker.tick` must accept `value` for an attribute of `kind` (the test's own oracle)."""
    if kind.endswith("?"):
        if value is None:
            return True
        kind = kind[:-1]
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int)
    if kind == "number":
        return finite(value)
    return isinstance(value, {"Ohlc": Ohlc, "Depth": Depth, "datetime": datetime}[kind])


def test_tick_sets_every_other_attribute() -> None:
    assert set(_TICK_FIELD_VALUES) == {f.name for f in attrs.fields(Tick)} - {
        "broker",
        "instrument_token",
        "mode",
        "last_price",
        "symbol",  # the manager sets it (and it is tick()'s first parameter)
    }
    broker = FakeBroker(["NSE:A"])
    fields: dict[str, Any] = {name: value for name, (value, _) in _TICK_FIELD_VALUES.items()}
    tick = broker.tick("NSE:A", 1.0, **fields)
    for name, value in fields.items():
        assert getattr(tick, name) == value, name
    for name in ("broker", "instrument_token", "bogus"):
        bad: dict[str, Any] = {name: 1}
        with pytest.raises(ConfigurationError, match=f"cannot set '{name}'"):
            broker.tick("NSE:A", **bad)


@given(st.sampled_from(sorted(_TICK_FIELD_VALUES)), _ANYTHING)
def test_tick_fields_take_their_types(name: str, value: object) -> None:
    broker = FakeBroker(["NSE:A"])
    fields: dict[str, Any] = {name: value}
    if field_ok(_TICK_FIELD_VALUES[name][1], value):
        kind = _TICK_FIELD_VALUES[name][1]
        stored = float(value) if kind.startswith("number") and value is not None else value  # type: ignore[arg-type]
        assert getattr(broker.tick("NSE:A", **fields), name) == stored
    else:
        with pytest.raises(ConfigurationError, match=name):
            broker.tick("NSE:A", **fields)


@pytest.mark.parametrize("symbol", ["NSE:B", "", None, 1, b"NSE:A"], ids=repr)
def test_tick_of_an_unknown_symbol(symbol: object) -> None:
    with pytest.raises(ConfigurationError, match="no instrument"):
        FakeBroker(["NSE:A"]).tick(symbol)  # type: ignore[arg-type]


_NOT_FEED_EVENTS = [
    "oops",
    None,
    object(),
    [Tick(Broker.KITE, 1, Mode.LTP, True, 1.0)],
    Connected(Broker.KITE, 0, 0.0),
    Disconnected(Broker.KITE, 0, "x", 0.0),
    Reconnecting(Broker.KITE, 0, 1, 1.0, 0.0),
    Resubscribed(Broker.KITE, 0, 1, 0.0),
    Gap(Broker.KITE, 0, ("NSE:A",), 0.0, 1.0),
    Stale(Broker.KITE, ("NSE:A",), 1.0, 0.0),
]


@pytest.mark.parametrize("bad", _NOT_FEED_EVENTS, ids=lambda bad: type(bad).__name__)
async def test_push_takes_only_what_a_feed_yields_and_sends_nothing_else(
    bad: object, autojump_clock: trio.testing.MockClock
) -> None:
    broker = FakeBroker(["NSE:A"])
    async with broker.open_feed(0, TokenBucket(broker.rate_limit)) as feed:
        assert [type(e) for e in await feed.receive_batch()] == [Connected]
        await feed.subscribe([1], Mode.LTP)
        good = broker.tick("NSE:A", 1.0)
        with pytest.raises(ConfigurationError):
            broker.push(good, bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError):
            feed.push(good, bad)  # type: ignore[arg-type]
        later = broker.tick("NSE:A", 2.0)
        assert broker.push(later) == 1
        assert await feed.receive_batch() == [later]  # nothing of the refused frames was delivered


@pytest.mark.parametrize(
    "event",
    [
        OrderUpdate(Broker.KITE, {"order_id": "1"}, 0.0),
        BrokerMessage(Broker.KITE, "hello", 0.0),
        Candle(Broker.KITE, 1, 1, datetime(2024, 1, 1), 1.0, 2.0, 0.5, 1.5, 10, None, 0.0),
        OpenInterest(Broker.KITE, 1, 1, 5, None, 0.0),
        MarketStatus(Broker.KITE, 1, "open", None, None, 0.0),
        InstrumentPropertyChange(Broker.KITE, 1, 1, {"HighExecBand": "10"}, 0.0),
    ],
    ids=lambda event: type(event).__name__,
)
async def test_push_takes_every_event_a_feed_yields(
    event: Event, autojump_clock: trio.testing.MockClock
) -> None:
    broker = FakeBroker(["NSE:A"])
    async with broker.open_feed(0, TokenBucket(broker.rate_limit)) as feed:
        await feed.receive_batch()
        await feed.subscribe([1], Mode.LTP)
        assert broker.push(event) == 1
        assert await feed.receive_batch() == [event]


async def test_the_connection_helpers_check_their_arguments(autojump_clock: trio.testing.MockClock) -> None:
    broker = FakeBroker(["NSE:A"])
    async with broker.open_feed(0, TokenBucket(broker.rate_limit)) as feed:
        await feed.receive_batch()
        for reason, delay, message in [
            (5, 1.0, "reason"),
            (None, 1.0, "reason"),
            ("x", -1.0, "delay"),
            ("x", math.nan, "delay"),
            ("x", "1", "delay"),
            ("x", True, "delay"),
        ]:
            with pytest.raises(ConfigurationError, match=message):
                feed.drop(reason, delay=delay)  # type: ignore[arg-type]
        for error in ["boom", ValueError, 1]:
            with pytest.raises(ConfigurationError, match="exception instance"):
                feed.fail(error)  # type: ignore[arg-type]
        assert feed.connected  # nothing happened
        with pytest.raises(ConfigurationError, match="refuse"):
            broker.refuse_credentials("yes")  # type: ignore[arg-type]
        feed.drop("x", delay=0)
        assert [type(e) for e in await feed.receive_batch()] == [Disconnected]


@given(
    st.one_of(_ANYTHING, st.sampled_from(["Master", "login", "subscribe "])).filter(
        lambda point: (
            not (isinstance(point, str) and point in ("master", "connect", "subscribe", "unsubscribe"))
        )
    )
)
def test_an_unknown_point_is_refused_everywhere(point: object) -> None:
    broker = FakeBroker(["NSE:A"])
    for method in (broker.hold, broker.release, broker.waiting):
        with pytest.raises(ConfigurationError, match="no await point"):
            method(point)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="no await point"):
        broker.fail_next(point, ValueError("x"))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="no await point"):
        trio.run(broker.wait_parked, point)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# The lazy names


def test_every_lazy_name_loads_and_is_exported() -> None:
    from trading_ws.brokers.kite import _codec as kite_codec
    from trading_ws.brokers.xts import _codec as xts_codec

    assert trading_ws.testing.encode_kite_frame is kite_codec.encode_frame
    assert trading_ws.testing.encode_xts_partial is xts_codec.encode_partial
    for name in trading_ws.testing.__all__:
        assert getattr(trading_ws.testing, name) is not None
        assert name in dir(trading_ws.testing)
    with pytest.raises(AttributeError, match="no attribute"):
        trading_ws.testing.nothing_here  # noqa: B018


def test_a_simulator_without_the_extra_names_it() -> None:
    """Without hypercorn, ``from trading_ws.testing import XtsSimulator`` says which extra to install;
    FakeBroker still imports."""
    code = (
        "import sys\n"
        "sys.modules['hypercorn'] = None\n"
        "from trading_ws.testing import FakeBroker\n"
        "assert FakeBroker(['NSE:A']).instruments == {'NSE:A': 1}\n"
        "assert not any(m.startswith('trading_ws.sim') for m in sys.modules)\n"
        "try:\n"
        "    from trading_ws.testing import XtsSimulator\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert child.returncode == 0, child.stderr
    assert "pip install 'trading-ws[sim]'" in child.stdout
    assert "hypercorn" in child.stdout
