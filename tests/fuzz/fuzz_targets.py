"""Fuzz targets shared by the hypothesis fuzz tests (``test_fuzz_decoders.py``) and the atheris harness
(``atheris_targets.py``).

Every target takes raw ``bytes`` (what a fuzzer mutates), maps them to the decoder's input (`Target.prepare`)
and checks the call (`check`):

1. only `trading_ws.DecodeError` may escape; anything else fails with the input shown;
2. whatever is returned (or carried by the DecodeError) is a well-formed event of the model, with lazy depth
   readable;
3. the call finishes within `DEADLINE` seconds (inputs are capped at `MAX_INPUT` bytes).

Inputs are mutations of valid seeds (Kite frames from the encoder, XTS messages and ``42[...]`` frames built
from the protocol reference's real payloads, master rows) by a small op language (`apply_ops`): bit flips,
byte sets, token insertions (JSON specials, NaN/Infinity, huge numbers, invalid UTF-8, surrogates), deletions,
truncation, slice duplication, deep nesting, overwritten big-endian counts/lengths. The op lists are drawn by
hypothesis (so failures shrink) or by `random.Random` (`random_input`, for the memory test).

Some targets read a two-byte header before their payload: byte 0 picks the event name or message code, byte
1 the form in which the payload is passed (text, bytes, an already-decoded JSON object...), see `as_form`.
"""

from __future__ import annotations

import json
import os
import random
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NoReturn

from trading_ws import (
    IST,
    Broker,
    BrokerError,
    BrokerMessage,
    DecodeError,
    Depth,
    DepthLevel,
    Event,
    Mode,
    Ohlc,
    OrderUpdate,
    Tick,
)
from trading_ws._model import Candle, InstrumentPropertyChange, MarketStatus, OpenInterest
from trading_ws.brokers import kite as kite_codec, xts as xts_codec
from trading_ws.brokers.kite import ControlMessage, decode_control, decode_frame, encode_control, encode_frame
from trading_ws.brokers.xts import (
    SEGMENT_IDS,
    EioClose,
    EioNoop,
    EioPing,
    EioPong,
    EioUpgrade,
    OpenPacket,
    SioConnect,
    SioDisconnect,
    SioError,
    SioEvent,
    Unknown,
    XtsInstrument,
    decode_event,
    decode_full,
    decode_list_quotes,
    decode_partial,
    encode_event,
    encode_full,
    event_name,
    parse_master,
    parse_master_lenient,
    parse_packet,
)

__all__ = [
    "DEADLINE",
    "FULL_SAMPLES",
    "LIST_SEPARATOR",
    "MASTER_ROWS",
    "MAX_INPUT",
    "OP_KINDS",
    "PARTIAL_SAMPLES",
    "TARGETS",
    "TOKENS",
    "XTS_CODES",
    "XTS_EVENTS",
    "FuzzFailure",
    "T",
    "Target",
    "apply_ops",
    "as_text",
    "check",
    "clear_caches",
    "random_input",
    "show",
]

MAX_INPUT: Final = 64 * 1024
"""Inputs are capped at this many bytes; the deadline is promised for inputs up to this size."""
DEADLINE: Final = float(os.environ.get("TRADING_WS_FUZZ_DEADLINE_MS", "50")) / 1000
"""Seconds one decoder call may take (a call over it is retried once, so a GC pause does not count)."""

T: Final = 1_764_054_000.25  # the receipt time passed to every decoder

XTS_EVENTS: Final[tuple[str, ...]] = (
    *(
        event_name(code, partial)
        for code in (1501, 1502, 1504, 1505, 1507, 1510, 1512, 1105)
        for partial in (False, True)
    ),
    "joined",
    "5018-json-full",
    "1501-json-fulll",
    "",
)
XTS_CODES: Final[tuple[int, ...]] = (1501, 1502, 1504, 1505, 1507, 1510, 1512, 1105, 9999)

XTS_EVENT_TYPES: Final = (Tick, Candle, MarketStatus, OpenInterest, InstrumentPropertyChange)
KITE_TEXT_TYPES: Final = (OrderUpdate, BrokerMessage, BrokerError)
PACKET_TYPES: Final = (
    OpenPacket,
    SioEvent,
    SioConnect,
    SioDisconnect,
    SioError,
    EioPing,
    EioPong,
    EioClose,
    EioUpgrade,
    EioNoop,
    Unknown,
)


class FuzzFailure(AssertionError):
    """A decoder broke its contract on some input (the message shows the input)."""


# ---------------------------------------------------------------------------------------------------------
# Showing inputs.


def show(value: object, limit: int = 600) -> str:
    """A bounded repr of a decoder input (or a tuple of them), with its size: inputs reach 64 KiB."""
    if isinstance(value, tuple):
        return "(" + ", ".join(show(v, limit) for v in value) + ")"
    text = repr(value)
    size = f" [{len(value)} long]" if isinstance(value, str | bytes | bytearray | list) else ""
    if len(text) > limit:
        text = f"{text[: limit // 2]} ...[{len(text) - limit} more chars]... {text[-limit // 2 :]}"
    return text + size


# ---------------------------------------------------------------------------------------------------------
# From bytes to decoder inputs.


def as_text(data: bytes) -> str:
    """Bytes as a str that may hold lone surrogates: UTF-8 with encoded surrogates passed through
    (``ED A0 80`` -> ``\\ud800``), or, if the bytes are not UTF-8 at all, each bad byte as ``\\udcXX``."""
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return data.decode("utf-8", "surrogateescape")


