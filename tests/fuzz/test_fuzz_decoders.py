"""Fuzzing of every decoder: any input gives valid events or `trading_ws.DecodeError`, in bounded time and
without memory growth.

Marked ``fuzz`` and left out of the default run. Run them with::

    TRADING_WS_FUZZ_EXAMPLES=200 pytest -m fuzz tests/fuzz    # a quick pass (CI)
    nox -s fuzz                                                # 20000 examples per test, then atheris

``TRADING_WS_FUZZ_EXAMPLES`` (default 20000) is the hypothesis example count of each test,
``TRADING_WS_FUZZ_MEMORY_CALLS`` (default 10000) the number of calls of each memory test and
``TRADING_WS_FUZZ_DEADLINE_MS`` (default 50) the time one decoder call may take.

The targets, seeds, mutation ops and the contract check live in ``fuzz_targets.py`` (shared with the
coverage-guided ``atheris_targets.py``). Here: per target, hypothesis drives (1) mutated seeds, (2)
structured hostile inputs (valid messages with fields replaced by NaN/Infinity literals, huge numbers,
deep nesting, lone surrogates...) and (3) random bytes; (4) round trips through every encoder; (5) fixed
64 KiB worst cases against the deadline; (6) memory under tracemalloc over thousands of calls.
"""

from __future__ import annotations

import gc
import json
import math
import os
import random
import struct
import sys
import tracemalloc
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: the shared strategies

from fuzz_targets import (
    FULL_SAMPLES,
    LIST_SEPARATOR,
    MASTER_ROWS,
    MAX_INPUT,
    OP_KINDS,
    PARTIAL_SAMPLES,
    TARGETS,
    XTS_CODES,
    XTS_EVENTS,
    FuzzFailure,
    T,
    Target,
    apply_ops,
    check,
    clear_caches,
    random_input,
)
from strategies import kite_frames, kite_fuzz_frames, kite_ticks

