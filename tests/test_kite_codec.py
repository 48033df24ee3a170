"""The Kite codec against hand-built packets (kite-protocol.md sections 3 and 4), and its properties."""

from __future__ import annotations

import json
import struct
import time
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from strategies import (
    INDICES_SEGMENT,
    KITE_SEGMENTS,
    build_frame,
    kite_frames,
    kite_fuzz_frames,
    kite_ticks,
)

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
from trading_ws.brokers.kite import (
    ControlMessage,
    decode_control,
    decode_frame,
    encode_control,
    encode_frame,
    encode_text,
    price_divisor,
)

T = 1_764_054_000.25  # a fixed receipt time

INFY = 408065  # 1594 << 8 | 1 (NSE)
NIFTY = 256265  # 1001 << 8 | 9 (indices)
USDINR = 1_000 << 8 | 3  # CDS
NCO = 31132428  # ALUMINI26SEPFUT, segment 12

TS = int(datetime(2026, 11, 25, 15, 29, 59, tzinfo=IST).timestamp())
LTT = TS - 3


def ltp_packet(token: int, last: int) -> bytes:
    return struct.pack(">II", token, last)


def index_packet(
    token: int, last: int, high: int, low: int, open_: int, close: int, change: int, ts: int | None = None
) -> bytes:
    fields = [token, last, high, low, open_, close, change]
    if ts is not None:
        fields.append(ts)
    return struct.pack(f">{len(fields)}I", *fields)


def quote_packet(token: int, *values: int) -> bytes:
    """token, last, last_qty, avg, volume, buy_qty, sell_qty, open, high, low, close."""
    assert len(values) == 10
    return struct.pack(">11I", token, *values)


def full_packet(
    token: int,
    quote: tuple[int, ...],
    ltt: int,
    oi: int,
    oi_high: int,
    oi_low: int,
    ts: int,
    depth: list[tuple[int, int, int]],
) -> bytes:
    assert len(quote) == 10
    assert len(depth) == 10
    head = struct.pack(">16I", token, *quote, ltt, oi, oi_high, oi_low, ts)
    return head + b"".join(struct.pack(">IIHxx", q, p, o) for q, p, o in depth)


QUOTE_VALUES = (150025, 25, 149980, 1_234_567, 40_000, 52_000, 149000, 151000, 148500, 148000)
DEPTH = [(100 + i, 150000 - 5 * i, 1 + i) for i in range(5)] + [
    (200 + i, 150050 + 5 * i, 11 + i) for i in range(5)
]


def ticks_of(data: bytes) -> list[Tick]:
    events = decode_frame(data, T)
    assert all(isinstance(e, Tick) for e in events)
    return [e for e in events if isinstance(e, Tick)]


def one_tick(packet: bytes) -> Tick:
    (tick,) = ticks_of(build_frame([packet]))
    return tick


# ---------------------------------------------------------------------------------------------------------
# Each packet kind, every field.


def test_ltp_packet() -> None:
    (tick,) = decode_frame(build_frame([ltp_packet(INFY, 150025)]), T)
    assert tick == Tick(Broker.KITE, INFY, Mode.LTP, True, 1500.25, received_at=T, segment=1)
    assert isinstance(tick, Tick)
    assert tick.mode is Mode.LTP
    assert tick.last_price == 1500.25
    assert tick.ohlc is None
    assert tick.change is None
    assert tick.depth is None


def test_index_quote_packet_reads_high_low_open_close() -> None:
    # The change field on the wire (offset 24) is ignored: change is recomputed from last and close.
    packet = index_packet(NIFTY, 2450050, 2460000, 2440000, 2445000, 2430000, change=0xDEADBEEF)
    assert len(packet) == 28
    (tick,) = decode_frame(build_frame([packet]), T)
    assert isinstance(tick, Tick)
    assert tick.ohlc == Ohlc(open=24450.0, high=24600.0, low=24400.0, close=24300.0)
    assert tick.change == (24500.5 - 24300.0) * 100 / 24300.0
    assert tick == Tick(
        Broker.KITE,
        NIFTY,
        Mode.QUOTE,
        False,
        24500.5,
        ohlc=Ohlc(24450.0, 24600.0, 24400.0, 24300.0),
        change=(24500.5 - 24300.0) * 100 / 24300.0,
        received_at=T,
        segment=INDICES_SEGMENT,
    )


