"""Kite binary decoding: `trading_ws.brokers.kite.decode_frame` against the official parser.

Usage::

    python benchmarks/bench_kite_decode.py [--quick] [--repeats N] [--seed N]

Builds several distinct frames of 100 packets each (full with depth, quote, ltp) with realistic, varied
values for a mix of segments, checks that our ticks carry exactly the values of the official
``kiteconnect.KiteTicker._parse_binary`` dicts, then times both in the same process, interleaved
round-robin, and prints markdown tables (median ns/packet, packets/s, speed-up over the official parser).

Exit status: 0 on success, 1 if the decoders disagree, 2 if kiteconnect is not installed.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from _common import Result, fmt_rate, machine as _machine, measure

from trading_ws import IST, Depth, Tick
from trading_ws.brokers.kite import decode_frame
from trading_ws.brokers.kite._codec import _TIME_CACHE

PACKETS_PER_FRAME = 100

# Segments as a live feed might mix them: (segment, weight, price range in rupees, tick size, lot).
SEGMENTS: tuple[tuple[int, float, tuple[float, float], float, int], ...] = (
    (1, 0.40, (20.0, 4000.0), 0.05, 1),  # NSE equity
    (2, 0.30, (1.0, 1500.0), 0.05, 25),  # NFO futures and options
    (4, 0.08, (10.0, 3000.0), 0.05, 1),  # BSE equity
    (7, 0.08, (150.0, 90000.0), 1.0, 10),  # MCX
    (3, 0.05, (80.0, 95.0), 0.0025, 1000),  # CDS (divisor 1e7)
    (6, 0.03, (80.0, 95.0), 0.0025, 1000),  # BCD (divisor 1e4)
    (12, 0.06, (150.0, 900.0), 0.05, 5),  # NCO (divisor 1e4)
)
DIVISORS = {3: 1e7, 6: 1e4, 12: 1e4}
DERIVATIVE_SEGMENTS = {2, 3, 6, 7, 12}
SESSION_START = int(datetime(2026, 11, 25, 10, 15, 0, tzinfo=IST).timestamp())

_FULL_HEAD = struct.Struct(">16I")
_LEVEL = struct.Struct(">IIHxx")
_U16 = struct.Struct(">H")


class Instrument:
    def __init__(self, rng: random.Random, index: int) -> None:
        segment, _, (low, high), tick_size, lot = rng.choices(SEGMENTS, [s[1] for s in SEGMENTS])[0]
        self.segment = segment
        self.token = (100_000 + index * 37) << 8 | segment
        divisor = DIVISORS.get(segment, 100.0)
        self.step = max(1, round(tick_size * divisor))  # one tick, in raw units
        self.price = round(rng.uniform(low, high) * divisor / self.step) * self.step
        self.lot = lot
        self.close = self.price + self.step * rng.randint(-60, 60)
        self.open = self.close + self.step * rng.randint(-20, 20)
        self.volume = rng.randint(0, 1_000_000) * lot  # below 2**31 even for currency lots
        self.oi = rng.randint(10_000, 20_000_000) if segment in DERIVATIVE_SEGMENTS else 0
        self.illiquid = rng.random() < 0.06


def full_packet(rng: random.Random, inst: Instrument, exchange_ts: int) -> bytes:
    step = inst.step
    inst.price = max(step, inst.price + step * rng.randint(-3, 3))
    last = inst.price
    high = max(last, inst.open) + step * rng.randint(0, 30)
    low = max(step, min(last, inst.open) - step * rng.randint(0, 30))
    inst.volume += inst.lot * rng.randint(1, 400)
    last_qty = inst.lot * rng.randint(1, 50)
    average = (low + high) // 2
    buy_qty = inst.lot * rng.randint(0, 200_000)
    sell_qty = inst.lot * rng.randint(0, 200_000)
    ltt = exchange_ts - rng.choice((0, 0, 0, 1, 2, 5, 30))
    oi = inst.oi + rng.randint(-500, 500) if inst.oi else 0
    head = _FULL_HEAD.pack(
        inst.token,
        last,
        last_qty,
        average,
        inst.volume,
        buy_qty,
        sell_qty,
        inst.open,
        high,
        low,
        inst.close,
        ltt,
        oi,
        max(oi, inst.oi + 2_000) if oi else 0,
        max(0, inst.oi - 3_000) if oi else 0,
        exchange_ts,
    )
    levels: list[bytes] = []
    bid = last - step * rng.randint(0, 2)
    ask = bid + step * rng.randint(1, 3)
    for start, sign in ((bid, -1), (ask, 1)):  # five bids (best first), then five asks
        price = start
        for level in range(5):
            if inst.illiquid and level >= rng.randint(1, 5):
                levels.append(_LEVEL.pack(0, 0, 0))  # an empty level of a thin book
                continue
            levels.append(_LEVEL.pack(inst.lot * rng.randint(1, 3000), price, rng.randint(1, 120)))
            price = max(step, price + sign * step * rng.randint(1, 4))
    return head + b"".join(levels)


def build_frame(packets: Sequence[bytes]) -> bytes:
    return _U16.pack(len(packets)) + b"".join(_U16.pack(len(p)) + p for p in packets)


def build_frames(seed: int, count: int) -> dict[str, list[bytes]]:
    """`count` distinct frames per mode; quote and ltp packets are prefixes of the full ones."""
    rng = random.Random(seed)
    universe = [Instrument(rng, i) for i in range(600)]
    frames: dict[str, list[bytes]] = {"full": [], "quote": [], "ltp": []}
    for n in range(count):
        second = SESSION_START + 2 * n
        chosen = rng.sample(universe, PACKETS_PER_FRAME)
        full = [full_packet(rng, inst, second + rng.choice((0, 0, 0, 1))) for inst in chosen]
        frames["full"].append(build_frame(full))
        frames["quote"].append(build_frame([p[:44] for p in full]))
        frames["ltp"].append(build_frame([p[:8] for p in full]))
    return frames


def index_and_mixed_frame(rng: random.Random) -> bytes:
    """Verification only: index packets (28/32 bytes) mixed with the other kinds."""
    nifty = 256265
    packets: list[bytes] = []
    for _ in range(20):
        last, close = rng.randint(2_000_000, 2_600_000), rng.randint(2_000_000, 2_600_000)
        high, low, open_ = (
            last + rng.randint(0, 9999),
            last - rng.randint(0, 9999),
            close + rng.randint(-99, 99),
        )
        ts = SESSION_START + rng.randint(0, 3600)
        change = (last - close) & 0xFFFFFFFF
        packets.append(struct.pack(">7I", nifty, last, high, low, open_, close, change))
        packets.append(struct.pack(">8I", nifty, last, high, low, open_, close, change, ts))
    inst = Instrument(rng, 7)
    full = full_packet(rng, inst, SESSION_START)
    packets += [full, full[:44], full[:8], struct.pack(">7I", nifty, 1, 1, 1, 1, 0, 1)]
    return build_frame(packets)


# ---------------------------------------------------------------------------------------------------------
# Value check.


def check_frame(ours: list[Any], theirs: list[dict[str, Any]], where: str) -> list[str]:
    problems: list[str] = []

    def same(label: str, a: object, b: object) -> None:
        if a != b:
            problems.append(f"{where} {label}: ours {a!r} != official {b!r}")

    same("packet count", len(ours), len(theirs))
    for i, (tick, ref) in enumerate(zip(ours, theirs, strict=False)):
        p = f"[{i}]"
        if not isinstance(tick, Tick):
            problems.append(f"{where} {p}: not a Tick: {tick!r}")
            continue
        same(p + " instrument_token", tick.instrument_token, ref["instrument_token"])
        same(p + " mode", tick.mode.value, ref["mode"])
        same(p + " tradable", tick.tradable, ref["tradable"])
        same(p + " last_price", tick.last_price, ref["last_price"])
        if "ohlc" in ref:
            if tick.ohlc is None:
                problems.append(f"{where} {p}: no ohlc")
                continue
            same(
                p + " ohlc",
                (tick.ohlc.open, tick.ohlc.high, tick.ohlc.low, tick.ohlc.close),
                (
                    ref["ohlc"]["open"],
                    ref["ohlc"]["high"],
                    ref["ohlc"]["low"],
                    ref["ohlc"]["close"],
                ),
            )
            same(p + " change", tick.change, ref["change"])
        if "volume_traded" in ref:
            same(p + " last_quantity", tick.last_quantity, ref["last_traded_quantity"])
            same(p + " average_price", tick.average_price, ref["average_traded_price"])
            same(p + " volume", tick.volume, ref["volume_traded"])
            same(p + " total_buy_quantity", tick.total_buy_quantity, ref["total_buy_quantity"])
            same(p + " total_sell_quantity", tick.total_sell_quantity, ref["total_sell_quantity"])
        if "oi" in ref:
            same(
                p + " oi",
                (tick.oi, tick.oi_day_high, tick.oi_day_low),
                (
                    ref["oi"],
                    ref["oi_day_high"],
                    ref["oi_day_low"],
                ),
            )
            same(p + " last_trade_time", _seconds(tick.last_trade_time), _seconds(ref["last_trade_time"]))
        if "exchange_timestamp" in ref:
            same(p + " exchange_time", _seconds(tick.exchange_time), _seconds(ref["exchange_timestamp"]))
            if tick.exchange_time is not None and tick.exchange_time.utcoffset() is None:
                problems.append(f"{where} {p}: exchange_time is naive")
        if "depth" in ref:
            depth = tick.depth
            if not isinstance(depth, Depth):
                problems.append(f"{where} {p}: no depth")
                continue
            for side, levels in (("buy", depth.bids), ("sell", depth.asks)):
                same(
                    p + f" depth.{side}",
                    [(lv.price, lv.quantity, lv.orders) for lv in levels],
                    [(lv["price"], lv["quantity"], lv["orders"]) for lv in ref["depth"][side]],
                )
        else:
            same(p + " depth", tick.depth, None)
    return problems


def _seconds(value: datetime | None) -> float | None:
    # The official timestamps are naive local datetimes from datetime.fromtimestamp(x): .timestamp()
    # reads them back as local time, giving x again. Ours are aware (IST): .timestamp() is exact.
    return None if value is None else value.timestamp()


# ---------------------------------------------------------------------------------------------------------
# Timing.


def table(title: str, results: list[Result], baseline: str) -> str:
    base = next(r for r in results if r.name == baseline).median
    lines = [
        f"#### {title}",
        "",
        "| variant | ns/packet (median) | packets/s | speed-up vs official | min ns | IQR |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.median:,.0f} | {fmt_rate(1e9 / r.median)} | {base / r.median:.2f}x "
            f"| {r.min:,.0f} | {r.iqr:.0%} |"
        )
    return "\n".join(lines)


def machine() -> str:
    return _machine(("trading-ws", "kiteconnect", "msgspec", "attrs"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="few short repeats (a smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per variant (15)")
    parser.add_argument("--frames", type=int, default=None, help="distinct frames per mode (16)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)

    try:
        from kiteconnect import KiteTicker  # untyped: pyproject's mypy override ignores it
    except ImportError:
        print(
            "bench_kite_decode: the official client is not installed, so there is nothing to compare "
            "against.\nInstall it with:  pip install kiteconnect   (or: pip install -e '.[bench]')",
            file=sys.stderr,
        )
        return 2

    repeats = args.repeats or (3 if args.quick else 15)
    frame_count = args.frames or (4 if args.quick else 16)
    target = 0.02 if args.quick else 0.08

    official: Callable[[bytes], list[dict[str, Any]]] = KiteTicker("k", "t")._parse_binary
    frames = build_frames(args.seed, frame_count)

    # 1. Same values, packet by packet, before any timing.
    problems: list[str] = []
    checked = 0
    extra = [index_and_mixed_frame(random.Random(args.seed + 1))]
    for mode, mode_frames in [*frames.items(), ("mixed", extra)]:
        for n, frame in enumerate(mode_frames):
            ours = decode_frame(frame)
            problems += check_frame(list(ours), official(frame), f"{mode} frame {n}")
            checked += len(ours)
    if problems:
        print(f"MISMATCH: {len(problems)} differences, first ones:", file=sys.stderr)
        for line in problems[:20]:
            print("  " + line, file=sys.stderr)
        return 1

    print("# Kite decoding benchmark\n")
    print(machine())
    print(
        f"- Frames: {frame_count} distinct frames per mode, {PACKETS_PER_FRAME} packets each "
        f"({len(frames['full'][0]):,} B full / {len(frames['quote'][0]):,} B quote / "
        f"{len(frames['ltp'][0]):,} B ltp)"
    )
    print(f"- Repeats: {repeats} per variant, about {target * 1000:.0f} ms each, interleaved round-robin")
    print(
        f"- Values checked identical to the official parser for all {checked:,} packets "
        "(prices, quantities, OHLC, change, OI, timestamps, every depth level)\n"
    )

    # mypy: decode_frame returns list[Event]; binary frames only ever hold ticks.
    decode: Callable[[bytes], list[Tick]] = decode_frame  # type: ignore[assignment]
    per_call = frame_count * PACKETS_PER_FRAME
    results_by_mode: dict[str, list[Result]] = {}

    full = frames["full"]

    def official_full() -> None:
        for frame in full:
            official(frame)

    def official_full_read_depth() -> None:
        for frame in full:
            for tick in official(frame):
                depth = tick["depth"]
                for level in depth["buy"]:
                    _ = (level["price"], level["quantity"], level["orders"])
                for level in depth["sell"]:
                    _ = (level["price"], level["quantity"], level["orders"])

    def ours_full() -> None:
        for frame in full:
            decode(frame)

    def ours_full_read_depth() -> None:
        for frame in full:
            for tick in decode(frame):
                depth = tick.depth
                assert depth is not None
                for level in depth.bids:
                    _ = (level.price, level.quantity, level.orders)
                for level in depth.asks:
                    _ = (level.price, level.quantity, level.orders)

    # The least any eager decoder pays for depth: ten plain tuples per packet (prices divided), no model.
    depth_slices = [
        [
            (frame[start + 64 : start + 184], DIVISORS.get(frame[start + 3], 100.0))
            for start in range(4, len(frame), 2 + 184)
        ]
        for frame in full
    ]

    def depth_as_tuples() -> None:
        unpack = _LEVEL.iter_unpack
        for slices in depth_slices:
            for raw, d in slices:
                _ = [(price / d, quantity, orders) for quantity, price, orders in unpack(raw)]

    def ours_full_cold_times() -> None:
        for frame in full:
            _TIME_CACHE.clear()
            decode(frame)

    official_name = "kiteconnect `KiteTicker._parse_binary`"
    results_by_mode["full"] = measure(
        {
            official_name: official_full,
            "kiteconnect + read every depth level": official_full_read_depth,
            "trading_ws `decode_frame` (depth lazy)": ours_full,
            "trading_ws `decode_frame` + read every depth level": ours_full_read_depth,
            "trading_ws `decode_frame`, timestamp cache cleared per frame": ours_full_cold_times,
            "floor: the depth alone as ten plain tuples (no model, no other field)": depth_as_tuples,
        },
        per_call,
        repeats,
        target,
    )
    for mode in ("quote", "ltp"):
        mode_frames = frames[mode]

        def official_mode(mode_frames: list[bytes] = mode_frames) -> None:
            for frame in mode_frames:
                official(frame)

        def ours_mode(mode_frames: list[bytes] = mode_frames) -> None:
            for frame in mode_frames:
                decode(frame)

        results_by_mode[mode] = measure(
            {official_name: official_mode, "trading_ws `decode_frame`": ours_mode},
            per_call,
            repeats,
            target,
        )

    sizes = {mode: len(frames[mode][0]) for mode in frames}
    titles = {
        "full": f"full mode with depth, {PACKETS_PER_FRAME} packets/frame ({sizes['full']:,} B frame)",
        "quote": f"quote mode, {PACKETS_PER_FRAME} packets/frame ({sizes['quote']:,} B frame)",
        "ltp": f"ltp mode, {PACKETS_PER_FRAME} packets/frame ({sizes['ltp']:,} B frame)",
    }
    for mode, results in results_by_mode.items():
        print(table(titles[mode], results, official_name))
        print()

    full_results = {r.name: r.median for r in results_by_mode["full"]}
    lazy = full_results[official_name] / full_results["trading_ws `decode_frame` (depth lazy)"]
    eager = full_results[official_name] / full_results["trading_ws `decode_frame` + read every depth level"]
    same_work = (
        full_results["kiteconnect + read every depth level"]
        / full_results["trading_ws `decode_frame` + read every depth level"]
    )
    budget = full_results[official_name] / 10
    floor = full_results["floor: the depth alone as ten plain tuples (no model, no other field)"]
    print("Speed-up over the official parser on full packets with depth:")
    print(f"- decoded into the model, depth packed and built on first read: {lazy:.1f}x")
    print(f"- then every depth level read: {eager:.1f}x (both sides reading every level: {same_work:.1f}x)")
    print(
        f"- the budget at 10x is {budget:,.0f} ns per packet; ten plain tuples for the depth alone take "
        f"{floor:,.0f} ns ({floor / budget:.0%} of it), so no decoder that builds a Python object per "
        "depth level can reach 10x here"
    )
    verdict = "met" if lazy >= 10 else "NOT met"
    print(f"- project goal (>= 10x on full packets with depth, into the model, identical values): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
