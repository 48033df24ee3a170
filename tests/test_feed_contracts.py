"""The contracts of the standalone feeds' public methods, as a careless caller meets them: string modes,
bad arguments, cancellation at each await, concurrent requests, and a consumer that does not read.

The feeds run over their memory seam (`memory_peers`) under ``autojump_clock``: what reached the broker
is read exactly, off the wire (Kite's control messages) or the REST log (XTS), after
``trio.testing.wait_all_tasks_blocked()`` (nothing is left in flight then), with no settling sleeps.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, strategies as st
from memory_peers import KitePeer, PeerConnection, XtsPeer, XtsRest, ticks_of, xts_live

from trading_ws import (
    Backoff,
    Broker,
    ConfigurationError,
    Connected,
    Mode,
    RateLimit,
    SubscriptionLimitError,
    Tick,
)
from trading_ws._model import coerce_mode
from trading_ws._ratelimit import TokenBucket
from trading_ws.brokers.kite import ControlMessage, KiteFeed, decode_control, encode_frame, open_kite_feed
from trading_ws.brokers.xts import XtsFeed, open_xts_feed, subscription_body

API_KEY = "kite-api-key"
ACCESS_TOKEN = "kite-access-token-0123456789"
URL = "ws://127.0.0.1"
INFY = 408065
RELIANCE = 738561
NIFTY = 256265
APP_KEY = "xts-app-key"
SECRET_KEY = "xts-secret-key-0123456789"
ROOT = "http://127.0.0.1:3000"
XTS_RELIANCE = (1, 2885)
XTS_INFY = (1, 1594)


@pytest.fixture
def kite(nursery: trio.Nursery) -> KitePeer:
    return KitePeer(nursery, access_token=ACCESS_TOKEN)


@pytest.fixture
def xts(nursery: trio.Nursery) -> tuple[XtsRest, XtsPeer]:
    rest = XtsRest(SECRET_KEY)
    return rest, XtsPeer(nursery, rest)


@asynccontextmanager
async def kite_feed(peer: KitePeer, **options: Any) -> AsyncIterator[tuple[KiteFeed, PeerConnection]]:
    """An open Kite feed over `peer`, and its connection from the broker's side."""
    async with open_kite_feed(API_KEY, ACCESS_TOKEN, url=URL, connect=peer.connect, **options) as feed:
        yield feed, await peer.accepted()


@asynccontextmanager
async def xts_feed(
    parts: tuple[XtsRest, XtsPeer], **options: Any
) -> AsyncIterator[tuple[XtsFeed, PeerConnection]]:
    """An open XTS feed over the memory REST and socket `parts`, and its socket from the server's side."""
    rest, peer = parts
    async with open_xts_feed(
        APP_KEY, SECRET_KEY, root_url=ROOT, connect=peer.connect, http_transport=rest.transport, **options
    ) as feed:
        yield feed, await peer.accepted()


async def sent(connection: PeerConnection) -> list[ControlMessage]:
    """Every request the Kite feed sent on `connection` so far (once nothing is in flight), decoded."""
    await trio.testing.wait_all_tasks_blocked()
    return [decode_control(message) for message in connection.pending()]


def subscribe(token: int, mode: Mode) -> list[ControlMessage]:
    """The two messages of a Kite subscribe in `mode`."""
    return [ControlMessage("subscribe", (token,)), ControlMessage("mode", (token,), mode)]


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


async def test_kite_feed_takes_string_modes(autojump_clock: trio.abc.Clock, kite: KitePeer) -> None:
    async with kite_feed(kite) as (feed, connection):
        await feed.subscribe([INFY], "full")
        await feed.set_mode("ltp", [RELIANCE])
        assert feed.subscriptions == {INFY: Mode.FULL, RELIANCE: Mode.LTP}
        assert await sent(connection) == subscribe(INFY, Mode.FULL) + subscribe(RELIANCE, Mode.LTP)


BAD_MODES: list[Any] = ["FULL", "depth", "", 2, None, Mode, b"full"]


@pytest.mark.parametrize("mode", BAD_MODES, ids=repr)
async def test_kite_feed_refuses_a_bad_mode_before_recording_or_sending(
    autojump_clock: trio.abc.Clock, kite: KitePeer, mode: Any
) -> None:
    async with kite_feed(kite, backoff=Backoff(initial=1.0, jitter=0.0)) as (feed, connection):
        with pytest.raises(ConfigurationError):
            await feed.subscribe([INFY], mode)
        with pytest.raises(ConfigurationError):
            await feed.set_mode(mode, [INFY])
        assert feed.subscriptions == {}
        assert await sent(connection) == []
        # The feed is not poisoned: it subscribes, and a reconnect restores exactly that.
        await feed.subscribe([INFY], Mode.LTP)
        await connection.drop()
        again = await kite.accepted()
        assert await sent(again) == subscribe(INFY, Mode.LTP)


