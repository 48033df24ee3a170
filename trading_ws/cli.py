"""The ``trading-ws`` command: ``demo`` (the library against its embedded simulators: ``--broker kite``,
``xts`` or ``both``) and ``sim kite`` / ``sim xts`` (run a simulator for other programs, such as the
brokers' own clients). ``--tls`` runs either over ``wss://`` and ``https://`` with a throwaway CA.

How it ends (docs/cli.md): 0 when done; 2 for bad arguments; 1 when the command fails at run time (a port
in use); 130 on Ctrl-C; 141 when the reader of its output goes away (``trading-ws demo | head -2``), as a
process killed by SIGPIPE. Each failure is one line on stderr, ``trading-ws: error: ...``; ``-v`` adds the
traceback. Only an unexpected error (a bug) prints a traceback by default.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from functools import partial
from pathlib import Path
from typing import NoReturn

import attrs
import trio

from ._errors import ConfigurationError, TradingWsError
from ._model import Broker, Connected, Disconnected, Mode, Reconnecting, Resubscribed, Tick
from ._scrub import scrub
from ._transport import is_loopback_host
from ._validate import check_instance
from ._version import __version__
from .brokers.kite import open_kite_feed
from .brokers.xts import open_xts_feed
from .sim import (
    DEMO_ACCESS_TOKEN,
    DEMO_API_KEY,
    DEMO_APP_KEY,
    DEMO_SECRET_KEY,
    DEMO_USER_ID,
    Instrument,
    KiteSimulator,
    SimulatorTLS,
    XtsSimulator,
    find_instrument,
)
from .sim._listen import MAX_PORT

__all__ = ["main"]

logger = logging.getLogger("trading_ws.cli")

EXIT_FAILURE = 1
"""The command failed at run time (a port in use, a simulator that cannot start)."""
EXIT_USAGE = 2
"""Bad arguments (argparse's code)."""
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C (128 + SIGINT)."""
EXIT_OUTPUT_CLOSED = 141
"""The reader of stdout went away (128 + SIGPIPE, what a shell reports for ``yes | head -1``)."""


class _OutputClosed(Exception):
    """Stdout's reader went away (``trading-ws demo | head -2``): the command stops quietly."""


class _Failure(Exception):
    """A run-time failure the user can act on; its message is the whole story (one line)."""


def _say(*values: object, sep: str = " ") -> None:
    """Print one line to stdout, flushed.

    Raises:
        _OutputClosed: stdout's reader went away.
    """
    try:
        print(*values, sep=sep, flush=True)
    except BrokenPipeError as exc:
        raise _OutputClosed("stdout was closed") from exc


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
                _say(stamp, *_columns(row), sep="  ")
            _say(stamp, f"status={board.status} total_ticks={board.total}")


async def _stream_kite(
    board: _Board,
    instruments: Sequence[Instrument],
    mode: Mode,
    tick_interval: float,
    seed: int,
    tls: SimulatorTLS | None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the Kite simulator, connect the real Kite feed, subscribe, and feed the board (forever).
    With `tls`, over ``wss://``, the feed trusting that CA only."""
    simulator = KiteSimulator(tick_interval=tick_interval, seed=seed)
    context = None if tls is None else tls.client_context()
    async with trio.open_nursery() as nursery:
        url = await nursery.start(partial(simulator.serve, tls=tls))
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, ssl_context=context) as feed:
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
    tls: SimulatorTLS | None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the XTS simulator, connect the real XTS feed (REST login + Socket.IO), subscribe, and feed
    the board (forever). With `tls`, over ``https://`` and ``wss://``, the feed trusting that CA only."""
    simulator = XtsSimulator(tick_interval=tick_interval, seed=seed)
    context = None if tls is None else tls.client_context()
    async with trio.open_nursery() as nursery:
        root = await nursery.start(partial(simulator.serve, tls=tls))
        # No logout on exit: the simulator goes away with the demo.
        async with open_xts_feed(
            DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root, logout_on_exit=False, ssl_context=context
        ) as feed:
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
    tls: SimulatorTLS | None = None,
) -> int:
    """Run the demo: start the simulator(s) on loopback ports, connect the real feed(s), show ticks.

    `broker` is ``"kite"``, ``"xts"`` or ``"both"`` (one row per symbol and broker). With `tls` the
    simulators serve ``wss://`` and ``https://`` with its certificate and the feeds trust its CA only.
    Blocks until `duration` seconds have passed (or forever), then returns the number of ticks seen.

    Raises:
        KeyError: a symbol is not in the simulators' universe.
        ConfigurationError: (a ValueError) an unknown broker, a `duration` that is neither None nor a
            positive number of seconds (the simulators refuse a bad `tick_interval` the same way), or a
            `tls` that is not a SimulatorTLS.
    """
    if broker not in DEMO_BROKERS:
        raise ConfigurationError(f"broker must be one of {DEMO_BROKERS}, got {broker!r}")
    if duration is not None and not duration > 0:  # NaN fails too
        raise ConfigurationError(f"duration must be a positive number of seconds or None, got {duration!r}")
    check_instance("tls", tls, SimulatorTLS, optional=True)
    brokers = ("kite", "xts") if broker == "both" else (broker,)
    instruments = [find_instrument(symbol) for symbol in symbols]
    rows: dict[Hashable, _Row] = {}
    for name in brokers:
        for i in instruments:
            label = i.symbol if len(brokers) == 1 else f"{i.symbol} ({name})"
            rows[_instrument_key(name, i)] = _Row(label, window_start=time.monotonic())
    title = _TITLES[brokers] + (" over TLS" if tls is not None else "")
    board = _Board(rows, dict.fromkeys(brokers, "connecting"), title)
    streams = {"kite": _stream_kite, "xts": _stream_xts}
    if tls is not None and not live:
        _say(
            "demo over TLS: the simulators serve wss:// and https://, the feeds verify against a throwaway CA"
        )
    with trio.move_on_after(duration if duration is not None else float("inf")):
        async with trio.open_nursery() as nursery:
            for name in brokers:
                await nursery.start(streams[name], board, instruments, mode, tick_interval, seed, tls)
            nursery.start_soon(_render, board, live, 0.25)
    if not live:
        _say(f"demo finished: {board.total} ticks")
    return board.total


