"""Sans-IO Engine.IO v3 / Socket.IO protocol revision 4 packets (the socket.io 2.x generation XTS speaks).

Every official XTS client speaks this generation (xts-protocol.md section 2.2), over the WebSocket
transport only: one Engine.IO packet per WebSocket *text* message, no ``<len>:`` polling payloads.

Engine.IO packet = one type digit, then the data::

    0{"sid":"...","upgrades":[],"pingInterval":25000,"pingTimeout":60000}   open (times in ms)
    1                 close
    2 / 2probe        ping (EIO3: the *client* pings every pingInterval)
    3 / 3probe        pong (the server's answer)
    4<socket.io>      message: a Socket.IO packet
    5                 upgrade
    6                 noop

Socket.IO packet (inside an Engine.IO message) = one type digit, then for binary types the attachment
count and ``-``, then an optional namespace ``/ns,`` (default ``/``), an optional decimal ack id, and the
JSON data::

    40                connect (the server auto-joins namespace "/" in rev 4)
    41                disconnect
    42["name",...]    event; also 42/ns,["name",...] and 42<id>["name",...]
    43<id>[...]        ack                 -> Unknown (XTS sends none)
    44<json>          error
    45<n>-[...]        binary event        -> Unknown (followed by binary frames; JSON product sends none)
    46<n>-<id>[...]   binary ack          -> Unknown

Control packets are one class each (`EioPing`, `EioPong`, `EioClose`, `EioNoop`, `EioUpgrade`) rather
than a single class with a type field, so that a feed can dispatch with ``match``/``isinstance``.

Error policy of `parse_packet`: a packet that claims to be something and is malformed (an open packet
with invalid JSON or without its ping fields; an event whose data is invalid JSON, not a list, empty, or
without a string name) raises `trading_ws.DecodeError` carrying the raw text. Anything else that cannot
be understood (an unknown type digit, an empty message, an ack, a binary packet, a binary WebSocket
message) becomes `Unknown`, which the feed ignores and counts. Error (``44``) packets are tolerated: data
that is not JSON is kept as the raw text.

Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

import enum
from typing import Any, TypeAlias

import attrs
import msgspec

from ..._errors import DecodeError

__all__ = [
    "EioClose",
    "EioNoop",
    "EioPacketType",
    "EioPing",
    "EioPong",
    "EioUpgrade",
    "OpenPacket",
    "Packet",
    "SioConnect",
    "SioDisconnect",
    "SioError",
    "SioEvent",
    "Unknown",
    "encode_close",
    "encode_connect",
    "encode_disconnect",
    "encode_error",
    "encode_event",
    "encode_noop",
    "encode_ping",
    "encode_pong",
    "parse_packet",
]


class EioPacketType(enum.IntEnum):
    """Engine.IO v3 packet types: the first character of every packet."""

    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


@attrs.frozen
class OpenPacket:
    """The Engine.IO handshake (``0{...}``) the server sends first.

    ``ping_interval`` and ``ping_timeout`` are in **seconds** (the wire carries milliseconds).
    """

    sid: str
    """The Engine.IO session id."""
    upgrades: tuple[str, ...]
    """Transports the server offers to upgrade to (empty on a WebSocket connection)."""
    ping_interval: float
    """Seconds between the client's pings (EIO3: the client pings)."""
    ping_timeout: float
    """Seconds the client waits for the pong; the server closes after interval + timeout without a ping."""

    def encode(self) -> str:
        """The wire text: ``0{"sid":..,"upgrades":[..],"pingInterval":<ms>,"pingTimeout":<ms>}``.

        Does not block, raises nothing.
        """
        body = {
            "sid": self.sid,
            "upgrades": list(self.upgrades),
            "pingInterval": _ms(self.ping_interval),
            "pingTimeout": _ms(self.ping_timeout),
        }
        return "0" + _encode_json(body)


@attrs.frozen
class SioEvent:
    """A Socket.IO event (``42[...]``): an event name and its arguments.

    XTS market data arrives as ``42["1501-json-full","<JSON text>"]``: ``args`` is then a one-element
    tuple holding the (still encoded) JSON string.
    """

    name: str
    args: tuple[Any, ...]
    namespace: str = "/"
    ack_id: int | None = None
    """The id the sender wants acknowledged, if it asked for an ack (XTS never does)."""

    def encode(self) -> str:
        """The wire text (``42`` + optional ``/ns,`` + optional ack id + compact JSON list)."""
        return "42" + _prefix(self.namespace, self.ack_id) + _encode_json([self.name, *self.args])


@attrs.frozen
class SioConnect:
    """Socket.IO connect (``40``): the server accepted the client into ``namespace``."""

    namespace: str = "/"

    def encode(self) -> str:
        """The wire text: ``40`` (or ``40/ns,``)."""
        return "40" + _prefix(self.namespace, None)