@pytest.mark.parametrize("mode", BAD_MODES, ids=repr)
async def test_xts_feed_refuses_a_bad_mode_before_recording_or_sending(
    autojump_clock: trio.abc.Clock, xts: tuple[XtsRest, XtsPeer], mode: Any
) -> None:
    rest, _ = xts
    async with xts_feed(xts) as (feed, _):
        with pytest.raises(ConfigurationError):
            await feed.subscribe([XTS_RELIANCE], mode)
        assert feed.subscriptions == {}
        assert rest.requests == [("POST", "/auth/login")]
        await feed.subscribe([XTS_RELIANCE], "quote")
        assert feed.subscriptions == {XTS_RELIANCE: Mode.QUOTE}
        assert rest.bodies[-1] == subscription_body([XTS_RELIANCE], 1501)


@pytest.mark.parametrize(
    "tokens", [408065, "408065", b"ab", None, [True], [-1], [2**32], [1.5], [None], [[1, 2]], [{}]], ids=repr
)
async def test_kite_feed_refuses_bad_tokens(
    autojump_clock: trio.abc.Clock, kite: KitePeer, tokens: Any
) -> None:
    async with kite_feed(kite) as (feed, connection):
        with pytest.raises(ConfigurationError):
            await feed.subscribe(tokens, Mode.LTP)
        assert feed.subscriptions == {}
        assert await sent(connection) == []


@pytest.mark.parametrize(
    "instruments",
    [None, "1,2885", [[1, 2885]], [{}], [(1,)], [(1, 2885, 3)], [(0, 5)], [(1, True)]],
    ids=repr,
)
async def test_xts_feed_refuses_bad_instruments(
    autojump_clock: trio.abc.Clock, xts: tuple[XtsRest, XtsPeer], instruments: Any
) -> None:
    rest, _ = xts
    async with xts_feed(xts) as (feed, _):
        with pytest.raises(ConfigurationError):
            await feed.subscribe(instruments, Mode.LTP)
        assert feed.subscriptions == {}
        assert rest.requests == [("POST", "/auth/login")]


# ---------------------------------------------------------------------------------------------------------
# Constructor arguments


GOOD_KITE: dict[str, Any] = {"api_key": API_KEY, "access_token": ACCESS_TOKEN}
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
    ("connect", "tcp"),
    ("connect", 443),
]


@pytest.mark.parametrize(("name", "value"), BAD_KITE_ARGS, ids=[f"{n}={v!r}" for n, v in BAD_KITE_ARGS])
async def test_open_kite_feed_validates_every_argument_up_front(name: str, value: Any) -> None:
    arguments = {**GOOD_KITE, "url": "ws://127.0.0.1:9", name: value}
    with pytest.raises(ConfigurationError) as caught:
        async with open_kite_feed(**arguments):
            pytest.fail("must not open")
    assert "pw-S3cret" not in str(caught.value)  # a password is never echoed
    assert ACCESS_TOKEN not in str(caught.value)


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
    ("connect", "tcp"),
    ("http_transport", "mock"),
]


@pytest.mark.parametrize(("name", "value"), BAD_XTS_ARGS, ids=[f"{n}={v!r}" for n, v in BAD_XTS_ARGS])
async def test_open_xts_feed_validates_every_argument_up_front(name: str, value: Any) -> None:
    arguments: dict[str, Any] = {"root_url": "http://127.0.0.1:9", name: value}
    with pytest.raises(ConfigurationError) as caught:
        async with open_xts_feed(APP_KEY, SECRET_KEY, **arguments):
            pytest.fail("must not open")
    assert "pw@" not in str(caught.value)


# ---------------------------------------------------------------------------------------------------------
# Cancellation: all or nothing


async def test_kite_subscribe_cancelled_at_the_rate_limiter_leaves_nothing(
    autojump_clock: trio.abc.Clock, kite: KitePeer
) -> None:
    limiter = TokenBucket(RateLimit(rate=1.0, burst=1))
    async with kite_feed(kite, rate_limiter=limiter) as (feed, connection):
        await limiter.acquire()  # the bucket is empty: the next request waits a second
        with trio.move_on_after(0.2) as scope:
            await feed.subscribe([INFY], Mode.FULL)
        assert scope.cancelled_caught
        assert feed.subscriptions == {}
        assert await sent(connection) == []
        # Nothing half-done blocks a retry: the same request works in full.
        await feed.subscribe([INFY], Mode.FULL)
        assert feed.subscriptions == {INFY: Mode.FULL}
        assert await sent(connection) == subscribe(INFY, Mode.FULL)


