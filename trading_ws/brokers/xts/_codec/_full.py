"""Full-mode decoding: the ``<code>-json-full`` messages (JSON text, or a dict) into model events.

The hot paths are the 1501 (touchline, mode QUOTE) and 1502 (market depth, mode FULL) handlers. Both come
from one factory, `_touchline_handler`: one body, with everything but msgspec's decode and the tick builder
inlined, and what differs between the codes (decoders, builder, where the depth comes from) bound once as
closure constants. The same body serves a message that arrives as a dict (already converted to its wire
struct), so there is no slower third copy to keep in step. It replaced two hand-inlined copies; measured
in one process against them, interleaved, on the benchmark's frames, the difference stayed within the
noise of this shared machine (after/before 0.95-1.07 on 1501 and 0.99-1.03 on 1502 across runs, with no
consistent sign; the figures are in the commit that made the split).

Pure and synchronous: no I/O, no clock (the caller passes the receipt time, else ``time.time()``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, NamedTuple

import msgspec

from ...._errors import DecodeError
from ...._model import (
    Candle,
    Depth,
    DepthLevel,
    Event,
    InstrumentPropertyChange,
    MarketStatus,
    Ohlc,
    OpenInterest,
    _init_level,
    _init_ohlc,
    _new_object,
    full_tick,
    ltp_tick,
    quote_tick,
)
from ._wire import (
    _BAD_VALUE,
    _ENCODER,
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
    MARKET_STATUS,
    OPEN_INTEREST,
    TOUCHLINE,
    _bar_time,
    _Book,
    _Candle,
    _Handler,
    _Header,
    _Index,
    _Ltp,
    _MarketDepth,
    _MarketStatus,
    _Nested1501,
    _Nested1502,
    _OpenInterest,
    _raw,
    _Touchline,
    _TouchlineFields,
    xts_to_datetime,
)


class _RowsDepth(Depth):
    """The `Depth` of a 1502: keeps the decoded ``Bids``/``Asks`` rows, builds `DepthLevel` objects on
    first access to ``bids``/``asks``.

    Most consumers read only the last price; building ten levels per message would otherwise be a large
    part of the decode. Behaves exactly as ``Depth(bids, asks)`` (equality, repr).
    """

    __slots__ = ("_src",)

    _src: _Nested1502 | _MarketDepth

    def _materialize(self) -> None:
        src = self._src
        self._bids = _levels_of(src.Bids)
        self._asks = _levels_of(src.Asks)


class _TouchlineDepth(Depth):
    """The one-level `Depth` of a 1501 touchline's ``BidInfo``/``AskInfo``, built on first access."""

    __slots__ = ("_src",)

    _src: _TouchlineFields

    def _materialize(self) -> None:
        src = self._src
        bid = src.BidInfo
        ask = src.AskInfo
        self._bids = [] if bid is None else [DepthLevel(bid.Price, bid.Size, bid.TotalOrders)]
        self._asks = [] if ask is None else [DepthLevel(ask.Price, ask.Size, ask.TotalOrders)]


def _levels_of(rows: Sequence[_Book] | None) -> list[DepthLevel]:
    """``[DepthLevel(r.Price, r.Size, r.TotalOrders) for r in rows or ()]``, faster."""
    new = _new_object
    init = _init_level
    levels: list[DepthLevel] = []
    append = levels.append
    for r in rows or ():
        level = new(DepthLevel)
        init(level, r.Price, r.Size, r.TotalOrders)
        append(level)
    return levels


# Text decoders of the hot paths: the small nested structs first, the flat-capable one only for a message
# without a ``Touchline`` object (see _wire's speed notes).
_decode_nested_1501: Final = msgspec.json.Decoder(_Nested1501, strict=False).decode
_decode_flat_1501: Final = msgspec.json.Decoder(_Touchline, strict=False).decode
_decode_nested_1502: Final = msgspec.json.Decoder(_Nested1502, strict=False).decode
_decode_flat_1502: Final = msgspec.json.Decoder(_MarketDepth, strict=False).decode


class _TouchlineHandler(NamedTuple):
    text: _Handler
    """JSON text (str or bytes-like) -> events: the hot path."""
    from_struct: Callable[[Any, Any, float], list[Event]]
    """(the data as given, that data converted to the flat-capable struct, the receipt time) -> events."""


