"""The reconnecting XTS feed, and `XtsBroker` in the manager, against the XTS simulator over loopback
(protocol and integration tests).

Timing rules (pings and the pong deadline, exact backoff delays, re-login) are tested over the feed's
memory seam under ``autojump_clock``, where every time is exact: tests/test_feed_memory.py.
"""

from __future__ import annotations

import itertools
import logging
import math
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

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
    KiteBroker,
    Mode,
    Reconnecting,
    Resubscribed,
    SubscriptionError,
    SubscriptionLimitError,
    Tick,
    XtsBroker,
    open_market_data,
)
from trading_ws.brokers.xts import (
    InvalidTokenError,
    LoginRefusedError,
    XtsFeed,
    XtsSession,
    open_xts_feed,
)
from trading_ws.cli import _parser, run_demo
from trading_ws.sim import (
    DEMO_ACCESS_TOKEN,
    DEMO_API_KEY,
    DEMO_APP_KEY,
    DEMO_SECRET_KEY,
    KiteSimulator,
    XtsSimulator,
    kite_instruments_csv,
)

RELIANCE = (1, 2885)
INFY = (1, 1594)
TCS = (1, 11536)
NIFTY_FUT = (2, 52168)
NIFTY_INDEX = (1, 26000)
FAST = Backoff(initial=0.05, jitter=0.0)


pytestmark = pytest.mark.simulator(tick_interval=0.03, seed=11)


async def next_matching(
    feed: XtsFeed, predicate: Callable[[Event], bool], *, seen: list[Event] | None = None
) -> Event:
    """The next event satisfying `predicate` (everything read on the way is appended to `seen`)."""
    async for event in feed:
        if seen is not None:
            seen.append(event)
        if predicate(event):
            return event
    raise AssertionError("feed ended")


def tick_of(key: tuple[int, int], mode: Mode | None = None) -> Callable[[Event], bool]:
    return lambda e: (
        isinstance(e, Tick) and (e.segment, e.instrument_token) == key and (mode is None or e.mode is mode)
    )


def is_(kind: type) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, kind)


async def test_subscribe_in_all_three_modes(xts_sim: tuple[XtsSimulator, str]) -> None:
    simulator, root = xts_sim
    with trio.fail_after(10):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root) as feed:
            assert isinstance(await feed.__anext__(), Connected)
            assert feed.connected
            await feed.subscribe([RELIANCE], Mode.LTP)
            await feed.subscribe([INFY])  # the default: quote (1501)
            await feed.subscribe([NIFTY_FUT], Mode.FULL)
            ltp = await next_matching(feed, tick_of(RELIANCE))
            quote = await next_matching(feed, tick_of(INFY))
            full = await next_matching(feed, tick_of(NIFTY_FUT))
            assert isinstance(ltp, Tick)
            assert isinstance(quote, Tick)
            assert isinstance(full, Tick)
            assert ltp.mode is Mode.LTP
            assert ltp.ohlc is None
            assert quote.mode is Mode.QUOTE
            assert quote.ohlc is not None
            assert full.mode is Mode.FULL
            assert full.depth is not None
            assert len(full.depth.bids) == 5
            assert full.exchange_time is not None
            assert feed.subscriptions == {RELIANCE: Mode.LTP, INFY: Mode.QUOTE, NIFTY_FUT: Mode.FULL}
            assert sorted(simulator.subscriptions()) == sorted(
                [(*RELIANCE, 1512), (*INFY, 1501), (*NIFTY_FUT, 1502)]
            )
            stats = feed.statistics()
            assert stats.connected
            assert stats.logins == 1
            assert stats.snapshots == 3
            assert stats.subscribed == 3
            assert stats.remaining_subscriptions == 47
            assert stats.decode_errors == 0


async def test_snapshots_come_first(xts_sim: tuple[XtsSimulator, str]) -> None:
    """The listQuotes snapshots of a subscribe arrive as one batch, before any live tick of them."""
    _, root = xts_sim
    groups = [[RELIANCE, INFY], [TCS, NIFTY_INDEX], [NIFTY_FUT, (2, 52170), (2, 52171)]]
    with trio.fail_after(15):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root) as feed:
            for mode in (Mode.QUOTE, Mode.FULL, Mode.LTP):
                for group in groups:
                    await feed.subscribe(group, mode)
                    first: list[Tick] | None = None
                    while first is None:
                        batch = await feed.receive_batch()
                        mine = [
                            e
                            for e in batch
                            if isinstance(e, Tick)
                            and (e.segment, e.instrument_token) in group
                            and e.mode is mode
                        ]
                        if mine:
                            first = mine
                    # The first batch with any of them is the snapshot batch: all of them, in order.
                    assert [(t.segment, t.instrument_token) for t in first] == group
            assert feed.statistics().snapshots == 3 * 7


