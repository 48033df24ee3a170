"""Order updates through the manager: their own stream, no symbol subscription needed, each update once.

Against the in-memory `trading_ws.testing.FakeBroker` under ``autojump_clock`` for exact control of
connections, and (an integration test) against the Kite simulator over loopback, which pushes each
postback on every open connection as Kite does.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from test_manager_fake import SYMBOLS, fake, tick

from trading_ws import (
    Backoff,
    Broker,
    ConfigurationError,
    ConnectError,
    FeedClosedError,
    Gap,
    KiteBroker,
    OrderUpdate,
    SlowConsumerError,
    Tick,
    open_market_data,
)
from trading_ws._manager import OrderUpdates
from trading_ws.testing import DEMO_ACCESS_TOKEN, DEMO_API_KEY, KiteSimulator, kite_instruments_csv

A, B = SYMBOLS[:2]


def order(order_id: str, status: str = "UPDATE", filled: int = 0) -> OrderUpdate:
    data: dict[str, Any] = {"order_id": order_id, "status": status, "filled_quantity": filled}
    return OrderUpdate(Broker.KITE, data, 1000.0)


async def received(stream: OrderUpdates) -> list[OrderUpdate | Gap]:
    """What the stream holds now: the manager is driven synchronously here, so everything is queued when
    the fake's call returns; the first receive that would wait is cancelled (under ``autojump_clock``,
    at once: a second of nothing)."""
    events: list[OrderUpdate | Gap] = []
    with trio.move_on_after(1):
        while True:
            events.append(await stream.receive())
    return events


async def test_order_updates_need_no_subscription_and_open_a_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = fake()
    async with open_market_data(broker) as md:
        assert md.statistics().brokers[0].connections == ()
        async with md.order_updates() as updates:
            assert len(broker.connections) == 1  # opened for the order updates
            assert md.statistics().brokers[0].instruments == 0
            broker.connections[0].push(order("1"), tick(A))
            assert [u.order_id for u in await received(updates) if isinstance(u, OrderUpdate)] == ["1"]
            assert updates.broker == "fake"
        async with md.order_updates() as again:
            assert len(broker.connections) == 1  # the connection stayed open, and is used again
            broker.connections[0].push(order("2"))
            assert [u.order_id for u in await received(again) if isinstance(u, OrderUpdate)] == ["2"]
        with pytest.raises(FeedClosedError):
            await updates.receive()  # its block has ended


async def test_each_update_once_across_connections_and_never_to_subscriptions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Kite pushes an order update on every connection of the account: the stream gets it once; a
    subscription on those connections gets none."""
    broker = fake(max_instruments_per_connection=1)
    async with (
        open_market_data(broker) as md,
        md.subscribe([A, B]) as sub,
        md.order_updates() as first,
        md.order_updates() as second,
    ):
        assert len(broker.connections) == 2
        for feed in broker.connections:
            feed.push(order("7", "OPEN"), tick(A) if feed.index == 0 else tick(B))
        for feed in broker.connections:
            feed.push(order("7", "COMPLETE", 10))
        broker.connections[1].push(order("8"))
        for stream in (first, second):
            got = [(u.order_id, u.status) for u in await received(stream) if isinstance(u, OrderUpdate)]
            assert got == [("7", "OPEN"), ("7", "COMPLETE"), ("8", "UPDATE")]
        events = await sub.receive_batch()
        assert not any(isinstance(e, OrderUpdate) for e in events)
        assert {e.symbol for e in events if isinstance(e, Tick)} == {A, B}


async def test_a_span_without_any_connection_is_a_gap_in_the_order_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = fake(max_instruments_per_connection=1)
    async with open_market_data(broker) as md, md.subscribe([A, B]), md.order_updates() as updates:
        first, second = broker.connections
        first.drop()
        await trio.sleep(1)
        first.reconnect()  # the other connection was up all along: nothing could be missed
        assert await received(updates) == []
        first.drop()
        await trio.sleep(1)
        down = broker._now()
        second.drop()  # now none is up
        await trio.sleep(2)
        up = broker._now()
        second.reconnect()
        first.reconnect()
        assert await received(updates) == [Gap(Broker.KITE, 1, (), down, up)]  # ended by the first one back


