"""The data model, the error tree, the backoff, and the public names."""

from __future__ import annotations

import importlib
import inspect
import math
import pickle
import random
import re
import struct
from datetime import datetime
from itertools import islice
from types import ModuleType

import attrs
import pytest
from hypothesis import given, settings, strategies as st
from strategies import depths, status_events, ticks

import trading_ws
from trading_ws import (
    IST,
    Backoff,
    Broker,
    ConfigurationError,
    Connected,
    DecodeError,
    Depth,
    DepthLevel,
    Mode,
    Ohlc,
    OrderUpdate,
    Tick,
    TradingWsError,
    _model as model_module,
)
from trading_ws._model import BookTickBuilder, full_tick, ltp_tick, quote_tick
from trading_ws.brokers.kite import decode_frame, encode_frame

# ---------------------------------------------------------------------------------------------------------
# Mode.


def test_mode_order() -> None:
    assert Mode.LTP < Mode.QUOTE < Mode.FULL
    assert Mode.FULL > Mode.QUOTE > Mode.LTP
    assert Mode.LTP <= Mode.LTP <= Mode.QUOTE <= Mode.FULL <= Mode.FULL
    assert Mode.FULL >= Mode.FULL >= Mode.QUOTE >= Mode.LTP
    assert not Mode.FULL < Mode.LTP
    assert not Mode.QUOTE > Mode.FULL
    assert not Mode.QUOTE < Mode.QUOTE
    assert sorted([Mode.FULL, Mode.LTP, Mode.QUOTE]) == [Mode.LTP, Mode.QUOTE, Mode.FULL]
    assert max(Mode) is Mode.FULL
    assert min(Mode) is Mode.LTP
    assert [m.rank for m in (Mode.LTP, Mode.QUOTE, Mode.FULL)] == [0, 1, 2]


@given(st.sampled_from(Mode), st.sampled_from(Mode))
@settings(max_examples=30, deadline=None)
def test_mode_order_follows_rank(a: Mode, b: Mode) -> None:
    assert (a < b) == (a.rank < b.rank)
    assert (a <= b) == (a.rank <= b.rank)
    assert (a > b) == (a.rank > b.rank)
    assert (a >= b) == (a.rank >= b.rank)
    assert (a == b) == (a.rank == b.rank)


def test_mode_values_are_the_kite_names() -> None:
    assert [m.value for m in Mode] == ["ltp", "quote", "full"]
    assert Mode("full") is Mode.FULL
    as_text: str = Mode.QUOTE  # a StrEnum: modes are their Kite names
    assert as_text == "quote"
    assert str(Mode.LTP) == "ltp"


def test_mode_does_not_compare_with_numbers() -> None:
    assert Mode.LTP.__lt__(1) is NotImplemented
    assert Mode.LTP.__ge__(None) is NotImplemented
    with pytest.raises(TypeError):
        _ = Mode.LTP < 1
    with pytest.raises(TypeError):
        _ = Mode.FULL >= 0


def test_broker_values() -> None:
    assert [b.value for b in Broker] == ["kite", "xts"]
    assert Broker("kite") is Broker.KITE


def test_ist() -> None:
    assert IST.utcoffset(None).total_seconds() == 5.5 * 3600
    assert IST.tzname(None) == "IST"


# ---------------------------------------------------------------------------------------------------------
# Depth.

BIDS = [DepthLevel(100.5, 10, 1), DepthLevel(100.45, 20, 2)]
ASKS = [DepthLevel(100.55, 5, 1)]


def lazy_depth(
    bids: list[tuple[int, int, int]], asks: list[tuple[int, int, int]], token: int = 408065
) -> Depth:
    """A Depth decoded from a Kite full packet: bids/asks not yet built."""
    depth_bytes = b"".join(struct.pack(">IIHxx", q, p, o) for q, p, o in [*bids, *asks])
    packet = struct.pack(">16I", token, *([0] * 15)) + depth_bytes
    frame = struct.pack(">HH", 1, len(packet)) + packet
    (tick,) = decode_frame(frame, 0.0)
    assert isinstance(tick, Tick)
    assert tick.depth is not None
    return tick.depth


FIVE_BIDS = [(10 * i, 10050 - 5 * i, i) for i in range(1, 6)]
FIVE_ASKS = [(20 * i, 10055 + 5 * i, i + 5) for i in range(1, 6)]


