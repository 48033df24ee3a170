"""Both feeds with no socket at all: the `connect=` seam (and the XTS feed's `http_transport=`) over
`trio.testing.memory_stream_pair`, the far end served by trio-websocket (`memory_peers`), under
``autojump_clock``.

Every assertion is exact: the events in order, the messages on the wire, the trio time of every connection
attempt (so the backoff delays are the clock's, not a tolerance), with no sleep-and-poll anywhere.
"""

from __future__ import annotations

import ssl
import traceback
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
import trustme
from memory_peers import KitePeer, PeerConnection, XtsPeer, XtsRest, ticks_of, xts_live

from trading_ws import (
    AuthenticationError,
    Backoff,
    Broker,
    BrokerError,
    BrokerMessage,
    ConfigurationError,
    Connected,
    ConnectError,
    ConnectTimeout,
    Disconnected,
    Event,
    FeedClosedError,
    Mode,
    Ohlc,
    RateLimitedError,
    Reconnecting,
    Resubscribed,
    Tick,
    TLSError,
)
from trading_ws.brokers.kite import ControlMessage, decode_control, encode_frame, open_kite_feed
from trading_ws.brokers.xts import (
    LoginRefusedError,
    encode_event,
    open_xts_feed,
    subscription_body,
)

API_KEY = "kite-api-key"
ACCESS_TOKEN = "kite-access-token-0123456789"
URL = "ws://127.0.0.1"
INFY = 408065
RELIANCE = 738561
NIFTY = 256265
#: Delays 1, 2, 4, 8 s: every attempt's time is a sum of exact binary fractions.
NO_JITTER = Backoff(initial=1.0, factor=2.0, cap=8.0, jitter=0.0)

APP_KEY = "xts-app-key"
SECRET_KEY = "xts-secret-key-0123456789"
ROOT = "http://127.0.0.1:3000"
XTS_RELIANCE = (1, 2885)
XTS_INFY = (1, 1594)


async def events(feed: AsyncIterator[Event], count: int) -> list[Event]:
    """The next `count` events of `feed`."""
    return [await anext(feed) for _ in range(count)]


def kinds(batch: list[Event]) -> list[type]:
    return [type(event) for event in batch]


async def requests(connection: PeerConnection, count: int) -> list[ControlMessage]:
    """The next `count` requests a Kite feed sent on `connection`, decoded."""
    return [decode_control(await connection.receive()) for _ in range(count)]


# ---------------------------------------------------------------------------------------------------------
# Kite


async def test_kite_feed_runs_with_no_socket(autojump_clock: trio.abc.Clock, nursery: trio.Nursery) -> None:
    peer = KitePeer(nursery, access_token=ACCESS_TOKEN)
    async with open_kite_feed(API_KEY, ACCESS_TOKEN, url=URL, connect=peer.connect) as feed:
        connection = await peer.accepted()
        assert peer.hosts == [("127.0.0.1", 80)]
        assert connection.query == {"api_key": API_KEY, "access_token": ACCESS_TOKEN}
        assert kinds(await events(feed, 1)) == [Connected]
        await feed.subscribe([INFY], Mode.QUOTE)
        await feed.subscribe([RELIANCE], "ltp")
        assert await requests(connection, 4) == [
            ControlMessage("subscribe", (INFY,)),
            ControlMessage("mode", (INFY,), Mode.QUOTE),
            ControlMessage("subscribe", (RELIANCE,)),
            ControlMessage("mode", (RELIANCE,), Mode.LTP),
        ]
        quote = Tick(
            Broker.KITE,
            INFY,
            Mode.QUOTE,
            True,
            1510.25,
            last_quantity=10,
            average_price=1509.5,
            volume=1000,
            total_buy_quantity=300,
            total_sell_quantity=200,
            ohlc=Ohlc(1500.0, 1520.0, 1490.0, 1505.0),
        )
        ltp = Tick(Broker.KITE, RELIANCE, Mode.LTP, True, 2890.05)
        await connection.ws.send_message(encode_frame([quote, ltp]))
        batch = await feed.receive_batch()
        assert [(t.instrument_token, t.mode, t.last_price) for t in ticks_of(batch)] == [
            (INFY, Mode.QUOTE, 1510.25),
            (RELIANCE, Mode.LTP, 2890.05),
        ]
        got = ticks_of(batch)[0]
        assert (got.volume, got.ohlc, got.segment) == (
            1000,
            Ohlc(1500.0, 1520.0, 1490.0, 1505.0),
            INFY & 0xFF,
        )
        assert len({t.received_at for t in ticks_of(batch)}) == 1  # one frame, one batch
        stats = feed.statistics()
        assert (stats.frames, stats.ticks, stats.connects, stats.reconnects) == (1, 2, 1, 0)
        assert trio.current_time() == 0.0  # nothing waited for the clock
    assert peer.attempts == [0.0]
    with pytest.raises(trio.EndOfChannel):  # the feed closed the connection on its way out
        await connection.receive()