def _touchline_handler(code: int) -> _TouchlineHandler:
    """The handlers of a 1501 (a QUOTE tick, the touchline's best bid/ask as a one-level `Depth`) or a 1502
    (a FULL tick, the ``Bids``/``Asks`` rows as its `Depth`), from one body.

    What differs between the two codes is bound here, once: the decoders, the builder (its mode) and where
    the depth comes from (``rows``: a closure constant, one branch per message).
    """
    rows = code == MARKET_DEPTH
    decode_nested = _decode_nested_1502 if rows else _decode_nested_1501
    decode_flat = _decode_flat_1502 if rows else _decode_flat_1501
    build = full_tick if rows else quote_tick
    nse_segments = _NSE_SEGMENTS
    nse_times = _NSE_TIMES
    other_times = _OTHER_TIMES
    nan = _NAN
    new = _new_object
    init_ohlc = _init_ohlc
    xts = _XTS

    def handle(data: Any, received_at: float, converted: Any = None) -> list[Event]:
        # m: the message struct, t: its touchline (m itself in the flat form). Typed Any: the structs of
        # the two codes differ (1501: BidInfo/AskInfo, 1502: Bids/Asks), and only the branch of this code
        # reads them.
        m: Any
        t: Any
        try:
            if converted is None:  # JSON text (the hot path)
                m = decode_nested(data)
                t = m.Touchline
                if t is None:  # the flat form
                    m = t = decode_flat(data)
            else:  # a dict, converted by the caller
                m = converted
                t = m.Touchline or m
            seg = m.ExchangeSegment
            iid = m.ExchangeInstrumentID
            last = t.LastTradedPrice
            if seg is None or iid is None or last is None:
                raise ValueError("missing ExchangeSegment, ExchangeInstrumentID or LastTradedPrice")
            depth: Depth | None
            if rows:
                if m.Bids is None and m.Asks is None:
                    depth = None
                else:
                    depth = new(_RowsDepth)
                    depth._bids = depth._asks = None
                    depth._src = m
            elif t.BidInfo is None and t.AskInfo is None:
                depth = None
            else:
                depth = new(_TouchlineDepth)
                depth._bids = depth._asks = None
                depth._src = t
            times = nse_times if seg in nse_segments else other_times
            change = t.PercentChange
            o, h, lo, c = t.Open, t.High, t.Low, t.Close
            if o is None and h is None and lo is None and c is None:
                ohlc = None
            else:
                ohlc = new(Ohlc)
                init_ohlc(
                    ohlc,
                    nan if o is None else o,
                    nan if h is None else h,
                    nan if lo is None else lo,
                    nan if c is None else c,
                )
                if change is None and c is not None:
                    change = (last - c) * 100 / c if c else 0.0
            ltq = t.LastTradedQunatity
            return [
                build(
                    xts,
                    iid,
                    not (seg == 1 and 26000 <= iid <= 26099),  # is_index, inlined
                    last,
                    t.LastTradedQuantity if ltq is None else ltq,
                    t.AverageTradedPrice,
                    t.TotalTradedQuantity,
                    t.TotalBuyQuantity,
                    t.TotalSellQuantity,
                    ohlc,
                    change,
                    times[t.LastTradedTime],
                    times[m.ExchangeTimeStamp or t.LastUpdateTime],
                    depth,
                    received_at,
                    seg,
                )
            ]
        except _BAD_VALUE as exc:
            raise DecodeError(f"malformed XTS {code} message: {exc}", _raw(data)) from exc

    # The text handler is `handle` itself (its third argument defaulted): no wrapper call on the hot path.
    return _TouchlineHandler(handle, lambda data, m, received_at: handle(data, received_at, m))


def _full_1512(m: _Ltp, received_at: float) -> Event:
    seg = m.ExchangeSegment
    iid = m.ExchangeInstrumentID
    last = m.LastTradedPrice
    if seg is None or iid is None or last is None:
        raise ValueError("missing ExchangeSegment, ExchangeInstrumentID or LastTradedPrice")
    ltq = m.LastTradedQunatity
    return ltp_tick(
        _XTS,
        iid,
        not (seg == 1 and 26000 <= iid <= 26099),
        last,
        m.LastTradedQuantity if ltq is None else ltq,
        xts_to_datetime(m.ExchangeTimeStamp or m.LastUpdateTime, seg),
        received_at,
        seg,
    )


