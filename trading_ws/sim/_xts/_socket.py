"""The XTS simulator's ASGI application: the HTTP adapter of the REST API and the Socket.IO sockets
(Engine.IO v3 over WebSocket), with their reader, writer and ping-watchdog tasks.

Hypercorn's Trio worker runs it (``_server``). Each socket streams its session's subscriptions: the
writer wakes at each market step, on a subscription change and on a fault knob, and sends the current
step's frames (a socket that cannot keep up skips steps).
"""

from __future__ import annotations

import logging
import secrets
import string
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol
from urllib.parse import parse_qs

import attrs
import trio

from ..._errors import DecodeError
from ...brokers.xts._engineio import (
    EioClose,
    EioPing,
    EioPong,
    OpenPacket,
    SioDisconnect,
    encode_connect,
    encode_disconnect,
    encode_event,
    parse_packet,
)
from ._payloads import CANDLE, Payloads, dumps
from ._rest import SOCKET_PATH, Reply, RestApi, Session, bad_request, error

__all__ = ["App", "Socket", "SocketSettings", "find_socket_stream"]

logger = logging.getLogger("trading_ws.sim")

_MAX_BODY: Final = 1 << 20
_SID_ALPHABET: Final = string.ascii_letters + string.digits + "-_"

#: Malformed frames `XtsSimulator.send_garbage` sends, in turn.
_GARBAGE: Final[tuple[str, ...]] = (
    '42["1501-json-full","{\\"MessageCode\\":1501,\\"ExchangeSegm',  # a JSON string holding cut JSON
    '42["1501-json-full"',  # the Socket.IO JSON itself cut
    '42{"not":"a list"}',
    "42",
    "garbage that is no packet at all",
    '42["1501-json-partial","t:1_,ltp:abc,,::"]',
    "9unknown packet type",
)

_Scope = Mapping[str, Any]
_Message = Mapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[dict[str, Any]], Awaitable[None]]


def find_socket_stream(send: object) -> trio.SocketStream | None:
    """The TCP stream under a hypercorn ASGI ``send`` callable, so that a drop can reset it.

    Hypercorn (0.17, 0.18) hands the app the bound ``WSStream.app_send``; its ``send`` is the HTTP/1.1
    protocol's, whose ``send`` is the Trio ``TCPServer``'s, which holds ``stream``. ASGI has no way to
    abort a connection without a close frame, so this walks that chain; None if it is not there.
    """
    target: object = send
    for _ in range(4):
        owner = getattr(target, "__self__", None)
        if owner is None:
            return None
        stream = getattr(owner, "stream", None)
        if isinstance(stream, trio.SSLStream):  # served with tls: the TCP stream is under it
            stream = stream.transport_stream
        if isinstance(stream, trio.SocketStream):
            return stream
        target = getattr(owner, "send", None)
    return None


@attrs.define(eq=False)
class Socket:
    """One open Socket.IO connection: its session, its broadcast mode, and what its writer must do next."""

    number: int
    sid: str
    session: Session
    partial: bool
    """Partial broadcast mode (``<code>-json-partial`` events) rather than Full."""
    send: _Send = attrs.field(repr=False)
    transport: trio.SocketStream | None = attrs.field(repr=False)
    """The TCP stream under the connection (None if hypercorn hides it): what a drop resets."""
    lock: trio.Lock = attrs.field(factory=trio.Lock, repr=False)
    wake: trio.Event = attrs.field(factory=trio.Event, repr=False)
    last_ping: float = 0.0
    generation: int = 0
    """The market step this socket sent last."""
    candle_generation: int = -1
    garbage: int = 0
    """Malformed frames still to send."""
    close_code: int | None = None
    """Set to have the writer close the socket with this WebSocket code."""
    closed: bool = False
    reason: str = "client disconnected"

    def notify(self) -> None:
        """Wake the writer. Does not block."""
        self.wake.set()

    def request_close(self, code: int) -> None:
        """Have the writer send a Socket.IO disconnect and a WebSocket close with `code`. Does not block."""
        self.close_code = code
        self.wake.set()


class SocketSettings(Protocol):
    """The `XtsSimulator` settings the sockets read (a change while serving counts for new sockets)."""

    ping_interval: float
    ping_timeout: float
    joined_as_string: bool


