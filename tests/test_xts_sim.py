"""The XTS market-data simulator: REST, the Socket.IO (EIO3) stream, payloads and fault knobs.

Every test talks to a real simulator on loopback through real clients: httpx for REST, trio-websocket for
the socket, and (when installed) the official SDK's socket.io generation, python-socketio 4.6.
"""

from __future__ import annotations

import base64
import json
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
import trio_websocket
from hypothesis import given, settings, strategies as st

from trading_ws import ConfigurationError, DecodeError, Mode, Tick
from trading_ws.brokers.xts._engineio import EioPong, OpenPacket, SioEvent, Unknown, parse_packet
from trading_ws.brokers.xts._instruments import parse_master
from trading_ws.sim._universe import UNIVERSE, find_instrument
from trading_ws.sim._xts import (
    DEMO_APP_KEY,
    DEMO_SECRET_KEY,
    DEMO_USER_ID,
    XtsSimulator,
    XtsSimulatorStatistics,
)

LOGIN = "/apimarketdata/auth/login"
SUBSCRIPTION = "/apimarketdata/instruments/subscription"
QUOTES = "/apimarketdata/instruments/quotes"
RELIANCE = {"exchangeSegment": 1, "exchangeInstrumentID": 2885}
INFY = {"exchangeSegment": 1, "exchangeInstrumentID": 1594}
NIFTY_FUT = {"exchangeSegment": 2, "exchangeInstrumentID": 52168}
NIFTY_INDEX = {"exchangeSegment": 1, "exchangeInstrumentID": 26000}
ALL_INSTRUMENTS = [
    {"exchangeSegment": i.xts_segment, "exchangeInstrumentID": i.xts_instrument_id} for i in UNIVERSE
]
FAST = {"tick_interval": 0.05}


async def start(nursery: trio.Nursery, **options: Any) -> tuple[XtsSimulator, str]:
    sim = XtsSimulator(**options)
    root: str = await nursery.start(sim.serve)
    return sim, root


async def login(client: httpx.AsyncClient) -> str:
    response = await client.post(LOGIN, json={"appKey": DEMO_APP_KEY, "secretKey": DEMO_SECRET_KEY})
    assert response.status_code == 200, response.text
    token: str = response.json()["result"]["token"]
    return token


async def subscribe(
    client: httpx.AsyncClient, token: str, instruments: list[dict[str, Any]], code: int
) -> httpx.Response:
    return await client.post(
        SUBSCRIPTION,
        json={"instruments": instruments, "xtsMessageCode": code},
        headers={"Authorization": token},
    )


def socket_url(root: str, token: str, mode: str = "Full", user: str = DEMO_USER_ID) -> str:
    return root.replace("http://", "ws://", 1) + (
        f"/apimarketdata/socket.io/?token={token}&userID={user}&publishFormat=JSON"
        f"&broadcastMode={mode}&transport=websocket&EIO=3"
    )