@attrs.frozen
class SioDisconnect:
    """Socket.IO disconnect (``41``) for ``namespace``."""

    namespace: str = "/"

    def encode(self) -> str:
        """The wire text: ``41`` (or ``41/ns,``)."""
        return "41" + _prefix(self.namespace, None)


@attrs.frozen
class SioError:
    """Socket.IO error (``44...``): the server refused a connect or reported an error.

    ``data`` is the decoded JSON (usually a string or ``{"message": ...}``), the raw text when it is not
    valid JSON, or None when the packet carries nothing.
    """

    data: Any
    namespace: str = "/"

    def encode(self) -> str:
        """The wire text: ``44`` + optional ``/ns,`` + the data as JSON (nothing if it is None)."""
        body = "" if self.data is None else _encode_json(self.data)
        return "44" + _prefix(self.namespace, None) + body


@attrs.frozen
class EioPing:
    """Engine.IO ping (``2``); ``data`` is ``"probe"`` during a transport upgrade, else empty."""

    data: str = ""

    def encode(self) -> str:
        """The wire text: ``2`` + data."""
        return "2" + self.data


@attrs.frozen
class EioPong:
    """Engine.IO pong (``3``); the server's answer to a ping, echoing its data."""

    data: str = ""

    def encode(self) -> str:
        """The wire text: ``3`` + data."""
        return "3" + self.data


@attrs.frozen
class EioClose:
    """Engine.IO close (``1``): the peer is closing the session."""

    def encode(self) -> str:
        """The wire text: ``1``."""
        return "1"


@attrs.frozen
class EioUpgrade:
    """Engine.IO upgrade (``5``); only seen when a polling session upgrades to WebSocket."""

    def encode(self) -> str:
        """The wire text: ``5``."""
        return "5"


@attrs.frozen
class EioNoop:
    """Engine.IO noop (``6``)."""

    def encode(self) -> str:
        """The wire text: ``6``."""
        return "6"


@attrs.frozen
class Unknown:
    """Anything `parse_packet` does not understand; the feed ignores and counts these.

    ``raw`` is the message unchanged (bytes for a binary WebSocket message).
    """

    raw: str | bytes


Packet: TypeAlias = (
    OpenPacket
    | SioEvent
    | SioConnect
    | SioDisconnect
    | SioError
    | EioPing
    | EioPong
    | EioClose
    | EioUpgrade
    | EioNoop
    | Unknown
)
"""Everything `parse_packet` returns."""


class _Open(msgspec.Struct, rename="camel"):
    sid: str
    ping_interval: float
    ping_timeout: float
    upgrades: list[str] = []


_OPEN_DECODER = msgspec.json.Decoder(_Open)
_LIST_DECODER = msgspec.json.Decoder(list[Any])
_ANY_DECODER = msgspec.json.Decoder()
# What decoding hostile JSON text can raise: malformed JSON, a str holding lone surrogates (not UTF-8),
# nesting deeper than the recursion limit. parse_packet turns each into DecodeError (or tolerates it).
_JSON_ERRORS = (msgspec.DecodeError, UnicodeEncodeError, RecursionError)
_MAX_ACK_DIGITS = 20
_encoder = msgspec.json.Encoder()

_CLOSE = EioClose()
_NOOP = EioNoop()
_UPGRADE = EioUpgrade()
_PING = EioPing()
_PONG = EioPong()
_CONNECT = SioConnect()
_DISCONNECT = SioDisconnect()


# The hot path builds SioEvent through its slot descriptors: the same object as SioEvent(name, args), but
# without the frozen __init__'s four object.__setattr__ calls (about a third of the cost).
_new_object = object.__new__
_set_name = SioEvent.__dict__["name"].__set__
_set_args = SioEvent.__dict__["args"].__set__
_set_namespace = SioEvent.__dict__["namespace"].__set__
_set_ack_id = SioEvent.__dict__["ack_id"].__set__


def _encode_json(value: Any) -> str:
    return _encoder.encode(value).decode()


def _prefix(namespace: str, ack_id: int | None) -> str:
    ns = "" if namespace == "/" else namespace + ","
    return ns if ack_id is None else ns + str(ack_id)