def _json_object(text: str) -> Any:
    try:
        return json.loads(text)  # Python's json: NaN, Infinity and huge ints become float('nan'), ...
    except (ValueError, RecursionError):
        return text


def as_form(form: int, data: bytes) -> Any:
    """The payload as text (most forms), bytes, a bytearray, or a JSON object decoded by Python's json."""
    f = form % 8
    if f == 5:
        return data
    if f == 6:
        return _json_object(as_text(data))
    if f == 7:
        return bytearray(data)
    return as_text(data)


def _header(data: bytes) -> tuple[int, int, bytes]:
    return (data[0] if data else 0), (data[1] if len(data) > 1 else 0), data[2:]


# ---------------------------------------------------------------------------------------------------------
# Validation of results.


def _fail(message: str) -> NoReturn:
    raise FuzzFailure(message)


def _check_depth(depth: Depth | None, where: str) -> None:
    if depth is None:
        return
    if not isinstance(depth, Depth):
        _fail(f"{where}: depth is {type(depth).__name__}")
    for level in (*depth.bids, *depth.asks):  # lazy depth is built here
        if not isinstance(level, DepthLevel):
            _fail(f"{where}: depth level is {type(level).__name__}")


def _check_event(event: object, broker: Broker, types: tuple[type, ...], where: str) -> None:
    if not isinstance(event, types):
        _fail(f"{where}: unexpected event type {type(event).__name__}")
    if getattr(event, "broker", None) is not broker:
        _fail(f"{where}: event of broker {getattr(event, 'broker', None)!r}")
    if getattr(event, "received_at", None) != T:
        _fail(f"{where}: received_at {getattr(event, 'received_at', None)!r}")
    if isinstance(event, Tick):
        if not isinstance(event.mode, Mode) or type(event.instrument_token) is not int:
            _fail(f"{where}: bad tick {event!r}")
        for stamp in (event.exchange_time, event.last_trade_time):
            if stamp is not None and (not isinstance(stamp, datetime) or stamp.tzinfo is None):
                _fail(f"{where}: naive or non-datetime time {stamp!r}")
        if event.ohlc is not None and not isinstance(event.ohlc, Ohlc):
            _fail(f"{where}: ohlc is {type(event.ohlc).__name__}")
        _check_depth(event.depth, where)
    repr(event)


def _check_events(events: Sequence[object], broker: Broker, types: tuple[type, ...], where: str) -> None:
    for event in events:
        _check_event(event, broker, types, where)


def _check_list(result: object, broker: Broker, types: tuple[type, ...], most: int, where: str) -> None:
    if not isinstance(result, list):
        _fail(f"{where}: returned {type(result).__name__}, not a list")
    if len(result) > most:
        _fail(f"{where}: {len(result)} events, at most {most} expected")
    _check_events(result, broker, types, where)


# ---------------------------------------------------------------------------------------------------------
# Targets.


@dataclass(frozen=True)
class Target:
    """One decoder entry point, driven from raw bytes."""

    name: str
    prepare: Callable[[bytes], tuple[Any, ...]]
    """bytes -> the decoder's arguments (done outside the timed call)."""
    call: Callable[..., object]
    """The decoder call; may raise DecodeError."""
    validate: Callable[[object, tuple[Any, ...]], None]
    """Checks a result (raises FuzzFailure)."""
    validate_error: Callable[[DecodeError, tuple[Any, ...]], None]
    """Checks a DecodeError (raises FuzzFailure)."""
    seeds: tuple[bytes, ...]
    """Valid inputs (in the target's byte form) that mutation starts from."""
    per_item: float = 0.0
    """Seconds added to `DEADLINE` per item of a batch input (``args[-1]``: decode_list_quotes' entries)."""

    def budget(self, args: tuple[Any, ...]) -> float:
        """The seconds one call on `args` may take."""
        return DEADLINE + self.per_item * len(args[-1]) if self.per_item else DEADLINE


def _raw_is_str_or_bytes(exc: DecodeError, args: tuple[Any, ...]) -> None:
    if not isinstance(exc.raw, str | bytes):
        _fail(f"DecodeError.raw is {type(exc.raw).__name__}")
    str(exc)


# Kite binary frames -----------------------------------------------------------------------------------


def _kite_frame_prepare(data: bytes) -> tuple[Any, ...]:
    return (data,)


def _kite_frame_call(data: bytes) -> object:
    return decode_frame(data, T)


def _kite_frame_validate(result: object, args: tuple[Any, ...]) -> None:
    _check_list(result, Broker.KITE, (Tick,), 0xFFFF, "kite frame")
    assert isinstance(result, list)
    for tick in result:
        if tick.depth is not None and (len(tick.depth.bids), len(tick.depth.asks)) != (5, 5):
            _fail(f"kite frame: full-packet depth of {len(tick.depth.bids)}/{len(tick.depth.asks)} levels")


def _kite_frame_error(exc: DecodeError, args: tuple[Any, ...]) -> None:
    if exc.raw != args[0]:
        _fail("kite frame: DecodeError.raw is not the frame")
    _check_events(exc.events, Broker.KITE, (Tick,), "kite frame error")


# Kite text messages -----------------------------------------------------------------------------------


def _text_prepare(data: bytes) -> tuple[Any, ...]:
    return (as_text(data),)


def _kite_text_validate(result: object, args: tuple[Any, ...]) -> None:
    _check_list(result, Broker.KITE, KITE_TEXT_TYPES, 1, "kite text")
    if result == []:
        _fail("kite text: no event")