async def test_kite_unsubscribe_cancelled_at_the_rate_limiter_leaves_the_subscription(
    autojump_clock: trio.abc.Clock, kite: KitePeer
) -> None:
    limiter = TokenBucket(RateLimit(rate=1.0, burst=2))
    async with kite_feed(kite, rate_limiter=limiter) as (feed, connection):
        await feed.subscribe([INFY], Mode.LTP)  # two messages: the bucket is empty now
        with trio.move_on_after(0.2) as scope:
            await feed.unsubscribe([INFY])
        assert scope.cancelled_caught
        assert feed.subscriptions == {INFY: Mode.LTP}
        assert await sent(connection) == subscribe(INFY, Mode.LTP)


async def test_kite_subscribe_cancelled_at_the_send_lock_leaves_nothing(
    autojump_clock: trio.abc.Clock, kite: KitePeer
) -> None:
    limiter = TokenBucket(RateLimit(rate=1.0, burst=2))
    async with kite_feed(kite, rate_limiter=limiter) as (feed, connection):
        await limiter.acquire(2)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed.subscribe, [INFY], Mode.LTP)  # holds the lock, waits for tokens
            await trio.testing.wait_all_tasks_blocked()
            with trio.move_on_after(0.1) as scope:
                await feed.subscribe([RELIANCE], Mode.FULL)  # waits for the lock
            assert scope.cancelled_caught
        assert feed.subscriptions == {INFY: Mode.LTP}
        assert await sent(connection) == subscribe(INFY, Mode.LTP)


async def test_kite_concurrent_subscribes_never_overshoot_the_cap(
    autojump_clock: trio.abc.Clock, kite: KitePeer
) -> None:
    limiter = TokenBucket(RateLimit(rate=5.0, burst=1))
    refused: list[SubscriptionLimitError] = []

    async def subscribe_or_refused(tokens: list[int]) -> None:
        try:
            await feed.subscribe(tokens, Mode.LTP)
        except SubscriptionLimitError as exc:
            refused.append(exc)

    async with kite_feed(kite, max_instruments=3, rate_limiter=limiter) as (feed, connection):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(subscribe_or_refused, [INFY, RELIANCE])
            nursery.start_soon(subscribe_or_refused, [256265, 2953217])
        assert len(refused) == 1
        winner = tuple(feed.subscriptions)  # whichever request took the lock first
        assert winner in ((INFY, RELIANCE), (256265, 2953217))
        assert feed.subscriptions == dict.fromkeys(winner, Mode.LTP)
        assert await sent(connection) == [
            ControlMessage("subscribe", winner),
            ControlMessage("mode", winner, Mode.LTP),
        ]


async def test_kite_instrument_limit_is_checked_before_sending(
    autojump_clock: trio.abc.Clock, kite: KitePeer
) -> None:
    async with kite_feed(kite, max_instruments=3) as (feed, connection):
        await feed.subscribe([1, 2, 3], Mode.LTP)
        with pytest.raises(SubscriptionLimitError):
            await feed.subscribe([4], Mode.LTP)
        await feed.subscribe([1, 2], Mode.FULL)  # already held: no new instruments
        assert feed.subscriptions == {1: Mode.FULL, 2: Mode.FULL, 3: Mode.LTP}
        assert await sent(connection) == [
            ControlMessage("subscribe", (1, 2, 3)),
            ControlMessage("mode", (1, 2, 3), Mode.LTP),
            ControlMessage("subscribe", (1, 2)),
            ControlMessage("mode", (1, 2), Mode.FULL),
        ]


async def test_xts_subscribe_cancelled_while_waiting_for_another_request_leaves_nothing(
    autojump_clock: trio.abc.Clock, xts: tuple[XtsRest, XtsPeer]
) -> None:
    rest, _ = xts
    async with xts_feed(xts) as (feed, _):
        rest.hold = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed.subscribe, [XTS_RELIANCE], Mode.QUOTE)  # holds the feed's lock
            await trio.testing.wait_all_tasks_blocked()  # its request waits for the answer
            with trio.move_on_after(0.1) as scope:
                await feed.subscribe([XTS_INFY], Mode.FULL)
            assert scope.cancelled_caught
            rest.hold.set()
        assert feed.subscriptions == {XTS_RELIANCE: Mode.QUOTE}
        assert list(rest.subscribed) == [(*XTS_RELIANCE, 1501)]
        assert rest.requests == [("POST", "/auth/login"), ("POST", "/instruments/subscription")]