async def test_a_sink_gets_snapshots_then_ticks_in_the_reader_task(xts_sim: tuple[XtsSimulator, str]) -> None:
    """With a sink, every batch goes to it (status events, the snapshot batch, live messages), in order,
    and nothing is queued for receive_batch."""
    _, root = xts_sim
    batches: list[list[Event]] = []
    tasks: set[object] = set()

    def sink(batch: list[Event]) -> None:
        tasks.add(trio.lowlevel.current_task())
        batches.append(batch)

    def ticks() -> list[Tick]:
        return [e for b in batches for e in b if isinstance(e, Tick)]

    with trio.fail_after(10):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root, sink=sink) as feed:
            await feed.subscribe([RELIANCE, INFY], Mode.QUOTE)
            await wait_until(lambda: len(ticks()) >= 6)
            assert feed.statistics().queued_batches == 0
            with trio.move_on_after(0.2) as scope:
                await feed.receive_batch()
            assert scope.cancelled_caught
    assert isinstance(batches[0][0], Connected)
    snapshot = next(b for b in batches if any(isinstance(e, Tick) for e in b))
    assert [(t.segment, t.instrument_token) for t in snapshot if isinstance(t, Tick)] == [RELIANCE, INFY]
    assert {(t.segment, t.instrument_token) for t in ticks()} == {RELIANCE, INFY}
    assert feed.statistics().snapshots == 2
    # The subscribe call delivered the snapshots from the caller's task; live messages came from the reader.
    assert len(tasks) == 2


async def test_mode_change_swaps_the_code_and_unsubscribe(xts_sim: tuple[XtsSimulator, str]) -> None:
    simulator, root = xts_sim
    with trio.fail_after(10):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root) as feed:
            await feed.subscribe([RELIANCE, INFY], Mode.QUOTE)
            await feed.set_mode(Mode.FULL, [RELIANCE])
            assert sorted(simulator.subscriptions()) == sorted([(*INFY, 1501), (*RELIANCE, 1502)])
            await next_matching(feed, tick_of(RELIANCE, Mode.FULL))
            await feed.unsubscribe([INFY, TCS])  # TCS is not subscribed: ignored
            assert simulator.subscriptions() == [(*RELIANCE, 1502)]
            assert feed.subscriptions == {RELIANCE: Mode.FULL}

            def keys(batch: list[Event]) -> set[tuple[int, int]]:
                return {(e.segment or 0, e.instrument_token) for e in batch if isinstance(e, Tick)}

            while keys(await feed.receive_batch()) != {RELIANCE}:
                pass
            for _ in range(5):
                assert INFY not in keys(await feed.receive_batch())


async def test_mode_change_at_the_cap_unsubscribes_first(nursery: trio.Nursery) -> None:
    simulator = XtsSimulator(tick_interval=0.03, max_subscriptions=2)
    root: str = await nursery.start(simulator.serve)
    with trio.fail_after(10):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root) as feed:
            await feed.subscribe([RELIANCE, INFY], Mode.QUOTE)
            with pytest.raises(SubscriptionLimitError):
                await feed.subscribe([TCS])  # the server's count said 2 in all
            await feed.set_mode(Mode.LTP, [RELIANCE])  # no room for both codes at once
            assert sorted(simulator.subscriptions()) == sorted([(*INFY, 1501), (*RELIANCE, 1512)])
            await next_matching(feed, tick_of(RELIANCE, Mode.LTP))


async def test_partial_broadcast_mode(xts_sim: tuple[XtsSimulator, str]) -> None:
    _, root = xts_sim
    with trio.fail_after(10):
        async with open_xts_feed(
            DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root, broadcast_mode="partial", flavour="client"
        ) as feed:
            assert feed.broadcast_mode == "Partial"
            assert feed.flavour == "client"
            await feed.subscribe([RELIANCE], Mode.FULL)
            await feed.subscribe([INFY], Mode.LTP)
            snapshot = await next_matching(feed, tick_of(RELIANCE, Mode.FULL))
            assert isinstance(snapshot, Tick)
            # Skip the snapshots (full JSON); partial events follow.
            for _ in range(3):
                full = await next_matching(feed, tick_of(RELIANCE, Mode.FULL))
                ltp = await next_matching(feed, tick_of(INFY, Mode.LTP))
            assert isinstance(full, Tick)
            assert isinstance(ltp, Tick)
            assert math.isfinite(full.last_price)
            assert full.depth is not None
            assert len(full.depth.bids) == 5
            assert math.isfinite(ltp.last_price)
            assert feed.statistics().decode_errors == 0