def _kite_text_error(exc: DecodeError, args: tuple[Any, ...]) -> None:
    if exc.raw != args[0] or list(exc.events):
        _fail("kite text: DecodeError.raw is not the text, or carries events")


# Kite control messages --------------------------------------------------------------------------------


def _kite_control_prepare(data: bytes) -> tuple[Any, ...]:
    return (data[1:] if data[:1] and data[0] & 1 else as_text(data[1:]),)


def _kite_control_validate(result: object, args: tuple[Any, ...]) -> None:
    if not isinstance(result, ControlMessage):
        _fail(f"kite control: returned {type(result).__name__}")
    assert isinstance(result, ControlMessage)
    if result.action not in ("subscribe", "unsubscribe", "mode"):
        _fail(f"kite control: action {result.action!r}")
    if not all(type(t) is int and 0 <= t <= 0xFFFFFFFF for t in result.tokens):
        _fail(f"kite control: tokens {result.tokens!r}")
    if (result.mode is not None) != (result.action == "mode"):
        _fail(f"kite control: mode {result.mode!r} with action {result.action!r}")


def _kite_control_error(exc: DecodeError, args: tuple[Any, ...]) -> None:
    if exc.raw != args[0]:
        _fail("kite control: DecodeError.raw is not the request")


# XTS Engine.IO / Socket.IO packets --------------------------------------------------------------------


def _packet_validate(result: object, args: tuple[Any, ...]) -> None:
    if not isinstance(result, PACKET_TYPES):
        _fail(f"parse_packet: returned {type(result).__name__}")
    if isinstance(result, SioEvent):
        if type(result.name) is not str or type(result.args) is not tuple:
            _fail(f"parse_packet: bad event {result!r}")
        if result.ack_id is not None and type(result.ack_id) is not int:
            _fail(f"parse_packet: ack id {result.ack_id!r}")
    if isinstance(result, OpenPacket) and not (
        type(result.sid) is str and isinstance(result.ping_interval, float | int)
    ):
        _fail(f"parse_packet: bad open packet {result!r}")


def _packet_error(exc: DecodeError, args: tuple[Any, ...]) -> None:
    if exc.raw != args[0]:
        _fail("parse_packet: DecodeError.raw is not the text")


# The XTS feed's path: packet, then the event's data --------------------------------------------------


def _pipeline_call(text: str) -> object:
    packet = parse_packet(text)
    if isinstance(packet, SioEvent) and packet.args:
        return decode_event(packet.name, packet.args[0], T)
    return []


def _xts_list_validate(result: object, args: tuple[Any, ...]) -> None:
    _check_list(result, Broker.XTS, XTS_EVENT_TYPES, 1, "xts")


def _xts_error(exc: DecodeError, args: tuple[Any, ...]) -> None:
    _raw_is_str_or_bytes(exc, args)
    _check_events(exc.events, Broker.XTS, XTS_EVENT_TYPES, "xts error")


# XTS decode_message: the feed's one-step fast path, checked against parse_packet + decode_event --------

DECODE_MESSAGE: Final[Callable[..., object] | None] = getattr(xts_codec, "decode_message", None) or getattr(
    xts_codec._codec, "decode_message", None
)
_MARKET_EVENTS: Final[Any] = getattr(xts_codec._codec, "_EVENTS", {})


def _message_call(text: str) -> object:
    assert DECODE_MESSAGE is not None
    return DECODE_MESSAGE(text, T)


def _message_reference(text: str) -> object:
    """What decode_message promises to equal: parse_packet, then decode_event for a market-data event."""
    packet = parse_packet(text)
    if type(packet) is SioEvent and packet.name in _MARKET_EVENTS:
        if not packet.args:
            raise DecodeError("no data", text)
        return decode_event(packet.name, packet.args[0], T)
    return packet


def _same(a: object, b: object) -> bool:
    return a == b or repr(a) == repr(b)  # repr: events holding NaN are not equal to themselves


def _message_validate(result: object, args: tuple[Any, ...]) -> None:
    if type(result) is list:
        _check_list(result, Broker.XTS, XTS_EVENT_TYPES, 1, "decode_message")
    else:
        _packet_validate(result, args)
    try:
        expected = _message_reference(args[0])
    except DecodeError as exc:
        _fail(f"decode_message returned {show(result)} where parse_packet + decode_event raise {exc}")
    if not _same(result, expected):
        _fail(f"decode_message returned {show(result)}, parse_packet + decode_event {show(expected)}")


def _message_error(exc: DecodeError, args: tuple[Any, ...]) -> None:
    _xts_error(exc, args)
    try:
        expected = _message_reference(args[0])
    except DecodeError:
        return
    _fail(f"decode_message raised {exc} where parse_packet + decode_event return {show(expected)}")


# XTS decode_event / decode_full / decode_partial -------------------------------------------------------


def _event_prepare(data: bytes) -> tuple[Any, ...]:
    name, form, payload = _header(data)
    return XTS_EVENTS[name % len(XTS_EVENTS)], as_form(form, payload)


def _event_call(name: str, payload: Any) -> object:
    return decode_event(name, payload, T)


def _code_prepare(data: bytes) -> tuple[Any, ...]:
    code, form, payload = _header(data)
    return XTS_CODES[code % len(XTS_CODES)], as_form(form, payload)


def _full_call(code: int, payload: Any) -> object:
    return decode_full(code, payload, T)


def _partial_call(code: int, payload: Any) -> object:
    return decode_partial(code, payload, T)


# XTS listQuotes snapshots ------------------------------------------------------------------------------

