"""The reconnecting Kite feed against the Kite simulator over loopback (protocol and integration tests).

Timing rules (the watchdog, heartbeats, exact backoff delays) are tested over the feed's memory seam under
``autojump_clock``, where every time is exact: tests/test_feed_memory.py.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import pytest
import trio
import trio.testing
from conftest import wait_until

from trading_ws import (
    AuthenticationError,
    Backoff,
    ConfigurationError,
    Connected,
    ConnectError,
    Disconnected,
    Event,
    FeedClosedError,
    Mode,
    Reconnecting,
    Resubscribed,
    SubscriptionLimitError,
    Tick,
)
from trading_ws.brokers.kite import KiteFeed, open_kite_feed
from trading_ws.sim import DEMO_ACCESS_TOKEN, DEMO_API_KEY, KiteSimulator

INFY = 408065
RELIANCE = 738561
NIFTY = 256265


pytestmark = pytest.mark.simulator(tick_interval=0.05, heartbeat_interval=1.0, seed=7)


async def next_matching(
    feed: KiteFeed, predicate: Callable[[Event], bool], *, seen: list[Event] | None = None
) -> Event:
    """The next event satisfying `predicate` (everything read on the way is appended to `seen`)."""
    async for event in feed:
        if seen is not None:
            seen.append(event)
        if predicate(event):
            return event
    raise AssertionError("feed ended")


def tick_of(token: int, mode: Mode | None = None) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, Tick) and e.instrument_token == token and (mode is None or e.mode is mode)


async def test_subscribe_full_and_default_quote(kite_sim: tuple[KiteSimulator, str]) -> None:
    simulator, url = kite_sim
    with trio.fail_after(10):
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url) as feed:
            first = await feed.__anext__()
            assert isinstance(first, Connected)
            assert feed.connected
            await feed.subscribe([INFY], Mode.FULL)
            await feed.subscribe([RELIANCE])  # the broker's default: quote
            full = await next_matching(feed, tick_of(INFY))
            quote = await next_matching(feed, tick_of(RELIANCE))
            assert isinstance(full, Tick)
            assert isinstance(quote, Tick)
            assert full.mode is Mode.FULL
            assert full.depth is not None
            assert len(full.depth.bids) == 5
            assert len(full.depth.asks) == 5
            assert full.depth.bids[0].price < full.depth.asks[0].price
            assert full.exchange_time is not None
            assert full.exchange_time.tzinfo is not None
            assert quote.mode is Mode.QUOTE
            assert quote.depth is None
            assert quote.ohlc is not None
            assert feed.subscriptions == {INFY: Mode.FULL, RELIANCE: Mode.QUOTE}
            assert simulator.subscriptions() == [{INFY: Mode.FULL, RELIANCE: Mode.QUOTE}]
            stats = feed.statistics()
            assert stats.connected
            assert stats.ticks >= 2
            assert stats.subscribed == 2


async def test_set_mode_and_unsubscribe(kite_sim: tuple[KiteSimulator, str]) -> None:
    simulator, url = kite_sim
    with trio.fail_after(10):
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url) as feed:
            await feed.subscribe([INFY, NIFTY], Mode.QUOTE)
            await next_matching(feed, tick_of(NIFTY, Mode.QUOTE))
            await feed.set_mode(Mode.LTP, [INFY])
            ltp = await next_matching(feed, tick_of(INFY, Mode.LTP))
            assert isinstance(ltp, Tick)
            assert ltp.ohlc is None
            assert ltp.volume is None
            await feed.unsubscribe([NIFTY])
            assert feed.subscriptions == {INFY: Mode.LTP}

            def tokens(batch: list[Event]) -> set[int]:
                return {e.instrument_token for e in batch if isinstance(e, Tick)}

            # Frames already in flight may still carry NIFTY; once one frame arrives without it, no
            # later frame may carry it.
            while tokens(await feed.receive_batch()) != {INFY}:
                pass
            assert simulator.subscriptions() == [{INFY: Mode.LTP}]
            for _ in range(3):
                assert NIFTY not in tokens(await feed.receive_batch())


async def test_bad_credentials_fail_once_without_retry(kite_sim: tuple[KiteSimulator, str]) -> None:
    simulator, url = kite_sim
    with trio.fail_after(10):
        with pytest.raises(AuthenticationError) as info:
            async with open_kite_feed(DEMO_API_KEY, "wrong-token-123", url=url):
                pytest.fail("must not connect")  # pragma: no cover
        assert "wrong-token-123" not in str(info.value)
        assert simulator.statistics().handshakes_rejected == {403: 1}


async def test_token_provider_renews_once(kite_sim: tuple[KiteSimulator, str]) -> None:
    simulator, url = kite_sim
    calls = 0

    async def provider() -> str:
        nonlocal calls
        calls += 1
        return DEMO_ACCESS_TOKEN

    with trio.fail_after(10):
        async with open_kite_feed(DEMO_API_KEY, "expired", url=url, token_provider=provider) as feed:
            assert feed.connected
        assert calls == 1

    async def bad_provider() -> str:
        nonlocal calls
        calls += 1
        return "still-bad"

    calls = 0
    rejected_before = simulator.statistics().handshakes_rejected.get(403, 0)
    with trio.fail_after(10), pytest.raises(AuthenticationError):
        async with open_kite_feed(DEMO_API_KEY, "expired", url=url, token_provider=bad_provider):
            pytest.fail("must not connect")  # pragma: no cover
    assert calls == 1
    assert simulator.statistics().handshakes_rejected[403] == rejected_before + 2


async def test_reconnect_resubscribes_in_each_mode(kite_sim: tuple[KiteSimulator, str]) -> None:
    simulator, url = kite_sim
    backoff = Backoff(initial=0.1, jitter=0.0)
    with trio.fail_after(15):
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, backoff=backoff) as feed:
            await feed.subscribe([INFY], Mode.FULL)
            await feed.subscribe([RELIANCE], Mode.LTP)
            await feed.subscribe([NIFTY], Mode.QUOTE)
            await next_matching(feed, tick_of(INFY, Mode.FULL))
            assert simulator.drop_connections() == 1
            seen: list[Event] = []
            await next_matching(feed, lambda e: isinstance(e, Resubscribed), seen=seen)
            kinds = [type(e) for e in seen if not isinstance(e, Tick)]
            assert kinds == [Disconnected, Reconnecting, Connected, Resubscribed]
            reconnecting = next(e for e in seen if isinstance(e, Reconnecting))
            assert reconnecting.attempt == 1
            assert reconnecting.delay == pytest.approx(0.1)
            resubscribed = seen[-1]
            assert isinstance(resubscribed, Resubscribed)
            assert resubscribed.instruments == 3
            await next_matching(feed, tick_of(INFY, Mode.FULL))
            await next_matching(feed, tick_of(RELIANCE, Mode.LTP))
            await next_matching(feed, tick_of(NIFTY, Mode.QUOTE))
            assert simulator.subscriptions() == [{INFY: Mode.FULL, RELIANCE: Mode.LTP, NIFTY: Mode.QUOTE}]
            stats = feed.statistics()
            assert stats.connects == 2
            assert stats.reconnects == 1


async def test_expired_token_mid_session_fails_without_storm(kite_sim: tuple[KiteSimulator, str]) -> None:
    simulator, url = kite_sim
    with trio.fail_after(10):
        async with open_kite_feed(
            DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, backoff=Backoff(initial=0.05, jitter=0.0)
        ) as feed:
            simulator.access_token = "tomorrows-token"
            simulator.drop_connections()
            with pytest.raises(AuthenticationError):
                async for _ in feed:
                    pass
            assert simulator.statistics().handshakes_rejected == {403: 1}
            with pytest.raises(FeedClosedError):
                await feed.subscribe([INFY])


async def test_expired_token_mid_session_renewed_by_provider(kite_sim: tuple[KiteSimulator, str]) -> None:
    simulator, url = kite_sim

    async def provider() -> str:
        return "tomorrows-token"

    with trio.fail_after(10):
        async with open_kite_feed(
            DEMO_API_KEY,
            DEMO_ACCESS_TOKEN,
            url=url,
            token_provider=provider,
            backoff=Backoff(initial=0.05, jitter=0.0),
        ) as feed:
            await feed.subscribe([INFY], Mode.LTP)
            await next_matching(feed, tick_of(INFY))
            simulator.access_token = "tomorrows-token"
            simulator.drop_connections()
            await next_matching(feed, lambda e: isinstance(e, Resubscribed))
            await next_matching(feed, tick_of(INFY, Mode.LTP))
            assert simulator.statistics().handshakes_rejected == {403: 1}


async def test_garbage_frames_are_counted_and_skipped(kite_sim: tuple[KiteSimulator, str]) -> None:
    simulator, url = kite_sim
    with trio.fail_after(10):
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url) as feed:
            await feed.subscribe([INFY], Mode.FULL)
            await next_matching(feed, tick_of(INFY))
            simulator.send_garbage(3)
            while feed.statistics().decode_errors < 3:
                await next_matching(feed, tick_of(INFY))
            await next_matching(feed, tick_of(INFY, Mode.FULL))
            stats = feed.statistics()
            assert stats.connected
            assert stats.reconnects == 0


async def _serve_in(
    scope: trio.CancelScope,
    simulator: KiteSimulator,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `simulator` inside `scope`, so a test can take the broker away by cancelling it."""
    with scope:
        await simulator.serve(task_status=task_status)


