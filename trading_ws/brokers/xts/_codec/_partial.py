"""Partial-mode decoding: the ``<code>-json-partial`` messages, ``key:value`` pairs joined by commas with
``t:<segment>_<id>`` first (xts-protocol.md section 4.9), parsed into a `PartialMessage` and normalised
into model events.

A partial message carries only some keys (perhaps only what changed): a tick without ``ltp`` has
``last_price = nan``, and ticks are not merged with earlier ones (docs/xts.md, "The codec").

Pure and synchronous: no I/O, no clock (the caller passes the receipt time, else ``time.time()``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final, NamedTuple

import attrs

from ...._errors import DecodeError
from ...._model import (
    Candle,
    Depth,
    DepthLevel,
    Event,
    InstrumentPropertyChange,
    Mode,
    OpenInterest,
    full_tick,
    ltp_tick,
    quote_tick,
)
from ._full import _ohlc_change
from ._wire import (
    _BAD_VALUE,
    _NAN,
    _NSE_SEGMENTS,
    _NSE_TIMES,
    _OTHER_TIMES,
    _PROPERTY_NAMES_BY_KEY,
    _XTS,
    CANDLE,
    INDEX_DATA,
    INSTRUMENT_PROPERTY_CHANGE,
    LTP,
    MARKET_DEPTH,
    OPEN_INTEREST,
    TOUCHLINE,
    _bar_time,
    _Handler,
    _raw,
    is_index,
    xts_to_datetime,
)

_LTP_MODE: Final = Mode.LTP
_QUOTE_MODE: Final = Mode.QUOTE
_FULL_MODE: Final = Mode.FULL


class PartialLevel(NamedTuple):
    """One ``bi``/``ai`` group of a partial message: ``index|size|price|orders`` (``level`` is the index)."""

    level: int
    size: int
    price: float
    orders: int


@attrs.define(slots=True)
class PartialMessage:
    """A parsed ``<code>-json-partial`` payload (section 4.9); a key the message lacks is None.

    Field names are the wire keys. Their meaning depends on the message code: ``o`` is the open for
    1501/1502/1504/1505 and the open interest for 1510; ``bt`` is the bar time for 1505 and the book type
    for 1512. Keys this parser does not know (the numeric property codes of 1105) are in ``extra``.
    """

    segment: int
    instrument_id: int | None
    """The numeric instrument id of ``t``, or None when ``t`` names an index (1504 ``1_NIFTY 50``)."""
    index_name: str | None = None
    """The name in ``t`` when it is not numeric (1504)."""
    ltp: float | None = None
    ltq: int | None = None
    tb: int | None = None
    ts: int | None = None
    v: int | None = None
    ap: float | None = None
    ltt: int | None = None
    lut: int | None = None
    pc: float | None = None
    o: float | None = None
    h: float | None = None
    l: float | None = None  # noqa: E741 - the wire key
    c: float | None = None
    vp: float | None = None
    bi: tuple[PartialLevel, ...] | None = None
    ai: tuple[PartialLevel, ...] | None = None
    bt: int | None = None
    bv: int | None = None
    pv: float | None = None
    yh: float | None = None
    yl: float | None = None
    mt: int | None = None
    extra: dict[str, str] = attrs.field(factory=dict)
    """Unknown keys -> values as sent."""


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        as_float = float(value)  # "30.0" (ValueError again for garbage)
        if not as_float.is_integer():
            raise ValueError(f"expected an integer, got {value!r}") from None
        return int(as_float)


def _levels(value: str) -> tuple[PartialLevel, ...]:
    parts = value.split("|")
    return tuple(
        PartialLevel(_int(parts[i]), _int(parts[i + 1]), float(parts[i + 2]), _int(parts[i + 3]))
        for i in range(0, len(parts) - 3, 4)
    )


_PARTIAL_CONVERTERS: Final[dict[str, Callable[[str], Any]]] = {
    "ltp": float,
    "ltq": _int,
    "tb": _int,
    "ts": _int,
    "v": _int,
    "ap": float,
    "ltt": _int,
    "lut": _int,
    "pc": float,
    "o": float,
    "h": float,
    "l": float,
    "c": float,
    "vp": float,
    "bi": _levels,
    "ai": _levels,
    "bt": _int,
    "bv": _int,
    "pv": float,
    "yh": float,
    "yl": float,
    "mt": _int,
}


def _split_pairs(text: str) -> tuple[int, int | None, str | None, dict[str, str]]:
    # -> (segment, numeric id or None, index name or None, the other pairs with non-empty values)
    pairs: dict[str, str] = {}
    segment: int | None = None
    instrument_id: int | None = None
    index_name: str | None = None
    for pair in text.split(","):
        key, sep, value = pair.partition(":")
        if not sep:
            if not pair:
                continue
            raise ValueError(f"pair {pair!r} has no ':'")
        if key == "t":
            seg_text, sep, ident = value.partition("_")
            if not sep or not ident:
                raise ValueError(f"t:{value} is not <segment>_<id>")
            segment = int(seg_text)
            try:
                instrument_id, index_name = int(ident), None
            except ValueError:
                instrument_id, index_name = None, ident
        elif value:
            pairs[key] = value
    if segment is None:
        raise ValueError("no t:<segment>_<id> pair")
    return segment, instrument_id, index_name, pairs


def parse_partial(text: str) -> PartialMessage:
    """Parse a partial payload such as ``"t:1_2885,ltp:1272.2,ltq:5"``. Does not block.

    Pairs may come in any order (``t`` is usually first); an empty value counts as absent; keys the parser
    does not know go to ``extra``.

    Raises:
        DecodeError: no ``t`` key, a ``t`` that is not ``<segment>_<id>``, a pair without ``:``, or a
            value that is not a number where one is expected.
    """
    try:
        segment, instrument_id, index_name, pairs = _split_pairs(text)
        message = PartialMessage(segment, instrument_id, index_name)
        converters = _PARTIAL_CONVERTERS
        extra = message.extra
        for key, value in pairs.items():
            convert = converters.get(key)
            if convert is None:
                extra[key] = value
            else:
                setattr(message, key, convert(value))
        return message
    except (ValueError, OverflowError) as exc:
        raise DecodeError(f"malformed XTS partial message: {exc}", text) from exc


def _partial_depth(m: PartialMessage) -> Depth | None:
    if m.bi is None and m.ai is None:
        return None
    return Depth(
        [DepthLevel(x.price, x.size, x.orders) for x in m.bi or ()],
        [DepthLevel(x.price, x.size, x.orders) for x in m.ai or ()],
    )


def _partial_tick(m: PartialMessage, mode: Mode, received_at: float) -> Event | None:
    iid = m.instrument_id
    if iid is None:
        return None
    seg = m.segment
    times = _NSE_TIMES if seg in _NSE_SEGMENTS else _OTHER_TIMES
    last = _NAN if m.ltp is None else m.ltp
    if mode is _LTP_MODE:
        return ltp_tick(_XTS, iid, not is_index(seg, iid), last, m.ltq, times[m.lut], received_at, seg)
    ohlc, change = _ohlc_change(last, m.o, m.h, m.l, m.c, m.pc)
    return (full_tick if mode is _FULL_MODE else quote_tick)(
        _XTS,
        iid,
        not is_index(seg, iid),
        last,
        m.ltq,
        m.ap,
        m.v,
        m.tb,
        m.ts,
        ohlc,
        change,
        times[m.ltt],
        times[m.lut],
        _partial_depth(m),
        received_at,
        seg,
    )


def _partial_1504(m: PartialMessage, received_at: float) -> Event | None:
    iid = m.instrument_id
    if iid is None:
        return None  # t:<segment>_<IndexName>: no numeric id to attribute the tick to
    last = _NAN if m.ltp is None else m.ltp
    ohlc, change = _ohlc_change(last, m.o, m.h, m.l, m.c, m.pc)
    return quote_tick(
        _XTS,
        iid,
        False,
        last,
        m.ltq,
        None,
        None,
        None,
        None,
        ohlc,
        change,
        None,
        xts_to_datetime(m.lut, m.segment),
        None,
        received_at,
        m.segment,
    )


def _partial_1505(m: PartialMessage, received_at: float) -> Event | None:
    if m.instrument_id is None:
        return None
    if m.bt is None:
        raise ValueError("partial candle without bt")
    return Candle(
        _XTS,
        m.instrument_id,
        m.segment,
        _bar_time(m.bt),
        _NAN if m.o is None else m.o,
        _NAN if m.h is None else m.h,
        _NAN if m.l is None else m.l,
        _NAN if m.c is None else m.c,
        m.bv or 0,
        None,
        received_at,
    )


def _partial_1510(m: PartialMessage, received_at: float) -> Event | None:
    if m.instrument_id is None:
        return None
    if m.o is None:
        raise ValueError("partial open interest without o")
    return OpenInterest(_XTS, m.instrument_id, m.segment, int(m.o), None, received_at)


def _decode_1105_partial(text: str, received_at: float) -> Event | None:
    segment, instrument_id, _, pairs = _split_pairs(text)
    if instrument_id is None:
        return None
    names = _PROPERTY_NAMES_BY_KEY
    props = {names.get(key, key): value for key, value in pairs.items()}
    return InstrumentPropertyChange(_XTS, instrument_id, segment, props, received_at)


def _partial_1501(m: PartialMessage, received_at: float) -> Event | None:
    return _partial_tick(m, _QUOTE_MODE, received_at)


def _partial_1502(m: PartialMessage, received_at: float) -> Event | None:
    return _partial_tick(m, _FULL_MODE, received_at)


def _partial_1512(m: PartialMessage, received_at: float) -> Event | None:
    return _partial_tick(m, _LTP_MODE, received_at)


_TextNormalizer = Callable[[str, float], Event | None]


def _partial_handler(code: int, normalize: _TextNormalizer) -> _Handler:
    def handler(data: Any, received_at: float) -> list[Event]:
        try:
            if isinstance(data, bytes):
                data = data.decode()
            if type(data) is not str:
                raise TypeError(f"expected text, got {type(data).__name__}")
            event = normalize(data, received_at)
        except DecodeError:
            raise
        except _BAD_VALUE as exc:
            raise DecodeError(f"malformed XTS {code} partial message: {exc}", _raw(data)) from exc
        return [] if event is None else [event]

    return handler


def _parsed(
    normalize: Callable[[PartialMessage, float], Event | None],
) -> Callable[[str, float], Event | None]:
    def parse_then_normalize(text: str, received_at: float) -> Event | None:
        return normalize(parse_partial(text), received_at)

    return parse_then_normalize


_PARTIAL: Final[dict[int, _Handler]] = {
    TOUCHLINE: _partial_handler(TOUCHLINE, _parsed(_partial_1501)),
    MARKET_DEPTH: _partial_handler(MARKET_DEPTH, _parsed(_partial_1502)),
    LTP: _partial_handler(LTP, _parsed(_partial_1512)),
    INDEX_DATA: _partial_handler(INDEX_DATA, _parsed(_partial_1504)),
    CANDLE: _partial_handler(CANDLE, _parsed(_partial_1505)),
    OPEN_INTEREST: _partial_handler(OPEN_INTEREST, _parsed(_partial_1510)),
    INSTRUMENT_PROPERTY_CHANGE: _partial_handler(INSTRUMENT_PROPERTY_CHANGE, _decode_1105_partial),
}


def decode_partial(code: int, data: Any, received_at: float | None = None) -> list[Event]:
    """Decode the data of a ``<code>-json-partial`` event into model events. Does not block.

    Args:
        code: the message code.
        data: the ``key:value,...`` text (``bytes`` are decoded as UTF-8).
        received_at: the local receipt time stamped on the events (defaults to ``time.time()``).

    Returns:
        One event, or ``[]`` for a code without a partial decoder (1507, unknown codes) or a message that
        names no numeric instrument (1504 ``t:1_NIFTY 50``).

    Raises:
        DecodeError: the text is malformed (see `parse_partial`), is not text, or lacks what its kind
            needs (a 1510 without ``o``, a 1505 without ``bt``).
    """
    handler = _PARTIAL.get(code)
    if handler is None:
        return []
    return handler(data, time.time() if received_at is None else received_at)
