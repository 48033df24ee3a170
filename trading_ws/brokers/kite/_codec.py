"""Sans-IO codec for the Kite Connect v3 WebSocket ("KiteTicker") protocol.

Server -> client binary frames (kite-protocol.md section 3)::

    uint16 N | uint16 L1 | packet 1 (L1 bytes) | uint16 L2 | packet 2 | ... (N packets, big-endian)

A packet's kind is given by its length alone: 8 (LTP), 28 (index quote), 32 (index full), 44 (quote),
184 (full, with five levels of depth each side). A 1-byte message is a heartbeat. Prices are divided by a
divisor chosen by the segment, ``token & 0xFF``: 3 (CDS) -> 1e7, 6 (BCD) and 12 (NCO) -> 1e4, anything
else -> 100. Integers are read unsigned, as the official Python client reads them.

Text frames are JSON ``{"type": "order" | "error" | "message", "data": ...}``.

Client -> server control messages are JSON text ``{"a": "subscribe" | "unsubscribe" | "mode", "v": ...}``.

Everything here is pure: no I/O, no clock (the caller passes the receipt time).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final

import msgspec

from ..._errors import DecodeError
from ..._model import (
    Broker,
    BrokerError,
    BrokerMessage,
    Depth,
    DepthLevel,
    Event,
    Mode,
    Ohlc,
    OrderUpdate,
    Tick,
    _init_level,
    _init_ohlc,
    _new_object,
    full_tick,
    ltp_tick,
    quote_tick,
)
from .._timecache import TimeCache

__all__ = [
    "FULL_PACKET_SIZE",
    "INDEX_FULL_PACKET_SIZE",
    "INDEX_QUOTE_PACKET_SIZE",
    "INDICES_SEGMENT",
    "LTP_PACKET_SIZE",
    "MAX_TEXT_MESSAGE",
    "QUOTE_PACKET_SIZE",
    "ControlMessage",
    "decode_control",
    "decode_frame",
    "encode_control",
    "encode_frame",
    "encode_text",
    "price_divisor",
]

LTP_PACKET_SIZE: Final = 8
INDEX_QUOTE_PACKET_SIZE: Final = 28
INDEX_FULL_PACKET_SIZE: Final = 32
QUOTE_PACKET_SIZE: Final = 44
FULL_PACKET_SIZE: Final = 184
INDICES_SEGMENT: Final = 9

_U16 = struct.Struct(">H")
_LTP = struct.Struct(">2I")
_INDEX_QUOTE = struct.Struct(">7I")
_INDEX_FULL = struct.Struct(">8I")
_QUOTE = struct.Struct(">11I")
_FULL = struct.Struct(">16I" + "IIHxx" * 10)
_FULL_HEAD = struct.Struct(">16I")  # the depth bytes (64..184) are unpacked lazily by _PackedDepth
_LEVEL = struct.Struct(">IIHxx")  # one depth level: quantity, raw price, orders
assert _FULL.size == FULL_PACKET_SIZE
assert _QUOTE.size == QUOTE_PACKET_SIZE

# Divisor per segment id (the token's low byte): one list index on the hot path instead of branches.
_DIVISORS: Final[tuple[float, ...]] = tuple(
    1e7 if seg == 3 else 1e4 if seg in (6, 12) else 100.0 for seg in range(256)
)

_KITE = Broker.KITE


def price_divisor(instrument_token: int) -> float:
    """The number Kite's integer prices are divided by for this instrument (100, 1e4 or 1e7)."""
    return _DIVISORS[instrument_token & 0xFF]


#: Exchange time (Unix seconds) -> IST datetime, None for 0: the timestamps of a feed repeat within a second.
_TIME_CACHE: Final = TimeCache()


class _PackedDepth(Depth):
    """The `Depth` of a full packet: keeps the packet's 120 depth bytes and builds its `DepthLevel` objects
    on first access to ``bids``/``asks``.

    Most consumers read only the last price; ten levels per packet would otherwise be most of the cost of
    decoding it. Behaves exactly as ``Depth(bids, asks)`` (equality, repr, pickling).
    """

    __slots__ = ("_divisor", "_packed")

    _packed: bytes
    """(quantity, raw price, orders) x 5 bids, then x 5 asks."""
    _divisor: float

    def _materialize(self) -> None:
        # ``new(DepthLevel); init(level, ...)`` is ``DepthLevel(...)`` without type.__call__ (faster).
        d = self._divisor
        new = _new_object
        init = _init_level
        levels: list[DepthLevel] = []
        append = levels.append
        for quantity, price, orders in _LEVEL.iter_unpack(self._packed):
            level = new(DepthLevel)
            init(level, price / d, quantity, orders)
            append(level)
        self._bids = levels[:5]
        self._asks = levels[5:]


