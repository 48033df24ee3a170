"""The simulators over TLS: `SimulatorTLS`, ``wss://`` and ``https://`` served for real.

Every TLS claim is checked by a verifying client: the stdlib's ``ssl`` (through trio), httpx, trio-websocket,
the library's own feeds, and the brokers' official clients in a child process (KiteTicker on
Twisted/autobahn, python-socketio 4.6 on websocket-client). Each positive test has a negative twin that
shows the client really verifies: without the CA (or with another CA) the same connection fails.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
import trio.testing
import trio_websocket

from trading_ws import ConfigurationError, Tick
from trading_ws.brokers.kite import decode_frame, open_kite_feed
from trading_ws.brokers.xts import open_xts_feed
from trading_ws.sim import (
    DEMO_ACCESS_TOKEN,
    DEMO_API_KEY,
    DEMO_APP_KEY,
    DEMO_SECRET_KEY,
    KiteSimulator,
    SimulatorTLS,
    XtsSimulator,
)

INFY = 408065
RELIANCE_XTS = (1, 2885)
LOGIN = "/apimarketdata/auth/login"
SUBSCRIPTION = "/apimarketdata/instruments/subscription"
VERIFY_FAILED = "CERTIFICATE_VERIFY_FAILED"


@pytest.fixture(scope="module")
def tls() -> SimulatorTLS:
    return SimulatorTLS()


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


async def _kite(nursery: trio.Nursery, tls: SimulatorTLS, **options: Any) -> tuple[KiteSimulator, str]:
    sim = KiteSimulator(**options)
    url: str = await nursery.start(lambda task_status: sim.serve(tls=tls, task_status=task_status))
    return sim, url


async def _kite_rest(nursery: trio.Nursery, tls: SimulatorTLS) -> tuple[KiteSimulator, str]:
    sim = KiteSimulator()
    url: str = await nursery.start(lambda task_status: sim.serve_rest(tls=tls, task_status=task_status))
    return sim, url


async def _xts(nursery: trio.Nursery, tls: SimulatorTLS, **options: Any) -> tuple[XtsSimulator, str]:
    sim = XtsSimulator(**options)
    root: str = await nursery.start(lambda task_status: sim.serve(tls=tls, task_status=task_status))
    return sim, root


async def _start(kind: str, nursery: trio.Nursery, tls: SimulatorTLS) -> str:
    if kind == "kite":
        return (await _kite(nursery, tls))[1]
    if kind == "kite-rest":
        return (await _kite_rest(nursery, tls))[1]
    return (await _xts(nursery, tls))[1]


async def _handshake(url: str, context: ssl.SSLContext, server_hostname: str | None = None) -> dict[str, Any]:
    """A bare TLS handshake with the server at `url`; the peer certificate on success."""
    host, port = _address(url)
    stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=context, https_compatible=True)
    if server_hostname is not None:  # the name the client expects (not the one it dialled)
        stream = trio.SSLStream(stream.transport_stream, context, server_hostname=server_hostname)
    try:
        await stream.do_handshake()
        cert = stream.getpeercert()
        assert isinstance(cert, dict)
        return dict(cert)
    finally:
        await trio.aclose_forcefully(stream)


def _causes(error: BaseException) -> list[BaseException]:
    """`error` and its chain of causes and contexts."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info is not None or r.levelno >= logging.WARNING]
    assert not bad, [r.getMessage() for r in bad]