def check_two_refusals_then_back(seen: list[Event], attempts: list[float]) -> None:
    """A dropped connection whose next two handshakes are refused (HTTP 503), then back: the status
    events in order, the exact backoff (1, 2, 4 s) and when each attempt was made on the virtual clock."""
    assert kinds(seen) == [
        Disconnected,
        Reconnecting,
        Disconnected,
        Reconnecting,
        Disconnected,
        Reconnecting,
        Connected,
        Resubscribed,
    ]
    assert [(e.attempt, e.delay) for e in seen if isinstance(e, Reconnecting)] == [
        (1, 1.0),
        (2, 2.0),
        (3, 4.0),
    ]
    assert [e.reason for e in seen if isinstance(e, Disconnected)] == [
        "connection closed (code 1006)",
        "broker refused the WebSocket handshake (HTTP 503)",
        "broker refused the WebSocket handshake (HTTP 503)",
    ]
    assert attempts == [0.0, 1.0, 3.0, 7.0]


async def test_kite_dropped_stream_reconnects_with_exact_backoff(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    peer = KitePeer(nursery, access_token=ACCESS_TOKEN)
    async with open_kite_feed(
        API_KEY, ACCESS_TOKEN, url=URL, connect=peer.connect, backoff=NO_JITTER
    ) as feed:
        first = await peer.accepted()
        await feed.subscribe([INFY], Mode.FULL)
        await feed.subscribe([NIFTY], Mode.QUOTE)
        await requests(first, 4)
        assert kinds(await events(feed, 1)) == [Connected]
        peer.refusals += [503, 503]  # the next two handshakes are refused
        await first.drop()
        seen = await events(feed, 8)
        check_two_refusals_then_back(seen, peer.attempts)
        assert peer.refused == [503, 503]
        resubscribed = seen[-1]
        assert isinstance(resubscribed, Resubscribed)
        assert resubscribed.instruments == 2
        second = await peer.accepted()
        assert second.opened_at == 7.0
        assert await requests(second, 4) == [
            ControlMessage("subscribe", (INFY,)),
            ControlMessage("mode", (INFY,), Mode.FULL),
            ControlMessage("subscribe", (NIFTY,)),
            ControlMessage("mode", (NIFTY,), Mode.QUOTE),
        ]
        await second.ws.send_message(encode_frame([Tick(Broker.KITE, NIFTY, Mode.LTP, False, 24000.5)]))
        assert [(t.instrument_token, t.last_price) for t in ticks_of(await feed.receive_batch())] == [
            (NIFTY, 24000.5)
        ]
        stats = feed.statistics()
        assert (stats.connects, stats.reconnects, stats.subscribed) == (2, 1, 2)


async def test_kite_rate_limited_handshakes_back_off_exactly(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    """HTTP 429 on reconnecting is one more failed attempt (the backoff grows); on the very first
    connection it is `RateLimitedError`, raised where the feed is opened, with no retry."""
    peer = KitePeer(nursery, access_token=ACCESS_TOKEN)
    peer.refusals.append(429)
    with pytest.raises(RateLimitedError):
        async with open_kite_feed(API_KEY, ACCESS_TOKEN, url=URL, connect=peer.connect, backoff=NO_JITTER):
            pytest.fail("must not connect")  # pragma: no cover
    assert (peer.attempts, peer.refused) == ([0.0], [429])
    async with open_kite_feed(
        API_KEY, ACCESS_TOKEN, url=URL, connect=peer.connect, backoff=NO_JITTER
    ) as feed:
        first = await peer.accepted()
        assert kinds(await events(feed, 1)) == [Connected]
        peer.refusals += [429, 429]
        await first.drop()
        seen = await events(feed, 7)
        assert kinds(seen) == [Disconnected, Reconnecting] * 3 + [Connected]
        assert [e.delay for e in seen if isinstance(e, Reconnecting)] == [1.0, 2.0, 4.0]
        assert [e.reason for e in seen if isinstance(e, Disconnected)][1:] == [
            "broker refused the connection: too many (HTTP 429)",
        ] * 2
        assert peer.attempts[1:] == [0.0, 1.0, 3.0, 7.0]


async def test_kite_silent_stream_is_dead_after_exactly_the_watchdog(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    peer = KitePeer(nursery, access_token=ACCESS_TOKEN)
    async with open_kite_feed(
        API_KEY, ACCESS_TOKEN, url=URL, connect=peer.connect, backoff=NO_JITTER, watchdog_timeout=5.0
    ) as feed:
        connection = await peer.accepted()
        assert kinds(await events(feed, 1)) == [Connected]
        await trio.sleep(3.0)
        await connection.ws.send_message(b"\x00")  # a heartbeat at t=3 restarts the watchdog
        lost, reconnecting, connected = await events(feed, 3)
        assert isinstance(lost, Disconnected)
        assert lost.reason == "no data for 5 s: connection presumed dead"
        assert isinstance(reconnecting, Reconnecting)
        assert isinstance(connected, Connected)
        assert peer.attempts == [0.0, 9.0]  # dead at 3 + 5, then the 1 s delay
        assert feed.statistics().heartbeats == 1


async def test_kite_heartbeats_keep_an_idle_connection_alive(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    """Kite's one-byte heartbeat, once a second, is all an idle connection gets: it keeps the watchdog
    quiet however long nothing is subscribed."""
    peer = KitePeer(nursery, access_token=ACCESS_TOKEN)
    async with open_kite_feed(
        API_KEY, ACCESS_TOKEN, url=URL, connect=peer.connect, backoff=NO_JITTER, watchdog_timeout=5.0
    ) as feed:
        connection = await peer.accepted()
        assert kinds(await events(feed, 1)) == [Connected]
        for _ in range(20):
            await trio.sleep(1.0)
            await connection.ws.send_message(b"\x00")
        await trio.sleep(4.9)  # just within the watchdog after the last one
        stats = feed.statistics()
        assert (stats.connected, stats.reconnects, stats.heartbeats, stats.frames) == (True, 0, 20, 20)
        assert peer.attempts == [0.0]


async def test_kite_refused_credentials_fail_the_open_without_a_retry(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    peer = KitePeer(nursery, access_token="another-token")
    with pytest.raises(AuthenticationError) as caught:
        async with open_kite_feed(API_KEY, ACCESS_TOKEN, url=URL, connect=peer.connect, backoff=NO_JITTER):
            pytest.fail("refused")  # pragma: no cover
    assert str(caught.value) == "broker refused the credentials (HTTP 403)"
    assert ACCESS_TOKEN not in "".join(traceback.format_exception(caught.value))
    assert peer.attempts == [0.0]
    assert peer.refused == [403]


async def test_kite_credentials_refused_mid_session_end_the_feed(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    peer = KitePeer(nursery, access_token=ACCESS_TOKEN)
    async with open_kite_feed(
        API_KEY, ACCESS_TOKEN, url=URL, connect=peer.connect, backoff=NO_JITTER
    ) as feed:
        connection = await peer.accepted()
        assert kinds(await events(feed, 1)) == [Connected]
        peer.access_token = "tomorrows-token"
        await connection.drop()
        seen: list[Event] = []
        with pytest.raises(AuthenticationError, match="HTTP 403"):
            async for event in feed:
                seen.append(event)
        assert kinds(seen) == [Disconnected, Reconnecting, Disconnected]
        assert peer.attempts == [0.0, 1.0]  # one refusal: no retry storm
        with pytest.raises(FeedClosedError):
            await feed.subscribe([INFY])
    assert trio.current_time() == 1.0


async def test_kite_token_provider_renews_at_once_after_a_refusal(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    peer = KitePeer(nursery, access_token=ACCESS_TOKEN)
    calls: list[float] = []

    async def provider() -> str:
        calls.append(trio.current_time())
        return "tomorrows-token"

    async with open_kite_feed(
        API_KEY, ACCESS_TOKEN, url=URL, connect=peer.connect, backoff=NO_JITTER, token_provider=provider
    ) as feed:
        connection = await peer.accepted()
        await feed.subscribe([INFY], Mode.LTP)
        await requests(connection, 2)
        assert kinds(await events(feed, 1)) == [Connected]
        peer.access_token = "tomorrows-token"
        await connection.drop()
        # The refused attempt is renewed at once and is not reported: its renewed twin's outcome counts.
        assert kinds(await events(feed, 4)) == [Disconnected, Reconnecting, Connected, Resubscribed]
        assert peer.attempts == [0.0, 1.0, 1.0]
        assert calls == [1.0]
        renewed = await peer.accepted()
        assert renewed.query["access_token"] == "tomorrows-token"
        assert await requests(renewed, 2) == [
            ControlMessage("subscribe", (INFY,)),
            ControlMessage("mode", (INFY,), Mode.LTP),
        ]


# ---------------------------------------------------------------------------------------------------------
# The seam's own contract: validated up front, its errors mapped and scrubbed, TLS over it


async def test_a_connect_that_is_not_callable_is_refused_up_front() -> None:
    with pytest.raises(ConfigurationError, match="connect must be an async function"):
        async with open_kite_feed(API_KEY, ACCESS_TOKEN, url=URL, connect="tcp"):  # type: ignore[arg-type]
            pytest.fail("refused")  # pragma: no cover
    with pytest.raises(ConfigurationError, match="connect must be an async function"):
        async with open_xts_feed(APP_KEY, SECRET_KEY, root_url=ROOT, connect=42):  # type: ignore[arg-type]
            pytest.fail("refused")  # pragma: no cover
    with pytest.raises(ConfigurationError, match="http_transport"):
        async with open_xts_feed(
            APP_KEY,
            SECRET_KEY,
            root_url=ROOT,
            http_transport=object(),  # type: ignore[arg-type]
        ):
            pytest.fail("refused")  # pragma: no cover


async def test_a_connect_that_returns_no_stream_is_a_configuration_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def returns_nothing(host: str, port: int) -> trio.abc.Stream:
        return None  # type: ignore[return-value]

    def not_async(host: str, port: int) -> trio.abc.Stream:
        return trio.testing.memory_stream_pair()[0]

    with pytest.raises(ConfigurationError, match=r"connect returned NoneType, not a trio\.abc\.Stream"):
        async with open_kite_feed(API_KEY, ACCESS_TOKEN, url=URL, connect=returns_nothing):
            pytest.fail("refused")  # pragma: no cover
    with pytest.raises(ConfigurationError, match=r"returned StapledStream \(not awaitable\)"):
        async with open_kite_feed(API_KEY, ACCESS_TOKEN, url=URL, connect=not_async):  # type: ignore[arg-type]
            pytest.fail("refused")  # pragma: no cover


async def test_a_connect_error_is_mapped_and_scrubbed(autojump_clock: trio.abc.Clock) -> None:
    async def unreachable(host: str, port: int) -> trio.abc.Stream:
        raise OSError(113, "No route to host")

    async def leaky(host: str, port: int) -> trio.abc.Stream:
        raise OSError(f"proxy refused /?access_token={ACCESS_TOKEN}")

    with pytest.raises(ConnectError) as caught:
        async with open_kite_feed(API_KEY, ACCESS_TOKEN, url=URL, connect=unreachable):
            pytest.fail("refused")  # pragma: no cover
    assert str(caught.value) == "cannot connect to 127.0.0.1:80: OSError: [Errno 113] No route to host"
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(ConnectError) as caught:
        async with open_kite_feed(API_KEY, ACCESS_TOKEN, url=URL, connect=leaky):
            pytest.fail("refused")  # pragma: no cover
    assert ACCESS_TOKEN not in "".join(traceback.format_exception(caught.value))
    assert "***" in str(caught.value)
    assert caught.value.__cause__ is None


async def test_a_connect_that_hangs_times_out_at_exactly_connect_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def hangs(host: str, port: int) -> trio.abc.Stream:
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    with pytest.raises(ConnectTimeout, match="no WebSocket handshake within 7 s"):
        async with open_kite_feed(API_KEY, ACCESS_TOKEN, url=URL, connect=hangs, connect_timeout=7.0):
            pytest.fail("refused")  # pragma: no cover
    assert trio.current_time() == 7.0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_context(ca: trustme.CA, host: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host).configure_cert(context)
    return context


async def test_wss_runs_tls_over_the_connectors_stream(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery, ca: trustme.CA
) -> None:
    """TLS stays the feed's: its handshake runs first over whatever stream `connect` gave, verified with
    the feed's context; a certificate the feed does not trust fails the open at once with TLSError."""
    peer = KitePeer(nursery, access_token=ACCESS_TOKEN, tls=_server_context(ca, "ws.kite.test"))
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    async with open_kite_feed(
        API_KEY, ACCESS_TOKEN, url="wss://ws.kite.test", connect=peer.connect, ssl_context=trusting
    ) as feed:
        connection = await peer.accepted()
        assert peer.hosts == [("ws.kite.test", 443)]
        await feed.subscribe([INFY], Mode.LTP)
        assert await requests(connection, 2) == [
            ControlMessage("subscribe", (INFY,)),
            ControlMessage("mode", (INFY,), Mode.LTP),
        ]
    untrusting = ssl.create_default_context()
    trustme.CA().configure_trust(untrusting)
    with pytest.raises(TLSError, match="certificate verify failed") as caught:
        async with open_kite_feed(
            API_KEY, ACCESS_TOKEN, url="wss://ws.kite.test", connect=peer.connect, ssl_context=untrusting
        ):
            pytest.fail("refused")  # pragma: no cover
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    assert peer.attempts == [0.0, 0.0]
    wrong_host = KitePeer(nursery, access_token=ACCESS_TOKEN, tls=_server_context(ca, "elsewhere.test"))
    with pytest.raises(TLSError, match="Hostname mismatch"):
        async with open_kite_feed(
            API_KEY, ACCESS_TOKEN, url="wss://ws.kite.test", connect=wrong_host.connect, ssl_context=trusting
        ):
            pytest.fail("refused")  # pragma: no cover


# ---------------------------------------------------------------------------------------------------------
# XTS: the REST session over httpx.MockTransport, the Socket.IO connection over memory streams


def xts_parts(nursery: trio.Nursery) -> tuple[XtsRest, XtsPeer]:
    rest = XtsRest(SECRET_KEY)
    return rest, XtsPeer(nursery, rest)


async def test_xts_feed_runs_with_no_socket(autojump_clock: trio.abc.Clock, nursery: trio.Nursery) -> None:
    rest, peer = xts_parts(nursery)
    async with open_xts_feed(
        APP_KEY, SECRET_KEY, root_url=ROOT, connect=peer.connect, http_transport=rest.transport
    ) as feed:
        connection = await peer.accepted()
        assert peer.hosts == [("127.0.0.1", 3000)]
        assert connection.query["token"] == "token-1"
        assert connection.query["userID"] == "USER1"
        assert (connection.query["EIO"], connection.query["broadcastMode"]) == ("3", "Full")
        assert kinds(await events(feed, 1)) == [Connected]
        await feed.subscribe([XTS_RELIANCE, XTS_INFY], Mode.QUOTE)
        assert rest.bodies[-1] == subscription_body([XTS_RELIANCE, XTS_INFY], 1501)
        snapshot = await feed.receive_batch()  # the subscribe answer's snapshots: one batch, first
        assert [(t.segment, t.instrument_token, t.mode, t.last_price) for t in ticks_of(snapshot)] == [
            (*XTS_RELIANCE, Mode.QUOTE, 100.0),
            (*XTS_INFY, Mode.QUOTE, 100.0),
        ]
        await connection.ws.send_message(xts_live(XTS_INFY, Mode.QUOTE, 1601.5))
        assert [(t.instrument_token, t.last_price) for t in ticks_of(await feed.receive_batch())] == [
            (XTS_INFY[1], 1601.5)
        ]
        stats = feed.statistics()
        assert (stats.snapshots, stats.ticks, stats.logins, stats.remaining_subscriptions) == (2, 3, 1, 48)
        assert trio.current_time() == 0.0
    assert rest.requests == [
        ("POST", "/auth/login"),
        ("POST", "/instruments/subscription"),
        ("DELETE", "/auth/logout"),
    ]
    assert rest.bodies[0] == {"appKey": APP_KEY, "secretKey": SECRET_KEY, "source": "WEBAPI"}


async def test_xts_live_ticks_that_overtake_the_snapshot_are_held_back(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    rest, peer = xts_parts(nursery)
    async with open_xts_feed(
        APP_KEY, SECRET_KEY, root_url=ROOT, connect=peer.connect, http_transport=rest.transport
    ) as feed:
        connection = await peer.accepted()
        assert kinds(await events(feed, 1)) == [Connected]
        rest.hold = trio.Event()
        async with trio.open_nursery() as requests_nursery:
            requests_nursery.start_soon(feed.subscribe, [XTS_INFY], Mode.LTP)
            await trio.testing.wait_all_tasks_blocked()  # the subscribe request waits for its answer
            await connection.ws.send_message(xts_live(XTS_INFY, Mode.LTP, 1602.0))
            await trio.testing.wait_all_tasks_blocked()  # the feed read the live tick and held it back
            assert feed.statistics().frames == 3  # the open packet, 40, the live tick
            assert feed.statistics().queued_batches == 0
            rest.hold.set()
        batch = await feed.receive_batch()
        assert [t.last_price for t in ticks_of(batch)] == [100.0, 1602.0]  # the snapshot first


async def test_xts_dropped_socket_reconnects_with_exact_backoff_and_no_rest(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    """Subscriptions belong to the session, not the socket: a plain reconnect with the same token makes
    no REST call."""
    rest, peer = xts_parts(nursery)
    async with open_xts_feed(
        APP_KEY,
        SECRET_KEY,
        root_url=ROOT,
        connect=peer.connect,
        http_transport=rest.transport,
        backoff=NO_JITTER,
    ) as feed:
        first = await peer.accepted()
        await feed.subscribe([XTS_RELIANCE], Mode.FULL)
        assert kinds(await events(feed, 2)) == [Connected, Tick]
        peer.refusals += [503, 503]
        await first.drop()
        seen = await events(feed, 8)
        check_two_refusals_then_back(seen, peer.attempts)
        second = await peer.accepted()
        assert second.query["token"] == "token-1"
        await second.ws.send_message(xts_live(XTS_RELIANCE, Mode.FULL, 2900.0))
        assert [t.last_price for t in ticks_of(await feed.receive_batch())] == [2900.0]
        assert rest.requests == [("POST", "/auth/login"), ("POST", "/instruments/subscription")]
        stats = feed.statistics()
        assert (stats.connects, stats.reconnects, stats.logins) == (2, 1, 1)


async def test_xts_refused_token_logs_in_once_and_subscribes_again(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    rest, peer = xts_parts(nursery)
    async with open_xts_feed(
        APP_KEY,
        SECRET_KEY,
        root_url=ROOT,
        connect=peer.connect,
        http_transport=rest.transport,
        backoff=NO_JITTER,
    ) as feed:
        first = await peer.accepted()
        await feed.subscribe([XTS_RELIANCE], Mode.LTP)
        assert kinds(await events(feed, 2)) == [Connected, Tick]
        rest.tokens.append("issued-elsewhere")  # another login took the session: token-1 is refused
        await first.drop()
        seen = await events(feed, 5)
        assert kinds(seen) == [Disconnected, Reconnecting, Connected, Resubscribed, Tick]
        assert peer.attempts == [0.0, 1.0, 1.0]  # refused (401) at 1.0, logged in, connected at once
        assert peer.refused == [401]
        second = await peer.accepted()
        assert second.query["token"] == "token-3"
        assert rest.requests == [
            ("POST", "/auth/login"),
            ("POST", "/instruments/subscription"),
            ("POST", "/auth/login"),
            ("POST", "/instruments/subscription"),
        ]
        assert rest.bodies[-1] == subscription_body([XTS_RELIANCE], 1512)
        assert feed.statistics().logins == 2


async def test_xts_refused_login_fails_the_open_before_any_socket(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    rest, peer = xts_parts(nursery)
    with pytest.raises(LoginRefusedError, match="Invalid credentials") as caught:
        async with open_xts_feed(
            APP_KEY, "wrong-secret-key", root_url=ROOT, connect=peer.connect, http_transport=rest.transport
        ):
            pytest.fail("refused")  # pragma: no cover
    assert "wrong-secret-key" not in "".join(traceback.format_exception(caught.value))
    assert peer.attempts == []
    assert rest.requests == [("POST", "/auth/login")]


async def test_xts_refused_relogin_mid_session_ends_the_feed(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    rest, peer = xts_parts(nursery)
    async with open_xts_feed(
        APP_KEY,
        SECRET_KEY,
        root_url=ROOT,
        connect=peer.connect,
        http_transport=rest.transport,
        backoff=NO_JITTER,
    ) as feed:
        first = await peer.accepted()
        assert kinds(await events(feed, 1)) == [Connected]
        rest.tokens.append("issued-elsewhere")
        rest.refuse_logins = True
        await first.drop()
        seen: list[Event] = []
        with pytest.raises(LoginRefusedError):
            async for event in feed:
                seen.append(event)
        assert kinds(seen) == [Disconnected, Reconnecting, Disconnected]
        assert peer.attempts == [0.0, 1.0]
        assert rest.requests[:2] == [("POST", "/auth/login"), ("POST", "/auth/login")]
    assert trio.current_time() == 1.0


async def test_xts_pings_on_time_and_a_server_without_pongs_is_dead_at_exactly_the_limit(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    rest, peer = xts_parts(nursery)
    async with open_xts_feed(
        APP_KEY,
        SECRET_KEY,
        root_url=ROOT,
        connect=peer.connect,
        http_transport=rest.transport,
        backoff=NO_JITTER,
        ping_timeout_slack=5.0,
    ) as feed:
        await peer.accepted()
        assert kinds(await events(feed, 1)) == [Connected]
        await trio.sleep(101.0)  # answered pings keep the connection alive
        assert peer.pings == [25.0, 50.0, 75.0, 100.0]
        assert feed.statistics().pongs_received == 4
        peer.pong = False
        lost, reconnecting, connected = await events(feed, 3)
        assert isinstance(lost, Disconnected)
        assert lost.reason == (
            "no pong or data for 90 s (pingInterval 25 + pingTimeout 60 + slack 5): connection presumed dead"
        )
        assert isinstance(reconnecting, Reconnecting)
        assert isinstance(connected, Connected)
        assert peer.pings[4:] == [125.0, 150.0, 175.0]
        assert peer.attempts == [0.0, 191.0]  # the last pong at 100: dead at 190, then the 1 s delay


async def test_xts_error_joined_unknown_and_logout_events(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    """A socket ``error`` event is delivered as a `BrokerError`; ``joined`` is ignored; an unknown event is
    counted; ``logout`` (another login took the session) is delivered as a `BrokerMessage` and ends the
    feed for good, with no new login."""
    rest, peer = xts_parts(nursery)
    async with open_xts_feed(
        APP_KEY,
        SECRET_KEY,
        root_url=ROOT,
        connect=peer.connect,
        http_transport=rest.transport,
        backoff=NO_JITTER,
    ) as feed:
        connection = await peer.accepted()
        assert kinds(await events(feed, 1)) == [Connected]
        await connection.ws.send_message(encode_event("error", {"message": "boom"}))
        (error,) = await events(feed, 1)
        assert isinstance(error, BrokerError)
        assert error.text == '{"message":"boom"}'
        await connection.ws.send_message(encode_event("joined", {"type": "success"}))
        await connection.ws.send_message(encode_event("5018-json-full", "{}"))
        await connection.ws.send_message(
            encode_event("logout", f"logged out by another login ({SECRET_KEY})")
        )
        seen: list[Event] = []
        with pytest.raises(AuthenticationError, match="logout event") as caught:
            async for event in feed:
                seen.append(event)
        assert SECRET_KEY not in str(caught.value)
        assert kinds(seen) == [BrokerMessage, Disconnected]
        message = seen[0]
        assert isinstance(message, BrokerMessage)
        assert message.text == "logged out by another login (***)"
        assert feed.statistics().unknown_packets == 1
        assert peer.attempts == [0.0]
    assert rest.requests == [("POST", "/auth/login"), ("DELETE", "/auth/logout")]
