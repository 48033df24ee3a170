"""`trading_ws.testing`: the documented example runs, `FakeBroker` keeps the contracts the manager relies
on (and that docs/testing.md promises), and the simulators' names load lazily, naming the extra when it
is missing."""

from __future__ import annotations

import importlib.util
import inspect
import re
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import trading_ws.testing
from trading_ws import (
    AuthenticationError,
    Broker,
    ConfigurationError,
    Connected,
    ConnectError,
    Disconnected,
    Event,
    FeedClosedError,
    Gap,
    Mode,
    OrderUpdate,
    RateLimit,
    Reconnecting,
    Resubscribed,
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
        "test_an_expired_token_ends_the_subscription",
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
    with pytest.raises(KeyError):
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
    with pytest.raises(ValueError, match="no await point"):
        broker.hold("login")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
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
