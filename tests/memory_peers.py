"""Brokers on the far end of in-memory streams: what the feeds' test seam plugs into.

A feed given ``connect=peer.connect`` opens each connection's byte stream by calling it; the peer returns
one end of `trio.testing.memory_stream_pair` and serves the other end with trio-websocket
(``wrap_server_stream``), so the feed's whole stack runs (TLS when the URL is ``wss://``, the WebSocket
handshake, the error mapping, the reconnect loop) with no socket, under ``autojump_clock``. Nothing here
sleeps or polls: every step a test waits for is a message it receives.

- `WsPeer` records every connection attempt with the trio time it was made, refuses the handshakes a
  test asks it to (or the ones whose credentials it does not accept), and hands every accepted connection
  to the test (`WsPeer.accepted`) as a `PeerConnection`, whose messages from the feed arrive on a channel
  (`PeerConnection.receive`) and which the test can break (`PeerConnection.drop`).
- `XtsPeer` is a `WsPeer` that opens each connection with the Engine.IO handshake (the open packet, then
  ``40``) and answers the client's pings; `XtsRest` answers the XTS REST routes for an
  ``httpx.MockTransport`` (the XTS feed's ``http_transport``).
"""

from __future__ import annotations

import contextlib
import json
import math
import ssl
from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import attrs
import httpx
import trio
import trio.testing
import trio_websocket

from trading_ws import Broker, Event, Mode, Tick
from trading_ws.brokers.xts import (
    CODE_TO_MODE,
    MODE_TO_CODE,
    OpenPacket,
    encode_connect,
    encode_event,
    encode_full,
    event_name,
    subscription_body,
)

#: What a peer's connection attempts and connections log as broken: the far end of a stream the feed
#: abandoned or closed abruptly (expected in reconnect tests).
_BROKEN = (
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio_websocket.ConnectionClosed,
    trio_websocket.HandshakeError,
    ssl.SSLError,
)

Admit = Callable[[Mapping[str, str]], int | None]
"""Whether a handshake's query is admitted: None to accept it, else the HTTP status that refuses it."""


