"""XTS JSON decoding: `decode_message` against what the official SDK and user code do.

Usage::

    python benchmarks/bench_xts_decode.py [--quick] [--repeats N] [--messages N] [--seed N]

XTS sends market data as Socket.IO text frames ``42["1501-json-full","<JSON text>"]``: the data argument
is a JSON *string*, so every message is decoded twice. The baseline is what a user of the official Python
SDK runs per message, at the least: the Socket.IO layer ``json.loads`` the frame payload, the user's
handler ``json.loads`` the data string and reads the fields it needs into a dict (prices, quantities,
OHLC, change, the two timestamps as IST datetimes, the depth levels as dicts). trading_ws runs
`trading_ws.brokers.xts.decode_message` (``trading_ws.brokers.xts._codec.decode_message``), the call the
XTS feed should make for every WebSocket message, giving a list holding one `Tick`.

Other rows, for reference:

* the official SDK's real packet layer (python-engineio 3.x + python-socketio 4.x, the generation the SDK
  pins; skipped if they are not installed), then the same user handler: what the SDK really costs;
* trading_ws `parse_packet` then `decode_event`, the two-call form of the same decoding;
* trading_ws with every depth level read: the `Depth` of a tick builds its `DepthLevel` objects on first
  access, and reading them all is the work the baseline always does when it builds its depth dicts.

Several distinct, realistic frames are built per message code (1501 touchline, nested form, including
the reference's verbatim NIFTY sample; 1502 market depth with five levels a side). The script first checks
that every path yields identical values for every frame, then times them in the same process, interleaved
round-robin, and prints markdown tables (median µs/message, messages/s, speed-up over the baseline).

Exit status: 0 on success, 1 if the paths disagree.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from _common import Result, fmt_rate, machine as _machine, measure

from trading_ws import IST, Tick
from trading_ws.brokers.xts import SioEvent, decode_event, parse_packet
from trading_ws.brokers.xts._codec import (
    _decode_frame,
    _decode_nested_1501,
    _decode_nested_1502,
    decode_message,
)

try:  # the official SDK's Engine.IO / Socket.IO packet layer (in the test extras)
    from engineio import packet as eio_packet  # type: ignore[import-untyped]
    from socketio import packet as sio_packet  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - optional
    eio_packet = sio_packet = None

NIFTY_1501 = (
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
SESSION_START = 1_480_000_000  # XTS seconds (1980 base, IST): a weekday morning in November 2026
RECEIVED_AT = 1_790_000_000.0

# ---------------------------------------------------------------------------------------------------------
# Frames.


def _compact(value: Any) -> str:
    # What the Node.js server's JSON.stringify produces.
    return json.dumps(value, separators=(",", ":"))


def _frame(name: str, message: dict[str, Any]) -> str:
    return "42" + _compact([name, _compact(message)])


def _book(size: int, price: float, orders: int) -> dict[str, Any]:
    return {"Size": size, "Price": price, "TotalOrders": orders, "BuyBackMarketMaker": 0}


def _message(rng: random.Random, code: int, n: int) -> dict[str, Any]:
    segment = rng.choice((1, 1, 2, 2, 2))
    tick_size = 0.05
    last = round(rng.uniform(20, 4000) / tick_size) * tick_size
    close = round(last * rng.uniform(0.95, 1.05), 2)
    open_ = round(close * rng.uniform(0.98, 1.02), 2)
    high = round(max(last, open_) * rng.uniform(1.0, 1.02), 2)
    low = round(min(last, open_) * rng.uniform(0.98, 1.0), 2)
    now = SESSION_START + 2 * n
    bid = round(last - tick_size * rng.randint(0, 2), 2)
    ask = round(bid + tick_size * rng.randint(1, 3), 2)
    lot = 1 if segment == 1 else 75
    bids = [
        _book(lot * rng.randint(1, 400), round(bid - i * tick_size, 2), rng.randint(1, 40)) for i in range(5)
    ]
    asks = [
        _book(lot * rng.randint(1, 400), round(ask + i * tick_size, 2), rng.randint(1, 40)) for i in range(5)
    ]
    touchline = {
        "BidInfo": bids[0],
        "AskInfo": asks[0],
        "LastTradedPrice": round(last, 2),
        "LastTradedQunatity": lot * rng.randint(1, 50),
        "TotalBuyQuantity": lot * rng.randint(0, 200_000),
        "TotalSellQuantity": lot * rng.randint(0, 200_000),
        "TotalTradedQuantity": lot * rng.randint(0, 5_000_000),
        "AverageTradedPrice": round((high + low) / 2, 2),
        "LastTradedTime": now - rng.choice((0, 0, 1, 3)),
        "LastUpdateTime": now,
        "PercentChange": round((last - close) * 100 / close, 2),
        "Open": open_,
        "High": high,
        "Low": low,
        "Close": close,
        "TotalValueTraded": None,
        "BuyBackTotalBuy": 0,
        "BuyBackTotalSell": 0,
    }
    message: dict[str, Any] = {
        "MessageCode": code,
        "MessageVersion": 4,
        "ApplicationType": 0,
        "TokenID": 0,
        "ExchangeSegment": segment,
        "ExchangeInstrumentID": rng.randint(1, 99_999) if segment == 1 else rng.randint(35_000, 150_000),
        "ExchangeTimeStamp": now,
    }
    if code == 1502:
        message["Bids"] = bids
        message["Asks"] = asks
    message["Touchline"] = touchline
    message.update(BookType=1, XMarketType=1, SequenceNumber=1353296204670191 + n)
    return message


def build_frames(seed: int, count: int) -> dict[int, list[str]]:
    rng = random.Random(seed)
    frames = {
        1501: [_frame("1501-json-full", json.loads(NIFTY_1501))],
        1502: [],
    }
    frames[1501] += [_frame("1501-json-full", _message(rng, 1501, n)) for n in range(count - 1)]
    frames[1502] += [_frame("1502-json-full", _message(rng, 1502, n)) for n in range(count)]
    return frames


# ---------------------------------------------------------------------------------------------------------
# The two paths.


def baseline(frame: str) -> dict[str, Any]:
    """What the official SDK (its Socket.IO layer) and a user's handler do with one market-data frame."""
    name, data = json.loads(frame[2:])  # python-socketio: the event name and its data argument
    return user_handler(name, data)