LIST_SEPARATOR: Final = b"\x1e"


def _list_prepare(data: bytes) -> tuple[Any, ...]:
    code, form, payload = _header(data)
    return XTS_CODES[code % len(XTS_CODES)], [as_form(form, e) for e in payload.split(LIST_SEPARATOR)]


def _list_call(code: int, entries: list[Any]) -> object:
    return decode_list_quotes(code, entries, T)


def _list_validate(result: object, args: tuple[Any, ...]) -> None:
    _check_list(result, Broker.XTS, XTS_EVENT_TYPES, len(args[1]), "list quotes")


def _list_error(exc: DecodeError, args: tuple[Any, ...]) -> None:
    _raw_is_str_or_bytes(exc, args)
    if len(exc.events) >= len(args[1]):
        _fail("list quotes: an error with as many events as entries")
    _check_events(exc.events, Broker.XTS, XTS_EVENT_TYPES, "list quotes error")


# XTS instrument master ---------------------------------------------------------------------------------


def _master_call(text: str) -> object:
    good, bad = parse_master_lenient(text)  # documented to raise nothing
    if not all(isinstance(e, DecodeError) for e in bad):
        _fail("parse_master_lenient: an error that is not a DecodeError")
    try:
        strict = parse_master(text)
    except DecodeError:
        if not bad:
            _fail("parse_master raised where parse_master_lenient found no bad row")
        raise
    if bad or strict != good:
        _fail("parse_master and parse_master_lenient disagree")
    return strict


def _master_validate(result: object, args: tuple[Any, ...]) -> None:
    if not isinstance(result, list):
        _fail(f"parse_master: returned {type(result).__name__}")
    assert isinstance(result, list)
    for inst in result:
        if not isinstance(inst, XtsInstrument) or SEGMENT_IDS[inst.segment] != inst.segment_id:
            _fail(f"parse_master: bad instrument {inst!r}")
        if not isinstance(inst.symbol, str) or type(inst.instrument_id) is not int:
            _fail(f"parse_master: bad instrument {inst!r}")


def _master_error(exc: DecodeError, args: tuple[Any, ...]) -> None:
    _raw_is_str_or_bytes(exc, args)
    if not isinstance(exc.raw, str) or exc.raw not in args[0]:
        _fail("parse_master: DecodeError.raw is not a line of the text")


# ---------------------------------------------------------------------------------------------------------
# Seeds.


def _kite_seed_frames() -> list[bytes]:
    infy, nifty, usdinr, nco = 408065, 256265, 1000 << 8 | 3, 31132428
    when = datetime(2026, 11, 25, 15, 29, 59, tzinfo=IST)
    depth = Depth(
        [DepthLevel(1500.0 - i * 0.05, 100 + i, 1 + i) for i in range(5)],
        [DepthLevel(1500.5 + i * 0.05, 200 + i, 11 + i) for i in range(5)],
    )
    ohlc = Ohlc(1490.0, 1510.0, 1480.0, 1485.0)
    ltp = Tick(Broker.KITE, infy, Mode.LTP, True, 1500.25, segment=1)
    quote = Tick(
        Broker.KITE,
        usdinr,
        Mode.QUOTE,
        True,
        83.1234567,
        last_quantity=25,
        average_price=83.12,
        volume=1_234_567,
        total_buy_quantity=40_000,
        total_sell_quantity=52_000,
        ohlc=Ohlc(83.0, 83.5, 82.9, 83.05),
    )
    full = Tick(
        Broker.KITE,
        nco,
        Mode.FULL,
        True,
        1500.25,
        last_quantity=25,
        average_price=1499.8,
        volume=1_234_567,
        total_buy_quantity=40_000,
        total_sell_quantity=52_000,
        ohlc=ohlc,
        change=1.0,
        last_trade_time=when,
        exchange_time=when,
        oi=1,
        oi_day_high=2,
        oi_day_low=3,
        depth=depth,
    )
    index_quote = Tick(Broker.KITE, nifty, Mode.QUOTE, False, 22386.0, ohlc=ohlc)
    index_full = Tick(Broker.KITE, nifty, Mode.FULL, False, 22386.0, ohlc=ohlc, exchange_time=when)
    ticks = [ltp, quote, full, index_quote, index_full]
    return [
        b"\x00",
        encode_frame([]),
        *(encode_frame([t]) for t in ticks),
        encode_frame(ticks),
        encode_frame([ltp] * 40),
    ]


_ORDER: Final = {
    "order_id": "220303000308932",
    "exchange_order_id": "1100000000000001",
    "status": "COMPLETE",
    "tradingsymbol": "INFY",
    "instrument_token": 408065,
    "quantity": 1,
    "average_price": 1500.25,
    "order_timestamp": "2026-11-25 15:29:59",
    "meta": {},
    "tag": None,
}


def _kite_seed_texts() -> list[bytes]:
    return [
        kite_codec.encode_text(kind, data).encode()
        for kind, data in (
            ("order", _ORDER),
            ("error", "Invalid token"),
            ("message", "Market closes early"),
            ("error", {"code": 7, "why": ["a"]}),
            ("instruments_meta", {"count": 3}),
        )
    ]


def _kite_seed_controls() -> list[bytes]:
    requests = [
        encode_control("subscribe", [408065, 884737]),
        encode_control("unsubscribe", [884737]),
        encode_control("mode", [408065, 256265], Mode.FULL),
        encode_control("mode", [884737], Mode.LTP),
        encode_control("subscribe", []),
    ]
    return [bytes([form]) + r.encode() for r in requests for form in (0, 1)]


