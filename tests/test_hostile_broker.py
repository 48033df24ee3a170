"""The feeds against hostile brokers: malformed handshakes, echoed secrets, server-chosen timings, a server
that ignores the close and the logout. Each test states the rule it holds the library to."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import traceback
from collections.abc import Callable

import hostile
import pytest
import trio
import trio_websocket
import trustme

from trading_ws import (
    AuthenticationError,
    Backoff,
    BrokerError,
    BrokerMessage,
    Connected,
    ConnectError,
    ConnectTimeout,
    Disconnected,
    Event,
    KiteBroker,
    Mode,
    Reconnecting,
    Tick,
    open_market_data,
)
from trading_ws.brokers.kite import open_kite_feed
from trading_ws.brokers.xts import open_xts_feed
from trading_ws.sim import kite_instruments_csv

API_KEY = "hostile_key"
ACCESS_TOKEN = "hostile-access-token-0123456789"
FAST = Backoff(initial=0.05, factor=2.0, cap=0.2, jitter=0.0)

# A Kite LTP packet for token 408065 at ₹1234.50, in a frame of one packet.
LTP_FRAME = b"\x00\x01\x00\x08" + (408065).to_bytes(4, "big") + (123450).to_bytes(4, "big")


# ---------------------------------------------------------------------------------------------------------
# Malformed handshake answers


def _wrong_accept(request: bytes) -> bytes:
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )


def _no_upgrade_headers(request: bytes) -> bytes:
    return b"HTTP/1.1 101 Switching Protocols\r\n\r\n"


def _garbage_status(request: bytes) -> bytes:
    return b"HELLO THERE\r\n\r\n"


def _bad_header_line(request: bytes) -> bytes:
    return b"HTTP/1.1 101 Switching Protocols\r\nno colon here\r\n\r\n"


def _ok_with_body(request: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def _binary_junk(request: bytes) -> bytes:
    return bytes(range(256)) * 4


def _endless_headers(request: bytes) -> bytes:
    return b"HTTP/1.1 101 Switching Protocols\r\n" + b"X-Pad: " + b"a" * 200_000 + b"\r\n"


BAD_ANSWERS: dict[str, Callable[[bytes], bytes]] = {
    "wrong Sec-WebSocket-Accept": _wrong_accept,
    "101 without upgrade headers": _no_upgrade_headers,
    "garbage status line": _garbage_status,
    "header line without colon": _bad_header_line,
    "200 with a body": _ok_with_body,
    "binary junk": _binary_junk,
    "a header block that never ends": _endless_headers,
}


def _malformed(answer: Callable[[bytes], bytes]) -> hostile.Handler:
    async def handler(stream: trio.SocketStream) -> None:
        request = await hostile.read_request(stream)
        try:
            await stream.send_all(answer(request))
            await trio.sleep(30)  # keep the socket open: a client must not wait for us to close it
        except trio.BrokenResourceError:
            pass

    return handler


@pytest.mark.parametrize("answer", BAD_ANSWERS.values(), ids=list(BAD_ANSWERS))
async def test_a_malformed_handshake_fails_the_first_connect_with_a_typed_error(
    answer: Callable[[bytes], bytes], autojump_clock: trio.abc.Clock
) -> None:
    """Rule: whatever a broker answers to the handshake, opening the feed raises a ConnectError (never a
    raw h11/wsproto/trio-websocket error, never an exception group), with the cause kept."""
    async with trio.open_nursery() as nursery:
        port = await hostile.serve(nursery, _malformed(answer))
        with pytest.raises(ConnectError) as caught:
            async with open_kite_feed(API_KEY, ACCESS_TOKEN, url=f"ws://127.0.0.1:{port}", connect_timeout=3):
                pytest.fail("the handshake cannot succeed")
        assert not isinstance(caught.value, BaseExceptionGroup)
        text = "".join(traceback.format_exception(caught.value))
        assert ACCESS_TOKEN not in text
        nursery.cancel_scope.cancel()


async def _good_kite(stream: trio.SocketStream, frames: int) -> None:
    async with trio.open_nursery() as nursery:
        request = await trio_websocket.wrap_server_stream(nursery, stream)
        ws = await request.accept()
        for _ in range(frames):
            await ws.send_message(LTP_FRAME)
            await trio.sleep(0.1)
        await ws.aclose()
        nursery.cancel_scope.cancel()


def _kite_script(bad: set[int], answer: Callable[[bytes], bytes]) -> tuple[hostile.Handler, list[int]]:
    """Connection n (from 0) is malformed when n is in `bad`, else a good one sending 3 frames."""
    count = [0]

    async def handler(stream: trio.SocketStream) -> None:
        n = count[0]
        count[0] += 1
        if n in bad:
            await _malformed(answer)(stream)
        else:
            with contextlib.suppress(trio.BrokenResourceError, trio_websocket.ConnectionClosed):
                await _good_kite(stream, 3)

    return handler, count


@pytest.mark.parametrize("answer", BAD_ANSWERS.values(), ids=list(BAD_ANSWERS))
async def test_a_malformed_handshake_on_a_reconnect_is_a_failed_attempt(
    answer: Callable[[bytes], bytes], autojump_clock: trio.abc.Clock
) -> None:
    """Rule: after the first connection, a malformed handshake is one failed attempt: the feed reports it,
    backs off, and connects again (here: connections 1 and 2 are malformed, 3 is good)."""
    handler, count = _kite_script({1, 2}, answer)
    async with trio.open_nursery() as nursery:
        port = await hostile.serve(nursery, handler)
        seen: list[Event] = []
        async with open_kite_feed(
            API_KEY, ACCESS_TOKEN, url=f"ws://127.0.0.1:{port}", backoff=FAST, connect_timeout=3
        ) as feed:
            connected = 0
            async for event in feed:
                seen.append(event)
                if isinstance(event, Connected):
                    connected += 1
                    if connected == 2:
                        break
        kinds = [type(e) for e in seen if not isinstance(e, Tick)]
        assert kinds == [
            Connected,
            Disconnected,  # the good connection closed
            Reconnecting,
            Disconnected,  # malformed
            Reconnecting,
            Disconnected,  # malformed
            Reconnecting,
            Connected,
        ]
        assert count[0] == 4
        assert feed.statistics().connects == 2
        reconnecting = [e for e in seen if isinstance(e, Reconnecting)]
        assert [e.attempt for e in reconnecting] == [1, 2, 3]
        assert [e.delay for e in reconnecting] == [0.05, 0.1, 0.2]  # backoff, not a retry storm
        nursery.cancel_scope.cancel()


async def _close_before_answer(stream: trio.SocketStream) -> None:
    await hostile.read_request(stream)
    await stream.aclose()


async def _reset_before_answer(stream: trio.SocketStream) -> None:
    await hostile.read_request(stream)
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()  # an RST, not a FIN


@pytest.mark.parametrize("handler", [_close_before_answer, _reset_before_answer], ids=["close", "reset"])
async def test_a_connection_ended_before_the_answer_fails_at_once(handler: hostile.Handler) -> None:
    """Rule: a broker that ends the connection before answering the handshake is reported at once, not
    after the whole connect timeout (trio-websocket alone would wait it out)."""
    async with trio.open_nursery() as nursery:
        port = await hostile.serve(nursery, handler)
        start = trio.current_time()
        with pytest.raises(ConnectError) as caught:
            async with open_kite_feed(
                API_KEY, ACCESS_TOKEN, url=f"ws://127.0.0.1:{port}", connect_timeout=10
            ):
                pytest.fail("no handshake")
        assert trio.current_time() - start < 2
        assert not isinstance(caught.value, ConnectTimeout)
        nursery.cancel_scope.cancel()


async def test_an_untrusted_certificate_fails_at_once_as_itself() -> None:
    """Rule: a TLS failure is reported as itself within the handshake's time, with the verification
    error in the message and kept as the cause — not as a timeout after connect_timeout."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)

    async def tls_server(stream: trio.SocketStream) -> None:
        tls = trio.SSLStream(stream, server_context, server_side=True)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await tls.do_handshake()
            await trio.sleep(5)

    async with trio.open_nursery() as nursery:
        port = await hostile.serve(nursery, tls_server)
        start = trio.current_time()
        with pytest.raises(ConnectError) as caught:
            async with open_kite_feed(
                API_KEY, ACCESS_TOKEN, url=f"wss://127.0.0.1:{port}", connect_timeout=10
            ):
                pytest.fail("the certificate is not trusted")
        assert trio.current_time() - start < 2
        assert not isinstance(caught.value, ConnectTimeout)
        assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
        assert caught.value.__cause__ is not None
        # The same context trusting the CA connects (the failure was the certificate, nothing else).
        client_context = ssl.create_default_context()
        ca.configure_trust(client_context)
        with pytest.raises(ConnectError, match=r"handshake|closed"):  # TLS is fine; our server speaks no HTTP
            async with open_kite_feed(
                API_KEY,
                ACCESS_TOKEN,
                url=f"wss://127.0.0.1:{port}",
                ssl_context=client_context,
                connect_timeout=1,
            ):
                pytest.fail("no WebSocket server behind the TLS")
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------------------------------------------------
# Secrets echoed by the server, and control characters