def test_index_full_packet_has_an_ist_exchange_time() -> None:
    packet = index_packet(NIFTY, 2450050, 2460000, 2440000, 2445000, 2430000, 0, ts=TS)
    assert len(packet) == 32
    (tick,) = decode_frame(build_frame([packet]), T)
    assert isinstance(tick, Tick)
    assert tick == Tick(
        Broker.KITE,
        NIFTY,
        Mode.FULL,
        False,
        24500.5,
        ohlc=Ohlc(24450.0, 24600.0, 24400.0, 24300.0),
        change=(24500.5 - 24300.0) * 100 / 24300.0,
        exchange_time=datetime(2026, 11, 25, 15, 29, 59, tzinfo=IST),
        received_at=T,
        segment=INDICES_SEGMENT,
    )
    assert tick.exchange_time is not None
    assert tick.exchange_time.utcoffset() == timedelta(hours=5, minutes=30)
    assert (tick.exchange_time.hour, tick.exchange_time.minute) == (15, 29)
    assert tick.last_trade_time is None


def test_quote_packet() -> None:
    packet = quote_packet(INFY, *QUOTE_VALUES)
    assert len(packet) == 44
    (tick,) = decode_frame(build_frame([packet]), T)
    assert tick == Tick(
        Broker.KITE,
        INFY,
        Mode.QUOTE,
        True,
        1500.25,
        last_quantity=25,
        average_price=1499.80,
        volume=1_234_567,
        total_buy_quantity=40_000,
        total_sell_quantity=52_000,
        ohlc=Ohlc(open=1490.0, high=1510.0, low=1485.0, close=1480.0),
        change=(1500.25 - 1480.0) * 100 / 1480.0,
        received_at=T,
        segment=1,
    )


def test_full_packet() -> None:
    packet = full_packet(INFY, QUOTE_VALUES, LTT, 9_000, 9_500, 8_000, TS, DEPTH)
    assert len(packet) == 184
    (tick,) = decode_frame(build_frame([packet]), T)
    assert isinstance(tick, Tick)
    assert tick.mode is Mode.FULL
    assert tick.tradable is True
    assert tick.last_price == 1500.25
    assert tick.last_quantity == 25
    assert tick.average_price == 1499.80
    assert tick.volume == 1_234_567
    assert (tick.total_buy_quantity, tick.total_sell_quantity) == (40_000, 52_000)
    assert tick.ohlc == Ohlc(1490.0, 1510.0, 1485.0, 1480.0)
    assert tick.change == (1500.25 - 1480.0) * 100 / 1480.0
    assert tick.last_trade_time == datetime(2026, 11, 25, 15, 29, 56, tzinfo=IST)
    assert tick.exchange_time == datetime(2026, 11, 25, 15, 29, 59, tzinfo=IST)
    for stamp in (tick.last_trade_time, tick.exchange_time):
        assert stamp is not None
        assert stamp.tzinfo is IST
    assert (tick.oi, tick.oi_day_high, tick.oi_day_low) == (9_000, 9_500, 8_000)
    assert (tick.received_at, tick.symbol, tick.segment, tick.broker) == (T, None, 1, Broker.KITE)
    assert tick.depth is not None
    # Depth in wire order (no sorting), prices divided, orders read as uint16.
    assert list(tick.depth.bids) == [
        DepthLevel(1500.0, 100, 1),
        DepthLevel(1499.95, 101, 2),
        DepthLevel(1499.9, 102, 3),
        DepthLevel(1499.85, 103, 4),
        DepthLevel(1499.8, 104, 5),
    ]
    assert list(tick.depth.asks) == [
        DepthLevel(1500.5, 200, 11),
        DepthLevel(1500.55, 201, 12),
        DepthLevel(1500.6, 202, 13),
        DepthLevel(1500.65, 203, 14),
        DepthLevel(1500.7, 204, 15),
    ]