# Real payloads from the XTS protocol reference, section 4 (the 1502 completed to five rows a side, the
# 1504 assembled from the fields of section 4.3).
NIFTY_1501: Final = (
    '{"MessageCode":1501,"MessageVersion":4,"ApplicationType":0,"TokenID":0,"ExchangeSegment":1,'
    '"ExchangeInstrumentID":26000,"ExchangeTimeStamp":1397650179,'
    '"Touchline":{"BidInfo":{"Size":0,"Price":0,"TotalOrders":0,"BuyBackMarketMaker":0},'
    '"AskInfo":{"Size":0,"Price":0,"TotalOrders":0,"BuyBackMarketMaker":0},'
    '"LastTradedPrice":22386,"LastTradedQunatity":0,"TotalBuyQuantity":0,"TotalSellQuantity":0,'
    '"TotalTradedQuantity":0,"AverageTradedPrice":22386,"LastTradedTime":1397650179,'
    '"LastUpdateTime":1397650179,"PercentChange":-0.59,"Open":22339.05,"High":22427.45,'
    '"Low":22263.55,"Close":22519.4,"TotalValueTraded":null,"BuyBackTotalBuy":0,"BuyBackTotalSell":0},'
    '"BookType":1,"XMarketType":1,"SequenceNumber":1353296204670191}'
)
FLAT_1501: Final = (
    '{"MessageCode":1501,"ExchangeSegment":1,"ExchangeInstrumentID":2885,"ExchangeTimeStamp":1397650179,'
    '"BidInfo":{"Size":5,"Price":1272.1,"TotalOrders":1,"BuyBackMarketMaker":0},'
    '"AskInfo":{"Size":7,"Price":1272.3,"TotalOrders":2,"BuyBackMarketMaker":0},'
    '"LastTradedPrice":1272.2,"LastTradedQunatity":5,"TotalTradedQuantity":123456,"Open":1260,'
    '"High":1280.5,"Low":1255,"Close":1262.4,"PercentChange":0.78}'
)
_BOOK = '{{"Size":{},"Price":{},"TotalOrders":{},"BuyBackMarketMaker":0}}'
DEPTH_1502: Final = (
    '{"MessageCode":1502,"MessageVersion":4,"ApplicationType":0,"TokenID":0,"ExchangeSegment":2,'
    '"ExchangeInstrumentID":43422,"ExchangeTimeStamp":1296226865,'
    '"Bids":['
    + ",".join(_BOOK.format(s, p, o) for s, p, o in ((75, 54.35, 1), (150, 54.3, 2), (75, 54.25, 1)))
    + '],"Asks":['
    + ",".join(_BOOK.format(s, p, o) for s, p, o in ((75, 54.55, 1), (225, 54.6, 2), (75, 54.65, 1)))
    + '],"Touchline":{"BidInfo":'
    + _BOOK.format(75, 54.35, 1)
    + ',"AskInfo":'
    + _BOOK.format(75, 54.55, 1)
    + ',"LastTradedPrice":54.35,"LastTradedQunatity":75,"TotalBuyQuantity":250000,'
    '"TotalSellQuantity":310000,"TotalTradedQuantity":34562775,"AverageTradedPrice":120.5,'
    '"LastTradedTime":1296226860,"LastUpdateTime":1296226865,"PercentChange":-80.68,"Open":250,'
    '"High":290.1,"Low":50.05,"Close":281.35},"BookType":1,"XMarketType":1,"SequenceNumber":338944086942100}'
)
INDEX_1504: Final = (
    '{"MessageCode":1504,"MessageVersion":4,"ApplicationType":0,"TokenID":0,"ExchangeSegment":1,'
    '"ExchangeInstrumentID":26000,"ExchangeTimeStamp":1397650179,"IndexName":"NIFTY 50",'
    '"IndexValue":22386,"OpeningIndex":22339.05,"ClosingIndex":22519.4,"HighIndexValue":22427.45,'
    '"LowIndexValue":22263.55,"PercentChange":-0.59,"YearlyHigh":22775.7,"YearlyLow":17312.75,'
    '"NoOfUpmoves":12,"NoOfDownmoves":38,"MarketCapitalisation":0}'
)
CANDLE_1505: Final = (
    '{"MessageCode":1505,"MessageVersion":1,"ApplicationType":142,"TokenID":0,"ExchangeSegment":11,'
    '"ExchangeInstrumentID":500188,"BarTime":1548408248,"BarVolume":100,"Open":258,"High":258,"Low":258,'
    '"Close":258,"OpenInterest":0,"SumOfQtyInToPrice":25800}'
)
STATUS_1507: Final = (
    '{"ApplicationType":0,"ExchangeInstrumentID":0,"ExchangeSegment":1,"ExchangeTimeStamp":1295773200,'
    '"maketType":1,"message":"THE NORMAL MARKET HAS PREOPENED FOR 22 JAN 2021","MessageCode":1507,'
    '"MessageVersion":4,"SequenceNumber":424567064044868,"TokenID":0,"tradingSession":1}'
)
OI_1510: Final = (
    '{"MessageCode":1510,"MessageVersion":4,"ApplicationType":0,"TokenID":0,"ExchangeSegment":2,'
    '"ExchangeInstrumentID":43423,"ExchangeTimeStamp":1296226865,"XTSMarketType":1,'
    '"OpenInterest":3721575,"SequenceNumber":338944086942101}'
)
LTP_1512: Final = (
    '{"MessageCode":1512,"MessageVersion":4,"ApplicationType":0,"TokenID":0,"ExchangeSegment":1,'
    '"ExchangeInstrumentID":2885,"BookType":1,"XMarketType":1,"LastTradedPrice":2571.75,'
    '"LastTradedQunatity":3,"LastUpdateTime":1317813249}'
)
PROPERTY_1105: Final = (
    '{"MessageCode":1105,"ExchangeSegment":12,"ExchangeInstrumentID":1140025,"110":"2067.75",'
    '"111":"516.95","TickSize":0.05,"Remark":{"a":[1,2]}}'
)
FULL_SAMPLES: Final[dict[int, tuple[str, ...]]] = {
    1501: (NIFTY_1501, FLAT_1501),
    1502: (DEPTH_1502,),
    1504: (INDEX_1504,),
    1505: (CANDLE_1505,),
    1507: (STATUS_1507,),
    1510: (OI_1510,),
    1512: (LTP_1512,),
    1105: (PROPERTY_1105,),
}
PARTIAL_SAMPLES: Final[dict[int, tuple[str, ...]]] = {
    1501: (
        "t:2_59175,bi:0|90|59991.6|2,ai:0|60|60023|1,ltp:60010,ltq:30,tb:7980,ts:7830,v:12810,"
        "o:60306,h:60306,l:59966.2,c:60332.8",
        "t:1_2885,ltp:1272.2,ltq:5,v:123456",
    ),
    1502: (
        "t:1_2885,ai:0|1428|1567.95|10,bi:0|0|0|0|1",
        "t:1_2885,bi:0|5|1.5|1|1|6|1.4|2|2|7|1.3|3,ai:0|8|1.6|1,ltp:1.5,ap:1.45,ltt:1397650179,"
        "lut:1397650179,pc:0.5",
    ),
    1504: ("t:1_NIFTY 50,ltp:22386,c:22519.4", "t:1_26000,ltp:22386,pc:-0.59,yh:22775.7,yl:17312.75"),
    1505: ("t:11_500188,o:258,h:258,l:258,c:258,bt:1548408248,bv:100,pv:25800",),
    1510: ("t:2_43423,o:3721575",),
    1512: ("t:1_2885,ltp:2571.75,ltq:3,lut:1317813249,bt:1,mt:1",),
    1105: ("t:12_1140025,110:2067.75,111:516.95",),
}