def _leaves(error: BaseException) -> list[BaseException]:
    """The exceptions in `error`, exception groups flattened."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


async def _listen(
    nursery: trio.Nursery, serve: Callable[..., Awaitable[object]], what: str, host: str, port: int
) -> str:
    """Start `serve` (a simulator's ``serve`` with its arguments bound) and return the URL it reports.

    Raises:
        _Failure: it could not listen (the port is in use, the host is unknown...).
    """
    try:
        url: str = await nursery.start(serve)
    except (OSError, BaseExceptionGroup) as exc:  # the XTS simulator's OSError comes in a group
        leaves = _leaves(exc)
        errors = [leaf for leaf in leaves if isinstance(leaf, OSError)]
        if len(errors) != len(leaves):  # Ctrl-C, or not a listening problem
            raise
        reason = errors[0].strerror or str(errors[0]) or type(errors[0]).__name__
        raise _Failure(f"cannot listen on {host}:{port} for the {what}: {reason}") from exc
    return url


def _warn_if_exposed(host: str) -> None:
    if not is_loopback_host(host):
        print(
            f"trading-ws: warning: the simulator listens on {host}, reachable from the network: anyone who "
            "can reach it may connect with the credentials above",
            file=sys.stderr,
            flush=True,
        )


async def run_kite_sim(
    host: str,
    port: int,
    api_key: str,
    access_token: str,
    tick_interval: float,
    *,
    rest_port: int = 0,
    allow_non_loopback: bool = False,
    tls: SimulatorTLS | None = None,
    ca_file: Path | None = None,
) -> None:
    """Serve the Kite simulator until cancelled, printing its URLs and the credentials it accepts once it
    listens: the ticker on `port`, the REST instrument master on `rest_port` (0: a free port) of the
    same host. With `tls`, ``wss://`` and ``https://`` with its certificate; `ca_file` (where the caller
    wrote the CA) is then printed with how to trust it.

    Raises:
        ConfigurationError: a bad argument (a non-loopback host without `allow_non_loopback`...).
        _Failure: a port cannot be listened on.
        _OutputClosed: stdout's reader went away.
    """
    simulator = KiteSimulator(api_key=api_key, access_token=access_token, tick_interval=tick_interval)
    async with trio.open_nursery() as nursery:
        serve = partial(simulator.serve, host, port, allow_non_loopback=allow_non_loopback, tls=tls)
        url = await _listen(nursery, serve, "Kite ticker", host, port)
        serve_rest = partial(
            simulator.serve_rest, host, rest_port, allow_non_loopback=allow_non_loopback, tls=tls
        )
        rest = await _listen(nursery, serve_rest, "Kite REST instrument master", host, rest_port)
        _say(f"Kite simulator listening on {url}")
        _say(f"  connect with: api_key={api_key} access_token={access_token}")
        _say(f"  instrument master: GET {rest}/instruments (KiteBroker(api_url={rest!r}))")
        if ca_file is not None:
            auth = shlex.quote(f"Authorization: token {api_key}:{access_token}")
            _say_trust(ca_file, f"--compressed -H {auth} {rest}/instruments/NSE", "KiteBroker")
        _warn_if_exposed(host)


async def run_xts_sim(
    host: str,
    port: int,
    app_key: str,
    secret_key: str,
    tick_interval: float,
    *,
    allow_non_loopback: bool = False,
    tls: SimulatorTLS | None = None,
    ca_file: Path | None = None,
) -> None:
    """Serve the XTS simulator (REST and Socket.IO on one port) until cancelled, printing its root URL and
    the credentials it accepts once it listens. With `tls`, ``https://`` (and a ``wss://`` socket) with
    its certificate; `ca_file` (where the caller wrote the CA) is then printed with how to trust it.

    Raises:
        ConfigurationError: a bad argument (a non-loopback host without `allow_non_loopback`...).
        _Failure: the port cannot be listened on.
        _OutputClosed: stdout's reader went away.
    """
    simulator = XtsSimulator(app_key=app_key, secret_key=secret_key, tick_interval=tick_interval)
    async with trio.open_nursery() as nursery:
        serve = partial(simulator.serve, host, port, allow_non_loopback=allow_non_loopback, tls=tls)
        root = await _listen(nursery, serve, "XTS simulator", host, port)
        _say(f"XTS simulator listening on {root}")
        _say(
            f"  log in at {root}/apimarketdata/auth/login with appKey={app_key} secretKey={secret_key} "
            f"(user {simulator.user_id})"
        )
        if ca_file is not None:
            form = shlex.quote(f"appKey={app_key}&secretKey={secret_key}")
            _say_trust(ca_file, f"-d {form} {root}/apimarketdata/auth/login", "XtsBroker")
        _warn_if_exposed(host)


def _say_trust(ca_file: Path, curl_arguments: str, broker: str) -> None:
    """The TLS lines of a simulator's banner: where the CA is and how to trust it (in Python, with curl
    given `curl_arguments`, and for other OpenSSL programs)."""
    path = str(ca_file)
    _say(f"  TLS: a throwaway CA made for this run signed the certificate; the CA certificate: {path}")
    _say(f"  trust it in Python: {broker}(..., ssl_context=ssl.create_default_context(cafile={path!r}))")
    _say(f"  trust it with curl: curl --cacert {shlex.quote(path)} {curl_arguments}")
    _say(f"  trust it elsewhere: SSL_CERT_FILE={shlex.quote(path)} (OpenSSL programs)")


class _Parser(argparse.ArgumentParser):
    """argparse, ending a usage error with one line (``trading-ws: error: ...``, exit 2), no usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"trading-ws: error: {message}; see '{self.prog} --help'\n")


