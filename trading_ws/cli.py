"""The ``trading-ws`` command: ``demo`` (the library against its embedded simulators: ``--broker kite``,
``xts`` or ``both``) and ``sim kite`` / ``sim xts`` (run a simulator for other programs, such as the
brokers' own clients)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from functools import partial

import attrs
import trio

from ._model import Broker, Connected, Disconnected, Mode, Reconnecting, Resubscribed, Tick
from ._version import __version__
from .brokers.kite import open_kite_feed
from .brokers.xts import open_xts_feed
from .sim import (
    DEMO_ACCESS_TOKEN,
    DEMO_API_KEY,
    DEMO_APP_KEY,
    DEMO_SECRET_KEY,
    Instrument,
    KiteSimulator,
    XtsSimulator,
    find_instrument,
)

__all__ = ["main"]

DEMO_BROKERS = ("kite", "xts", "both")
_TITLES = {("kite",): "Kite simulator", ("xts",): "XTS simulator", ("kite", "xts"): "Kite and XTS simulators"}

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


def _row_key(tick: Tick) -> Hashable:
    """Where a tick belongs on the board: Kite by token, XTS by (segment, instrument id)."""
    if tick.broker is Broker.XTS:
        return (Broker.XTS, tick.segment, tick.instrument_token)
    return (Broker.KITE, tick.instrument_token)


def _instrument_key(broker: str, instrument: Instrument) -> Hashable:
    if broker == "xts":
        return (Broker.XTS, instrument.xts_segment, instrument.xts_instrument_id)
    return (Broker.KITE, instrument.kite_token)


@attrs.define
class _Board:
    """The demo's state: rows by (broker, instrument), each feed's status line, and totals."""

    rows: dict[Hashable, _Row]
    statuses: dict[str, str] = attrs.field(factory=lambda: {"kite": "connecting"})
    title: str = "Kite simulator"
    total: int = 0
    started: float = attrs.field(factory=time.monotonic)

    @property
    def status(self) -> str:
        """One feed's status, or every feed's, labelled."""
        if len(self.statuses) == 1:
            return next(iter(self.statuses.values()))
        return " · ".join(f"{broker}: {status}" for broker, status in self.statuses.items())

    def apply(self, event: object) -> None:
        if isinstance(event, Tick):
            row = self.rows.get(_row_key(event))
            if row is not None:
                row.last = event
                row.ticks += 1
                row.window_ticks += 1
                self.total += 1
        elif isinstance(event, Connected):
            self.statuses[event.broker] = "connected"
        elif isinstance(event, Disconnected):
            self.statuses[event.broker] = f"disconnected: {event.reason}"
        elif isinstance(event, Reconnecting):
            self.statuses[event.broker] = f"reconnecting (attempt {event.attempt}, in {event.delay:.1f} s)"
        elif isinstance(event, Resubscribed):
            self.statuses[event.broker] = f"connected, {event.instruments} instruments resubscribed"

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
    if not tick.tradable:  # an index has no volume or book (XTS sends zeros for them)
        bid = ask = None
    change = "-" if tick.change is None else f"{tick.change:+.2f}%"
    volume = "-" if tick.volume is None or not tick.tradable else f"{tick.volume:,}"
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
        title=f"trading-ws demo · {board.title} · {board.status}",
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


async def _stream_kite(
    board: _Board,
    instruments: Sequence[Instrument],
    mode: Mode,
    tick_interval: float,
    seed: int,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the Kite simulator, connect the real Kite feed, subscribe, and feed the board (forever)."""
    simulator = KiteSimulator(tick_interval=tick_interval, seed=seed)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(simulator.serve)
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url) as feed:
            await feed.subscribe([i.kite_token for i in instruments], mode)
            task_status.started()
            async for event in feed:
                board.apply(event)