def _echo_close(reason: str) -> hostile.Handler:
    async def handler(stream: trio.SocketStream) -> None:
        async with trio.open_nursery() as nursery:
            request = await trio_websocket.wrap_server_stream(nursery, stream)
            ws = await request.accept()
            await ws.send_message(LTP_FRAME)
            await ws.send_message('{"type":"error","data":"bad token ' + ACCESS_TOKEN + '\\r\\nFAKE: line"}')
            await ws.send_message('{"type":"message","data":"hello ' + ACCESS_TOKEN + '"}')
            await trio.sleep(0.1)
            with contextlib.suppress(trio_websocket.ConnectionClosed):
                await ws.aclose(code=4000, reason=reason)
            nursery.cancel_scope.cancel()

    return handler


async def test_kite_scrubs_the_token_and_control_characters_from_every_server_text(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Rule: a server that echoes the access token (plain or URL-encoded) and injects CR/LF in a close
    reason or a text message puts neither into events, logs or exceptions."""
    caplog.set_level(logging.DEBUG)
    reason = f"go away {ACCESS_TOKEN}\r\nINJECTED: yes"
    async with trio.open_nursery() as nursery:
        port = await hostile.serve(nursery, _echo_close(reason))
        events: list[Event] = []
        async with open_kite_feed(API_KEY, ACCESS_TOKEN, url=f"ws://127.0.0.1:{port}", backoff=FAST) as feed:
            async for event in feed:
                events.append(event)
                if isinstance(event, Reconnecting):
                    break
        nursery.cancel_scope.cancel()
    texts = [repr(e) for e in events] + [caplog.text]
    assert all(ACCESS_TOKEN not in text for text in texts)
    assert all("\r\nINJECTED" not in text and "\nFAKE" not in text for text in texts)
    errors = [e for e in events if isinstance(e, BrokerError)]
    messages = [e for e in events if isinstance(e, BrokerMessage)]
    assert errors
    assert "***" in errors[0].text
    assert "\\r\\n" in errors[0].text
    assert messages
    assert messages[0].text == "hello ***"
    lost = next(e for e in events if isinstance(e, Disconnected))
    assert "4000" in lost.reason
    assert "***" in lost.reason
    assert "\\r\\n" in lost.reason


async def test_kite_403_echoing_the_token_leaks_it_nowhere(autojump_clock: trio.abc.Clock) -> None:
    """Rule: a refusal whose body echoes the token gives an AuthenticationError whose message, cause
    chain and traceback hold no token."""

    async def handler(stream: trio.SocketStream) -> None:
        request = await hostile.read_request(stream)
        body = b"token " + ACCESS_TOKEN.encode() + b" refused; you sent " + request[:200]
        await stream.send_all(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\nX-Echo: %s\r\n\r\n%s"
            % (len(body), ACCESS_TOKEN.encode(), body)
        )
        await trio.sleep(5)

    async with trio.open_nursery() as nursery:
        port = await hostile.serve(nursery, handler)
        with pytest.raises(AuthenticationError) as caught:
            async with open_kite_feed(API_KEY, ACCESS_TOKEN, url=f"ws://127.0.0.1:{port}"):
                pytest.fail("refused")
        assert ACCESS_TOKEN not in "".join(traceback.format_exception(caught.value))
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------------------------------------------------
# XTS: server-chosen timings, echoed secrets, a server that ignores the close and the logout


async def _xts_server(nursery: trio.Nursery, front: hostile.HostileXts) -> str:
    port = await hostile.serve(nursery, front.handle)
    return f"http://127.0.0.1:{port}"


async def test_xts_clamps_a_tiny_ping_interval(autojump_clock: trio.abc.Clock) -> None:
    """Rule: a server's pingInterval of 1 ms does not make the client ping a thousand times a second."""
    pings = [0]

    async def script(ws: trio_websocket.WebSocketConnection) -> None:
        await hostile.eio_open(ws, 1, 1)
        while True:
            if await ws.get_message() == "2":
                pings[0] += 1
                await ws.send_message("3")

    front = hostile.HostileXts(script=script)
    async with trio.open_nursery() as nursery:
        root = await _xts_server(nursery, front)
        async with open_xts_feed("app", "secret-key-0123", root_url=root) as feed:
            start = trio.current_time()
            await trio.sleep(10)
            elapsed = trio.current_time() - start
            assert feed.connected
        nursery.cancel_scope.cancel()
    assert 1 <= pings[0] <= elapsed + 1  # at most one a second


async def test_xts_keeps_its_own_deadline_against_a_huge_ping_timeout(autojump_clock: trio.abc.Clock) -> None:
    """Rule: pingInterval/pingTimeout of 10^12 ms do not disable dead-connection detection: a server that
    goes silent is found dead within the clamped bounds (60 + 120 s + slack)."""

    async def script(ws: trio_websocket.WebSocketConnection) -> None:
        await hostile.eio_open(ws, 1e12, 1e12)
        await trio.sleep_forever()  # never answers a ping, never sends data

    front = hostile.HostileXts(script=script)
    async with trio.open_nursery() as nursery:
        root = await _xts_server(nursery, front)
        async with open_xts_feed("app", "secret-key-0123", root_url=root, backoff=FAST) as feed:
            start = trio.current_time()
            with trio.fail_after(60 + 120 + 5 + 1 + 1):  # + close_timeout: the close frame is never answered
                event = await feed.__anext__()
                while not isinstance(event, Disconnected):
                    event = await feed.__anext__()
            assert trio.current_time() - start >= 60 + 120  # not before its time either
            assert "no pong" in event.reason
        nursery.cancel_scope.cancel()


async def test_xts_a_connection_delivering_data_is_alive_without_pongs(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Rule: late pongs alone do not drop a connection that delivers data; silence does."""
    stop = trio.Event()

    async def script(ws: trio_websocket.WebSocketConnection) -> None:
        await hostile.eio_open(ws, 2000, 2000)
        while not stop.is_set():
            await ws.send_message('42["noise",{}]')  # data, but never a pong
            await trio.sleep(1)
        await trio.sleep_forever()

    front = hostile.HostileXts(script=script)
    async with trio.open_nursery() as nursery:
        root = await _xts_server(nursery, front)
        async with open_xts_feed("app", "secret-key-0123", root_url=root, ping_timeout_slack=1) as feed:
            with trio.move_on_after(60):
                async for event in feed:
                    assert not isinstance(event, Disconnected), event
            assert feed.connected
            stop.set()
            with trio.fail_after(2 + 2 + 1 + 1 + 1):  # + close_timeout: the close frame is never answered
                async for event in feed:
                    if isinstance(event, Disconnected):
                        break
        nursery.cancel_scope.cancel()


async def test_xts_scrubs_secrets_from_refusals_error_and_logout_events(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Rule: the JWT and the secret key echoed in an ``error`` event, a ``logout`` event and a Socket.IO
    refusal reach no event, log record or exception, and CR/LF arrive escaped."""
    caplog.set_level(logging.DEBUG)
    secret = "secret-key-0123456789"
    sockets = [0]

    async def script(ws: trio_websocket.WebSocketConnection) -> None:
        sockets[0] += 1
        if sockets[0] > 1:  # the re-login's socket: refused, echoing everything
            await ws.send_message("0" + '{"sid":"x","upgrades":[],"pingInterval":25000,"pingTimeout":5000}')
            await ws.send_message('44"token ' + hostile.TOKEN + " key " + secret + '"')
            return
        await hostile.eio_open(ws, 25000, 60000)
        await ws.send_message('42["error","bad ' + hostile.TOKEN + '\\r\\nFAKE: 1"]')
        await ws.send_message('42["logout","bye ' + hostile.TOKEN + " " + secret + '"]')
        await trio.sleep_forever()

    front = hostile.HostileXts(script=script)
    events: list[Event] = []
    async with trio.open_nursery() as nursery:
        root = await _xts_server(nursery, front)
        with pytest.raises(AuthenticationError) as caught:
            async with open_xts_feed("app", secret, root_url=root, backoff=FAST) as feed:
                async for event in feed:
                    events.append(event)
        nursery.cancel_scope.cancel()
    texts = [repr(e) for e in events] + [caplog.text, "".join(traceback.format_exception(caught.value))]
    for text in texts:
        assert hostile.TOKEN not in text
        assert secret not in text
        assert "\r\nFAKE" not in text
    error = next(e for e in events if isinstance(e, BrokerError))
    assert "***" in error.text
    assert "\\r\\n" in error.text
    message = next(e for e in events if isinstance(e, BrokerMessage))
    assert message.text.count("***") == 2


async def test_xts_exit_is_bounded_when_the_server_ignores_close_and_logout(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Rule: leaving the feed takes at most close_timeout in all, even when the server neither answers the
    close frame nor the logout (it took twice that before: two shielded steps one after the other)."""

    async def script(ws: trio_websocket.WebSocketConnection) -> None:
        await hostile.eio_open(ws, 25000, 60000)
        await trio.sleep_forever()  # never answers the close frame

    front = hostile.HostileXts(script=script, logout_hang=True)
    async with trio.open_nursery() as nursery:
        root = await _xts_server(nursery, front)
        async with open_xts_feed("app", "secret-key-0123", root_url=root, close_timeout=1.0) as feed:
            assert feed.connected
            start = trio.current_time()
        assert trio.current_time() - start <= 1.0 + 1e-6
        with trio.CancelScope() as scope:  # the same when the block is left by a cancellation
            async with open_xts_feed("app", "secret-key-0123", root_url=root, close_timeout=1.0) as feed:
                assert feed.connected
                start = trio.current_time()
                scope.cancel()
                await trio.sleep(1)
        assert scope.cancelled_caught
        assert trio.current_time() - start <= 1.0 + 1e-6
        assert front.logouts == 2
        nursery.cancel_scope.cancel()


async def test_a_malformed_handshake_on_a_reconnect_through_the_manager(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Rule: through the manager too, a malformed handshake on a reconnect is a failed attempt: the
    subscription sees Disconnected/Reconnecting, then Connected and ticks again; it never ends."""
    handler, count = _kite_script({1, 2}, _wrong_accept)
    async with trio.open_nursery() as nursery:
        port = await hostile.serve(nursery, handler)
        kite = KiteBroker(
            API_KEY,
            ACCESS_TOKEN,
            url=f"ws://127.0.0.1:{port}",
            instruments=kite_instruments_csv(),
            backoff=FAST,
        )
        seen: list[Event] = []
        async with open_market_data(kite) as md, md.subscribe(["NSE:INFY"], mode=Mode.LTP) as sub:
            with trio.fail_after(30):
                async for event in sub:
                    seen.append(event)
                    if isinstance(event, Tick) and any(isinstance(e, Connected) for e in seen):
                        break
        kinds = [type(e).__name__ for e in seen if not isinstance(e, Tick)]
        assert kinds == ["Disconnected", "Reconnecting"] * 3 + ["Connected", "Resubscribed", "Gap"]
        assert count[0] == 4
        nursery.cancel_scope.cancel()


async def test_a_flapping_broker_cannot_defeat_the_attempt_budget(autojump_clock: trio.abc.Clock) -> None:
    """Rule: a broker that accepts every connection, sends a frame and drops it does not reset the
    backoff (data for less than Backoff.healthy_after is no proof of health): the delays grow, and
    max_attempts ends the feed (before, it reconnected every 0.1 s forever)."""
    count = [0]

    async def handler(stream: trio.SocketStream) -> None:
        count[0] += 1
        with contextlib.suppress(trio.BrokenResourceError, trio_websocket.ConnectionClosed):
            await _good_kite(stream, 1)

    backoff = Backoff(initial=0.1, factor=2.0, cap=1.0, jitter=0.0, max_attempts=3)
    async with trio.open_nursery() as nursery:
        port = await hostile.serve(nursery, handler)
        delays: list[float] = []
        with pytest.raises(ConnectError, match="gave up after 3 failed reconnect attempts"):
            async with open_kite_feed(
                API_KEY, ACCESS_TOKEN, url=f"ws://127.0.0.1:{port}", backoff=backoff
            ) as feed:
                async for event in feed:
                    if isinstance(event, Reconnecting):
                        delays.append(event.delay)
        assert delays == [0.1, 0.2, 0.4]
        assert count[0] == 4
        nursery.cancel_scope.cancel()


async def test_xts_a_hanging_subscribe_is_cancelled_at_once_and_records_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Rule: the caller owns the timeout. A subscribe whose REST answer never comes is cancelled when the
    caller says (not after request_timeout), records nothing, and leaving the feed stays bounded."""
    front = hostile.HostileXts(subscribe_hang=True)
    async with trio.open_nursery() as nursery:
        root = await _xts_server(nursery, front)
        async with open_xts_feed("app", "secret-key-0123", root_url=root, request_timeout=60) as feed:
            start = trio.current_time()
            with trio.move_on_after(0.2) as scope:
                await feed.subscribe([(1, 2885)], "full")
            assert scope.cancelled_caught
            assert trio.current_time() - start == pytest.approx(0.2)
            assert feed.subscriptions == {}
            leaving = trio.current_time()
        assert trio.current_time() - leaving <= 1.0 + 1e-6
        nursery.cancel_scope.cancel()


async def _refuse_every_socket(ws: trio_websocket.WebSocketConnection) -> None:
    await ws.send_message('0{"sid":"x","upgrades":[],"pingInterval":25000,"pingTimeout":5000}')
    await ws.send_message('44"token refused"')


@pytest.mark.parametrize(
    "answer",
    [ValueError("provider bug"), ConnectError("vault unreachable"), ("", ""), ("app", "bad\nkey"), None],
    ids=["raises", "raises ours", "empty keys", "newline", "not a pair"],
)
async def test_xts_a_failing_credentials_provider_ends_the_feed_typed(
    answer: object, autojump_clock: trio.abc.Clock
) -> None:
    """Rule: a credentials provider that raises or returns nonsense ends the feed with an
    AuthenticationError (never an exception group, never a raw error)."""

    async def provider() -> tuple[str, str]:
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[return-value]

    front = hostile.HostileXts(script=_refuse_every_socket)
    async with trio.open_nursery() as nursery:
        root = await _xts_server(nursery, front)
        with pytest.raises(AuthenticationError, match="provider failed"):
            async with open_xts_feed("app", "secret-key-0123", root_url=root, credentials_provider=provider):
                pytest.fail("refused")
        nursery.cancel_scope.cancel()