def _port(text: str) -> int:
    """An argparse type: a TCP port, 0..65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"{port} is not a port: use 0..{MAX_PORT} (0 picks a free one)")
    return port


def _seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (seconds > 0 and math.isfinite(seconds)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return seconds


def _parser() -> argparse.ArgumentParser:
    # -v is accepted before the command and after it (trading-ws -v demo, trading-ws demo -v): the
    # subcommands share a parent parser whose default is SUPPRESS, so it never resets the main one's value.
    common = _Parser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log at DEBUG level to stderr (and show a failure's traceback)",
    )
    parser = _Parser(
        prog="trading-ws",
        description="Real-time Indian market data on Trio, with broker simulators.",
        epilog="Exit codes: 0 done, 1 failed (e.g. a port in use), 2 bad arguments, 130 Ctrl-C, "
        "141 output closed (e.g. | head). See docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"trading-ws {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log at DEBUG level to stderr (and show a failure's traceback)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{demo,sim}")

    demo = commands.add_parser(
        "demo", parents=[common], help="stream from the embedded simulator and show a live table"
    )
    demo.add_argument(
        "--duration",
        type=_seconds,
        default=None,
        metavar="S",
        help="stop after S seconds (default: at Ctrl-C)",
    )
    demo.add_argument(
        "--symbols",
        nargs="+",
        default=list(DEFAULT_SYMBOLS),
        metavar="SYMBOL",
        help="exchange-qualified symbols to show (default: "
        + " ".join(map(shlex.quote, DEFAULT_SYMBOLS))
        + ")",
    )
    demo.add_argument(
        "--mode",
        choices=[m.value for m in Mode],
        default=Mode.FULL.value,
        help="what each tick carries: last price, quote, or quote and depth (default: %(default)s)",
    )
    demo.add_argument(
        "--tick-interval",
        type=_seconds,
        default=0.2,
        metavar="S",
        help="simulator seconds between frames (default: %(default)s)",
    )
    demo.add_argument("--seed", type=int, default=0, help="simulator random seed (default: %(default)s)")
    demo.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    demo.add_argument(
        "--broker",
        choices=DEMO_BROKERS,
        default="kite",
        help="which simulator and feed; both: side by side (default: %(default)s)",
    )
    demo.add_argument(
        "--tls",
        action="store_true",
        help="run over wss:// and https://, the feeds verifying the simulators' certificate against a "
        "throwaway CA",
    )

    sim = commands.add_parser("sim", parents=[common], help="run a broker simulator on a loopback port")
    brokers = sim.add_subparsers(dest="broker", required=True, metavar="{kite,xts}")
    kite = brokers.add_parser(
        "kite",
        parents=[common],
        help="the Kite Connect v3 ticker and REST instrument master",
        description="Serve the Kite ticker (WebSocket) and the REST instrument master (GET /instruments) "
        "until Ctrl-C, and print their URLs and the credentials they accept.",
    )
    _listen_arguments(kite)
    kite.add_argument(
        "--rest-port",
        type=_port,
        default=0,
        metavar="PORT",
        help="the REST instrument master's port; 0 picks a free one (default: %(default)s)",
    )
    kite.add_argument("--api-key", default=DEMO_API_KEY, help="the api_key it accepts (default: %(default)s)")
    kite.add_argument(
        "--access-token", default=DEMO_ACCESS_TOKEN, help="the access_token it accepts (default: %(default)s)"
    )
    _tick_interval_argument(kite)
    _tls_arguments(kite, "wss:// and https://")
    xts = brokers.add_parser(
        "xts",
        parents=[common],
        help="the Symphony XTS market-data API (REST and Socket.IO, one port)",
        description="Serve the XTS market-data API (REST and Socket.IO on one port) until Ctrl-C, and print "
        f"its root URL and the credentials it accepts (user {DEMO_USER_ID}).",
    )
    _listen_arguments(xts)
    xts.add_argument("--app-key", default=DEMO_APP_KEY, help="the appKey it accepts (default: %(default)s)")
    xts.add_argument(
        "--secret-key", default=DEMO_SECRET_KEY, help="the secretKey it accepts (default: %(default)s)"
    )
    _tick_interval_argument(xts)
    _tls_arguments(xts, "https:// (and the socket on wss://)")
    return parser


def _listen_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on; a loopback one unless --allow-non-loopback (default: %(default)s)",
    )
    parser.add_argument(
        "--port", type=_port, default=0, help="the TCP port; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="allow a --host that is not a loopback address: this exposes the simulator, and its "
        "well-known credentials, to the network",
    )


def _tls_arguments(parser: argparse.ArgumentParser, secure: str) -> None:
    parser.add_argument(
        "--tls",
        action="store_true",
        help=f"serve {secure} with a certificate for localhost, 127.0.0.1 and ::1 from a throwaway CA made "
        "for this run",
    )
    parser.add_argument(
        "--ca-file",
        metavar="PATH",
        default=None,
        help="with --tls: write the CA's certificate (PEM) to PATH, for clients to trust; an existing file "
        "is replaced only if it holds a PEM certificate (default: ca.pem in a fresh temporary directory, "
        "removed when the simulator stops)",
    )


def _tick_interval_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tick-interval",
        type=_seconds,
        default=0.2,
        metavar="S",
        help="seconds between data frames (default: %(default)s)",
    )


def _sim_argument_error(args: argparse.Namespace) -> str | None:
    """What argparse cannot check alone about ``sim`` arguments: the usage error, or None."""
    if not args.allow_non_loopback and not is_loopback_host(args.host):
        return (
            f"argument --host: {args.host!r} is not a loopback address; pass --allow-non-loopback to expose "
            "the simulator on the network"
        )
    if args.ca_file is not None and not args.tls:
        return "argument --ca-file: only with --tls (without it there is no CA)"
    if args.broker == "kite" and args.port != 0 and args.port == args.rest_port:
        return f"--port and --rest-port are both {args.port}: the ticker and the REST master need two ports"
    return None


def _one_line(error: BaseException) -> str:
    """`error` as one printable line, with its cause when the message alone does not say why."""
    text = str(error) or type(error).__name__
    cause = error.__cause__
    if isinstance(error, TradingWsError) and cause is not None and not isinstance(cause, BaseExceptionGroup):
        reason = str(cause) or type(cause).__name__
        if reason not in text:
            text = f"{text}: {reason}"
    return scrub(" ".join(text.split()), limit=500)


def _quiet_stdout() -> None:
    """Point stdout's descriptor at the null device, so the interpreter's last flush of what is still
    buffered does not fail again (the recipe of Python's docs, "Note on SIGPIPE")."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a StringIO (tests) or already closed
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _exit_code(error: BaseException) -> int | None:
    """The exit code for an error out of the command, after saying what happened on stderr; None for an
    error the command does not expect (a bug), which the caller re-raises with its traceback."""
    leaves = _leaves(error)
    if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
        # Ctrl-C while tasks run arrives wrapped by the nurseries it passed through, sometimes beside
        # the errors it caused on its way out (a socket closed under a reader, a feed closed under its
        # consumer). Ctrl-C anywhere in the group means the user stopped us; those others are echoes.
        print("stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    if any(isinstance(leaf, _OutputClosed) for leaf in leaves):
        # The reader is gone (| head): stop quietly, as a process killed by SIGPIPE would. (Restoring
        # SIGPIPE's default action instead would also kill us for a peer closing one of our sockets.)
        _quiet_stdout()
        return EXIT_OUTPUT_CLOSED
    if not all(isinstance(leaf, TradingWsError | _Failure | OSError) for leaf in leaves):
        return None
    logger.debug("the command failed", exc_info=error)  # the traceback, with -v
    messages = list(dict.fromkeys(_one_line(leaf) for leaf in leaves))
    print(f"trading-ws: error: {'; '.join(messages)}", file=sys.stderr)
    return EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trading-ws`` console script. Returns the process exit code.

    A usage error returns 2 and a run-time failure 1, each after one line on stderr; Ctrl-C returns 130
    and a closed stdout 141 (see the module docstring). An unexpected error (a bug) is raised as is.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # a usage error (already reported), --help or --version
        return exit_.code if isinstance(exit_.code, int) else 0
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command == "sim":
        usage_error = _sim_argument_error(args)
        if usage_error is not None:
            print(
                f"trading-ws: error: {usage_error}; see 'trading-ws sim {args.broker} --help'",
                file=sys.stderr,
            )
            return EXIT_USAGE
    elif args.command == "demo":
        try:
            symbols = [find_instrument(s).symbol for s in args.symbols]
        except KeyError as exc:
            print(
                f"trading-ws: error: argument --symbols: {exc.args[0]}; see 'trading-ws demo --help'",
                file=sys.stderr,
            )
            return EXIT_USAGE
    # The CA file in a temporary directory lives as long as the command: removed on the way out.
    with contextlib.ExitStack() as cleanup:
        tls = SimulatorTLS() if args.tls else None
        ca_file: Path | None = None
        if tls is not None and args.command == "sim":
            try:
                ca_file = _write_ca(tls, args.ca_file, cleanup)
            except OSError as exc:
                reason = exc.strerror or str(exc) or type(exc).__name__
                print(
                    f"trading-ws: error: cannot write the CA certificate to {args.ca_file}: {reason}",
                    file=sys.stderr,
                )
                return EXIT_FAILURE
        job: Callable[[], Awaitable[object]]
        if args.command == "demo":
            job = partial(
                run_demo,
                symbols,
                mode=Mode(args.mode),
                duration=args.duration,
                tick_interval=args.tick_interval,
                seed=args.seed,
                live=sys.stdout.isatty() and not args.plain,
                broker=args.broker,
                tls=tls,
            )
        elif args.broker == "xts":
            job = partial(
                run_xts_sim,
                args.host,
                args.port,
                args.app_key,
                args.secret_key,
                args.tick_interval,
                allow_non_loopback=args.allow_non_loopback,
                tls=tls,
                ca_file=ca_file,
            )
        else:
            job = partial(
                run_kite_sim,
                args.host,
                args.port,
                args.api_key,
                args.access_token,
                args.tick_interval,
                rest_port=args.rest_port,
                allow_non_loopback=args.allow_non_loopback,
                tls=tls,
                ca_file=ca_file,
            )
        try:
            # Ctrl-C is delivered at a checkpoint of the main task, never inside a library task's bookkeeping.
            trio.run(job, restrict_keyboard_interrupt_to_checkpoints=True)
        except (Exception, KeyboardInterrupt, BaseExceptionGroup) as error:
            code = _exit_code(error)
            if code is None:
                raise
            return code
    return 0


def _write_ca(tls: SimulatorTLS, path: str | None, cleanup: contextlib.ExitStack) -> Path:
    """Write `tls`'s CA certificate to `path`, or to ``ca.pem`` in a fresh private temporary directory
    that `cleanup` removes; return the absolute path written.

    Raises:
        OSError: the file cannot be written.
    """
    if path is None:
        directory = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="trading-ws-tls-"))
        return tls.write_ca(Path(directory) / "ca.pem")
    target = Path(path).absolute()
    if target.exists() and not _holds_a_certificate(target):
        # A typo must not destroy a file: only an earlier CA (a PEM certificate) is replaced.
        raise FileExistsError(f"{target} exists and is not a PEM certificate: not replacing it")
    return tls.write_ca(target)


def _holds_a_certificate(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(64).startswith(b"-----BEGIN CERTIFICATE-----")
    except OSError:
        return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