async def test_xts_subscribe_cancelled_before_its_request_sends_nothing(
    autojump_clock: trio.abc.Clock, xts: tuple[XtsRest, XtsPeer]
) -> None:
    rest, _ = xts
    limiter = TokenBucket(RateLimit(rate=1.0, burst=1))
    async with xts_feed(xts, rate_limiter=limiter) as (feed, _):
        await limiter.acquire()  # every REST request now waits a second for a token
        with trio.move_on_after(0.5) as scope:
            await feed.subscribe([XTS_INFY], Mode.FULL)
        assert scope.cancelled_caught
        assert feed.subscriptions == {}
        await trio.testing.wait_all_tasks_blocked()
        assert rest.requests == [("POST", "/auth/login")]


async def test_xts_subscribe_cancelled_in_flight_is_undone_on_the_server(
    autojump_clock: trio.abc.Clock, xts: tuple[XtsRest, XtsPeer]
) -> None:
    """Cancelled while its request is in flight, a subscribe records nothing the server did not confirm;
    the request reached the server, so the feed undoes it in the background at once, and the server ends
    up holding exactly what the feed records."""
    rest, _ = xts
    async with xts_feed(xts) as (feed, _):
        rest.hold = trio.Event()
        with trio.move_on_after(1.0) as scope:
            await feed.subscribe([XTS_INFY], Mode.FULL)  # the server takes it; the answer never comes
        assert scope.cancelled_caught
        assert feed.subscriptions == {}
        assert list(rest.subscribed) == [(*XTS_INFY, 1502)]
        rest.hold = None
        await trio.testing.wait_all_tasks_blocked()  # the background reconciliation ran
        assert rest.subscribed == {}
        assert rest.requests[-1] == ("PUT", "/instruments/subscription")
        assert rest.bodies[-1] == subscription_body([XTS_INFY], 1502)
        # Nothing half-done blocks a retry.
        await feed.subscribe([XTS_INFY], Mode.FULL)
        assert feed.subscriptions == {XTS_INFY: Mode.FULL}
        assert list(rest.subscribed) == [(*XTS_INFY, 1502)]


# ---------------------------------------------------------------------------------------------------------
# A consumer that does not read


def kite_ticks(tokens: list[int], price: float) -> bytes:
    return encode_frame([Tick(Broker.KITE, token, Mode.LTP, True, price) for token in tokens])


async def test_kite_feed_buffer_is_bounded_in_ticks(autojump_clock: trio.abc.Clock, kite: KitePeer) -> None:
    """With `buffer` ticks waiting, the reader stops reading; one frame is never split, so the bound is
    the buffer plus one frame. The reader waiting for the consumer is not silence to the watchdog."""
    tokens = list(range(1, 16))  # frames of 15 ticks
    async with kite_feed(kite, buffer=20, watchdog_timeout=5.0) as (feed, connection):
        for n in range(40):
            await connection.ws.send_message(kite_ticks(tokens, 100.0 + n))
        await trio.testing.wait_all_tasks_blocked()
        stats = feed.statistics()
        assert (stats.queued_batches, stats.queued_ticks) == (3, 1 + 15 + 15)  # Connected, 2 frames
        await trio.sleep(60)  # far past the watchdog: the reader waits for the consumer, not the broker
        assert feed.statistics().reconnects == 0
        batches = [await feed.receive_batch() for _ in range(41)]
        assert [type(e) for e in batches[0]] == [Connected]
        assert [ticks_of(b)[0].last_price for b in batches[1:]] == [100.0 + n for n in range(40)]


async def test_xts_subscribe_from_the_consumer_never_waits_for_the_consumer(
    autojump_clock: trio.abc.Clock, xts: tuple[XtsRest, XtsPeer]
) -> None:
    """A full queue holds the reader back, never the consumer's own subscribe: its snapshots are queued
    past the bound, ahead of the live message the reader holds."""
    async with xts_feed(xts, buffer=2) as (feed, connection):
        await feed.subscribe([XTS_INFY], Mode.QUOTE)  # Connected and the snapshot: the queue is full
        for n in range(3):
            await connection.ws.send_message(xts_live(XTS_INFY, Mode.QUOTE, 101.0 + n))
        await trio.testing.wait_all_tasks_blocked()
        assert feed.statistics().queued_batches == 2  # the reader waits with the first live message
        await feed.subscribe([XTS_RELIANCE], Mode.LTP)  # the same task: must not deadlock
        assert feed.statistics().queued_batches == 3
        batches = [await feed.receive_batch() for _ in range(6)]
        assert [type(e) for e in batches[0]] == [Connected]
        assert [(t.instrument_token, t.last_price) for b in batches[1:] for t in ticks_of(b)] == [
            (XTS_INFY[1], 100.0),
            (XTS_RELIANCE[1], 100.0),
            (XTS_INFY[1], 101.0),
            (XTS_INFY[1], 102.0),
            (XTS_INFY[1], 103.0),
        ]