def _change(last: float, close: float) -> float:
    return (last - close) * 100 / close if close != 0 else 0.0


def decode_frame(data: bytes | bytearray | memoryview | str, received_at: float | None = None) -> list[Event]:
    """Decode one Kite WebSocket message into model events, without I/O.

    Args:
        data: a binary message (market data, or a 1-byte heartbeat) or a text message (JSON postback).
        received_at: the local receipt time stamped on every event (defaults to ``time.time()``).

    Returns:
        The events in wire order: `Tick` objects for binary frames; one `OrderUpdate`, `BrokerError` or
        `BrokerMessage` for a text frame; an empty list for a heartbeat.

    Raises:
        DecodeError: the message is malformed (a count larger than its content, a packet of unknown
            length, trailing bytes, invalid JSON). ``exc.raw`` holds the message and ``exc.events`` the
            packets that could still be decoded, so a bad packet costs only itself.
    """
    if received_at is None:
        received_at = time.time()
    if isinstance(data, str):
        return [_decode_text(data, received_at)]
    buf = bytes(data) if not isinstance(data, bytes) else data
    size = len(buf)
    if size < 2:
        return []  # heartbeat (or an empty message): no data
    divisors = _DIVISORS
    times = _TIME_CACHE
    new = _new_object
    init_ohlc = _init_ohlc
    unpack_full = _FULL_HEAD.unpack_from
    (count,) = _U16.unpack_from(buf, 0)
    out: list[Event] = []
    append = out.append
    bad: list[str] = []
    offset = 2
    for index in range(count):
        if offset + 2 > size:
            raise _frame_error(f"frame announces {count} packets but holds only {index}", buf, out)
        length = buf[offset] << 8 | buf[offset + 1]
        start = offset + 2
        offset = start + length
        if offset > size:
            raise _frame_error(
                f"packet {index} claims {length} bytes but only {size - start} remain", buf, out
            )
        if length == FULL_PACKET_SIZE:
            v = unpack_full(buf, start)
            token = v[0]
            seg = token & 0xFF
            d = divisors[seg]
            last = v[1] / d
            close = v[10] / d
            depth = new(_PackedDepth)
            depth._bids = depth._asks = None
            depth._packed = buf[start + 64 : offset]
            depth._divisor = d
            ohlc = new(Ohlc)
            init_ohlc(ohlc, v[7] / d, v[8] / d, v[9] / d, close)
            append(
                full_tick(
                    _KITE,
                    token,
                    seg != INDICES_SEGMENT,
                    last,
                    v[2],  # last quantity
                    v[3] / d,  # average price
                    v[4],  # volume
                    v[5],  # total buy quantity
                    v[6],  # total sell quantity
                    ohlc,
                    (last - close) * 100 / close if close else 0.0,
                    times[v[11]],  # last trade time
                    times[v[15]],  # exchange time
                    depth,
                    received_at,
                    seg,
                    v[12],  # open interest, its day high and day low
                    v[13],
                    v[14],
                )
            )
        elif length == QUOTE_PACKET_SIZE:
            v = _QUOTE.unpack_from(buf, start)
            token = v[0]
            seg = token & 0xFF
            d = divisors[seg]
            last = v[1] / d
            close = v[10] / d
            ohlc = new(Ohlc)
            init_ohlc(ohlc, v[7] / d, v[8] / d, v[9] / d, close)
            append(
                quote_tick(
                    _KITE,
                    token,
                    seg != INDICES_SEGMENT,
                    last,
                    v[2],
                    v[3] / d,
                    v[4],
                    v[5],
                    v[6],
                    ohlc,
                    (last - close) * 100 / close if close else 0.0,
                    None,
                    None,
                    None,
                    received_at,
                    seg,
                )
            )
        elif length == LTP_PACKET_SIZE:
            token, raw_last = _LTP.unpack_from(buf, start)
            seg = token & 0xFF
            append(
                ltp_tick(
                    _KITE,
                    token,
                    seg != INDICES_SEGMENT,
                    raw_last / divisors[seg],
                    None,
                    None,
                    received_at,
                    seg,
                )
            )
        elif length in (INDEX_QUOTE_PACKET_SIZE, INDEX_FULL_PACKET_SIZE):
            full = length == INDEX_FULL_PACKET_SIZE
            v = (_INDEX_FULL if full else _INDEX_QUOTE).unpack_from(buf, start)
            token = v[0]
            seg = token & 0xFF
            d = divisors[seg]
            last = v[1] / d
            close = v[5] / d
            # Index order on the wire: high, low, open, close (not open, high, low, close).
            append(
                (full_tick if full else quote_tick)(
                    _KITE,
                    token,
                    seg != INDICES_SEGMENT,
                    last,
                    None,
                    None,
                    None,
                    None,
                    None,
                    Ohlc(v[4] / d, v[2] / d, v[3] / d, close),
                    _change(last, close),
                    None,
                    times[v[7]] if full else None,
                    None,
                    received_at,
                    seg,
                )
            )
        else:
            bad.append(f"packet {index} has unknown length {length}")
    if offset != size:
        bad.append(f"{size - offset} trailing bytes after {count} packets")
    if bad:
        # One frame can hold 65,535 bad packets: name the first few, count the rest (a log line, not 2 MB).
        reason = "; ".join(bad[:_MAX_REASONS])
        if len(bad) > _MAX_REASONS:
            reason += f"; and {len(bad) - _MAX_REASONS} more"
        raise _frame_error(reason, buf, out)
    return out