def test_full_packet_depth_keeps_wire_order_even_when_unsorted() -> None:
    depth = [(1, 100, 1), (2, 300, 2), (3, 200, 3), (0, 0, 0), (5, 50, 65535)] * 2
    (tick,) = decode_frame(build_frame([full_packet(INFY, QUOTE_VALUES, 0, 0, 0, 0, 0, depth)]), T)
    assert isinstance(tick, Tick)
    assert tick.depth is not None
    expected = [DepthLevel(1.0, 1, 1), DepthLevel(3.0, 2, 2), DepthLevel(2.0, 3, 3)]
    expected += [DepthLevel(0.0, 0, 0), DepthLevel(0.5, 5, 65535)]
    assert list(tick.depth.bids) == expected
    assert list(tick.depth.asks) == expected


def test_zero_timestamps_are_none() -> None:
    frame = build_frame(
        [
            full_packet(INFY, QUOTE_VALUES, 0, 1, 2, 3, 0, DEPTH),
            index_packet(NIFTY, 1, 1, 1, 1, 1, 0, ts=0),
        ]
    )
    full, index = decode_frame(frame, T)
    assert isinstance(full, Tick)
    assert isinstance(index, Tick)
    assert full.last_trade_time is None
    assert full.exchange_time is None
    assert index.exchange_time is None