@attrs.define(eq=False)
class PeerConnection:
    """One accepted WebSocket connection, from the broker's side."""

    ws: trio_websocket.WebSocketConnection
    """The server end of the WebSocket (send with ``await ws.send_message(...)``)."""
    stream: trio.abc.Stream
    """The raw stream under it (the far end of the memory stream pair)."""
    query: dict[str, str]
    """The handshake's query parameters (the feed's credentials)."""
    opened_at: float
    """The trio time the handshake was accepted."""
    _messages: trio.MemoryReceiveChannel[str | bytes] = attrs.field(alias="messages")

    async def receive(self) -> str | bytes:
        """The next message the feed sent on this connection (in order). Blocks until there is one.

        Raises:
            trio.EndOfChannel: the connection ended and every message was received.
        """
        return await self._messages.receive()

    def pending(self) -> list[str | bytes]:
        """Every message received and not yet taken, taken now (call it after
        ``trio.testing.wait_all_tasks_blocked()``, when nothing is in flight any more). Does not block."""
        taken: list[str | bytes] = []
        while True:
            try:
                taken.append(self._messages.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                return taken

    async def drop(self) -> None:
        """Break the connection under the feed, with no closing handshake (the stream is closed)."""
        await self.stream.aclose()


class WsPeer:
    """A WebSocket server on the far end of in-memory streams; pass `connect` to a feed as its ``connect``.

    Every call of `connect` is one connection attempt, recorded in `attempts` (the trio time it was made).
    The handshake is then refused with the next status in `refusals` if there is one, or with the status
    `admit` gives for its query, and otherwise accepted: the connection is handed to the test through
    `accepted`. With `tls` (a server-side SSL context), TLS is served over the stream first, as a ``wss://``
    feed expects.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        *,
        admit: Admit | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._nursery = nursery
        self._admit = admit
        self._tls = tls
        self.attempts: list[float] = []
        """The trio time of every connection attempt, in order."""
        self.refusals: list[int] = []
        """HTTP statuses to refuse the next handshakes with, one each, before any admission check."""
        self.refused: list[int] = []
        """The status of every handshake refused so far, in order."""
        self.errors: list[BaseException] = []
        """What broke connections from the far side (a feed that refused the certificate, say)."""
        self.hosts: list[tuple[str, int]] = []
        """The (host, port) every attempt asked for."""
        self._send, self._accepted = trio.open_memory_channel[PeerConnection](math.inf)

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        """A feed's `Connect`: a fresh memory stream pair whose far end this peer serves."""
        self.attempts.append(trio.current_time())
        self.hosts.append((host, port))
        client, server = trio.testing.memory_stream_pair()
        self._nursery.start_soon(self._serve, server)
        await trio.lowlevel.checkpoint()
        return client

    async def accepted(self) -> PeerConnection:
        """The next accepted connection (in order). Blocks until there is one."""
        return await self._accepted.receive()

    async def _serve(self, raw: trio.abc.Stream) -> None:
        stream: trio.abc.Stream = raw
        if self._tls is not None:
            stream = trio.SSLStream(raw, self._tls, server_side=True)
        try:
            async with trio.open_nursery() as nursery:
                request = await trio_websocket.wrap_server_stream(nursery, cast("trio.SocketStream", stream))
                query = dict(parse_qsl(urlsplit(request.path).query))
                status = self.refusals.pop(0) if self.refusals else None
                if status is None and self._admit is not None:
                    status = self._admit(query)
                if status is not None:
                    self.refused.append(status)
                    await request.reject(status)
                    nursery.cancel_scope.cancel()
                    return
                ws = await request.accept()
                send, receive = trio.open_memory_channel[str | bytes](math.inf)
                connection = PeerConnection(ws, raw, query, trio.current_time(), messages=receive)
                await self._opened(connection)
                self._send.send_nowait(connection)
                await self._read(connection, send)
                nursery.cancel_scope.cancel()
        except _BROKEN as exc:
            self.errors.append(exc)
        finally:
            await trio.aclose_forcefully(stream)

    async def _opened(self, connection: PeerConnection) -> None:
        """What the broker sends first on an accepted connection (nothing, here)."""

    async def _read(self, connection: PeerConnection, send: trio.MemorySendChannel[str | bytes]) -> None:
        """Hand every message of the feed to the test, until the connection ends."""
        with send:
            while True:
                try:
                    message = await connection.ws.get_message()
                except trio_websocket.ConnectionClosed:
                    return
                self._on_message(connection, message, send)

    def _on_message(
        self, connection: PeerConnection, message: str | bytes, send: trio.MemorySendChannel[str | bytes]
    ) -> None:
        send.send_nowait(message)


class KitePeer(WsPeer):
    """A Kite ticker on the far end of in-memory streams: it admits a handshake whose ``access_token`` is
    `access_token` (HTTP 403 otherwise). The feed's requests reach the test as text messages
    (``decode_control`` them); the test sends frames with ``await connection.ws.send_message(...)``."""

    def __init__(
        self, nursery: trio.Nursery, *, access_token: str, tls: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(nursery, admit=self._admit_token, tls=tls)
        self.access_token = access_token

    def _admit_token(self, query: Mapping[str, str]) -> int | None:
        return None if query.get("access_token") == self.access_token else 403


# ---------------------------------------------------------------------------------------------------------
# XTS


class XtsPeer(WsPeer):
    """An XTS Socket.IO endpoint on the far end of in-memory streams.

    Each accepted connection starts with the Engine.IO open packet (`ping_interval`, `ping_timeout`) and
    the Socket.IO connect (``40``). The client's pings (``2``) are answered with a pong (``3``) while
    `pong` is true and counted in `pings`; every other message reaches the test (`PeerConnection.receive`).
    The handshake is admitted when its token is the one `rest` issued last (HTTP 401 otherwise).
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        rest: XtsRest,
        *,
        ping_interval: float = 25.0,
        ping_timeout: float = 60.0,
    ) -> None:
        super().__init__(nursery, admit=rest.admit_socket)
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.pong = True
        self.pings: list[float] = []
        """The trio time of every ping received."""

    async def _opened(self, connection: PeerConnection) -> None:
        sid = f"sid-{len(self.attempts)}"
        await connection.ws.send_message(OpenPacket(sid, (), self.ping_interval, self.ping_timeout).encode())
        await connection.ws.send_message(encode_connect())

    def _on_message(
        self, connection: PeerConnection, message: str | bytes, send: trio.MemorySendChannel[str | bytes]
    ) -> None:
        if message == "2":
            self.pings.append(trio.current_time())
            if self.pong:
                self._nursery.start_soon(_send_quietly, connection.ws, "3")
            return
        send.send_nowait(message)


async def _send_quietly(ws: trio_websocket.WebSocketConnection, message: str) -> None:
    with contextlib.suppress(trio_websocket.ConnectionClosed):
        await ws.send_message(message)


def _envelope(status: int, kind: str, code: str, description: str, result: Any) -> httpx.Response:
    return httpx.Response(
        status, json={"type": kind, "code": code, "description": description, "result": result}
    )


class XtsRest:
    """The XTS market-data REST routes, answered in memory; `transport` is the feed's ``http_transport``.

    A login with `secret_key` gets a fresh token (``token-1``, ``token-2``...; only the last one is valid);
    any other key, or every login while `refuse_logins` is true, is refused (HTTP 400). A subscription is
    answered with one snapshot per instrument (a tick of last price `snapshot_price` in the requested code),
    and the session's remaining count. Every request is recorded in `requests` as ``(method, route)``, with
    its JSON body in `bodies`.
    """

    def __init__(self, secret_key: str, *, user_id: str = "USER1", cap: int = 50) -> None:
        self.secret_key = secret_key
        self.user_id = user_id
        self.cap = cap
        self.refuse_logins = False
        self.snapshot_price = 100.0
        self.tokens: list[str] = []
        """Every token issued, in order (the last one is the session's)."""
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[Any] = []
        self.subscribed: dict[tuple[int, int, int], None] = {}
        """The session's (segment, instrument id, code) triples."""
        self.hold: trio.Event | None = None
        """When set, subscription requests are answered only once this event is set."""
        self.transport = httpx.MockTransport(self.handle)

    def admit_socket(self, query: Mapping[str, str]) -> int | None:
        """The socket handshake's admission: the last token issued, and its user id; HTTP 401 otherwise."""
        valid = bool(self.tokens) and query.get("token") == self.tokens[-1]
        return None if valid and query.get("userID") == self.user_id else 401

    async def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request (httpx.MockTransport's handler). A subscription is applied at once, and its
        answer then waits for `hold` when a test has set one (the server took it; its answer is late)."""
        route = request.url.path.removeprefix("/apimarketdata")
        body: Any = json.loads(request.content) if request.content else None
        self.requests.append((request.method, route))
        self.bodies.append(body)
        await trio.lowlevel.checkpoint()
        response = self._answer(request, route, body)
        if route == "/instruments/subscription" and self.hold is not None:
            await self.hold.wait()
        return response

    def _answer(self, request: httpx.Request, route: str, body: Any) -> httpx.Response:
        if route == "/auth/login":
            return self._login(body)
        token = request.headers.get("authorization")
        if not self.tokens or token != self.tokens[-1]:
            return _envelope(401, "error", "e-session-0007", "Invalid Token", {})
        if route == "/auth/logout":
            self.subscribed.clear()
            return _envelope(200, "success", "s-user-0002", "logged out", {})
        if route == "/instruments/subscription" and request.method == "POST":
            return self._subscribe(body)
        if route == "/instruments/subscription" and request.method == "PUT":
            keys = [(i["exchangeSegment"], i["exchangeInstrumentID"]) for i in body["instruments"]]
            for key in keys:
                self.subscribed.pop((*key, body["xtsMessageCode"]), None)
            unsubscribed = {"unsubList": body["instruments"]}
            return _envelope(200, "success", "s-session-0002", "unsubscribed", unsubscribed)
        return _envelope(404, "error", "e-route", f"no route {route}", {})

    def _login(self, body: Any) -> httpx.Response:
        if self.refuse_logins or body.get("secretKey") != self.secret_key:
            return _envelope(400, "error", "e-app-0001", "Invalid credentials", {})
        token = f"token-{len(self.tokens) + 1}"
        self.tokens.append(token)
        self.subscribed.clear()
        result = {"token": token, "userID": self.user_id, "appVersion": "1.0"}
        return _envelope(200, "success", "s-user-0001", "logged in", result)

    def _subscribe(self, body: Any) -> httpx.Response:
        code = body["xtsMessageCode"]
        keys = [(i["exchangeSegment"], i["exchangeInstrumentID"]) for i in body["instruments"]]
        for key in keys:
            self.subscribed[(*key, code)] = None
        snapshots = [encode_full(self.snapshot(key, code)) for key in keys]
        result = {
            "quotesList": subscription_body(keys, code)["instruments"],
            "listQuotes": snapshots,
            "Remaining_Subscription_Count": self.cap - len(self.subscribed),
        }
        return _envelope(200, "success", "s-session-0001", "subscribed", result)

    def snapshot(self, key: tuple[int, int], code: int) -> Tick:
        """The snapshot tick the subscribe answer carries for `key` in `code`."""
        return xts_tick(key, CODE_TO_MODE[code], self.snapshot_price)


def xts_tick(key: tuple[int, int], mode: Mode, price: float) -> Tick:
    """An XTS tick of instrument `key` in `mode` at `price` (what `encode_full` needs, nothing more)."""
    return Tick(Broker.XTS, key[1], mode, True, price, segment=key[0])


def xts_live(key: tuple[int, int], mode: Mode, price: float) -> str:
    """The Socket.IO message of a live XTS tick of `key` (a Full-mode ``<code>-json-full`` event)."""
    return encode_event(event_name(MODE_TO_CODE[mode]), encode_full(xts_tick(key, mode, price)))


def ticks_of(events: list[Event]) -> list[Tick]:
    """The ticks among `events`, in order."""
    return [event for event in events if isinstance(event, Tick)]
