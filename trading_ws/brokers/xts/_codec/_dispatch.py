"""The entry points by event name: `decode_event` (a Socket.IO event's name and data) and `decode_message`
(one WebSocket message, Socket.IO layer included: what the feed calls for every message).

Pure and synchronous: no I/O, no clock (the caller passes the receipt time, else ``time.time()``).
"""

from __future__ import annotations

import time
from typing import Any, Final

import msgspec

from ...._errors import DecodeError
from ...._model import Event
from .._engineio import Packet, SioEvent, parse_packet
from ._full import _FULL_PARTS
from ._partial import _PARTIAL
from ._wire import _Handler, event_name

# Event name -> (the handler of a data argument that is a str, the handler of any data argument).
_EVENTS: Final[dict[str, tuple[_Handler, _Handler]]] = {
    **{event_name(c): (p.text, p.handler) for c, p in _FULL_PARTS.items()},
    **{event_name(c, partial=True): (h, h) for c, h in _PARTIAL.items()},
}
_TEXT_EVENTS: Final[dict[str, _Handler]] = {name: entry[0] for name, entry in _EVENTS.items()}


def decode_event(event_name: str, data: Any, received_at: float | None = None) -> list[Event]:
    """Decode one XTS Socket.IO market-data event into model events. Does not block. Pure.

    A feed reading WebSocket messages should call `decode_message` instead, which also parses the
    Socket.IO layer and is faster.

    Args:
        event_name: the Socket.IO event name, e.g. ``"1501-json-full"`` or ``"1502-json-partial"``.
        data: the event's data argument: the JSON string of a full message (a dict is accepted too), or
            the ``key:value`` string of a partial one.
        received_at: the local receipt time stamped on the events (defaults to ``time.time()``).

    Returns:
        The events the message holds (one), or ``[]`` for an event name this codec does not decode
        (``joined``, ``5018-json-full``, ``1507-json-partial``...), which the feed should count.

    Raises:
        DecodeError: the data is malformed; ``exc.raw`` holds it (as JSON text if it was not text).
    """
    entry = _EVENTS.get(event_name)
    if entry is None:
        return []
    if received_at is None:
        received_at = time.time()
    if type(data) is str:  # the hot path: a full message as JSON text, or a partial one
        return entry[0](data, received_at)
    return entry[1](data, received_at)


# The outer layer of the overwhelmingly common frame, 42["<event name>","<data>"], in one typed decode.
_decode_frame: Final = msgspec.json.Decoder(tuple[str, str]).decode
# What that decode can raise on hostile text (a str holding lone surrogates is not UTF-8).
_FRAME_ERRORS: Final = (msgspec.DecodeError, UnicodeEncodeError, RecursionError)


def decode_message(text: str | bytes, received_at: float | None = None) -> list[Event] | Packet:
    """Decode one WebSocket message of an XTS market-data session. The entry point for the feed.

    Does not block. Pure. The result is exactly that of `parse_packet` followed, for a `SioEvent` that
    names a market-data event this codec decodes (``<code>-json-full`` and ``<code>-json-partial`` for
    the codes of `MESSAGE_CODES`; 1507 has no partial form), by ``decode_event(name, args[0],
    received_at)``; only faster. A frame ``42["<name>","<data>"]`` (the market-data frame) is decoded
    with a single typed decode of its outer array and one dictionary lookup, without building the
    `SioEvent`; anything else goes through `parse_packet`.

    Args:
        text: the WebSocket message as received (``bytes``, a binary message, gives `Unknown`).
        received_at: the local receipt time stamped on the events (defaults to ``time.time()``); a feed
            passes the time it received the message.

    Returns:
        A ``list`` of events for a market-data event (usually one; ``[]`` for a message that names no
        numeric instrument, as `decode_event` does), else the `Packet` that `parse_packet` returns:
        `SioEvent` for any other event (``joined``, ``5018-json-full``...), `OpenPacket`, `EioPong`,
        `SioError`, `Unknown`... Test ``type(result) is list`` to tell the two apart.

    Raises:
        DecodeError: the packet is malformed (see `parse_packet`), the event's data is malformed (see
            `decode_event`), or a market-data event carries no data argument. ``exc.raw`` holds the
            malformed text: the data argument if that is what is malformed, else the message.
    """
    if text[:3] == "42[":
        try:
            name, data = _decode_frame(text[2:])
        except _FRAME_ERRORS:
            pass  # not exactly [name, string], or not JSON: parse_packet decides
        else:
            handler = _TEXT_EVENTS.get(name)
            if handler is not None:
                return handler(data, time.time() if received_at is None else received_at)
    packet = parse_packet(text)
    if type(packet) is SioEvent and packet.name in _EVENTS:
        if not packet.args:
            raise DecodeError(f"XTS {packet.name} event without data", text)
        return decode_event(packet.name, packet.args[0], received_at)
    return packet