@pytest.mark.parametrize(
    "packet",
    [
        quote_packet(INFY, 150025, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        full_packet(INFY, (150025, 0, 0, 0, 0, 0, 0, 0, 0, 0), 0, 0, 0, 0, 0, DEPTH),
        index_packet(NIFTY, 2450050, 0, 0, 0, 0, 0),
        index_packet(NIFTY, 2450050, 0, 0, 0, 0, 0, ts=TS),
    ],
    ids=["quote", "full", "index-quote", "index-full"],
)
def test_change_is_zero_when_close_is_zero(packet: bytes) -> None:
    (tick,) = decode_frame(build_frame([packet]), T)
    assert isinstance(tick, Tick)
    assert tick.ohlc is not None
    assert tick.ohlc.close == 0.0
    assert tick.change == 0.0


def test_change_is_a_percentage_and_can_be_negative() -> None:
    (tick,) = decode_frame(build_frame([quote_packet(INFY, 9000, 0, 0, 0, 0, 0, 0, 0, 0, 10000)]), T)
    assert isinstance(tick, Tick)
    assert tick.change == pytest.approx(-10.0)


@pytest.mark.parametrize(
    "packet",
    [
        ltp_packet(NIFTY, 1),
        index_packet(NIFTY, 1, 1, 1, 1, 1, 0),
        index_packet(NIFTY, 1, 1, 1, 1, 1, 0, ts=TS),
        quote_packet(NIFTY, *QUOTE_VALUES),
        full_packet(NIFTY, QUOTE_VALUES, 0, 0, 0, 0, 0, DEPTH),
    ],
    ids=["ltp", "index-quote", "index-full", "quote", "full"],
)
def test_segment_9_is_not_tradable_in_every_packet_kind(packet: bytes) -> None:
    (tick,) = decode_frame(build_frame([packet]), T)
    assert isinstance(tick, Tick)
    assert tick.tradable is False
    assert tick.segment == 9


@pytest.mark.parametrize("token", [0x12345678, 0xFFFFFF01, 0x00000100, 0xFFFFFFFF])
def test_segment_is_the_low_byte_of_the_token(token: int) -> None:
    (tick,) = decode_frame(build_frame([ltp_packet(token, 100)]), T)
    assert isinstance(tick, Tick)
    assert tick.instrument_token == token
    assert tick.segment == token & 0xFF
    assert tick.tradable is (token & 0xFF != 9)


def test_integers_are_read_unsigned() -> None:
    (ltp, quote) = decode_frame(
        build_frame([ltp_packet(INFY, 0xFFFFFFFF), quote_packet(INFY, *([0xFFFFFFFF] * 10))]), T
    )
    assert isinstance(ltp, Tick)
    assert isinstance(quote, Tick)
    assert ltp.last_price == 42949672.95  # the value the official client reads (kite-protocol.md §3.2)
    assert quote.volume == 0xFFFFFFFF
    assert quote.last_quantity == 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------------------
# Divisors.

DIVISORS = {1: 100.0, 2: 100.0, 3: 1e7, 4: 100.0, 5: 100.0, 6: 1e4, 7: 100.0, 8: 100.0, 9: 100.0, 12: 1e4}


@pytest.mark.parametrize(("segment", "divisor"), sorted(DIVISORS.items()))
def test_divisor_per_segment(segment: int, divisor: float) -> None:
    token = 4242 << 8 | segment
    assert price_divisor(token) == divisor
    raw = 3782000
    frame = build_frame(
        [
            ltp_packet(token, raw),
            quote_packet(token, raw, 7, raw, 0, 0, 0, raw, raw, raw, raw),
            full_packet(token, (raw, 7, raw, 0, 0, 0, raw, raw, raw, raw), 0, 0, 0, 0, 0, [(7, raw, 1)] * 10),
            index_packet(token, raw, raw, raw, raw, raw, 0),
        ]
    )
    ltp, quote, full, index = decode_frame(frame, T)
    price = raw / divisor
    for tick in (ltp, quote, full, index):
        assert isinstance(tick, Tick)
        assert tick.last_price == price
    for tick in (quote, full, index):
        assert isinstance(tick, Tick)
        assert tick.ohlc == Ohlc(price, price, price, price)
    for tick in (quote, full):
        assert isinstance(tick, Tick)
        assert tick.average_price == price
        assert tick.last_quantity == 7  # quantities are never divided
    assert isinstance(full, Tick)
    assert full.depth is not None
    assert all(level == DepthLevel(price, 7, 1) for level in [*full.depth.bids, *full.depth.asks])


def test_divisor_examples() -> None:
    assert NCO & 0xFF == 12
    assert one_tick(ltp_packet(NCO, 3782000)).last_price == 378.20  # the NCO example (kite-protocol §3.4)
    assert one_tick(full_packet(NCO, QUOTE_VALUES, 0, 0, 0, 0, 0, DEPTH)).average_price == 14.998
    assert one_tick(ltp_packet(USDINR, 834_512_500)).last_price == 83.45125
    assert one_tick(ltp_packet(INFY, 150025)).last_price == 1500.25


def test_divisor_is_100_for_every_other_segment() -> None:
    for segment in range(256):
        expected = 1e7 if segment == 3 else 1e4 if segment in (6, 12) else 100.0
        assert price_divisor(0xABCD00 | segment) == expected


# ---------------------------------------------------------------------------------------------------------
# Frames.


def test_frame_mixing_kinds_keeps_wire_order() -> None:
    packets = [
        ltp_packet(INFY, 150025),
        index_packet(NIFTY, 2450050, 2460000, 2440000, 2445000, 2430000, 0),
        quote_packet(INFY, *QUOTE_VALUES),
        full_packet(INFY, QUOTE_VALUES, LTT, 1, 2, 3, TS, DEPTH),
        index_packet(NIFTY, 2450050, 2460000, 2440000, 2445000, 2430000, 0, ts=TS),
        ltp_packet(NCO, 3782000),
    ]
    events = ticks_of(build_frame(packets))
    assert [(e.instrument_token, e.mode, e.tradable) for e in events] == [
        (INFY, Mode.LTP, True),
        (NIFTY, Mode.QUOTE, False),
        (INFY, Mode.QUOTE, True),
        (INFY, Mode.FULL, True),
        (NIFTY, Mode.FULL, False),
        (NCO, Mode.LTP, True),
    ]
    assert len(events) == 6
    assert all(e.received_at == T for e in events)
    # Each packet decodes the same alone as inside the mixed frame.
    assert events == [decode_frame(build_frame([p]), T)[0] for p in packets]


@pytest.mark.parametrize("message", [b"\x00", b"\x01", b"\xff", b""])
def test_heartbeat_gives_no_events(message: bytes) -> None:
    assert decode_frame(message, T) == []


def test_empty_frame() -> None:
    assert decode_frame(b"\x00\x00", T) == []


def test_bytearray_and_memoryview_decode_like_bytes() -> None:
    frame = build_frame([ltp_packet(INFY, 1), full_packet(INFY, QUOTE_VALUES, LTT, 1, 2, 3, TS, DEPTH)])
    expected = decode_frame(frame, T)
    assert len(expected) == 2
    assert decode_frame(bytearray(frame), T) == expected
    assert decode_frame(memoryview(frame), T) == expected


def test_received_at_defaults_to_now() -> None:
    before = time.time()
    (tick,) = decode_frame(build_frame([ltp_packet(INFY, 1)]))
    after = time.time()
    assert isinstance(tick, Tick)
    assert before <= tick.received_at <= after
    (message,) = decode_frame(encode_text("message", "hi"))
    assert isinstance(message, BrokerMessage)
    assert before <= message.received_at <= time.time()


# ---------------------------------------------------------------------------------------------------------
# Text frames.

ORDER = {
    "order_id": "220303000308932",
    "status": "COMPLETE",
    "tradingsymbol": "SBIN",
    "instrument_token": 779521,
    "average_price": 470,
    "meta": {},
    "tag": None,
}


def test_text_order() -> None:
    (event,) = decode_frame(json.dumps({"type": "order", "data": ORDER}), T)
    assert event == OrderUpdate(Broker.KITE, ORDER, T)
    assert isinstance(event, OrderUpdate)
    assert event.order_id == "220303000308932"
    assert event.status == "COMPLETE"


def test_text_order_properties_when_absent_or_not_strings() -> None:
    (event,) = decode_frame('{"type": "order", "data": {"order_id": 123}}', T)
    assert isinstance(event, OrderUpdate)
    assert event.order_id == "123"
    assert event.status is None


def test_text_error() -> None:
    assert decode_frame('{"type": "error", "data": "Invalid token"}', T) == [
        BrokerError(Broker.KITE, "Invalid token", T)
    ]


def test_text_message() -> None:
    assert decode_frame('{"type": "message", "data": "Market closes early"}', T) == [
        BrokerMessage(Broker.KITE, "Market closes early", T)
    ]


def test_text_error_and_message_with_non_string_data_keep_it_as_json() -> None:
    (error,) = decode_frame('{"type": "error", "data": {"code": 7, "why": ["a"]}}', T)
    assert error == BrokerError(Broker.KITE, '{"code":7,"why":["a"]}', T)
    (message,) = decode_frame('{"type": "message"}', T)
    assert message == BrokerMessage(Broker.KITE, "null", T)


def test_text_unknown_type_is_kept_whole() -> None:
    text = '{"type": "instruments_meta", "data": {"count": 3}}'
    assert decode_frame(text, T) == [BrokerMessage(Broker.KITE, text, T)]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        '{"type": "order", "data": ',
        "[1, 2]",
        '{"data": "no type"}',
        '{"type": 5}',
        "\ud800",  # a lone surrogate (not encodable as UTF-8)
    ],
)
def test_text_invalid_raises_decode_error(text: str) -> None:
    with pytest.raises(DecodeError, match="malformed Kite text message") as info:
        decode_frame(text, T)
    assert info.value.raw == text
    assert list(info.value.events) == []