def official_sdk(frame: str) -> dict[str, Any]:
    """The same, with the SDK's real packet layer (python-engineio 3.x, then python-socketio 4.x)."""
    eio = eio_packet.Packet(encoded_packet=frame)  # "4" message; tries json.loads on "2[...]" first
    sio = sio_packet.Packet(encoded_packet=eio.data)  # "2" event: json.loads of the array
    name, data = sio.data
    return user_handler(name, data)


def user_handler(name: str, data: str) -> dict[str, Any]:
    """A user's handler: decode the data string, read the fields into a dict."""
    message = json.loads(data)  # the data is a JSON string
    touchline = message.get("Touchline", message)
    segment = message["ExchangeSegment"]
    offset = 315513000 if segment in (1, 2, 3) else -19800  # XTS time -> UNIX seconds
    last_trade = touchline["LastTradedTime"]
    exchange = message.get("ExchangeTimeStamp") or touchline["LastUpdateTime"]
    if name == "1502-json-full":
        bids, asks = message["Bids"], message["Asks"]
    else:
        bids, asks = [touchline["BidInfo"]], [touchline["AskInfo"]]
    return {
        "instrument_token": message["ExchangeInstrumentID"],
        "segment": segment,
        "last_price": touchline["LastTradedPrice"],
        "last_quantity": touchline["LastTradedQunatity"],
        "average_price": touchline["AverageTradedPrice"],
        "volume": touchline["TotalTradedQuantity"],
        "total_buy_quantity": touchline["TotalBuyQuantity"],
        "total_sell_quantity": touchline["TotalSellQuantity"],
        "ohlc": {
            "open": touchline["Open"],
            "high": touchline["High"],
            "low": touchline["Low"],
            "close": touchline["Close"],
        },
        "change": touchline["PercentChange"],
        "last_trade_time": datetime.fromtimestamp(last_trade + offset, IST) if last_trade else None,
        "exchange_time": datetime.fromtimestamp(exchange + offset, IST) if exchange else None,
        "depth": {
            "buy": [{"price": b["Price"], "quantity": b["Size"], "orders": b["TotalOrders"]} for b in bids],
            "sell": [{"price": a["Price"], "quantity": a["Size"], "orders": a["TotalOrders"]} for a in asks],
        },
    }


def ours(frame: str) -> Tick:
    """trading_ws, as the feed calls it."""
    events = decode_message(frame, RECEIVED_AT)
    assert isinstance(events, list)
    (tick,) = events
    assert isinstance(tick, Tick)
    return tick