@attrs.define(eq=False)
class App:
    """The ASGI application of one simulator: `asgi` serves REST through `rest` and the Socket.IO
    endpoint from `payloads`.

    `sockets` holds the open sockets by number; while `silent`, sockets send no events and no pongs.
    `counters` gets ``rest``, ``sockets_accepted``, ``handshakes_rejected``, ``events``, ``garbage``,
    ``pings`` and ``pongs``.
    """

    settings: SocketSettings = attrs.field(repr=False)
    rest: RestApi = attrs.field(repr=False)
    payloads: Payloads = attrs.field(repr=False)
    counters: Counter[str] = attrs.field(repr=False)
    sockets: dict[int, Socket] = attrs.field(factory=dict)
    silent: bool = False
    _opened: int = attrs.field(init=False, default=0)

    def wake_all(self) -> None:
        """Wake every socket's writer (a market step, or the end of silence). Does not block."""
        for sock in self.sockets.values():
            sock.wake.set()

    async def asgi(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        """The ASGI 3 entry point (``http``, ``websocket`` and ``lifespan`` scopes).

        Blocks for as long as the request or the socket lasts. Cancellation: the socket's tasks end and
        the socket is forgotten (its session keeps its subscriptions).
        """
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    # -----------------------------------------------------------------------------------------------------
    # HTTP

    async def _http(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"].rstrip("/") or "/"
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = bytes(message.get("body", b""))
            size += len(chunk)
            if size <= _MAX_BODY:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        self.counters["rest"] += 1
        headers = {
            bytes(k).decode("latin-1").lower(): bytes(v).decode("latin-1") for k, v in scope["headers"]
        }
        if size > _MAX_BODY:
            reply = bad_request(("body", f"larger than {_MAX_BODY} bytes"))
        elif path == SOCKET_PATH:
            reply = Reply(400, {"code": 0, "message": "Transport unknown"})
        else:
            query = bytes(scope.get("query_string", b"")).decode("latin-1")
            reply = self.rest.answer(method, path, headers, b"".join(chunks), query)
        await self._respond(send, "http", reply)

    @staticmethod
    async def _respond(send: _Send, prefix: str, reply: Reply) -> None:
        data = dumps(reply.body).encode()
        await send(
            {
                "type": f"{prefix}.response.start",
                "status": reply.status,
                "headers": [
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        await send({"type": f"{prefix}.response.body", "body": data})

    # -----------------------------------------------------------------------------------------------------
    # Socket.IO

    def _admit(self, scope: _Scope) -> tuple[Session, bool] | Reply:
        """The session and broadcast mode (True: Partial) of a handshake, or the refusal."""
        if scope["path"].rstrip("/") != SOCKET_PATH:
            return Reply(404, error("e-route-0001", "Not Found"))
        query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"), keep_blank_values=True)

        def first(name: str) -> str | None:
            values = query.get(name)
            return values[0] if values else None

        session = self.rest.session_for(first("token"))
        if session is None:
            return Reply(401, error("e-token-0001", "Invalid Token"))
        if first("userID") != session.user_id:
            return Reply(401, error("e-token-0002", "Invalid userID"))
        publish_format = (first("publishFormat") or "JSON").lower()
        if publish_format != "json":
            return Reply(400, error("e-request-0001", "Bad Request: only publishFormat=JSON is simulated"))
        mode = (first("broadcastMode") or "Full").lower()
        if mode not in ("full", "partial"):
            return Reply(400, error("e-request-0001", "Bad Request: broadcastMode must be Full or Partial"))
        return session, mode == "partial"

    async def _websocket(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        admitted = self._admit(scope)
        if isinstance(admitted, Reply):
            logger.info("XTS simulator: socket handshake refused with HTTP %d", admitted.status)
            self.counters["handshakes_rejected"] += 1
            await self._respond(send, "websocket.http", admitted)
            return
        session, partial_mode = admitted
        await send({"type": "websocket.accept"})
        self._opened += 1
        number = self._opened
        sid = "".join(secrets.choice(_SID_ALPHABET) for _ in range(20))
        sock = Socket(
            number,
            sid,
            session,
            partial_mode,
            send,
            find_socket_stream(send),
            last_ping=trio.current_time(),
            generation=self.payloads.generation,
            candle_generation=self.payloads.candle_generation,
        )
        self.sockets[number] = sock
        session.sockets.add(sock)
        self.counters["sockets_accepted"] += 1
        logger.info(
            "XTS simulator: socket %d open (session %d, %s)",
            number,
            session.number,
            "Partial" if partial_mode else "Full",
        )
        settings = self.settings
        try:
            async with trio.open_nursery() as nursery:
                await self._send(
                    sock, OpenPacket(sid, (), settings.ping_interval, settings.ping_timeout).encode()
                )
                await self._send(sock, encode_connect())
                joined = {
                    "type": "success",
                    "code": "s-socket-0001",
                    "description": f"Socket joined successfully! SocketId={sid}",
                }
                await self._send(
                    sock, encode_event("joined", dumps(joined) if settings.joined_as_string else joined)
                )
                nursery.start_soon(self._write, sock, nursery.cancel_scope)
                nursery.start_soon(self._watch_pings, sock, nursery.cancel_scope)
                await self._read(sock, receive)
                nursery.cancel_scope.cancel()
        finally:
            sock.closed = True
            self.sockets.pop(number, None)
            session.sockets.discard(sock)
            logger.info("XTS simulator: socket %d closed (%s)", number, sock.reason)

    async def _send(self, sock: Socket, text: str) -> None:
        async with sock.lock:
            await sock.send({"type": "websocket.send", "text": text})

    async def _close(self, sock: Socket, code: int, *, socketio: bool) -> None:
        if socketio:
            await self._send(sock, encode_disconnect())
        async with sock.lock:
            await sock.send({"type": "websocket.close", "code": code})

    async def _read(self, sock: Socket, receive: _Receive) -> None:
        """Read client packets until the client goes (or closes the session)."""
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                if not sock.closed:
                    sock.reason = f"client disconnected, code {message.get('code')}"
                return
            text = message.get("text")
            if kind != "websocket.receive" or text is None:
                continue  # binary messages mean nothing to the JSON product
            try:
                packet = parse_packet(text)
            except DecodeError:
                logger.debug("XTS simulator: socket %d sent a malformed packet (ignored)", sock.number)
                continue
            if isinstance(packet, EioPing):
                self.counters["pings"] += 1
                sock.last_ping = trio.current_time()
                if not self.silent:
                    await self._send(sock, EioPong(packet.data).encode())
                    self.counters["pongs"] += 1
            elif isinstance(packet, EioClose) or (
                isinstance(packet, SioDisconnect) and packet.namespace == "/"
            ):
                sock.reason = "client closed the session"
                await self._close(sock, 1000, socketio=False)
                return

    async def _watch_pings(self, sock: Socket, cancel_scope: trio.CancelScope) -> None:
        """Close the socket when no ping arrived for ping_interval + ping_timeout (the EIO3 server rule)."""
        limit = self.settings.ping_interval + self.settings.ping_timeout
        while True:
            deadline = sock.last_ping + limit
            if trio.current_time() >= deadline:
                sock.reason = "no ping within pingInterval + pingTimeout"
                await self._close(sock, 1000, socketio=False)
                cancel_scope.cancel()
                return
            await trio.sleep_until(deadline)

    async def _write(self, sock: Socket, cancel_scope: trio.CancelScope) -> None:
        """Send the session's events at each market step, garbage on request, and requested closes."""
        payloads = self.payloads
        garbage_index = 0
        while True:
            await sock.wake.wait()
            sock.wake = trio.Event()
            if sock.close_code is not None:
                sock.reason = "logged out" if sock.close_code == 1000 else "dropped (close 1011)"
                await self._close(sock, sock.close_code, socketio=True)
                cancel_scope.cancel()
                return
            while sock.garbage > 0:
                sock.garbage -= 1
                await self._send(sock, _GARBAGE[garbage_index % len(_GARBAGE)])
                garbage_index += 1
                self.counters["garbage"] += 1
            if self.silent or sock.generation == payloads.generation:
                continue
            sock.generation = payloads.generation
            # A socket that skipped steps still gets each bar close once (the latest bar).
            candle_due = sock.candle_generation < payloads.candle_generation
            sock.candle_generation = payloads.candle_generation
            for key in list(sock.session.subscriptions):
                if key[2] == CANDLE and not candle_due:
                    continue
                frame = payloads.frame(key, sock.partial)
                if frame is not None:
                    await self._send(sock, frame)
                    self.counters["events"] += 1
