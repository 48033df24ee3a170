"""One Socket.IO connection of an XTS feed: the Engine.IO v3 handshake, the client's pings, and the reader
that turns the server's messages into batches for the feed's consumer (`XtsSocket`).

How a message travels: the WebSocket's reader (trio-websocket) -> `XtsSocket.read` parses the Engine.IO /
Socket.IO packet and decodes its market event with the sans-IO codec into one list -> one batch per
message into the feed's bounded queue (live ticks of instruments whose snapshot is still on its way are
held back by the feed's `SubscriptionBook`) -> the consumer's ``async for`` hands the list out event by
event.

Liveness (EIO3): the client pings every pingInterval and the server pongs; the server chooses both
timings, which are clamped (`PING_INTERVAL_BOUNDS`, `PING_TIMEOUT_BOUNDS`) so that a hostile server can
neither make the client ping a thousand times a second nor disable dead-connection detection.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any, Final, NoReturn, Protocol

import attrs
import trio
import trio_websocket

from ..._errors import AuthenticationError, ConnectError, ConnectTimeout, DecodeError
from ..._model import Broker, BrokerError, BrokerMessage, Event, Tick
from ..._scrub import EVENT_TEXT_LIMIT, scrub, scrub_event
from .._queue import BatchQueue
from .._reconnect import ConnectionLost
from ._api import InvalidTokenError
from ._codec import MESSAGE_CODES, decode_event, decode_message, event_name
from ._engineio import (
    EioClose,
    EioNoop,
    EioPing,
    EioPong,
    OpenPacket,
    SioConnect,
    SioDisconnect,
    SioError,
    SioEvent,
    parse_packet,
)
from ._rest import XtsSession
from ._subscriptions import SubscriptionBook

__all__ = [
    "PING_INTERVAL_BOUNDS",
    "PING_TIMEOUT_BOUNDS",
    "LoggedOut",
    "SocketCounters",
    "SocketHost",
    "XtsSocket",
]

logger = logging.getLogger("trading_ws.xts")

_XTS: Final = Broker.XTS
_MARKET_EVENTS: Final = frozenset(event_name(c, p) for c in MESSAGE_CODES for p in (False, True))
_DEFAULT_PING_INTERVAL: Final = 25.0
#: The server chooses pingInterval and pingTimeout; a hostile one could make us ping a thousand times a
#: second or never notice a dead connection. Its pingInterval is clamped to these bounds (seconds).
PING_INTERVAL_BOUNDS: Final = (1.0, 60.0)
#: The bounds (seconds) its pingTimeout is clamped to (see `PING_INTERVAL_BOUNDS`).
PING_TIMEOUT_BOUNDS: Final = (1.0, 120.0)


def _clamp(value: float, bounds: tuple[float, float], default: float) -> float:
    if not math.isfinite(value) or value <= 0:
        return default
    return min(max(value, bounds[0]), bounds[1])


def _text_of(data: Any) -> str:
    if isinstance(data, str):
        return data[:2000]
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)[:2000]
    except (TypeError, ValueError):
        return repr(data)[:2000]


class LoggedOut(AuthenticationError):
    """The server sent a ``logout`` event: another login took the session. Not renewed (see docs)."""


@attrs.define
class SocketCounters:
    """What a feed's Socket.IO connections counted, all of them together (see `XtsFeedStatistics`)."""

    frames: int = 0
    """WebSocket messages received."""
    ticks: int = 0
    """Market-data events the readers queued."""
    decode_errors: int = 0
    unknown: int = 0
    """Packets and events not understood."""
    pings: int = 0
    pongs: int = 0
    last_frame_at: float | None = None
    """The trio time of the last message, None before the first."""


class SocketHost(Protocol):
    """What an `XtsSocket` needs from its feed."""

    _queue: BatchQueue
    _book: SubscriptionBook
    _session: XtsSession

    @property
    def _closing(self) -> bool:
        """True once the feed's block is ending (a closed connection is then expected)."""
        ...

    def _scrub(self, text: str) -> str:
        """`text` with the feed's secrets and control characters taken out."""
        ...


