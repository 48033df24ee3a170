"""XTS market-data message decoders and normalizers (trading_ws.brokers.xts._codec)."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import attrs
import pytest
from hypothesis import given, settings, strategies as st

from trading_ws import IST, Broker, DecodeError, Depth, DepthLevel, Mode, Ohlc, Tick
from trading_ws._model import Candle, InstrumentPropertyChange, MarketStatus, OpenInterest
from trading_ws.brokers.xts import (
    CODE_TO_MODE,
    MODE_TO_CODE,
    EioPong,
    OpenPacket,
    PartialLevel,
    PartialMessage,
    SioConnect,
    SioEvent,
    Unknown,
    datetime_to_xts,
    decode_event,
    decode_full,
    decode_list_quotes,
    decode_partial,
    encode_event,
    encode_full,
    encode_partial,
    event_name,
    is_index,
    parse_packet,
    parse_partial,
    subscription_body,
    xts_to_datetime,
)
from trading_ws.brokers.xts._codec import decode_message

NOW = 1_700_000_000.5

# ---------------------------------------------------------------------------------------------------------
# Samples from the protocol reference, verbatim (line breaks as in the reference, hence a few long lines).

NIFTY_1501 = """{"MessageCode":1501,"MessageVersion":4,"ApplicationType":0,"TokenID":0,"ExchangeSegment":1,
 "ExchangeInstrumentID":26000,"ExchangeTimeStamp":1397650179,
 "Touchline":{"BidInfo":{"Size":0,"Price":0,"TotalOrders":0,"BuyBackMarketMaker":0},
   "AskInfo":{"Size":0,"Price":0,"TotalOrders":0,"BuyBackMarketMaker":0},
   "LastTradedPrice":22386,"LastTradedQunatity":0,"TotalBuyQuantity":0,"TotalSellQuantity":0,
   "TotalTradedQuantity":0,"AverageTradedPrice":22386,"LastTradedTime":1397650179,
   "LastUpdateTime":1397650179,"PercentChange":-0.59,"Open":22339.05,"High":22427.45,
   "Low":22263.55,"Close":22519.4,"TotalValueTraded":null,"BuyBackTotalBuy":0,"BuyBackTotalSell":0},
 "BookType":1,"XMarketType":1,"SequenceNumber":1353296204670191}"""

CANDLE_1505 = """{"MessageCode":1505,"MessageVersion":1,"ApplicationType":142,"TokenID":0,"ExchangeSegment":11,
 "ExchangeInstrumentID":500188,"BarTime":1548408248,"BarVolume":100,"Open":258,"High":258,"Low":258,
 "Close":258,"OpenInterest":0,"SumOfQtyInToPrice":25800}"""  # noqa: E501

STATUS_1507 = """{"ApplicationType":0,"ExchangeInstrumentID":0,"ExchangeSegment":1,"ExchangeTimeStamp":1295773200,
 "maketType":1,"message":"THE NORMAL MARKET HAS PREOPENED FOR 22 JAN 2021","MessageCode":1507,
 "MessageVersion":4,"SequenceNumber":424567064044868,"TokenID":0,"tradingSession":1}"""  # noqa: E501

OI_1510 = """{"MessageCode":1510,"MessageVersion":4,"ApplicationType":0,"TokenID":0,"ExchangeSegment":2,
 "ExchangeInstrumentID":43423,"ExchangeTimeStamp":1296226865,"XTSMarketType":1,
 "OpenInterest":3721575,"SequenceNumber":338944086942101}"""

LTP_1512 = """{"MessageCode":1512,"MessageVersion":4,"ApplicationType":0,"TokenID":0,"ExchangeSegment":1,
 "ExchangeInstrumentID":2885,"BookType":1,"XMarketType":1,"LastTradedPrice":2571.75,
 "LastTradedQunatity":3,"LastUpdateTime":1317813249}"""

AUTOTRADE_PARTIAL = (
    "t:2_59175,bi:0|90|59991.6|2,ai:0|60|60023|1,ltp:60010,ltq:30,tb:7980,ts:7830,v:12810,"
    "o:60306,h:60306,l:59966.2,c:60332.8"
)
APPENDIX_PARTIAL = "t:1_2885,ltp:1272.2,ltq:5,v:123456"
DOC_DEPTH_PARTIAL = "t:1_2885,ai:0|1428|1567.95|10,bi:0|0|0|0|1"
PROPERTY_PARTIAL = "t:12_1140025,110:2067.75,111:516.95"


def _book(size: int, price: float, orders: int) -> dict[str, Any]:
    return {"Size": size, "Price": price, "TotalOrders": orders, "BuyBackMarketMaker": 0}


# The LINGESH 1502 snapshot (NIFTY option 43422, segment 2), completed to five rows a side.
DEPTH_1502: dict[str, Any] = {
    "MessageCode": 1502,
    "MessageVersion": 4,
    "ApplicationType": 0,
    "TokenID": 0,
    "ExchangeSegment": 2,
    "ExchangeInstrumentID": 43422,
    "ExchangeTimeStamp": 1296226865,
    "Bids": [
        _book(75, 54.35, 1),
        _book(150, 54.3, 2),
        _book(75, 54.25, 1),
        _book(300, 54.2, 3),
        _book(75, 54.1, 1),
    ],
    "Asks": [
        _book(75, 54.55, 1),
        _book(225, 54.6, 2),
        _book(75, 54.65, 1),
        _book(150, 54.7, 1),
        _book(75, 54.8, 1),
    ],
    "Touchline": {
        "BidInfo": _book(75, 54.35, 1),
        "AskInfo": _book(75, 54.55, 1),
        "LastTradedPrice": 54.35,
        "LastTradedQunatity": 75,
        "TotalBuyQuantity": 250000,
        "TotalSellQuantity": 310000,
        "TotalTradedQuantity": 34562775,
        "AverageTradedPrice": 120.5,
        "LastTradedTime": 1296226860,
        "LastUpdateTime": 1296226865,
        "PercentChange": -80.68,
        "Open": 250,
        "High": 290.1,
        "Low": 50.05,
        "Close": 281.35,
        "TotalValueTraded": None,
        "BuyBackTotalBuy": 0,
        "BuyBackTotalSell": 0,
    },
    "BookType": 1,
    "XMarketType": 1,
    "SequenceNumber": 338944086942100,
}


def ist(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=IST)


def only(events: list[Any]) -> Any:
    assert len(events) == 1
    return events[0]


# ---------------------------------------------------------------------------------------------------------
# Full form, the reference's samples.


def test_nifty_1501_nested_sample() -> None:
    tick = only(decode_event("1501-json-full", NIFTY_1501, NOW))
    assert isinstance(tick, Tick)
    assert tick.broker is Broker.XTS
    assert tick.instrument_token == 26000
    assert tick.segment == 1
    assert tick.mode is Mode.QUOTE
    assert tick.tradable is False  # NIFTY 50 is a well-known index id
    assert tick.last_price == 22386
    assert isinstance(tick.last_price, float)
    assert tick.last_quantity == 0
    assert tick.average_price == 22386.0
    assert tick.volume == 0
    assert tick.total_buy_quantity == 0
    assert tick.total_sell_quantity == 0
    assert tick.ohlc == Ohlc(22339.05, 22427.45, 22263.55, 22519.4)
    assert tick.change == -0.59
    assert tick.exchange_time == ist(2024, 4, 15, 12, 9, 39)
    assert tick.exchange_time.tzinfo is IST
    assert tick.last_trade_time == ist(2024, 4, 15, 12, 9, 39)
    assert tick.depth == Depth([DepthLevel(0.0, 0, 0)], [DepthLevel(0.0, 0, 0)])
    assert (tick.oi, tick.oi_day_high, tick.oi_day_low) == (None, None, None)
    assert tick.received_at == NOW
    assert tick.symbol is None


def test_1501_flat_form_equals_nested() -> None:
    nested = json.loads(NIFTY_1501)
    flat = {k: v for k, v in nested.items() if k != "Touchline"} | nested["Touchline"]
    assert only(decode_event("1501-json-full", json.dumps(flat), NOW)) == only(
        decode_event("1501-json-full", NIFTY_1501, NOW)
    )


def test_1501_both_spellings_of_last_traded_quantity() -> None:
    message = json.loads(NIFTY_1501)
    del message["Touchline"]["LastTradedQunatity"]
    message["Touchline"]["LastTradedQuantity"] = 42
    assert only(decode_full(1501, json.dumps(message), NOW)).last_quantity == 42
    message["Touchline"]["LastTradedQunatity"] = 7  # both present: the wire's spelling wins
    assert only(decode_full(1501, json.dumps(message), NOW)).last_quantity == 7


def test_1501_string_instrument_id_and_ints_for_floats_and_key_order() -> None:
    text = (
        '{"Touchline":{"Close":100,"LastTradedPrice":101,"Open":99,"High":102,"Low":98,'
        '"LastTradedQunatity":"5","AverageTradedPrice":100},'
        '"ExchangeInstrumentID":"2885","ExchangeSegment":1,"MessageCode":1501}'
    )
    tick = only(decode_event("1501-json-full", text, NOW))
    assert tick.instrument_token == 2885
    assert tick.tradable is True
    assert tick.last_price == 101.0
    assert isinstance(tick.ohlc.open, float)
    assert tick.last_quantity == 5
    assert tick.change == pytest.approx(1.0)  # computed: no PercentChange sent
    assert tick.exchange_time is None
    assert tick.depth is None  # no BidInfo/AskInfo


def test_1501_change_is_zero_when_close_is_zero() -> None:
    text = (
        '{"ExchangeSegment":1,"ExchangeInstrumentID":1,"LastTradedPrice":5,'
        '"Open":1,"High":1,"Low":1,"Close":0}'
    )
    assert only(decode_full(1501, text, NOW)).change == 0.0


def test_1501_from_dict_and_bytes() -> None:
    expected = only(decode_event("1501-json-full", NIFTY_1501, NOW))
    assert only(decode_event("1501-json-full", json.loads(NIFTY_1501), NOW)) == expected
    assert only(decode_event("1501-json-full", NIFTY_1501.encode(), NOW)) == expected


@pytest.mark.parametrize("code", [1501, 1502])
def test_touchline_errors_show_the_data_as_given(code: int) -> None:
    message = {"ExchangeSegment": 1, "ExchangeInstrumentID": 2885, "Touchline": {"Open": 1.0}}
    text = json.dumps(message)
    for data, raw in ((text, text), (message, json.dumps(message, separators=(",", ":")))):
        with pytest.raises(DecodeError, match=f"malformed XTS {code} message: missing") as info:
            decode_full(code, data, NOW)
        assert info.value.raw == raw


def test_both_time_bases_are_the_shared_time_cache() -> None:
    from trading_ws.brokers._timecache import TimeCache
    from trading_ws.brokers.kite import _codec as kite_codec
    from trading_ws.brokers.xts import _codec

    caches = [_codec._NSE_TIMES, _codec._OTHER_TIMES, kite_codec._TIME_CACHE]
    assert all(type(cache) is TimeCache for cache in caches)
    assert (_codec._NSE_TIMES.offset, _codec._OTHER_TIMES.offset) == (315532800 - 19800, -19800)
    assert xts_to_datetime(1, 1) == datetime(1980, 1, 1, 0, 0, 1, tzinfo=IST)
    assert xts_to_datetime(1, 11) == datetime(1970, 1, 1, 0, 0, 1, tzinfo=IST)


def test_1502_depth_sample() -> None:
    tick = only(decode_event("1502-json-full", json.dumps(DEPTH_1502), NOW))
    assert tick.mode is Mode.FULL
    assert tick.instrument_token == 43422
    assert tick.segment == 2
    assert tick.tradable is True
    assert tick.last_price == 54.35
    assert tick.last_quantity == 75
    assert tick.volume == 34562775
    assert tick.ohlc.close == 281.35
    assert tick.change == -80.68
    assert tick.exchange_time == ist(2021, 1, 27, 15, 1, 5)
    assert tick.last_trade_time == ist(2021, 1, 27, 15, 1, 0)
    assert len(tick.depth.bids) == 5
    assert len(tick.depth.asks) == 5
    assert tick.depth.bids[0] == DepthLevel(54.35, 75, 1)
    assert tick.depth.asks[0] == DepthLevel(54.55, 75, 1)
    assert tick.depth.bids[3] == DepthLevel(54.2, 300, 3)
    assert tick.depth == Depth(
        [DepthLevel(r["Price"], r["Size"], r["TotalOrders"]) for r in DEPTH_1502["Bids"]],
        [DepthLevel(r["Price"], r["Size"], r["TotalOrders"]) for r in DEPTH_1502["Asks"]],
    )
    assert repr(tick.depth).startswith("Depth(bids=[DepthLevel(price=54.35")


def test_1502_without_rows_has_no_depth() -> None:
    message = {k: v for k, v in DEPTH_1502.items() if k not in ("Bids", "Asks")}
    assert only(decode_full(1502, json.dumps(message), NOW)).depth is None


def test_1512_sample() -> None:
    tick = only(decode_event("1512-json-full", LTP_1512, NOW))
    assert tick == Tick(
        Broker.XTS,
        2885,
        Mode.LTP,
        True,
        2571.75,
        last_quantity=3,
        exchange_time=ist(2021, 10, 4, 11, 14, 9),
        received_at=NOW,
        segment=1,
    )


def test_1505_candle_sample() -> None:
    candle = only(decode_event("1505-json-full", CANDLE_1505, NOW))
    assert candle == Candle(
        Broker.XTS, 500188, 11, ist(2019, 1, 25, 9, 24, 8), 258.0, 258.0, 258.0, 258.0, 100, 0, NOW
    )
    assert candle.bar_time.tzinfo is IST


def test_1507_market_status_sample() -> None:
    status = only(decode_event("1507-json-full", STATUS_1507, NOW))
    assert status == MarketStatus(
        Broker.XTS, 1, "THE NORMAL MARKET HAS PREOPENED FOR 22 JAN 2021", 1, ist(2021, 1, 22, 9, 0, 0), NOW, 1
    )


def test_1507_other_spellings() -> None:
    text = '{"ExchangeSegment":11,"Message":"CLOSED","TradingSession":4,"MarketType":2,"ExchangeTimeStamp":0}'
    status = only(decode_full(1507, text, NOW))
    assert (status.message, status.trading_session, status.market_type) == ("CLOSED", 4, 2)
    assert status.exchange_time is None  # 0 -> None


def test_1510_open_interest_sample() -> None:
    oi = only(decode_event("1510-json-full", OI_1510, NOW))
    assert oi == OpenInterest(Broker.XTS, 43423, 2, 3721575, ist(2021, 1, 27, 15, 1, 5), NOW)


def test_1504_index_full() -> None:
    text = json.dumps(
        {
            "MessageCode": 1504,
            "ExchangeSegment": 1,
            "ExchangeInstrumentID": 26000,
            "ExchangeTimeStamp": 1397650179,
            "IndexName": "NIFTY 50",
            "IndexValue": 22386,
            "OpeningIndex": 22339.05,
            "HighIndexValue": 22427.45,
            "LowIndexValue": 22263.55,
            "ClosingIndex": 22519.4,
            "PercentChange": -0.59,
            "YearlyHigh": 22775.7,
        }
    )
    tick = only(decode_event("1504-json-full", text, NOW))
    assert tick == Tick(
        Broker.XTS,
        26000,
        Mode.QUOTE,
        False,
        22386.0,
        ohlc=Ohlc(22339.05, 22427.45, 22263.55, 22519.4),
        change=-0.59,
        exchange_time=ist(2024, 4, 15, 12, 9, 39),
        received_at=NOW,
        segment=1,
    )


def test_1105_full_form_keeps_properties_by_name() -> None:
    text = (
        '{"MessageCode":1105,"ExchangeSegment":12,"ExchangeInstrumentID":"1140025","SequenceNumber":9,'
        '"110":2067.75,"111":"516.95","Remark":"x","200":true}'
    )
    change = only(decode_event("1105-json-full", text, NOW))
    assert change == InstrumentPropertyChange(
        Broker.XTS,
        1140025,
        12,
        {"HighExecBand": "2067.75", "LowExecBand": "516.95", "Remark": "x", "200": "true"},
        NOW,
    )


def test_other_segments_use_the_1970_base() -> None:
    text = '{"ExchangeSegment":51,"ExchangeInstrumentID":7,"LastTradedPrice":1,"LastUpdateTime":1700000000}'
    tick = only(decode_full(1512, text, NOW))
    assert tick.exchange_time == datetime.fromtimestamp(1700000000 - 19800, IST)
    assert xts_to_datetime(1295773200, 1) == ist(2021, 1, 22, 9, 0, 0)
    assert xts_to_datetime(0, 1) is None
    assert xts_to_datetime(None, 11) is None
    assert datetime_to_xts(ist(2021, 1, 22, 9, 0, 0), 1) == 1295773200
    assert datetime_to_xts(None, 1) == 0


def test_received_at_defaults_to_now() -> None:
    import time

    before = time.time()
    tick = only(decode_event("1512-json-full", LTP_1512))
    assert before <= tick.received_at <= time.time()


# ---------------------------------------------------------------------------------------------------------
# Partial form.


def test_parse_partial_autotrade_capture() -> None:
    message = parse_partial(AUTOTRADE_PARTIAL)
    assert message == PartialMessage(
        2,
        59175,
        None,
        ltp=60010.0,
        ltq=30,
        tb=7980,
        ts=7830,
        v=12810,
        o=60306.0,
        h=60306.0,
        l=59966.2,
        c=60332.8,
        bi=(PartialLevel(0, 90, 59991.6, 2),),
        ai=(PartialLevel(0, 60, 60023.0, 1),),
    )
    assert message.ap is None
    assert message.ltt is None
    assert message.extra == {}


def test_partial_autotrade_capture_as_depth_tick() -> None:
    tick = only(decode_event("1502-json-partial", AUTOTRADE_PARTIAL, NOW))
    assert tick == Tick(
        Broker.XTS,
        59175,
        Mode.FULL,
        True,
        60010.0,
        last_quantity=30,
        volume=12810,
        total_buy_quantity=7980,
        total_sell_quantity=7830,
        ohlc=Ohlc(60306.0, 60306.0, 59966.2, 60332.8),
        change=(60010.0 - 60332.8) * 100 / 60332.8,
        depth=Depth([DepthLevel(59991.6, 90, 2)], [DepthLevel(60023.0, 60, 1)]),
        received_at=NOW,
        segment=2,
    )
    quote = only(decode_event("1501-json-partial", AUTOTRADE_PARTIAL, NOW))
    assert quote.mode is Mode.QUOTE
    assert quote.depth == tick.depth


def test_partial_appendix_line_missing_keys_are_none() -> None:
    tick = only(decode_event("1501-json-partial", APPENDIX_PARTIAL, NOW))
    assert (tick.instrument_token, tick.segment, tick.last_price, tick.last_quantity, tick.volume) == (
        2885,
        1,
        1272.2,
        5,
        123456,
    )
    assert tick.ohlc is None
    assert tick.change is None
    assert tick.depth is None
    assert tick.average_price is None
    assert tick.exchange_time is None


def test_partial_doc_depth_sample_with_odd_trailing_field() -> None:
    message = parse_partial(DOC_DEPTH_PARTIAL)
    assert message.ai == (PartialLevel(1428 - 1428, 1428, 1567.95, 10),)
    assert message.bi == (PartialLevel(0, 0, 0.0, 0),)  # the trailing "|1" is ignored
    tick = only(decode_event("1502-json-partial", DOC_DEPTH_PARTIAL, NOW))
    assert math.isnan(tick.last_price)  # no ltp in this message
    assert tick.depth == Depth([DepthLevel(0.0, 0, 0)], [DepthLevel(1567.95, 1428, 10)])


def test_partial_multi_level_groups_and_times() -> None:
    text = "t:1_22,bi:0|10|99.5|1|1|20|99.4|2,ltp:100,lut:1397650179,ltt:1397650170,pc:1.5,o:98"
    tick = only(decode_event("1502-json-partial", text, NOW))
    assert tick.depth.bids == [DepthLevel(99.5, 10, 1), DepthLevel(99.4, 20, 2)]
    assert tick.depth.asks == []
    assert tick.exchange_time == ist(2024, 4, 15, 12, 9, 39)
    assert tick.last_trade_time == ist(2024, 4, 15, 12, 9, 30)
    assert tick.change == 1.5
    assert tick.ohlc.open == 98.0
    assert math.isnan(tick.ohlc.close)


def test_partial_ltp_candle_oi_and_properties() -> None:
    assert only(decode_event("1512-json-partial", "t:1_2885,ltp:2571.75,ltq:3,lut:1317813249", NOW)) == only(
        decode_event("1512-json-full", LTP_1512, NOW)
    )
    candle = only(
        decode_event(
            "1505-json-partial", "t:11_500188,o:258,h:258,l:258,c:258,bt:1548408248,bv:100,pv:25800", NOW
        )
    )
    assert candle == Candle(
        Broker.XTS, 500188, 11, ist(2019, 1, 25, 9, 24, 8), 258.0, 258.0, 258.0, 258.0, 100, None, NOW
    )
    oi = only(decode_event("1510-json-partial", "t:2_43423,o:3721575", NOW))
    assert oi == OpenInterest(Broker.XTS, 43423, 2, 3721575, None, NOW)
    change = only(decode_event("1105-json-partial", PROPERTY_PARTIAL, NOW))
    assert change == InstrumentPropertyChange(
        Broker.XTS, 1140025, 12, {"HighExecBand": "2067.75", "LowExecBand": "516.95"}, NOW
    )
    assert only(decode_event("1105-json-partial", "t:1_5,999:x:y,13:RELIANCE", NOW)).properties == {
        "999": "x:y",
        "Name": "RELIANCE",
    }


def test_partial_index_by_name_and_by_id() -> None:
    assert decode_event("1504-json-partial", "t:1_NIFTY 50,ltp:22386,c:22519.4", NOW) == []
    assert parse_partial("t:1_NIFTY 50,ltp:22386").index_name == "NIFTY 50"
    tick = only(decode_event("1504-json-partial", "t:1_26000,ltp:22386,pc:-0.59", NOW))
    assert (tick.tradable, tick.last_price, tick.change, tick.mode) == (False, 22386.0, -0.59, Mode.QUOTE)


def test_partial_tolerates_order_empty_values_and_unknown_keys() -> None:
    message = parse_partial("ltp:10,t:1_5,ap:,zz:1,,ltq:2.0")
    assert (message.segment, message.instrument_id, message.ltp, message.ap, message.ltq) == (
        1,
        5,
        10.0,
        None,
        2,
    )
    assert message.extra == {"zz": "1"}
    assert only(decode_partial(1501, b"t:1_5,ltp:10", NOW)).last_price == 10.0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ltp:10",
        "t:15,ltp:1",
        "t:x_5",
        "t:1_",
        "t:1_5,ltp:abc",
        "t:1_5,ltq:1.5",
        "t:1_5,garbage",
        "t:1_5,bi:a|b|c|d",
    ],
)
def test_malformed_partial_raises(text: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_event("1501-json-partial", text, NOW)
    assert info.value.raw == text


def test_partial_oi_and_candle_need_their_keys() -> None:
    with pytest.raises(DecodeError, match="without o"):
        decode_event("1510-json-partial", "t:2_1,h:3", NOW)
    with pytest.raises(DecodeError, match="without bt"):
        decode_event("1505-json-partial", "t:2_1,o:3", NOW)


# ---------------------------------------------------------------------------------------------------------
# Errors, unknown events, snapshots, subscriptions.


def test_unknown_event_names_decode_to_nothing() -> None:
    for name in (
        "joined",
        "5018-json-full",
        "1507-json-partial",
        "1501-binary-full",
        "xts-binary-packet",
        "",
    ):
        assert decode_event(name, "whatever", NOW) == []
    assert decode_full(9999, "{}", NOW) == []
    assert decode_partial(1507, "t:1_1", NOW) == []


@pytest.mark.parametrize(
    ("code", "data"),
    [
        (1501, "{"),
        (1501, "[]"),
        (1501, "null"),
        (1501, '{"ExchangeSegment":1,"ExchangeInstrumentID":1}'),  # no LastTradedPrice
        (1501, '{"ExchangeSegment":1,"LastTradedPrice":1}'),  # no instrument
        (1501, '{"ExchangeSegment":1,"ExchangeInstrumentID":"abc","LastTradedPrice":1}'),
        (1501, '{"ExchangeSegment":1,"ExchangeInstrumentID":1,"LastTradedPrice":"x"}'),
        (
            1501,
            '{"ExchangeSegment":1,"ExchangeInstrumentID":1,"LastTradedPrice":1,"LastUpdateTime":99999999999999999}',
        ),
        (1502, '{"ExchangeSegment":1,"ExchangeInstrumentID":1,"LastTradedPrice":1,"Bids":{}}'),
        (1505, '{"ExchangeSegment":11,"ExchangeInstrumentID":1}'),
        (1510, '{"ExchangeSegment":2,"ExchangeInstrumentID":1}'),
        (1512, '{"ExchangeInstrumentID":1,"LastTradedPrice":1}'),
        (1105, '{"ExchangeSegment":1}'),
        (1105, "[1]"),
        (1507, '{"message":5}'),
    ],
)
def test_malformed_full_raises_decode_error_with_raw(code: int, data: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_event(event_name(code), data, NOW)
    assert info.value.raw == data
    assert str(code) in str(info.value)


@pytest.mark.parametrize("data", [None, 5, 1.5, ["a"], True])
def test_full_data_of_the_wrong_type_raises(data: Any) -> None:
    with pytest.raises(DecodeError) as info:
        decode_event("1501-json-full", data, NOW)
    assert info.value.raw == json.dumps(data, separators=(",", ":"))


def test_partial_data_of_the_wrong_type_raises() -> None:
    with pytest.raises(DecodeError) as info:
        decode_event("1501-json-partial", {"t": "1_1"}, NOW)
    assert info.value.raw == '{"t":"1_1"}'


def test_list_quotes_snapshot() -> None:
    quotes = [json.dumps(DEPTH_1502), json.dumps(DEPTH_1502 | {"ExchangeInstrumentID": 43423})]
    events = decode_list_quotes(1502, quotes, NOW)
    assert [only([e]).instrument_token for e in events] == [43422, 43423]
    assert events[0] == only(decode_full(1502, quotes[0], NOW))
    with pytest.raises(DecodeError) as info:
        decode_list_quotes(1502, [quotes[0], "{bad", quotes[1]], NOW)
    assert info.value.raw == "{bad"
    assert [only([e]).instrument_token for e in info.value.events] == [43422, 43423]
    assert decode_list_quotes(1502, [], NOW) == []


def test_subscription_body_and_modes() -> None:
    assert subscription_body([(1, 2885), (2, 35013)], 1501) == {
        "instruments": [
            {"exchangeSegment": 1, "exchangeInstrumentID": 2885},
            {"exchangeSegment": 2, "exchangeInstrumentID": 35013},
        ],
        "xtsMessageCode": 1501,
    }
    assert MODE_TO_CODE == {Mode.LTP: 1512, Mode.QUOTE: 1501, Mode.FULL: 1502}
    assert CODE_TO_MODE == {1512: Mode.LTP, 1501: Mode.QUOTE, 1502: Mode.FULL}
    assert event_name(1501) == "1501-json-full"
    assert event_name(1502, partial=True) == "1502-json-partial"
    assert is_index(1, 26000)
    assert is_index(1, 26099)
    assert not is_index(1, 26100)
    assert not is_index(2, 26000)


def test_through_the_socketio_layer() -> None:
    frame = encode_event("1501-json-full", json.dumps(json.loads(NIFTY_1501), separators=(",", ":")))
    packet = parse_packet(frame)
    assert isinstance(packet, SioEvent)
    assert decode_event(packet.name, packet.args[0], NOW) == decode_event("1501-json-full", NIFTY_1501, NOW)


def test_depth_is_lazy_but_equal() -> None:
    tick = only(decode_event("1502-json-full", json.dumps(DEPTH_1502), NOW))
    depth = tick.depth
    assert isinstance(depth, Depth)
    assert not _built(depth)
    assert depth.bids[0] == DepthLevel(54.35, 75, 1)
    assert _built(depth)
    assert depth.bids is depth.bids  # built once


def _built(depth: Depth) -> bool:
    return depth._bids is not None


def test_nested_1502_ignores_its_touchline_book_and_flat_fields() -> None:
    # The nested form is decoded with the fields it uses only: BidInfo/AskInfo of a 1502 repeat
    # Bids[0]/Asks[0], and top-level touchline fields lose to the Touchline object anyway.
    message = DEPTH_1502 | {"LastTradedPrice": "not a number"}
    message["Touchline"] = DEPTH_1502["Touchline"] | {"BidInfo": [1, 2]}
    assert only(decode_event("1502-json-full", json.dumps(message), NOW)) == only(
        decode_event("1502-json-full", json.dumps(DEPTH_1502), NOW)
    )


def test_flat_1502_and_flat_1501_with_null_touchline() -> None:
    nested = DEPTH_1502
    flat = {k: v for k, v in nested.items() if k != "Touchline"} | nested["Touchline"]
    assert only(decode_event("1502-json-full", json.dumps(flat), NOW)) == only(
        decode_event("1502-json-full", json.dumps(nested), NOW)
    )
    message = json.loads(NIFTY_1501)
    flat_1501 = {k: v for k, v in message.items() if k != "Touchline"} | message["Touchline"]
    flat_1501["Touchline"] = None
    assert only(decode_event("1501-json-full", json.dumps(flat_1501), NOW)) == only(
        decode_event("1501-json-full", NIFTY_1501, NOW)
    )


def test_decoded_objects_are_exactly_the_model_classes() -> None:
    # The hot path builds Tick and Ohlc without calling the classes; they must be the real thing.
    for name, data in (("1501-json-full", NIFTY_1501), ("1502-json-full", json.dumps(DEPTH_1502))):
        tick = only(decode_event(name, data, NOW))
        assert type(tick) is Tick
        assert type(tick.ohlc) is Ohlc
        assert tick.depth is not None
        assert all(type(level) is DepthLevel for level in [*tick.depth.bids, *tick.depth.asks])
        assert tick == attrs.evolve(tick)  # every field set: evolve reads them all


def test_time_cache_stays_bounded() -> None:
    from trading_ws.brokers.xts import _codec

    cache = _codec._NSE_TIMES
    cache.clear()
    for seconds in range(_codec._TIME_CACHE_MAX + 10):
        assert cache[seconds + 1] == xts_to_datetime(seconds + 1, 1)
    assert len(cache) <= _codec._TIME_CACHE_MAX
    assert cache[0] is None
    assert cache[None] is None


# ---------------------------------------------------------------------------------------------------------
# Round trips through the encoders.

SEGMENTS = st.sampled_from([1, 2, 3, 11, 12, 13, 51])
prices = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False).map(lambda x: round(x, 4))
quantities = st.integers(0, 2**53)
xts_seconds = st.integers(1, 2_000_000_000)


@st.composite
def ticks(draw: st.DrawFn, mode: Mode, one_level: bool = False) -> Tick:
    segment = draw(SEGMENTS)
    iid = draw(st.integers(0, 2**40) | st.integers(26000, 26099))
    maybe = st.none() | quantities

    def when(strategy: st.SearchStrategy[Any]) -> Any:
        return draw(st.none() | strategy)

    def time_of() -> datetime | None:
        seconds = draw(st.none() | xts_seconds)
        return xts_to_datetime(seconds, segment)

    last = draw(prices)
    if mode is Mode.LTP:
        return Tick(
            Broker.XTS,
            iid,
            mode,
            not is_index(segment, iid),
            last,
            last_quantity=draw(maybe),
            exchange_time=time_of(),
            received_at=NOW,
            segment=segment,
        )
    ohlc = when(st.builds(Ohlc, prices, prices, prices, prices))
    change = draw(prices) if ohlc is not None else when(prices)
    levels = st.builds(DepthLevel, prices, quantities, quantities)
    if one_level:
        sides = st.tuples(st.lists(levels, max_size=1), st.lists(levels, max_size=1))
    else:
        sides = st.tuples(st.lists(levels, max_size=5), st.lists(levels, max_size=5))
    bids, asks = draw(sides)
    depth = Depth(bids, asks) if bids or asks else None
    return Tick(
        Broker.XTS,
        iid,
        mode,
        not is_index(segment, iid),
        last,
        last_quantity=draw(maybe),
        average_price=when(prices),
        volume=draw(maybe),
        total_buy_quantity=draw(maybe),
        total_sell_quantity=draw(maybe),
        ohlc=ohlc,
        change=change,
        last_trade_time=time_of(),
        exchange_time=time_of(),
        depth=depth,
        received_at=NOW,
        segment=segment,
    )


@settings(max_examples=100, deadline=None)
@given(tick=st.one_of(ticks(Mode.QUOTE, one_level=True), ticks(Mode.FULL)), nested=st.booleans())
def test_touchline_text_and_dict_forms_decode_alike(tick: Tick, nested: bool) -> None:
    # 1501 and 1502 come from one generated handler, whose body serves JSON text (the hot path) and a
    # dict converted to the flat-capable struct: both forms, nested or flat, give the same tick.
    text = encode_full(tick, nested=nested)
    name = event_name(MODE_TO_CODE[tick.mode])
    from_text = only(decode_event(name, text, NOW))
    assert from_text == tick
    assert only(decode_event(name, json.loads(text), NOW)) == from_text
    assert only(decode_event(name, text.encode(), NOW)) == from_text


@settings(max_examples=150, deadline=None)
@given(tick=ticks(Mode.QUOTE, one_level=True), nested=st.booleans())
def test_1501_full_round_trip(tick: Tick, nested: bool) -> None:
    assert only(decode_event("1501-json-full", encode_full(tick, nested=nested), NOW)) == tick


@settings(max_examples=150, deadline=None)
@given(tick=ticks(Mode.FULL), nested=st.booleans())
def test_1502_full_round_trip(tick: Tick, nested: bool) -> None:
    assert only(decode_event("1502-json-full", encode_full(tick, nested=nested), NOW)) == tick


@settings(max_examples=150, deadline=None)
@given(tick=ticks(Mode.LTP))
def test_1512_full_round_trip(tick: Tick) -> None:
    assert only(decode_event("1512-json-full", encode_full(tick), NOW)) == tick


@settings(max_examples=150, deadline=None)
@given(tick=st.one_of(ticks(Mode.LTP), ticks(Mode.QUOTE), ticks(Mode.FULL)))
def test_partial_round_trip(tick: Tick) -> None:
    name = event_name(MODE_TO_CODE[tick.mode], partial=True)
    assert only(decode_event(name, encode_partial(tick), NOW)) == tick


@settings(max_examples=100, deadline=None)
@given(
    segment=SEGMENTS,
    iid=st.integers(0, 2**40),
    bar=st.integers(1, 2_000_000_000),
    ohlc=st.tuples(prices, prices, prices, prices),
    volume=quantities,
    oi=st.none() | quantities,
)
def test_candle_round_trips(
    segment: int, iid: int, bar: int, ohlc: tuple[float, float, float, float], volume: int, oi: int | None
) -> None:
    o, h, lo, c = ohlc
    bar_time = datetime.fromtimestamp(bar - 19800, IST)
    candle = Candle(Broker.XTS, iid, segment, bar_time, o, h, lo, c, volume, oi, NOW)
    assert only(decode_event("1505-json-full", encode_full(candle), NOW)) == candle
    assert only(decode_event("1505-json-partial", encode_partial(candle), NOW)) == attrs.evolve(
        candle, open_interest=None
    )


@settings(max_examples=100, deadline=None)
@given(segment=SEGMENTS, iid=st.integers(0, 2**40), oi=quantities, seconds=st.none() | xts_seconds)
def test_open_interest_round_trips(segment: int, iid: int, oi: int, seconds: int | None) -> None:
    event = OpenInterest(Broker.XTS, iid, segment, oi, xts_to_datetime(seconds, segment), NOW)
    assert only(decode_event("1510-json-full", encode_full(event), NOW)) == event
    assert only(decode_event("1510-json-partial", encode_partial(event), NOW)) == attrs.evolve(
        event, exchange_time=None
    )


@settings(max_examples=100, deadline=None)
@given(
    segment=SEGMENTS,
    message=st.text(),
    session=st.none() | st.integers(0, 64),
    market=st.none() | st.integers(0, 9),
    seconds=st.none() | xts_seconds,
)
def test_market_status_round_trip(
    segment: int, message: str, session: int | None, market: int | None, seconds: int | None
) -> None:
    event = MarketStatus(
        Broker.XTS, segment, message, session, xts_to_datetime(seconds, segment), NOW, market
    )
    assert only(decode_event("1507-json-full", encode_full(event), NOW)) == event


property_texts = st.text(st.characters(blacklist_characters=",:", codec="utf-8"), min_size=1)


@settings(max_examples=100, deadline=None)
@given(
    segment=SEGMENTS,
    iid=st.integers(0, 2**40),
    properties=st.dictionaries(
        st.sampled_from(["HighExecBand", "LowExecBand", "TickSize", "Name", "77", "Custom"]), property_texts
    ),
)
def test_instrument_property_change_round_trips(segment: int, iid: int, properties: dict[str, str]) -> None:
    event = InstrumentPropertyChange(Broker.XTS, iid, segment, properties, NOW)
    assert only(decode_event("1105-json-full", encode_full(event), NOW)) == event
    assert only(decode_event("1105-json-partial", encode_partial(event), NOW)) == event


# ---------------------------------------------------------------------------------------------------------
# Hostile input never raises anything but DecodeError.

KNOWN_EVENTS = [
    event_name(c, p) for c in (1501, 1502, 1504, 1505, 1507, 1510, 1512, 1105) for p in (False, True)
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "ExchangeSegment",
        "ExchangeInstrumentID",
        "ExchangeTimeStamp",
        "LastTradedPrice",
        "LastTradedQunatity",
        "LastUpdateTime",
        "LastTradedTime",
        "Close",
        "Touchline",
        "BidInfo",
        "Bids",
        "Asks",
        "BarTime",
        "OpenInterest",
        "message",
        "IndexValue",
    ]
)
plausible_messages = st.dictionaries(
    field_names,
    st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5) | st.none() | json_values,
    max_size=8,
)
partial_texts = st.lists(
    st.tuples(
        st.sampled_from(["t", "ltp", "ltq", "bi", "ai", "o", "bt", "lut", "110", "zz"]), st.text(max_size=12)
    ),
    max_size=6,
).map(lambda pairs: ",".join(f"{k}:{v}" for k, v in pairs))


@settings(max_examples=600, deadline=None)
@given(
    name=st.sampled_from(KNOWN_EVENTS),
    data=json_values
    | plausible_messages
    | plausible_messages.map(lambda m: json.dumps(m, allow_nan=True))
    | partial_texts
    | st.binary()
    | st.text(),
)
def test_decode_event_never_raises_anything_but_decode_error(name: str, data: Any) -> None:
    error: DecodeError | None = None
    try:
        events = decode_event(name, data, NOW)
    except DecodeError as exc:
        error = exc
    if error is None:
        assert len(events) <= 1
    else:
        assert isinstance(error.raw, str | bytes)


# ---------------------------------------------------------------------------------------------------------
# decode_message: the Socket.IO layer and the codec in one call.


def reference(text: str | bytes, received_at: float = NOW) -> list[Any] | object:
    """What decode_message is specified to return: parse_packet, then decode_event for market data."""
    packet = parse_packet(text)
    if isinstance(packet, SioEvent) and packet.name in KNOWN_EVENT_NAMES:
        if not packet.args:
            raise DecodeError("no data", text)
        return decode_event(packet.name, packet.args[0], received_at)
    return packet


def outcome(call: Any, text: str | bytes) -> tuple[str, str]:
    # repr, not ==: NaN fields (an Ohlc with a missing value) never compare equal.
    try:
        return "ok", repr(call(text))
    except DecodeError:
        return "DecodeError", ""


def frame(name: str, data: Any) -> str:
    return "42" + json.dumps([name, data], separators=(",", ":"))


def test_decode_message_market_data_frames() -> None:
    nifty = json.dumps(json.loads(NIFTY_1501), separators=(",", ":"))
    expected = decode_event("1501-json-full", NIFTY_1501, NOW)
    assert decode_message(frame("1501-json-full", nifty), NOW) == expected
    assert decode_message(frame("1502-json-full", json.dumps(DEPTH_1502)), NOW) == decode_event(
        "1502-json-full", json.dumps(DEPTH_1502), NOW
    )
    assert decode_message(frame("1501-json-partial", APPENDIX_PARTIAL), NOW) == decode_event(
        "1501-json-partial", APPENDIX_PARTIAL, NOW
    )
    assert decode_message(frame("1512-json-full", LTP_1512), NOW) == decode_event(
        "1512-json-full", LTP_1512, NOW
    )
    # Other shapes of the same event go through parse_packet and give the same events.
    assert (
        decode_message(frame("1501-json-full", json.loads(NIFTY_1501)), NOW) == expected
    )  # data as an object
    assert decode_message('42["1501-json-full", ' + json.dumps(nifty) + " ]", NOW) == expected  # spaces
    assert decode_message("42/md," + frame("1501-json-full", nifty)[2:], NOW) == expected  # a namespace
    assert decode_message("4217" + frame("1501-json-full", nifty)[2:], NOW) == expected  # an ack id
    assert decode_message("42" + json.dumps(["1501-json-full", nifty, 5]), NOW) == expected  # extra args
    # No numeric instrument: an empty list, still a list.
    assert decode_message(frame("1504-json-partial", "t:1_NIFTY 50,ltp:22386"), NOW) == []


def test_decode_message_returns_other_packets() -> None:
    joined = frame("joined", "a user joined")
    assert decode_message(joined, NOW) == SioEvent("joined", ("a user joined",))
    assert decode_message('42["5018-json-full","{}"]', NOW) == SioEvent("5018-json-full", ("{}",))
    assert decode_message('42["error"]', NOW) == SioEvent("error", ())
    assert decode_message("3", NOW) == EioPong()
    assert decode_message("40", NOW) == SioConnect()
    assert decode_message(b"\x04binary", NOW) == Unknown(b"\x04binary")
    opened = decode_message('0{"sid":"s","upgrades":[],"pingInterval":25000,"pingTimeout":60000}', NOW)
    assert opened == OpenPacket("s", (), 25.0, 60.0)


def test_decode_message_errors() -> None:
    with pytest.raises(DecodeError) as info:
        decode_message('42["1501-json-full","{"]', NOW)
    assert info.value.raw == "{"  # the malformed data argument
    with pytest.raises(DecodeError) as info:
        decode_message('42["1501-json-full"]', NOW)  # market data without data
    assert info.value.raw == '42["1501-json-full"]'
    with pytest.raises(DecodeError) as info:
        decode_message('42["1501-json-full",', NOW)  # not JSON
    assert info.value.raw == '42["1501-json-full",'
    with pytest.raises(DecodeError):
        decode_message('42["1502-json-partial","ltp:1"]', NOW)  # no t:
    with pytest.raises(DecodeError):
        decode_message('42["1501-json-full","\ud800"]', NOW)  # a lone surrogate: not UTF-8


def test_decode_message_received_at_defaults_to_now() -> None:
    import time

    before = time.time()
    result = decode_message(frame("1512-json-full", LTP_1512))
    assert isinstance(result, list)
    tick = only(result)
    assert before <= tick.received_at <= time.time()


KNOWN_EVENT_NAMES = frozenset(KNOWN_EVENTS) - {"1507-json-partial"}
event_names = st.sampled_from([*KNOWN_EVENTS, "joined", "error", "5018-json-full", ""]) | st.text(max_size=8)
event_data = (
    plausible_messages.map(lambda m: json.dumps(m, allow_nan=True))
    | partial_texts
    | json_values
    | plausible_messages
    | st.text()
)
encoded_ticks = (
    st.tuples(st.just("1501-json-full"), ticks(Mode.QUOTE, one_level=True).map(encode_full))
    | st.tuples(st.just("1502-json-full"), ticks(Mode.FULL).map(encode_full))
    | st.tuples(st.just("1512-json-full"), ticks(Mode.LTP).map(encode_full))
    | st.tuples(st.just("1502-json-partial"), ticks(Mode.FULL).map(encode_partial))
)
valid_frames = (
    encoded_ticks.map(lambda pair: frame(*pair))
    | st.builds(frame, event_names, event_data)
    | st.builds(
        lambda name, data, prefix: "42" + prefix + json.dumps([name, data]),
        event_names,
        event_data,
        st.sampled_from(["", "/", "/md,", "7", "/md,12"]),
    )
)
hostile_texts = (
    st.text()
    | st.text().map(lambda t: "42[" + t)
    | st.text().map(lambda t: '42["1501-json-full",' + t)
    | valid_frames.flatmap(lambda f: st.integers(0, len(f)).map(lambda n: f[:n]))  # truncated
    | st.binary()
)


@settings(max_examples=400, deadline=None)
@given(text=valid_frames)
def test_decode_message_agrees_with_parse_packet_and_decode_event(text: str) -> None:
    assert outcome(lambda t: decode_message(t, NOW), text) == outcome(reference, text)


@settings(max_examples=600, deadline=None)
@given(text=hostile_texts)
def test_decode_message_never_raises_anything_but_decode_error(text: str | bytes) -> None:
    error: DecodeError | None = None
    try:
        result = decode_message(text, NOW)
    except DecodeError as exc:
        error = exc
    if error is not None:
        assert isinstance(error.raw, str | bytes)
        return
    assert outcome(lambda t: decode_message(t, NOW), text) == outcome(reference, text)
    if isinstance(result, list):
        for event in result:
            if isinstance(event, Tick) and event.depth is not None:
                _ = (event.depth.bids, event.depth.asks)  # lazy depth is readable