def test_depth_fields() -> None:
    depth = Depth(BIDS, ASKS)
    assert depth.bids == BIDS
    assert depth.asks == ASKS
    assert depth.bids[0].price == 100.5
    assert depth.bids[0].quantity == 10
    assert depth.bids[0].orders == 1


def test_depth_equality() -> None:
    assert Depth(BIDS, ASKS) == Depth(list(BIDS), list(ASKS))
    assert Depth(tuple(BIDS), tuple(ASKS)) == Depth(BIDS, ASKS)  # sequences compare by content
    assert Depth(BIDS, ASKS) != Depth(ASKS, BIDS)
    assert Depth(BIDS, ASKS) != Depth(BIDS, [])
    assert Depth([], []) == Depth([], [])
    assert Depth(BIDS, ASKS) != (BIDS, ASKS)
    assert Depth(BIDS, ASKS).__eq__(object()) is NotImplemented


def test_depth_is_unhashable() -> None:
    with pytest.raises(TypeError):
        hash(Depth(BIDS, ASKS))


def test_depth_repr() -> None:
    assert repr(Depth(BIDS[:1], [])) == (
        "Depth(bids=[DepthLevel(price=100.5, quantity=10, orders=1)], asks=[])"
    )
    assert repr(Depth(tuple(BIDS), ASKS)) == repr(Depth(BIDS, ASKS))


def built_sides(depth: Depth) -> tuple[bool, bool]:
    """Whether the bid and ask `DepthLevel` lists exist yet (white-box: the laziness is the point)."""
    return (depth._bids is not None, depth._asks is not None)


def test_lazy_depth_is_built_on_first_read_and_kept() -> None:
    depth = lazy_depth(FIVE_BIDS, FIVE_ASKS)
    assert built_sides(depth) == (False, False)
    bids = depth.bids
    assert built_sides(depth) == (True, True)  # one read builds both sides
    assert depth.bids is bids
    assert depth.asks is depth.asks
    assert list(bids) == [DepthLevel(p / 100, q, o) for q, p, o in FIVE_BIDS]
    assert list(depth.asks) == [DepthLevel(p / 100, q, o) for q, p, o in FIVE_ASKS]


def test_lazy_depth_reading_asks_first() -> None:
    depth = lazy_depth(FIVE_BIDS, FIVE_ASKS)
    assert depth.asks[0] == DepthLevel(100.6, 20, 6)
    assert depth.bids[0] == DepthLevel(100.45, 10, 1)


def test_lazy_depth_uses_the_segment_divisor() -> None:
    depth = lazy_depth(FIVE_BIDS, FIVE_ASKS, token=1000 << 8 | 3)  # CDS: 1e7
    assert depth.bids[0].price == 10045 / 1e7


def test_lazy_and_eager_depth_are_equal_and_print_alike() -> None:
    lazy = lazy_depth(FIVE_BIDS, FIVE_ASKS)
    eager = Depth(
        [DepthLevel(p / 100, q, o) for q, p, o in FIVE_BIDS],
        [DepthLevel(p / 100, q, o) for q, p, o in FIVE_ASKS],
    )
    assert lazy == eager
    assert eager == lazy_depth(FIVE_BIDS, FIVE_ASKS)
    assert repr(lazy_depth(FIVE_BIDS, FIVE_ASKS)) == repr(eager)
    assert lazy != lazy_depth(FIVE_ASKS, FIVE_BIDS)
    assert lazy == lazy_depth(FIVE_BIDS, FIVE_ASKS)


def test_lazy_depth_survives_pickle() -> None:
    lazy = lazy_depth(FIVE_BIDS, FIVE_ASKS)
    assert pickle.loads(pickle.dumps(lazy)) == lazy


@given(depths())
@settings(max_examples=50, deadline=None)
def test_depth_equals_its_copy(depth: Depth) -> None:
    copy = Depth(list(depth.bids), list(depth.asks))
    assert copy == depth
    assert repr(copy) == repr(depth)


# ---------------------------------------------------------------------------------------------------------
# Tick and the other events.