async def test_flat_touchlines_and_string_joined(nursery: trio.Nursery) -> None:
    simulator = XtsSimulator(
        tick_interval=0.03, flat_touchline=True, joined_as_string=True, shuffle_keys=True
    )
    root: str = await nursery.start(simulator.serve)
    with trio.fail_after(10):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root) as feed:
            await feed.subscribe([RELIANCE], Mode.QUOTE)
            for _ in range(3):
                tick = await next_matching(feed, tick_of(RELIANCE, Mode.QUOTE))
            assert isinstance(tick, Tick)
            assert tick.ohlc is not None
            stats = feed.statistics()
            assert stats.decode_errors == 0
            assert stats.unknown_packets == 0


async def test_reconnect_with_the_same_token_makes_no_rest_call(xts_sim: tuple[XtsSimulator, str]) -> None:
    simulator, root = xts_sim
    with trio.fail_after(10):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root, backoff=FAST) as feed:
            await feed.subscribe([RELIANCE], Mode.FULL)
            await feed.subscribe([INFY], Mode.LTP)
            await next_matching(feed, tick_of(RELIANCE, Mode.FULL))
            rest_before = simulator.statistics().rest_requests
            assert simulator.drop_connections() == 1
            seen: list[Event] = []
            resubscribed = await next_matching(feed, is_(Resubscribed), seen=seen)
            assert [type(e) for e in seen if not isinstance(e, Tick)] == [
                Disconnected,
                Reconnecting,
                Connected,
                Resubscribed,
            ]
            assert isinstance(resubscribed, Resubscribed)
            assert resubscribed.instruments == 2
            await next_matching(feed, tick_of(RELIANCE, Mode.FULL))
            await next_matching(feed, tick_of(INFY, Mode.LTP))
            stats = simulator.statistics()
            assert stats.rest_requests == rest_before
            assert stats.logins == 1
            assert feed.statistics().reconnects == 1


async def test_expired_token_at_the_socket_logs_in_again_once(xts_sim: tuple[XtsSimulator, str]) -> None:
    simulator, root = xts_sim
    with trio.fail_after(10):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root, backoff=FAST) as feed:
            await feed.subscribe([RELIANCE, NIFTY_FUT], Mode.QUOTE)
            await feed.subscribe([INFY], Mode.FULL)
            await next_matching(feed, tick_of(INFY))
            old_token = feed.session.token
            simulator.expire_tokens()
            simulator.drop_connections()
            seen: list[Event] = []
            resubscribed = await next_matching(feed, is_(Resubscribed), seen=seen)
            assert isinstance(resubscribed, Resubscribed)
            assert resubscribed.instruments == 3
            assert [type(e) for e in seen if not isinstance(e, Tick)] == [
                Disconnected,
                Reconnecting,
                Connected,
                Resubscribed,
            ]
            # The snapshots of the new session's subscribe answers come right after Resubscribed.
            snapshots = await feed.receive_batch()
            assert {(t.segment, t.instrument_token) for t in snapshots if isinstance(t, Tick)} == {
                RELIANCE,
                NIFTY_FUT,
                INFY,
            }
            stats = simulator.statistics()
            assert stats.logins == 2
            assert stats.handshakes_rejected == 1
            assert feed.session.token != old_token
            assert sorted(simulator.subscriptions()) == sorted(
                [(*RELIANCE, 1501), (*NIFTY_FUT, 1501), (*INFY, 1502)]
            )
            await next_matching(feed, tick_of(INFY, Mode.FULL))


@pytest.mark.parametrize("status", [400, 200])
async def test_invalid_token_on_rest_logs_in_again(nursery: trio.Nursery, status: int) -> None:
    simulator = XtsSimulator(tick_interval=0.03, invalid_token_status=status)
    root: str = await nursery.start(simulator.serve)
    with trio.fail_after(10):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root, backoff=FAST) as feed:
            await feed.subscribe([RELIANCE], Mode.QUOTE)
            await next_matching(feed, tick_of(RELIANCE))
            simulator.expire_tokens()  # the open socket keeps streaming; REST now says "Invalid Token"
            await feed.subscribe([INFY], Mode.LTP)  # recorded; applied after the new login
            seen: list[Event] = []
            await next_matching(feed, is_(Resubscribed), seen=seen)
            statuses = [e for e in seen if not isinstance(e, Tick)]
            assert [type(e) for e in statuses] == [Disconnected, Reconnecting, Connected, Resubscribed]
            assert isinstance(statuses[0], Disconnected)
            assert "token" in statuses[0].reason
            await next_matching(feed, tick_of(INFY, Mode.LTP))
            assert simulator.statistics().logins == 2
            assert sorted(simulator.subscriptions()) == sorted([(*RELIANCE, 1501), (*INFY, 1512)])


