"""The ``trading-ws`` command, run as a user would: in a subprocess."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import trio
from processes import Lines, reap

from trading_ws import Broker, Depth, DepthLevel, FeedClosedError, KiteBroker, Mode, Tick, cli
from trading_ws.brokers.kite import open_kite_feed
from trading_ws.cli import main
from trading_ws.sim import DEMO_ACCESS_TOKEN, DEMO_API_KEY

CLI = [sys.executable, "-m", "trading_ws"]


async def test_demo_prints_plain_lines_off_a_terminal() -> None:
    with trio.fail_after(60):
        result = await trio.run_process(
            [
                *CLI,
                "demo",
                "--duration",
                "2",
                "--symbols",
                "NSE:INFY",
                "NSE:NIFTY 50",
                "--tick-interval",
                "0.05",
            ],
            capture_stdout=True,
            capture_stderr=True,
        )
    out = result.stdout.decode()
    assert "NSE:INFY" in out
    assert "NSE:NIFTY 50" in out
    assert "status=connected" in out
    finished = [line for line in out.splitlines() if line.startswith("demo finished:")]
    assert finished
    assert int(finished[0].split()[2]) > 0


def test_unknown_symbol_is_a_clear_error(capsys: object) -> None:
    assert main(["demo", "--symbols", "NSE:NOPE", "--duration", "1"]) == 2


def test_ctrl_c_beside_the_errors_it_caused_still_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What CI once saw: SIGINT landed in a library task, and the group also held the connection loss and
    # the closed feed that followed from it.
    async def interrupted(*args: object) -> None:
        raise BaseExceptionGroup(
            "nursery",
            [KeyboardInterrupt(), ExceptionGroup("feed", [FeedClosedError("the Kite feed is closed")])],
        )

    monkeypatch.setattr(cli, "run_kite_sim", interrupted)
    assert main(["sim", "kite", "--port", "0"]) == 130
    assert "stopped" in capsys.readouterr().err


def test_a_real_error_beside_no_ctrl_c_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: object) -> None:
        raise ExceptionGroup("nursery", [FeedClosedError("the Kite feed is closed")])

    monkeypatch.setattr(cli, "run_kite_sim", broken)
    with pytest.raises(ExceptionGroup) as info:
        main(["sim", "kite", "--port", "0"])
    assert info.group_contains(FeedClosedError)


async def test_ctrl_c_stops_the_demo_within_a_second() -> None:
    process = await trio.lowlevel.open_process([*CLI, "demo"], stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        lines = Lines(process.stdout)
        with trio.fail_after(30):
            while "status=connected" not in await lines.readline():
                pass
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            code = await process.wait()
        assert time.monotonic() - sent < 1.0
        assert code == 130
    finally:
        await reap(process)


async def test_sim_kite_prints_its_url_and_serves() -> None:
    process = await trio.lowlevel.open_process([*CLI, "sim", "kite", "--port", "0"], stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        lines = Lines(process.stdout)
        with trio.fail_after(30):
            line = await lines.readline()
            await lines.readline()  # how to connect
            rest_line = await lines.readline()
        assert line.startswith("Kite simulator listening on ws://127.0.0.1:")
        url = line.split()[-1]
        rest = rest_line.split()[3].removesuffix("/instruments")
        assert rest.startswith("http://127.0.0.1:")
        with trio.fail_after(10):
            async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url) as feed:
                assert feed.connected
            master = await KiteBroker(
                DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, api_url=rest
            ).load_instruments()
            assert "NSE:INFY" in master
        process.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            assert await process.wait() == 130
    finally:
        await reap(process)


def test_the_board_shows_no_volume_or_book_for_an_index() -> None:
    """XTS sends zeros for an index's quantities and touchline book; the demo shows '-' as for Kite."""
    book = Depth([DepthLevel(0.0, 0, 0)], [DepthLevel(0.0, 0, 0)])
    index = Tick(Broker.XTS, 26000, Mode.QUOTE, False, 22386.0, 0, 22386.0, 0, 0, 0, depth=book, segment=1)
    assert cli._columns(cli._Row("NSE:NIFTY 50", index)) == (
        "NSE:NIFTY 50",
        "22,386.00",
        "-",
        "-",
        "-",
        "-",
        "0.0",
    )
    book = Depth([DepthLevel(1561.35, 10, 2)], [DepthLevel(1561.4, 5, 1)])
    stock = Tick(
        Broker.XTS, 1594, Mode.QUOTE, True, 1561.35, 1, None, 56774, depth=book, change=0.5, segment=1
    )
    assert cli._columns(cli._Row("NSE:INFY", stock)) == (
        "NSE:INFY",
        "1,561.35",
        "+0.50%",
        "56,774",
        "1,561.35",
        "1,561.40",
        "0.0",
    )