def parse_packet(text: str | bytes) -> Packet:
    """Parse one WebSocket message of an Engine.IO v3 / Socket.IO rev 4 session.

    Does not block. Pure.

    Args:
        text: the message as received. A binary message (``bytes``: an EIO3 binary attachment) is not
            parsed and comes back as `Unknown`.

    Returns:
        `OpenPacket`, `SioEvent`, `SioConnect`, `SioDisconnect`, `SioError`, a control packet
        (`EioPing`, `EioPong`, `EioClose`, `EioUpgrade`, `EioNoop`), or `Unknown` for anything else.

    Raises:
        DecodeError: the packet claims to be an open packet or an event and is malformed (invalid JSON,
            missing ping fields, data that is not a non-empty list starting with a string name).
            ``exc.raw`` is the text.
    """
    if not isinstance(text, str):
        return Unknown(text)
    # The hot path: an event in the default namespace without an ack id, i.e. 42["name",...].
    if text.startswith('42["'):
        try:
            items = _LIST_DECODER.decode(text[2:])
        except _JSON_ERRORS as exc:
            raise DecodeError(f"malformed Socket.IO event: {exc}", text) from exc
        name = items[0] if items else None
        if type(name) is not str:
            raise DecodeError("Socket.IO event without a string name", text)
        event = _new_object(SioEvent)
        _set_name(event, name)
        _set_args(event, (items[1],) if len(items) == 2 else tuple(items[1:]))
        _set_namespace(event, "/")
        _set_ack_id(event, None)
        return event
    if not text:
        return Unknown(text)
    kind = text[0]
    if kind == "4":
        return _parse_socketio(text)
    if kind == "2":
        return EioPing(text[1:]) if len(text) > 1 else _PING
    if kind == "3":
        return EioPong(text[1:]) if len(text) > 1 else _PONG
    if kind == "0":
        return _parse_open(text)
    if kind == "1":
        return _CLOSE
    if kind == "6":
        return _NOOP
    if kind == "5":
        return _UPGRADE
    return Unknown(text)


def _parse_open(text: str) -> OpenPacket:
    try:
        body = _OPEN_DECODER.decode(text[1:])
    except _JSON_ERRORS as exc:
        raise DecodeError(f"malformed Engine.IO open packet: {exc}", text) from exc
    return OpenPacket(body.sid, tuple(body.upgrades), body.ping_interval / 1000, body.ping_timeout / 1000)


def _parse_socketio(text: str) -> Packet:
    # text[0] == "4" (an Engine.IO message); text[1] is the Socket.IO packet type.
    if len(text) < 2:
        return Unknown(text)
    kind = text[1]
    if kind not in "0124":  # 3 ack, 5 binary event, 6 binary ack (and garbage): not handled
        return Unknown(text)
    end = len(text)
    i = 2
    namespace = "/"
    if i < end and text[i] == "/":
        comma = text.find(",", i)
        if comma < 0:
            namespace, i = text[i:], end
        else:
            namespace, i = text[i:comma], comma + 1
    body = text[i:]
    if kind == "0":
        return _CONNECT if namespace == "/" else SioConnect(namespace)
    if kind == "1":
        return _DISCONNECT if namespace == "/" else SioDisconnect(namespace)
    if kind == "4":
        if not body:
            return SioError(None, namespace)
        try:
            data = _ANY_DECODER.decode(body)
        except _JSON_ERRORS:
            data = body  # tolerated: some servers send the error text bare
        return SioError(data, namespace)
    start = i  # an event may carry an ack id before its data
    while i < end and "0" <= text[i] <= "9":
        i += 1
    if i - start > _MAX_ACK_DIGITS:  # int() of thousands of digits is slow, and refused past 4300
        raise DecodeError(f"Socket.IO event with an ack id of {i - start} digits", text)
    ack_id = int(text[start:i]) if i > start else None
    try:
        items = _LIST_DECODER.decode(text[i:])
    except _JSON_ERRORS as exc:
        raise DecodeError(f"malformed Socket.IO event: {exc}", text) from exc
    name = items[0] if items else None
    if type(name) is not str:
        raise DecodeError("Socket.IO event without a string name", text)
    return SioEvent(name, tuple(items[1:]), namespace, ack_id)


def encode_event(name: str, *args: Any) -> str:
    """Encode a Socket.IO event in the default namespace: ``42["name",arg,...]`` (compact JSON).

    Does not block.

    Raises:
        TypeError: an argument is not JSON-serializable.
    """
    return "42" + _encoder.encode([name, *args]).decode()


def encode_ping() -> str:
    """The Engine.IO ping the client sends every ``ping_interval``: ``"2"``."""
    return "2"


def encode_pong() -> str:
    """The Engine.IO pong the server answers with: ``"3"``."""
    return "3"


def encode_connect() -> str:
    """Socket.IO connect to the default namespace: ``"40"``."""
    return "40"


def encode_disconnect() -> str:
    """Socket.IO disconnect from the default namespace: ``"41"``."""
    return "41"


def encode_close() -> str:
    """Engine.IO close: ``"1"``."""
    return "1"


def encode_noop() -> str:
    """Engine.IO noop: ``"6"``."""
    return "6"


def encode_error(data: Any = None) -> str:
    """Socket.IO error in the default namespace: ``44`` + data as JSON (``44`` alone if None).

    Raises:
        TypeError: ``data`` is not JSON-serializable.
    """
    return SioError(data).encode()