class XtsSocket:
    """One Engine.IO / Socket.IO session over an open WebSocket: one connection of an `XtsFeed`.

    `handshake` first (within `handshake_timeout` seconds), then `ping_loop` in a task of its own beside
    `read`, which runs until the connection dies. Every count goes to `counters`, shared by the feed's
    connections.
    """

    def __init__(
        self,
        ws: trio_websocket.WebSocketConnection,
        host: SocketHost,
        counters: SocketCounters,
        *,
        handshake_timeout: float,
    ) -> None:
        self._ws = ws
        self._host = host
        self._counters = counters
        self._handshake_timeout = handshake_timeout

    def text(self, data: Any) -> str:
        """A server-provided payload as safe text (secrets out, control characters escaped, capped)."""
        return scrub(_text_of(data), self._host._session._secrets(), EVENT_TEXT_LIMIT)

    def scrub_events(self, events: list[Event]) -> list[Event]:
        """Events with every server text in them made safe (ticks carry none: they pass as they are)."""
        secrets = self._host._session._secrets()
        return [event if type(event) is Tick else scrub_event(event, secrets) for event in events]

    async def handshake(self) -> OpenPacket:
        """Read the Engine.IO open packet and the Socket.IO connect (``40``), within the handshake timeout.

        The open packet's pingInterval and pingTimeout are clamped (see `PING_INTERVAL_BOUNDS`).

        Raises:
            InvalidTokenError: the server refused the Socket.IO connect (``44``).
            ConnectTimeout: no complete handshake in time.
            ConnectError: a malformed or out-of-order handshake, or the connection closed during it.
        """
        ws = self._ws
        counters = self._counters
        opened: OpenPacket | None = None
        try:
            with trio.fail_after(self._handshake_timeout):
                while True:
                    message = await ws.get_message()
                    counters.frames += 1
                    counters.last_frame_at = trio.current_time()
                    try:
                        packet = parse_packet(message)
                    except DecodeError as exc:
                        text = self._host._scrub(str(exc))
                        raise ConnectError(f"malformed Engine.IO handshake: {text}") from None
                    if isinstance(packet, OpenPacket):
                        opened = attrs.evolve(
                            packet,
                            ping_interval=_clamp(
                                packet.ping_interval, PING_INTERVAL_BOUNDS, _DEFAULT_PING_INTERVAL
                            ),
                            ping_timeout=_clamp(
                                packet.ping_timeout, PING_TIMEOUT_BOUNDS, _DEFAULT_PING_INTERVAL
                            ),
                        )
                    elif opened is None:
                        raise ConnectError("XTS did not open an Engine.IO session (no open packet first)")
                    elif isinstance(packet, SioConnect) and packet.namespace == "/":
                        return opened
                    elif isinstance(packet, SioError):
                        raise InvalidTokenError(
                            f"XTS refused the Socket.IO connect: {self.text(packet.data)}"
                        )
                    elif isinstance(packet, (SioDisconnect, EioClose)):
                        raise ConnectError("XTS closed the Socket.IO session during the handshake")
        except trio.TooSlowError:
            raise ConnectTimeout(f"no Socket.IO handshake within {self._handshake_timeout} s") from None
        except trio_websocket.ConnectionClosed:
            raise ConnectError("the connection closed during the Socket.IO handshake") from None

    async def ping_loop(self, interval: float) -> None:
        """EIO3: the client pings (``2``) every `interval` seconds, until the connection closes (then it
        returns) or it is cancelled."""
        while True:
            await trio.sleep(interval)
            try:
                await self._ws.send_message("2")
            except trio_websocket.ConnectionClosed:
                return
            self._counters.pings += 1

    def event(self, packet: SioEvent, received_at: float) -> list[Event]:
        """The model events of one Socket.IO event (market data, ``error``), counting the rest.

        Raises:
            LoggedOut: a ``logout`` event (its text is queued first, as a `BrokerMessage`).
        """
        host = self._host
        name = packet.name
        data = packet.args[0] if packet.args else None
        try:
            events = decode_event(name, data, received_at)
        except DecodeError as exc:
            self._counters.decode_errors += 1
            logger.warning(
                "skipping a malformed XTS %s event (%d chars): %s",
                host._scrub(name),
                len(exc.raw),
                host._scrub(str(exc)),
            )
            return list(exc.events)
        if events:
            return events
        if name == "joined":
            logger.debug("XTS socket joined: %s", self.text(data))
        elif name == "error":
            return [BrokerError(_XTS, self.text(data), received_at)]
        elif name == "logout":
            text = self.text(data)
            host._queue.put_nowait([BrokerMessage(_XTS, text, received_at)])
            raise LoggedOut(f"XTS ended the session (logout event: {text})")
        else:
            self._counters.unknown += 1
            if name not in _MARKET_EVENTS:
                logger.debug("ignoring an unknown XTS event %s", host._scrub(repr(name)))
        return []

    async def read(self, opened: OpenPacket, slack: float) -> NoReturn:
        """Read messages into the feed's queue until the connection dies; raises ConnectionLost (or
        `LoggedOut`).

        The watchdog is a deadline on the read: some message (a pong, a server ping, or data: a connection
        that delivers data is alive, however late its pong) must arrive within pingInterval + pingTimeout
        + slack (clamped, see `PING_INTERVAL_BOUNDS`) of the previous one. Time spent waiting for a slow
        consumer (a full queue) does not count.
        """
        ws = self._ws
        host = self._host
        counters = self._counters
        limit = opened.ping_interval + opened.ping_timeout + slack
        alive_at = trio.current_time()
        got_data = False
        watchdog = trio.CancelScope()
        queue = host._queue
        book = host._book
        awaiting = book.awaiting  # never replaced, only changed
        try:
            with watchdog:
                while True:
                    watchdog.deadline = alive_at + limit
                    message = await ws.get_message()
                    now = trio.current_time()
                    alive_at = now
                    counters.last_frame_at = now
                    counters.frames += 1
                    got_data = True
                    received_at = time.time()
                    try:
                        decoded = decode_message(message, received_at)
                    except DecodeError as exc:
                        counters.decode_errors += 1
                        text = host._scrub(str(exc))
                        logger.warning("skipping a malformed XTS message (%d chars): %s", len(message), text)
                        decoded = list(exc.events)
                        if not decoded:
                            continue
                    events: list[Event]
                    if type(decoded) is list:  # the hot path: a market-data event
                        events = decoded
                        if not events:
                            counters.unknown += 1  # e.g. a 1504 partial naming no numeric instrument
                            continue
                    elif isinstance(decoded, EioPong):
                        counters.pongs += 1
                        continue
                    elif isinstance(decoded, EioPing):  # a server that pings (EIO4 style): answer it
                        await ws.send_message(EioPong(decoded.data).encode())
                        continue
                    elif isinstance(decoded, SioEvent):
                        events = self.event(decoded, received_at)
                    elif isinstance(decoded, SioError):
                        events = [BrokerError(_XTS, self.text(decoded.data), received_at)]
                    elif isinstance(decoded, SioDisconnect) and decoded.namespace == "/":
                        raise ConnectionLost("XTS disconnected the Socket.IO session (41)", got_data)
                    elif isinstance(decoded, EioClose):
                        raise ConnectionLost("XTS closed the Engine.IO session (1)", got_data)
                    elif isinstance(decoded, (SioConnect, SioDisconnect, EioNoop)):
                        continue
                    else:
                        counters.unknown += 1
                        continue
                    if len(events) != 1 or type(events[0]) is not Tick:  # not the hot path
                        events = self.scrub_events(events)
                    if events and awaiting:
                        events = book.hold_back(events)
                    if events:
                        counters.ticks += len(events)
                        if queue.full:
                            watchdog.deadline = math.inf  # a slow consumer is not a dead connection
                            await queue.put(events)
                            alive_at += trio.current_time() - now
                        else:
                            await queue.put(events)  # a schedule point, no wait
        except trio_websocket.ConnectionClosed as exc:
            if host._closing:
                # `XtsFeed._leave` is closing it: stay inside `open_ws`, whose reader must see the closing
                # handshake through, until the block's end cancels us.
                await trio.sleep_forever()
            reason = exc.reason
            if reason is None:
                raise ConnectionLost("connection closed", got_data) from None
            detail = f", {host._scrub(reason.reason)}" if reason.reason else ""
            raise ConnectionLost(f"connection closed (code {reason.code}{detail})", got_data) from None
        raise ConnectionLost(
            f"no pong or data for {limit:g} s (pingInterval {opened.ping_interval:g} + pingTimeout "
            f"{opened.ping_timeout:g} + slack {slack:g}): connection presumed dead",
            got_data,
        )