async def test_a_reader_that_falls_behind_ends_loudly_after_reading_what_was_queued(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = fake()
    async with open_market_data(broker) as md, md.order_updates(buffer=2) as updates:
        broker.connections[0].push(order("1"), order("2"), order("3"), order("4"))
        for expected in ("1", "2"):
            update = await updates.receive()
            assert isinstance(update, OrderUpdate)
            assert update.order_id == expected
        with pytest.raises(SlowConsumerError):
            await updates.receive()


async def test_the_stream_ends_with_the_failure_of_the_last_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = fake()
    async with open_market_data(broker) as md, md.order_updates() as updates:
        broker.connections[0].fail(ConnectError("refused for good"))
        with pytest.raises(ConnectError, match="refused for good"), trio.fail_after(1):
            async for _update in updates:
                pass  # pragma: no cover
        async with md.order_updates() as fresh:  # a fresh connection
            assert len(broker.connections) == 2
            broker.connections[1].push(order("9"))
            assert [u.order_id for u in await received(fresh) if isinstance(u, OrderUpdate)] == ["9"]


async def test_a_cancelled_receive_takes_nothing_and_a_cancelled_opening_opens_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = fake()
    async with open_market_data(broker) as md:
        broker.hold("connect")
        async with trio.open_nursery() as nursery:

            async def open_stream() -> None:
                async with md.order_updates():
                    pytest.fail("must not be entered")  # pragma: no cover

            nursery.start_soon(open_stream)
            await broker.wait_parked("connect")
            nursery.cancel_scope.cancel()
        broker.release("connect")
        assert broker.connections == []
        assert md.statistics().brokers[0].connections == ()
        async with md.order_updates() as updates:
            broker.connections[0].push(order("1"))
            await trio.testing.wait_all_tasks_blocked()
            with trio.CancelScope() as scope:
                scope.cancel()
                await updates.receive()
            assert scope.cancelled_caught
            update = await updates.receive()
            assert isinstance(update, OrderUpdate)
            assert update.order_id == "1"


async def test_order_update_arguments_are_checked_when_called(autojump_clock: trio.testing.MockClock) -> None:
    async with open_market_data(fake(), fake(name="xts", broker=Broker.XTS)) as md:
        for bad in ({"broker": "nope"}, {"broker": "xts"}, {"broker": 1}, {"buffer": 0}, {"buffer": True}):
            with pytest.raises(ConfigurationError):
                md.order_updates(**bad)
    async with open_market_data(fake(name="xts", broker=Broker.XTS)) as md:
        with pytest.raises(ConfigurationError, match="sends order updates"):
            md.order_updates()


@pytest.mark.simulator(tick_interval=0.02, seed=3)
async def test_kite_postbacks_reach_the_stream_once_over_two_connections(
    kite_sim: tuple[KiteSimulator, str],
) -> None:
    """Integration: the Kite simulator over loopback."""
    simulator, url = kite_sim
    kite = KiteBroker(
        DEMO_API_KEY,
        DEMO_ACCESS_TOKEN,
        url=url,
        instruments=kite_instruments_csv(),
        backoff=Backoff(initial=0.05, jitter=0.0),
        max_instruments_per_connection=1,
    )
    postback = {"order_id": "220303000308932", "status": "COMPLETE", "filled_quantity": 1}
    with trio.fail_after(10):
        async with (
            open_market_data(kite) as md,
            md.subscribe(["NSE:INFY", "NSE:TCS"]) as sub,
            md.order_updates() as updates,
        ):
            await sub.wait_ready()
            assert simulator.push_text("order", postback) == 2  # one copy per connection
            update = await updates.receive()
            assert isinstance(update, OrderUpdate)
            assert update.order_id == "220303000308932"
            assert update.data == postback
            simulator.push_text("order", {**postback, "status": "UPDATE"})
            second = await updates.receive()
            assert isinstance(second, OrderUpdate)
            assert second.status == "UPDATE"  # the other connection's copy of the first was skipped
            for _ in range(3):
                batch = await sub.receive_batch()
                assert not any(isinstance(e, OrderUpdate) for e in batch)
