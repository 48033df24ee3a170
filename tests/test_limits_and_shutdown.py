"""Limits on untrusted input, and shutdown: prompt, complete, and leaving no task or socket behind."""

from __future__ import annotations

import time

import pytest
import trio
import trio.testing
from conftest import wait_until

from trading_ws import (
    Backoff,
    DecodeError,
    Disconnected,
    Event,
    KiteBroker,
    Mode,
    Overflow,
    Reconnecting,
    Tick,
    open_market_data,
)
from trading_ws.brokers.kite import decode_frame, encode_text, open_kite_feed
from trading_ws.brokers.kite._codec import MAX_TEXT_MESSAGE
from trading_ws.sim import DEMO_ACCESS_TOKEN, DEMO_API_KEY, KiteSimulator, kite_instruments_csv

INFY = 408065


pytestmark = pytest.mark.simulator(tick_interval=0.02)


def task_count() -> int:
    """All tasks alive in this trio run."""

    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(child) for nursery in task.child_nurseries for child in nursery.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return walk(root)


async def test_oversized_message_closes_with_1009_and_reconnects(kite_sim: tuple[KiteSimulator, str]) -> None:
    simulator, url = kite_sim
    with trio.fail_after(10):
        async with open_kite_feed(
            DEMO_API_KEY,
            DEMO_ACCESS_TOKEN,
            url=url,
            max_message_size=2048,
            backoff=Backoff(initial=0.05, jitter=0.0),
        ) as feed:
            await feed.subscribe([INFY], Mode.LTP)
            simulator.push_text("message", "x" * 10_000)
            seen: list[Event] = []
            async for event in feed:
                seen.append(event)
                if isinstance(event, Reconnecting):
                    break
            lost = [e for e in seen if isinstance(e, Disconnected)]
            assert lost
            assert "1009" in lost[-1].reason
            assert feed.statistics().oversized_messages == 1
            async for event in feed:  # and it comes back
                if isinstance(event, Tick):
                    break


def test_text_messages_have_a_size_limit() -> None:
    huge = encode_text("message", "y" * (MAX_TEXT_MESSAGE + 1))
    with pytest.raises(DecodeError, match="exceeds"):
        decode_frame(huge)
    deep = '{"type":"order","data":' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(DecodeError):
        decode_frame(deep)


async def test_leaving_while_connected_is_prompt_and_complete(kite_sim: tuple[KiteSimulator, str]) -> None:
    simulator, url = kite_sim
    baseline = task_count()
    broker = KiteBroker(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, instruments=kite_instruments_csv())
    with trio.fail_after(10):
        async with open_market_data(broker) as md, md.subscribe(["NSE:INFY", "NSE:TCS"]) as sub:
            await sub.wait_ready()
            simulator.go_silent()  # the broker will not answer our close frame either
            started = time.monotonic()
    assert time.monotonic() - started < 1.0
    # The silent simulator notices the closed sockets once it speaks again; then every task left over
    # (its connection handlers) is gone too.
    simulator.go_silent(False)
    with trio.fail_after(5):
        await wait_until(lambda: simulator.statistics().open_connections == 0)
        await wait_until(lambda: task_count() == baseline)


async def test_leaving_mid_handshake_is_prompt(kite_sim: tuple[KiteSimulator, str]) -> None:
    simulator, url = kite_sim
    simulator.go_silent()  # new handshakes go unanswered
    baseline = task_count()
    started = time.monotonic()
    with trio.move_on_after(0.3) as scope:
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url):
            pytest.fail("the handshake cannot complete")  # pragma: no cover
    assert scope.cancelled_caught
    assert time.monotonic() - started < 1.0
    # The simulator still holds its side of the abandoned handshake; once it speaks again it notices
    # the closed socket. Every task left must be the simulator's, and go away with it.
    simulator.go_silent(False)
    with trio.fail_after(5):
        await wait_until(lambda: task_count() == baseline)


async def test_leaving_during_backoff_is_prompt(kite_sim: tuple[KiteSimulator, str]) -> None:
    simulator, url = kite_sim
    baseline = task_count()
    with trio.fail_after(10):
        async with open_kite_feed(
            DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, backoff=Backoff(initial=30.0, jitter=0.0)
        ) as feed:
            simulator.drop_connections()
            async for event in feed:
                if isinstance(event, Reconnecting):
                    assert event.delay == 30.0
                    break
            started = time.monotonic()
    assert time.monotonic() - started < 1.0
    assert task_count() == baseline


async def test_a_subscriber_leaving_mid_burst_never_breaks_the_others(
    kite_sim: tuple[KiteSimulator, str],
) -> None:
    _, url = kite_sim
    broker = KiteBroker(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, instruments=kite_instruments_csv())
    symbols = ["NSE:INFY", "NSE:RELIANCE", "NSE:TCS"]
    with trio.fail_after(15):
        async with open_market_data(broker) as md, md.subscribe(symbols) as steady:
            for round_ in range(20):
                async with md.subscribe(symbols, overflow=Overflow.DROP_OLDEST, buffer=5) as churn:
                    if round_ % 2:
                        await churn.receive_batch()  # leave in the middle of a burst
            seen = 0
            while seen < 30:
                seen += sum(isinstance(e, Tick) for e in await steady.receive_batch())
            assert steady.statistics().queue.dropped == 0
            assert md.statistics().subscriptions == 1
            assert md.statistics().brokers[0].instruments == 3
