"""XTS wire vocabulary: message codes, the instrument property names, the two time bases, the msgspec
structures of the full (JSON) messages, and what every decoder shares (the errors a hostile value can
raise, how a bad message is shown). No normalisation happens here.

Pure and synchronous: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

import msgspec

from ...._model import IST, Broker, Event, Mode
from ..._timecache import DEFAULT_MAX_ENTRIES, TimeCache

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

_XTS: Final = Broker.XTS
_NAN: Final = math.nan


def event_name(code: int, partial: bool = False) -> str:
    """The Socket.IO event name of a message code: ``"1501-json-full"`` (or ``-json-partial``)."""
    return f"{code}-json-{'partial' if partial else 'full'}"


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


def is_index(segment: int, instrument_id: int) -> bool:
    """True for the well-known NSE index ids (26000-26099 on segment 1), which are not tradable."""
    return segment == 1 and 26000 <= instrument_id <= 26099


# ---------------------------------------------------------------------------------------------------------
# Time bases (docs/xts.md, "The codec"): XTS seconds are IST wall-clock seconds since 1980-01-01 for the NSE
# segments 1-3 and since 1970-01-01 for the others; candle bar times always use the 1970 base.

_NSE_SEGMENTS: Final = frozenset({1, 2, 3})
#: unix seconds = XTS seconds + offset: 1980-01-01 IST (NSE segments 1-3), 1970-01-01 IST (others).
_NSE_OFFSET: Final = 315532800 - 19800
_OTHER_OFFSET: Final = -19800

#: XTS seconds -> IST datetime (None for 0 or None), one `TimeCache` per time base. The hot paths pick
#: one by segment and index it: ``times[seconds]`` is one dictionary lookup once a second has been seen.
_NSE_TIMES: Final = TimeCache(_NSE_OFFSET)
_OTHER_TIMES: Final = TimeCache(_OTHER_OFFSET)
_TIME_CACHE_MAX: Final = DEFAULT_MAX_ENTRIES


def _times(segment: int) -> TimeCache:
    """The time cache of ``segment``'s time base."""
    return _NSE_TIMES if segment in _NSE_SEGMENTS else _OTHER_TIMES


def _offset(segment: int) -> int:
    return _NSE_OFFSET if segment in _NSE_SEGMENTS else _OTHER_OFFSET


def xts_to_datetime(seconds: int | None, segment: int) -> datetime | None:
    """Convert an XTS timestamp of ``segment`` to an aware datetime in IST; None for 0 or None.

    Uses the 1980 base for segments 1, 2 and 3 and the 1970 base otherwise, both IST wall-clock (see
    docs/xts.md, "The codec"). Does not block.

    Raises:
        OverflowError, ValueError, OSError: the time is outside the platform's range.
    """
    if not seconds:
        return None
    return _times(segment)[int(seconds)]


def datetime_to_xts(value: datetime | None, segment: int) -> int:
    """The inverse of `xts_to_datetime`: whole XTS seconds for ``segment``, 0 for None."""
    if value is None:
        return 0
    return int(value.timestamp()) - _offset(segment)


def _bar_time(seconds: int) -> datetime:
    # A candle's BarTime: the 1970 IST base whatever the segment; 0 is a time here, not "absent".
    value = _OTHER_TIMES[seconds]
    return datetime.fromtimestamp(_OTHER_OFFSET, IST) if value is None else value


def _bar_seconds(value: datetime) -> int:
    """The inverse of `_bar_time`."""
    return int(value.timestamp()) - _OTHER_OFFSET


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
# What every decoder shares.

_ENCODER: Final = msgspec.json.Encoder()


# Exceptions a normalizer can raise on hostile values (missing fields, times out of range, a dict where
# an object is expected, JSON nested deeper than the recursion limit): all of them become DecodeError.
_BAD_VALUE: Final = (
    ValueError,
    TypeError,
    OverflowError,
    OSError,
    AttributeError,
    RecursionError,
    msgspec.MsgspecError,
)


def _raw(data: Any) -> str | bytes:
    """What a DecodeError shows of a bad message: text as given, anything else as JSON text (or its repr)."""
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


#: A message handler: the event's data argument and the receipt time -> events.
_Handler = Callable[[Any, float], list[Event]]