async def test_bad_credentials_fail_once_without_retry(xts_sim: tuple[XtsSimulator, str]) -> None:
    simulator, root = xts_sim
    wrong = "wrong-secret-987654"
    with trio.fail_after(10):
        with pytest.raises(LoginRefusedError) as info:
            async with open_xts_feed(DEMO_APP_KEY, wrong, root_url=root):
                pytest.fail("must not connect")  # pragma: no cover
        assert wrong not in str(info.value)
        assert simulator.statistics().logins_refused == 1


async def test_credentials_provider_is_asked_once(xts_sim: tuple[XtsSimulator, str]) -> None:
    simulator, root = xts_sim
    calls = 0

    async def good() -> tuple[str, str]:
        nonlocal calls
        calls += 1
        return DEMO_APP_KEY, DEMO_SECRET_KEY

    async def bad() -> tuple[str, str]:
        nonlocal calls
        calls += 1
        return DEMO_APP_KEY, "still-wrong"

    with trio.fail_after(10):
        async with open_xts_feed(DEMO_APP_KEY, "stale", root_url=root, credentials_provider=good) as feed:
            assert feed.connected
        assert calls == 1
        calls = 0
        with pytest.raises(LoginRefusedError):
            async with open_xts_feed(DEMO_APP_KEY, "stale", root_url=root, credentials_provider=bad):
                pytest.fail("must not connect")  # pragma: no cover
        assert calls == 1
    assert simulator.statistics().logins_refused == 3  # stale, stale, still-wrong


async def test_a_token_refused_right_after_login_is_not_retried_in_a_loop(nursery: trio.Nursery) -> None:
    counter = itertools.count(1)
    # Each reading of the simulator's clock is 100000 s later: every token has expired by its first use.
    simulator = XtsSimulator(tick_interval=0.05, clock=lambda: 1.7e9 + next(counter) * 100_000.0)
    root: str = await nursery.start(simulator.serve)
    with trio.fail_after(10):
        with pytest.raises(InvalidTokenError):
            async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root, backoff=FAST):
                pytest.fail("must not connect")  # pragma: no cover
        await trio.sleep(0.3)
        stats = simulator.statistics()
        assert stats.logins == 2  # the first login and exactly one more
        assert stats.handshakes_rejected == 2


async def test_refused_relogin_mid_session_fails_the_feed(xts_sim: tuple[XtsSimulator, str]) -> None:
    simulator, root = xts_sim
    with trio.fail_after(10):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root, backoff=FAST) as feed:
            await feed.subscribe([RELIANCE])
            await next_matching(feed, tick_of(RELIANCE))
            simulator.expire_tokens()
            simulator.reject_next_login(400, count=10)
            simulator.drop_connections()
            seen: list[Event] = []
            with pytest.raises(AuthenticationError):
                async for event in feed:
                    seen.append(event)
            assert isinstance(seen[-1], Disconnected)
            with pytest.raises(FeedClosedError):
                await feed.subscribe([INFY])
        stats = simulator.statistics()
        assert stats.logins == 1
        assert stats.logins_refused == 1  # one new login was tried, not a loop


async def test_another_login_supersedes_ours_and_we_log_in_again_once(
    xts_sim: tuple[XtsSimulator, str],
) -> None:
    simulator, root = xts_sim
    with trio.fail_after(10):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root, backoff=FAST) as feed:
            await feed.subscribe([RELIANCE])
            await next_matching(feed, tick_of(RELIANCE))
            async with XtsSession(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root) as other:
                await other.login()  # one session per appKey: ours is superseded
            await next_matching(feed, tick_of(RELIANCE))  # the open socket keeps streaming
            simulator.drop_connections()
            await next_matching(feed, is_(Resubscribed))
            await next_matching(feed, tick_of(RELIANCE))
            assert simulator.statistics().logins == 3