from trading_ws import (
    IST,
    Broker,
    BrokerError,
    BrokerMessage,
    DecodeError,
    Depth,
    DepthLevel,
    Mode,
    Ohlc,
    OrderUpdate,
    Tick,
)
from trading_ws._model import Candle, InstrumentPropertyChange, MarketStatus, OpenInterest
from trading_ws.brokers import kite as kite_pkg, xts as xts_pkg
from trading_ws.brokers.kite import ControlMessage, decode_control, decode_frame, encode_control, encode_frame
from trading_ws.brokers.xts import (
    MODE_TO_CODE,
    SEGMENT_IDS,
    OpenPacket,
    SioError,
    SioEvent,
    XtsInstrument,
    decode_event,
    encode_event,
    encode_full,
    encode_partial,
    event_name,
    is_index,
    parse_master,
    parse_packet,
    render_master,
    xts_to_datetime,
)

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("TRADING_WS_FUZZ_EXAMPLES", "20000"))
MEMORY_CALLS = int(
    os.environ.get("TRADING_WS_FUZZ_MEMORY_CALLS", str(min(10_000, max(1_000, EXAMPLES // 2))))
)
MEMORY_LIMIT = 1 << 20  # bytes of traced memory a target may gain over MEMORY_CALLS calls

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # `check` times the decoder call itself, without hypothesis' own work
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)
NAMES = sorted(TARGETS)


# ---------------------------------------------------------------------------------------------------------
# Strategies: mutation op lists, hostile JSON values, hostile messages per target.

ops = st.tuples(
    st.integers(0, OP_KINDS - 1),
    st.integers(0, 1 << 17),
    st.integers(0, 1 << 17),
    st.integers(0, 1 << 12),
)
op_lists = st.lists(ops, max_size=8)


def mutations(seeds: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.builds(apply_ops, seeds, op_lists)


class Raw(str):
    """JSON text inserted as is by `dump` (a hostile value JSON cannot otherwise express)."""


def dump(value: Any) -> str:
    """Compact JSON where `Raw` values are written verbatim and str may hold lone surrogates."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return (
            "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{dump(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _json_float(x: float) -> str:
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity") if math.isinf(x) else repr(x)


any_text = st.text() | st.text(st.characters())  # the latter includes lone surrogates
hostile_json = st.one_of(
    st.sampled_from(
        [
            "NaN",
            "Infinity",
            "-Infinity",
            "1e400",
            "-1e400",
            "1e-400",
            "-0",
            "0",
            "-1",
            "null",
            "true",
            "false",
            "[]",
            "{}",
            '""',
            '"abc"',
            '"123"',
            '"-5"',
            '"1e3"',
            '"NaN"',
            '"Infinity"',
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551616",
            "-9223372036854775809",
            "4294967296",
            "1.5",
            "0.1",
            "2e9",
            "1e18",
            '"\\ud800"',
            '"\\udc00x"',
            '"\\u0000"',
            "[1,2,3]",
            '{"Size":1,"Price":"x"}',
            '[{"Size":-1,"Price":1e400,"TotalOrders":1.5}]',
        ]
    ),
    st.integers(-(2**80), 2**80).map(str),
    st.floats().map(_json_float),
    st.integers(1, 20000).map(lambda n: "9" * n),
    st.integers(1, 20000).map(lambda n: "0." + "1" * n),
    st.integers(1, 20000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 20000).map(lambda n: "[" * n),
    st.integers(1, 5000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    any_text.map(lambda s: json.dumps(s, ensure_ascii=False)),
).map(Raw)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            out.append((*prefix, key))
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out.append((*prefix, index))
            out += _paths(child, (*prefix, index))
    return out


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        obj = obj[key]
    if value is _DELETE:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value


_DELETE = object()
_FIELD_NAMES = sorted(
    {path[-1] for samples in FULL_SAMPLES.values() for s in samples for path in _paths(json.loads(s))}
    - {0, 1, 2}
    | {"LastTradedQuantity", "Message", "TradingSession", "marketType", "MarketType", "IndexValue"},
    key=str,
)


@st.composite
def hostile_full_messages(draw: st.DrawFn) -> tuple[int, str]:
    """(code, JSON text): a real sample with fields replaced by hostile values, deleted, or added."""
    code = draw(st.sampled_from(sorted(FULL_SAMPLES)))
    message = json.loads(draw(st.sampled_from(FULL_SAMPLES[code])))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(message)
        replace = draw(st.booleans())
        if paths and replace:
            path = draw(st.sampled_from(paths))
            _set(message, path, draw(hostile_json | st.just(_DELETE)))
        else:
            message[draw(st.sampled_from(_FIELD_NAMES) | any_text)] = draw(hostile_json)
    return code, dump(message)


partial_values = st.one_of(
    st.sampled_from(
        [
            "",
            "0",
            "-0",
            "1.5",
            "nan",
            "inf",
            "-inf",
            "1e400",
            "1e-400",
            "1_000",
            " 1",
            "0x10",
            "\u0661\u0662",  # Arabic-Indic digits, which int() and float() accept
            "x",
            "|",
            "0|0|0",
            "0|0|0|0|1",
            "a|b|c|d",
            "1_5",
            "x_5",
            "1_",
            "_",
            "1_NIFTY 50",
            "1_\ud800",
        ]
    ),
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(repr),
    st.integers(1, 20000).map(lambda n: "9" * n),
    st.integers(1, 12000).map(lambda n: "0|1|2.5|3|" * n),
    st.integers(1, 20000).map(lambda n: "|" * n),
    st.integers(1, 5000).map(lambda n: "1_" + "9" * n),
    st.integers(1, 5000).map(lambda n: "9" * n + "_1"),
    any_text,
)
partial_keys = st.sampled_from(
    [
        *("t", "ltp", "ltq", "tb", "ts", "v", "ap", "ltt", "lut", "pc", "o", "h", "l", "c", "vp", "bi"),
        *("ai", "bt", "bv", "pv", "yh", "yl", "mt", "110", "111", "13", "zz", ""),
    ]
)


@st.composite
def hostile_partial_messages(draw: st.DrawFn) -> tuple[int, str]:
    """(code, text): a real partial sample with pairs replaced, added, dropped or left without ':'."""
    code = draw(st.sampled_from(sorted(PARTIAL_SAMPLES)))
    pairs = [p.partition(":")[::2] for p in draw(st.sampled_from(PARTIAL_SAMPLES[code])).split(",")]
    for _ in range(draw(st.integers(1, 4))):
        choice = draw(st.integers(0, 3))
        if choice == 0 and pairs:
            index = draw(st.integers(0, len(pairs) - 1))
            pairs[index] = (pairs[index][0], draw(partial_values))
        elif choice == 1:
            pairs.insert(
                draw(st.integers(0, len(pairs))), (draw(partial_keys | any_text), draw(partial_values))
            )
        elif choice == 2 and pairs:
            del pairs[draw(st.integers(0, len(pairs) - 1))]
        else:
            pairs.append((draw(any_text), ""))
    return code, ",".join(f"{k}:{v}" if v or draw(st.booleans()) else k for k, v in pairs)


master_values = st.one_of(
    st.sampled_from(
        [
            "",
            "-1",
            "0",
            "1e400",
            "nan",
            "inf",
            "-0",
            "1.5",
            "2026-13-01T14:30:00",
            "9999-12-31T14:30:00",
            "0000-01-01",
            "2026-02-30",
            "CE",
            "PE",
            "3",
            "4",
            "x",
            "|",
            "||",
            "\r",
            "\u0661\u0662",
            "\ud800",
            *sorted(SEGMENT_IDS),
        ]
    ),
    st.integers(1, 20000).map(lambda n: "9" * n),
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(repr),
    any_text,
)


@st.composite
def hostile_master(draw: st.DrawFn) -> str:
    """Master text: real rows with fields replaced, added or dropped, in any mix and line ending."""
    rows = draw(st.lists(st.sampled_from(MASTER_ROWS), min_size=1, max_size=6))
    out = []
    for row in rows:
        fields = row.split("|")
        for _ in range(draw(st.integers(0, 3))):
            index = draw(st.integers(0, len(fields) - 1))
            action = draw(st.integers(0, 2))
            if action == 0:
                fields[index] = draw(master_values)
            elif action == 1:
                fields.insert(index, draw(master_values))
            elif len(fields) > 1:
                del fields[index]
        out.append("|".join(fields))
    return draw(st.sampled_from(["\n", "\r\n", "\n\n"])).join(out)


def _event_bytes(name: str, text: str, form: int) -> bytes:
    return bytes([XTS_EVENTS.index(name), form]) + text.encode("utf-8", "surrogatepass")


def _code_bytes(code: int, text: str, form: int) -> bytes:
    return bytes([XTS_CODES.index(code), form]) + text.encode("utf-8", "surrogatepass")


forms = st.sampled_from([0, 0, 0, 5, 6, 7])


def _socketio_frame(name: str, payload: str, prefix: str, ascii_only: bool) -> bytes:
    return ("42" + prefix + json.dumps([name, payload], ensure_ascii=ascii_only)).encode(
        "utf-8", "surrogatepass"
    )


socketio_prefixes = st.sampled_from(["", "", "", "/", "/md,", "7", "/md,12", "9" * 25, "00"])
full_events = hostile_full_messages().map(lambda m: (event_name(m[0]), m[1]))
partial_events = hostile_partial_messages().map(lambda m: (event_name(m[0], partial=True), m[1]))


def _kite_texts() -> st.SearchStrategy[bytes]:
    kinds = st.sampled_from(["order", "error", "message", "x", ""]).map(json.dumps) | hostile_json
    order = st.builds(lambda v: Raw(dump({"order_id": Raw(v), "status": "COMPLETE"})), hostile_json)
    data = hostile_json | order | st.just(Raw("{}"))
    return st.builds(
        lambda k, d: dump({"type": Raw(k), "data": d}).encode("utf-8", "surrogatepass"), kinds, data
    )


def _kite_controls() -> st.SearchStrategy[bytes]:
    actions = st.sampled_from(["subscribe", "unsubscribe", "mode", "x"]).map(json.dumps) | hostile_json
    tokens = st.lists(hostile_json | st.integers(0, 2**32 - 1).map(lambda i: Raw(str(i))), max_size=5)
    values = (
        hostile_json
        | tokens.map(lambda t: Raw(dump(t)))
        | st.builds(
            lambda m, t: Raw(dump([m, t])),
            st.sampled_from(["ltp", "quote", "full", "FULL"]).map(json.dumps).map(Raw) | hostile_json,
            tokens,
        )
    )
    return st.builds(
        lambda form, a, v: bytes([form]) + dump({"a": Raw(a), "v": v}).encode("utf-8", "surrogatepass"),
        st.integers(0, 1),
        actions,
        values,
    )


def _frames_of(events: st.SearchStrategy[tuple[str, str]]) -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda e, prefix, ascii_only: _socketio_frame(e[0], e[1], prefix, ascii_only),
        events,
        socketio_prefixes,
        st.booleans(),
    )


STRUCTURED: dict[str, st.SearchStrategy[bytes]] = {
    "kite_frame": kite_fuzz_frames() | mutations(kite_frames(max_packets=6)),
    "kite_text": _kite_texts(),
    "kite_control": _kite_controls(),
    "xts_packet": _frames_of(full_events | partial_events),
    "xts_pipeline": _frames_of(full_events | partial_events),
    "xts_message": _frames_of(full_events | partial_events),
    "xts_event": st.builds(lambda e, f: _event_bytes(e[0], e[1], f), full_events | partial_events, forms),
    "xts_full": st.builds(lambda m, f: _code_bytes(m[0], m[1], f), hostile_full_messages(), forms),
    "xts_partial": st.builds(lambda m, f: _code_bytes(m[0], m[1], f), hostile_partial_messages(), forms),
    "xts_list_quotes": st.builds(
        lambda code, ms, f: _code_bytes(code, "\x1e".join(m[1] for m in ms), f),
        st.sampled_from(sorted(FULL_SAMPLES)),
        st.lists(hostile_full_messages(), min_size=1, max_size=5),
        st.sampled_from([0, 6]),
    ),
    "xts_master": hostile_master().map(lambda text: text.encode("utf-8", "surrogatepass")),
}
assert set(TARGETS) <= set(STRUCTURED)  # xts_message: only once the codec has decode_message
assert LIST_SEPARATOR == b"\x1e"


def inputs(target: Target) -> st.SearchStrategy[bytes]:
    seeds = st.sampled_from(target.seeds)
    return st.one_of(
        mutations(seeds),
        st.builds(apply_ops, seeds, st.lists(ops, max_size=32)),  # heavier damage
        mutations(STRUCTURED[target.name]),
        STRUCTURED[target.name],
        st.binary(max_size=4096),
    )


INPUTS = {name: inputs(target) for name, target in TARGETS.items()}


# ---------------------------------------------------------------------------------------------------------
# (1)-(3): any input gives valid events or DecodeError, within the deadline.


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(data=st.data())
def test_decoder_contract(name: str, data: st.DataObject) -> None:
    raw = data.draw(INPUTS[name], label="input")
    size = "under 4 KiB" if len(raw) < 4096 else "4-64 KiB"
    event(f"{check(TARGETS[name], raw)}, {size}")  # shown by --hypothesis-show-statistics


# ---------------------------------------------------------------------------------------------------------
# (4): valid structured inputs round-trip through the encoders (and pass the contract check).


@FUZZ
@given(st.lists(kite_ticks(received_at=T), max_size=12), st.sampled_from([bytes, bytearray, memoryview]))
def test_kite_frame_round_trip(ticks: list[Tick], wrap: Callable[[bytes], Any]) -> None:
    frame = encode_frame(ticks)
    assert decode_frame(wrap(frame), T) == ticks
    check(TARGETS["kite_frame"], frame)


@FUZZ
@given(kite_frames())
def test_kite_frame_reencodes_to_the_same_bytes(frame: bytes) -> None:
    assert encode_frame(decode_frame(frame, T)) == frame  # type: ignore[arg-type]


order_payloads = st.dictionaries(
    st.text(max_size=12),
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    max_size=6,
)


@FUZZ
@given(st.sampled_from(["order", "error", "message"]), order_payloads, st.text())
def test_kite_text_round_trip(kind: str, payload: dict[str, Any], text: str) -> None:
    message = kite_pkg.encode_text(kind, payload if kind == "order" else text)
    expected = {
        "order": OrderUpdate(Broker.KITE, payload, T),
        "error": BrokerError(Broker.KITE, text, T),
        "message": BrokerMessage(Broker.KITE, text, T),
    }[kind]
    assert decode_frame(message, T) == [expected]
    check(TARGETS["kite_text"], message.encode())


@FUZZ
@given(st.sampled_from(["subscribe", "unsubscribe", *Mode]), st.lists(st.integers(0, 2**32 - 1), max_size=40))
def test_kite_control_round_trip(action: str | Mode, tokens: list[int]) -> None:
    if isinstance(action, Mode):
        raw, expected = encode_control("mode", tokens, action), ControlMessage("mode", tuple(tokens), action)
    else:
        raw, expected = encode_control(action, tokens), ControlMessage(action, tuple(tokens))
    assert decode_control(raw) == expected
    assert decode_control(raw.encode()) == expected


XTS_SEGMENTS = st.sampled_from([1, 2, 3, 11, 12, 13, 51])
xts_prices = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False).map(lambda x: round(x, 4))
quantities = st.integers(0, 2**53)
xts_seconds = st.integers(1, 2_000_000_000)


@st.composite
def xts_ticks(draw: st.DrawFn, mode: Mode, one_level: bool) -> Tick:
    """Ticks that survive encode_full/encode_partial then decode_event exactly."""
    segment = draw(XTS_SEGMENTS)
    iid = draw(st.integers(0, 2**40) | st.integers(26000, 26099))
    maybe = st.none() | quantities

    def time_of() -> datetime | None:
        return xts_to_datetime(draw(st.none() | xts_seconds), segment)

    last = draw(xts_prices)
    tradable = not is_index(segment, iid)
    if mode is Mode.LTP:
        return Tick(
            Broker.XTS,
            iid,
            mode,
            tradable,
            last,
            last_quantity=draw(maybe),
            exchange_time=time_of(),
            received_at=T,
            segment=segment,
        )
    ohlc = draw(st.none() | st.builds(Ohlc, xts_prices, xts_prices, xts_prices, xts_prices))
    change = draw(xts_prices) if ohlc is not None else draw(st.none() | xts_prices)
    levels = st.lists(
        st.builds(DepthLevel, xts_prices, quantities, quantities), max_size=1 if one_level else 5
    )
    bids, asks = draw(levels), draw(levels)
    return Tick(
        Broker.XTS,
        iid,
        mode,
        tradable,
        last,
        last_quantity=draw(maybe),
        average_price=draw(st.none() | xts_prices),
        volume=draw(maybe),
        total_buy_quantity=draw(maybe),
        total_sell_quantity=draw(maybe),
        ohlc=ohlc,
        change=change,
        last_trade_time=time_of(),
        exchange_time=time_of(),
        depth=Depth(bids, asks) if bids or asks else None,
        received_at=T,
        segment=segment,
    )


property_texts = st.text(st.characters(blacklist_characters=",:", codec="utf-8"), min_size=1)
xts_other_events = st.one_of(
    st.builds(
        lambda seg, iid, bar, o, h, lo, c, v, oi: Candle(
            Broker.XTS, iid, seg, datetime.fromtimestamp(bar - 19800, IST), o, h, lo, c, v, oi, T
        ),
        XTS_SEGMENTS,
        st.integers(0, 2**40),
        xts_seconds,
        xts_prices,
        xts_prices,
        xts_prices,
        xts_prices,
        quantities,
        st.none() | quantities,
    ),
    st.builds(
        lambda seg, iid, oi, s: OpenInterest(Broker.XTS, iid, seg, oi, xts_to_datetime(s, seg), T),
        XTS_SEGMENTS,
        st.integers(0, 2**40),
        quantities,
        st.none() | xts_seconds,
    ),
    st.builds(
        lambda seg, iid, props: InstrumentPropertyChange(Broker.XTS, iid, seg, props, T),
        XTS_SEGMENTS,
        st.integers(0, 2**40),
        st.dictionaries(
            st.sampled_from(["HighExecBand", "LowExecBand", "TickSize", "Name", "77"]), property_texts
        ),
    ),
)
xts_ticks_any = st.sampled_from(list(Mode)).flatmap(lambda m: xts_ticks(m, one_level=m is Mode.QUOTE))


def _expected_partial(event: Any) -> Any:
    if isinstance(event, Candle):
        return attrs.evolve(event, open_interest=None)
    if isinstance(event, OpenInterest):
        return attrs.evolve(event, exchange_time=None)
    return event


@FUZZ
@given(xts_ticks_any | xts_other_events, st.booleans(), st.booleans())
def test_xts_round_trip_through_socketio(event: Any, partial: bool, nested: bool) -> None:
    code = MODE_TO_CODE[event.mode] if isinstance(event, Tick) else None
    code = code or {Candle: 1505, OpenInterest: 1510, InstrumentPropertyChange: 1105}[type(event)]
    name = event_name(code, partial)
    payload = encode_partial(event) if partial else encode_full(event, nested=nested)
    expected = _expected_partial(event) if partial else event
    assert decode_event(name, payload, T) == [expected]
    frame = encode_event(name, payload)
    packet = parse_packet(frame)
    assert isinstance(packet, SioEvent)
    assert packet.name == name
    assert decode_event(packet.name, packet.args[0], T) == [expected]
    check(TARGETS["xts_pipeline"], frame.encode())


@FUZZ
@given(
    XTS_SEGMENTS,
    any_text,
    st.none() | st.integers(0, 64),
    st.none() | st.integers(0, 9),
    st.none() | xts_seconds,
)
def test_xts_market_status_round_trip(
    segment: int, message: str, session: int | None, market: int | None, seconds: int | None
) -> None:
    event = MarketStatus(Broker.XTS, segment, message, session, xts_to_datetime(seconds, segment), T, market)
    try:
        text = encode_full(event)
    except UnicodeEncodeError:  # msgspec will not write a lone surrogate
        return
    assert decode_event("1507-json-full", text, T) == [event]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)
namespaces = st.just("/") | st.text(st.characters(blacklist_characters=",", codec="utf-8"), max_size=8).map(
    lambda s: "/" + s
)


@FUZZ
@given(
    st.text(),
    st.lists(json_values, max_size=4),
    namespaces,
    st.none() | st.integers(0, 10**18),
    json_values,
    st.text(),
    st.lists(st.text(), max_size=3),
    st.integers(0, 10**9),
    st.integers(0, 10**9),
)
def test_engineio_round_trips(
    name: str,
    args: list[Any],
    namespace: str,
    ack_id: int | None,
    error: Any,
    sid: str,
    upgrades: list[str],
    interval_ms: int,
    timeout_ms: int,
) -> None:
    event = SioEvent(name, tuple(args), namespace, ack_id)
    assert parse_packet(event.encode()) == event
    err = SioError(error, namespace)
    assert parse_packet(err.encode()) == err
    opened = OpenPacket(sid, tuple(upgrades), interval_ms / 1000, timeout_ms / 1000)
    assert parse_packet(opened.encode()) == opened


master_texts = st.text(st.characters(blacklist_characters="|\r\n", blacklist_categories=["Cs"]), max_size=12)
master_finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False).map(lambda x: round(x, 6))


@st.composite
def instruments(draw: st.DrawFn) -> XtsInstrument:
    segment = draw(st.sampled_from(sorted(SEGMENT_IDS)))
    nonempty = master_texts.filter(bool)
    common: dict[str, Any] = {
        "segment": segment,
        "segment_id": SEGMENT_IDS[segment],
        "instrument_id": draw(st.integers(1, 2**53)),  # the parser refuses 0 (no instrument has it)
        "instrument_type": draw(st.sampled_from([1, 2, 4, 8, 16, 256])),
        "name": draw(master_texts),
        "description": draw(master_texts),
        "series": draw(master_texts),
        "display_name": draw(master_texts),
        "tick_size": draw(master_finite),
        "lot_size": draw(st.integers(0, 10**9)),
        "freeze_quantity": draw(st.integers(0, 10**12)),
        "price_band_high": draw(master_finite),
        "price_band_low": draw(master_finite),
        "multiplier": draw(st.integers(0, 10**6)),
        "composite_id": draw(st.integers(0, 10**15)),
    }
    if segment.endswith("CM"):
        return XtsInstrument(**common, isin=draw(st.none() | nonempty))
    option = draw(st.booleans())
    return XtsInstrument(
        **common,
        expiry=draw(st.none() | st.dates(date(1980, 1, 1), date(2100, 12, 31))),
        strike=draw(master_finite) if option else None,
        option_type=draw(st.sampled_from(["CE", "PE"])) if option else None,
        underlying_index_name=draw(st.none() | nonempty),
        underlying_instrument_id=draw(st.none() | st.integers(0, 10**15)),
    )


@FUZZ
@given(st.lists(instruments(), max_size=8))
def test_master_round_trip(records: list[XtsInstrument]) -> None:
    text = render_master(records)
    assert parse_master(text) == records
    check(TARGETS["xts_master"], text.encode())


# ---------------------------------------------------------------------------------------------------------
# (5): fixed worst cases of up to 64 KiB, against the deadline.

_K = MAX_INPUT


def _h(index: int, form: int, payload: str | bytes) -> bytes:
    return bytes([index, form]) + (
        payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload
    )


_E1501 = XTS_EVENTS.index("1501-json-full")
_E1105 = XTS_EVENTS.index("1105-json-full")
_P1501 = XTS_EVENTS.index("1501-json-partial")
_P1105 = XTS_EVENTS.index("1105-json-partial")
_C1501 = XTS_CODES.index(1501)
_C1502 = XTS_CODES.index(1502)
WORST_CASES: list[tuple[str, bytes]] = [
    ("kite_frame", b"\xff\xff" + b"\x00\x00" * (_K // 2 - 1)),  # 32767 empty packets
    ("kite_frame", b"\xff\xff" + (b"\x00\x08" + b"\x00" * 8) * (_K // 10 - 1)),  # 6552 LTP packets
    ("kite_frame", b"\xff\xff" + (b"\x00\xb8" + b"\x01" * 184) * (_K // 186 - 1)),  # 350 full packets
    ("kite_frame", b"\xff\xff" + b"\x00\x07" * (_K // 2 - 1)),  # lengths that never fit
    ("kite_text", b"[" * _K),
    ("kite_text", b'{"type":"order","data":' + b"[" * (_K - 30)),
    ("kite_text", b'{"type":"x","data":"' + b"\xed\xa0\x80" * (_K // 3 - 10) + b'"}'),
    ("kite_text", b'{"type":"error","data":' + b"9" * (_K - 30) + b"}"),
    ("kite_control", b"\x00" + b'{"a":"subscribe","v":[' + b"4294967295," * (_K // 11 - 5) + b"1]}"),
    ("kite_control", b"\x01" + b'{"a":"mode","v":["full",' + b"[" * (_K - 30)),
    ("kite_control", b"\x01" + b'{"a":"\xff' + b"\xff" * (_K - 10)),
    ("xts_packet", b'42["a",' + b"[" * (_K - 10)),
    ("xts_packet", b"42" + b"9" * (_K - 10) + b'["a"]'),
    ("xts_packet", b"42/" + b"a" * (_K - 10)),
    ("xts_packet", b"44" + b"{" * (_K - 2)),
    ("xts_packet", b"0" + b'{"sid":"' + b"\xed\xa0\x80" * (_K // 3 - 5) + b'"}'),
    ("xts_packet", b'42["a","' + b"\\\\" * (_K // 2 - 10) + b'"]'),
    ("xts_packet", b'42["a",' + b"0." + b"1" * (_K - 20) + b"]"),
    ("xts_pipeline", _socketio_frame("1501-json-full", "[" * (_K // 2 - 40), "", True)),
    (
        "xts_pipeline",
        _socketio_frame("1501-json-partial", "t:1_1,bi:" + "0|1|2|3|" * (_K // 8 - 8), "", True),
    ),
    ("xts_event", _h(_E1501, 0, '{"x":' + "[" * (_K - 20))),
    ("xts_event", _h(_E1501, 0, '{"x":' + "[" * (_K // 2 - 20) + "]" * (_K // 2 - 20) + "}")),
    ("xts_event", _h(_E1501, 0, '{"LastTradedPrice":' + "9" * (_K - 40) + "}")),
    ("xts_event", _h(_E1501, 0, '{"ExchangeInstrumentID":"' + "9" * (_K - 40) + '"}')),
    ("xts_event", _h(_E1501, 6, '{"x":' + "[" * 900 + "]" * 900 + "}")),  # a deep dict, via convert
    ("xts_event", _h(_E1105, 0, '{"ExchangeSegment":1,"ExchangeInstrumentID":1,"x":' + "[" * (_K - 60))),
    ("xts_event", _h(_E1105, 0, "{" + ",".join(f'"{i}":{i}' for i in range(_K // 12)) + "}")),
    ("xts_event", _h(_P1501, 0, "t:1_1," + "ltq:" + "9" * (_K - 20))),
    ("xts_event", _h(_P1501, 0, "t:" + "9" * (_K - 10) + "_1")),
    ("xts_event", _h(_P1501, 0, "t:1_1,bi:" + "|" * (_K - 20))),
    ("xts_event", _h(_P1501, 0, "t:1_1,bi:" + "0|1|2.5|3|" * (_K // 10 - 2))),
    ("xts_event", _h(_P1501, 0, "t:1_1" + "," * (_K - 10))),
    ("xts_event", _h(_P1105, 0, "t:1_1," + ",".join(f"{i}:{i}" for i in range(_K // 12)))),
    ("xts_full", _h(_C1502, 0, '{"Bids":[' + '{"Size":1},' * (_K // 12 - 5) + "{}]}")),
    ("xts_full", _h(_C1501, 5, b'{"x":"' + b"\xff" * (_K - 20) + b'"}')),
    ("xts_partial", _h(_C1501, 0, "t:1_1,ltp:" + "1" * 300 + "." + "1" * (_K - 400))),
    ("xts_list_quotes", _h(_C1501, 0, b"\x1e" * (_K - 10))),
    ("xts_list_quotes", _h(_C1501, 0, b"[\x1e" * (_K // 2 - 10))),
    ("xts_master", b"|" * _K),
    ("xts_master", b"\n" * _K),
    ("xts_master", ("\n".join([MASTER_ROWS[3]] * (_K // (len(MASTER_ROWS[3]) + 1)))).encode()),
    ("xts_master", ("NSEFO|1|2|" + "9" * (_K - 40) + "|x").encode()),
    ("xts_master", ("\n".join(["NSECM|" + "|1" * 20] * (_K // 48))).encode()),
]


@pytest.mark.parametrize(
    ("name", "data"), WORST_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(WORST_CASES)]
)
def test_worst_cases_within_the_deadline(name: str, data: bytes) -> None:
    assert len(data) <= MAX_INPUT + 2
    check(TARGETS[name], data)


# ---------------------------------------------------------------------------------------------------------
# (6): no memory growth.


def _time_caches() -> list[dict[Any, Any]]:
    return [kite_pkg._codec._TIME_CACHE, xts_pkg._codec._NSE_TIMES, xts_pkg._codec._OTHER_TIMES]


def memory_growth(target: Target, calls: int) -> int:
    """Bytes of traced memory gained over `calls` calls of `target` on mutated inputs, after a warm-up and
    with the (bounded by design) timestamp caches emptied before each measurement."""
    rng = random.Random(f"memory-{target.name}")
    corpus = [random_input(target, rng) for _ in range(400)]
    corpus += list(target.seeds) * 4  # valid inputs keep the most alive (events, cached timestamps)

    def run(count: int) -> None:
        for i in range(count):
            check(target, corpus[i % len(corpus)], timed=False)

    run(len(corpus))  # warm-up: msgspec's key cache, interned strings, lazy imports
    tracemalloc.start()
    try:
        run(len(corpus))
        clear_caches()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        run(calls)
        for cache in _time_caches():
            assert len(cache) <= 4096
        clear_caches()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", NAMES)
def test_no_memory_growth(name: str) -> None:
    growth = memory_growth(TARGETS[name], MEMORY_CALLS)
    assert growth < MEMORY_LIMIT, f"{name}: {growth} bytes more after {MEMORY_CALLS} calls"


_leaked: list[bytes] = []


def test_the_memory_check_sees_a_leak() -> None:
    def leaky(data: bytes) -> object:
        _leaked.append(bytes(2048))
        return []

    target = Target("leaky", lambda d: (d,), leaky, lambda r, a: None, lambda e, a: None, (b"x",))
    try:
        assert memory_growth(target, 1000) > MEMORY_LIMIT
    finally:
        _leaked.clear()


def test_time_caches_stay_bounded() -> None:
    clear_caches()
    frames = [struct.pack(">HH8I", 1, 32, 1001 << 8 | 9, 1, 1, 1, 1, 1, 0, s) for s in range(1, 10_000)]
    for frame in frames:
        decode_frame(frame, T)
    for s in range(1, 10_000):
        decode_event("1512-json-partial", f"t:1_1,ltp:1,lut:{s}", T)  # the 1980 base (NSE)
        decode_event("1512-json-partial", f"t:11_1,ltp:1,lut:{s}", T)  # the 1970 base (BSE)
    for cache in _time_caches():
        assert 0 < len(cache) <= 4096
    clear_caches()


# ---------------------------------------------------------------------------------------------------------
# Regressions: inputs that once escaped as something other than DecodeError.

REGRESSIONS: list[tuple[str, bytes]] = [
    # Engine.IO/Socket.IO: a lone surrogate in the JSON text raised UnicodeEncodeError (each decode path).
    ("xts_packet", '42["a\ud800"]'.encode("utf-8", "surrogatepass")),
    ("xts_packet", '42/x,["a\ud800"]'.encode("utf-8", "surrogatepass")),
    ("xts_packet", '0{"sid":"\ud800"}'.encode("utf-8", "surrogatepass")),
    ("xts_packet", "44\ud800".encode("utf-8", "surrogatepass")),
    # ...an ack id of more than 4300 digits raised ValueError from int().
    ("xts_packet", b"42" + b"1" * 5000 + b'["a"]'),
    # ...nesting deeper than the recursion limit raised RecursionError.
    ("xts_packet", b'42["a",' + b"[" * 5000),
    ("xts_packet", b"44" + b"[" * 5000),
    # XTS full messages: RecursionError from msgspec (skipped unknown keys, 1105 values, dict input).
    ("xts_event", _h(_E1501, 0, '{"x":' + "[" * 5000 + "]" * 5000 + "}")),
    (
        "xts_event",
        _h(_E1105, 0, '{"ExchangeSegment":1,"ExchangeInstrumentID":1,"x":' + "[" * 1000 + "]" * 1000 + "}"),
    ),
    ("xts_full", _h(_C1501, 0, '{"x":' + "[" * 5000)),
    ("xts_list_quotes", _h(_C1501, 0, '{"x":' + "[" * 5000)),
    # Kite control requests: bytes that are not UTF-8 inside a JSON string raised UnicodeDecodeError.
    ("kite_control", b'\x01{"a":"\xff","v":[]}'),
    ("kite_control", b'\x01{"a":"subscribe","v":["\xc0\x80"]}'),
]


@pytest.mark.parametrize(
    ("name", "data"), REGRESSIONS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(REGRESSIONS)]
)
def test_regressions(name: str, data: bytes) -> None:
    check(TARGETS[name], data)


def test_list_quotes_keeps_only_the_first_error() -> None:
    # Every bad entry's DecodeError (with its traceback's frames) used to be kept until the end: 32k bad
    # entries took 60 MB and 366 ms (superlinear, from the garbage collector walking them all).
    entries = ["["] * 20_000
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="20000 malformed XTS 1501 snapshot") as info:
            xts_pkg.decode_list_quotes(1501, entries, T)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.raw == "["
    assert peak < MEMORY_LIMIT


def test_lenient_master_errors_keep_no_traceback() -> None:
    # The tracebacks (and those of the causes) of the kept errors held every bad row split into fields:
    # 100k bad rows of 186 bytes retained 374 MB; now about 1.1 KB a row (the error, its cause, the line).
    row = MASTER_ROWS[3].replace("|350|", "|3x0|")  # a lot size that is not a number
    good, bad = xts_pkg.parse_master_lenient("\n".join([row] * 2000))
    assert good == []
    assert len(bad) == 2000
    for error in bad:
        chain: list[BaseException | None] = [error]
        seen: set[int] = set()
        while chain:
            e = chain.pop()
            if e is not None and id(e) not in seen:
                seen.add(id(e))
                assert e.__traceback__ is None
                chain += (e.__cause__, e.__context__)
        assert len(seen) >= 2  # the cause is still there
    assert "line 2000" in str(bad[-1])


def test_deep_dict_data_raises_decode_error() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(DecodeError) as info:  # msgspec.convert, then even repr, hit the recursion limit
        decode_event("1501-json-full", {"ExchangeSegment": 1, "x": deep}, T)
    assert isinstance(info.value.raw, str)


def test_the_check_reports_other_exceptions() -> None:
    def boom(data: bytes) -> object:
        raise KeyError("boom")

    target = Target("boom", lambda d: (d,), boom, lambda r, a: None, lambda e, a: None, (b"",))
    with pytest.raises(FuzzFailure, match=r"boom raised KeyError.*on input \(b'xy'"):
        check(target, b"xy")