@pytest.mark.parametrize("data", ["null", "[]", '"abc"', "0", "[{}]"])
def test_text_order_without_an_object_payload(data: str) -> None:
    text = f'{{"type": "order", "data": {data}}}'
    with pytest.raises(DecodeError, match="object payload") as info:
        decode_frame(text, T)
    assert info.value.raw == text


@given(
    st.sampled_from(["error", "message"]),
    st.text(),
)
@settings(max_examples=50, deadline=None)
def test_text_round_trip(kind: str, text: str) -> None:
    (event,) = decode_frame(encode_text(kind, text), T)
    assert event == (BrokerError if kind == "error" else BrokerMessage)(Broker.KITE, text, T)


def test_encode_text_order_round_trip() -> None:
    assert decode_frame(encode_text("order", ORDER), T) == [OrderUpdate(Broker.KITE, ORDER, T)]
    assert json.loads(encode_text("order", ORDER)) == {"type": "order", "data": ORDER}


# ---------------------------------------------------------------------------------------------------------
# Malformed binary frames: DecodeError with the raw bytes and the packets that could be decoded.


def good_ticks(*packets: bytes) -> list[Tick]:
    return [one_tick(p) for p in packets]


def test_count_larger_than_content() -> None:
    a, b = ltp_packet(INFY, 1), quote_packet(INFY, *QUOTE_VALUES)
    frame = build_frame([a, b], count=3)
    with pytest.raises(DecodeError, match="announces 3 packets but holds only 2") as info:
        decode_frame(frame, T)
    assert info.value.raw == frame
    assert list(info.value.events) == good_ticks(a, b)