def test_tick_defaults() -> None:
    tick = Tick(Broker.KITE, 408065, Mode.LTP, True, 1500.25)
    assert (tick.broker, tick.instrument_token, tick.mode, tick.tradable, tick.last_price) == (
        Broker.KITE,
        408065,
        Mode.LTP,
        True,
        1500.25,
    )
    optional = [
        "last_quantity",
        "average_price",
        "volume",
        "total_buy_quantity",
        "total_sell_quantity",
        "ohlc",
        "change",
        "last_trade_time",
        "exchange_time",
        "oi",
        "oi_day_high",
        "oi_day_low",
        "depth",
        "symbol",
        "segment",
    ]
    for name in optional:
        assert getattr(tick, name) is None, name
    assert tick.received_at == 0.0
    assert {f.name for f in attrs.fields(Tick)} == {
        "broker",
        "instrument_token",
        "mode",
        "tradable",
        "last_price",
        "received_at",
        *optional,
    }


def test_tick_field_order_is_positional_api() -> None:
    # ``Tick(...)`` takes its fields positionally, and applications do: the order is part of the contract.
    # A field added or moved fails here, and must then be added to the builders (ltp_tick, quote_tick,
    # full_tick; test_builders_set_every_field checks that they do).
    assert [f.name for f in attrs.fields(Tick)] == [
        "broker",
        "instrument_token",
        "mode",
        "tradable",
        "last_price",
        "last_quantity",
        "average_price",
        "volume",
        "total_buy_quantity",
        "total_sell_quantity",
        "ohlc",
        "change",
        "last_trade_time",
        "exchange_time",
        "oi",
        "oi_day_high",
        "oi_day_low",
        "depth",
        "received_at",
        "symbol",
        "segment",
    ]


def test_mode_rank_is_a_plain_int_per_member() -> None:
    assert {m: m.rank for m in Mode} == {Mode.LTP: 0, Mode.QUOTE: 1, Mode.FULL: 2}
    assert all(type(m.rank) is int for m in Mode)
    assert Mode("quote").rank == 1
    assert pickle.loads(pickle.dumps(Mode.FULL)).rank == 2


WHEN = datetime(2024, 6, 3, 9, 15, 2, tzinfo=IST)
BOOK = Depth([DepthLevel(1.0, 2, 3)], [DepthLevel(1.5, 4, 5)])


def test_ltp_builder_equals_the_keyword_tick() -> None:
    tick = ltp_tick(Broker.XTS, 2885, True, 1500.25, 7, WHEN, 9.5, 1, symbol="NSE:RELIANCE")
    assert tick == Tick(
        Broker.XTS,
        2885,
        Mode.LTP,
        True,
        1500.25,
        last_quantity=7,
        exchange_time=WHEN,
        received_at=9.5,
        symbol="NSE:RELIANCE",
        segment=1,
    )
    assert tick.mode is Mode.LTP
    assert ltp_tick(Broker.KITE, 1, False, 2.0, None, None, 0.0, 9) == Tick(
        Broker.KITE, 1, Mode.LTP, False, 2.0, segment=9
    )


@pytest.mark.parametrize(("builder", "mode"), [(quote_tick, Mode.QUOTE), (full_tick, Mode.FULL)])
def test_book_builders_equal_the_keyword_tick(builder: BookTickBuilder, mode: Mode) -> None:
    ohlc = Ohlc(1.0, 2.0, 0.5, 1.5)
    later = datetime(2024, 6, 3, 9, 15, 3, tzinfo=IST)
    tick = builder(
        Broker.KITE, 408065, True, 1.25, 3, 1.2, 400, 10, 20, ohlc, -16.6, WHEN, later, BOOK, 4.0, 1,
        oi=11, oi_day_high=12, oi_day_low=13, symbol="NSE:INFY",
    )  # fmt: skip
    assert tick == Tick(
        broker=Broker.KITE,
        instrument_token=408065,
        mode=mode,
        tradable=True,
        last_price=1.25,
        last_quantity=3,
        average_price=1.2,
        volume=400,
        total_buy_quantity=10,
        total_sell_quantity=20,
        ohlc=ohlc,
        change=-16.6,
        last_trade_time=WHEN,
        exchange_time=later,
        oi=11,
        oi_day_high=12,
        oi_day_low=13,
        depth=BOOK,
        received_at=4.0,
        symbol="NSE:INFY",
        segment=1,
    )
    assert tick.mode is mode
    bare = builder(
        Broker.XTS, 1, False, 2.0, None, None, None, None, None, None, None, None, None, None, 0.0, None
    )
    assert bare == Tick(Broker.XTS, 1, mode, False, 2.0)


