"""The XTS REST session (`XtsSession`) against the XTS simulator over loopback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from trading_ws import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    ConnectTimeout,
    Mode,
    RateLimitedError,
    SubscriptionError,
    SubscriptionLimitError,
    Tick,
)
from trading_ws.brokers.xts import (
    InvalidTokenError,
    LoginRefusedError,
    XtsSession,
    parse_master,
    parse_root_url,
)
from trading_ws.sim import DEMO_APP_KEY, DEMO_SECRET_KEY, DEMO_USER_ID, XtsSimulator

RELIANCE = (1, 2885)
INFY = (1, 1594)
NIFTY_FUT = (2, 52168)
NIFTY_INDEX = (1, 26000)


pytestmark = pytest.mark.simulator(tick_interval=0.05, seed=5)


def live(session: XtsSession) -> bool:
    """`session.logged_in`, read through a call (mypy narrows a property across awaits)."""
    return session.logged_in


@asynccontextmanager
async def logged_in(root: str, **options: object) -> AsyncIterator[XtsSession]:
    async with XtsSession(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root, **options) as session:  # type: ignore[arg-type]
        await session.login()
        yield session


async def test_login_gives_a_token_and_the_plain_user_id(xts_sim: tuple[XtsSimulator, str]) -> None:
    simulator, root = xts_sim
    with trio.fail_after(10):
        async with XtsSession(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root) as session:
            assert repr(session).startswith("<XtsSession logged out")
            await session.login()
            assert session.logged_in
            assert session.user_id == DEMO_USER_ID
            token = session.token
            assert token is not None
            assert token.count(".") == 2  # a JWT
            assert session.app_version is not None
            assert session.generation == 1
            assert session.remaining == 50
            assert token not in repr(session)
            assert DEMO_SECRET_KEY not in repr(session)
            await session.logout()
            assert not live(session)
            assert session.token is None
        stats = simulator.statistics()
        assert stats.logins == 1
        assert stats.sessions == 0


async def test_subscribe_returns_snapshots_and_tracks_the_remaining_count(
    xts_sim: tuple[XtsSimulator, str],
) -> None:
    simulator, root = xts_sim
    with trio.fail_after(10):
        async with logged_in(root) as session:
            result = await session.subscribe([RELIANCE, INFY], 1501)
            assert not result.already_subscribed
            assert result.remaining == 48
            assert set(result.newly_subscribed) == {RELIANCE, INFY}
            assert [(t.segment, t.instrument_token) for t in result.snapshots if isinstance(t, Tick)] == [
                RELIANCE,
                INFY,
            ]
            assert all(isinstance(t, Tick) and t.mode is Mode.QUOTE for t in result.snapshots)
            assert session.remaining == 48
            assert session.subscriptions == {(*RELIANCE, 1501), (*INFY, 1501)}
            depth = await session.subscribe([NIFTY_FUT], 1502)
            assert depth.snapshots[0].mode is Mode.FULL  # type: ignore[union-attr]
            ltp = await session.subscribe([NIFTY_INDEX], 1512)
            assert ltp.snapshots[0].mode is Mode.LTP  # type: ignore[union-attr]
            assert session.remaining == 46
            assert sorted(simulator.subscriptions()) == sorted(
                [(*RELIANCE, 1501), (*INFY, 1501), (*NIFTY_FUT, 1502), (*NIFTY_INDEX, 1512)]
            )


async def test_already_subscribed_counts_as_success(xts_sim: tuple[XtsSimulator, str]) -> None:
    _, root = xts_sim
    with trio.fail_after(10):
        async with logged_in(root) as session:
            await session.subscribe([RELIANCE], 1501)
            again = await session.subscribe([RELIANCE], 1501)  # HTTP 400 e-session-0002
            assert again.already_subscribed
            assert again.snapshots == ()
            assert again.remaining == 49
            mixed = await session.subscribe([RELIANCE, INFY], 1501)  # HTTP 200, only INFY is new
            assert not mixed.already_subscribed
            assert mixed.newly_subscribed == (INFY,)
            assert len(mixed.snapshots) == 1
            assert session.remaining == 48


async def test_cap_is_refused_before_sending(xts_sim: tuple[XtsSimulator, str]) -> None:
    simulator, root = xts_sim
    many = [(1, 100_000 + i) for i in range(51)]  # not even known to the server: nothing may be sent
    with trio.fail_after(10):
        async with logged_in(root) as session:
            before = simulator.statistics().rest_requests
            with pytest.raises(SubscriptionLimitError, match="cap of 50"):
                await session.subscribe(many, 1501)
            assert simulator.statistics().rest_requests == before


async def test_cap_follows_the_servers_count(nursery: trio.Nursery) -> None:
    simulator = XtsSimulator(tick_interval=0.05, max_subscriptions=3)
    root: str = await nursery.start(simulator.serve)
    with trio.fail_after(10):
        async with logged_in(root) as session:
            assert session.capacity == 50
            await session.subscribe([RELIANCE], 1501)
            assert session.capacity == 3  # 1 subscribed + 2 remaining, as the server said
            before = simulator.statistics().rest_requests
            with pytest.raises(SubscriptionLimitError):
                await session.subscribe([INFY, NIFTY_FUT, NIFTY_INDEX], 1501)
            assert simulator.statistics().rest_requests == before
            await session.unsubscribe([RELIANCE], 1501)
            assert session.remaining == 3
            await session.subscribe([INFY, NIFTY_FUT, NIFTY_INDEX], 1501)
            assert session.remaining == 0


async def test_server_side_cap_refusal_is_a_limit_error(nursery: trio.Nursery) -> None:
    simulator = XtsSimulator(tick_interval=0.05, max_subscriptions=2)
    root: str = await nursery.start(simulator.serve)
    with trio.fail_after(10):
        async with XtsSession(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root, max_subscriptions=10) as session:
            await session.login()
            with pytest.raises(SubscriptionLimitError, match="e-session-0005"):
                await session.subscribe([RELIANCE, INFY, NIFTY_FUT], 1501)
            assert session.capacity == 2  # learnt from the refusal's Remaining_Subscription_Count


async def test_unsubscribe_and_quotes(xts_sim: tuple[XtsSimulator, str]) -> None:
    simulator, root = xts_sim
    with trio.fail_after(10):
        async with logged_in(root) as session:
            await session.subscribe([RELIANCE, INFY], 1502)
            removed = await session.unsubscribe([RELIANCE, NIFTY_FUT], 1502)
            assert removed == (RELIANCE,)
            assert simulator.subscriptions() == [(*INFY, 1502)]
            quotes = await session.quotes([RELIANCE, NIFTY_FUT], 1501)
            assert [(q.segment, q.instrument_token) for q in quotes if isinstance(q, Tick)] == [
                RELIANCE,
                NIFTY_FUT,
            ]
            assert simulator.subscriptions() == [(*INFY, 1502)]  # quotes subscribe nothing


async def test_refusals_are_subscription_errors(xts_sim: tuple[XtsSimulator, str]) -> None:
    _, root = xts_sim
    with trio.fail_after(10):
        async with logged_in(root) as session:
            with pytest.raises(SubscriptionError, match="e-instrument-0001"):
                await session.subscribe([(1, 999_999)], 1501)
            assert session.subscriptions == frozenset()
            with pytest.raises(ConfigurationError):
                await session.subscribe([RELIANCE], 4242)
            with pytest.raises(ConfigurationError):
                await session.subscribe([(1, -5)], 1501)


@pytest.mark.parametrize("status", [400, 200])
async def test_invalid_token_is_detected_by_the_envelope(nursery: trio.Nursery, status: int) -> None:
    simulator = XtsSimulator(tick_interval=0.05, invalid_token_status=status)
    root: str = await nursery.start(simulator.serve)
    with trio.fail_after(10):
        async with logged_in(root) as session:
            token = session.token
            assert token is not None
            simulator.expire_tokens()
            with pytest.raises(InvalidTokenError) as info:
                await session.subscribe([RELIANCE], 1501)
            assert isinstance(info.value, AuthenticationError)
            assert f"HTTP {status}" in str(info.value)
            assert token not in str(info.value)
            assert not session.logged_in
            await session.login()  # a new session
            assert session.generation == 2
            assert session.token != token
            await session.subscribe([RELIANCE], 1501)


async def test_bad_credentials_and_refused_logins(xts_sim: tuple[XtsSimulator, str]) -> None:
    simulator, root = xts_sim
    wrong = "wrong-secret-123456"
    with trio.fail_after(10):
        async with XtsSession(DEMO_APP_KEY, wrong, root_url=root) as session:
            with pytest.raises(LoginRefusedError, match="e-app-0001") as info:
                await session.login()
            assert wrong not in str(info.value)
            assert wrong not in repr(session)
            session.set_credentials(DEMO_APP_KEY, DEMO_SECRET_KEY)
            simulator.reject_next_login(500)
            with pytest.raises(ConnectError, match="HTTP 500") as error:
                await session.login()
            assert not isinstance(error.value, AuthenticationError)
            simulator.reject_next_login(429)
            with pytest.raises(RateLimitedError):
                await session.login()
            simulator.reject_next_login(200)  # HTTP 200 with "type": "error"
            with pytest.raises(LoginRefusedError):
                await session.login()
            await session.login()
            assert session.logged_in
            assert session.login_attempts == 5
            assert session.logins == 1


async def test_master_and_index_list(xts_sim: tuple[XtsSimulator, str]) -> None:
    _, root = xts_sim
    with trio.fail_after(10):
        async with XtsSession(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root) as session:
            text = await session.instrument_master(["NSECM", 2])  # no login needed
            symbols = {row.symbol for row in parse_master(text)}
            assert {"NSE:INFY", "NSE:RELIANCE", "NFO:NIFTY26DECFUT"} <= symbols
            with pytest.raises(ConfigurationError):
                await session.instrument_master(["NOPE"])
            with pytest.raises(InvalidTokenError):
                await session.index_list(1)  # needs a login
            await session.login()
            assert ("NIFTY 50", 26000) in await session.index_list(1)


async def test_unreachable_and_silent_servers(nursery: trio.Nursery) -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()
    with trio.fail_after(10):
        async with XtsSession(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=f"http://127.0.0.1:{port}") as session:
            with pytest.raises(ConnectError):
                await session.login()

    accepted: list[trio.SocketStream] = []

    async def mute(stream: trio.SocketStream) -> None:
        accepted.append(stream)
        await trio.sleep_forever()

    listeners = await nursery.start(trio.serve_tcp, mute, 0)
    mute_port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(10):
        async with XtsSession(
            DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=f"http://127.0.0.1:{mute_port}", timeout=0.2
        ) as session:
            with pytest.raises(ConnectTimeout):
                await session.login()
    for stream in accepted:
        await stream.aclose()


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "ws://127.0.0.1:1",
        "http://10.0.0.1",
        "http://127.0.0.1:1/?token=x",
        "https://",
        "http://user:token=x@127.0.0.1:1",
        "https://token=x@xts.example.com",
        "https://xts.example.com:99999",
    ],
)
def test_unsafe_or_invalid_root_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="root_url") as info:
        XtsSession(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=url)
    assert "token=x" not in str(info.value)


def test_root_url_endpoints() -> None:
    endpoints = parse_root_url("https://xts.example.com:3000")
    assert endpoints.rest == "https://xts.example.com:3000/apimarketdata"
    assert endpoints.socket.tls
    assert endpoints.socket.host == "xts.example.com"
    assert endpoints.socket.port == 3000
    assert endpoints.socket.path == "/apimarketdata/socket.io/"
    proxied = parse_root_url("http://10.1.2.3/broker/", allow_insecure=True)
    assert proxied.rest == "http://10.1.2.3/broker/apimarketdata"
    assert proxied.socket.path == "/broker/apimarketdata/socket.io/"
    assert not proxied.socket.tls
    old = parse_root_url("http://localhost:8080", api_path="/marketdata")
    assert old.rest == "http://localhost:8080/marketdata"
    with pytest.raises(ConfigurationError):
        XtsSession("", DEMO_SECRET_KEY, root_url="http://127.0.0.1:1")


async def test_secrets_never_in_logs(
    xts_sim: tuple[XtsSimulator, str], caplog: pytest.LogCaptureFixture
) -> None:
    simulator, root = xts_sim
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(10):
        async with logged_in(root) as session:
            token = session.token
            assert token is not None
            await session.subscribe([RELIANCE], 1501)
            simulator.expire_tokens()
            with pytest.raises(InvalidTokenError):
                await session.subscribe([INFY], 1501)
    assert caplog.records
    for record in caplog.records:
        message = record.getMessage()
        assert token not in message
        assert DEMO_SECRET_KEY not in message


async def test_session_must_be_open(xts_sim: tuple[XtsSimulator, str]) -> None:
    _, root = xts_sim
    session = XtsSession(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root)
    with trio.fail_after(10), pytest.raises(RuntimeError):
        await session.login()