@asynccontextmanager
async def _trusted_ws(
    url: str, tls: SimulatorTLS, target: str = f"/?api_key={DEMO_API_KEY}&access_token={DEMO_ACCESS_TOKEN}"
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A trio-websocket client, trusting `tls`, on a stream the test owns and closes (trio-websocket
    0.12's ``open_websocket_url`` leaves its socket open when the server drops the connection)."""
    host, port = _address(url)
    stream = await trio.open_ssl_over_tcp_stream(
        host, port, ssl_context=tls.client_context(), https_compatible=True
    )
    async with stream, trio.open_nursery() as nursery:
        ws = await trio_websocket.wrap_client_stream(nursery, stream, host, target)
        try:
            yield ws
        finally:
            await ws.aclose()


# ---------------------------------------------------------------------------------------------------------
# SimulatorTLS


def test_ca_pem_is_a_certificate_and_no_key(tls: SimulatorTLS) -> None:
    pem = tls.ca_pem
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY" not in pem
    assert "PRIVATE" not in repr(tls)
    assert "localhost" in repr(tls)
    der = ssl.PEM_cert_to_DER_cert(pem.decode())
    assert len(der) > 100


def test_write_ca_writes_the_pem_and_returns_the_path(tls: SimulatorTLS, tmp_path: Path) -> None:
    written = tls.write_ca(tmp_path / "ca.pem")
    assert written == tmp_path / "ca.pem"
    assert written.read_bytes() == tls.ca_pem
    assert tls.write_ca(str(tmp_path / "again.pem")).read_bytes() == tls.ca_pem
    context = ssl.create_default_context(cafile=str(written))  # what the CLI banner tells users to do
    assert len(context.get_ca_certs()) >= 1
    with pytest.raises(ConfigurationError, match="path"):
        tls.write_ca(42)  # type: ignore[arg-type]


def test_client_context_verifies_and_trusts_only_this_ca(tls: SimulatorTLS) -> None:
    context = tls.client_context()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert len(context.get_ca_certs()) == 1  # not the system's CAs
    assert context.get_ca_certs()[0]["subject"] == context.get_ca_certs()[0]["issuer"]
    assert tls.client_context() is not context  # a fresh one each time: callers may change theirs


@pytest.mark.parametrize("kind", ["kite", "kite-rest", "xts"])
async def test_each_server_presents_the_certificate_for_loopback(
    kind: str, tls: SimulatorTLS, nursery: trio.Nursery
) -> None:
    with trio.fail_after(10):
        url = await _start(kind, nursery, tls)
        assert url.startswith("https://" if kind != "kite" else "wss://")
        assert _address(url)[0] == "127.0.0.1"
        cert = await _handshake(url, tls.client_context())
        names = {value for _kind, value in cert["subjectAltName"]}
        assert {"localhost", "127.0.0.1"} <= names


@pytest.mark.parametrize("kind", ["kite", "kite-rest", "xts"])
async def test_a_client_without_the_ca_fails_verification_and_the_server_serves_on(
    kind: str, tls: SimulatorTLS, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(10):
        url = await _start(kind, nursery, tls)
        for _ in range(3):  # the system's trust store has never heard of this CA
            with pytest.raises(trio.BrokenResourceError) as info:
                await _handshake(url, ssl.create_default_context())
            assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
            assert VERIFY_FAILED in str(info.value.__cause__)
        with pytest.raises(trio.BrokenResourceError) as info:  # another throwaway CA: no better
            await _handshake(url, SimulatorTLS().client_context())
        assert VERIFY_FAILED in str(info.value.__cause__)
        with pytest.raises(trio.BrokenResourceError) as info:  # the right CA, the wrong name
            await _handshake(url, tls.client_context(), server_hostname="example.com")
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
        assert "example.com" in str(info.value.__cause__)
        # and a trusting client still gets in
        assert await _handshake(url, tls.client_context())
    _no_tracebacks(caplog)


@pytest.mark.parametrize("method", ["serve", "serve_rest", "xts"])
async def test_tls_must_be_a_simulator_tls(method: str) -> None:
    serve = XtsSimulator().serve if method == "xts" else getattr(KiteSimulator(), method)
    with pytest.raises(ConfigurationError, match="tls"):
        await serve(tls=ssl.create_default_context())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# Kite over wss:// and https://


async def test_kite_streams_over_wss_to_a_trusting_client(tls: SimulatorTLS, nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim, url = await _kite(nursery, tls, tick_interval=0.05)
        async with _trusted_ws(url, tls) as ws:
            await ws.send_message(json.dumps({"a": "mode", "v": ["full", [INFY]]}))
            while True:
                message = await ws.get_message()
                if isinstance(message, bytes) and len(message) > 1:
                    break
            ticks = decode_frame(message)
            assert [t.instrument_token for t in ticks if isinstance(t, Tick)] == [INFY]
        assert sim.statistics().handshakes_accepted == 1


async def test_kite_plain_ws_to_the_wss_port_is_dropped_and_the_server_serves_on(
    tls: SimulatorTLS, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trading_ws.sim")
    with trio.fail_after(10):
        sim, url = await _kite(nursery, tls)
        host, port = _address(url)
        async with await trio.open_tcp_stream(host, port) as stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
            assert await stream.receive_some() == b""  # closed, no answer in clear
        async with _trusted_ws(url, tls) as ws:
            await ws.ping()
        assert sim.statistics().handshakes_accepted == 1
    assert any("TLS handshake failed" in r.getMessage() for r in caplog.records)
    _no_tracebacks(caplog)


@pytest.mark.parametrize("kind", ["kite", "kite-rest", "xts"])
async def test_a_client_that_never_finishes_its_handshake_is_dropped(
    kind: str,
    tls: SimulatorTLS,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trading_ws.sim")
    url = await _start(kind, nursery, tls)
    async with await trio.open_tcp_stream(*_address(url)) as stream:
        with trio.fail_after(15):  # virtual seconds: the server gives up after 10
            assert await stream.receive_some() == b""  # it closed the connection, never answered
    if kind != "xts":  # hypercorn drops it without a word
        assert any("TLS handshake failed (timed out)" in r.getMessage() for r in caplog.records)
    assert await _handshake(url, tls.client_context())  # and it serves on
    _no_tracebacks(caplog)


async def test_kite_drop_connections_resets_a_tls_connection(
    tls: SimulatorTLS, nursery: trio.Nursery
) -> None:
    with trio.fail_after(10):
        sim, url = await _kite(nursery, tls)
        async with _trusted_ws(url, tls) as ws:
            await ws.ping()
            assert sim.drop_connections() == 1
            with pytest.raises(trio_websocket.ConnectionClosed) as info:
                await ws.get_message()
            assert info.value.reason is not None
            assert info.value.reason.code == 1006


async def test_kite_rest_instrument_master_over_https(tls: SimulatorTLS, nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        _sim, rest = await _kite_rest(nursery, tls)
        assert rest.startswith("https://127.0.0.1:")
        headers = {"Authorization": f"token {DEMO_API_KEY}:{DEMO_ACCESS_TOKEN}"}
        async with httpx.AsyncClient(verify=tls.client_context()) as client:
            response = await client.get(f"{rest}/instruments/NSE", headers=headers)
        assert response.status_code == 200
        assert response.text.startswith("instrument_token,")
        async with httpx.AsyncClient() as untrusting:  # certifi's roots
            with pytest.raises(httpx.ConnectError) as info:
                await untrusting.get(f"{rest}/instruments/NSE", headers=headers)
        assert VERIFY_FAILED in repr(_causes(info.value))


async def test_the_kite_feed_streams_over_wss(tls: SimulatorTLS, nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        _sim, url = await _kite(nursery, tls, tick_interval=0.05)
        async with open_kite_feed(
            DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, ssl_context=tls.client_context()
        ) as feed:
            await feed.subscribe([INFY], "ltp")
            async for event in feed:
                if isinstance(event, Tick):
                    assert event.instrument_token == INFY
                    break


# ---------------------------------------------------------------------------------------------------------
# XTS over https:// and wss://


async def test_xts_rest_and_socket_over_tls(tls: SimulatorTLS, nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim, root = await _xts(nursery, tls, tick_interval=0.05)
        assert root.startswith("https://127.0.0.1:")
        async with httpx.AsyncClient(base_url=root, verify=tls.client_context()) as client:
            response = await client.post(LOGIN, json={"appKey": DEMO_APP_KEY, "secretKey": DEMO_SECRET_KEY})
            assert response.status_code == 200, response.text
            login = response.json()["result"]
        target = (
            f"/apimarketdata/socket.io/?token={login['token']}&userID={login['userID']}"
            "&publishFormat=JSON&broadcastMode=Full&transport=websocket&EIO=3"
        )
        async with _trusted_ws(root, tls, target) as ws:
            assert str(await ws.get_message()).startswith("0{")  # the Engine.IO open packet
            assert await ws.get_message() == "40"
            assert sim.drop_connections() == 1  # reaches the TCP stream under TLS
            with pytest.raises(trio_websocket.ConnectionClosed) as info:
                while True:
                    await ws.get_message()
            assert info.value.reason is not None
            assert info.value.reason.code == 1006


async def test_the_xts_feed_streams_over_https_and_wss(tls: SimulatorTLS, nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        _sim, root = await _xts(nursery, tls, tick_interval=0.05)
        async with open_xts_feed(
            DEMO_APP_KEY,
            DEMO_SECRET_KEY,
            root_url=root,
            ssl_context=tls.client_context(),
            logout_on_exit=False,
        ) as feed:
            await feed.subscribe([RELIANCE_XTS], "quote")
            async for event in feed:
                if isinstance(event, Tick):
                    assert (event.segment, event.instrument_token) == RELIANCE_XTS
                    break


# ---------------------------------------------------------------------------------------------------------
# The official clients, given the CA

_KITETICKER = textwrap.dedent(
    """
    import json, sys, types
    from urllib.parse import urlsplit

    import kiteconnect.ticker
    from kiteconnect import KiteTicker
    from twisted.internet import ssl

    url, api_key, access_token, cafile = sys.argv[1:5]
    # KiteTicker.connect() builds twisted's ClientContextFactory, which checks no certificate at all. Give
    # it twisted's verifying options instead, trusting only `cafile`, for the host it dials.
    with open(cafile, "rb") as file:
        trust = ssl.Certificate.loadPEM(file.read())
    host = urlsplit(url).hostname
    kiteconnect.ticker.ssl = types.SimpleNamespace(
        ClientContextFactory=lambda: ssl.optionsForClientTLS(host, trustRoot=trust)
    )

    kws = KiteTicker(api_key, access_token, root=url, reconnect=False, connect_timeout=5)
    result = {"ticks": [], "closed": None}

    def on_connect(ws, response):
        ws.subscribe([408065])
        ws.set_mode(ws.MODE_LTP, [408065])

    def on_ticks(ws, batch):
        result["ticks"].extend(batch)
        if len(result["ticks"]) >= 2:
            kws.stop()

    def on_close(ws, code, reason):
        result["closed"] = [code, str(reason)]
        kws.stop()

    kws.on_connect = on_connect
    kws.on_ticks = on_ticks
    kws.on_close = on_close
    kws.connect()
    print(json.dumps(result, default=str))
    """
)


async def _kiteticker(url: str, cafile: Path, tmp_path: Path) -> dict[str, Any]:
    script = tmp_path / "kiteticker.py"
    script.write_text(_KITETICKER)
    done = await trio.run_process(
        [sys.executable, str(script), url, DEMO_API_KEY, DEMO_ACCESS_TOKEN, str(cafile)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


async def test_official_kiteticker_connects_over_wss_given_the_ca(
    tls: SimulatorTLS, nursery: trio.Nursery, tmp_path: Path
) -> None:
    pytest.importorskip("kiteconnect")
    with trio.fail_after(30):
        sim, url = await _kite(nursery, tls, tick_interval=0.05)
        result = await _kiteticker(url, tls.write_ca(tmp_path / "ca.pem"), tmp_path)
        assert len(result["ticks"]) >= 2
        assert {t["instrument_token"] for t in result["ticks"]} == {INFY}
        assert sim.statistics().handshakes_accepted == 1
        # The same client trusting another CA is refused by its own verification: its TLS is real.
        other = SimulatorTLS().write_ca(tmp_path / "other.pem")
        refused = await _kiteticker(url, other, tmp_path)
        assert refused["ticks"] == []
        assert refused["closed"] is not None
        assert "certificate verify failed" in refused["closed"][1]
        assert sim.statistics().handshakes_accepted == 1


_SOCKETIO = textwrap.dedent(
    """
    import json, sys, threading
    import socketio

    root, token, user = sys.argv[1:4]
    client = socketio.Client(reconnection=False)
    got = threading.Event()

    @client.on("1501-json-full")
    def touchline(data):
        print("1501", data, flush=True)
        got.set()

    url = root + "/?token=" + token + "&userID=" + user + "&publishFormat=JSON&broadcastMode=Full"
    try:
        client.connect(
            url, transports=["websocket"], namespaces=None, socketio_path="/apimarketdata/socket.io"
        )
    except socketio.exceptions.ConnectionError as exc:
        reasons = []
        while exc is not None:  # the ssl error is in the context chain
            reasons.append(repr(exc))
            exc = exc.__cause__ or exc.__context__
        print("refused", " <- ".join(reasons), flush=True)
        sys.exit(3)
    ok = got.wait(10)
    client.disconnect()
    sys.exit(0 if ok else 1)
    """
)


async def test_official_socketio_client_connects_over_wss_given_the_ca(
    tls: SimulatorTLS, nursery: trio.Nursery, tmp_path: Path
) -> None:
    socketio = pytest.importorskip("socketio")
    engineio = pytest.importorskip("engineio")
    if not socketio.__version__.startswith("4.") or not engineio.__version__.startswith("3."):
        pytest.skip("needs python-socketio 4.x with python-engineio 3.x (the official XTS SDK's pins)")
    script = tmp_path / "sdk_client.py"
    script.write_text(_SOCKETIO)
    cafile = tls.write_ca(tmp_path / "ca.pem")
    with trio.fail_after(30):
        sim, root = await _xts(nursery, tls, tick_interval=0.05)
        async with httpx.AsyncClient(base_url=root, verify=tls.client_context()) as client:
            response = await client.post(LOGIN, data={"appKey": DEMO_APP_KEY, "secretKey": DEMO_SECRET_KEY})
            login = response.json()["result"]
            response = await client.post(
                SUBSCRIPTION,
                json={
                    "instruments": [{"exchangeSegment": 1, "exchangeInstrumentID": 2885}],
                    "xtsMessageCode": 1501,
                },
                headers={"Authorization": login["token"]},
            )
            assert response.status_code == 200, response.text
        argv = [sys.executable, str(script), root, login["token"], login["userID"]]
        env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
        # websocket-client (engineio 3's WebSocket transport) reads its CA bundle from this variable.
        trusting = await trio.run_process(
            argv,
            env={**env, "WEBSOCKET_CLIENT_CA_BUNDLE": str(cafile)},
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        output = trusting.stdout.decode()
        assert trusting.returncode == 0, output + trusting.stderr.decode()
        touchline = json.loads(output.splitlines()[0].split(" ", 1)[1])
        assert (touchline["MessageCode"], touchline["ExchangeInstrumentID"]) == (1501, 2885)
        # Without the CA the same client refuses the server: its verification is on.
        untrusting = await trio.run_process(
            argv, env=env, capture_stdout=True, capture_stderr=True, check=False
        )
        assert untrusting.returncode == 3, untrusting.stdout.decode() + untrusting.stderr.decode()
        assert VERIFY_FAILED in untrusting.stdout.decode()
        assert sim.statistics().sockets_accepted == 1
