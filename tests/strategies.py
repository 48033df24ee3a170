"""Hypothesis strategies for the trading_ws model and the Kite wire format, shared by the test files.

``tests/`` has no ``__init__.py``, so pytest puts it on ``sys.path``: import these as
``from strategies import kite_ticks, ...``.

Two families:

* model values (`ticks`, `depths`, `status_events`...) with any plausible content, for tests that only
  move events around;
* Kite-representable values (`kite_ticks`, `kite_raw_packets`, `kite_frames`...), which survive
  ``decode_frame(encode_frame(...))`` exactly: prices are ``raw / divisor`` with a raw integer below
  2**31, integers below 2**31 (depth orders below 2**16), exchange timestamps whole seconds in IST.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import datetime

from hypothesis import strategies as st

from trading_ws import (
    IST,
    Broker,
    BrokerError,
    BrokerMessage,
    Connected,
    Depth,
    DepthLevel,
    Disconnected,
    Mode,
    Ohlc,
    OrderUpdate,
    Reconnecting,
    Resubscribed,
    StatusEvent,
    Tick,
)
from trading_ws.brokers.kite import price_divisor

__all__ = [
    "INDICES_SEGMENT",
    "KITE_PACKET_SIZES",
    "KITE_SEGMENTS",
    "TRADABLE_SEGMENTS",
    "U31",
    "U32",
    "brokers",
    "build_frame",
    "depth_levels",
    "depths",
    "ist_datetimes",
    "kite_change",
    "kite_depths",
    "kite_frames",
    "kite_fuzz_frames",
    "kite_prices",
    "kite_raw_packets",
    "kite_ticks",
    "kite_tokens",
    "modes",
    "ohlcs",
    "order_updates",
    "status_events",
    "text_events",
    "ticks",
]

U31 = 2**31 - 1
"""The largest value every Kite client reads the same way (JS reads int32 as signed)."""
U32 = 2**32 - 1
U16 = 2**16 - 1

INDICES_SEGMENT = 9
KITE_SEGMENTS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 12)
"""The segments Kite documents: nse nfo cds bse bfo bcd mcx mcxsx indices nco."""
TRADABLE_SEGMENTS: tuple[int, ...] = tuple(s for s in KITE_SEGMENTS if s != INDICES_SEGMENT)
KITE_PACKET_SIZES: tuple[int, ...] = (8, 28, 32, 44, 184)

brokers = st.sampled_from(Broker)
modes = st.sampled_from(Mode)


# ---------------------------------------------------------------------------------------------------------
# Model values.


def ist_datetimes(min_seconds: int = 1, max_seconds: int = U31) -> st.SearchStrategy[datetime]:
    """Timezone-aware IST datetimes on whole seconds (UNIX seconds in the given range)."""
    return st.integers(min_seconds, max_seconds).map(lambda s: datetime.fromtimestamp(s, IST))


_finite_prices = st.floats(min_value=0.0, max_value=1e7, allow_nan=False, allow_infinity=False)
_quantities = st.integers(0, U31)


def depth_levels(prices: st.SearchStrategy[float] = _finite_prices) -> st.SearchStrategy[DepthLevel]:
    return st.builds(DepthLevel, prices, _quantities, st.integers(0, U16))


def depths(
    prices: st.SearchStrategy[float] = _finite_prices, min_levels: int = 0, max_levels: int = 5
) -> st.SearchStrategy[Depth]:
    """Eager `Depth` values with ``min_levels..max_levels`` levels a side."""
    side = st.lists(depth_levels(prices), min_size=min_levels, max_size=max_levels)
    return st.builds(Depth, side, side)


def ohlcs(prices: st.SearchStrategy[float] = _finite_prices) -> st.SearchStrategy[Ohlc]:
    return st.builds(Ohlc, prices, prices, prices, prices)


@st.composite
def ticks(draw: st.DrawFn, broker: Broker | None = None, received_at: float | None = None) -> Tick:
    """Any well-typed `Tick` (not necessarily representable on a broker's wire)."""
    optional_int = st.none() | _quantities
    optional_price = st.none() | _finite_prices
    optional_time = st.none() | ist_datetimes()
    token = draw(st.integers(0, U32))
    return Tick(
        broker=draw(brokers) if broker is None else broker,
        instrument_token=token,
        mode=draw(modes),
        tradable=draw(st.booleans()),
        last_price=draw(_finite_prices),
        last_quantity=draw(optional_int),
        average_price=draw(optional_price),
        volume=draw(optional_int),
        total_buy_quantity=draw(optional_int),
        total_sell_quantity=draw(optional_int),
        ohlc=draw(st.none() | ohlcs()),
        change=draw(st.none() | st.floats(-100.0, 1e6)),
        last_trade_time=draw(optional_time),
        exchange_time=draw(optional_time),
        oi=draw(optional_int),
        oi_day_high=draw(optional_int),
        oi_day_low=draw(optional_int),
        depth=draw(st.none() | depths()),
        received_at=draw(st.floats(0.0, 4e9)) if received_at is None else received_at,
        symbol=draw(st.none() | st.text(min_size=1, max_size=20)),
        segment=token & 0xFF,
    )


_json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
_order_payloads = st.dictionaries(
    st.text(max_size=12),
    _json_scalars,
    max_size=6,
).map(lambda d: {"order_id": "220303000308932", "status": "COMPLETE", **d})


def order_updates(broker: Broker = Broker.KITE) -> st.SearchStrategy[OrderUpdate]:
    return st.builds(OrderUpdate, st.just(broker), _order_payloads, st.floats(0.0, 4e9))


def text_events(broker: Broker = Broker.KITE) -> st.SearchStrategy[OrderUpdate | BrokerMessage | BrokerError]:
    """Order updates, broker messages and broker errors."""
    times = st.floats(0.0, 4e9)
    return st.one_of(
        order_updates(broker),
        st.builds(BrokerMessage, st.just(broker), st.text(), times),
        st.builds(BrokerError, st.just(broker), st.text(), times),
    )


def status_events(broker: Broker | None = None) -> st.SearchStrategy[StatusEvent]:
    b = brokers if broker is None else st.just(broker)
    conn = st.integers(0, 16)
    at = st.floats(0.0, 4e9)
    return st.one_of(
        st.builds(Connected, b, conn, at),
        st.builds(Disconnected, b, conn, st.text(max_size=40), at),
        st.builds(Reconnecting, b, conn, st.integers(1, 1000), st.floats(0.0, 60.0), at),
        st.builds(Resubscribed, b, conn, st.integers(0, 3000), at),
    )


# ---------------------------------------------------------------------------------------------------------
# Kite-representable values.


def kite_tokens(segments: Sequence[int] = KITE_SEGMENTS, bits: int = 31) -> st.SearchStrategy[int]:
    """Instrument tokens ``exchange_token << 8 | segment`` below ``2**bits``."""
    return st.builds(
        lambda high, segment: high << 8 | segment,
        st.integers(0, 2 ** (bits - 8) - 1),
        st.sampled_from(segments),
    )


def kite_prices(divisor: float) -> st.SearchStrategy[float]:
    """Prices as Kite sends them: a raw integer below 2**31 divided by the segment's divisor."""
    return st.integers(0, U31).map(lambda raw: raw / divisor)


def kite_change(last_price: float, close: float) -> float:
    """`Tick.change` as the decoder computes it (and as the official client does)."""
    return (last_price - close) * 100 / close if close else 0.0


def kite_depths(divisor: float) -> st.SearchStrategy[Depth]:
    """Full-packet depth: exactly five levels a side."""
    level = st.builds(DepthLevel, kite_prices(divisor), st.integers(0, U31), st.integers(0, U16))
    side = st.lists(level, min_size=5, max_size=5)
    return st.builds(Depth, side, side)


@st.composite
def kite_ticks(
    draw: st.DrawFn,
    modes: Sequence[Mode] = tuple(Mode),
    segments: Sequence[int] = KITE_SEGMENTS,
    received_at: float = 0.0,
) -> Tick:
    """A tick exactly as `decode_frame` would produce it from some packet (``symbol`` None).

    Segment 9 gives index ticks (no quantities, no depth; FULL carries only the exchange time).
    """
    token = draw(kite_tokens(segments))
    segment = token & 0xFF
    d = price_divisor(token)
    mode = draw(st.sampled_from(modes))
    prices = kite_prices(d)
    last = draw(prices)
    tradable = segment != INDICES_SEGMENT
    if mode is Mode.LTP:
        return Tick(Broker.KITE, token, mode, tradable, last, received_at=received_at, segment=segment)
    ohlc = draw(st.builds(Ohlc, prices, prices, prices, prices))
    change = kite_change(last, ohlc.close)
    times = st.none() | ist_datetimes()
    if not tradable:
        return Tick(
            Broker.KITE,
            token,
            mode,
            False,
            last,
            ohlc=ohlc,
            change=change,
            exchange_time=draw(times) if mode is Mode.FULL else None,
            received_at=received_at,
            segment=segment,
        )
    ints = st.integers(0, U31)
    tick = Tick(
        Broker.KITE,
        token,
        mode,
        True,
        last,
        last_quantity=draw(ints),
        average_price=draw(prices),
        volume=draw(ints),
        total_buy_quantity=draw(ints),
        total_sell_quantity=draw(ints),
        ohlc=ohlc,
        change=change,
        received_at=received_at,
        segment=segment,
    )
    if mode is Mode.FULL:
        tick.last_trade_time = draw(times)
        tick.exchange_time = draw(times)
        tick.oi = draw(ints)
        tick.oi_day_high = draw(ints)
        tick.oi_day_low = draw(ints)
        tick.depth = draw(kite_depths(d))
    return tick


_u32 = st.integers(0, U32)


@st.composite
def kite_raw_packets(draw: st.DrawFn, sizes: Sequence[int] = KITE_PACKET_SIZES) -> bytes:
    """Random packet bytes of a valid length that `encode_frame` reproduces exactly after decoding.

    Any 32-bit values (the decoder reads them unsigned), with three constraints the encoder imposes:
    index packets (28/32) carry a segment-9 token and the 'price change' field
    ``(last - close) & 0xFFFFFFFF``; quote and full packets carry a tradable (non-9) token; full-packet
    depth padding is zero.
    """
    size = draw(st.sampled_from(sizes))
    if size == 8:
        return struct.pack(">2I", draw(_u32), draw(_u32))
    if size in (28, 32):
        token = draw(st.integers(0, 2**24 - 1)) << 8 | INDICES_SEGMENT
        last, high, low, open_, close = (draw(_u32) for _ in range(5))
        fields = [token, last, high, low, open_, close, (last - close) & 0xFFFFFFFF]
        if size == 32:
            fields.append(draw(_u32))
        return struct.pack(f">{len(fields)}I", *fields)
    token = draw(st.integers(0, 2**24 - 1)) << 8 | draw(st.integers(0, 255).filter(lambda s: s != 9))
    if size == 44:
        return struct.pack(">11I", token, *(draw(_u32) for _ in range(10)))
    head = struct.pack(">16I", token, *(draw(_u32) for _ in range(15)))
    depth = b"".join(
        struct.pack(">IIHxx", draw(_u32), draw(_u32), draw(st.integers(0, U16))) for _ in range(10)
    )
    return head + depth


def build_frame(packets: Sequence[bytes], count: int | None = None) -> bytes:
    """``uint16 count | (uint16 length | packet)*``; `count` defaults to ``len(packets)``."""
    header = struct.pack(">H", len(packets) if count is None else count)
    return header + b"".join(struct.pack(">H", len(p)) + p for p in packets)


def kite_frames(max_packets: int = 12) -> st.SearchStrategy[bytes]:
    """Well-formed binary frames of `kite_raw_packets`."""
    return st.lists(kite_raw_packets(), max_size=max_packets).map(build_frame)


@st.composite
def kite_fuzz_frames(draw: st.DrawFn) -> bytes:
    """Frames with a plausible count/length structure but any content, often slightly wrong.

    Packets are random bytes of a valid size or of any size; the count may be off by one, a length
    field may be off by a few bytes, and the frame may be cut short or have bytes appended.
    """
    valid = st.sampled_from(KITE_PACKET_SIZES).flatmap(lambda n: st.binary(min_size=n, max_size=n))
    chunks = draw(st.lists(valid | st.binary(max_size=200), max_size=8))
    count = max(0, min(U16, len(chunks) + draw(st.sampled_from((0, 0, 0, -1, 1)))))
    parts = [struct.pack(">H", count)]
    for chunk in chunks:
        skew = draw(st.sampled_from((0, 0, 0, 0, -2, -1, 1, 4)))
        parts.append(struct.pack(">H", max(0, min(U16, len(chunk) + skew))))
        parts.append(chunk)
    frame = b"".join(parts)
    tail = draw(st.sampled_from(("keep", "keep", "cut", "append")))
    if tail == "cut" and frame:
        frame = frame[: draw(st.integers(0, len(frame) - 1))]
    elif tail == "append":
        frame += draw(st.binary(min_size=1, max_size=8))
    return frame