async def test_cap_of_50_is_refused_before_sending(xts_sim: tuple[XtsSimulator, str]) -> None:
    simulator, root = xts_sim
    many = [(1, 200_000 + i) for i in range(51)]
    with trio.fail_after(10):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root) as feed:
            before = simulator.statistics().rest_requests
            with pytest.raises(SubscriptionLimitError):
                await feed.subscribe(many, Mode.LTP)
            assert simulator.statistics().rest_requests == before
            assert feed.subscriptions == {}
            await feed.subscribe([RELIANCE], Mode.LTP)
            with pytest.raises(SubscriptionLimitError):
                await feed.subscribe(many[:50], Mode.LTP)
            assert feed.subscriptions == {RELIANCE: Mode.LTP}


async def test_refused_instruments_are_not_recorded(xts_sim: tuple[XtsSimulator, str]) -> None:
    simulator, root = xts_sim
    with trio.fail_after(10):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root) as feed:
            await feed.subscribe([RELIANCE], Mode.QUOTE)
            with pytest.raises(SubscriptionError, match="e-instrument-0001"):
                await feed.subscribe([(1, 999_999), INFY], Mode.QUOTE)
            assert feed.subscriptions == {RELIANCE: Mode.QUOTE}
            with pytest.raises(SubscriptionError):
                await feed.subscribe([RELIANCE, (1, 999_999)], Mode.FULL)
            assert feed.subscriptions == {RELIANCE: Mode.QUOTE}
            assert simulator.subscriptions() == [(*RELIANCE, 1501)]
            with pytest.raises(ConfigurationError):
                await feed.subscribe([(1, 2885, 3)], Mode.QUOTE)  # type: ignore[list-item]
            with pytest.raises(ValueError, match="Mode"):
                await feed.subscribe([RELIANCE], "bogus")


async def test_garbage_is_counted_and_skipped(xts_sim: tuple[XtsSimulator, str]) -> None:
    simulator, root = xts_sim
    with trio.fail_after(10):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root) as feed:
            await feed.subscribe([INFY], Mode.FULL)
            await next_matching(feed, tick_of(INFY))
            simulator.send_garbage(7)
            while (s := feed.statistics()).decode_errors + s.unknown_packets < 7:
                await next_matching(feed, tick_of(INFY))
            await next_matching(feed, tick_of(INFY, Mode.FULL))
            stats = feed.statistics()
            assert stats.connected
            assert stats.reconnects == 0
            assert stats.decode_errors >= 4


async def test_subscribe_from_the_consumer_never_waits_for_the_consumer(
    xts_sim: tuple[XtsSimulator, str],
) -> None:
    _, root = xts_sim
    with trio.fail_after(10):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root, buffer=2) as feed:
            await feed.subscribe([INFY], Mode.QUOTE)
            await trio.sleep(0.3)  # the queue fills; the reader waits for us
            assert feed.statistics().queued_batches >= 2
            await feed.subscribe([RELIANCE], Mode.LTP)  # the same task: must not deadlock
            await next_matching(feed, tick_of(RELIANCE, Mode.LTP))


async def test_secrets_never_leak(nursery: trio.Nursery, caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cr3t-xts-secret-key"
    simulator = XtsSimulator(tick_interval=0.03, secret_key=secret)
    root: str = await nursery.start(simulator.serve)
    caplog.set_level(logging.DEBUG)
    events: list[Event] = []
    with trio.fail_after(10):
        async with open_xts_feed(DEMO_APP_KEY, secret, root_url=root, backoff=FAST) as feed:
            token = feed.session.token
            assert token is not None
            await feed.subscribe([INFY])
            await next_matching(feed, tick_of(INFY))
            simulator.expire_tokens()
            simulator.drop_connections()
            await next_matching(feed, is_(Resubscribed), seen=events)
            new_token = feed.session.token
            assert new_token is not None
            for text in (repr(feed), repr(feed.session), *map(repr, events)):
                assert secret not in text
                assert token not in text
                assert new_token not in text
        broker = XtsBroker(DEMO_APP_KEY, secret, root)
        assert secret not in repr(broker)
        with pytest.raises(LoginRefusedError) as info:
            async with open_xts_feed(DEMO_APP_KEY, secret + "x", root_url=root):
                pytest.fail("must not connect")  # pragma: no cover
        assert secret not in str(info.value)
    assert caplog.records
    for record in caplog.records:
        message = record.getMessage()
        assert secret not in message
        assert token not in message
        assert new_token not in message


async def test_leaving_logs_out_and_closes(xts_sim: tuple[XtsSimulator, str]) -> None:
    simulator, root = xts_sim
    with trio.fail_after(10):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root) as feed:
            await feed.subscribe([INFY], Mode.FULL)
            await next_matching(feed, tick_of(INFY))
        assert not feed.connected
        with pytest.raises(FeedClosedError):
            await feed.subscribe([INFY])
        with pytest.raises(FeedClosedError):
            await feed.receive_batch()
        await wait_until(lambda: simulator.statistics().sockets_open == 0)
        stats = simulator.statistics()
        assert stats.sessions == 0  # logged out
        assert simulator.subscriptions() == []


