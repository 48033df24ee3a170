"""The contracts of the standalone feeds' public methods, as a careless caller meets them: string modes,
bad arguments, cancellation at each await, concurrent requests, and a consumer that does not read."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, strategies as st

from trading_ws import Backoff, ConfigurationError, Mode, RateLimit, SubscriptionLimitError, Tick
from trading_ws._model import coerce_mode
from trading_ws._ratelimit import TokenBucket
from trading_ws.brokers.kite import open_kite_feed
from trading_ws.brokers.xts import open_xts_feed
from trading_ws.sim import (
    DEMO_ACCESS_TOKEN,
    DEMO_API_KEY,
    DEMO_APP_KEY,
    DEMO_SECRET_KEY,
    KiteSimulator,
    XtsSimulator,
)

INFY = 408065
RELIANCE = 738561
XTS_RELIANCE = (1, 2885)
XTS_INFY = (1, 1594)


@pytest.fixture
async def kite(nursery: trio.Nursery) -> tuple[KiteSimulator, str]:
    simulator = KiteSimulator(tick_interval=0.05, heartbeat_interval=1.0, seed=3)
    url = await nursery.start(simulator.serve)
    return simulator, url


@pytest.fixture
async def xts(nursery: trio.Nursery) -> tuple[XtsSimulator, str]:
    simulator = XtsSimulator(tick_interval=0.05, seed=3)
    root = await nursery.start(simulator.serve)
    return simulator, root


async def settle() -> None:
    """Let the simulator apply what it received (it runs in the same Trio run)."""
    await trio.sleep(0.2)


# ---------------------------------------------------------------------------------------------------------
# Modes: a Mode or its string value, everywhere; anything else refused before anything happens


@given(
    st.one_of(
        st.text(max_size=8), st.sampled_from(["ltp", "quote", "full", "FULL", "Quote", " full", "depth"])
    )
)
def test_coerce_mode_accepts_exactly_the_documented_values(value: str) -> None:
    if value in ("ltp", "quote", "full"):
        assert coerce_mode(value) is Mode(value)
    else:
        with pytest.raises(ConfigurationError, match="mode must be"):
            coerce_mode(value)


@given(st.one_of(st.integers(), st.none(), st.floats(), st.binary(max_size=4), st.just(Mode)))
def test_coerce_mode_refuses_other_types(value: object) -> None:
    with pytest.raises(ConfigurationError):
        coerce_mode(value)


async def test_kite_feed_takes_string_modes(kite: tuple[KiteSimulator, str]) -> None:
    simulator, url = kite
    with trio.fail_after(10):
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url) as feed:
            await feed.subscribe([INFY], "full")
            await feed.set_mode("ltp", [RELIANCE])
            assert feed.subscriptions == {INFY: Mode.FULL, RELIANCE: Mode.LTP}
            async for event in feed:
                if isinstance(event, Tick) and event.instrument_token == INFY:
                    assert event.mode is Mode.FULL
                    break
            assert simulator.subscriptions() == [{INFY: Mode.FULL, RELIANCE: Mode.LTP}]


BAD_MODES: list[Any] = ["FULL", "depth", "", 2, None, Mode, b"full"]


@pytest.mark.parametrize("mode", BAD_MODES, ids=repr)
async def test_kite_feed_refuses_a_bad_mode_before_recording_or_sending(
    kite: tuple[KiteSimulator, str], mode: Any
) -> None:
    simulator, url = kite
    with trio.fail_after(10):
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url) as feed:
            with pytest.raises(ConfigurationError):
                await feed.subscribe([INFY], mode)
            with pytest.raises(ConfigurationError):
                await feed.set_mode(mode, [INFY])
            assert feed.subscriptions == {}
            await settle()
            assert simulator.subscriptions() == [{}]
            # The feed is not poisoned: it reconnects and serves as before.
            simulator.drop_connections()
            await feed.subscribe([INFY], Mode.LTP)
            async for event in feed:
                if isinstance(event, Tick) and event.instrument_token == INFY:
                    break


@pytest.mark.parametrize("mode", BAD_MODES, ids=repr)
async def test_xts_feed_refuses_a_bad_mode_before_recording_or_sending(
    xts: tuple[XtsSimulator, str], mode: Any
) -> None:
    simulator, root = xts
    with trio.fail_after(10):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root) as feed:
            requests = simulator.statistics().rest_requests
            with pytest.raises(ConfigurationError):
                await feed.subscribe([XTS_RELIANCE], mode)
            assert feed.subscriptions == {}
            assert simulator.statistics().rest_requests == requests
            await feed.subscribe([XTS_RELIANCE], "quote")
            assert feed.subscriptions == {XTS_RELIANCE: Mode.QUOTE}


@pytest.mark.parametrize(
    "tokens", [408065, "408065", b"ab", None, [True], [-1], [2**32], [1.5], [None], [[1, 2]], [{}]], ids=repr
)
async def test_kite_feed_refuses_bad_tokens(kite: tuple[KiteSimulator, str], tokens: Any) -> None:
    _, url = kite
    with trio.fail_after(10):
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url) as feed:
            with pytest.raises(ConfigurationError):
                await feed.subscribe(tokens, Mode.LTP)
            assert feed.subscriptions == {}


@pytest.mark.parametrize(
    "instruments",
    [None, "1,2885", [[1, 2885]], [{}], [(1,)], [(1, 2885, 3)], [(0, 5)], [(1, True)]],
    ids=repr,
)
async def test_xts_feed_refuses_bad_instruments(xts: tuple[XtsSimulator, str], instruments: Any) -> None:
    _, root = xts
    with trio.fail_after(10):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root) as feed:
            with pytest.raises(ConfigurationError):
                await feed.subscribe(instruments, Mode.LTP)
            assert feed.subscriptions == {}


# ---------------------------------------------------------------------------------------------------------
# Constructor arguments


GOOD_KITE: dict[str, Any] = {"api_key": DEMO_API_KEY, "access_token": DEMO_ACCESS_TOKEN}
BAD_KITE_ARGS: list[tuple[str, Any]] = [
    ("api_key", ""),
    ("api_key", None),
    ("api_key", 5),
    ("access_token", ""),
    ("access_token", None),
    ("access_token", "tok\nen"),
    ("watchdog_timeout", math.nan),
    ("watchdog_timeout", math.inf),
    ("watchdog_timeout", 0),
    ("watchdog_timeout", -1),
    ("watchdog_timeout", True),
    ("connect_timeout", "10"),
    ("close_timeout", math.nan),
    ("buffer", 0),
    ("buffer", 1.5),
    ("max_instruments", 0),
    ("max_instruments", 70000),
    ("max_message_size", 10),
    ("connection_id", -1),
    ("backoff", 5),
    ("url", "file:///etc/passwd"),
    ("url", "http://127.0.0.1:1"),
    ("url", "ws://user:pw-S3cret@127.0.0.1:1"),
    ("url", "ws://127.0.0.1:99999"),
    ("url", "ws://127.0.0.1:1/?x=1"),
    ("url", "ws://[::1"),
    ("allow_insecure", "no"),
    ("rng", "x"),
    ("ssl_context", "default"),
    ("rate_limiter", 5),
    ("sink", "print"),
    ("token_provider", "token"),
    ("url", "ws://example.com"),
    ("url", 5),
]


@pytest.mark.parametrize(("name", "value"), BAD_KITE_ARGS, ids=[f"{n}={v!r}" for n, v in BAD_KITE_ARGS])
async def test_open_kite_feed_validates_every_argument_up_front(name: str, value: Any) -> None:
    arguments = {**GOOD_KITE, "url": "ws://127.0.0.1:9", name: value}
    with pytest.raises(ConfigurationError) as caught:
        async with open_kite_feed(**arguments):
            pytest.fail("must not open")
    assert "pw-S3cret" not in str(caught.value)  # a password is never echoed
    assert DEMO_ACCESS_TOKEN not in str(caught.value)


BAD_XTS_ARGS: list[tuple[str, Any]] = [
    ("ping_timeout_slack", -1),
    ("ping_timeout_slack", math.nan),
    ("connect_timeout", 0),
    ("close_timeout", math.inf),
    ("buffer", 0),
    ("max_instruments", 0),
    ("connection_id", -2),
    ("broadcast_mode", "Binary"),
    ("flavour", "dealer"),
    ("root_url", "http://user:pw@127.0.0.1:1"),
    ("root_url", "ftp://127.0.0.1"),
    ("root_url", "http://[::1"),
    ("request_timeout", math.nan),
    ("logout_on_exit", "yes"),
    ("rng", 7),
    ("sink", 1),
    ("rate_limiter", RateLimit()),
    ("allow_insecure", 1),
]


@pytest.mark.parametrize(("name", "value"), BAD_XTS_ARGS, ids=[f"{n}={v!r}" for n, v in BAD_XTS_ARGS])
async def test_open_xts_feed_validates_every_argument_up_front(name: str, value: Any) -> None:
    arguments: dict[str, Any] = {"root_url": "http://127.0.0.1:9", name: value}
    with pytest.raises(ConfigurationError) as caught:
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, **arguments):
            pytest.fail("must not open")
    assert "pw@" not in str(caught.value)


# ---------------------------------------------------------------------------------------------------------
# Cancellation: all or nothing


async def test_kite_subscribe_cancelled_at_the_rate_limiter_leaves_nothing(
    kite: tuple[KiteSimulator, str],
) -> None:
    simulator, url = kite
    limiter = TokenBucket(RateLimit(rate=1.0, burst=1))
    with trio.fail_after(20):
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, rate_limiter=limiter) as feed:
            await limiter.acquire()  # the bucket is empty: the next request waits a second
            with trio.move_on_after(0.2) as scope:
                await feed.subscribe([INFY], Mode.FULL)
            assert scope.cancelled_caught
            assert feed.subscriptions == {}
            await settle()
            assert simulator.subscriptions() == [{}]
            # Nothing half-done blocks a retry: the same request works in full.
            await feed.subscribe([INFY], Mode.FULL)
            assert feed.subscriptions == {INFY: Mode.FULL}
            await settle()
            assert simulator.subscriptions() == [{INFY: Mode.FULL}]


async def test_kite_unsubscribe_cancelled_at_the_rate_limiter_leaves_the_subscription(
    kite: tuple[KiteSimulator, str],
) -> None:
    simulator, url = kite
    limiter = TokenBucket(RateLimit(rate=1.0, burst=2))
    with trio.fail_after(20):
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, rate_limiter=limiter) as feed:
            await feed.subscribe([INFY], Mode.LTP)  # two messages: the bucket is empty now
            with trio.move_on_after(0.2) as scope:
                await feed.unsubscribe([INFY])
            assert scope.cancelled_caught
            assert feed.subscriptions == {INFY: Mode.LTP}
            await settle()
            assert simulator.subscriptions() == [{INFY: Mode.LTP}]


async def test_kite_subscribe_cancelled_at_the_send_lock_leaves_nothing(
    kite: tuple[KiteSimulator, str],
) -> None:
    _, url = kite
    limiter = TokenBucket(RateLimit(rate=1.0, burst=2))
    with trio.fail_after(20):
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, rate_limiter=limiter) as feed:
            await limiter.acquire(2)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(feed.subscribe, [INFY], Mode.LTP)  # holds the lock, waits for tokens
                await trio.sleep(0.05)
                with trio.move_on_after(0.1) as scope:
                    await feed.subscribe([RELIANCE], Mode.FULL)  # waits for the lock
                assert scope.cancelled_caught
            assert feed.subscriptions == {INFY: Mode.LTP}


async def test_kite_concurrent_subscribes_never_overshoot_the_cap(kite: tuple[KiteSimulator, str]) -> None:
    _, url = kite
    limiter = TokenBucket(RateLimit(rate=5.0, burst=1))
    refused: list[SubscriptionLimitError] = []

    async def subscribe(tokens: list[int]) -> None:
        try:
            await feed.subscribe(tokens, Mode.LTP)
        except SubscriptionLimitError as exc:
            refused.append(exc)

    with trio.fail_after(20):
        async with open_kite_feed(
            DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, max_instruments=3, rate_limiter=limiter
        ) as feed:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(subscribe, [INFY, RELIANCE])
                nursery.start_soon(subscribe, [256265, 2953217])
            assert len(feed.subscriptions) == 2
            assert len(refused) == 1


async def test_xts_subscribe_cancelled_while_waiting_for_another_request_leaves_nothing(
    xts: tuple[XtsSimulator, str],
) -> None:
    simulator, root = xts
    limiter = TokenBucket(RateLimit(rate=1.0, burst=1))
    with trio.fail_after(20):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root, rate_limiter=limiter) as feed:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(feed.subscribe, [XTS_RELIANCE], Mode.QUOTE)  # holds the feed's lock
                await trio.sleep(0.05)
                with trio.move_on_after(0.1) as scope:
                    await feed.subscribe([XTS_INFY], Mode.FULL)
                assert scope.cancelled_caught
            assert feed.subscriptions == {XTS_RELIANCE: Mode.QUOTE}
            held = {(seg, iid) for seg, iid, _ in simulator.subscriptions()}
            assert held == {XTS_RELIANCE}


async def test_xts_subscribe_cancelled_in_flight_records_only_what_the_server_confirmed(
    xts: tuple[XtsSimulator, str],
) -> None:
    """Cancelled at any point, a subscribe records nothing the server did not confirm; a request cut short
    that still reached the server is undone in the background, so the server ends up holding exactly what
    the feed records."""
    simulator, root = xts
    with trio.fail_after(30):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root) as feed:
            outcomes = set()
            for delay in (0.0, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.05):
                with trio.move_on_after(delay) as scope:
                    await feed.subscribe([XTS_INFY], Mode.FULL)
                outcomes.add((scope.cancelled_caught, XTS_INFY in feed.subscriptions))
                await trio.sleep(0.3)  # the background reconciliation, if any
                held = {(seg, iid) for seg, iid, _ in simulator.subscriptions()}
                assert held == set(feed.subscriptions)
                await feed.unsubscribe([XTS_INFY])
                assert simulator.subscriptions() == []
            assert (True, False) in outcomes  # some cancellations did land mid-request
            assert (False, True) in outcomes


# ---------------------------------------------------------------------------------------------------------
# A consumer that does not read


async def test_kite_feed_buffer_is_bounded_in_ticks(kite: tuple[KiteSimulator, str]) -> None:
    simulator, url = kite
    tokens = [instrument.kite_token for instrument in simulator.instruments]
    with trio.fail_after(20):
        async with open_kite_feed(
            DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, buffer=20, backoff=Backoff(jitter=0.0)
        ) as feed:
            await feed.subscribe(tokens, Mode.FULL)
            await trio.sleep(2)  # about 40 frames of 15 ticks go unread
            stats = feed.statistics()
            assert stats.connected
            assert stats.frames >= 2
            assert stats.queued_ticks <= 20 - 1 + len(tokens)  # the bound, plus the one frame over it
            assert stats.queued_batches <= 3