def _sio_frames() -> list[str]:
    """Socket.IO frames as the XTS server sends them (Appendix A), with the section 4 payloads."""
    frames = [
        '0{"sid":"AbCdEfGhIjKlMnOpQrSt","upgrades":[],"pingInterval":25000,"pingTimeout":60000}',
        "40",
        '42["joined",{"type":"success","code":"s-socket-0001",'
        '"description":"Socket joined successfully! SocketId=AbCdEfGhIjKlMnOpQrSt"}]',
        "2",
        "3",
        "2probe",
        "1",
        "5",
        "6",
        "41",
        '44{"message":"Invalid namespace"}',
        "44not json",
        '42/md,7["1501-json-partial","t:1_2885,ltp:1"]',
        '43["ack"]',
        '451-["xts-binary-packet",{"_placeholder":true,"num":0}]',
    ]
    for code, samples in FULL_SAMPLES.items():
        frames += (encode_event(event_name(code), sample) for sample in samples)
    for code, samples in PARTIAL_SAMPLES.items():
        frames += (encode_event(event_name(code, True), sample) for sample in samples)
    return frames


def _event_seeds() -> list[bytes]:
    seeds: list[bytes] = []
    for partial, table in ((False, FULL_SAMPLES), (True, PARTIAL_SAMPLES)):
        for code, samples in table.items():
            index = XTS_EVENTS.index(event_name(code, partial))
            for sample in samples:
                seeds += (bytes([index, form]) + sample.encode() for form in (0, 5, 6))
    return seeds


def _code_seeds(table: dict[int, tuple[str, ...]]) -> list[bytes]:
    return [
        bytes([XTS_CODES.index(code), form]) + sample.encode()
        for code, samples in table.items()
        for sample in samples
        for form in (0, 5, 6)
    ]


def _list_seeds() -> list[bytes]:
    return [
        bytes([XTS_CODES.index(code), form]) + LIST_SEPARATOR.join(s.encode() for s in samples * 3)
        for code, samples in FULL_SAMPLES.items()
        for form in (0, 6)
    ]


MASTER_ROWS: Final = (
    "NSECM|2885|8|RELIANCE|RELIANCE-EQ|EQ|RELIANCE-EQ|1100100002885|1500.5|1228.1|100000.0|0.05|1|1|"
    "RELIANCE|INE002A01018|1|1|RELIANCE-EQ|0|0|0",
    "BSECM|500325|8|RELIANCE|RELIANCE|A|RELIANCE-A|1100300500325|1500|1200|50000|0.05|1|1|RELIANCE|"
    "INE002A01018|1|1|RELIANCE-A|0|0|0",
    "NSEFO|35013|1|NIFTY|NIFTY26DECFUT|FUTIDX|NIFTY-FUTIDX|2003500035013|26000|21000|1800|0.1|75|1|-1|"
    "Nifty 50|2026-12-29T14:30:00|NIFTY 29DEC2026|1|1|NIFTY26DECFUT",
    "NSEFO|96594|2|HCLTECH|HCLTECH26FEB1160PE|OPTSTK|HCLTECH-OPTSTK|2605500096594|20.05|0.05|14001|0.05|350|1|"
    "1100100007229|HCLTECH|2026-02-24T14:30:00|1160|4|HCLTECH 24FEB2026 PE 1160|1|1|HCLTECH26FEB1160PE",
    "MCXFO|429116|1|CRUDEOIL|CRUDEOIL26JANFUT|FUTCOM|CRUDEOIL-FUTCOM|5100100429116|6500|5000|10000|1|100|1|"
    "-1||2026-01-19T23:30:00|CRUDEOIL 19JAN2026|1|1|CRUDEOIL26JANFUT",
)