def ours_two_calls(frame: str) -> Tick:
    """trading_ws, `parse_packet` then `decode_event`."""
    packet = parse_packet(frame)
    assert isinstance(packet, SioEvent)
    (tick,) = decode_event(packet.name, packet.args[0], RECEIVED_AT)
    assert isinstance(tick, Tick)
    return tick


# ---------------------------------------------------------------------------------------------------------
# Value check.


def check(tick: Tick, ref: dict[str, Any], where: str) -> list[str]:
    problems: list[str] = []

    def same(label: str, a: object, b: object) -> None:
        if a != b or (type(a) is not type(b) and not isinstance(a, float)):
            problems.append(f"{where} {label}: ours {a!r} != baseline {b!r}")

    for field in (
        "instrument_token",
        "segment",
        "last_price",
        "last_quantity",
        "average_price",
        "volume",
        "total_buy_quantity",
        "total_sell_quantity",
        "change",
        "last_trade_time",
        "exchange_time",
    ):
        same(field, getattr(tick, field), ref[field])
    ohlc = tick.ohlc
    if ohlc is None:
        problems.append(f"{where}: no ohlc")
    else:
        same("ohlc", (ohlc.open, ohlc.high, ohlc.low, ohlc.close), tuple(ref["ohlc"].values()))
    depth = tick.depth
    if depth is None:
        problems.append(f"{where}: no depth")
    else:
        for side, levels in (("buy", depth.bids), ("sell", depth.asks)):
            same(
                f"depth.{side}",
                [(lv.price, lv.quantity, lv.orders) for lv in levels],
                [(lv["price"], lv["quantity"], lv["orders"]) for lv in ref["depth"][side]],
            )
    for label, value in (("exchange_time", tick.exchange_time), ("last_trade_time", tick.last_trade_time)):
        if value is not None and value.utcoffset() is None:
            problems.append(f"{where}: {label} is naive")
    return problems


# ---------------------------------------------------------------------------------------------------------
# Timing (the same harness as bench_kite_decode.py).


def table(title: str, results: list[Result], baseline_name: str) -> str:
    base = next(r for r in results if r.name == baseline_name).median
    lines = [
        f"#### {title}",
        "",
        "| variant | µs/message (median) | messages/s | speed-up vs baseline | min µs | IQR |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.median:.2f} | {fmt_rate(1e6 / r.median)} | {base / r.median:.2f}x "
            f"| {r.min:.2f} | {r.iqr:.0%} |"
        )
    return "\n".join(lines)


