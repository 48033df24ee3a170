"""Encoders: model events back into XTS ``<code>-json-full`` and ``<code>-json-partial`` messages.

The inverse of the decoders, for the simulator (which serves what they produce), for `trading_ws.testing`,
and for tests and benchmarks (round trips). Not used on the client's receive path.

Pure and synchronous: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from ...._model import (
    Candle,
    DepthLevel,
    Event,
    InstrumentPropertyChange,
    MarketStatus,
    Mode,
    OpenInterest,
    Tick,
)
from ._wire import (
    _ENCODER,
    _PROPERTY_CODES_BY_NAME,
    CANDLE,
    INSTRUMENT_PROPERTY_CHANGE,
    LTP,
    MARKET_DEPTH,
    MARKET_STATUS,
    MODE_TO_CODE,
    OPEN_INTEREST,
    TOUCHLINE,
    _bar_seconds,
    datetime_to_xts,
)

_LTP_MODE: Final = Mode.LTP


def _book(level: DepthLevel) -> dict[str, Any]:
    return {
        "Size": level.quantity,
        "Price": level.price,
        "TotalOrders": level.orders,
        "BuyBackMarketMaker": 0,
    }


def _put(body: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        body[key] = value


def _touchline_body(tick: Tick, seg: int, with_book: bool) -> dict[str, Any]:
    body: dict[str, Any] = {}
    depth = tick.depth
    if with_book and depth is not None:
        if depth.bids:
            body["BidInfo"] = _book(depth.bids[0])
        if depth.asks:
            body["AskInfo"] = _book(depth.asks[0])
    body["LastTradedPrice"] = tick.last_price
    _put(body, "LastTradedQunatity", tick.last_quantity)
    _put(body, "TotalBuyQuantity", tick.total_buy_quantity)
    _put(body, "TotalSellQuantity", tick.total_sell_quantity)
    _put(body, "TotalTradedQuantity", tick.volume)
    _put(body, "AverageTradedPrice", tick.average_price)
    if tick.last_trade_time is not None:
        body["LastTradedTime"] = datetime_to_xts(tick.last_trade_time, seg)
    if tick.exchange_time is not None:
        body["LastUpdateTime"] = datetime_to_xts(tick.exchange_time, seg)
    _put(body, "PercentChange", tick.change)
    if tick.ohlc is not None:
        body["Open"] = tick.ohlc.open
        body["High"] = tick.ohlc.high
        body["Low"] = tick.ohlc.low
        body["Close"] = tick.ohlc.close
    return body


def _header(code: int, seg: int, iid: int, exchange_time: datetime | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "MessageCode": code,
        "MessageVersion": 4,
        "ApplicationType": 0,
        "TokenID": 0,
        "ExchangeSegment": seg,
        "ExchangeInstrumentID": iid,
    }
    if exchange_time is not None:
        body["ExchangeTimeStamp"] = datetime_to_xts(exchange_time, seg)
    return body


def encode_full(event: Event, *, nested: bool = True, sequence: int = 0) -> str:
    """Encode an event as the JSON text of its ``<code>-json-full`` message (the inverse of `decode_full`).

    A `Tick` is encoded by its mode (LTP -> 1512, QUOTE -> 1501, FULL -> 1502; the touchline nested unless
    ``nested=False``, which gives the flat 1501 form); `Candle` -> 1505, `OpenInterest` -> 1510,
    `MarketStatus` -> 1507, `InstrumentPropertyChange` -> 1105 (property names back to numeric codes).
    None fields are left out. Times are written as whole XTS seconds. Does not block.

    Raises:
        TypeError: an event kind XTS has no message for, or a tick without a segment.
    """
    if isinstance(event, Tick):
        return _encode_tick_full(event, nested, sequence)
    if isinstance(event, Candle):
        seg = _segment(event.segment)
        body = _header(CANDLE, seg, event.instrument_token, None)
        body.update(
            BarTime=_bar_seconds(event.bar_time),
            BarVolume=event.volume,
            Open=event.open,
            High=event.high,
            Low=event.low,
            Close=event.close,
        )
        _put(body, "OpenInterest", event.open_interest)
        body["SumOfQtyInToPrice"] = 0
    elif isinstance(event, OpenInterest):
        seg = _segment(event.segment)
        body = _header(OPEN_INTEREST, seg, event.instrument_token, event.exchange_time)
        body.update(XTSMarketType=1, OpenInterest=event.open_interest, SequenceNumber=sequence)
    elif isinstance(event, MarketStatus):
        seg = _segment(event.segment)
        body = _header(MARKET_STATUS, seg, 0, event.exchange_time)
        _put(body, "maketType", event.market_type)
        body["message"] = event.message
        _put(body, "tradingSession", event.trading_session)
        body["SequenceNumber"] = sequence
    elif isinstance(event, InstrumentPropertyChange):
        body = _header(INSTRUMENT_PROPERTY_CHANGE, _segment(event.segment), event.instrument_token, None)
        for name, value in event.properties.items():
            body[_PROPERTY_CODES_BY_NAME.get(name, name)] = value
    else:
        raise TypeError(f"XTS has no message for {type(event).__name__}")
    return _ENCODER.encode(body).decode()


def _segment(segment: int | None) -> int:
    if segment is None:
        raise TypeError("an XTS message needs the event's segment")
    return segment


def _encode_tick_full(tick: Tick, nested: bool, sequence: int) -> str:
    seg = _segment(tick.segment)
    code = MODE_TO_CODE[tick.mode]
    body = _header(code, seg, tick.instrument_token, tick.exchange_time)
    if code == LTP:
        body["BookType"] = 1
        body["XMarketType"] = 1
        body["LastTradedPrice"] = tick.last_price
        _put(body, "LastTradedQunatity", tick.last_quantity)
        if tick.exchange_time is not None:
            body["LastUpdateTime"] = datetime_to_xts(tick.exchange_time, seg)
        return _ENCODER.encode(body).decode()
    touchline = _touchline_body(tick, seg, code == TOUCHLINE)
    if code == MARKET_DEPTH and tick.depth is not None:
        body["Bids"] = [_book(level) for level in tick.depth.bids]
        body["Asks"] = [_book(level) for level in tick.depth.asks]
    if nested:
        body["Touchline"] = touchline
    else:
        body.update(touchline)
    body["BookType"] = 1
    body["XMarketType"] = 1
    body["SequenceNumber"] = sequence
    return _ENCODER.encode(body).decode()


def _number(value: float) -> str:
    return repr(value)


def _partial_levels(levels: Sequence[DepthLevel]) -> str:
    return "|".join(f"{i}|{x.quantity}|{x.price!r}|{x.orders}" for i, x in enumerate(levels))


def encode_partial(event: Event) -> str:
    """Encode an event as its ``<code>-json-partial`` text (the inverse of `decode_partial`).

    Ticks by mode (1512, 1501, 1502), `Candle` (1505), `OpenInterest` (1510) and
    `InstrumentPropertyChange` (1105; property values must not contain ``,``, which the format cannot
    carry). None fields are left out; depth levels are numbered from 0. Does not block.

    Raises:
        TypeError: an event kind without a partial form, or without a segment.
    """
    if isinstance(event, Tick):
        seg = _segment(event.segment)
        parts = [f"t:{seg}_{event.instrument_token}"]
        depth = event.depth
        if event.mode is not _LTP_MODE and depth is not None:
            if depth.bids:
                parts.append("bi:" + _partial_levels(depth.bids))
            if depth.asks:
                parts.append("ai:" + _partial_levels(depth.asks))
        parts.append("ltp:" + _number(event.last_price))
        if event.last_quantity is not None:
            parts.append(f"ltq:{event.last_quantity}")
        if event.mode is _LTP_MODE:
            if event.exchange_time is not None:
                parts.append(f"lut:{datetime_to_xts(event.exchange_time, seg)}")
            return ",".join(parts)
        for key, value in (
            ("tb", event.total_buy_quantity),
            ("ts", event.total_sell_quantity),
            ("v", event.volume),
        ):
            if value is not None:
                parts.append(f"{key}:{value}")
        if event.average_price is not None:
            parts.append("ap:" + _number(event.average_price))
        if event.last_trade_time is not None:
            parts.append(f"ltt:{datetime_to_xts(event.last_trade_time, seg)}")
        if event.exchange_time is not None:
            parts.append(f"lut:{datetime_to_xts(event.exchange_time, seg)}")
        if event.change is not None:
            parts.append("pc:" + _number(event.change))
        if event.ohlc is not None:
            ohlc = event.ohlc
            parts += (
                "o:" + _number(ohlc.open),
                "h:" + _number(ohlc.high),
                "l:" + _number(ohlc.low),
                "c:" + _number(ohlc.close),
            )
        return ",".join(parts)
    if isinstance(event, Candle):
        seg = _segment(event.segment)
        return (
            f"t:{seg}_{event.instrument_token},o:{event.open!r},h:{event.high!r},l:{event.low!r},"
            f"c:{event.close!r},bt:{_bar_seconds(event.bar_time)},bv:{event.volume}"
        )
    if isinstance(event, OpenInterest):
        return f"t:{_segment(event.segment)}_{event.instrument_token},o:{event.open_interest}"
    if isinstance(event, InstrumentPropertyChange):
        parts = [f"t:{_segment(event.segment)}_{event.instrument_token}"]
        parts += (f"{_PROPERTY_CODES_BY_NAME.get(k, k)}:{v}" for k, v in event.properties.items())
        return ",".join(parts)
    raise TypeError(f"XTS has no partial message for {type(event).__name__}")
