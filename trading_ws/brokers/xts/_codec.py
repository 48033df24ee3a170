"""Sans-IO codec for Symphony XTS market-data messages (the JSON product), into the shared model.

Market data arrives as Socket.IO events named ``<code>-json-full`` or ``<code>-json-partial``
(xts-protocol.md section 2.4). `decode_event` takes such a name and its data argument:

* **full**: the data is a JSON *string* (the message is encoded twice), decoded here a second time with
  a typed msgspec decoder. Key order is free, unknown keys are ignored, whole numbers are accepted where
  decimals are expected, and numbers sent as strings (``"ExchangeInstrumentID":"2885"``) are coerced.
  Data that is already a JSON object (a dict) is accepted too.
* **partial**: the data is ``key:value`` pairs joined by commas, ``t:<segment>_<id>`` first
  (section 4.9); `parse_partial` turns it into a `PartialMessage`.

Normalization (one event per message):

======  ==========================  ==============================================================
code    full / partial              becomes
======  ==========================  ==============================================================
1501    touchline                   `Tick`, mode QUOTE, best bid/ask as a one-level `Depth`
1502    market depth                `Tick`, mode FULL, the five-level `Depth` plus the touchline
1512    LTP                         `Tick`, mode LTP (last price, last quantity, update time)
1504    index                       `Tick`, mode QUOTE, ``tradable=False`` (partial: only if ``t``
                                    carries a numeric id, else ``[]``)
1505    candle                      `Candle`
1507    market status               `MarketStatus` (full only; the partial form is undocumented: [])
1510    open interest               `OpenInterest`
1105    instrument property change  `InstrumentPropertyChange`
======  ==========================  ==============================================================

Any other event name (``joined``, ``5018-json-full``, ``xts-binary-packet``...) decodes to ``[]``; the
feed counts those.

**The feed should call `decode_message`** with each WebSocket message: it parses the Socket.IO layer and
decodes market data in one step, with a fast path for ``42["<name>","<data>"]`` frames (see
``benchmarks/bench_xts_decode.py``), and returns the `Packet` for anything else.

Choices where the protocol reference says "not verified" (or sources disagree):

* **Touchline shape**: both the nested form (``Touchline`` object) and the flat form (touchline fields at
  the top level) are accepted, for 1501, 1502 and 1504; when both are present the nested one wins (for
  1501 and 1502 sent as JSON text, the top-level touchline fields of a nested message are then not even read,
  nor is the ``BidInfo``/``AskInfo`` of a 1502, which repeats ``Bids[0]``/``Asks[0]``: a malformed value
  there is ignored). Both ``LastTradedQunatity`` (the wire's spelling) and ``LastTradedQuantity`` are
  read; the former wins.
* **Timestamps** (section 4.10): XTS time is seconds of IST wall-clock time since 1980-01-01 for segments
  1, 2 and 3 (NSE), and since **1970-01-01 IST wall-clock** for every other segment (NODE-V2's
  ``getBaseReferenceDate`` builds both epochs the same way, as local dates; the REST OHLC bars are also
  IST-shifted). So ``unix = xts + 315513000`` for NSE and ``unix = xts - 19800`` otherwise. Candle
  ``BarTime`` always uses the 1970 IST wall-clock base, whatever the segment (the doc sample fits 1970,
  not 1980; TRADX reads it as UTC instead, which would put bars 5h30 later). A time of 0 becomes None.
  Every datetime is timezone-aware, in `IST`.
* **Depth**: 1502 ``Bids``/``Asks`` become `DepthLevel` rows in the order sent (any count; five in every
  sample). A 1501 touchline's ``BidInfo``/``AskInfo`` become a one-level `Depth` (zeros as sent, e.g. for
  an index); a side that is absent is an empty list, and `Tick.depth` is None if both are absent. The
  `DepthLevel` objects of a full message are built on first access to ``depth.bids``/``depth.asks``
  (the `Depth` is a private subclass that keeps the decoded rows; equality and repr are unchanged).
* **tradable**: the payload does not say whether an instrument is an index. It is False for 1504, and for
  the well-known NSE index ids 26000-26099 on segment 1 (NIFTY 50 is 26000, NIFTY BANK 26001); True
  otherwise (BSE/MCX indices streamed as 1501 are not recognized).
* **change**: ``PercentChange`` as sent; when absent, ``(last - close) * 100 / close`` (0.0 if close is 0),
  as the Kite codec computes it; None if the message carries no close.
* **Missing fields**: a message without its segment or instrument id (or a touchline without
  ``LastTradedPrice``, a candle without ``BarTime``, open interest without ``OpenInterest``) raises
  `DecodeError`. Any other absent field is None; where the model needs a float (the members of `Ohlc`,
  ``Tick.last_price`` of a partial message), it is ``math.nan``. ``Ohlc`` is built when any of its four
  values is present. A 1507 without a message text gets ``""``.
* **Partial messages** carry only some keys (maybe only what changed), so a partial tick without ``ltp``
  has ``last_price = nan``: merge partials with the previous tick if you need every field. ``bi``/``ai``
  are read as ``index|size|price|orders`` groups (an incomplete trailing group, like the doc sample's
  odd ``|1``, is ignored); the depth levels keep the order sent (the level index is in `PartialMessage`).
  For 1510 ``o`` is the open interest; for 1505 ``bt`` is the bar time and for 1512 the book type.
* **1105** full form (never seen): every key except the common header fields becomes a property; numeric
  keys are translated to the InstrumentPropName names of NODE-V2's ``settings.json`` where known; values
  are kept as text (non-strings as compact JSON).

Everything here is pure: no I/O, no clock (the caller passes the receipt time, else ``time.time()``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Final, NamedTuple

import attrs
import msgspec

from ..._errors import DecodeError
from ..._model import (
    IST,
    Broker,
    Candle,
    Depth,
    DepthLevel,
    Event,
    InstrumentPropertyChange,
    MarketStatus,
    Mode,
    Ohlc,
    OpenInterest,
    Tick,
    _init_level,
    _init_ohlc,
    _init_tick,
    _new_object,
)
from ._engineio import Packet, SioEvent, parse_packet

__all__ = [
    "CANDLE",
    "CODE_TO_MODE",
    "INDEX_DATA",
    "INSTRUMENT_PROPERTY_CHANGE",
    "INSTRUMENT_PROPERTY_NAMES",
    "LTP",
    "MARKET_DEPTH",
    "MARKET_STATUS",
    "MESSAGE_CODES",
    "MODE_TO_CODE",
    "OPEN_INTEREST",
    "TOUCHLINE",
    "PartialLevel",
    "PartialMessage",
    "datetime_to_xts",
    "decode_event",
    "decode_full",
    "decode_list_quotes",
    "decode_message",
    "decode_partial",
    "encode_full",
    "encode_partial",
    "event_name",
    "is_index",
    "parse_partial",
    "subscription_body",
    "xts_to_datetime",
]

#: XTS message codes (``xtsMessageCode``): touchline, market depth, index, candle, market status, open
#: interest, LTP, instrument property change.
TOUCHLINE: Final = 1501
MARKET_DEPTH: Final = 1502
INDEX_DATA: Final = 1504
CANDLE: Final = 1505
MARKET_STATUS: Final = 1507
OPEN_INTEREST: Final = 1510
LTP: Final = 1512
INSTRUMENT_PROPERTY_CHANGE: Final = 1105

#: The message codes this codec decodes (each as ``<code>-json-full`` and ``<code>-json-partial``).
MESSAGE_CODES: Final[frozenset[int]] = frozenset(
    {
        TOUCHLINE,
        MARKET_DEPTH,
        INDEX_DATA,
        CANDLE,
        MARKET_STATUS,
        OPEN_INTEREST,
        LTP,
        INSTRUMENT_PROPERTY_CHANGE,
    }
)

#: The message code to subscribe to for each mode.
MODE_TO_CODE: Final[dict[Mode, int]] = {Mode.LTP: LTP, Mode.QUOTE: TOUCHLINE, Mode.FULL: MARKET_DEPTH}
#: The mode a tick decoded from a message code has (the inverse of `MODE_TO_CODE`).
CODE_TO_MODE: Final[dict[int, Mode]] = {code: mode for mode, code in MODE_TO_CODE.items()}

#: XTS InstrumentPropName codes (1105 keys) -> names, from NODE-V2 ``lib/config/app/settings.json``.
INSTRUMENT_PROPERTY_NAMES: Final[dict[int, str]] = {
    1: "InstrumentType",
    2: "PermittedToTrade",
    3: "IssuedCapital",
    4: "WarningQuantity",
    5: "FreezeQuantity",
    7: "IssueRate",
    8: "IssueStartDate",
    9: "InterestPaymentDate",
    10: "IssueMaturityDate",
    11: "BoardLotQuantity",
    12: "TickSize",
    13: "Name",
    14: "ListingDate",
    15: "ExpulsionDate",
    16: "ReAdmissionDate",
    17: "RecordDate",
    18: "ExpiryDate",
    19: "NoDeliveryStartDate",
    20: "NoDeliveryEndDate",
    21: "BookClosureStartDate",
    22: "BookClosureEndDate",
    23: "LocalUpdateDateTime",
    24: "Remark",
    25: "FaceValue",
    26: "IsinNumber",
    27: "Spread",
    28: "MinQty",
    29: "CallAuction1Flag",
    30: "NormalMarketInstrumentStatus",
    31: "OddlotMarketInstrumentStatus",
    32: "RetailDebtMarketInstrumentStatus",
    33: "AuctionMarketInstrumentStatus",
    34: "CallAuction1MarketInstrumentStatus",
    35: "CallAuction2MarketInstrumentStatus",
    36: "NormalMarketEligibility",
    37: "OddlotMarketEligibility",
    38: "RetailDebtMarketEligibility",
    39: "AuctionMarketEligibility",
    40: "CallAuction1Eligibility",
    41: "CallAuction2Eligibility",
    42: "MinimumFill",
    43: "AllOrNone",
    44: "ParticipateInMarketIndex",
    45: "EGM",
    46: "AGM",
    47: "Interest",
    48: "Bonus",
    49: "Rights",
    50: "Dividend",
    51: "AuctionNumber",
    52: "AuctionStatus",
    53: "AuctionInitiatorType",
    54: "AuctionPrice",
    55: "AuctionQuantity",
    56: "AuctionTotalBuyQty",
    57: "AuctionTotalSellQty",
    58: "AuctionBestBuyPrice",
    59: "AuctionBestSellPrice",
    60: "AuctionSettlementPeriod",
    61: "FiftyTwoWeekHigh",
    62: "FiftyTwoWeekLow",
    81: "OptionType",
    82: "AssetToken",
    83: "Category",
    84: "CALevel",
    85: "ReservedIdentifier",
    86: "MarginPercentage",
    87: "LowPriceRange",
    88: "HighPriceRange",
    89: "ExDate",
    90: "LocalLDBUpdateDateTime",
    91: "ExerciseStartDate",
    92: "ExerciseEndDate",
    93: "TickerSelection",
    94: "OldToken",
    95: "SecurityName",
    96: "ExerciseStyle",
    97: "ExerciseAllowed",
    98: "ExerciserRejectionAllowed",
    99: "PositionLiquidationAllowed",
    100: "CheckSum",
    101: "IsCorporateAdjusted",
    102: "IsThisAsset",
    103: "SymbolForAsset",
    104: "InstrumentOfAsset",
    105: "BasePrice",
    106: "DeleteFlag",
    107: "IntrinsicValue",
    108: "ExtrinsicValue",
    109: "StrikePrice",
    110: "HighExecBand",
    111: "LowExecBand",
    112: "InstrumentUpdateTime",
    131: "Multiplier",
}
_PROPERTY_NAMES_BY_KEY: Final[dict[str, str]] = {str(k): v for k, v in INSTRUMENT_PROPERTY_NAMES.items()}
_PROPERTY_CODES_BY_NAME: Final[dict[str, str]] = {v: str(k) for k, v in INSTRUMENT_PROPERTY_NAMES.items()}

_XTS = Broker.XTS
_LTP_MODE = Mode.LTP
_QUOTE_MODE = Mode.QUOTE
_FULL_MODE = Mode.FULL
_NAN = math.nan

# ---------------------------------------------------------------------------------------------------------
# Time.

_NSE_SEGMENTS: Final = frozenset({1, 2, 3})
#: unix seconds = XTS seconds + offset: 1980-01-01 IST (NSE segments 1-3), 1970-01-01 IST (others).
_NSE_OFFSET: Final = 315532800 - 19800
_OTHER_OFFSET: Final = -19800

_TIME_CACHE: dict[int, datetime] = {}
_TIME_CACHE_MAX: Final = 512  # live timestamps cluster around "now": a few minutes of seconds


def _unix_to_dt(unix: int) -> datetime:
    value = _TIME_CACHE.get(unix)
    if value is None:
        if len(_TIME_CACHE) >= _TIME_CACHE_MAX:
            _TIME_CACHE.clear()
        value = _TIME_CACHE[unix] = datetime.fromtimestamp(unix, IST)
    return value


def _offset(segment: int) -> int:
    return _NSE_OFFSET if segment in _NSE_SEGMENTS else _OTHER_OFFSET


def xts_to_datetime(seconds: int | None, segment: int) -> datetime | None:
    """Convert an XTS timestamp of ``segment`` to an aware datetime in IST; None for 0 or None.

    Uses the 1980 base for segments 1, 2 and 3 and the 1970 base otherwise, both IST wall-clock (see the
    module docstring). Does not block.

    Raises:
        OverflowError, ValueError, OSError: the time is outside the platform's range.
    """
    if not seconds:
        return None
    return _unix_to_dt(int(seconds) + _offset(segment))


def datetime_to_xts(value: datetime | None, segment: int) -> int:
    """The inverse of `xts_to_datetime`: whole XTS seconds for ``segment``, 0 for None."""
    if value is None:
        return 0
    return int(value.timestamp()) - _offset(segment)


def _bar_time(seconds: int) -> datetime:
    return _unix_to_dt(seconds + _OTHER_OFFSET)


class _XtsTimes(dict[int | None, datetime | None]):
    """XTS seconds of one time base -> the IST datetime (None for 0 or None), computed on first use.

    ``times[seconds]`` is a single dictionary lookup once a second has been seen: the timestamps of a feed
    repeat from message to message within a second. Holds at most ``_TIME_CACHE_MAX`` entries.

    Raises (on a miss):
        OverflowError, ValueError, OSError: the time is outside the platform's range.
    """

    __slots__ = ("_offset",)

    def __init__(self, offset: int) -> None:
        super().__init__()
        self._offset = offset

    def __missing__(self, seconds: int | None) -> datetime | None:
        value = datetime.fromtimestamp(seconds + self._offset, IST) if seconds else None
        if len(self) >= _TIME_CACHE_MAX:
            self.clear()
        self[seconds] = value
        return value


#: The hot-path caches, by time base: NSE segments (1980 base) and the others (1970 base).
_NSE_TIMES: Final = _XtsTimes(_NSE_OFFSET)
_OTHER_TIMES: Final = _XtsTimes(_OTHER_OFFSET)


def is_index(segment: int, instrument_id: int) -> bool:
    """True for the well-known NSE index ids (26000-26099 on segment 1), which are not tradable."""
    return segment == 1 and 26000 <= instrument_id <= 26099


# ---------------------------------------------------------------------------------------------------------
# Wire structures (full form). Wire field names are kept as-is; every field is optional so that one
# missing or null value is a decision of the normalizer, not a validation error. They hold no reference
# cycles, so they stay out of the cyclic GC (gc=False: cheaper to allocate).
#
# Speed notes (measured, see benchmarks/bench_xts_decode.py): msgspec looks a key up by scanning the
# fields from the one after the last match, wrapping around, so (1) fields are declared in the order the
# server sends them (an in-order key is found at the first comparison), and (2) the hot structs are kept
# small: every key a struct does not declare (MessageCode, SequenceNumber...) costs a scan of all its
# fields. Hence the nested 1501/1502 forms are decoded with small structs (`_Nested1501`, `_Nested1502`),
# and only a message without a ``Touchline`` object is decoded again with the flat-capable one.


class _Book(msgspec.Struct, gc=False):
    Size: int = 0
    Price: float = 0.0
    TotalOrders: int = 0


class _DepthTouchline(msgspec.Struct, gc=False):
    """The touchline fields a 1502 uses (its ``BidInfo``/``AskInfo`` repeat ``Bids[0]``/``Asks[0]``)."""

    LastTradedPrice: float | None = None
    LastTradedQunatity: int | None = None
    TotalBuyQuantity: int | None = None
    TotalSellQuantity: int | None = None
    TotalTradedQuantity: int | None = None
    AverageTradedPrice: float | None = None
    LastTradedTime: int | None = None
    LastUpdateTime: int | None = None
    PercentChange: float | None = None
    Open: float | None = None
    High: float | None = None
    Low: float | None = None
    Close: float | None = None
    LastTradedQuantity: int | None = None


class _TouchlineFields(_DepthTouchline, gc=False):
    # Declared last, sent first: the field scan wraps around, so the wire order is still followed.
    BidInfo: _Book | None = None
    AskInfo: _Book | None = None


class _Header(msgspec.Struct, gc=False):
    ExchangeSegment: int | None = None
    ExchangeInstrumentID: int | None = None
    ExchangeTimeStamp: int | None = None


class _Nested1501(_Header, gc=False):
    Touchline: _TouchlineFields | None = None


class _Nested1502(_Header, gc=False):
    Bids: list[_Book] | None = None
    Asks: list[_Book] | None = None
    Touchline: _DepthTouchline | None = None


class _Touchline(_TouchlineFields, gc=False):
    """A 1501 in either form: the touchline fields at the top level (flat) or in ``Touchline``."""

    ExchangeSegment: int | None = None
    ExchangeInstrumentID: int | None = None
    ExchangeTimeStamp: int | None = None
    Touchline: _TouchlineFields | None = None


class _MarketDepth(_Touchline, gc=False):
    Bids: list[_Book] | None = None
    Asks: list[_Book] | None = None


class _Ltp(_Header, gc=False):
    LastTradedPrice: float | None = None
    LastTradedQunatity: int | None = None
    LastTradedQuantity: int | None = None
    LastUpdateTime: int | None = None


class _Index(_Touchline, gc=False):
    IndexValue: float | None = None
    OpeningIndex: float | None = None
    HighIndexValue: float | None = None
    LowIndexValue: float | None = None
    ClosingIndex: float | None = None


class _Candle(_Header, gc=False):
    BarTime: int | None = None
    BarVolume: int | None = None
    Open: float | None = None
    High: float | None = None
    Low: float | None = None
    Close: float | None = None
    OpenInterest: int | None = None


class _MarketStatus(_Header, gc=False):
    message: str | None = None
    Message: str | None = None
    tradingSession: int | None = None
    TradingSession: int | None = None
    maketType: int | None = None
    marketType: int | None = None
    MarketType: int | None = None


class _OpenInterest(_Header, gc=False):
    OpenInterest: int | None = None


# ---------------------------------------------------------------------------------------------------------
# Normalization of full messages.


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


def _touchline_tick(
    m: _Header | _Touchline,
    t: _DepthTouchline,
    mode: Mode,
    depth: Depth | None,
    received_at: float,
) -> Tick:
    # The Tick of a 1501 or 1502 (also inlined, for speed, in _text_1501 and _text_1502).
    seg = m.ExchangeSegment
    iid = m.ExchangeInstrumentID
    last = t.LastTradedPrice
    if seg is None or iid is None or last is None:
        raise ValueError("missing ExchangeSegment, ExchangeInstrumentID or LastTradedPrice")
    times = _NSE_TIMES if seg in _NSE_SEGMENTS else _OTHER_TIMES
    change = t.PercentChange
    o, h, lo, c = t.Open, t.High, t.Low, t.Close
    if o is None and h is None and lo is None and c is None:
        ohlc = None
    else:
        ohlc = _new_object(Ohlc)
        _init_ohlc(
            ohlc,
            _NAN if o is None else o,
            _NAN if h is None else h,
            _NAN if lo is None else lo,
            _NAN if c is None else c,
        )
        if change is None and c is not None:
            change = (last - c) * 100 / c if c else 0.0
    ltq = t.LastTradedQunatity
    tick = _new_object(Tick)
    _init_tick(
        tick,
        _XTS,
        iid,
        mode,
        not (seg == 1 and 26000 <= iid <= 26099),
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
        None,
        None,
        None,
        depth,
        received_at,
        None,
        seg,
    )
    return tick


def _touchline_depth(t: _TouchlineFields) -> Depth | None:
    if t.BidInfo is None and t.AskInfo is None:
        return None
    depth = _new_object(_TouchlineDepth)
    depth._bids = depth._asks = None
    depth._src = t
    return depth


def _rows_depth(m: _Nested1502 | _MarketDepth) -> Depth | None:
    if m.Bids is None and m.Asks is None:
        return None
    depth = _new_object(_RowsDepth)
    depth._bids = depth._asks = None
    depth._src = m
    return depth


def _full_1501(m: _Touchline, received_at: float) -> Event:
    t = m.Touchline or m
    return _touchline_tick(m, t, _QUOTE_MODE, _touchline_depth(t), received_at)


def _full_1502(m: _MarketDepth, received_at: float) -> Event:
    return _touchline_tick(m, m.Touchline or m, _FULL_MODE, _rows_depth(m), received_at)


def _full_1512(m: _Ltp, received_at: float) -> Event:
    seg = m.ExchangeSegment
    iid = m.ExchangeInstrumentID
    last = m.LastTradedPrice
    if seg is None or iid is None or last is None:
        raise ValueError("missing ExchangeSegment, ExchangeInstrumentID or LastTradedPrice")
    ets = m.ExchangeTimeStamp or m.LastUpdateTime
    ltq = m.LastTradedQunatity
    return Tick(
        _XTS,
        iid,
        _LTP_MODE,
        not (seg == 1 and 26000 <= iid <= 26099),
        last,
        m.LastTradedQuantity if ltq is None else ltq,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        xts_to_datetime(ets, seg),
        None,
        None,
        None,
        None,
        received_at,
        None,
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
    return Tick(
        _XTS,
        iid,
        _QUOTE_MODE,
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
        None,
        None,
        None,
        received_at,
        None,
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


_ENCODER = msgspec.json.Encoder()


# Exceptions a normalizer can raise on hostile values (missing fields, times out of range, a dict where
# an object is expected, JSON nested deeper than the recursion limit): all of them become DecodeError.
_BAD_VALUE = (
    ValueError,
    TypeError,
    OverflowError,
    OSError,
    AttributeError,
    RecursionError,
    msgspec.MsgspecError,
)

_Handler = Callable[[Any, float], list[Event]]


def _raw(data: Any) -> str | bytes:
    if isinstance(data, str | bytes):
        return data
    try:
        return _ENCODER.encode(data).decode()
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.MsgspecError):
        pass
    try:
        return repr(data)
    except RecursionError:  # an object nested too deeply even for repr
        return f"<{type(data).__name__} nested too deeply to show>"


_Decode = Callable[[Any], Any]  # JSON text (str or bytes-like) -> wire struct
_Normalize = Callable[[Any, float], Event]

# Text handlers take the JSON text of a full message (str or bytes-like) and the receipt time.
_decode_nested_1501: Final = msgspec.json.Decoder(_Nested1501, strict=False).decode
_decode_flat_1501: Final = msgspec.json.Decoder(_Touchline, strict=False).decode
_decode_nested_1502: Final = msgspec.json.Decoder(_Nested1502, strict=False).decode
_decode_flat_1502: Final = msgspec.json.Decoder(_MarketDepth, strict=False).decode


def _text_1501(data: Any, received_at: float) -> list[Event]:
    # The hot path of a 1501: _full_1501 inlined (each call saved is measurable).
    try:
        m: _Nested1501 | _Touchline = _decode_nested_1501(data)
        t = m.Touchline
        if t is None:  # the flat form
            m = t = _decode_flat_1501(data)
        seg = m.ExchangeSegment
        iid = m.ExchangeInstrumentID
        last = t.LastTradedPrice
        if seg is None or iid is None or last is None:
            raise ValueError("missing ExchangeSegment, ExchangeInstrumentID or LastTradedPrice")
        if t.BidInfo is None and t.AskInfo is None:
            depth = None
        else:
            depth = _new_object(_TouchlineDepth)
            depth._bids = depth._asks = None
            depth._src = t
        times = _NSE_TIMES if seg in _NSE_SEGMENTS else _OTHER_TIMES
        change = t.PercentChange
        o, h, lo, c = t.Open, t.High, t.Low, t.Close
        if o is None and h is None and lo is None and c is None:
            ohlc = None
        else:
            ohlc = _new_object(Ohlc)
            _init_ohlc(
                ohlc,
                _NAN if o is None else o,
                _NAN if h is None else h,
                _NAN if lo is None else lo,
                _NAN if c is None else c,
            )
            if change is None and c is not None:
                change = (last - c) * 100 / c if c else 0.0
        ltq = t.LastTradedQunatity
        tick = _new_object(Tick)
        _init_tick(
            tick,
            _XTS,
            iid,
            _QUOTE_MODE,
            not (seg == 1 and 26000 <= iid <= 26099),
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
            None,
            None,
            None,
            depth,
            received_at,
            None,
            seg,
        )
        return [tick]
    except _BAD_VALUE as exc:
        raise DecodeError(f"malformed XTS 1501 message: {exc}", _raw(data)) from exc


def _text_1502(data: Any, received_at: float) -> list[Event]:
    # The hot path of a 1502: _full_1502 inlined.
    try:
        m: _Nested1502 | _MarketDepth = _decode_nested_1502(data)
        t = m.Touchline
        if t is None:  # the flat form
            m = t = _decode_flat_1502(data)
        seg = m.ExchangeSegment
        iid = m.ExchangeInstrumentID
        last = t.LastTradedPrice
        if seg is None or iid is None or last is None:
            raise ValueError("missing ExchangeSegment, ExchangeInstrumentID or LastTradedPrice")
        if m.Bids is None and m.Asks is None:
            depth = None
        else:
            depth = _new_object(_RowsDepth)
            depth._bids = depth._asks = None
            depth._src = m
        times = _NSE_TIMES if seg in _NSE_SEGMENTS else _OTHER_TIMES
        change = t.PercentChange
        o, h, lo, c = t.Open, t.High, t.Low, t.Close
        if o is None and h is None and lo is None and c is None:
            ohlc = None
        else:
            ohlc = _new_object(Ohlc)
            _init_ohlc(
                ohlc,
                _NAN if o is None else o,
                _NAN if h is None else h,
                _NAN if lo is None else lo,
                _NAN if c is None else c,
            )
            if change is None and c is not None:
                change = (last - c) * 100 / c if c else 0.0
        ltq = t.LastTradedQunatity
        tick = _new_object(Tick)
        _init_tick(
            tick,
            _XTS,
            iid,
            _FULL_MODE,
            not (seg == 1 and 26000 <= iid <= 26099),
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
            None,
            None,
            None,
            depth,
            received_at,
            None,
            seg,
        )
        return [tick]
    except _BAD_VALUE as exc:
        raise DecodeError(f"malformed XTS 1502 message: {exc}", _raw(data)) from exc


def _text_handler(code: int, cls: type[Any], normalize: _Normalize) -> _Handler:
    decode = msgspec.json.Decoder(cls, strict=False).decode

    def handler(data: Any, received_at: float) -> list[Event]:
        try:
            return [normalize(decode(data), received_at)]
        except _BAD_VALUE as exc:
            raise DecodeError(f"malformed XTS {code} message: {exc}", _raw(data)) from exc

    return handler


class _Full(NamedTuple):
    text: _Handler
    """JSON text (str or bytes-like) -> events."""
    handler: _Handler
    """Any data (text or a dict) -> events."""


def _full(code: int, cls: type[Any], normalize: _Normalize, text: _Handler | None = None) -> _Full:
    # cls decodes every form of the message (flat and nested); text, if given, is a faster equivalent
    # of the default text handler.
    if text is None:
        text = _text_handler(code, cls, normalize)
    return _Full(text, _full_handler(code, cls, text, normalize))


def _full_handler(code: int, cls: type[Any], text: _Handler, normalize: _Normalize) -> _Handler:
    convert = msgspec.convert

    def handler(data: Any, received_at: float) -> list[Event]:
        if type(data) is str or isinstance(data, bytes | bytearray | memoryview):
            return text(data, received_at)
        try:
            if isinstance(data, dict):
                return [normalize(convert(data, cls, strict=False), received_at)]
            raise TypeError(f"expected JSON text or an object, got {type(data).__name__}")
        except _BAD_VALUE as exc:
            raise DecodeError(f"malformed XTS {code} message: {exc}", _raw(data)) from exc

    return handler


_FULL_PARTS: Final[dict[int, _Full]] = {
    TOUCHLINE: _full(TOUCHLINE, _Touchline, _full_1501, _text_1501),
    MARKET_DEPTH: _full(MARKET_DEPTH, _MarketDepth, _full_1502, _text_1502),
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


# ---------------------------------------------------------------------------------------------------------
# Partial form.


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
    last = _NAN if m.ltp is None else m.ltp
    if mode is _LTP_MODE:
        return Tick(
            _XTS,
            iid,
            mode,
            not is_index(seg, iid),
            last,
            m.ltq,
            received_at=received_at,
            exchange_time=xts_to_datetime(m.lut, seg),
            segment=seg,
        )
    ohlc, change = _ohlc_change(last, m.o, m.h, m.l, m.c, m.pc)
    tick = _new_object(Tick)
    _init_tick(
        tick,
        _XTS,
        iid,
        mode,
        not is_index(seg, iid),
        last,
        m.ltq,
        m.ap,
        m.v,
        m.tb,
        m.ts,
        ohlc,
        change,
        xts_to_datetime(m.ltt, seg),
        xts_to_datetime(m.lut, seg),
        None,
        None,
        None,
        _partial_depth(m),
        received_at,
        None,
        seg,
    )
    return tick


def _partial_1504(m: PartialMessage, received_at: float) -> Event | None:
    iid = m.instrument_id
    if iid is None:
        return None  # t:<segment>_<IndexName>: no numeric id to attribute the tick to
    last = _NAN if m.ltp is None else m.ltp
    ohlc, change = _ohlc_change(last, m.o, m.h, m.l, m.c, m.pc)
    return Tick(
        _XTS,
        iid,
        _QUOTE_MODE,
        False,
        last,
        m.ltq,
        ohlc=ohlc,
        change=change,
        exchange_time=xts_to_datetime(m.lut, m.segment),
        received_at=received_at,
        segment=m.segment,
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


# ---------------------------------------------------------------------------------------------------------
# The entry point.


def event_name(code: int, partial: bool = False) -> str:
    """The Socket.IO event name of a message code: ``"1501-json-full"`` (or ``-json-partial``)."""
    return f"{code}-json-{'partial' if partial else 'full'}"


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


# ---------------------------------------------------------------------------------------------------------
# Subscriptions.


def subscription_body(instruments: Sequence[tuple[int, int]], code: int) -> dict[str, Any]:
    """The JSON body of a subscribe (POST) or unsubscribe (PUT) ``/instruments/subscription`` request.

    Args:
        instruments: ``(exchange_segment, exchange_instrument_id)`` pairs.
        code: the message code (see `MODE_TO_CODE`).

    Returns:
        ``{"instruments": [{"exchangeSegment": s, "exchangeInstrumentID": i}, ...], "xtsMessageCode": code}``.
        Does not block, raises nothing.
    """
    return {
        "instruments": [{"exchangeSegment": seg, "exchangeInstrumentID": iid} for seg, iid in instruments],
        "xtsMessageCode": code,
    }


# ---------------------------------------------------------------------------------------------------------
# Encoding (used by the simulator, and by tests and benchmarks as the inverse of the decoders).


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
            BarTime=int(event.bar_time.timestamp()) - _OTHER_OFFSET,
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
            f"c:{event.close!r},bt:{int(event.bar_time.timestamp()) - _OTHER_OFFSET},bv:{event.volume}"
        )
    if isinstance(event, OpenInterest):
        return f"t:{_segment(event.segment)}_{event.instrument_token},o:{event.open_interest}"
    if isinstance(event, InstrumentPropertyChange):
        parts = [f"t:{_segment(event.segment)}_{event.instrument_token}"]
        parts += (f"{_PROPERTY_CODES_BY_NAME.get(k, k)}:{v}" for k, v in event.properties.items())
        return ",".join(parts)
    raise TypeError(f"XTS has no partial message for {type(event).__name__}")
