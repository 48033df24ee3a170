"""The XTS simulator's message builders: the ``<code>-json-full`` and ``<code>-json-partial`` events, the
quotes of the REST answers, and the instrument-master records, from the shared seeded `Market`.

They are written from the reference document (xts-protocol.md section 4), independently of the
library's codec, so that tests of one check the other. Sans-IO: nothing here awaits.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

import attrs

from ..._model import Mode, Tick
from ...brokers.xts._engineio import encode_event
from ...brokers.xts._instruments import SEGMENT_IDS, XtsInstrument
from .._universe import Instrument, Market

__all__ = [
    "CANDLE",
    "CODES",
    "INSTRUMENT_TYPES",
    "LTP",
    "MARKET_DEPTH",
    "OPEN_INTEREST",
    "SEGMENTS",
    "SEGMENT_NAMES",
    "TOUCHLINE",
    "PayloadSettings",
    "Payloads",
    "dumps",
    "master_record",
]

TOUCHLINE: Final = 1501
"""The touchline message code."""
MARKET_DEPTH: Final = 1502
"""The market-depth message code (five levels a side)."""
CANDLE: Final = 1505
"""The candle (bar) message code."""
OPEN_INTEREST: Final = 1510
"""The open-interest message code (derivatives only)."""
LTP: Final = 1512
"""The last-traded-price message code."""
CODES: Final = (TOUCHLINE, MARKET_DEPTH, CANDLE, OPEN_INTEREST, LTP)
"""The message codes a session may subscribe to."""

SEGMENTS: Final[dict[str, int]] = {
    name: number for name, number in SEGMENT_IDS.items() if not name.startswith("MSEI")
}
"""ExchangeSegment numbers by canonical name (xts-protocol.md 4.11; NODE's MSEI* aliases left out)."""
SEGMENT_NAMES: Final[dict[int, str]] = {number: name for name, number in SEGMENTS.items()}
"""Canonical ExchangeSegment names by number."""

INSTRUMENT_TYPES: Final[dict[str, int]] = {
    "Futures": 1,
    "Options": 2,
    "Spread": 4,
    "Equity": 8,
    "Spot": 16,
    "PreferenceShares": 32,
    "Debentures": 64,
    "Warrants": 128,
    "Miscellaneous": 256,
    "MutualFund": 512,
}
"""XTS InstrumentType numbers by name (the client config's ``instrumentType``)."""

_NSE_SEGMENTS: Final = frozenset({1, 2, 3})
_NSE_OFFSET: Final = 315513000  # unix_utc = xts + 315513000 for segments 1-3 (xts-protocol.md 4.10)
_IST_OFFSET: Final = 19800
_FIRST_SEQUENCE: Final = 1353296204670191  # the shape of a real SequenceNumber (xts-protocol.md 4.1)
_INDEX_UNDERLYINGS: Final = frozenset({"NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "SENSEX", "BANKEX"})


def dumps(value: Any) -> str:
    """Compact JSON, non-ASCII kept (as the XTS server writes it)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _num(value: float) -> float | int:
    """A price as JSON writes it on the wire: whole numbers as integers (``"Open":222``)."""
    return int(value) if value == int(value) else value


def _text(value: float) -> str:
    return str(_num(value))


def _xts_time(unix: float, segment: int) -> int:
    """XTS seconds: since 1980-01-01 IST wall clock on NSE segments 1-3, since 1970 IST wall clock else."""
    seconds = int(unix)
    if seconds <= 0:
        return 0
    return seconds - _NSE_OFFSET if segment in _NSE_SEGMENTS else seconds + _IST_OFFSET


def _book(level: Any) -> dict[str, Any]:
    if level is None:
        return {"Size": 0, "Price": 0, "TotalOrders": 0, "BuyBackMarketMaker": 0}
    return {
        "Size": level.quantity,
        "Price": _num(level.price),
        "TotalOrders": level.orders,
        "BuyBackMarketMaker": 0,
    }


def _levels(levels: Sequence[Any], count: int) -> str:
    groups = []
    for i in range(count):
        level = levels[i] if i < len(levels) else None
        if level is None:
            groups.append(f"{i}|0|0|0")
        else:
            groups.append(f"{i}|{level.quantity}|{_text(level.price)}|{level.orders}")
    return "|".join(groups)


def master_record(instrument: Instrument) -> XtsInstrument:
    """The instrument-master record of a universe instrument (indices have none).

    Cash rows: Name is the trading symbol and Description ``<symbol>-EQ`` (series EQ), as XTS writes
    them. Derivatives: Description is the trading symbol; series FUTIDX/OPTIDX for index underlyings,
    FUTSTK/OPTSTK for stocks, FUTCUR/OPTCUR on currency segments (3, 13), FUTCOM on commodity ones. The
    price band is the random walk's +-20% band; the composite InstrumentID is made up
    (``<segment>1<segment:03><id:08>``, which gives the observed ``11001...`` shape on NSECM).
    """
    seg = instrument.xts_segment
    tick = instrument.tick_size
    band_high = round(round(instrument.base_price * 1.2 / tick) * tick, 4)
    band_low = round(round(instrument.base_price * 0.8 / tick) * tick, 4)
    common: dict[str, Any] = {
        "segment": SEGMENT_NAMES[seg],
        "segment_id": seg,
        "instrument_id": instrument.xts_instrument_id,
        "tick_size": tick,
        "lot_size": instrument.lot_size,
        "price_band_high": band_high,
        "price_band_low": band_low,
        "composite_id": int(f"{seg}1{seg:03d}{instrument.xts_instrument_id:08d}"),
    }
    if instrument.instrument_type == "EQ":
        return XtsInstrument(
            name=instrument.tradingsymbol,
            description=f"{instrument.tradingsymbol}-EQ",
            series="EQ",
            display_name=instrument.tradingsymbol,
            instrument_type=INSTRUMENT_TYPES["Equity"],
            **common,
        )
    option = instrument.instrument_type in ("CE", "PE")
    if seg in (3, 13):
        kind = "CUR"
    elif seg in (4, 14, 21, 51):
        kind = "COM"
    else:
        kind = "IDX" if instrument.name in _INDEX_UNDERLYINGS else "STK"
    expiry = instrument.expiry
    display = f"{instrument.name} {expiry:%d%b%Y}".upper() if expiry is not None else instrument.name
    display += f" {instrument.instrument_type} {_text(instrument.strike)}" if option else " FUT"
    return XtsInstrument(
        name=instrument.name,
        description=instrument.tradingsymbol,
        series=("OPT" if option else "FUT") + kind,
        display_name=display,
        instrument_type=INSTRUMENT_TYPES["Options" if option else "Futures"],
        expiry=expiry,
        strike=instrument.strike if option else None,
        option_type=instrument.instrument_type if option else None,
        underlying_index_name=instrument.name if kind == "IDX" else None,
        **common,
    )


class PayloadSettings(Protocol):
    """The `XtsSimulator` settings the payloads read, at each use (a change while serving counts)."""

    candle_interval: float
    flat_touchline: bool
    shuffle_keys: bool
    clock: Callable[[], float]


@attrs.define(eq=False)
class _Bar:
    start: int
    open: float
    high: float
    low: float
    close: float
    volume: int = 0
    value: float = 0.0
    oi: int = 0


@attrs.define(eq=False)
class Payloads:
    """The events of one simulator, built from its `market` and cached for the current step.

    `step` moves the market once; every socket then sends `frame` of each subscription, and sockets of
    the same broadcast mode share one text. `generation` counts the steps and `candle_generation` is the
    step at which a bar last closed. Does not block; nothing here awaits.
    """

    settings: PayloadSettings = attrs.field(repr=False)
    market: Market = attrs.field(repr=False)
    _rng: random.Random = attrs.field(repr=False)
    generation: int = attrs.field(init=False, default=0)
    """Market steps so far (a socket that saw this generation has sent it)."""
    candle_generation: int = attrs.field(init=False, default=-1)
    """The generation at which a 1505 bar last closed (-1: none yet)."""
    _by_address: dict[tuple[int, int], Instrument] = attrs.field(init=False, factory=dict, repr=False)
    _ticks: dict[int, Tick] = attrs.field(init=False, factory=dict, repr=False)
    _frames: dict[tuple[int, int, int, bool], str | None] = attrs.field(init=False, factory=dict, repr=False)
    _bars: dict[int, _Bar] = attrs.field(init=False, factory=dict, repr=False)
    _candles: dict[int, _Bar] = attrs.field(init=False, factory=dict, repr=False)
    _sequence: int = attrs.field(init=False, default=_FIRST_SEQUENCE, repr=False)

    def __attrs_post_init__(self) -> None:
        for instrument in self.market.instruments:
            self._by_address[(instrument.xts_segment, instrument.xts_instrument_id)] = instrument
        now = self.settings.clock()
        bucket = self._bucket(now)
        for instrument in self.market.instruments:
            tick = self._tick(instrument, now)
            self._bars[instrument.kite_token] = _Bar(
                bucket, tick.last_price, tick.last_price, tick.last_price, tick.last_price, oi=tick.oi or 0
            )

    def find(self, segment: int, instrument_id: int) -> Instrument | None:
        """The instrument at this XTS address, or None if the market does not simulate it."""
        return self._by_address.get((segment, instrument_id))

    def step(self) -> None:
        """Move the market once (wall time from the settings' clock) and close bars that are due."""
        now = self.settings.clock()
        self.market.step(now)
        self.generation += 1
        self._ticks.clear()
        self._frames.clear()
        bucket = self._bucket(now)
        closed = False
        for instrument in self.market.instruments:
            tick = self._tick(instrument, now)
            bar = self._bars[instrument.kite_token]
            price = tick.last_price
            if bar.start != bucket:
                self._candles[instrument.kite_token] = bar
                bar = self._bars[instrument.kite_token] = _Bar(bucket, price, price, price, price)
                closed = True
            else:
                bar.high = max(bar.high, price)
                bar.low = min(bar.low, price)
                bar.close = price
            quantity = tick.last_quantity or 0
            bar.volume += quantity
            bar.value += quantity * price
            bar.oi = tick.oi or 0
        if closed:
            self.candle_generation = self.generation

    def frame(self, key: tuple[int, int, int], partial_mode: bool) -> str | None:
        """The Socket.IO event of one (segment, instrument id, code) subscription at the current step, in
        the Partial (True) or Full form; None when it has nothing to send (1510 of a cash instrument, 1505
        before the first bar closed). Cached until the next `step`.

        Raises:
            KeyError: the market does not simulate that instrument.
        """
        cache_key = (*key, partial_mode)
        if cache_key in self._frames:
            return self._frames[cache_key]
        seg, iid, code = key
        instrument = self._by_address[(seg, iid)]
        frame: str | None = None
        due = (
            code in (TOUCHLINE, MARKET_DEPTH, LTP)
            or (code == OPEN_INTEREST and instrument.instrument_type != "EQ")
            or (code == CANDLE and instrument.kite_token in self._candles)
        )
        if due:
            now = self.settings.clock()
            if partial_mode:
                frame = encode_event(f"{code}-json-partial", self._partial_text(instrument, code, now))
            else:
                frame = encode_event(f"{code}-json-full", self.full_json(instrument, code, now))
        self._frames[cache_key] = frame
        return frame

    def full_json(self, instrument: Instrument, code: int, now: float) -> str:
        """The ``<code>-json-full`` JSON text of one instrument at wall time `now` (also the REST quotes'
        ``listQuotes`` items). Each call takes the next SequenceNumber where the message has one."""
        return dumps(self._shuffled(self._full_body(instrument, code, now)))

    def _bucket(self, now: float) -> int:
        return int(now // self.settings.candle_interval)

    def _tick(self, instrument: Instrument, now: float) -> Tick:
        tick = self._ticks.get(instrument.kite_token)
        if tick is None:
            tick = self._ticks[instrument.kite_token] = self.market.tick(
                instrument.kite_token, Mode.FULL, now
            )
        return tick

    def _next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    def _shuffled(self, body: dict[str, Any]) -> dict[str, Any]:
        if not self.settings.shuffle_keys:
            return body
        items = list(body.items())
        self._rng.shuffle(items)
        return {k: self._shuffled(v) if isinstance(v, dict) else v for k, v in items}

    def _bar(self, instrument: Instrument) -> _Bar:
        """The last closed bar (the current one before any closed)."""
        return self._candles.get(instrument.kite_token) or self._bars[instrument.kite_token]

    def _full_body(self, instrument: Instrument, code: int, now: float) -> dict[str, Any]:
        """The ``<code>-json-full`` object of one instrument (xts-protocol.md section 4)."""
        seg, iid = instrument.xts_segment, instrument.xts_instrument_id
        tick = self._tick(instrument, now)
        stamp = _xts_time(now, seg)
        header: dict[str, Any] = {
            "MessageCode": code,
            "MessageVersion": 4,
            "ApplicationType": 0,
            "TokenID": 0,
            "ExchangeSegment": seg,
            "ExchangeInstrumentID": iid,
        }
        if code == LTP:
            header.update(
                BookType=1,
                XMarketType=1,
                LastTradedPrice=_num(tick.last_price),
                LastTradedQunatity=tick.last_quantity or 0,
                LastUpdateTime=stamp,
            )
            return header
        if code == OPEN_INTEREST:
            header.update(
                ExchangeTimeStamp=stamp,
                XTSMarketType=1,
                OpenInterest=tick.oi or 0,
                SequenceNumber=self._next_sequence(),
            )
            return header
        if code == CANDLE:
            bar = self._bar(instrument)
            start = bar.start * self.settings.candle_interval
            header.update(
                BarTime=int(start) + _IST_OFFSET,
                BarVolume=bar.volume,
                Open=_num(bar.open),
                High=_num(bar.high),
                Low=_num(bar.low),
                Close=_num(bar.close),
                OpenInterest=bar.oi,
                SumOfQtyInToPrice=_num(round(bar.value, 2)),
            )
            return header
        header["ExchangeTimeStamp"] = stamp
        touchline = _touchline(tick, seg, now)
        if code == MARKET_DEPTH:
            bids = tick.depth.bids if tick.depth is not None else ()
            asks = tick.depth.asks if tick.depth is not None else ()
            header["Bids"] = [_book(bids[i] if i < len(bids) else None) for i in range(5)]
            header["Asks"] = [_book(asks[i] if i < len(asks) else None) for i in range(5)]
            header["Touchline"] = touchline
        elif self.settings.flat_touchline:
            header.update(touchline)
        else:
            header["Touchline"] = touchline
        header.update(BookType=1, XMarketType=1, SequenceNumber=self._next_sequence())
        return header

    def _partial_text(self, instrument: Instrument, code: int, now: float) -> str:
        """The ``<code>-json-partial`` text of one instrument (xts-protocol.md section 4.9)."""
        seg, iid = instrument.xts_segment, instrument.xts_instrument_id
        parts = [f"t:{seg}_{iid}"]
        tick = self._tick(instrument, now)
        if code == LTP:
            parts += [
                f"ltp:{_text(tick.last_price)}",
                f"ltq:{tick.last_quantity or 0}",
                f"lut:{_xts_time(now, seg)}",
            ]
        elif code == OPEN_INTEREST:
            parts.append(f"o:{tick.oi or 0}")
        elif code == CANDLE:
            bar = self._bar(instrument)
            parts += [
                f"o:{_text(bar.open)}",
                f"h:{_text(bar.high)}",
                f"l:{_text(bar.low)}",
                f"c:{_text(bar.close)}",
                f"bt:{int(bar.start * self.settings.candle_interval) + _IST_OFFSET}",
                f"bv:{bar.volume}",
                f"pv:{_text(round(bar.value, 2))}",
            ]
        else:
            levels = 5 if code == MARKET_DEPTH else 1
            bids = tick.depth.bids if tick.depth is not None else ()
            asks = tick.depth.asks if tick.depth is not None else ()
            parts.append("bi:" + _levels(bids, levels))
            parts.append("ai:" + _levels(asks, levels))
            body = _touchline(tick, seg, now)
            parts += [
                f"ltp:{_text(tick.last_price)}",
                f"ltq:{body['LastTradedQunatity']}",
                f"tb:{body['TotalBuyQuantity']}",
                f"ts:{body['TotalSellQuantity']}",
                f"v:{body['TotalTradedQuantity']}",
                f"ap:{body['AverageTradedPrice']}",
                f"ltt:{body['LastTradedTime']}",
                f"lut:{body['LastUpdateTime']}",
                f"pc:{body['PercentChange']}",
                f"o:{body['Open']}",
                f"h:{body['High']}",
                f"l:{body['Low']}",
                f"c:{body['Close']}",
            ]
        return ",".join(parts)


def _touchline(tick: Tick, seg: int, now: float) -> dict[str, Any]:
    ohlc = tick.ohlc
    close = ohlc.close if ohlc is not None else tick.last_price
    change = (tick.last_price - close) * 100 / close if close else 0.0
    bids = tick.depth.bids if tick.depth is not None else ()
    asks = tick.depth.asks if tick.depth is not None else ()
    traded = tick.last_trade_time.timestamp() if tick.last_trade_time is not None else now
    return {
        "BidInfo": _book(bids[0] if bids else None),
        "AskInfo": _book(asks[0] if asks else None),
        "LastTradedPrice": _num(tick.last_price),
        "LastTradedQunatity": tick.last_quantity or 0,
        "TotalBuyQuantity": tick.total_buy_quantity or 0,
        "TotalSellQuantity": tick.total_sell_quantity or 0,
        "TotalTradedQuantity": tick.volume or 0,
        "AverageTradedPrice": _num(tick.average_price if tick.average_price else tick.last_price),
        "LastTradedTime": _xts_time(traded, seg),
        "LastUpdateTime": _xts_time(now, seg),
        "PercentChange": round(change, 2),
        "Open": _num(ohlc.open if ohlc is not None else tick.last_price),
        "High": _num(ohlc.high if ohlc is not None else tick.last_price),
        "Low": _num(ohlc.low if ohlc is not None else tick.last_price),
        "Close": _num(close),
        "TotalValueTraded": None,
        "BuyBackTotalBuy": 0,
        "BuyBackTotalSell": 0,
    }
