"""A faithful Kite Connect v3 WebSocket ("KiteTicker") server on loopback, with fault knobs.

It speaks the protocol of kite-protocol.md sections 1-4: the handshake takes ``api_key`` and
``access_token`` from the query string (403 when wrong, 429 past three connections per api_key), clients
send JSON ``subscribe`` / ``unsubscribe`` / ``mode`` requests, and the server streams binary frames of
8/28/32/44/184-byte packets built by the codec's ``encode_frame`` from a seeded `Market`, 1-byte
heartbeats when idle, and JSON text postbacks. The official ``kiteconnect`` client works against it
unchanged.
"""

from __future__ import annotations

import hmac
import math
import struct
import time
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any, Final, cast
from urllib.parse import unquote, urlsplit

import attrs
import trio
from trio_websocket import (
    ConnectionClosed,
    Endpoint,
    WebSocketConnection,
    WebSocketRequest,
    WebSocketServer,
    serve_websocket,
)

from ..._errors import ConfigurationError, DecodeError
from ..._model import Mode, Tick
from ...brokers.kite._codec import decode_control, encode_frame, encode_text
from .._common import at_least_one, check_serve, logger, positive, reset, url
from .._tls import HandshakingListener, SimulatorTLS
from .._universe import UNIVERSE, Instrument, Market
from ._rest import FORBIDDEN_BODY, MasterEndpoint, error_body

__all__ = ["DEMO_ACCESS_TOKEN", "DEMO_API_KEY", "KiteSimulator", "KiteSimulatorStatistics"]

DEMO_API_KEY: Final = "demo_api_key"
"""The api_key a `KiteSimulator` accepts by default."""
DEMO_ACCESS_TOKEN: Final = "demo_access_token"
"""The access_token a `KiteSimulator` accepts by default."""

_HEARTBEAT: Final = b"\x00"
_OUTBOX_SIZE: Final = 1024
_U16: Final = struct.Struct(">H")
_JSON_HEADERS: Final = ((b"Content-Type", b"application/json"),)
_RECEIVE_BUFFER: Final = 65536
_MESSAGE_QUEUE: Final = 64


