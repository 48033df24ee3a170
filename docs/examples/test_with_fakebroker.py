"""Testing an application's own code against trading_ws with `FakeBroker`, under trio's autojump clock.

The application part is `watch_breakouts`, a tiny strategy: it follows some symbols and sends an alert
the first time a price crosses above its level, re-arming when the price falls back below. It never
infers a crossing across missing data: after a `Gap` (the connection was down) the next price of each
symbol concerned only sets a new baseline.

The test part drives it with an in-memory broker: no socket, no simulator, no real time. Every step is
exact: `FakeBroker.push` hands the ticks to the manager at once, and ``wait_all_tasks_blocked`` returns
once the strategy has done all it can with them.

Run it: ``pytest docs/examples/test_with_fakebroker.py`` (with pytest-trio in trio mode, as this
project's pytest configuration sets; tests/test_testing_module.py runs it so).
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trading_ws import AuthenticationError, Gap, MarketData, Mode, Tick, open_market_data
from trading_ws.testing import FakeBroker

# ---------------------------------------------------------------------------------------------------------
# The application's code


async def watch_breakouts(
    md: MarketData, levels: dict[str, float], alerts: trio.MemorySendChannel[str]
) -> None:
    """Follow the symbols of `levels` (last price only) and send ``"<symbol> above <level>: <price>"`` on
    `alerts` each time a price crosses above its level. Runs until cancelled or until the subscription
    fails (its error propagates)."""
    below: dict[str, bool] = {}  # symbol -> was the last price at or below the level? (absent: unknown)
    async with md.subscribe(levels, mode=Mode.LTP, user_id="breakouts") as sub:
        async for event in sub:
            if isinstance(event, Gap):
                for symbol in event.symbols:
                    below.pop(symbol, None)  # prices were missed: no crossing can be inferred
            elif isinstance(event, Tick) and event.symbol is not None:
                level = levels[event.symbol]
                if below.get(event.symbol) and event.last_price > level:
                    await alerts.send(f"{event.symbol} above {level:g}: {event.last_price:g}")
                below[event.symbol] = event.last_price <= level


# ---------------------------------------------------------------------------------------------------------
# Its tests

LEVELS = {"NSE:INFY": 1500.0, "NSE:TCS": 4000.0}


def received(alerts: trio.MemoryReceiveChannel[str]) -> list[str]:
    """Every alert sent so far (call it once the tasks are blocked: nothing is in flight)."""
    taken = []
    while True:
        try:
            taken.append(alerts.receive_nowait())
        except trio.WouldBlock:
            return taken


async def test_alerts_once_per_crossing(autojump_clock: trio.testing.MockClock) -> None:
    broker = FakeBroker(["NSE:INFY", "NSE:TCS", "NSE:SBIN"])
    send, alerts = trio.open_memory_channel[str](100)
    async with open_market_data(broker) as md, trio.open_nursery() as nursery:
        nursery.start_soon(watch_breakouts, md, LEVELS, send)
        await trio.testing.wait_all_tasks_blocked()
        # What the strategy asked the broker for, exactly.
        assert broker.subscriptions == {"NSE:INFY": Mode.LTP, "NSE:TCS": Mode.LTP}
        for price in (1490.0, 1510.0, 1520.0, 1495.0, 1501.0):
            broker.push(broker.tick("NSE:INFY", price), broker.tick("NSE:TCS", 3900.0))
            await trio.testing.wait_all_tasks_blocked()
        assert received(alerts) == ["NSE:INFY above 1500: 1510", "NSE:INFY above 1500: 1501"]
        nursery.cancel_scope.cancel()
    assert broker.subscriptions == {}  # leaving unsubscribed everything


async def test_no_crossing_is_inferred_across_a_gap(autojump_clock: trio.testing.MockClock) -> None:
    broker = FakeBroker(["NSE:INFY", "NSE:TCS"])
    send, alerts = trio.open_memory_channel[str](100)
    async with open_market_data(broker) as md, trio.open_nursery() as nursery:
        nursery.start_soon(watch_breakouts, md, LEVELS, send)
        await trio.testing.wait_all_tasks_blocked()
        broker.push(broker.tick("NSE:INFY", 1490.0))
        [connection] = broker.connections
        connection.drop()  # the strategy gets Disconnected and Reconnecting...
        await trio.sleep(30)  # ...and the connection stays down for 30 s of the (virtual) clock
        connection.reconnect()  # Connected, Resubscribed, then a Gap naming both symbols
        broker.push(broker.tick("NSE:INFY", 1510.0))  # above, but what happened meanwhile is unknown
        await trio.testing.wait_all_tasks_blocked()
        assert received(alerts) == []
        broker.push(broker.tick("NSE:INFY", 1499.0))
        broker.push(broker.tick("NSE:INFY", 1502.5))
        await trio.testing.wait_all_tasks_blocked()
        assert received(alerts) == ["NSE:INFY above 1500: 1502.5"]
        nursery.cancel_scope.cancel()


async def test_a_connection_lost_for_good_ends_the_strategy(autojump_clock: trio.testing.MockClock) -> None:
    broker = FakeBroker(["NSE:INFY", "NSE:TCS"])
    send, _alerts = trio.open_memory_channel[str](100)

    async def expire_the_token() -> None:
        await trio.testing.wait_all_tasks_blocked()  # the strategy is subscribed and waiting
        [connection] = broker.connections
        broker.refuse_credentials()  # the access token expired
        connection.drop()
        connection.reconnect()  # cannot log in again: the connection fails for good

    async with open_market_data(broker) as md, trio.open_nursery() as nursery:
        nursery.start_soon(expire_the_token)
        with pytest.raises(AuthenticationError):
            await watch_breakouts(md, LEVELS, send)
    assert broker.connections[0].failed is not None
    assert broker.subscriptions == {}


async def test_refused_credentials_fail_the_start(autojump_clock: trio.testing.MockClock) -> None:
    broker = FakeBroker(["NSE:INFY", "NSE:TCS"])
    broker.refuse_credentials()
    send, _alerts = trio.open_memory_channel[str](100)
    async with open_market_data(broker) as md:
        with pytest.raises(AuthenticationError):
            await watch_breakouts(md, LEVELS, send)
    assert broker.connections == []