async def _stream_xts(
    board: _Board,
    instruments: Sequence[Instrument],
    mode: Mode,
    tick_interval: float,
    seed: int,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the XTS simulator, connect the real XTS feed (REST login + Socket.IO), subscribe, and feed
    the board (forever)."""
    simulator = XtsSimulator(tick_interval=tick_interval, seed=seed)
    async with trio.open_nursery() as nursery:
        root = await nursery.start(simulator.serve)
        # No logout on exit: the simulator goes away with the demo.
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root, logout_on_exit=False) as feed:
            await feed.subscribe([(i.xts_segment, i.xts_instrument_id) for i in instruments], mode)
            task_status.started()
            async for event in feed:
                board.apply(event)


async def run_demo(
    symbols: Sequence[str],
    *,
    mode: Mode,
    duration: float | None,
    tick_interval: float,
    seed: int,
    live: bool,
    broker: str = "kite",
) -> int:
    """Run the demo: start the simulator(s) on loopback ports, connect the real feed(s), show ticks.

    `broker` is ``"kite"``, ``"xts"`` or ``"both"`` (one row per symbol and broker). Blocks until
    `duration` seconds have passed (or forever), then returns the number of ticks seen.

    Raises:
        KeyError: a symbol is not in the simulators' universe.
        ValueError: an unknown broker.
    """
    if broker not in DEMO_BROKERS:
        raise ValueError(f"broker must be one of {DEMO_BROKERS}, got {broker!r}")
    brokers = ("kite", "xts") if broker == "both" else (broker,)
    instruments = [find_instrument(symbol) for symbol in symbols]
    rows: dict[Hashable, _Row] = {}
    for name in brokers:
        for i in instruments:
            label = i.symbol if len(brokers) == 1 else f"{i.symbol} ({name})"
            rows[_instrument_key(name, i)] = _Row(label, window_start=time.monotonic())
    board = _Board(rows, dict.fromkeys(brokers, "connecting"), _TITLES[brokers])
    streams = {"kite": _stream_kite, "xts": _stream_xts}
    with trio.move_on_after(duration if duration is not None else float("inf")):
        async with trio.open_nursery() as nursery:
            for name in brokers:
                await nursery.start(streams[name], board, instruments, mode, tick_interval, seed)
            nursery.start_soon(_render, board, live, 0.25)
    if not live:
        print(f"demo finished: {board.total} ticks", flush=True)
    return board.total


async def run_kite_sim(host: str, port: int, api_key: str, access_token: str, tick_interval: float) -> None:
    """Serve the Kite simulator until cancelled, printing its URLs once it listens: the ticker on `port`,
    the REST instrument master on a free port of the same host."""
    simulator = KiteSimulator(api_key=api_key, access_token=access_token, tick_interval=tick_interval)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(simulator.serve, host, port)
        rest = await nursery.start(simulator.serve_rest, host, 0)
        print(f"Kite simulator listening on {url}", flush=True)
        print("  connect with: api_key=<your --api-key> access_token=<your --access-token>", flush=True)
        print(f"  instrument master: GET {rest}/instruments (KiteBroker(api_url={rest!r}))", flush=True)


async def run_xts_sim(host: str, port: int, app_key: str, secret_key: str, tick_interval: float) -> None:
    """Serve the XTS simulator (REST and Socket.IO on one port) until cancelled, printing its root URL."""
    simulator = XtsSimulator(app_key=app_key, secret_key=secret_key, tick_interval=tick_interval)
    async with trio.open_nursery() as nursery:
        root = await nursery.start(simulator.serve, host, port)
        print(f"XTS simulator listening on {root}", flush=True)
        print(
            f"  log in at {root}/apimarketdata/auth/login with appKey=<your --app-key> "
            f"secretKey=<your --secret-key> (user {simulator.user_id})",
            flush=True,
        )


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
    demo.add_argument(
        "--broker", choices=DEMO_BROKERS, default="kite", help="which simulator and feed (both: side by side)"
    )

    sim = commands.add_parser("sim", help="run a broker simulator on a loopback port")
    brokers = sim.add_subparsers(dest="broker", required=True)
    kite = brokers.add_parser("kite", help="the Kite Connect v3 ticker")
    kite.add_argument("--host", default="127.0.0.1")
    kite.add_argument("--port", type=int, default=0, help="0 picks a free port")
    kite.add_argument("--api-key", default=DEMO_API_KEY)
    kite.add_argument("--access-token", default=DEMO_ACCESS_TOKEN)
    kite.add_argument("--tick-interval", type=float, default=0.2)
    xts = brokers.add_parser("xts", help="the Symphony XTS market-data API (REST and Socket.IO, one port)")
    xts.add_argument("--host", default="127.0.0.1")
    xts.add_argument("--port", type=int, default=0, help="0 picks a free port")
    xts.add_argument("--app-key", default=DEMO_APP_KEY)
    xts.add_argument("--secret-key", default=DEMO_SECRET_KEY)
    xts.add_argument("--tick-interval", type=float, default=0.2)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trading-ws`` console script. Returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    job: Callable[[], Awaitable[object]]
    if args.command == "demo":
        try:
            symbols = [find_instrument(s).symbol for s in args.symbols]
        except KeyError as exc:
            print(f"trading-ws: {exc.args[0]}", file=sys.stderr)
            return 2
        live = sys.stdout.isatty() and not args.plain
        job = partial(
            run_demo,
            symbols,
            mode=Mode(args.mode),
            duration=args.duration,
            tick_interval=args.tick_interval,
            seed=args.seed,
            live=live,
            broker=args.broker,
        )
    elif args.broker == "xts":
        job = partial(run_xts_sim, args.host, args.port, args.app_key, args.secret_key, args.tick_interval)
    else:
        job = partial(run_kite_sim, args.host, args.port, args.api_key, args.access_token, args.tick_interval)
    try:
        # Ctrl-C is delivered at a checkpoint of the main task, never inside a library task's bookkeeping.
        trio.run(job, restrict_keyboard_interrupt_to_checkpoints=True)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130
    except BaseExceptionGroup as group:
        # Ctrl-C while tasks run arrives wrapped by the nurseries it passed through, sometimes beside
        # the errors it caused on its way out (a socket closed under a reader, a feed closed under its
        # consumer). Ctrl-C anywhere in the group means the user stopped us; those others are echoes.
        if group.subgroup(KeyboardInterrupt) is not None:
            print("stopped", file=sys.stderr)
            return 130
        raise
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