#: How many of a frame's bad packets a DecodeError names.
_MAX_REASONS = 3


def _frame_error(reason: str, raw: bytes, events: list[Event]) -> DecodeError:
    return DecodeError(f"malformed Kite frame ({len(raw)} bytes): {reason}", raw, events)


#: The largest text message decoded (order postbacks are about 1 KB); larger ones are a DecodeError.
MAX_TEXT_MESSAGE: Final = 256 * 1024


class _TextMessage(msgspec.Struct):
    type: str
    data: Any = None


_TEXT_DECODER = msgspec.json.Decoder(_TextMessage)
# What decoding hostile JSON can raise besides msgspec.DecodeError: UnicodeEncodeError for a str holding
# lone surrogates, UnicodeDecodeError for bytes that are not UTF-8 inside a string, RecursionError for
# nesting deeper than the recursion limit. All become DecodeError.
_JSON_ERRORS = (msgspec.DecodeError, UnicodeError, RecursionError)


def _decode_text(text: str, received_at: float) -> Event:
    if len(text) > MAX_TEXT_MESSAGE:
        raise DecodeError(f"Kite text message of {len(text)} characters exceeds {MAX_TEXT_MESSAGE}", text)
    try:
        message = _TEXT_DECODER.decode(text)
    except _JSON_ERRORS as exc:
        raise DecodeError(f"malformed Kite text message: {exc}", text) from exc
    kind = message.type
    data = message.data
    if kind == "order":
        if not isinstance(data, dict):
            raise DecodeError("Kite order message without an object payload", text)
        return OrderUpdate(_KITE, data, received_at)
    if kind == "error":
        return BrokerError(_KITE, data if isinstance(data, str) else _json_text(data), received_at)
    if kind == "message":
        return BrokerMessage(_KITE, data if isinstance(data, str) else _json_text(data), received_at)
    # An undocumented type: keep it whole rather than lose it.
    return BrokerMessage(_KITE, text, received_at)


def _json_text(value: Any) -> str:
    return msgspec.json.encode(value).decode()


# ---------------------------------------------------------------------------------------------------------
# Encoding (used by the simulator, and by tests as the exact inverse of decode_frame).


def _raw_price(price: float | None, divisor: float) -> int:
    return 0 if price is None else round(price * divisor)


def _raw_time(value: datetime | None) -> int:
    return 0 if value is None else int(value.timestamp())


def _encode_packet(tick: Tick) -> bytes:
    token = tick.instrument_token
    d = _DIVISORS[token & 0xFF]
    last = _raw_price(tick.last_price, d)
    if tick.mode is Mode.LTP:
        return _LTP.pack(token, last)
    ohlc = tick.ohlc or Ohlc(0.0, 0.0, 0.0, 0.0)
    o, h, lo, c = (_raw_price(x, d) for x in (ohlc.open, ohlc.high, ohlc.low, ohlc.close))
    if not tick.tradable:
        change = (last - c) & 0xFFFFFFFF  # DOC-WS "price change"; decoders recompute it, as PY does
        if tick.mode is Mode.FULL:
            return _INDEX_FULL.pack(token, last, h, lo, o, c, change, _raw_time(tick.exchange_time))
        return _INDEX_QUOTE.pack(token, last, h, lo, o, c, change)
    head = (
        token,
        last,
        tick.last_quantity or 0,
        _raw_price(tick.average_price, d),
        tick.volume or 0,
        tick.total_buy_quantity or 0,
        tick.total_sell_quantity or 0,
        o,
        h,
        lo,
        c,
    )
    if tick.mode is Mode.QUOTE:
        return _QUOTE.pack(*head)
    levels: list[int] = []
    depth = tick.depth
    for side in (depth.bids, depth.asks) if depth is not None else ((), ()):
        padded = list(side[:5]) + [DepthLevel(0.0, 0, 0)] * (5 - min(len(side), 5))
        for level in padded:
            levels += (level.quantity, _raw_price(level.price, d), level.orders)
    return _FULL.pack(
        *head,
        _raw_time(tick.last_trade_time),
        tick.oi or 0,
        tick.oi_day_high or 0,
        tick.oi_day_low or 0,
        _raw_time(tick.exchange_time),
        *levels,
    )