def _full_1504(m: _Index, received_at: float) -> Event:
    t = m.Touchline or m
    seg = m.ExchangeSegment
    iid = m.ExchangeInstrumentID
    last = m.IndexValue if m.IndexValue is not None else t.LastTradedPrice
    if seg is None or iid is None or last is None:
        raise ValueError("missing ExchangeSegment, ExchangeInstrumentID or IndexValue")
    o = m.OpeningIndex if m.OpeningIndex is not None else t.Open
    h = m.HighIndexValue if m.HighIndexValue is not None else t.High
    lo = m.LowIndexValue if m.LowIndexValue is not None else t.Low
    c = m.ClosingIndex if m.ClosingIndex is not None else t.Close
    ohlc, change = _ohlc_change(last, o, h, lo, c, t.PercentChange)
    return quote_tick(
        _XTS,
        iid,
        False,
        last,
        None,
        None,
        None,
        None,
        None,
        ohlc,
        change,
        None,
        xts_to_datetime(m.ExchangeTimeStamp or t.LastUpdateTime, seg),
        None,
        received_at,
        seg,
    )


def _ohlc_change(
    last: float,
    o: float | None,
    h: float | None,
    lo: float | None,
    c: float | None,
    change: float | None,
) -> tuple[Ohlc | None, float | None]:
    if o is None and h is None and lo is None and c is None:
        return None, change
    ohlc = Ohlc(
        _NAN if o is None else o,
        _NAN if h is None else h,
        _NAN if lo is None else lo,
        _NAN if c is None else c,
    )
    if change is None and c is not None:
        change = (last - c) * 100 / c if c else 0.0
    return ohlc, change


def _require(seg: int | None, iid: int | None) -> tuple[int, int]:
    if seg is None or iid is None:
        raise ValueError("missing ExchangeSegment or ExchangeInstrumentID")
    return seg, iid


def _full_1505(m: _Candle, received_at: float) -> Event:
    seg, iid = _require(m.ExchangeSegment, m.ExchangeInstrumentID)
    if m.BarTime is None:
        raise ValueError("candle without BarTime")
    return Candle(
        _XTS,
        iid,
        seg,
        _bar_time(m.BarTime),
        _NAN if m.Open is None else m.Open,
        _NAN if m.High is None else m.High,
        _NAN if m.Low is None else m.Low,
        _NAN if m.Close is None else m.Close,
        m.BarVolume or 0,
        m.OpenInterest,
        received_at,
    )


def _full_1507(m: _MarketStatus, received_at: float) -> Event:
    seg = m.ExchangeSegment
    message = m.message if m.message is not None else m.Message
    session = m.tradingSession if m.tradingSession is not None else m.TradingSession
    market = m.maketType if m.maketType is not None else m.marketType
    if market is None:
        market = m.MarketType
    return MarketStatus(
        _XTS,
        seg,
        message or "",
        session,
        xts_to_datetime(m.ExchangeTimeStamp, seg) if seg is not None else None,
        received_at,
        market,
    )


def _full_1510(m: _OpenInterest, received_at: float) -> Event:
    seg, iid = _require(m.ExchangeSegment, m.ExchangeInstrumentID)
    if m.OpenInterest is None:
        raise ValueError("open-interest message without OpenInterest")
    return OpenInterest(
        _XTS, iid, seg, m.OpenInterest, xts_to_datetime(m.ExchangeTimeStamp, seg), received_at
    )


_HEADER_KEYS: Final = frozenset(
    {
        "MessageCode",
        "MessageVersion",
        "ApplicationType",
        "TokenID",
        "ExchangeSegment",
        "ExchangeInstrumentID",
        "ExchangeTimeStamp",
        "SequenceNumber",
        "BookType",
        "XMarketType",
    }
)


def _full_1105(m: dict[str, Any], received_at: float) -> Event:
    header = msgspec.convert(m, _Header, strict=False)
    seg, iid = _require(header.ExchangeSegment, header.ExchangeInstrumentID)
    names = _PROPERTY_NAMES_BY_KEY
    props = {
        names.get(str(key), str(key)): value if isinstance(value, str) else _ENCODER.encode(value).decode()
        for key, value in m.items()
        if key not in _HEADER_KEYS
    }
    return InstrumentPropertyChange(_XTS, iid, seg, props, received_at)


_Normalize = Callable[[Any, float], Event]


def _text_handler(code: int, cls: type[Any], normalize: _Normalize) -> _Handler:
    decode = msgspec.json.Decoder(cls, strict=False).decode

    def handler(data: Any, received_at: float) -> list[Event]:
        try:
            return [normalize(decode(data), received_at)]
        except _BAD_VALUE as exc:
            raise DecodeError(f"malformed XTS {code} message: {exc}", _raw(data)) from exc

    return handler