def _master_seeds() -> list[bytes]:
    return [row.encode() for row in MASTER_ROWS] + [
        "\n".join(MASTER_ROWS).encode(),
        "\r\n".join(MASTER_ROWS[:3]).encode() + b"\r\n\n",
    ]


def _extra_full_seeds() -> list[bytes]:
    """Events the encoder writes (the 1105 full form, a 1502 with a flat touchline)."""
    when = datetime(2024, 4, 15, 12, 9, 39, tzinfo=IST)
    events: list[Event] = [
        InstrumentPropertyChange(Broker.XTS, 1140025, 12, {"HighExecBand": "2067.75", "Name": "X"}, T),
        Candle(Broker.XTS, 500188, 11, when, 258.0, 258.5, 257.0, 258.0, 100, 5, T),
        OpenInterest(Broker.XTS, 43423, 2, 3721575, when, T),
        MarketStatus(Broker.XTS, 1, "NORMAL MARKET OPEN", 2, when, T, 1),
    ]
    texts = [encode_full(e) for e in events]
    return [
        bytes([XTS_EVENTS.index(event_name(code)), 0]) + text.encode()
        for code, text in zip((1105, 1505, 1510, 1507), texts, strict=True)
    ]


TARGETS: Final[dict[str, Target]] = {
    t.name: t
    for t in (
        Target(
            "kite_frame",
            _kite_frame_prepare,
            _kite_frame_call,
            _kite_frame_validate,
            _kite_frame_error,
            tuple(_kite_seed_frames()),
        ),
        Target(
            "kite_text",
            _text_prepare,
            _kite_frame_call,
            _kite_text_validate,
            _kite_text_error,
            tuple(_kite_seed_texts()),
        ),
        Target(
            "kite_control",
            _kite_control_prepare,
            decode_control,
            _kite_control_validate,
            _kite_control_error,
            tuple(_kite_seed_controls()),
        ),
        Target(
            "xts_packet",
            _text_prepare,
            parse_packet,
            _packet_validate,
            _packet_error,
            tuple(f.encode() for f in _sio_frames()),
        ),
        Target(
            "xts_pipeline",
            _text_prepare,
            _pipeline_call,
            _xts_list_validate,
            _xts_error,
            tuple(f.encode() for f in _sio_frames()),
        ),
        Target(
            "xts_event",
            _event_prepare,
            _event_call,
            _xts_list_validate,
            _xts_error,
            tuple(_event_seeds() + _extra_full_seeds()),
        ),
        Target(
            "xts_full",
            _code_prepare,
            _full_call,
            _xts_list_validate,
            _xts_error,
            tuple(_code_seeds(FULL_SAMPLES)),
        ),
        Target(
            "xts_partial",
            _code_prepare,
            _partial_call,
            _xts_list_validate,
            _xts_error,
            tuple(_code_seeds(PARTIAL_SAMPLES)),
        ),
        Target(
            "xts_list_quotes",
            _list_prepare,
            _list_call,
            _list_validate,
            _list_error,
            tuple(_list_seeds()),
            per_item=5e-6,  # a batch of messages: 5 µs more per entry (64 KiB holds 32k empty entries)
        ),
        Target(
            "xts_master",
            _text_prepare,
            _master_call,
            _master_validate,
            _master_error,
            tuple(_master_seeds()),
        ),
    )
}
if DECODE_MESSAGE is not None:
    TARGETS["xts_message"] = Target(
        "xts_message",
        _text_prepare,
        _message_call,
        _message_validate,
        _message_error,
        tuple(f.encode() for f in _sio_frames()),
    )


# ---------------------------------------------------------------------------------------------------------
# The check.


def check(target: Target, data: bytes, *, timed: bool = True) -> str:
    """Run `target` on `data` and enforce the contract (see the module docstring); raises FuzzFailure.

    Returns the outcome, ``"decoded"`` or ``"DecodeError"`` (for statistics).
    """
    args = target.prepare(data)
    for attempt in (1, 2):
        try:
            start = time.perf_counter()
            try:
                result = target.call(*args)
            except DecodeError as exc:
                elapsed = time.perf_counter() - start
                target.validate_error(exc, args)
                outcome = "DecodeError"
            else:
                elapsed = time.perf_counter() - start
                target.validate(result, args)
                outcome = "decoded"
        except FuzzFailure as exc:
            raise FuzzFailure(f"{target.name}: {exc} on input {show(args)}") from exc
        except Exception as exc:
            raise FuzzFailure(
                f"{target.name} raised {type(exc).__name__}: {exc} on input {show(args)}"
            ) from exc
        budget = target.budget(args)
        if not timed or elapsed <= budget:
            return outcome
        if attempt == 2:
            raise FuzzFailure(
                f"{target.name} took {elapsed * 1000:.1f} ms (twice), over {budget * 1000:.0f} ms, "
                f"on input {show(args)}"
            )
    raise AssertionError("not reached")


def clear_caches() -> None:
    """Empty the decoders' bounded timestamp caches (for memory measurements)."""
    kite_codec._codec._TIME_CACHE.clear()
    xts_codec._codec._NSE_TIMES.clear()
    xts_codec._codec._OTHER_TIMES.clear()