@pytest.mark.parametrize("frame", [b"\x00\x01", b"\x00\x01\x00", b"\xff\xff"])
def test_count_without_any_packet(frame: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode_frame(frame, T)
    assert info.value.raw == frame
    assert list(info.value.events) == []


def test_length_past_end() -> None:
    a = ltp_packet(INFY, 1)
    frame = build_frame([a]) + struct.pack(">H", 44) + b"\x00" * 10
    frame = b"\x00\x02" + frame[2:]
    with pytest.raises(DecodeError, match="claims 44 bytes but only 10 remain") as info:
        decode_frame(frame, T)
    assert info.value.raw == frame
    assert list(info.value.events) == good_ticks(a)


def test_unknown_packet_length_keeps_the_other_packets_in_order() -> None:
    a = ltp_packet(INFY, 1)
    b = quote_packet(INFY, *QUOTE_VALUES)
    c = full_packet(INFY, QUOTE_VALUES, LTT, 1, 2, 3, TS, DEPTH)
    frame = build_frame([a, b"\x01" * 12, b, b"", c, b"\x02" * 164])
    with pytest.raises(DecodeError) as info:
        decode_frame(frame, T)
    message = str(info.value)
    assert "packet 1 has unknown length 12" in message
    assert "packet 3 has unknown length 0" in message
    assert "packet 5 has unknown length 164" in message
    assert info.value.raw == frame
    assert list(info.value.events) == good_ticks(a, b, c)


def test_trailing_bytes() -> None:
    a, b = ltp_packet(INFY, 1), ltp_packet(NIFTY, 2)
    frame = build_frame([a, b]) + b"\x00\x07\x01"
    with pytest.raises(DecodeError, match="3 trailing bytes after 2 packets") as info:
        decode_frame(frame, T)
    assert info.value.raw == frame
    assert list(info.value.events) == good_ticks(a, b)


def test_raw_is_the_input_for_bytearray_and_memoryview() -> None:
    frame = build_frame([ltp_packet(INFY, 1)], count=2)
    for data in (bytearray(frame), memoryview(frame)):
        with pytest.raises(DecodeError) as info:
            decode_frame(data, T)
        assert info.value.raw == frame
        assert len(info.value.events) == 1


# ---------------------------------------------------------------------------------------------------------
# Encoding.


def test_encode_frame_layout() -> None:
    ltp = Tick(Broker.KITE, INFY, Mode.LTP, True, 1500.25, segment=1)
    assert encode_frame([ltp]) == b"\x00\x01\x00\x08" + struct.pack(">II", INFY, 150025)
    assert encode_frame([]) == b"\x00\x00"


def test_encode_frame_writes_the_index_change_field() -> None:
    index = Tick(Broker.KITE, NIFTY, Mode.QUOTE, False, 1.0, ohlc=Ohlc(0.0, 0.0, 0.0, 2.0), segment=9)
    assert encode_frame([index])[4:] == index_packet(NIFTY, 100, 0, 0, 0, 200, (100 - 200) & 0xFFFFFFFF)


def test_encode_frame_pads_short_depth_with_zero_levels() -> None:
    depth = Depth([DepthLevel(1.0, 2, 3)], [])
    tick = Tick(Broker.KITE, INFY, Mode.FULL, True, 1.0, depth=depth, segment=1)
    (decoded,) = decode_frame(encode_frame([tick]), T)
    assert isinstance(decoded, Tick)
    assert decoded.depth is not None
    assert list(decoded.depth.bids) == [DepthLevel(1.0, 2, 3)] + [DepthLevel(0.0, 0, 0)] * 4
    assert list(decoded.depth.asks) == [DepthLevel(0.0, 0, 0)] * 5


def test_encode_frame_rejects_values_that_do_not_fit() -> None:
    with pytest.raises(struct.error):
        encode_frame([Tick(Broker.KITE, 2**32, Mode.LTP, True, 1.0)])
    with pytest.raises(struct.error):
        encode_frame([Tick(Broker.KITE, INFY, Mode.LTP, True, 2**32 / 100)])


def test_encode_frame_rejects_more_than_65535_packets() -> None:
    tick = Tick(Broker.KITE, INFY, Mode.LTP, True, 1.0)
    assert encode_frame([tick] * 0xFFFF)[:2] == b"\xff\xff"
    with pytest.raises(ValueError, match="at most 65535"):
        encode_frame([tick] * 0x10000)


# ---------------------------------------------------------------------------------------------------------
# Control messages.


def test_encode_control() -> None:
    assert encode_control("subscribe", [408065, 884737]) == '{"a":"subscribe","v":[408065,884737]}'
    assert encode_control("unsubscribe", [884737]) == '{"a":"unsubscribe","v":[884737]}'
    assert encode_control("mode", [408065], Mode.FULL) == '{"a":"mode","v":["full",[408065]]}'


@pytest.mark.parametrize(
    ("action", "mode"),
    [("mode", None), ("subscribe", Mode.FULL), ("unsubscribe", Mode.LTP), ("sub", None), ("", None)],
)
def test_encode_control_rejects(action: str, mode: Mode | None) -> None:
    with pytest.raises(ValueError):
        encode_control(action, [1], mode)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"a": "subscribe", "v": [408065, 884737]}', ControlMessage("subscribe", (408065, 884737))),
        ('{"a": "mode", "v": ["full", [408065]]}', ControlMessage("mode", (408065,), Mode.FULL)),
        ('{"a": "mode", "v": ["ltp", [884737]]}', ControlMessage("mode", (884737,), Mode.LTP)),
        ('{"a": "unsubscribe", "v": [884737]}', ControlMessage("unsubscribe", (884737,))),
        (b'{"a": "subscribe", "v": []}', ControlMessage("subscribe", ())),
        ('{"a": "subscribe", "v": [4294967295]}', ControlMessage("subscribe", (0xFFFFFFFF,))),
    ],
)
def test_decode_control_documented_examples(raw: str | bytes, expected: ControlMessage) -> None:
    assert decode_control(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        b"\xff\xfe",
        "\ud800",
        "{}",
        '{"a": "subscribe"}',
        '{"a": "join", "v": [1]}',
        '{"a": "subscribe", "v": 1}',
        '{"a": "subscribe", "v": [true]}',
        '{"a": "subscribe", "v": [1.0]}',
        '{"a": "subscribe", "v": [-1]}',
        '{"a": "subscribe", "v": [4294967296]}',
        '{"a": "subscribe", "v": ["1"]}',
        '{"a": "mode", "v": ["full"]}',
        '{"a": "mode", "v": ["full", [1], 2]}',
        '{"a": "mode", "v": [1, [1]]}',
        '{"a": "mode", "v": ["FULL", [1]]}',
        '{"a": "mode", "v": ["full", 1]}',
    ],
)
def test_decode_control_rejects(raw: str | bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode_control(raw)
    assert info.value.raw == raw


# ---------------------------------------------------------------------------------------------------------
# Properties.


@given(st.lists(kite_ticks(received_at=T), max_size=12))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_ticks(ticks: list[Tick]) -> None:
    decoded = decode_frame(encode_frame(ticks), T)
    assert decoded == ticks
    for tick in decoded:
        assert isinstance(tick, Tick)
        for stamp in (tick.last_trade_time, tick.exchange_time):
            assert stamp is None or stamp.utcoffset() == timedelta(hours=5, minutes=30)


@given(kite_ticks(modes=[Mode.FULL], segments=[s for s in KITE_SEGMENTS if s != 9], received_at=T))
@settings(max_examples=100, deadline=None)
def test_round_trip_full_ticks_with_depth(tick: Tick) -> None:
    (decoded,) = decode_frame(encode_frame([tick]), T)
    assert isinstance(decoded, Tick)
    assert decoded.depth is not None
    assert tick.depth is not None
    assert list(decoded.depth.bids) == list(tick.depth.bids)
    assert list(decoded.depth.asks) == list(tick.depth.asks)
    assert decoded == tick


@given(kite_frames())
@settings(max_examples=300, deadline=None)
def test_reencoding_a_decoded_frame_gives_the_same_bytes(frame: bytes) -> None:
    ticks = ticks_of(frame)
    assert encode_frame(ticks) == frame


def decode_or_error(data: bytes | str) -> tuple[list[Event], DecodeError | None]:
    """What decode_frame returns, or the events and the error it raised (any other error propagates)."""
    try:
        return decode_frame(data, T), None
    except DecodeError as exc:
        return list(exc.events), exc


def control_or_error(raw: bytes | str) -> tuple[ControlMessage | None, DecodeError | None]:
    try:
        return decode_control(raw), None
    except DecodeError as exc:
        return None, exc


@given(st.binary(max_size=400))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    events, error = decode_or_error(data)
    assert error is None or error.raw == data
    assert all(isinstance(e, Tick) for e in events)


@given(kite_fuzz_frames())
@settings(max_examples=400, deadline=None)
def test_plausible_frames_raise_only_decode_error(frame: bytes) -> None:
    events, error = decode_or_error(frame)
    assert error is None or error.raw == frame
    for event in events:
        assert isinstance(event, Tick)
        assert event.received_at == T
        if event.depth is not None:  # lazy depth must be readable too
            assert len(event.depth.bids) == len(event.depth.asks) == 5


# st.text() never yields surrogates; st.characters() does (a str from a caller may hold them).
any_text = st.text() | st.text(st.characters())
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=8,
)