def test_builders_set_every_field() -> None:
    # A field added to Tick but not to a builder would be an unset slot: reading it raises AttributeError.
    names = [f.name for f in attrs.fields(Tick)]
    built = [
        ltp_tick(Broker.KITE, 1, True, 1.0, None, None, 0.0, 1),
        quote_tick(
            Broker.KITE, 1, True, 1.0, None, None, None, None, None, None, None, None, None, None, 0.0, 1
        ),
        full_tick(
            Broker.KITE, 1, True, 1.0, None, None, None, None, None, None, None, None, None, None, 0.0, 1
        ),
    ]
    for tick in built:
        assert [name for name in names if not hasattr(tick, name)] == []
        assert attrs.evolve(tick) == tick
    # Every builder argument is a Tick field, named as the field is.
    for builder in (ltp_tick, quote_tick, full_tick):
        params = list(inspect.signature(builder).parameters)
        assert set(params) <= set(names), builder.__name__
        assert "mode" not in params
    assert [b.__name__ for b in (ltp_tick, quote_tick, full_tick)] == ["ltp_tick", "quote_tick", "full_tick"]


def test_model_knows_no_wire_format() -> None:
    # docs/architecture.md: no module outside brokers/<name>/ knows a wire format.
    source = inspect.getsource(model_module)
    assert "import struct" not in source
    assert "struct." not in source
    assert not any(name.startswith(("_KITE", "_XTS")) for name in vars(model_module))
    assert set(Depth.__slots__) == {"_bids", "_asks"}


def test_tick_is_a_slotted_value() -> None:
    tick = Tick(Broker.XTS, 1, Mode.QUOTE, True, 1.0, ohlc=Ohlc(1.0, 2.0, 0.5, 1.5))
    assert not hasattr(tick, "__dict__")
    assert tick == Tick(Broker.XTS, 1, Mode.QUOTE, True, 1.0, ohlc=Ohlc(1.0, 2.0, 0.5, 1.5))
    assert tick != attrs.evolve(tick, last_price=2.0)
    assert attrs.evolve(tick, symbol="NSE:INFY").symbol == "NSE:INFY"
    assert tick.symbol is None


@given(ticks())
@settings(max_examples=50, deadline=None)
def test_tick_equals_its_evolved_copy_and_pickles(tick: Tick) -> None:
    assert attrs.evolve(tick) == tick
    assert pickle.loads(pickle.dumps(tick)) == tick


def test_ohlc_field_names() -> None:
    ohlc = Ohlc(1.0, 2.0, 0.5, 1.5)
    assert (ohlc.open, ohlc.high, ohlc.low, ohlc.close) == (1.0, 2.0, 0.5, 1.5)


def test_order_update_properties() -> None:
    update = OrderUpdate(Broker.KITE, {"order_id": 220303000308932, "status": "REJECTED"}, 1.0)
    assert update.order_id == "220303000308932"
    assert update.status == "REJECTED"
    empty = OrderUpdate(Broker.KITE, {}, 1.0)
    assert empty.order_id is None
    assert empty.status is None


@given(status_events())
@settings(max_examples=50, deadline=None)
def test_status_events_are_frozen_and_hashable(event: object) -> None:
    assert attrs.has(type(event))
    assert hash(event) == hash(attrs.evolve(event))  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.broker = Broker.XTS  # type: ignore[attr-defined]


def test_connected_fields() -> None:
    event = Connected(Broker.KITE, 0, 1.5)
    assert (event.broker, event.connection, event.at) == (Broker.KITE, 0, 1.5)


# ---------------------------------------------------------------------------------------------------------
# Errors.


def test_error_tree() -> None:
    names = {
        "AuthenticationError": "ConnectError",
        "ConnectTimeout": "ConnectError",
        "RateLimitedError": "ConnectError",
        "SubscriptionLimitError": "SubscriptionError",
        "ConnectError": "TradingWsError",
        "SubscriptionError": "TradingWsError",
        "DecodeError": "TradingWsError",
        "FeedClosedError": "TradingWsError",
        "ConfigurationError": "TradingWsError",
    }
    for name, parent in names.items():
        assert issubclass(getattr(trading_ws, name), getattr(trading_ws, parent)), name
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(TradingWsError, Exception)


