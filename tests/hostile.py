"""Hostile brokers for tests: loopback servers that answer the way no honest broker would.

`serve` runs a raw TCP handler (for malformed HTTP/WebSocket handshakes); `HostileXts` is a minimal XTS
front (REST login/logout over h11, then a scripted Engine.IO/Socket.IO session over a real WebSocket) whose
every answer a test can script: the open packet's timings, a refusal echoing the token, an ``error`` or
``logout`` event, a close reason, a server that ignores the close frame and the logout.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import h11
import trio
import trio_websocket

TOKEN = "JWT.eyJhbGciOiJIUzI1NiJ9.hostile-token-0123456789"
USER_ID = "HOSTILE1"

Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def serve(nursery: trio.Nursery, handler: Handler) -> int:
    """Serve `handler` on a free loopback port until the nursery ends; returns the port."""
    listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def read_request(stream: trio.SocketStream) -> bytes:
    """The raw bytes of one HTTP request head (up to the blank line)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        data += chunk
    return data


def accept_key(request: bytes) -> bytes:
    """The correct Sec-WebSocket-Accept for a request head."""
    import hashlib

    for line in request.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            digest = hashlib.sha1(value.strip() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
            return base64.b64encode(digest)
    return b""


class _Replay(trio.abc.Stream):
    """A stream that hands out `prefix` before reading on: lets h11 read a request head, then gives the
    whole upgrade request to trio-websocket."""

    def __init__(self, stream: trio.SocketStream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            await trio.lowlevel.checkpoint()
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


Script = Callable[[trio_websocket.WebSocketConnection], Awaitable[None]]


async def eio_open(
    ws: trio_websocket.WebSocketConnection, ping_interval_ms: float, ping_timeout_ms: float
) -> None:
    """Send an Engine.IO open packet with the given timings, then the Socket.IO connect."""
    payload = {
        "sid": "H" * 20,
        "upgrades": [],
        "pingInterval": ping_interval_ms,
        "pingTimeout": ping_timeout_ms,
    }
    await ws.send_message("0" + json.dumps(payload))
    await ws.send_message("40")


async def answer_pings(ws: trio_websocket.WebSocketConnection) -> None:
    """Answer every client ping until the connection ends."""
    try:
        while True:
            if await ws.get_message() == "2":
                await ws.send_message("3")
    except trio_websocket.ConnectionClosed:
        return


@attrs.define
class HostileXts:
    """An XTS front whose socket session is `script` (default: open, connect, answer pings).

    `logout_hang` makes ``DELETE /auth/logout`` never answer, `subscribe_hang` the subscribe route
    (``POST /instruments/subscription``). `login_answer` replaces the login reply.
    """

    script: Script | None = None
    logout_hang: bool = False
    subscribe_hang: bool = False
    login_answer: dict[str, Any] | None = None
    sockets: int = 0
    logins: int = 0
    logouts: int = 0

    @property
    def token(self) -> str:
        return TOKEN

    async def handle(self, stream: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            await self._handle(stream)

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        raw = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                raw += data
                conn.receive_data(data)
                continue
            if not isinstance(event, h11.Request):
                return
            target = event.target.decode()
            headers = {k.lower(): v for k, v in event.headers}
            if headers.get(b"upgrade", b"").lower() == b"websocket":
                self.sockets += 1
                await self._socket(stream, raw)
                return
            body = b""
            while True:
                part = conn.next_event()
                if part is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    conn.receive_data(data)
                    continue
                if isinstance(part, h11.Data):
                    body += part.data
                    continue
                break
            status, answer = await self._rest(event.method.decode(), target)
            payload = json.dumps(answer).encode()
            out = conn.send(
                h11.Response(
                    status_code=status,
                    headers=[("content-type", "application/json"), ("content-length", str(len(payload)))],
                )
            )
            out += conn.send(h11.Data(data=payload)) + conn.send(h11.EndOfMessage())
            await stream.send_all(out)
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
            raw = b""

    async def _rest(self, method: str, target: str) -> tuple[int, dict[str, Any]]:
        if target.endswith("/auth/login"):
            self.logins += 1
            if self.login_answer is not None:
                return 200, self.login_answer
            session = {"token": TOKEN, "userID": USER_ID, "appVersion": "1.0"}
            return 200, {"type": "success", "code": "s-user-0001", "description": "ok", "result": session}
        if target.endswith("/auth/logout"):
            self.logouts += 1
            if self.logout_hang:
                await trio.sleep_forever()
            return 200, {"type": "success", "code": "s-user-0002", "description": "bye", "result": {}}
        if target.endswith("/instruments/subscription"):
            if method == "POST" and self.subscribe_hang:
                await trio.sleep_forever()
            answer: dict[str, Any] = {"listQuotes": [], "Remaining_Subscription_Count": 40}
            return 200, {"type": "success", "code": "s-session-0001", "description": "ok", "result": answer}
        return 404, {"type": "error", "code": "e-404", "description": "not here", "result": {}}

    async def _socket(self, stream: trio.SocketStream, raw: bytes) -> None:
        async with trio.open_nursery() as nursery:
            request = await trio_websocket.wrap_server_stream(nursery, _Replay(stream, raw))
            ws = await request.accept()
            script = self.script or _default_script
            with contextlib.suppress(trio_websocket.ConnectionClosed):
                await script(ws)
            nursery.cancel_scope.cancel()


async def _default_script(ws: trio_websocket.WebSocketConnection) -> None:
    await eio_open(ws, 25000, 60000)
    await answer_pings(ws)


# ---------------------------------------------------------------------------------------------------------
# TLS in front of a plain loopback server (issue 10: certificate failures), the certificate chosen per
# connection so that a test can rotate it.

ContextFor = Callable[[int], "ssl.SSLContext | None"]


@attrs.define
class TlsFront:
    """A TLS front for a plain loopback server on port `backend` (a simulator, `HostileXts`...).

    Each accepted connection gets the server context `context_for(n)` picks (`n` counts connections from
    1): the TLS handshake is made with it, then the bytes are relayed to ``127.0.0.1:backend``. A context
    of None answers like a plain HTTP server instead (a TLS protocol error for a client). `drop` ends every
    relayed connection (the broker lost them). Serve it with ``serve(nursery, front.handle)``.
    """

    backend: int
    context_for: ContextFor
    connections: int = 0
    """Connections accepted."""
    handshakes: int = 0
    """TLS handshakes completed (the client trusted the certificate)."""
    refused: int = 0
    """TLS handshakes the client broke off (or answered plain HTTP to)."""
    _scopes: set[trio.CancelScope] = attrs.field(factory=set, init=False)

    def drop(self) -> None:
        """End every relayed connection now."""
        for scope in list(self._scopes):
            scope.cancel()

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        context = self.context_for(self.connections)
        if context is None:
            async with stream:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await stream.receive_some(65536)
                    await stream.send_all(
                        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    )
            self.refused += 1
            return
        tls = trio.SSLStream(stream, context, server_side=True)
        try:
            await tls.do_handshake()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.refused += 1
            await trio.aclose_forcefully(stream)
            return
        self.handshakes += 1
        backend = await trio.open_tcp_stream("127.0.0.1", self.backend)
        scope = trio.CancelScope()
        self._scopes.add(scope)
        try:
            with scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_pipe, tls, backend, nursery.cancel_scope)
                    nursery.start_soon(_pipe, backend, tls, nursery.cancel_scope)
        finally:
            self._scopes.discard(scope)
            await trio.aclose_forcefully(backend)
            await trio.aclose_forcefully(tls)


async def _pipe(source: trio.abc.Stream, sink: trio.abc.Stream, done: trio.CancelScope) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    done.cancel()