async def test_backoff_gives_up_after_max_attempts(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    scope = trio.CancelScope()
    url = await nursery.start(_serve_in, scope, KiteSimulator(tick_interval=0.2))
    backoff = Backoff(initial=1.0, factor=2.0, jitter=0.0, max_attempts=3)
    with trio.fail_after(120):
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, backoff=backoff) as feed:
            scope.cancel()
            seen: list[Event] = []
            start = trio.current_time()
            with pytest.raises(ConnectError, match="gave up after 3"):
                async for event in feed:
                    seen.append(event)
            assert [e.delay for e in seen if isinstance(e, Reconnecting)] == [1.0, 2.0, 4.0]
            assert trio.current_time() - start >= 7.0


async def test_jittered_backoff_is_deterministic(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    backoff = Backoff(initial=1.0, factor=2.0, cap=8.0, jitter=0.3, max_attempts=5)
    expected = list(backoff.delays(random.Random(42)))
    scope = trio.CancelScope()
    url = await nursery.start(_serve_in, scope, KiteSimulator())
    with trio.fail_after(300):
        async with open_kite_feed(
            DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, backoff=backoff, rng=random.Random(42)
        ) as feed:
            scope.cancel()
            delays: list[float] = []
            with pytest.raises(ConnectError):
                async for event in feed:
                    if isinstance(event, Reconnecting):
                        delays.append(event.delay)
    assert delays == expected
    assert all(d <= 8.0 for d in delays)


async def test_instrument_limit_is_checked_before_sending(kite_sim: tuple[KiteSimulator, str]) -> None:
    simulator, url = kite_sim
    with trio.fail_after(10):
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, max_instruments=3) as feed:
            await feed.subscribe([1, 2, 3], Mode.LTP)
            with pytest.raises(SubscriptionLimitError):
                await feed.subscribe([4], Mode.LTP)
            await feed.subscribe([1, 2], Mode.FULL)  # already held: no new instruments
            assert feed.subscriptions == {1: Mode.FULL, 2: Mode.FULL, 3: Mode.LTP}
            with pytest.raises(ConfigurationError):
                await feed.subscribe([-1])
            await wait_until(lambda: simulator.subscriptions() == [{1: Mode.FULL, 2: Mode.FULL, 3: Mode.LTP}])