def encode_frame(ticks: Iterable[Tick]) -> bytes:
    """Encode ticks into one Kite binary frame; the exact inverse of `decode_frame`.

    Each tick is packed by its `mode` and `tradable` flag (LTP -> 8 bytes; QUOTE -> 44, or 28 for an
    index; FULL -> 184, or 32 for an index). Prices are scaled by the segment's divisor and rounded;
    missing values become 0, which `decode_frame` reads back as 0 (timestamps: as None).

    Raises:
        struct.error: a value does not fit its unsigned 32-bit (or 16-bit) field.
        ValueError: more than 65535 packets.
    """
    packets = [_encode_packet(tick) for tick in ticks]
    if len(packets) > 0xFFFF:
        raise ValueError(f"a Kite frame holds at most 65535 packets, got {len(packets)}")
    parts = [_U16.pack(len(packets))]
    for packet in packets:
        parts.append(_U16.pack(len(packet)))
        parts.append(packet)
    return b"".join(parts)


def encode_text(kind: str, data: Any) -> str:
    """Encode a server text message ``{"type": kind, "data": data}`` (order, error or message)."""
    return msgspec.json.encode({"type": kind, "data": data}).decode()


# ---------------------------------------------------------------------------------------------------------
# Control messages (client -> server).


class ControlMessage(msgspec.Struct, frozen=True):
    """A decoded client request: ``action`` is subscribe, unsubscribe or mode."""

    action: str
    tokens: tuple[int, ...]
    mode: Mode | None = None


class _Request(msgspec.Struct):
    a: str
    v: Any


_REQUEST_DECODER = msgspec.json.Decoder(_Request)
_MODES_BY_NAME = {m.value: m for m in Mode}


def encode_control(action: str, tokens: Sequence[int], mode: Mode | None = None) -> str:
    """Encode a client request as the official clients do: ``{"a": action, "v": ...}``.

    Raises:
        ValueError: an unknown action, or ``mode`` given for anything but the ``mode`` action.
    """
    if action == "mode":
        if mode is None:
            raise ValueError("the mode action needs a mode")
        return msgspec.json.encode({"a": "mode", "v": [mode.value, list(tokens)]}).decode()
    if action not in ("subscribe", "unsubscribe") or mode is not None:
        raise ValueError(f"unknown Kite action {action!r} (or a mode given to it)")
    return msgspec.json.encode({"a": action, "v": list(tokens)}).decode()


def _tokens(value: Any, raw: str | bytes) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(type(t) is int and 0 <= t <= 0xFFFFFFFF for t in value):
        raise DecodeError("Kite request tokens must be a list of unsigned 32-bit integers", raw)
    return tuple(value)


def decode_control(raw: str | bytes) -> ControlMessage:
    """Decode a client request (the simulator's side of `encode_control`).

    Raises:
        DecodeError: invalid JSON, an unknown action or mode, or tokens that are not integers.
    """
    try:
        request = _REQUEST_DECODER.decode(raw)
    except _JSON_ERRORS as exc:
        raise DecodeError(f"malformed Kite request: {exc}", raw) from exc
    if request.a in ("subscribe", "unsubscribe"):
        return ControlMessage(request.a, _tokens(request.v, raw))
    if request.a == "mode":
        v = request.v
        if not (isinstance(v, list) and len(v) == 2 and isinstance(v[0], str)):
            raise DecodeError('Kite mode request must be {"a": "mode", "v": [mode, [tokens]]}', raw)
        mode = _MODES_BY_NAME.get(v[0])
        if mode is None:
            raise DecodeError(f"unknown Kite mode {v[0]!r}", raw)
        return ControlMessage("mode", _tokens(v[1], raw), mode)
    raise DecodeError(f"unknown Kite action {request.a!r}", raw)