# ---------------------------------------------------------------------------------------------------------
# Mutation.

TOKENS: Final[tuple[bytes, ...]] = (
    b"[",
    b"]",
    b"{",
    b"}",
    b'"',
    b",",
    b":",
    b"|",
    b"_",
    b"\\",
    b"-",
    b".",
    b"e",
    b"0",
    b" ",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"nan",
    b"inf",
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"-0",
    b"null",
    b"true",
    b"false",
    b"[]",
    b"{}",
    b'""',
    b"\\ud800",
    b"\\udc00",
    b"\\u0000",
    b'"\\ud800"',
    b"\xed\xa0\x80",  # an encoded lone surrogate (invalid UTF-8; \ud800 after surrogatepass)
    b"\xed\xb0\x80",
    b"\xff",
    b"\xc0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe2\x82",
    b"\x00",
    b"\r\n",
    b"\n",
    b"9223372036854775807",
    b"9223372036854775808",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"4294967296",
    b"99999999999999999999",
    b"1.5",
    b"2e9",
    b"1e18",
    b"1E+308",
    b"0x10",
    b"1_000",
    b"\xd9\xa1",  # ARABIC-INDIC DIGIT ONE (int() accepts it)
    b"t:",
    b"t:1_1,",
    b"ltp:",
    b"bi:",
    b"0|0|0|0",
    b"|||",
    b"42",
    b'42["',
    b'42["a",',
    b"/ns,",
    b"45",
    b"NSECM",
    b"NSEFO",
    b"-1",
    b"CE",
    b"T14:30:00",
    b"9999-12-31",
    b"0000-00-00",
    b'"ExchangeSegment":',
    b'"ExchangeInstrumentID":',
    b'"LastTradedPrice":',
    b'"Touchline":',
    b'"Bids":',
    b'"BarTime":',
    b'"ExchangeTimeStamp":',
    b'"LastUpdateTime":',
    b'"a":"mode","v":',
)
NESTERS: Final[tuple[bytes, ...]] = (b"[", b'{"a":', b'{"Touchline":', b"[[", b'["', b"{")
NUMBER_FORMS: Final = 6
OP_KINDS: Final = 11


def _number(digits: int, form: int) -> bytes:
    body = b"9" * digits
    return (
        body,
        b"-" + body,
        b"0." + body,
        body + b".5",
        b"1e" + body[:8],
        b"1" + b"0" * digits,
    )[form % NUMBER_FORMS]


def apply_ops(seed: bytes, ops: Sequence[tuple[int, int, int, int]]) -> bytes:
    """Mutate `seed` by each ``(kind, a, b, c)`` op in turn (see `OP_KINDS`); the result is capped at
    `MAX_INPUT` bytes. Positions are taken modulo the current length, so any integers are valid ops."""
    buf = bytearray(seed)
    for kind, a, b, c in ops:
        n = len(buf)
        pos = a % (n + 1)
        k = kind % OP_KINDS
        if k == 0 and n:  # flip one bit
            buf[pos % n] ^= 1 << (b % 8)
        elif k == 1 and n:  # set one byte
            buf[pos % n] = b % 256
        elif k == 2:  # insert a token
            buf[pos:pos] = TOKENS[b % len(TOKENS)]
        elif k == 3:  # delete a run
            del buf[pos : pos + 1 + b % 64]
        elif k == 4:  # truncate
            del buf[pos:]
        elif k == 5:  # duplicate a slice, up to thousands of times
            chunk = bytes(buf[pos : pos + 1 + b % 256])
            times = 1 + c % 4096
            buf[pos:pos] = chunk * min(times, (MAX_INPUT - n) // max(len(chunk), 1))
        elif k == 6:  # nest deeply
            opener = NESTERS[c % len(NESTERS)]
            depth = min(1 + b, (MAX_INPUT - n) // len(opener))
            buf[pos:pos] = opener * depth
        elif k == 7:  # a huge (or long) number
            buf[pos:pos] = _number(1 + b % 20000, c)[: max(MAX_INPUT - n, 0)]
        elif k == 8:  # overwrite a big-endian uint16 (Kite counts and lengths)
            value = (0, 1, 0xFFFF, b % 0x10000, (b % 0x10000) ^ 1, 184, 44, 8, 28, 32)[c % 10]
            buf[pos : pos + 2] = struct.pack(">H", value)
        elif k == 9 and n:  # swap two bytes
            i, j = pos % n, b % n
            buf[i], buf[j] = buf[j], buf[i]
        elif k == 10:  # overwrite with a token
            token = TOKENS[b % len(TOKENS)]
            buf[pos : pos + len(token)] = token
        if len(buf) > MAX_INPUT:
            del buf[MAX_INPUT:]
    return bytes(buf)


def random_ops(rng: random.Random, most: int = 6) -> list[tuple[int, int, int, int]]:
    """A random op list for `apply_ops` (small numbers are likelier, as in hypothesis)."""

    def number() -> int:
        return rng.choice((rng.randrange(256), rng.randrange(1 << 12), rng.randrange(1 << 17)))

    return [(rng.randrange(OP_KINDS), number(), number(), number()) for _ in range(rng.randint(0, most))]


def random_input(target: Target, rng: random.Random) -> bytes:
    """A random mutation of a random seed, or (1 time in 8) random bytes."""
    if rng.randrange(8) == 0:
        return rng.randbytes(rng.randrange(512))
    return apply_ops(rng.choice(target.seeds), random_ops(rng))