def _packets_per_frame(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 1 <= value <= 0xFFFF:
        raise ConfigurationError(f"max_packets_per_frame must be in [1, 65535], got {value!r}")


def _instrument_tuple(instruments: Iterable[Instrument]) -> tuple[Instrument, ...]:
    return tuple(instruments)


@attrs.frozen
class KiteSimulatorStatistics:
    """A snapshot of a `KiteSimulator`'s counters (they count from the simulator's creation)."""

    open_connections: int
    """Connections accepted and still open."""
    handshakes_accepted: int
    handshakes_rejected: Mapping[int, int]
    """Rejected handshakes by HTTP status (403, 429, or what `KiteSimulator.reject_next` asked for)."""
    frames_sent: int
    """Well-formed binary data frames sent (heartbeats not included)."""
    garbage_frames_sent: int
    """Malformed frames sent in place of data frames (see `KiteSimulator.send_garbage`)."""
    packets_sent: int
    """Packets (one instrument each) in the well-formed data frames."""
    heartbeats_sent: int
    text_messages_sent: int
    """JSON text messages sent (errors and `KiteSimulator.push_text` messages)."""
    subscribed: tuple[int, ...]
    """Subscribed token count of each open connection, in the order they were accepted."""
    market_steps: int
    """How many times the market has moved."""


class _FaultStream(trio.abc.Stream):
    """Wraps a connection's TCP stream: drops every outgoing byte while the simulator is silent (pongs and
    close frames included), and can be aborted synchronously (RST, no close frame)."""

    def __init__(self, inner: trio.abc.Stream, simulator: KiteSimulator) -> None:
        self.inner = inner
        self._simulator = simulator

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._simulator._silent:
            await trio.lowlevel.checkpoint()
            return
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def abort(self) -> None:
        """Close the socket now, with a TCP reset; tasks blocked on it wake with ClosedResourceError."""
        reset(self.inner)


@attrs.define(eq=False)
class _Connection:
    number: int
    remote: str
    send_outbox: trio.MemorySendChannel[str]
    receive_outbox: trio.MemoryReceiveChannel[str]
    ws: WebSocketConnection | None = None
    stream: _FaultStream | None = None
    subscriptions: dict[int, Mode] = attrs.field(factory=dict)
    garbage: int = 0
    garbage_sent: int = 0


@attrs.define(eq=False)
class KiteSimulator:
    """A Kite ticker server for tests, demos and load tests, faithful to the wire protocol.

    Start it in a nursery (``url = await nursery.start(sim.serve)``) and connect any Kite client to
    ``f"{url}?api_key={sim.api_key}&access_token=..."``. Stopping is cancelling that task; nothing
    outlives it.

    Behaviour, as the real server's (kite-protocol.md):

    - **Handshake.** ``api_key`` and ``access_token`` come from the query string of any path (``""``,
      ``"/"``...), percent-encoded or not; other parameters (``uid``) are ignored. Wrong or missing ones
      are refused with HTTP 403 (the body never echoes the token). While `max_connections` connections
      are open, another one is refused with HTTP 429.
    - **Requests.** ``subscribe`` puts new tokens in quote mode (a token already subscribed keeps its
      mode); ``mode`` sets the mode, subscribing tokens not yet subscribed; ``unsubscribe`` removes them.
      Tokens are not validated: tokens without data (outside the market's instruments, unless
      `synthetic`) are accepted and count toward the limit but produce no packets. There is no
      acknowledgement. A message that is not a valid request is answered with a text
      ``{"type": "error", "data": "Invalid message: ..."}``; the connection stays open.
    - **Limit.** A connection holds at most `max_instruments` distinct tokens. Tokens past the limit are
      not subscribed, and the connection receives one text error per request:
      ``"Max instruments per connection exceeded: <n> token(s) not subscribed (limit <max>)"``; the
      connection stays open and keeps the tokens it had.
    - **Data.** Every `tick_interval` seconds each connection gets one packet per subscribed token that
      has data, in the token's mode, in frames of at most `max_packets_per_frame` packets. The market
      moves at most once per `tick_interval`, whatever the number of connections, so every connection
      sees the same prices. After `heartbeat_interval` seconds without sending anything a connection
      gets a 1-byte binary heartbeat ``b"\\x00"``. Exchange timestamps are wall-clock (``time.time()``);
      pacing uses the Trio clock, so ``MockClock`` works.

    Fault knobs, synchronous and safe to call from tests while serving: `drop_connections`,
    `go_silent`, `send_garbage`, `reject_next`, `push_text`. Assertions: `statistics`, `subscriptions`.

    Changing `access_token` while serving (to simulate the daily expiry) affects later handshakes only;
    open connections stay open. The access token is never logged nor shown in the repr.

    Args:
        api_key: the api_key handshakes must carry.
        access_token: the access_token handshakes must carry (settable while serving).
        tick_interval: seconds between two data frames of one connection (and between market steps).
        seed: the seed of the market's random walk.
        max_connections: open connections allowed at once (Kite: 3 per api_key); more get HTTP 429.
        max_instruments: distinct tokens one connection may subscribe (Kite: 3000).
        heartbeat_interval: seconds without sending anything after which a connection gets a heartbeat.
        synthetic: make every token tick, not only the instruments' (for load tests).
        max_packets_per_frame: the most packets one binary frame holds (at most 65535).
        instruments: the instruments the market simulates (the shipped `UNIVERSE` by default).

    Raises:
        ConfigurationError: (at construction) a non-positive interval or limit.
    """

    api_key: str = DEMO_API_KEY
    access_token: str = attrs.field(default=DEMO_ACCESS_TOKEN, repr=False)
    tick_interval: float = attrs.field(default=0.2, validator=positive)
    seed: int = 0
    max_connections: int = attrs.field(default=3, validator=at_least_one)
    max_instruments: int = attrs.field(default=3000, validator=at_least_one)
    heartbeat_interval: float = attrs.field(default=1.0, validator=positive)
    synthetic: bool = False
    max_packets_per_frame: int = attrs.field(default=500, validator=_packets_per_frame)
    instruments: tuple[Instrument, ...] = attrs.field(
        default=UNIVERSE, converter=_instrument_tuple, repr=False
    )
    market: Market = attrs.field(init=False, repr=False)
    """The simulated market (built from `seed`, `instruments` and `synthetic`)."""

    _url: str | None = attrs.field(init=False, default=None, repr=False)
    _serving: bool = attrs.field(init=False, default=False, repr=False)
    _connections: dict[int, _Connection] = attrs.field(init=False, factory=dict, repr=False)
    _next_connection: int = attrs.field(init=False, default=0, repr=False)
    _silent: bool = attrs.field(init=False, default=False, repr=False)
    _unsilenced: trio.Event = attrs.field(init=False, factory=trio.Event, repr=False)
    _rejections: list[int] = attrs.field(init=False, factory=list, repr=False)
    _next_step: float = attrs.field(init=False, default=-math.inf, repr=False)
    _accepted: int = attrs.field(init=False, default=0, repr=False)
    _rejected: dict[int, int] = attrs.field(init=False, factory=dict, repr=False)
    _frames: int = attrs.field(init=False, default=0, repr=False)
    _garbage_frames: int = attrs.field(init=False, default=0, repr=False)
    _packets: int = attrs.field(init=False, default=0, repr=False)
    _heartbeats: int = attrs.field(init=False, default=0, repr=False)
    _texts: int = attrs.field(init=False, default=0, repr=False)

    def __attrs_post_init__(self) -> None:
        self.market = Market(self.seed, self.instruments, synthetic=self.synthetic)
        self._unsilenced.set()

    # -----------------------------------------------------------------------------------------------------
    # Serving

    @property
    def url(self) -> str:
        """The ``ws://host:port`` URL clients connect to (``wss://`` when serving with TLS; no path, no
        query).

        Raises:
            RuntimeError: the simulator is not serving.
        """
        if self._url is None:
            raise RuntimeError("the Kite simulator is not serving (start it with nursery.start(sim.serve))")
        return self._url

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        allow_non_loopback: bool = False,
        tls: SimulatorTLS | None = None,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; report the URL (``ws://127.0.0.1:PORT``, the real port; ``wss://`` with
        `tls`) when listening.

        Use as ``url = await nursery.start(sim.serve)``. Blocks until cancelled; every connection and
        task it started is finished when it returns (open connections are closed without a close frame).

        Args:
            host: the address to listen on; ``"localhost"`` means ``127.0.0.1``.
            port: the TCP port; 0 picks a free one.
            allow_non_loopback: allow a host that is not a loopback address (the simulator accepts
                well-known demo credentials: think twice).
            tls: serve ``wss://`` with this `SimulatorTLS`'s certificate (clients trust it with
                ``tls.client_context()`` or the file `SimulatorTLS.write_ca` writes). A client whose TLS
                handshake fails (it does not trust the CA, it speaks plain ``ws://``...) is logged at INFO
                and dropped; the simulator serves on.

        Raises:
            ConfigurationError: (a ValueError) a non-loopback host without ``allow_non_loopback``, a
                port outside 0..65535, or a `tls` that is not a SimulatorTLS.
            RuntimeError: the simulator is already serving.
            OSError: the address cannot be listened on.
        """
        bind = check_serve(host, port, allow_non_loopback, tls)
        if self._serving:
            raise RuntimeError("this Kite simulator is already serving")
        self._serving = True
        listen_error: OSError | None = None
        try:
            async with trio.open_nursery() as nursery:
                try:
                    if tls is None:
                        server = await nursery.start(
                            partial(
                                serve_websocket,
                                self._handle,
                                bind,
                                port,
                                None,
                                receive_buffer_size=_RECEIVE_BUFFER,
                                message_queue_size=_MESSAGE_QUEUE,
                            )
                        )
                        endpoint = server.listeners[0]
                        url = endpoint.url if isinstance(endpoint, Endpoint) else f"ws://{host}:{server.port}"
                    else:
                        url = await nursery.start(self._serve_tls, bind, port, tls)
                except OSError as exc:
                    listen_error = exc  # raised below, outside the nursery: plain, not in an ExceptionGroup
                else:
                    self._url = url
                    logger.info("Kite simulator listening on %s", url)
                    task_status.started(url)
            if listen_error is not None:
                raise listen_error
        finally:
            self._url = None
            self._serving = False
            self._connections.clear()

    async def _serve_tls(
        self, bind: str, port: int, tls: SimulatorTLS, *, task_status: trio.TaskStatus[str]
    ) -> None:
        """Serve ``wss://`` until cancelled; report the URL. The TLS handshakes run before trio-websocket
        sees a connection, so a failed one is logged and closed at once (see `HandshakingListener`)."""
        context = tls.server_context()
        listener = HandshakingListener(
            await trio.open_tcp_listeners(port, host=bind), context, "Kite simulator"
        )
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(listener.run)
                # WebSocketServer takes any trio Listener (its annotation names the two it builds itself).
                server = WebSocketServer(
                    self._handle,
                    [cast("trio.SocketListener", listener)],
                    receive_buffer_size=_RECEIVE_BUFFER,
                    message_queue_size=_MESSAGE_QUEUE,
                )
                await nursery.start(server.run)
                task_status.started(url("wss", bind, listener.port))
        finally:
            with trio.CancelScope(shield=True):
                await listener.aclose()

    async def serve_rest(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        allow_non_loopback: bool = False,
        tls: SimulatorTLS | None = None,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve the REST instrument master until cancelled, as ``https://api.kite.trade`` does; report
        the root URL (``http://127.0.0.1:PORT``; ``https://`` with `tls`) when listening. Pass it as
        ``KiteBroker(api_url=...)``.

        ``GET /instruments`` (and ``GET /instruments/<exchange>``) answer the CSV of the simulated
        instruments, gzip-encoded as Kite sends it, to a request carrying ``Authorization: token
        <api_key>:<access_token>`` with this simulator's credentials; wrong or missing credentials get
        HTTP 403 with Kite's error body, other paths 404, other methods 405. One request per connection.

        With `tls` (a `SimulatorTLS`) it serves ``https://`` with that certificate; a client whose TLS
        handshake fails is logged at INFO and dropped, and the server serves on.

        Use as ``rest = await nursery.start(sim.serve_rest)``. Blocks until cancelled.

        Raises:
            ConfigurationError: a non-loopback host without ``allow_non_loopback``, a port outside
                0..65535, or a `tls` that is not a SimulatorTLS.
            OSError: the address cannot be listened on.
        """
        bind = check_serve(host, port, allow_non_loopback, tls)
        context = None if tls is None else tls.server_context()
        await MasterEndpoint(self).serve(bind, port, context, task_status=task_status)

    async def _handle(self, request: WebSocketRequest) -> None:
        endpoint = request.remote
        remote = f"{endpoint.address}:{endpoint.port}" if isinstance(endpoint, Endpoint) else str(endpoint)
        if self._silent:
            # A silent server answers nothing, handshakes included: hold the request until it speaks.
            await self._unsilenced.wait()
        status = self._admission(request.path)
        if status is not None:
            self._rejected[status] = self._rejected.get(status, 0) + 1
            logger.info("Kite simulator: refused a handshake from %s with HTTP %d", remote, status)
            await request.reject(status, extra_headers=list(_JSON_HEADERS), body=self._reject_body(status))
            return
        send_outbox, receive_outbox = trio.open_memory_channel[str](_OUTBOX_SIZE)
        number = self._next_connection
        self._next_connection += 1
        conn = _Connection(number, remote, send_outbox, receive_outbox)
        self._connections[number] = conn  # reserved before the first await: the 429 count stays exact
        try:
            ws = await request.accept()
            # trio-websocket keeps the TCP stream in a private attribute; wrap it for the fault knobs.
            stream = _FaultStream(ws._stream, self)
            ws._stream = stream
            conn.ws, conn.stream = ws, stream
            self._accepted += 1
            logger.info("Kite simulator: connection %d from %s", number, remote)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, conn)
                await self._read(conn)
                nursery.cancel_scope.cancel()
        except ConnectionClosed:
            pass
        finally:
            self._connections.pop(number, None)
            logger.info("Kite simulator: connection %d closed", number)

    def _admission(self, target: str) -> int | None:
        """The HTTP status refusing this handshake, or None to accept it."""
        if self._rejections:
            return self._rejections.pop(0)
        params: dict[str, str] = {}
        for pair in urlsplit(target).query.split("&"):
            name, _, value = pair.partition("=")
            params.setdefault(unquote(name), unquote(value))
        api_key = params.get("api_key", "")
        access_token = params.get("access_token", "")
        if not (
            hmac.compare_digest(api_key.encode(), self.api_key.encode())
            and hmac.compare_digest(access_token.encode(), self.access_token.encode())
        ):
            return 403
        if len(self._connections) >= self.max_connections:
            return 429
        return None

    def _reject_body(self, status: int) -> bytes:
        if status == 403:
            return FORBIDDEN_BODY
        if status == 429:
            return error_body(
                f"Too many connections for this api_key (at most {self.max_connections}).", "NetworkException"
            )
        return error_body(f"Handshake refused by the simulator (HTTP {status}).", "NetworkException")

    async def _read(self, conn: _Connection) -> None:
        assert conn.ws is not None
        while True:
            try:
                message = await conn.ws.get_message()
            except ConnectionClosed:
                return
            self._request(conn, message)

    def _request(self, conn: _Connection, message: str | bytes) -> None:
        try:
            request = decode_control(message)
        except DecodeError as exc:
            self._queue(conn, encode_text("error", f"Invalid message: {exc}"))
            return
        subscriptions = conn.subscriptions
        if request.action == "unsubscribe":
            for token in request.tokens:
                subscriptions.pop(token, None)
            return
        refused = 0
        for token in dict.fromkeys(request.tokens):
            if token in subscriptions:
                if request.mode is not None:
                    subscriptions[token] = request.mode
            elif len(subscriptions) < self.max_instruments:
                subscriptions[token] = request.mode or Mode.QUOTE
            else:
                refused += 1
        if refused:
            self._queue(
                conn,
                encode_text(
                    "error",
                    f"Max instruments per connection exceeded: {refused} token(s) not subscribed "
                    f"(limit {self.max_instruments})",
                ),
            )

    def _queue(self, conn: _Connection, text: str) -> bool:
        try:
            conn.send_outbox.send_nowait(text)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            logger.warning("Kite simulator: connection %d outbox full, text message dropped", conn.number)
            return False
        return True

    async def _write(self, conn: _Connection) -> None:
        ws = conn.ws
        assert ws is not None
        interval = self.tick_interval
        now = trio.current_time()
        next_frame = now + interval
        last_sent = now
        try:
            while True:
                with trio.move_on_at(min(next_frame, last_sent + self.heartbeat_interval)):
                    text = await conn.receive_outbox.receive()
                    if not self._silent:
                        await ws.send_message(text)
                        self._texts += 1
                        last_sent = trio.current_time()
                    continue
                now = trio.current_time()
                if self._silent:
                    last_sent = now
                if now >= next_frame:
                    next_frame += interval
                    if next_frame <= now:
                        next_frame = now + interval
                    if not self._silent:
                        for frame in self._frames_for(conn):
                            await ws.send_message(frame)
                            last_sent = trio.current_time()
                if not self._silent and trio.current_time() - last_sent >= self.heartbeat_interval:
                    await ws.send_message(_HEARTBEAT)
                    self._heartbeats += 1
                    last_sent = trio.current_time()
        except ConnectionClosed:
            return

    def _advance_market(self) -> None:
        now = trio.current_time()
        interval = self.tick_interval
        if now >= self._next_step - interval / 2:
            self.market.step(time.time())
            self._next_step = (
                self._next_step + interval if self._next_step + interval > now else now + interval
            )

    def _frames_for(self, conn: _Connection) -> list[bytes]:
        if not conn.subscriptions:
            return []
        self._advance_market()
        market = self.market
        wall = time.time()
        ticks: list[Tick] = [
            market.tick(token, mode, wall)
            for token, mode in conn.subscriptions.items()
            if market.has_data(token)
        ]
        size = self.max_packets_per_frame
        frames: list[bytes] = []
        for start in range(0, len(ticks), size):
            chunk = ticks[start : start + size]
            frame = encode_frame(chunk)
            if conn.garbage > 0:
                conn.garbage -= 1
                frame = _garbage(frame, len(chunk), conn.garbage_sent)
                conn.garbage_sent += 1
                self._garbage_frames += 1
            else:
                self._frames += 1
                self._packets += len(chunk)
            frames.append(frame)
        return frames

    # -----------------------------------------------------------------------------------------------------
    # Fault knobs and assertions (synchronous; safe to call from any task of the serving Trio run).

    def drop_connections(self) -> int:
        """Abort every open connection's TCP connection at once (a reset, no WebSocket close frame).

        Clients see an abnormal closure (code 1006), as when Kite drops a slow consumer. Returns the
        number of connections dropped. Does not block; raises nothing.
        """
        dropped = 0
        for number, conn in list(self._connections.items()):
            if conn.stream is None:
                continue  # still in its handshake
            del self._connections[number]
            conn.stream.abort()
            dropped += 1
        if dropped:
            logger.info("Kite simulator: dropped %d connection(s)", dropped)
        return dropped

    def go_silent(self, silent: bool = True) -> None:
        """Stop (or, with False, resume) sending anything at all on every connection.

        While silent, connections stay open but receive nothing: no data, no heartbeats, no text messages
        (those are dropped), not even pongs or close frames; new handshakes get no answer until the
        simulator speaks again. The market keeps moving. Does not block; raises nothing.
        """
        if silent and not self._silent:
            self._unsilenced = trio.Event()
        elif not silent:
            self._unsilenced.set()
        self._silent = silent

    def send_garbage(self, count: int = 1) -> int:
        """Replace the next `count` data frames of every open connection by malformed frames.

        The malformed frames alternate between a frame announcing one packet more than it holds and a
        frame with an extra 12-byte packet (a length that matches no mode). Returns the number of
        connections affected. Does not block.

        Raises:
            ValueError: a negative count.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        affected = 0
        for conn in self._connections.values():
            if conn.stream is not None:
                conn.garbage += count
                affected += 1
        return affected

    def reject_next(self, status: int, count: int = 1) -> None:
        """Refuse the next `count` handshakes with HTTP `status` (before checking credentials).

        Does not block.

        Raises:
            ValueError: a status outside 300-599, or a negative count.
        """
        if not 300 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status in 300-599, got {status}")
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        self._rejections.extend([status] * count)

    def push_text(self, kind: str, data: Any) -> int:
        """Send a text message ``{"type": kind, "data": data}`` to every open connection.

        For order postbacks (``"order"`` with the order object), errors (``"error"`` with a string) and
        broker messages (``"message"`` with a string). Messages go out in order with the data frames; a
        connection whose outbox holds 1024 unsent messages drops the new one. Returns the number of
        connections the message was queued for. Does not block.

        Raises:
            TypeError: `data` cannot be encoded as JSON.
        """
        text = encode_text(kind, data)
        return sum(
            self._queue(conn, text) for conn in list(self._connections.values()) if conn.ws is not None
        )

    def subscriptions(self) -> list[dict[int, Mode]]:
        """A copy of each open connection's subscriptions (token -> mode), in the order they were accepted."""
        return [dict(c.subscriptions) for c in self._connections.values() if c.ws is not None]

    def statistics(self) -> KiteSimulatorStatistics:
        """A snapshot of the simulator's counters. Does not block; raises nothing."""
        open_connections = [c for c in self._connections.values() if c.ws is not None]
        return KiteSimulatorStatistics(
            open_connections=len(open_connections),
            handshakes_accepted=self._accepted,
            handshakes_rejected=dict(self._rejected),
            frames_sent=self._frames,
            garbage_frames_sent=self._garbage_frames,
            packets_sent=self._packets,
            heartbeats_sent=self._heartbeats,
            text_messages_sent=self._texts,
            subscribed=tuple(len(c.subscriptions) for c in open_connections),
            market_steps=self.market.steps,
        )


def _garbage(frame: bytes, count: int, serial: int) -> bytes:
    """A malformed version of a data frame: a count larger than the content, or an unknown packet length."""
    if serial % 2 == 0:
        return _U16.pack((count + 1) & 0xFFFF) + frame[2:]
    return _U16.pack((count + 1) & 0xFFFF) + frame[2:] + _U16.pack(12) + b"\xde\xad\xbe\xef" * 3