def machine() -> str:
    return _machine(("trading-ws", "msgspec", "attrs"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="few short repeats (a smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per variant (15)")
    parser.add_argument("--messages", type=int, default=None, help="distinct frames per code (32)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)

    repeats = args.repeats or (3 if args.quick else 15)
    count = max(2, args.messages or (8 if args.quick else 32))
    target = 0.02 if args.quick else 0.08
    frames = build_frames(args.seed, count)

    # 1. Same values, frame by frame, before any timing.
    problems: list[str] = []
    for code, code_frames in frames.items():
        for n, frame in enumerate(code_frames):
            ref = baseline(frame)
            problems += check(ours(frame), ref, f"{code} frame {n}")
            problems += check(ours_two_calls(frame), ref, f"{code} frame {n} (parse_packet + decode_event)")
            if eio_packet is not None and official_sdk(frame) != ref:
                problems.append(f"{code} frame {n}: the official SDK stack disagrees with the baseline")
    if problems:
        print(f"MISMATCH: {len(problems)} differences, first ones:", file=sys.stderr)
        for line in problems[:20]:
            print("  " + line, file=sys.stderr)
        return 1

    print("# XTS decoding benchmark\n")
    print(machine())
    sizes = {code: statistics.median(len(f) for f in code_frames) for code, code_frames in frames.items()}
    print(
        f"- Frames: {count} distinct Socket.IO text frames per code (median {sizes[1501]:,.0f} chars for "
        f"1501, {sizes[1502]:,.0f} for 1502)"
    )
    print(f"- Repeats: {repeats} per variant, about {target * 1000:.0f} ms each, interleaved round-robin")
    paths = "`decode_message`, `parse_packet` + `decode_event`" + (
        ", the official SDK stack" if eio_packet is not None else ""
    )
    print(
        f"- Values checked identical to the baseline for all {sum(map(len, frames.values()))} frames "
        f"({paths}; prices, quantities, OHLC, change, both timestamps, every depth level)"
    )
    if eio_packet is None:
        print("- python-engineio / python-socketio not installed: no official SDK stack row")
    print()

    baseline_name = "baseline: `json.loads` frame + `json.loads` data + dict (official SDK + user code)"
    sdk_name = "official SDK stack: python-engineio 3 + python-socketio 4 packets, then the same user code"
    lazy_name = "trading_ws `decode_message` (depth lazy)"
    read_name = "trading_ws `decode_message` + read every depth level"
    two_name = "trading_ws `parse_packet` + `decode_event` (depth lazy)"
    floor_name = "floor: the two msgspec decodes alone (outer array, then the fields read), no model"
    headline: dict[int, dict[str, float]] = {}
    titles = {
        1501: '1501 touchline (nested), `42["1501-json-full","..."]`',
        1502: '1502 market depth (5 levels a side), `42["1502-json-full","..."]`',
    }
    for code, code_frames in frames.items():
        inner: Callable[[str], object] = _decode_nested_1501 if code == 1501 else _decode_nested_1502

        def run_baseline(code_frames: list[str] = code_frames) -> None:
            for frame in code_frames:
                baseline(frame)

        def run_sdk(code_frames: list[str] = code_frames) -> None:
            for frame in code_frames:
                official_sdk(frame)

        def run_ours(code_frames: list[str] = code_frames) -> None:
            for frame in code_frames:
                decode_message(frame, RECEIVED_AT)

        def run_ours_read_depth(code_frames: list[str] = code_frames) -> None:
            for frame in code_frames:
                events = decode_message(frame, RECEIVED_AT)
                assert isinstance(events, list)
                for tick in events:
                    assert isinstance(tick, Tick)
                    depth = tick.depth
                    assert depth is not None
                    for level in depth.bids:
                        _ = (level.price, level.quantity, level.orders)
                    for level in depth.asks:
                        _ = (level.price, level.quantity, level.orders)

        def run_floor(code_frames: list[str] = code_frames, inner: Callable[[str], object] = inner) -> None:
            for frame in code_frames:
                inner(_decode_frame(frame[2:])[1])

        def run_two_calls(code_frames: list[str] = code_frames) -> None:
            for frame in code_frames:
                packet = parse_packet(frame)
                if isinstance(packet, SioEvent):
                    decode_event(packet.name, packet.args[0], RECEIVED_AT)

        variants: dict[str, Callable[[], object]] = {baseline_name: run_baseline}
        if eio_packet is not None:
            variants[sdk_name] = run_sdk
        variants |= {
            lazy_name: run_ours,
            read_name: run_ours_read_depth,
            two_name: run_two_calls,
            floor_name: run_floor,
        }
        results = measure(variants, len(code_frames), repeats, target, scale=1e6)
        print(table(titles[code], results, baseline_name))
        print()
        headline[code] = {r.name: r.median for r in results}

    print("Speed-up of `decode_message` (median):")
    for code, by_name in headline.items():
        line = (
            f"- {code}: {by_name[baseline_name] / by_name[lazy_name]:.1f}x over the baseline "
            f"({by_name[baseline_name] / by_name[read_name]:.1f}x with every depth level read)"
        )
        if sdk_name in by_name:
            line += (
                f"; {by_name[sdk_name] / by_name[lazy_name]:.1f}x over the official SDK stack "
                f"({by_name[sdk_name] / by_name[read_name]:.1f}x)"
            )
        print(line)
    print("The floor against the goal's budget (a fifth of the baseline's median):")
    for code, by_name in headline.items():
        budget = by_name[baseline_name] / 5
        floor = by_name[floor_name]
        print(
            f"- {code}: budget {budget:.2f} µs; the two msgspec decodes alone take {floor:.2f} µs "
            f"({floor / budget:.0%} of it), leaving {budget - floor:.2f} µs for "
            f"the model; `decode_message` spends {by_name[lazy_name] - floor:.2f} µs on it"
        )
    worst = min(by_name[baseline_name] / by_name[lazy_name] for by_name in headline.values())
    print(
        f"- project goal (>= 5x over the baseline, depth lazy): {'met' if worst >= 5 else 'NOT met'} "
        f"(worst {worst:.1f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