def test_decode_error_carries_raw_and_events_and_pickles() -> None:
    error = DecodeError("bad frame", b"\x00\x01", ["event"])
    assert str(error) == "bad frame"
    assert error.raw == b"\x00\x01"
    assert list(error.events) == ["event"]
    assert DecodeError("x", "text").events == ()
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is DecodeError
    assert (str(copy), copy.raw, list(copy.events)) == ("bad frame", b"\x00\x01", ["event"])


def test_decode_error_from_a_frame_pickles_with_its_ticks() -> None:
    tick = Tick(Broker.KITE, 408065, Mode.LTP, True, 1.0, received_at=2.0, segment=1)
    frame = encode_frame([tick]) + b"\x00"
    with pytest.raises(DecodeError) as info:
        decode_frame(frame, 2.0)
    copy = pickle.loads(pickle.dumps(info.value))
    assert copy.raw == frame
    assert list(copy.events) == [tick]


# ---------------------------------------------------------------------------------------------------------
# Backoff.


def test_backoff_defaults() -> None:
    backoff = Backoff()
    assert (backoff.initial, backoff.factor, backoff.cap, backoff.jitter, backoff.max_attempts) == (
        0.5,
        2.0,
        30.0,
        0.2,
        None,
    )


def test_backoff_exact_sequence_without_jitter() -> None:
    delays = Backoff(jitter=0).delays()
    assert list(islice(delays, 10)) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    assert next(delays) == 30.0  # forever when max_attempts is None


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        (Backoff(initial=1, factor=3, cap=20, jitter=0), [1, 3, 9, 20, 20, 20]),
        (Backoff(initial=2, factor=1, cap=60, jitter=0), [2, 2, 2, 2, 2, 2]),
        (Backoff(initial=100, factor=2, cap=30, jitter=0), [30, 30, 30, 30, 30, 30]),
        (Backoff(initial=0.25, factor=10, cap=1e300, jitter=0), [0.25, 2.5, 25.0, 250.0, 2500.0, 25000.0]),
        (Backoff(initial=1, factor=1e308, cap=5, jitter=0), [1, 5, 5, 5, 5, 5]),  # no overflow
    ],
)
def test_backoff_sequences(backoff: Backoff, expected: list[float]) -> None:
    assert list(islice(backoff.delays(), len(expected))) == expected


def test_backoff_max_attempts_stops_the_iterator() -> None:
    assert list(Backoff(jitter=0, max_attempts=3).delays()) == [0.5, 1.0, 2.0]
    assert list(Backoff(jitter=0, max_attempts=0).delays()) == []
    delays = Backoff(jitter=0.5, max_attempts=2).delays(random.Random(1))
    assert len([next(delays), next(delays)]) == 2
    with pytest.raises(StopIteration):
        next(delays)


def test_backoff_restarts_with_every_call() -> None:
    backoff = Backoff(jitter=0, max_attempts=4)
    assert list(backoff.delays()) == list(backoff.delays()) == [0.5, 1.0, 2.0, 4.0]


def test_backoff_seeded_jitter_is_reproducible_and_varies() -> None:
    backoff = Backoff(jitter=0.2, max_attempts=20)
    first = list(backoff.delays(random.Random(7)))
    assert first == list(backoff.delays(random.Random(7)))
    assert first != list(backoff.delays(random.Random(8)))
    assert len(first) == 20
    assert first[:5] != [0.5, 1.0, 2.0, 4.0, 8.0]


def test_backoff_keeps_jittering_at_the_cap() -> None:
    # Clients that have all reached the cap must still spread out: the base stops growing at the cap
    # and the jitter then spreads delays over [cap * (1 - jitter), cap].
    delays = list(Backoff(initial=1, factor=2, cap=4, jitter=0.5, max_attempts=60).delays(random.Random(3)))
    at_cap = delays[2:]
    assert all(2.0 <= d <= 4.0 for d in at_cap)
    assert sum(d < 4.0 for d in at_cap) >= 15
    assert min(at_cap) < 3.0


def test_backoff_without_rng_still_jitters_within_bounds() -> None:
    for delay, base in zip(Backoff(max_attempts=8).delays(), [0.5, 1, 2, 4, 8, 16, 30, 30], strict=True):
        assert base * 0.8 <= delay <= min(30.0, base * 1.2)


