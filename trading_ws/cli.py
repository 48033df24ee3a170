"""The ``trading-ws`` command: ``demo`` (the library against its embedded simulators: ``--broker kite``,
``xts`` or ``both``) and ``sim kite`` / ``sim xts`` (run a simulator for other programs, such as the
brokers' own clients). ``--tls`` runs either over ``wss://`` and ``https://`` with a throwaway CA.

Both commands run the simulators, which need the [sim] extra (``pip install 'trading-ws[sim]'``, or
``[all]``); without it they end with one line naming the extra, and exit code 2. The demo's live table
needs the [cli] extra (``rich``); without it the demo prints plain lines, as it does off a terminal.

How it ends (docs/cli.md): 0 when done; 2 for bad arguments or a missing extra; 1 when the command fails
at run time (a port in use); 130 on Ctrl-C; 141 when the reader of its output goes away
(``trading-ws demo | head -2``), as a process killed by SIGPIPE. Each failure is one line on stderr,
``trading-ws: error: ...``; ``-v`` adds the traceback. Only an unexpected error (a bug) prints a
traceback by default.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import re
import shlex
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

import trio

from ._cli._common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    exit_code,
    install_hint,
    missing_modules,
)
from ._cli._demo import DEFAULT_SYMBOLS, DEMO_BROKERS, run_demo as run_demo
from ._cli._sim import run_kite_sim as run_kite_sim, run_xts_sim as run_xts_sim, write_ca
from ._model import Mode
from ._transport import is_loopback_host
from ._version import __version__

if TYPE_CHECKING:
    from .sim import SimulatorTLS

__all__ = ["main"]

_MAX_PORT: Final = 65535

# The simulators' credentials in the help of `sim kite` / `sim xts`, filled in when the help is printed
# (so that building the parser imports no simulator): @DEMO_API_KEY@ stands for trading_ws.sim.DEMO_API_KEY.
_SIMULATOR_NAME = re.compile(r"@(DEMO_[A-Z_]+)@")


def _fill_simulator_names(text: str) -> str:
    """`text` with each ``@DEMO_...@`` replaced by that constant of trading_ws.sim, or by its dotted name
    when the [sim] extra is not installed."""
    if _SIMULATOR_NAME.search(text) is None:
        return text
    if missing_modules("sim"):
        return _SIMULATOR_NAME.sub(r"trading_ws.sim.\1", text)
    from . import sim

    return _SIMULATOR_NAME.sub(lambda match: str(getattr(sim, match.group(1))), text)


def _simulator_missing(command: str) -> str | None:
    """The error line's text when the [sim] extra that `command` needs is not installed, else None."""
    missing = missing_modules("sim")
    if not missing:
        return None
    return (
        f"'trading-ws {command}' runs the simulators, which need the [sim] extra (not installed: "
        f"{', '.join(missing)}): {install_hint('sim')}"
    )