async def test_a_cancelled_feed_logs_out_without_waiting_for_the_close_reply(
    xts_sim: tuple[XtsSimulator, str],
) -> None:
    # Under cancellation trio-websocket's reader is cancelled too, so nobody would read the server's close
    # reply: the polite close must be skipped (not waited out for close_timeout), the logout still made.
    simulator, root = xts_sim
    with trio.fail_after(10):  # far below close_timeout: waiting for the reply would fail the test
        with trio.CancelScope() as scope:
            async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root, close_timeout=60) as feed:
                await feed.subscribe([INFY], Mode.FULL)
                await next_matching(feed, tick_of(INFY))
                scope.cancel()
                await trio.sleep_forever()
        assert scope.cancelled_caught
        assert simulator.statistics().sessions == 0  # logged out before the block was left
        await wait_until(lambda: simulator.statistics().sockets_open == 0)


async def test_user_errors_propagate_unwrapped(xts_sim: tuple[XtsSimulator, str]) -> None:
    _, root = xts_sim
    with trio.fail_after(10), pytest.raises(KeyError):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root):
            raise KeyError("mine")


async def test_unreachable_server_and_bad_arguments() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()
    with trio.fail_after(10), pytest.raises(ConnectError):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=f"http://127.0.0.1:{port}"):
            pytest.fail("must not connect")  # pragma: no cover
    for options in (
        {"root_url": "http://example.com"},
        {"root_url": "http://127.0.0.1:1", "broadcast_mode": "Binary"},
        {"root_url": "http://127.0.0.1:1", "flavour": "dealer"},
    ):
        with pytest.raises(ConfigurationError):
            async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, **options):  # type: ignore[arg-type]
                pytest.fail("must not connect")  # pragma: no cover