@given(
    initial=st.floats(0.001, 100.0),
    factor=st.floats(1.0, 5.0),
    cap=st.floats(0.001, 300.0),
    jitter=st.floats(0.0, 0.99),
    seed=st.integers(0, 2**32),
)
@settings(max_examples=200, deadline=None)
def test_backoff_jitter_stays_within_bounds(
    initial: float, factor: float, cap: float, jitter: float, seed: int
) -> None:
    backoff = Backoff(initial=initial, factor=factor, cap=cap, jitter=jitter, max_attempts=15)
    delays = list(backoff.delays(random.Random(seed)))
    assert len(delays) == 15
    base = initial
    for delay in delays:
        assert delay <= cap
        assert delay > 0
        expected = min(base, cap)
        assert min(base * (1 - jitter), cap) * (1 - 1e-12) <= delay
        assert delay <= min(cap, base * (1 + jitter)) * (1 + 1e-12)
        assert math.isfinite(delay)
        assert delay >= expected * (1 - jitter) * (1 - 1e-12)
        base = min(base * factor, cap)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"initial": 0}, "initial"),
        ({"initial": -1}, "initial"),
        ({"initial": math.inf}, "initial"),
        ({"initial": math.nan}, "initial"),
        ({"cap": 0}, "cap"),
        ({"cap": -5}, "cap"),
        ({"cap": math.inf}, "cap"),
        ({"cap": math.nan}, "cap"),
        ({"factor": 0.5}, "factor"),
        ({"factor": 0}, "factor"),
        ({"factor": math.inf}, "factor"),
        ({"factor": math.nan}, "factor"),
        ({"jitter": -0.1}, "jitter"),
        ({"jitter": 1}, "jitter"),
        ({"jitter": 1.5}, "jitter"),
        ({"jitter": math.nan}, "jitter"),
        ({"max_attempts": -1}, "max_attempts"),
    ],
)
def test_backoff_rejects_invalid_configuration(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Backoff(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # ConfigurationError is a ValueError too
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_backoff_accepts_edge_values() -> None:
    assert Backoff(factor=1, jitter=0, max_attempts=0).factor == 1
    assert Backoff(jitter=0.999).jitter == 0.999


def test_backoff_is_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Backoff().cap = 5.0  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------------------
# Public names.

PUBLIC_MODULES = ["trading_ws", "trading_ws.brokers.kite"]


def _isort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps ``__all__`` in: CONSTANTS, then Classes, then functions."""
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


@pytest.fixture(params=PUBLIC_MODULES)
def module(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(request.param)


def test_all_names_exist(module: ModuleType) -> None:
    assert module.__all__
    for name in module.__all__:
        assert hasattr(module, name), f"{module.__name__}.{name} is in __all__ but missing"
    assert len(set(module.__all__)) == len(module.__all__)


def test_all_is_sorted(module: ModuleType) -> None:
    assert list(module.__all__) == sorted(module.__all__, key=_isort_key)


def test_public_classes_and_their_methods_have_docstrings(module: ModuleType) -> None:
    checked = 0
    for name in module.__all__:
        obj = getattr(module, name)
        if not inspect.isclass(obj):
            continue
        checked += 1
        doc = obj.__dict__.get("__doc__") or ""
        assert doc.strip(), f"class {name} has no docstring"
        for attr, member in vars(obj).items():
            if attr.startswith("_"):
                continue
            if isinstance(member, property) or inspect.isfunction(member):
                assert (member.__doc__ or "").strip(), f"{name}.{attr} has no docstring"
    assert checked > 0


def test_public_functions_have_docstrings(module: ModuleType) -> None:
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isfunction(obj):
            assert (obj.__doc__ or "").strip(), f"{name} has no docstring"


def test_top_level_exports_the_model_errors_and_backoff() -> None:
    for name in ["Tick", "Depth", "DepthLevel", "Mode", "Backoff", "DecodeError", "IST", "Event"]:
        assert name in trading_ws.__all__
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", trading_ws.__version__)


def test_mode_compares_by_rank_with_plain_strings() -> None:
    assert Mode.FULL >= "quote"
    assert Mode.LTP < "full"
    assert not (Mode.QUOTE > "full")
    with pytest.raises(TypeError):
        _ = Mode.FULL < "bogus"
    with pytest.raises(TypeError):
        _ = Mode.FULL < 3