@pytest.mark.parametrize(
    "url", ["ws://example.com", "http://127.0.0.1:1", "ws://10.0.0.1:80", "ws://127.0.0.1:1/?x=1"]
)
async def test_unsafe_or_invalid_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url):
            pytest.fail("must not connect")  # pragma: no cover


async def test_unreachable_broker_raises_connect_error() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()  # nothing listens there now
    with trio.fail_after(10), pytest.raises(ConnectError):
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=f"ws://127.0.0.1:{port}"):
            pytest.fail("must not connect")  # pragma: no cover


async def test_secrets_never_leak(
    kite_sim: tuple[KiteSimulator, str], caplog: pytest.LogCaptureFixture
) -> None:
    simulator, url = kite_sim
    secret = "s3cr3t-access-token-value"
    simulator.access_token = secret
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(10):
        async with open_kite_feed(
            DEMO_API_KEY, secret, url=url, backoff=Backoff(initial=0.05, jitter=0.0)
        ) as feed:
            await feed.subscribe([INFY])
            await next_matching(feed, tick_of(INFY))
            simulator.drop_connections()
            events: list[Event] = []
            await next_matching(feed, lambda e: isinstance(e, Resubscribed), seen=events)
            assert secret not in repr(feed)
            assert all(secret not in repr(e) for e in events)
            assert secret not in repr(simulator)
    assert caplog.records, "the feed logs its connections"
    assert all(secret not in record.getMessage() for record in caplog.records)


