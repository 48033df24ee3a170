"""``trading-ws demo``: the library against its embedded simulators, shown as a live table (with the
[cli] extra, on a terminal) or as plain lines.

The simulators (the [sim] extra) and ``rich`` (the [cli] extra) are imported by the functions that use
them, so this module imports without either.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Final

import attrs
import trio

from .._errors import ConfigurationError
from .._model import Broker, Connected, Disconnected, Mode, Reconnecting, Resubscribed, Tick
from .._validate import check_instance
from ..brokers.kite import open_kite_feed
from ..brokers.xts import open_xts_feed
from ._common import say

if TYPE_CHECKING:
    from rich.table import Table

    from ..sim import Instrument, SimulatorTLS

DEMO_BROKERS: Final = ("kite", "xts", "both")
"""The values of ``demo --broker``."""

DEFAULT_SYMBOLS: Final = (
    "NSE:INFY",
    "NSE:RELIANCE",
    "NSE:TCS",
    "NSE:NIFTY 50",
    "NFO:NIFTY26DECFUT",
    "CDS:USDINR26DECFUT",
)
"""The symbols the demo shows unless told otherwise (all in the simulators' universe)."""

HEADERS: Final = ("symbol", "last", "change", "volume", "bid", "ask", "ticks/s")
"""The columns of the board."""

_TITLES: Final = {
    ("kite",): "Kite simulator",
    ("xts",): "XTS simulator",
    ("kite", "xts"): "Kite and XTS simulators",
}


@attrs.define
class Row:
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
class Board:
    """The demo's state: rows by (broker, instrument), each feed's status line, and totals."""

    rows: dict[Hashable, Row]
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
        """Count a tick on its row, or record a status event in its feed's status line."""
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
        """Update each row's ticks per second, over windows of at least a second."""
        now = time.monotonic()
        for row in self.rows.values():
            elapsed = now - row.window_start
            if elapsed >= 1.0:
                row.rate = row.window_ticks / elapsed
                row.window_ticks = 0
                row.window_start = now


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def columns(row: Row) -> tuple[str, str, str, str, str, str, str]:
    """The cells of `row`, in the order of `HEADERS`."""
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


def _render_table(board: Board) -> Table:
    from rich.table import Table

    elapsed = time.monotonic() - board.started
    table = Table(
        title=f"trading-ws demo · {board.title} · {board.status}",
        caption=f"{board.total:,} ticks in {elapsed:.0f} s · Ctrl-C to stop",
    )
    for name in HEADERS:
        table.add_column(name, justify="left" if name == "symbol" else "right")
    for row in board.rows.values():
        cells = columns(row)
        style = ""
        if row.last is not None and row.last.change is not None:
            style = "green" if row.last.change >= 0 else "red"
        table.add_row(*cells, style=style)
    return table


async def _render(board: Board, live: bool, interval: float) -> None:
    if live:
        from rich.live import Live

        with Live(_render_table(board), auto_refresh=False, transient=False) as view:
            while True:
                await trio.sleep(interval)
                board.roll_rates()
                view.update(_render_table(board), refresh=True)
    else:
        while True:
            await trio.sleep(1.0)
            board.roll_rates()
            stamp = time.strftime("%H:%M:%S")
            for row in board.rows.values():
                say(stamp, *columns(row), sep="  ")
            say(stamp, f"status={board.status} total_ticks={board.total}")


async def _stream_kite(
    board: Board,
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
    from ..sim import DEMO_ACCESS_TOKEN, DEMO_API_KEY, KiteSimulator

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
    board: Board,
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
    from ..sim import DEMO_APP_KEY, DEMO_SECRET_KEY, XtsSimulator

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
    `live` draws a table with ``rich`` (the [cli] extra), refreshed in place; otherwise plain lines,
    once a second. Needs the [sim] extra. Blocks until `duration` seconds have passed (or forever), then
    returns the number of ticks seen.

    Cancellation: the simulators and feeds close with the demo; nothing is left behind.

    Raises:
        KeyError: a symbol is not in the simulators' universe.
        ConfigurationError: (a ValueError) an unknown broker, a `duration` that is neither None nor a
            positive number of seconds (the simulators refuse a bad `tick_interval` the same way), or a
            `tls` that is not a SimulatorTLS.
        ImportError: the [sim] extra (or, with `live`, the [cli] extra) is not installed.
        OutputClosed: (not `live`) stdout's reader went away.
    """
    from ..sim import SimulatorTLS, find_instrument

    if broker not in DEMO_BROKERS:
        raise ConfigurationError(f"broker must be one of {DEMO_BROKERS}, got {broker!r}")
    if duration is not None and not duration > 0:  # NaN fails too
        raise ConfigurationError(f"duration must be a positive number of seconds or None, got {duration!r}")
    check_instance("tls", tls, SimulatorTLS, optional=True)
    brokers = ("kite", "xts") if broker == "both" else (broker,)
    instruments = [find_instrument(symbol) for symbol in symbols]
    rows: dict[Hashable, Row] = {}
    for name in brokers:
        for i in instruments:
            label = i.symbol if len(brokers) == 1 else f"{i.symbol} ({name})"
            rows[_instrument_key(name, i)] = Row(label, window_start=time.monotonic())
    title = _TITLES[brokers] + (" over TLS" if tls is not None else "")
    board = Board(rows, dict.fromkeys(brokers, "connecting"), title)
    streams = {"kite": _stream_kite, "xts": _stream_xts}
    if tls is not None and not live:
        say(
            "demo over TLS: the simulators serve wss:// and https://, the feeds verify against a throwaway CA"
        )
    with trio.move_on_after(duration if duration is not None else float("inf")):
        async with trio.open_nursery() as nursery:
            for name in brokers:
                await nursery.start(streams[name], board, instruments, mode, tick_interval, seed, tls)
            nursery.start_soon(_render, board, live, 0.25)
    if not live:
        say(f"demo finished: {board.total} ticks")
    return board.total