def _one(normalize: _Normalize) -> Callable[[Any, Any, float], list[Event]]:
    def from_struct(data: Any, m: Any, received_at: float) -> list[Event]:
        return [normalize(m, received_at)]

    return from_struct


class _Full(NamedTuple):
    text: _Handler
    """JSON text (str or bytes-like) -> events."""
    handler: _Handler
    """Any data (text or a dict) -> events."""


def _full(code: int, cls: type[Any], normalize: _Normalize) -> _Full:
    # cls decodes every form of the message (flat and nested).
    text = _text_handler(code, cls, normalize)
    return _Full(text, _full_handler(code, cls, text, _one(normalize)))


def _full_touchline(code: int, cls: type[Any]) -> _Full:
    handlers = _touchline_handler(code)
    return _Full(handlers.text, _full_handler(code, cls, handlers.text, handlers.from_struct))


def _full_handler(
    code: int, cls: type[Any], text: _Handler, from_struct: Callable[[Any, Any, float], list[Event]]
) -> _Handler:
    convert = msgspec.convert

    def handler(data: Any, received_at: float) -> list[Event]:
        if type(data) is str or isinstance(data, bytes | bytearray | memoryview):
            return text(data, received_at)
        try:
            if isinstance(data, dict):
                return from_struct(data, convert(data, cls, strict=False), received_at)
            raise TypeError(f"expected JSON text or an object, got {type(data).__name__}")
        except _BAD_VALUE as exc:
            raise DecodeError(f"malformed XTS {code} message: {exc}", _raw(data)) from exc

    return handler


_FULL_PARTS: Final[dict[int, _Full]] = {
    TOUCHLINE: _full_touchline(TOUCHLINE, _Touchline),
    MARKET_DEPTH: _full_touchline(MARKET_DEPTH, _MarketDepth),
    LTP: _full(LTP, _Ltp, _full_1512),
    INDEX_DATA: _full(INDEX_DATA, _Index, _full_1504),
    CANDLE: _full(CANDLE, _Candle, _full_1505),
    MARKET_STATUS: _full(MARKET_STATUS, _MarketStatus, _full_1507),
    OPEN_INTEREST: _full(OPEN_INTEREST, _OpenInterest, _full_1510),
    INSTRUMENT_PROPERTY_CHANGE: _full(INSTRUMENT_PROPERTY_CHANGE, dict[str, Any], _full_1105),
}
_FULL: Final[dict[int, _Handler]] = {code: parts.handler for code, parts in _FULL_PARTS.items()}


def decode_full(code: int, data: Any, received_at: float | None = None) -> list[Event]:
    """Decode the data of a ``<code>-json-full`` event into model events. Does not block.

    Args:
        code: the message code (1501, 1502, 1504, 1505, 1507, 1510, 1512 or 1105).
        data: the message as JSON text (``str`` or ``bytes``), or already decoded as a dict.
        received_at: the local receipt time stamped on the events (defaults to ``time.time()``).

    Returns:
        One event (see the module docstring), or ``[]`` for a code this codec does not know.

    Raises:
        DecodeError: invalid JSON, a value of the wrong type, or a message without the fields its kind
            needs (segment, instrument id, last price...). ``exc.raw`` holds the data.
    """
    handler = _FULL.get(code)
    if handler is None:
        return []
    return handler(data, time.time() if received_at is None else received_at)


def decode_list_quotes(
    code: int, list_quotes: Iterable[Any], received_at: float | None = None
) -> list[Event]:
    """Decode the ``listQuotes`` snapshots of a subscribe or quotes REST response. Does not block.

    Each entry is a JSON string shaped like that code's full event (section 3.1).

    Returns:
        One event per entry, in order.

    Raises:
        DecodeError: an entry is malformed; ``exc.events`` holds every other entry's event and ``exc.raw``
            the first bad entry.
    """
    if received_at is None:
        received_at = time.time()
    out: list[Event] = []
    first: DecodeError | None = None
    bad = 0  # only the first error is kept: each one holds its traceback's frames (~2 KB)
    for entry in list_quotes:
        try:
            out += decode_full(code, entry, received_at)
        except DecodeError as exc:
            bad += 1
            if first is None:
                first = exc
    if first is not None:
        raise DecodeError(
            f"{bad} malformed XTS {code} snapshot(s); first: {first}", first.raw, out
        ) from first
    return out