async def test_consumer_can_leave_and_feed_closes_cleanly(kite_sim: tuple[KiteSimulator, str]) -> None:
    simulator, url = kite_sim
    with trio.fail_after(10):
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url) as feed:
            await feed.subscribe([INFY], Mode.FULL)
            await next_matching(feed, tick_of(INFY))
        assert not feed.connected
        with pytest.raises(FeedClosedError):
            await feed.subscribe([INFY])
        with pytest.raises(FeedClosedError):
            await feed.receive_batch()
        # The simulator saw the connection go away.
        with trio.fail_after(2):
            await wait_until(lambda: simulator.statistics().open_connections == 0)


async def test_user_errors_propagate_unwrapped(kite_sim: tuple[KiteSimulator, str]) -> None:
    _, url = kite_sim
    with trio.fail_after(10), pytest.raises(KeyError):
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url):
            raise KeyError("mine")


async def test_receive_batch_returns_whole_frames(kite_sim: tuple[KiteSimulator, str]) -> None:
    _, url = kite_sim
    tokens = [INFY, RELIANCE, NIFTY]
    with trio.fail_after(10):
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url) as feed:
            await feed.subscribe(tokens, Mode.QUOTE)
            while True:
                batch = await feed.receive_batch()
                ticks = [e for e in batch if isinstance(e, Tick)]
                if ticks:
                    break
            # One frame carries one packet per subscribed token.
            assert sorted(t.instrument_token for t in ticks) == sorted(tokens)
            assert len({t.received_at for t in ticks}) == 1


async def test_a_sink_gets_every_batch_in_the_reader_task(kite_sim: tuple[KiteSimulator, str]) -> None:
    simulator, url = kite_sim
    batches: list[list[Event]] = []
    reader_tasks: set[object] = set()

    def sink(batch: list[Event]) -> None:
        reader_tasks.add(trio.lowlevel.current_task())
        batches.append(batch)

    with trio.fail_after(10):
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, sink=sink) as feed:
            await feed.subscribe([INFY, RELIANCE], Mode.QUOTE)
            await wait_until(lambda: sum(isinstance(e, Tick) for b in batches for e in b) >= 10)
            simulator.drop_connections()
            await wait_until(lambda: any(isinstance(e, Resubscribed) for b in batches for e in b))
            assert feed.statistics().queued_batches == 0  # nothing waits for receive_batch
            # receive_batch only waits for the end: nothing was queued for it.
            with trio.move_on_after(0.2) as scope:
                await feed.receive_batch()
            assert scope.cancelled_caught
        with pytest.raises(FeedClosedError):
            await feed.receive_batch()
    events = [e for b in batches for e in b]
    assert isinstance(events[0], Connected)
    kinds = [type(e) for e in events if not isinstance(e, Tick)]
    assert kinds[:5] == [Connected, Disconnected, Reconnecting, Connected, Resubscribed]
    ticks = [e for e in events if isinstance(e, Tick)]
    assert {t.instrument_token for t in ticks} == {INFY, RELIANCE}
    # One frame per batch: the frame's packets share their receipt time.
    for batch in batches:
        assert len({e.received_at for e in batch if isinstance(e, Tick)}) <= 1
    assert trio.lowlevel.current_task() not in reader_tasks
    assert len(reader_tasks) == 1


async def test_an_error_in_the_sink_is_raised_by_receive_batch(kite_sim: tuple[KiteSimulator, str]) -> None:
    """A bug in the sink ends the hand-off (later batches are dropped) and reaches the task that awaits
    receive_batch; the reader task is not torn down mid-frame, and leaving the block is clean."""
    _, url = kite_sim
    calls = 0

    def sink(batch: list[Event]) -> None:
        nonlocal calls
        calls += 1
        if any(isinstance(e, Tick) for e in batch):
            raise ZeroDivisionError("a bug in the consumer")

    with trio.fail_after(10):
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, sink=sink) as feed:
            await feed.subscribe([INFY])
            with pytest.raises(ZeroDivisionError, match="consumer"):
                await feed.receive_batch()
            seen = calls
            await trio.sleep(0.2)  # frames keep coming; none reaches the sink any more
            assert calls == seen
            assert feed.connected