def jwt_payload(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return decoded


@asynccontextmanager
async def raw_socket(url: str) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A WebSocket on a TCP stream the test owns and closes.

    trio-websocket 0.12's ``open_websocket_url`` leaves its socket open when the server closes the
    connection first or refuses the handshake (a ResourceWarning, an error here).
    """
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    resource = f"{parts.path}?{parts.query}"
    async with (
        await trio.open_tcp_stream(parts.hostname, parts.port) as stream,
        trio.open_nursery() as nursery,
    ):
        ws = await trio_websocket.wrap_client_stream(nursery, stream, parts.netloc, resource)
        try:
            yield ws
        finally:
            await ws.aclose()


@asynccontextmanager
async def open_socket(url: str) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A WebSocket past the Engine.IO / Socket.IO handshake (open, 40, joined), which it checks."""
    async with raw_socket(url) as ws:
        await expect_handshake(ws)
        yield ws


async def refusal_of(url: str) -> trio_websocket.ConnectionRejected:
    """The refusal of a handshake, made on a TCP stream the test owns and closes (see `raw_socket`)."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    async with await trio.open_tcp_stream(parts.hostname, parts.port) as stream:
        with pytest.RaisesGroup(trio_websocket.ConnectionRejected) as info:
            async with trio.open_nursery() as nursery:
                await trio_websocket.wrap_client_stream(
                    nursery, stream, parts.netloc, f"{parts.path}?{parts.query}"
                )
    rejection = info.value.exceptions[0]
    assert isinstance(rejection, trio_websocket.ConnectionRejected)
    return rejection


async def expect_handshake(ws: trio_websocket.WebSocketConnection) -> OpenPacket:
    opened = parse_packet(await ws.get_message())
    assert isinstance(opened, OpenPacket)
    assert await ws.get_message() == "40"
    joined = parse_packet(await ws.get_message())
    assert isinstance(joined, SioEvent)
    assert joined.name == "joined"
    assert joined.args[0]["code"] == "s-socket-0001"
    assert joined.args[0]["description"] == f"Socket joined successfully! SocketId={opened.sid}"
    return opened


async def next_event(
    ws: trio_websocket.WebSocketConnection, accept: Callable[[SioEvent], bool] = lambda e: True
) -> SioEvent:
    while True:
        packet = parse_packet(await ws.get_message())
        if isinstance(packet, SioEvent) and accept(packet):
            return packet


async def events_for(ws: trio_websocket.WebSocketConnection, seconds: float) -> list[SioEvent]:
    events: list[SioEvent] = []
    with trio.move_on_after(seconds):
        while True:
            packet = parse_packet(await ws.get_message())
            if isinstance(packet, SioEvent):
                events.append(packet)
    return events


# ---------------------------------------------------------------------------------------------------------
# Serving


async def test_serve_reports_root_url_and_refuses_non_loopback(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim, root = await start(nursery)
        assert root.startswith("http://127.0.0.1:")
        assert int(root.rsplit(":", 1)[1]) > 0
        assert sim.url == root
        with pytest.raises(RuntimeError, match="already serving"):
            await sim.serve()
        with pytest.raises(ConfigurationError, match="loopback"):
            await XtsSimulator().serve("0.0.0.0")
        with pytest.raises(RuntimeError, match="not serving"):
            _ = XtsSimulator().url


@settings(max_examples=30, deadline=None)
@given(
    st.one_of(
        st.integers(max_value=-1),
        st.integers(min_value=65536),
        st.booleans(),
        st.floats(allow_nan=True),
        st.text(max_size=5),
        st.none(),
    )
)
async def test_every_port_outside_0_to_65535_is_refused_before_listening(port: object) -> None:
    # 99999 used to escape as an OverflowError from the socket layer, inside two exception groups.
    sim = XtsSimulator()
    with trio.fail_after(5), pytest.raises(ConfigurationError, match="port"):
        await sim.serve("127.0.0.1", port)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="not serving"):
        _ = sim.url


def test_secrets_stay_out_of_repr_and_bad_options_are_refused() -> None:
    sim = XtsSimulator(app_key="k-visible?", secret_key="s3cr3t-value")
    assert "s3cr3t-value" not in repr(sim)
    assert "k-visible?" not in repr(sim)
    with pytest.raises(ConfigurationError):
        XtsSimulator(tick_interval=0)
    with pytest.raises(ConfigurationError):
        XtsSimulator(max_subscriptions=0)
    with pytest.raises(ConfigurationError):
        XtsSimulator(invalid_token_status=302)


# ---------------------------------------------------------------------------------------------------------
# Authentication


async def test_login_json_returns_a_24h_jwt(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        _, root = await start(nursery)
        async with httpx.AsyncClient(base_url=root) as client:
            response = await client.post(
                LOGIN, json={"appKey": DEMO_APP_KEY, "secretKey": DEMO_SECRET_KEY, "source": "WEBAPI"}
            )
        assert response.status_code == 200
        body = response.json()
        assert body["type"] == "success"
        assert body["code"] == "e-response-0010"
        assert body["result"]["userID"] == DEMO_USER_ID
        token = body["result"]["token"]
        header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
        assert header == {"alg": "HS256", "typ": "JWT"}
        payload = jwt_payload(token)
        assert set(payload) == {"userID", "publicKey", "iat", "exp"}
        assert payload["userID"] == f"{DEMO_USER_ID}_{DEMO_APP_KEY}"
        assert payload["publicKey"] == DEMO_APP_KEY
        assert payload["exp"] - payload["iat"] == 86400


async def test_login_form_urlencoded(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        _, root = await start(nursery)
        async with httpx.AsyncClient(base_url=root) as client:
            response = await client.post(
                LOGIN, data={"appKey": DEMO_APP_KEY, "secretKey": DEMO_SECRET_KEY, "source": "WEBAPI"}
            )
        assert response.status_code == 200
        assert response.json()["result"]["token"].count(".") == 2


async def test_login_with_wrong_or_missing_keys_is_refused(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim, root = await start(nursery)
        async with httpx.AsyncClient(base_url=root) as client:
            wrong = await client.post(LOGIN, json={"appKey": DEMO_APP_KEY, "secretKey": "nope"})
            missing = await client.post(LOGIN, json={"appKey": DEMO_APP_KEY})
        assert wrong.status_code == 400
        assert wrong.json() == {
            "type": "error",
            "code": "e-app-0001",
            "description": "Invalid appKey or secretKey",
            "result": None,
        }
        assert missing.status_code == 400
        assert missing.json()["description"] == "Bad Request"
        assert missing.json()["result"]["errors"][0]["field"] == "secretKey"
        assert sim.statistics().logins == 0
        assert sim.statistics().logins_refused == 2


@pytest.mark.parametrize("status", [400, 200])
async def test_second_login_invalidates_the_first_token(nursery: trio.Nursery, status: int) -> None:
    with trio.fail_after(10):
        sim, root = await start(nursery, invalid_token_status=status)
        async with httpx.AsyncClient(base_url=root) as client:
            first = await login(client)
            second = await login(client)
            assert first != second
            old = await subscribe(client, first, [RELIANCE], 1501)
            new = await subscribe(client, second, [RELIANCE], 1501)
            missing = await client.get("/apimarketdata/config/clientConfig")
            bearer = await client.get(
                "/apimarketdata/config/clientConfig", headers={"Authorization": f"Bearer {second}"}
            )
        for dead in (old, missing, bearer):
            assert dead.status_code == status
            assert dead.json()["type"] == "error"
            assert dead.json()["description"] == "Invalid Token"
        assert new.status_code == 200
        assert sim.statistics().sessions == 1
        assert sim.statistics().logins == 2


async def test_logout_invalidates_the_token_and_closes_its_sockets(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim, root = await start(nursery, **FAST)
        async with httpx.AsyncClient(base_url=root) as client:
            token = await login(client)
            async with open_socket(socket_url(root, token)) as ws:
                response = await client.delete("/apimarketdata/auth/logout", headers={"Authorization": token})
                assert response.status_code == 200
                assert response.json()["type"] == "success"
                messages = []
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    while True:
                        messages.append(await ws.get_message())
                assert messages[-1:] == ["41"]
                assert closed.value.reason is not None
                assert closed.value.reason.code == 1000
            again = await subscribe(client, token, [RELIANCE], 1501)
        assert again.json()["description"] == "Invalid Token"
        assert sim.statistics().sessions == 0


async def test_reject_next_login(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim, root = await start(nursery)
        sim.reject_next_login(503, count=2)
        async with httpx.AsyncClient(base_url=root) as client:
            body = {"appKey": DEMO_APP_KEY, "secretKey": DEMO_SECRET_KEY}
            statuses = [(await client.post(LOGIN, json=body)).status_code for _ in range(3)]
        assert statuses == [503, 503, 200]
        with pytest.raises(ValueError):
            sim.reject_next_login(99)
        with pytest.raises(ValueError):
            sim.reject_next_login(500, count=-1)


async def test_expire_tokens_refuses_rest_and_handshakes(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim, root = await start(nursery, **FAST)
        async with httpx.AsyncClient(base_url=root) as client:
            token = await login(client)
            assert (await subscribe(client, token, [RELIANCE], 1501)).status_code == 200
            async with open_socket(socket_url(root, token)) as ws:
                assert sim.expire_tokens() == 1
                dead = await subscribe(client, token, [INFY], 1501)
                assert dead.status_code == 400
                assert dead.json()["description"] == "Invalid Token"
                assert (await refusal_of(socket_url(root, token))).status_code == 401
                # The socket that was already open keeps streaming (the token is checked at handshake).
                event = await next_event(ws)
                assert event.name == "1501-json-full"
            assert sim.statistics().sessions == 0
            fresh = await login(client)
            assert (await subscribe(client, fresh, [RELIANCE], 1501)).status_code == 200


# ---------------------------------------------------------------------------------------------------------
# Subscriptions


@pytest.mark.parametrize("code", [1501, 1502, 1505, 1510, 1512])
async def test_subscribe_returns_snapshots_of_the_code(nursery: trio.Nursery, code: int) -> None:
    with trio.fail_after(10):
        _, root = await start(nursery)
        async with httpx.AsyncClient(base_url=root) as client:
            token = await login(client)
            # Ids as strings are accepted as well as numbers.
            instruments: list[dict[str, Any]] = [
                RELIANCE,
                {"exchangeSegment": 2, "exchangeInstrumentID": "52168"},
            ]
            response = await subscribe(client, token, instruments, code)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["code"] == "s-session-0001"
        assert body["description"] == "Instrument subscribed successfully!"
        result = body["result"]
        assert result["mdp"] == code
        assert result["quotesList"] == [RELIANCE, NIFTY_FUT]
        assert result["Remaining_Subscription_Count"] == 48
        snapshots = [json.loads(text) for text in result["listQuotes"]]  # JSON *strings*
        assert [s["MessageCode"] for s in snapshots] == [code, code]
        assert [(s["ExchangeSegment"], s["ExchangeInstrumentID"]) for s in snapshots] == [
            (1, 2885),
            (2, 52168),
        ]
        first = snapshots[0]
        if code == 1501:
            touchline = first["Touchline"]
            assert touchline["LastTradedPrice"] > 0
            assert "LastTradedQunatity" in touchline
            assert set(touchline["BidInfo"]) == {"Size", "Price", "TotalOrders", "BuyBackMarketMaker"}
        elif code == 1502:
            assert len(first["Bids"]) == len(first["Asks"]) == 5
            assert first["Bids"][0]["Price"] < first["Asks"][0]["Price"]
            assert first["Touchline"]["Close"] == 1478.6  # the universe's base price: the previous close
        elif code == 1510:
            assert snapshots[1]["OpenInterest"] > 0
            assert snapshots[1]["XTSMarketType"] == 1
        elif code == 1512:
            assert first["LastTradedPrice"] > 0
            assert first["BookType"] == 1
        else:
            assert {"BarTime", "BarVolume", "Open", "High", "Low", "Close", "SumOfQtyInToPrice"} <= set(first)


async def test_already_subscribed_and_mixed_requests(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim, root = await start(nursery)
        async with httpx.AsyncClient(base_url=root) as client:
            token = await login(client)
            await subscribe(client, token, [RELIANCE], 1501)
            repeat = await subscribe(client, token, [RELIANCE], 1501)
            mixed = await subscribe(client, token, [RELIANCE, INFY], 1501)
            other_code = await subscribe(client, token, [RELIANCE], 1502)
        assert repeat.status_code == 400
        assert repeat.json() == {
            "type": "error",
            "code": "e-session-0002",
            "description": "Instrument Already Subscribed !",
            "result": {"Remaining_Subscription_Count": 49},
        }
        assert mixed.status_code == 200
        assert mixed.json()["result"]["quotesList"] == [INFY]
        assert len(mixed.json()["result"]["listQuotes"]) == 1
        assert other_code.status_code == 200
        assert sim.subscriptions() == [(1, 2885, 1501), (1, 1594, 1501), (1, 2885, 1502)]
        assert sim.statistics().subscriptions == {1: 3}


async def test_cap_of_50_pairs_per_session_refuses_the_whole_request(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim, root = await start(nursery)
        count = len(ALL_INSTRUMENTS)
        async with httpx.AsyncClient(base_url=root) as client:
            token = await login(client)
            for code in (1501, 1502, 1512):
                ok = await subscribe(client, token, ALL_INSTRUMENTS, code)
                assert ok.status_code == 200
            assert ok.json()["result"]["Remaining_Subscription_Count"] == 50 - 3 * count
            over = await subscribe(client, token, ALL_INSTRUMENTS, 1510)
            assert over.status_code == 400
            assert over.json()["type"] == "error"
            assert over.json()["code"] == "e-session-0005"
            assert over.json()["result"] == {"Remaining_Subscription_Count": 50 - 3 * count}
            assert len(sim.subscriptions()) == 3 * count  # nothing of the refused request
            fill = await subscribe(client, token, ALL_INSTRUMENTS[: 50 - 3 * count], 1510)
            assert fill.json()["result"]["Remaining_Subscription_Count"] == 0
            one_more = await subscribe(client, token, ALL_INSTRUMENTS[-1:], 1510)
            assert one_more.json()["code"] == "e-session-0005"


async def test_unsubscribe_and_list(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim, root = await start(nursery)
        async with httpx.AsyncClient(base_url=root) as client:
            token = await login(client)
            auth = {"Authorization": token}
            await subscribe(client, token, [RELIANCE, INFY], 1501)
            await subscribe(client, token, [RELIANCE], 1502)
            listed = await client.get(SUBSCRIPTION, params={"xtsMessageCode": 1501}, headers=auth)
            assert listed.json()["result"]["subscriptionList"] == [
                {**RELIANCE, "xtsMessageCode": 1501},
                {**INFY, "xtsMessageCode": 1501},
            ]
            body = {"instruments": [RELIANCE, NIFTY_FUT], "xtsMessageCode": 1501}
            response = await client.put(SUBSCRIPTION, json=body, headers=auth)
            assert response.status_code == 200
            assert response.json()["result"] == {"mdp": 1501, "unsubList": [RELIANCE]}
            everything = await client.get(SUBSCRIPTION, headers=auth)
            assert everything.json()["result"]["Remaining_Subscription_Count"] == 48
        assert sim.subscriptions() == [(1, 1594, 1501), (1, 2885, 1502)]


async def test_bad_subscription_requests(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim, root = await start(nursery)
        async with httpx.AsyncClient(base_url=root) as client:
            token = await login(client)
            unknown = await subscribe(
                client, token, [RELIANCE, {"exchangeSegment": 1, "exchangeInstrumentID": 7}], 1501
            )
            bad_code = await subscribe(client, token, [RELIANCE], 1234)
            empty = await subscribe(client, token, [], 1501)
            not_json = await client.post(
                SUBSCRIPTION,
                content=b"{not json",
                headers={"Authorization": token, "Content-Type": "application/json"},
            )
        assert unknown.status_code == 400
        assert unknown.json()["code"] == "e-instrument-0001"
        assert unknown.json()["result"]["instruments"] == [{"exchangeSegment": 1, "exchangeInstrumentID": 7}]
        for response in (bad_code, empty, not_json):
            assert response.status_code == 400
            assert response.json()["description"] == "Bad Request"
        assert sim.subscriptions() == []


async def test_quotes_need_publish_format_and_do_not_subscribe(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim, root = await start(nursery)
        async with httpx.AsyncClient(base_url=root) as client:
            token = await login(client)
            auth = {"Authorization": token}
            missing = await client.post(
                QUOTES, json={"instruments": [RELIANCE], "xtsMessageCode": 1502}, headers=auth
            )
            quotes = await client.post(
                QUOTES,
                json={"instruments": [RELIANCE], "xtsMessageCode": 1502, "publishFormat": "JSON"},
                headers=auth,
            )
        assert missing.status_code == 400
        assert missing.json()["result"]["errors"][0]["field"] == "publishFormat"
        assert quotes.status_code == 200
        result = quotes.json()["result"]
        assert quotes.json()["code"] == "s-quotes-0001"
        assert result["quotesList"] == [{"exchangeSegment": 1, "exchangeInstrumentID": "2885"}]
        assert json.loads(result["listQuotes"][0])["MessageCode"] == 1502
        assert sim.subscriptions() == []


async def test_master_config_and_index_list(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        _, root = await start(nursery)
        async with httpx.AsyncClient(base_url=root) as client:
            # The master needs no token (as on CompositEdge).
            master = await client.post(
                "/apimarketdata/instruments/master", json={"exchangeSegmentList": ["NSECM", "NSEFO"]}
            )
            token = await login(client)
            auth = {"Authorization": token}
            config = await client.get("/apimarketdata/config/clientConfig", headers=auth)
            indices = await client.get(
                "/apimarketdata/instruments/indexlist", params={"exchangeSegment": 1}, headers=auth
            )
            polling = await client.get("/apimarketdata/socket.io/", params={"EIO": 3, "transport": "polling"})
            missing = await client.get("/apimarketdata/nope")
            wrong_method = await client.get(LOGIN)
        assert master.status_code == 200
        rows = parse_master(master.json()["result"])
        by_id = {(row.segment_id, row.instrument_id): row for row in rows}
        assert set(by_id) == {
            (i.xts_segment, i.xts_instrument_id) for i in UNIVERSE if i.xts_segment in (1, 2) and i.tradable
        }
        reliance = by_id[(1, 2885)]
        assert reliance.symbol == "NSE:RELIANCE"
        assert reliance.series == "EQ"
        call = by_id[(2, 52170)]
        assert call.symbol == "NFO:NIFTY26DEC26000CE"
        assert (call.option_type, call.strike, call.lot_size) == ("CE", 26000.0, 65)
        assert call.expiry == find_instrument("NFO:NIFTY26DEC26000CE").expiry
        result = config.json()["result"]
        assert result["exchangeSegments"]["NSEFO"] == 2
        assert result["xtsMessageCode"]["touchlineEvent"] == 1501
        assert "Partial" in result["broadCastMode"]
        assert indices.json()["result"] == {
            "exchangeSegment": 1,
            "indexList": ["NIFTY 50_26000", "NIFTY BANK_26001"],
        }
        assert polling.status_code == 400
        assert polling.json() == {"code": 0, "message": "Transport unknown"}
        assert missing.status_code == 404
        assert wrong_method.status_code == 405


# ---------------------------------------------------------------------------------------------------------
# The socket


async def test_handshake_open_connect_joined(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim, root = await start(nursery, ping_interval=7, ping_timeout=9)
        async with httpx.AsyncClient(base_url=root) as client:
            token = await login(client)
        async with raw_socket(socket_url(root, token)) as ws:
            raw_open = await ws.get_message()
            assert isinstance(raw_open, str)
            assert raw_open.startswith('0{"sid":"')
            opened = parse_packet(raw_open)
            assert isinstance(opened, OpenPacket)
            assert len(opened.sid) == 20
            assert opened.upgrades == ()
            assert (opened.ping_interval, opened.ping_timeout) == (7, 9)
            assert await ws.get_message() == "40"
            joined = json.loads((await ws.get_message())[2:])
            assert joined == [
                "joined",
                {
                    "type": "success",
                    "code": "s-socket-0001",
                    "description": f"Socket joined successfully! SocketId={opened.sid}",
                },
            ]
            assert sim.statistics().sockets_open == 1


async def test_handshake_refusals(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim, root = await start(nursery)
        async with httpx.AsyncClient(base_url=root) as client:
            token = await login(client)
        cases = [
            (socket_url(root, "not-a-token"), 401),
            (socket_url(root, token, user="SOMEONE"), 401),
            (socket_url(root, token, mode="Sometimes"), 400),
            (socket_url(root, token).replace("publishFormat=JSON", "publishFormat=Binary"), 400),
            (socket_url(root, token).replace("/socket.io/", "/elsewhere/"), 404),
        ]
        for url, status in cases:
            rejection = await refusal_of(url)
            assert rejection.status_code == status
            assert rejection.body is not None
            assert json.loads(rejection.body)["type"] == "error"
            assert token.encode() not in rejection.body
        assert sim.statistics().handshakes_rejected == len(cases)
        assert sim.statistics().sockets_accepted == 0


async def test_ping_pong(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim, root = await start(nursery)
        async with httpx.AsyncClient(base_url=root) as client:
            token = await login(client)
        async with open_socket(socket_url(root, token)) as ws:
            await ws.send_message("2")
            assert await ws.get_message() == "3"
            await ws.send_message("2probe")
            assert parse_packet(await ws.get_message()) == EioPong("probe")
            await ws.send_message('42["join","whatever"]')  # client events are ignored
            await ws.send_message("not a packet")
            await ws.send_message("2")
            assert await ws.get_message() == "3"
        stats = sim.statistics()
        assert (stats.pings_received, stats.pongs_sent) == (3, 3)


async def test_server_closes_after_missed_pings(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim, root = await start(nursery, ping_interval=0.3, ping_timeout=0.3)
        async with httpx.AsyncClient(base_url=root) as client:
            token = await login(client)
        async with open_socket(socket_url(root, token)) as ws:
            # Pinging keeps it open past interval + timeout...
            for _ in range(5):
                await trio.sleep(0.25)
                await ws.send_message("2")
                assert await ws.get_message() == "3"
            # ...silence closes it after interval + timeout.
            start_time = trio.current_time()
            with pytest.raises(trio_websocket.ConnectionClosed):
                while True:
                    await ws.get_message()
            assert 0.4 < trio.current_time() - start_time < 2.0
        assert sim.statistics().sockets_open == 0


async def test_full_events_for_subscribed_instruments_only(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim, root = await start(nursery, **FAST)
        async with httpx.AsyncClient(base_url=root) as client:
            token = await login(client)
            await subscribe(client, token, [RELIANCE, NIFTY_INDEX], 1501)
            await subscribe(client, token, [INFY], 1502)
            await subscribe(client, token, [NIFTY_FUT, RELIANCE], 1510)
            await subscribe(client, token, [INFY], 1512)
            async with open_socket(socket_url(root, token)) as ws:
                events = await events_for(ws, 0.6)
        seen = set()
        for event in events:
            assert isinstance(event.args[0], str)  # the data is a JSON *string*
            data = json.loads(event.args[0])
            code = int(event.name.split("-")[0])
            assert event.name == f"{code}-json-full"
            assert data["MessageCode"] == code
            seen.add((data["ExchangeSegment"], data["ExchangeInstrumentID"], code))
        # 1510 only for the derivative: RELIANCE has no open interest.
        assert seen == {(1, 2885, 1501), (1, 26000, 1501), (1, 1594, 1502), (2, 52168, 1510), (1, 1594, 1512)}
        assert sim.statistics().events_sent >= len(events)


async def test_partial_events(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        _, root = await start(nursery, **FAST)
        async with httpx.AsyncClient(base_url=root) as client:
            token = await login(client)
            await subscribe(client, token, [RELIANCE], 1501)
            await subscribe(client, token, [INFY], 1502)
            await subscribe(client, token, [NIFTY_FUT], 1510)
            # broadcastMode is case-insensitive.
            async with open_socket(socket_url(root, token, mode="PARTIAL")) as ws:
                events = await events_for(ws, 0.5)
        by_name: dict[str, list[dict[str, str]]] = {}
        for event in events:
            text = event.args[0]
            assert isinstance(text, str)
            pairs = dict(item.split(":", 1) for item in text.split(","))
            by_name.setdefault(event.name, []).append(pairs)
        assert set(by_name) == {"1501-json-partial", "1502-json-partial", "1510-json-partial"}
        touchline = by_name["1501-json-partial"][0]
        assert touchline["t"] == "1_2885"
        assert float(touchline["ltp"]) > 0
        assert len(touchline["bi"].split("|")) == 4  # one level: index|size|price|orders
        depth = by_name["1502-json-partial"][0]
        assert depth["t"] == "1_1594"
        bids = depth["bi"].split("|")
        assert len(bids) == 20
        assert bids[0::4] == ["0", "1", "2", "3", "4"]
        assert by_name["1510-json-partial"][0]["t"] == "2_52168"
        assert int(by_name["1510-json-partial"][0]["o"]) > 0


async def test_candles_close_once_per_interval(nursery: trio.Nursery) -> None:
    now = [1_800_000_000.0]  # a minute boundary; the simulator's clock is ours to move
    with trio.fail_after(10):
        _, root = await start(nursery, clock=lambda: now[0], **FAST)
        async with httpx.AsyncClient(base_url=root) as client:
            token = await login(client)
            await subscribe(client, token, [RELIANCE], 1505)
            async with open_socket(socket_url(root, token)) as ws:
                assert await events_for(ws, 0.3) == []  # no bar closes within the minute
                bars = []
                for _ in range(2):
                    now[0] += 60
                    event = await next_event(ws)
                    assert event.name == "1505-json-full"
                    bars.append(json.loads(event.args[0]))
                assert await events_for(ws, 0.3) == []  # each bar closes once
        # BarTime: the bar's start, seconds since 1970 in IST wall-clock time.
        assert [bar["BarTime"] for bar in bars] == [1_800_000_000 + 19800, 1_800_000_060 + 19800]
        for bar in bars:
            assert bar["Low"] <= bar["Open"] <= bar["High"]
            assert bar["Low"] <= bar["Close"] <= bar["High"]
            assert bar["BarVolume"] > 0
            assert bar["SumOfQtyInToPrice"] > bar["BarVolume"] * bar["Low"] * 0.99


async def test_reconnect_with_the_same_token_resumes_without_rest(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim, root = await start(nursery, **FAST)
        async with httpx.AsyncClient(base_url=root) as client:
            token = await login(client)
            await subscribe(client, token, [RELIANCE], 1501)
        async with open_socket(socket_url(root, token)) as ws:
            assert (await next_event(ws)).name == "1501-json-full"
        requests = sim.statistics().rest_requests
        async with open_socket(socket_url(root, token)) as ws:
            event = await next_event(ws)
            assert event.name == "1501-json-full"
            assert json.loads(event.args[0])["ExchangeInstrumentID"] == 2885
        assert sim.statistics().rest_requests == requests
        assert sim.statistics().sockets_accepted == 2


async def test_knobs_for_payload_shapes(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        _, root = await start(nursery, flat_touchline=True, shuffle_keys=True, joined_as_string=True, **FAST)
        async with httpx.AsyncClient(base_url=root) as client:
            token = await login(client)
            await subscribe(client, token, [RELIANCE], 1501)
            async with raw_socket(socket_url(root, token)) as ws:
                for _ in range(2):
                    await ws.get_message()
                joined = parse_packet(await ws.get_message())
                assert isinstance(joined, SioEvent)
                assert isinstance(joined.args[0], str)
                assert json.loads(joined.args[0])["code"] == "s-socket-0001"
                orders = set()
                for _ in range(4):
                    data = json.loads((await next_event(ws)).args[0])
                    assert "Touchline" not in data
                    assert data["LastTradedPrice"] > 0
                    assert "BidInfo" in data
                    orders.add(tuple(data))
                assert len(orders) > 1  # the key order changes


async def test_events_decode_with_the_library_codec(nursery: trio.Nursery) -> None:
    """The simulator's payloads are built independently of the codec: each checks the other."""
    from trading_ws.brokers.xts._codec import decode_event

    with trio.fail_after(10):
        sim, root = await start(nursery, **FAST)
        async with httpx.AsyncClient(base_url=root) as client:
            token = await login(client)
            await subscribe(client, token, [RELIANCE], 1501)
            await subscribe(client, token, [INFY], 1502)
            for mode in ("Full", "Partial"):
                async with open_socket(socket_url(root, token, mode=mode)) as ws:
                    for _ in range(4):
                        event = await next_event(ws)
                        ticks = decode_event(event.name, event.args[0])
                        assert len(ticks) == 1
                        tick = ticks[0]
                        assert isinstance(tick, Tick)
                        expected = {2885: Mode.QUOTE, 1594: Mode.FULL}
                        assert tick.mode is expected[tick.instrument_token]
                        assert tick.segment == 1
                        assert tick.last_price > 0
                        assert tick.ohlc is not None
                        assert tick.ohlc.close in (1478.6, 1561.3)
                        if tick.mode is Mode.FULL:
                            assert tick.depth is not None
                            assert len(tick.depth.bids) == 5
                        assert tick.last_trade_time is not None
                        skew = abs(tick.last_trade_time.timestamp() - sim.clock())
                        assert skew < 5


# ---------------------------------------------------------------------------------------------------------
# Fault knobs


async def test_drop_connections_resets_without_close_frame(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim, root = await start(nursery, **FAST)
        async with httpx.AsyncClient(base_url=root) as client:
            token = await login(client)
            await subscribe(client, token, [RELIANCE], 1501)
        async with open_socket(socket_url(root, token)) as ws:
            await next_event(ws)
            assert sim.drop_connections() == 1
            with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                while True:
                    await ws.get_message()
            assert closed.value.reason is not None
            assert closed.value.reason.code == 1006  # abnormal: no close frame
        stats = sim.statistics()
        assert stats.connections_dropped == 1
        assert stats.sockets_open == 0
        # The session survives: reconnecting resumes the ticks.
        async with open_socket(socket_url(root, token)) as ws:
            assert (await next_event(ws)).name == "1501-json-full"


async def test_go_silent_stops_events_and_pongs(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim, root = await start(nursery, **FAST)
        async with httpx.AsyncClient(base_url=root) as client:
            token = await login(client)
            await subscribe(client, token, [RELIANCE], 1501)
            async with open_socket(socket_url(root, token)) as ws:
                await next_event(ws)
                sim.go_silent(True)
                await trio.sleep(0.1)  # let anything in flight arrive
                with trio.move_on_after(0.1):
                    while True:
                        await ws.get_message()
                await ws.send_message("2")
                with trio.move_on_after(0.5) as quiet:
                    await ws.get_message()
                assert quiet.cancelled_caught  # no tick, no pong; the socket stays open
                # REST still answers while the socket is silent.
                assert (await subscribe(client, token, [INFY], 1501)).status_code == 200
                sim.go_silent(False)
                assert (await next_event(ws)).name == "1501-json-full"
        assert sim.statistics().pings_received == 1
        assert sim.statistics().pongs_sent == 0


async def test_send_garbage(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim, root = await start(nursery)
        async with httpx.AsyncClient(base_url=root) as client:
            token = await login(client)
        async with open_socket(socket_url(root, token)) as ws:
            assert sim.send_garbage(7) == 1
            bad = 0
            for _ in range(7):
                text = await ws.get_message()
                try:
                    packet = parse_packet(text)
                except DecodeError:
                    bad += 1
                    continue
                if isinstance(packet, Unknown):
                    bad += 1
                elif isinstance(packet, SioEvent):
                    data = packet.args[0]
                    with pytest.raises(ValueError):
                        if packet.name.endswith("-json-full"):
                            json.loads(data)
                        else:
                            float(dict(p.split(":", 1) for p in data.split(",") if ":" in p)["ltp"])
                    bad += 1
            assert bad == 7
            # The connection is still usable.
            await ws.send_message("2")
            assert await ws.get_message() == "3"
        assert sim.statistics().garbage_frames_sent == 7
        with pytest.raises(ValueError):
            sim.send_garbage(-1)


def test_statistics_is_a_frozen_record() -> None:
    stats = XtsSimulator().statistics()
    assert isinstance(stats, XtsSimulatorStatistics)
    assert stats.logins == stats.sockets_open == stats.events_sent == 0
    with pytest.raises(AttributeError):
        stats.logins = 1  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------------------
# The official SDK's Socket.IO generation (python-socketio 4.6 / python-engineio 3.13), if installed

_SDK_CLIENT = textwrap.dedent(
    """
    import json, sys, threading
    import socketio

    root, token, user = sys.argv[1:4]
    client = socketio.Client(reconnection=False)
    got = threading.Event()

    @client.on("joined")
    def joined(data):
        print("joined", json.dumps(data), flush=True)

    @client.on("1501-json-full")
    def touchline(data):
        print("1501", data, flush=True)
        got.set()

    url = root + "/?token=" + token + "&userID=" + user + "&publishFormat=JSON&broadcastMode=Full"
    client.connect(url, transports=["websocket"], namespaces=None, socketio_path="/apimarketdata/socket.io")
    ok = got.wait(10)
    client.disconnect()
    sys.exit(0 if ok else 1)
    """
)


async def test_official_sdk_socketio_client(nursery: trio.Nursery, tmp_path: Path) -> None:
    socketio = pytest.importorskip("socketio")
    engineio = pytest.importorskip("engineio")
    if not socketio.__version__.startswith("4.") or not engineio.__version__.startswith("3."):
        pytest.skip("needs python-socketio 4.x with python-engineio 3.x (the official XTS SDK's pins)")
    script = tmp_path / "sdk_client.py"
    script.write_text(_SDK_CLIENT)
    with trio.fail_after(30):
        sim, root = await start(nursery, **FAST)
        async with httpx.AsyncClient(base_url=root) as client:
            response = await client.post(
                LOGIN, data={"appKey": DEMO_APP_KEY, "secretKey": DEMO_SECRET_KEY, "source": "WEBAPI"}
            )
            body = response.json()["result"]
            await subscribe(client, body["token"], [RELIANCE], 1501)
        done = await trio.run_process(
            [sys.executable, str(script), root, body["token"], body["userID"]],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    output = done.stdout.decode()
    assert done.returncode == 0, output + done.stderr.decode()
    lines = output.splitlines()
    assert lines[0].startswith("joined ")
    assert json.loads(lines[0].split(" ", 1)[1])["code"] == "s-socket-0001"
    touchline = json.loads(lines[1].split(" ", 1)[1])
    assert (touchline["MessageCode"], touchline["ExchangeInstrumentID"]) == (1501, 2885)
    assert sim.statistics().sockets_accepted == 1