async def test_backoff_gives_up_after_max_attempts(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    scope = trio.CancelScope()
    simulator = XtsSimulator(tick_interval=0.5)

    async def serve(task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await simulator.serve(task_status=task_status)

    root: str = await nursery.start(serve)
    backoff = Backoff(initial=1.0, factor=2.0, jitter=0.0, max_attempts=3)
    with trio.fail_after(120):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root, backoff=backoff) as feed:
            scope.cancel()
            seen: list[Event] = []
            with pytest.raises(ConnectError, match="gave up after 3"):
                async for event in feed:
                    seen.append(event)
            assert [e.delay for e in seen if isinstance(e, Reconnecting)] == [1.0, 2.0, 4.0]


# ---------------------------------------------------------------------------------------------------------
# XtsBroker and the manager


def xts_broker(root: str, **options: object) -> XtsBroker:
    return XtsBroker(DEMO_APP_KEY, DEMO_SECRET_KEY, root, backoff=FAST, **options)  # type: ignore[arg-type]


def test_broker_configuration() -> None:
    broker = XtsBroker(DEMO_APP_KEY, DEMO_SECRET_KEY, "https://xts.example.com", flavour="client")
    assert broker.name == "xts"
    assert broker.keyed_by_segment
    assert broker.max_connections == 1
    assert broker.max_instruments_per_connection == 50
    assert DEMO_SECRET_KEY not in repr(broker)
    with pytest.raises(ConfigurationError):
        XtsBroker(DEMO_APP_KEY, DEMO_SECRET_KEY, "https://xts.example.com", max_connections=2)
    with pytest.raises(ConfigurationError):
        XtsBroker(DEMO_APP_KEY, DEMO_SECRET_KEY, "https://xts.example.com", flavour="dealer")
    with pytest.raises(ConfigurationError):
        XtsBroker(DEMO_APP_KEY, DEMO_SECRET_KEY, "http://xts.example.com")


async def test_broker_loads_the_master(xts_sim: tuple[XtsSimulator, str]) -> None:
    simulator, root = xts_sim
    with trio.fail_after(10):
        master = await xts_broker(root).load_instruments()
        assert simulator.statistics().logins == 0  # the master needs no login
        info = master["NSE:INFY"]
        assert info.key == INFY
        assert info.token == 1594
        assert info.segment == 1
        assert master["NFO:NIFTY26DECFUT"].key == NIFTY_FUT
        assert "NSE:NIFTY 50" not in master  # indices are not master rows
        with_indices = await xts_broker(root, index_segments=(1, 11)).load_instruments()
        assert with_indices["NSE:NIFTY 50"].key == NIFTY_INDEX
        assert not with_indices["NSE:NIFTY 50"].tradable
        assert with_indices["BSE:SENSEX"].key == (11, 26065)
        assert simulator.statistics().sessions == 0  # the loader logged out again
        given = await xts_broker(
            root, instruments="NSECM|2885|8|RELIANCE|RELIANCE-EQ|EQ|RELIANCE-EQ|1|1|1|1|0.05|1|1|RELIANCE"
        ).load_instruments()
        assert list(given) == ["NSE:RELIANCE"]


async def test_manager_subscribes_by_symbol(xts_sim: tuple[XtsSimulator, str]) -> None:
    simulator, root = xts_sim
    symbols = ["NSE:INFY", "NSE:RELIANCE", "NFO:NIFTY26DECFUT"]
    with trio.fail_after(15):
        async with open_market_data(xts_broker(root)) as md:
            async with md.subscribe(symbols, mode=Mode.FULL, user_id="alice") as alice:
                await alice.wait_ready()
                seen: set[str] = set()
                async for event in alice:
                    if isinstance(event, Tick):
                        assert event.mode is Mode.FULL
                        assert event.symbol is not None
                        seen.add(event.symbol)
                        if seen == set(symbols):
                            break
                assert sorted(simulator.subscriptions()) == sorted(
                    [(*INFY, 1502), (*RELIANCE, 1502), (*NIFTY_FUT, 1502)]
                )
                async with md.subscribe(["NSE:INFY"], mode=Mode.LTP) as bob:
                    tick = await anext_tick(bob)
                    assert tick.symbol == "NSE:INFY"
                    assert tick.mode is Mode.LTP
                stats = md.statistics()
                assert stats.brokers[0].name == "xts"
                assert stats.brokers[0].instruments == 3
            assert simulator.subscriptions() == []  # the unsubscribe was answered before leaving returned


async def anext_tick(sub: object) -> Tick:
    async for event in sub:  # type: ignore[attr-defined]
        if isinstance(event, Tick):
            return event
    raise AssertionError("subscription ended")


async def test_manager_routes_reconnects_as_gaps(xts_sim: tuple[XtsSimulator, str]) -> None:
    simulator, root = xts_sim
    with trio.fail_after(15):
        async with open_market_data(xts_broker(root)) as md:
            async with md.subscribe(["NSE:INFY"]) as sub:
                await sub.wait_ready()
                simulator.drop_connections()
                kinds: list[str] = []
                async for event in sub:
                    kinds.append(type(event).__name__)
                    if kinds[-1] == "Gap":
                        break
                assert "Disconnected" in kinds
                assert kinds[-2:] == ["Resubscribed", "Gap"]
                assert (await anext_tick(sub)).symbol == "NSE:INFY"


async def test_manager_snapshots_are_queued_before_subscribe_returns(
    xts_sim: tuple[XtsSimulator, str],
) -> None:
    """The listQuotes snapshots of the subscribe call are this subscriber's first ticks: they are in its
    queue by the time `subscribe` has entered, before any live message could arrive."""
    _, root = xts_sim
    with trio.fail_after(15):
        async with (
            open_market_data(xts_broker(root)) as md,
            md.subscribe(["NSE:INFY", "NSE:RELIANCE"], mode=Mode.QUOTE) as sub,
        ):
            assert sub.statistics().queue.depth >= 2  # both snapshots, queued before subscribe returned
            first = [e for e in await sub.receive_batch() if isinstance(e, Tick)]
            # First, in the order subscribed; a live tick may follow them (the simulator ticks every 30 ms
            # and the manager may checkpoint once the request is answered), never come before them.
            assert [t.symbol for t in first[:2]] == ["NSE:INFY", "NSE:RELIANCE"]
            await sub.wait_ready()


async def test_manager_refuses_past_the_session_cap_at_subscribe_time(
    xts_sim: tuple[XtsSimulator, str],
) -> None:
    simulator, root = xts_sim
    with trio.fail_after(15):
        async with open_market_data(xts_broker(root, max_instruments_per_connection=3)) as md:
            async with md.subscribe(["NSE:INFY", "NSE:RELIANCE", "NSE:TCS"]) as sub:
                with pytest.raises(SubscriptionLimitError):
                    await sub.add(["NFO:NIFTY26DECFUT"])
                with pytest.raises(SubscriptionLimitError):
                    async with md.subscribe(["NFO:NIFTY26DECFUT"]):
                        pytest.fail("past the cap")  # pragma: no cover
                assert sub.symbols == {"NSE:INFY", "NSE:RELIANCE", "NSE:TCS"}
                assert len(simulator.subscriptions()) == 3
                await sub.wait_ready()


async def test_manager_with_kite_and_xts(nursery: trio.Nursery) -> None:
    kite_sim = KiteSimulator(tick_interval=0.03, seed=3)
    kite_url: str = await nursery.start(kite_sim.serve)
    xts_sim = XtsSimulator(tick_interval=0.03, seed=4)
    root: str = await nursery.start(xts_sim.serve)
    kite = KiteBroker(
        DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=kite_url, instruments=kite_instruments_csv(), backoff=FAST
    )
    with trio.fail_after(15):
        async with open_market_data(kite, xts_broker(root)) as md:
            async with (
                md.subscribe(["NSE:INFY"], broker="xts") as via_xts,
                md.subscribe(["NSE:INFY"], broker="kite") as via_kite,
                md.subscribe(["NSE:RELIANCE"]) as default,  # the first broker that knows it: Kite
            ):
                x = await anext_tick(via_xts)
                k = await anext_tick(via_kite)
                d = await anext_tick(default)
                assert x.broker == "xts"
                assert (x.segment, x.instrument_token) == INFY
                assert k.broker == "kite"
                assert k.instrument_token == 408065
                assert x.symbol == k.symbol == "NSE:INFY"
                assert d.broker == "kite"
                assert xts_sim.subscriptions() == [(*INFY, 1501)]


# ---------------------------------------------------------------------------------------------------------
# The command line


@pytest.mark.parametrize("broker", ["xts", "both"])
async def test_demo_runs_on_the_xts_simulator(broker: str, capsys: pytest.CaptureFixture[str]) -> None:
    with trio.fail_after(20):
        total = await run_demo(
            ["NSE:INFY", "NSE:NIFTY 50", "NFO:NIFTY26DECFUT"],
            mode=Mode.FULL,
            duration=1.5,
            tick_interval=0.05,
            seed=1,
            live=False,
            broker=broker,
        )
    assert total > 0
    out = capsys.readouterr().out
    assert "NSE:INFY" in out
    assert "demo finished" in out
    if broker == "both":
        assert "(xts)" in out
        assert "(kite)" in out


async def _first_line(stream: trio.abc.ReceiveStream, needle: str) -> str:
    """Read a subprocess's output until a line containing `needle`; return that line."""
    buffer = b""
    while True:
        while b"\n" not in buffer:
            chunk = await stream.receive_some()
            if not chunk:
                raise EOFError("the process closed its output")
            buffer += chunk
        line, _, buffer = buffer.partition(b"\n")
        if needle in line.decode():
            return line.decode()


async def _run_cli(*args: str, needle: str, then: Callable[[str], Awaitable[None]]) -> int:
    """Run ``trading-ws ARGS``, wait for a line with `needle`, call `then(line)`, send Ctrl-C.

    Returns the exit code."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trading_ws", *args], stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        with trio.fail_after(30):
            line = await _first_line(process.stdout, needle)
        await then(line)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            code = await process.wait()
        assert time.monotonic() - sent < 1.5
        return code
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await process.wait()
            if process.stdout is not None:
                await process.stdout.aclose()


async def test_sim_xts_prints_its_root_url_and_serves() -> None:
    async def connect(line: str) -> None:
        assert line.startswith("XTS simulator listening on http://127.0.0.1:")
        root = line.split()[-1]
        with trio.fail_after(10):
            async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root) as feed:
                await feed.subscribe([INFY], Mode.LTP)
                await next_matching(feed, tick_of(INFY, Mode.LTP))

    assert await _run_cli("sim", "xts", "--port", "0", needle="listening", then=connect) == 130


async def test_demo_with_both_brokers_stops_on_ctrl_c() -> None:
    async def nothing(line: str) -> None:
        assert "kite: connected" in line
        assert "xts: connected" in line

    args = ("demo", "--broker", "both", "--tick-interval", "0.05")
    assert await _run_cli(*args, needle="xts: connected", then=nothing) == 130


def test_cli_parses_the_xts_commands() -> None:
    args = _parser().parse_args(["sim", "xts", "--port", "9000", "--app-key", "k", "--secret-key", "s"])
    assert (args.broker, args.port, args.app_key, args.secret_key) == ("xts", 9000, "k", "s")
    assert _parser().parse_args(["demo"]).broker == "kite"
    assert _parser().parse_args(["demo", "--broker", "both"]).broker == "both"
