"""The ``trading-ws`` command: ``demo`` (the library against its embedded simulator) and ``sim`` (run a
simulator for other programs, such as the brokers' own clients)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

import attrs
import trio

from ._model import Connected, Disconnected, Mode, Reconnecting, Resubscribed, Tick
from ._version import __version__
from .brokers.kite import open_kite_feed
from .sim import DEMO_ACCESS_TOKEN, DEMO_API_KEY, KiteSimulator, find_instrument

__all__ = ["main"]

DEFAULT_SYMBOLS = (
    "NSE:INFY",
    "NSE:RELIANCE",
    "NSE:TCS",
    "NSE:NIFTY 50",
    "NFO:NIFTY26DECFUT",
    "CDS:USDINR26DECFUT",
)


@attrs.define
class _Row:
    """What the demo shows for one instrument."""

    symbol: str
    last: Tick | None = None
    ticks: int = 0
    window_start: float = 0.0
    window_ticks: int = 0
    rate: float = 0.0


@attrs.define
class _Board:
    """The demo's state: rows by token, the feed's status line, and totals."""

    rows: dict[int, _Row]
    status: str = "connecting"
    total: int = 0
    started: float = attrs.field(factory=time.monotonic)

    def apply(self, event: object) -> None:
        if isinstance(event, Tick):
            row = self.rows.get(event.instrument_token)
            if row is not None:
                row.last = event
                row.ticks += 1
                row.window_ticks += 1
                self.total += 1
        elif isinstance(event, Connected):
            self.status = "connected"
        elif isinstance(event, Disconnected):
            self.status = f"disconnected: {event.reason}"
        elif isinstance(event, Reconnecting):
            self.status = f"reconnecting (attempt {event.attempt}, in {event.delay:.1f} s)"
        elif isinstance(event, Resubscribed):
            self.status = f"connected, {event.instruments} instruments resubscribed"

    def roll_rates(self) -> None:
        now = time.monotonic()
        for row in self.rows.values():
            elapsed = now - row.window_start
            if elapsed >= 1.0:
                row.rate = row.window_ticks / elapsed
                row.window_ticks = 0
                row.window_start = now


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _columns(row: _Row) -> tuple[str, str, str, str, str, str, str]:
    tick = row.last
    if tick is None:
        return (row.symbol, "-", "-", "-", "-", "-", f"{row.rate:.1f}")
    digits = 4 if (tick.segment in (3, 6, 12)) else 2
    bid = ask = None
    if tick.depth is not None:
        bid = tick.depth.bids[0].price if tick.depth.bids else None
        ask = tick.depth.asks[0].price if tick.depth.asks else None
    change = "-" if tick.change is None else f"{tick.change:+.2f}%"
    volume = "-" if tick.volume is None else f"{tick.volume:,}"
    return (
        row.symbol,
        _fmt(tick.last_price, digits),
        change,
        volume,
        _fmt(bid, digits),
        _fmt(ask, digits),
        f"{row.rate:.1f}",
    )


HEADERS = ("symbol", "last", "change", "volume", "bid", "ask", "ticks/s")


def _render_table(board: _Board) -> object:
    from rich.table import Table

    elapsed = time.monotonic() - board.started
    table = Table(
        title=f"trading-ws demo · Kite simulator · {board.status}",
        caption=f"{board.total:,} ticks in {elapsed:.0f} s · Ctrl-C to stop",
    )
    for name in HEADERS:
        table.add_column(name, justify="left" if name == "symbol" else "right")
    for row in board.rows.values():
        cells = _columns(row)
        style = ""
        if row.last is not None and row.last.change is not None:
            style = "green" if row.last.change >= 0 else "red"
        table.add_row(*cells, style=style)
    return table


async def _render(board: _Board, live: bool, interval: float) -> None:
    if live:
        from rich.live import Live

        with Live(_render_table(board), auto_refresh=False, transient=False) as view:  # type: ignore[arg-type]
            while True:
                await trio.sleep(interval)
                board.roll_rates()
                view.update(_render_table(board), refresh=True)  # type: ignore[arg-type]
    else:
        while True:
            await trio.sleep(1.0)
            board.roll_rates()
            stamp = time.strftime("%H:%M:%S")
            for row in board.rows.values():
                print(stamp, *_columns(row), sep="  ", flush=True)
            print(stamp, f"status={board.status} total_ticks={board.total}", flush=True)


async def run_demo(
    symbols: Sequence[str], *, mode: Mode, duration: float | None, tick_interval: float, seed: int, live: bool
) -> int:
    """Run the demo: start the simulator on a loopback port, connect the real Kite feed, show ticks.

    Blocks until `duration` seconds have passed (or forever), then returns the number of ticks seen.
    """
    instruments = [find_instrument(symbol) for symbol in symbols]
    board = _Board({i.kite_token: _Row(i.symbol, window_start=time.monotonic()) for i in instruments})
    simulator = KiteSimulator(tick_interval=tick_interval, seed=seed)
    with trio.move_on_after(duration if duration is not None else float("inf")):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(simulator.serve)
            async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url) as feed:
                await feed.subscribe([i.kite_token for i in instruments], mode)
                nursery.start_soon(_render, board, live, 0.25)
                async for event in feed:
                    board.apply(event)
    if not live:
        print(f"demo finished: {board.total} ticks", flush=True)
    return board.total


async def run_kite_sim(host: str, port: int, api_key: str, access_token: str, tick_interval: float) -> None:
    """Serve the Kite simulator until cancelled, printing its URL once it listens."""
    simulator = KiteSimulator(api_key=api_key, access_token=access_token, tick_interval=tick_interval)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(simulator.serve, host, port)
        print(f"Kite simulator listening on {url}", flush=True)
        print("  connect with: api_key=<your --api-key> access_token=<your --access-token>", flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trading-ws", description="Real-time Indian market data on Trio, with broker simulators."
    )
    parser.add_argument("--version", action="version", version=f"trading-ws {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level to stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="stream from the embedded simulator and show a live table")
    demo.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: Ctrl-C)")
    demo.add_argument(
        "--symbols", nargs="+", default=list(DEFAULT_SYMBOLS), help="exchange-qualified symbols to show"
    )
    demo.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.FULL.value)
    demo.add_argument("--tick-interval", type=float, default=0.2, help="simulator seconds between frames")
    demo.add_argument("--seed", type=int, default=0, help="simulator random seed")
    demo.add_argument("--plain", action="store_true", help="plain lines even on a terminal")

    sim = commands.add_parser("sim", help="run a broker simulator on a loopback port")
    brokers = sim.add_subparsers(dest="broker", required=True)
    kite = brokers.add_parser("kite", help="the Kite Connect v3 ticker")
    kite.add_argument("--host", default="127.0.0.1")
    kite.add_argument("--port", type=int, default=0, help="0 picks a free port")
    kite.add_argument("--api-key", default=DEMO_API_KEY)
    kite.add_argument("--access-token", default=DEMO_ACCESS_TOKEN)
    kite.add_argument("--tick-interval", type=float, default=0.2)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trading-ws`` console script. Returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        if args.command == "demo":
            try:
                symbols = [find_instrument(s).symbol for s in args.symbols]
            except KeyError as exc:
                print(f"trading-ws: {exc.args[0]}", file=sys.stderr)
                return 2
            live = sys.stdout.isatty() and not args.plain
            trio.run(
                lambda: run_demo(
                    symbols,
                    mode=Mode(args.mode),
                    duration=args.duration,
                    tick_interval=args.tick_interval,
                    seed=args.seed,
                    live=live,
                )
            )
        elif args.command == "sim":
            trio.run(run_kite_sim, args.host, args.port, args.api_key, args.access_token, args.tick_interval)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130
    except BaseExceptionGroup as group:
        # Ctrl-C while tasks run arrives wrapped by the nurseries it passed through.
        if group.split(KeyboardInterrupt)[1] is None:
            print("stopped", file=sys.stderr)
            return 130
        raise
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