class _Parser(argparse.ArgumentParser):
    """argparse, ending a usage error with one line (``trading-ws: error: ...``, exit 2), no usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"trading-ws: error: {message}; see '{self.prog} --help'\n")

    def format_help(self) -> str:
        return _fill_simulator_names(super().format_help())


def _port(text: str) -> int:
    """An argparse type: a TCP port, 0..65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= _MAX_PORT:
        raise argparse.ArgumentTypeError(f"{port} is not a port: use 0..{_MAX_PORT} (0 picks a free one)")
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
        epilog="Exit codes: 0 done, 1 failed (e.g. a port in use), 2 bad arguments or a missing extra, "
        "130 Ctrl-C, 141 output closed (e.g. | head). See docs/cli.md.",
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
        "demo",
        parents=[common],
        help="stream from the embedded simulators and show a live table (needs the [sim] extra; the "
        "table, the [cli] extra)",
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

    sim = commands.add_parser(
        "sim", parents=[common], help="run a broker simulator on a loopback port (needs the [sim] extra)"
    )
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
    kite.add_argument("--api-key", help="the api_key it accepts (default: @DEMO_API_KEY@)")
    kite.add_argument("--access-token", help="the access_token it accepts (default: @DEMO_ACCESS_TOKEN@)")
    _tick_interval_argument(kite)
    _tls_arguments(kite, "wss:// and https://")
    xts = brokers.add_parser(
        "xts",
        parents=[common],
        help="the Symphony XTS market-data API (REST and Socket.IO, one port)",
        description="Serve the XTS market-data API (REST and Socket.IO on one port) until Ctrl-C, and print "
        "its root URL and the credentials it accepts (user @DEMO_USER_ID@).",
    )
    _listen_arguments(xts)
    xts.add_argument("--app-key", help="the appKey it accepts (default: @DEMO_APP_KEY@)")
    xts.add_argument("--secret-key", help="the secretKey it accepts (default: @DEMO_SECRET_KEY@)")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trading-ws`` console script. Returns the process exit code.

    A usage error (or a missing extra) returns 2 and a run-time failure 1, each after one line on stderr;
    Ctrl-C returns 130 and a closed stdout 141 (see the module docstring). An unexpected error (a bug) is
    raised as is.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # a usage error (already reported), --help or --version
        return exit_.code if isinstance(exit_.code, int) else 0
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    missing = _simulator_missing("demo" if args.command == "demo" else f"sim {args.broker}")
    if missing is not None:
        print(f"trading-ws: error: {missing}", file=sys.stderr)
        return EXIT_USAGE
    # Every command runs a simulator: the [sim] extra is installed.
    from .sim import SimulatorTLS, find_instrument

    symbols: list[str] = []
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
                ca_file = write_ca(tls, args.ca_file, cleanup)
            except OSError as exc:
                reason = exc.strerror or str(exc) or type(exc).__name__
                print(
                    f"trading-ws: error: cannot write the CA certificate to {args.ca_file}: {reason}",
                    file=sys.stderr,
                )
                return EXIT_FAILURE
        job = _demo_job(args, symbols, tls) if args.command == "demo" else _sim_job(args, tls, ca_file)
        try:
            # Ctrl-C is delivered at a checkpoint of the main task, never inside a library task's bookkeeping.
            trio.run(job, restrict_keyboard_interrupt_to_checkpoints=True)
        except (Exception, KeyboardInterrupt, BaseExceptionGroup) as error:
            code = exit_code(error)
            if code is None:
                raise
            return code
    return 0


def _demo_job(
    args: argparse.Namespace, symbols: list[str], tls: SimulatorTLS | None
) -> Callable[[], Awaitable[object]]:
    """``run_demo`` with the parsed arguments. The live table needs ``rich`` (the [cli] extra): without
    it, a note on stderr and plain lines."""
    live = sys.stdout.isatty() and not args.plain
    if live and missing_modules("cli"):
        print(
            "trading-ws: note: the live table needs the [cli] extra (rich is not installed): printing plain "
            f"lines; {install_hint('cli')}",
            file=sys.stderr,
        )
        live = False
    return partial(
        run_demo,
        symbols,
        mode=Mode(args.mode),
        duration=args.duration,
        tick_interval=args.tick_interval,
        seed=args.seed,
        live=live,
        broker=args.broker,
        tls=tls,
    )


def _sim_job(
    args: argparse.Namespace, tls: SimulatorTLS | None, ca_file: Path | None
) -> Callable[[], Awaitable[object]]:
    """``run_kite_sim`` or ``run_xts_sim`` with the parsed arguments; credentials not given are the
    simulator's own."""
    from . import sim

    if args.broker == "xts":
        return partial(
            run_xts_sim,
            args.host,
            args.port,
            sim.DEMO_APP_KEY if args.app_key is None else args.app_key,
            sim.DEMO_SECRET_KEY if args.secret_key is None else args.secret_key,
            args.tick_interval,
            allow_non_loopback=args.allow_non_loopback,
            tls=tls,
            ca_file=ca_file,
        )
    return partial(
        run_kite_sim,
        args.host,
        args.port,
        sim.DEMO_API_KEY if args.api_key is None else args.api_key,
        sim.DEMO_ACCESS_TOKEN if args.access_token is None else args.access_token,
        args.tick_interval,
        rest_port=args.rest_port,
        allow_non_loopback=args.allow_non_loopback,
        tls=tls,
        ca_file=ca_file,
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