@given(any_text)
@settings(max_examples=300, deadline=None)
def test_arbitrary_text_raises_only_decode_error(text: str) -> None:
    events, error = decode_or_error(text)
    if error is None:
        (event,) = events
        assert isinstance(event, OrderUpdate | BrokerMessage | BrokerError)
    else:
        assert error.raw == text
        assert events == []


@given(st.text(max_size=12), json_values)
@settings(max_examples=200, deadline=None)
def test_json_text_messages_raise_only_decode_error(kind: str, data: object) -> None:
    text = json.dumps({"type": kind, "data": data})
    events, error = decode_or_error(text)
    if error is None:
        (event,) = events
        assert isinstance(event, OrderUpdate | BrokerMessage | BrokerError)
        if kind == "order":
            assert isinstance(data, dict)
            assert event == OrderUpdate(Broker.KITE, data, T)
    else:
        assert error.raw == text
        # Only an order without an object payload, or JSON msgspec refuses (NaN, huge numbers...).
        assert kind == "order" or "malformed" in str(error)


tokens_32 = st.lists(st.integers(0, 0xFFFFFFFF), max_size=20)


@given(st.sampled_from(["subscribe", "unsubscribe"]), tokens_32)
@settings(max_examples=100, deadline=None)
def test_control_round_trip(action: str, tokens: list[int]) -> None:
    raw = encode_control(action, tokens)
    assert decode_control(raw) == ControlMessage(action, tuple(tokens))
    assert decode_control(raw.encode()) == ControlMessage(action, tuple(tokens))


@given(st.sampled_from(Mode), tokens_32)
@settings(max_examples=100, deadline=None)
def test_control_mode_round_trip(mode: Mode, tokens: list[int]) -> None:
    assert decode_control(encode_control("mode", tokens, mode)) == ControlMessage("mode", tuple(tokens), mode)


@given(any_text | st.binary())
@settings(max_examples=300, deadline=None)
def test_arbitrary_control_input_raises_only_decode_error(raw: str | bytes) -> None:
    message, error = control_or_error(raw)
    if error is None:
        assert message is not None
        assert message.action in ("subscribe", "unsubscribe", "mode")
    else:
        assert error.raw == raw


@given(st.sampled_from(["subscribe", "unsubscribe", "mode", "x"]), json_values)
@settings(max_examples=200, deadline=None)
def test_json_control_requests_raise_only_decode_error(action: str, value: object) -> None:
    raw = json.dumps({"a": action, "v": value})
    message, error = control_or_error(raw)
    if error is not None:
        assert error.raw == raw
    else:
        assert message is not None
        assert message.action == action
        assert all(type(t) is int and 0 <= t <= 0xFFFFFFFF for t in message.tokens)
        assert (message.mode is not None) == (action == "mode")
