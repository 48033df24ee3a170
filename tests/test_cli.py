"""The ``trading-ws`` command, run as a user would: in a subprocess, or `main(argv)` in-process."""

from __future__ import annotations

import gc
import logging
import math
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings, strategies as st
from processes import Lines, reap

from trading_ws import (
    Broker,
    ConfigurationError,
    ConnectError,
    Depth,
    DepthLevel,
    FeedClosedError,
    KiteBroker,
    Mode,
    Tick,
    cli,
)
from trading_ws._cli._demo import Row, columns
from trading_ws._cli._sim import warn_if_exposed
from trading_ws.brokers.kite import open_kite_feed
from trading_ws.brokers.xts import open_xts_feed
from trading_ws.cli import main
from trading_ws.sim import (
    DEMO_ACCESS_TOKEN,
    DEMO_API_KEY,
    DEMO_APP_KEY,
    DEMO_SECRET_KEY,
    DEMO_USER_ID,
    SimulatorTLS,
)

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


def _one_error_line(err: str) -> str:
    """The only line of `err`, checked to be a ``trading-ws: error:`` line and not a traceback."""
    assert "Traceback" not in err
    assert "ExceptionGroup" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("trading-ws: error: ")
    return lines[0]


@pytest.fixture
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the commands' jobs: a test of argument checks can never start a simulator (or hang)."""
    ran: list[str] = []

    def stub(name: str) -> object:
        async def job(*args: object, **kwargs: object) -> None:
            ran.append(name)

        return job

    for name in ("run_demo", "run_kite_sim", "run_xts_sim"):
        monkeypatch.setattr(cli, name, stub(name))
    return ran


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["demo", "--duration", "-1"], id="negative duration"),
        pytest.param(["demo", "--duration", "0"], id="zero duration"),
        pytest.param(["demo", "--duration", "nan"], id="nan duration"),
        pytest.param(["demo", "--duration", "soon"], id="not a number"),
        pytest.param(["demo", "--tick-interval", "0"], id="zero tick interval"),
        pytest.param(["demo", "--tick-interval", "-0.5"], id="negative tick interval"),
        pytest.param(["demo", "--tick-interval", "inf"], id="infinite tick interval"),
        pytest.param(["sim", "kite", "--tick-interval", "0"], id="sim kite zero tick interval"),
        pytest.param(["sim", "xts", "--tick-interval", "nan"], id="sim xts nan tick interval"),
        pytest.param(["sim", "kite", "--port", "99999"], id="kite port 99999"),
        pytest.param(["sim", "xts", "--port", "99999"], id="xts port 99999"),
        pytest.param(["sim", "kite", "--rest-port", "65536"], id="rest port 65536"),
        pytest.param(["sim", "kite", "--port", "-1"], id="negative port"),
        pytest.param(["sim", "xts", "--port", "http"], id="port not a number"),
        pytest.param(["sim", "kite", "--port", "8765", "--rest-port", "8765"], id="one port for two"),
        pytest.param(["sim", "kite", "--host", "0.0.0.0"], id="kite non-loopback host"),
        pytest.param(["sim", "xts", "--host", "192.0.2.1"], id="xts non-loopback host"),
        pytest.param(["sim", "kite", "--host", "example.com"], id="host name"),
        pytest.param(["demo", "--symbols", "NSE:NOPE", "--duration", "1"], id="unknown symbol"),
        pytest.param(["demo", "--broker", "zerodha"], id="unknown broker"),
        pytest.param(["demo", "--no-such-flag"], id="unknown flag"),
        pytest.param(["sim"], id="no simulator"),
        pytest.param([], id="no command"),
    ],
)
def test_bad_arguments_end_with_one_line_and_exit_2(
    argv: list[str], nothing_runs: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    _one_error_line(err)
    assert nothing_runs == []


def test_the_error_line_names_the_argument_and_what_to_do(
    nothing_runs: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sim", "kite", "--host", "0.0.0.0"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--host" in line
    assert "--allow-non-loopback" in line
    assert "allow_non_loopback=True" not in line  # a Python argument the command line cannot pass
    assert main(["demo", "--duration", "-1"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--duration" in line
    assert "positive" in line
    assert main(["sim", "xts", "--port", "99999"]) == 2
    assert "0..65535" in _one_error_line(capsys.readouterr().err)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    option=st.sampled_from(
        [["sim", "kite", "--port"], ["sim", "kite", "--rest-port"], ["sim", "xts", "--port"]]
    ),
    port=st.integers().filter(lambda port: not 0 <= port <= 65535),
)
def test_every_port_outside_0_to_65535_is_a_usage_error(
    option: list[str], port: int, nothing_runs: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # 99999 used to listen on 34463 (99999 - 65536) for Kite and to raise OverflowError for XTS.
    assert main([*option[:-1], f"{option[-1]}={port}"]) == 2
    assert "0..65535" in _one_error_line(capsys.readouterr().err)
    assert nothing_runs == []


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(port=st.integers(min_value=0, max_value=65535))
def test_every_port_in_0_to_65535_is_accepted(port: int, nothing_runs: list[str]) -> None:
    nothing_runs.clear()
    assert main(["sim", "xts", "--port", str(port)]) == 0
    assert nothing_runs == ["run_xts_sim"]


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "-v"],
        ["-v", "demo"],
        ["demo", "--verbose", "--duration", "1"],
        ["sim", "kite", "-v"],
        ["sim", "-v", "xts"],
        ["-v", "sim", "xts", "-v"],
    ],
)
def test_verbose_is_accepted_before_and_after_the_command(
    argv: list[str], nothing_runs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    configured: list[object] = []
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: configured.append(kwargs["level"]))
    assert main(argv) == 0
    assert configured == [logging.DEBUG]
    assert len(nothing_runs) == 1


def test_without_verbose_logging_is_left_alone(
    nothing_runs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    configured: list[object] = []
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: configured.append(kwargs))
    assert main(["sim", "kite"]) == 0
    assert main(["demo"]) == 0
    assert configured == []


def test_allow_non_loopback_is_an_explicit_flag(
    nothing_runs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only parsed here: a test never listens on a non-loopback address.
    seen: list[tuple[object, ...]] = []

    async def record(*args: object, **kwargs: object) -> None:
        seen.append((args[0], kwargs["allow_non_loopback"]))

    monkeypatch.setattr(cli, "run_kite_sim", record)
    monkeypatch.setattr(cli, "run_xts_sim", record)
    assert main(["sim", "kite", "--host", "0.0.0.0", "--allow-non-loopback"]) == 0
    assert main(["sim", "xts", "--host", "::", "--allow-non-loopback"]) == 0
    assert main(["sim", "kite"]) == 0
    assert seen == [("0.0.0.0", True), ("::", True), ("127.0.0.1", False)]


def test_a_simulator_on_the_network_is_announced_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    warn_if_exposed("0.0.0.0")
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("trading-ws: warning: the simulator listens on 0.0.0.0, reachable from the network")
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1"):
        warn_if_exposed(host)
    assert capsys.readouterr() == ("", "")


async def test_the_simulator_itself_still_refuses_a_non_loopback_host_without_the_flag() -> None:
    with trio.fail_after(5):
        with pytest.raises(ExceptionGroup) as kite:
            await cli.run_kite_sim("0.0.0.0", 0, DEMO_API_KEY, DEMO_ACCESS_TOKEN, 0.2)
        assert kite.group_contains(ConfigurationError, match="loopback")
        with pytest.raises(ExceptionGroup) as xts:
            await cli.run_xts_sim("0.0.0.0", 0, DEMO_APP_KEY, DEMO_SECRET_KEY, 0.2)
        assert xts.group_contains(ConfigurationError, match="loopback")


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("command", "what"),
    [
        (["sim", "kite", "--port"], "Kite ticker"),
        (["sim", "kite", "--rest-port"], "Kite REST instrument master"),
        (["sim", "xts", "--port"], "XTS simulator"),
    ],
)
def test_a_port_in_use_is_one_line_and_exit_1(
    command: list[str], what: str, taken_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, str(taken_port)]) == 1
    # hypercorn (under the XTS simulator) does not close the socket whose bind failed: collect it here,
    # where its ResourceWarning is expected, rather than in whichever test the garbage collector runs next.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    out, err = capsys.readouterr()
    assert out == ""
    line = _one_error_line(err)
    assert f"127.0.0.1:{taken_port}" in line
    assert what in line


def test_a_run_time_library_error_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def refused(*args: object, **kwargs: object) -> None:
        raise ExceptionGroup("nursery", [ExceptionGroup("inner", [ConfigurationError("tick_interval\nbad")])])

    monkeypatch.setattr(cli, "run_kite_sim", refused)
    assert main(["sim", "kite"]) == 1
    assert _one_error_line(capsys.readouterr().err) == "trading-ws: error: tick_interval bad"


async def test_run_demo_refuses_a_bad_duration() -> None:
    for duration in (-1.0, 0.0, math.nan, -math.inf):
        with pytest.raises(ConfigurationError, match="duration"):
            await cli.run_demo(
                ["NSE:INFY"], mode=Mode.LTP, duration=duration, tick_interval=0.2, seed=0, live=False
            )
    with pytest.raises(ConfigurationError, match="broker"):
        await cli.run_demo(
            ["NSE:INFY"], mode=Mode.LTP, duration=1, tick_interval=0.2, seed=0, live=False, broker="x"
        )


def test_help_shows_the_defaults_and_the_simulator_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "kite", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in (
        f"(default: {DEMO_API_KEY})",
        f"(default: {DEMO_ACCESS_TOKEN})",
        "(default: 127.0.0.1)",
        "--rest-port",
        "--allow-non-loopback",
        "(default: 0.2)",
    ):
        assert text in out
    assert main(["sim", "xts", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in (f"(default: {DEMO_APP_KEY})", f"(default: {DEMO_SECRET_KEY})", DEMO_USER_ID):
        assert text in out
    assert main(["demo", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in ("(default: full)", "(default: kite)", "'NSE:NIFTY 50'", "(default: 0.2)"):
        assert text in out


def test_ctrl_c_beside_the_errors_it_caused_still_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What CI once saw: SIGINT landed in a library task, and the group also held the connection loss and
    # the closed feed that followed from it.
    async def interrupted(*args: object, **kwargs: object) -> None:
        raise BaseExceptionGroup(
            "nursery",
            [KeyboardInterrupt(), ExceptionGroup("feed", [FeedClosedError("the Kite feed is closed")])],
        )

    monkeypatch.setattr(cli, "run_kite_sim", interrupted)
    assert main(["sim", "kite", "--port", "0"]) == 130
    assert "stopped" in capsys.readouterr().err


def test_a_library_error_beside_no_ctrl_c_is_reported_not_swallowed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        closed = FeedClosedError("the Kite feed is closed")
        closed.__cause__ = ConnectError("the connection was lost")
        raise ExceptionGroup("nursery", [closed])

    monkeypatch.setattr(cli, "run_kite_sim", broken)
    assert main(["sim", "kite", "--port", "0"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert line == "trading-ws: error: the Kite feed is closed: the connection was lost"


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    async def buggy(*args: object, **kwargs: object) -> None:
        raise ExceptionGroup("nursery", [AttributeError("'str' object has no attribute 'value'")])

    monkeypatch.setattr(cli, "run_kite_sim", buggy)
    with pytest.raises(ExceptionGroup) as info:
        main(["sim", "kite", "--port", "0"])
    assert info.group_contains(AttributeError)


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_sim_kite_prints_its_urls_and_credentials_and_serves() -> None:
    rest_port = _free_port()
    process = await trio.lowlevel.open_process(
        [*CLI, "sim", "kite", "--port", "0", "--rest-port", str(rest_port)], stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        lines = Lines(process.stdout)
        with trio.fail_after(30):
            line = await lines.readline()
            credentials = await lines.readline()
            rest_line = await lines.readline()
        assert line.startswith("Kite simulator listening on ws://127.0.0.1:")
        url = line.split()[-1]
        # The credentials the simulator accepts, not placeholders.
        assert credentials == f"  connect with: api_key={DEMO_API_KEY} access_token={DEMO_ACCESS_TOKEN}"
        rest = rest_line.split()[3].removesuffix("/instruments")
        assert rest == f"http://127.0.0.1:{rest_port}"
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


async def test_sim_xts_prints_its_url_and_credentials_and_serves() -> None:
    process = await trio.lowlevel.open_process([*CLI, "sim", "xts"], stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        lines = Lines(process.stdout)
        with trio.fail_after(30):
            line = await lines.readline()
            login = await lines.readline()
        assert line.startswith("XTS simulator listening on http://127.0.0.1:")
        root = line.split()[-1]
        assert login == (
            f"  log in at {root}/apimarketdata/auth/login with appKey={DEMO_APP_KEY} "
            f"secretKey={DEMO_SECRET_KEY} (user {DEMO_USER_ID})"
        )
        with trio.fail_after(10):
            async with open_xts_feed(
                DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root, logout_on_exit=False
            ) as feed:
                assert feed.connected
        process.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            assert await process.wait() == 130
    finally:
        await reap(process)


async def test_a_closed_output_ends_the_demo_quietly() -> None:
    """``trading-ws demo | head -2``: no traceback, and 141 as for a process killed by SIGPIPE."""
    process = await trio.lowlevel.open_process(
        [*CLI, "demo", "--duration", "30", "--tick-interval", "0.05", "--symbols", "NSE:INFY"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        lines = Lines(process.stdout)
        with trio.fail_after(30):
            assert "NSE:INFY" in await lines.readline()
            await lines.readline()
        await process.stdout.aclose()  # what head does after two lines
        with trio.fail_after(10):
            code = await process.wait()
            err = b""
            while chunk := await process.stderr.receive_some():
                err += chunk
        assert code == 141
        assert err.decode() == ""
    finally:
        if process.stderr is not None:
            await process.stderr.aclose()
        await reap(process)


def test_the_board_shows_no_volume_or_book_for_an_index() -> None:
    """XTS sends zeros for an index's quantities and touchline book; the demo shows '-' as for Kite."""
    book = Depth([DepthLevel(0.0, 0, 0)], [DepthLevel(0.0, 0, 0)])
    index = Tick(Broker.XTS, 26000, Mode.QUOTE, False, 22386.0, 0, 22386.0, 0, 0, 0, depth=book, segment=1)
    assert columns(Row("NSE:NIFTY 50", index)) == (
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
    assert columns(Row("NSE:INFY", stock)) == (
        "NSE:INFY",
        "1,561.35",
        "+0.50%",
        "56,774",
        "1,561.35",
        "1,561.40",
        "0.0",
    )


# ---------------------------------------------------------------------------------------------------------
# --tls


def _ca_path(line: str) -> Path:
    """The CA file a banner's ``TLS:`` line names, checked to be a PEM certificate (and no key)."""
    assert line.startswith("  TLS: a throwaway CA")
    path = Path(line.rsplit(": ", 1)[1])
    pem = path.read_text()
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" not in pem
    return path


async def test_sim_kite_tls_serves_wss_and_https_and_prints_the_ca_file() -> None:
    process = await trio.lowlevel.open_process([*CLI, "sim", "kite", "--tls"], stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        lines = Lines(process.stdout)
        with trio.fail_after(30):
            banner = [await lines.readline() for _ in range(7)]
        assert banner[0].startswith("Kite simulator listening on wss://127.0.0.1:")
        url = banner[0].split()[-1]
        rest = banner[2].split()[3].removesuffix("/instruments")
        assert rest.startswith("https://127.0.0.1:")
        ca_file = _ca_path(banner[3])
        assert ca_file.parent.name.startswith("trading-ws-tls-")  # a fresh temporary directory
        assert f"ssl.create_default_context(cafile={str(ca_file)!r})" in banner[4]
        assert banner[5].startswith(f"  trust it with curl: curl --cacert {ca_file} ")
        assert f"SSL_CERT_FILE={ca_file}" in banner[6]
        context = ssl.create_default_context(cafile=str(ca_file))  # what the banner says to do
        with trio.fail_after(10):
            async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, ssl_context=context) as feed:
                assert feed.connected
            broker = KiteBroker(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, api_url=rest, ssl_context=context)
            assert "NSE:INFY" in await broker.load_instruments()
            with pytest.raises(ConnectError):  # without the CA: refused, the system does not trust it
                async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url):
                    pass
        process.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            assert await process.wait() == 130
        assert not ca_file.parent.exists()  # the temporary directory goes with the simulator
    finally:
        await reap(process)


async def test_sim_xts_tls_writes_the_ca_where_asked(tmp_path: Path) -> None:
    wanted = tmp_path / "xts-ca.pem"
    process = await trio.lowlevel.open_process(
        [*CLI, "sim", "xts", "--tls", "--ca-file", str(wanted)], stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        lines = Lines(process.stdout)
        with trio.fail_after(30):
            banner = [await lines.readline() for _ in range(6)]
        assert banner[0].startswith("XTS simulator listening on https://127.0.0.1:")
        root = banner[0].split()[-1]
        assert banner[1].startswith(f"  log in at {root}/apimarketdata/auth/login ")
        assert _ca_path(banner[2]) == wanted
        assert "XtsBroker(..., ssl_context=" in banner[3]
        context = ssl.create_default_context(cafile=str(wanted))
        with trio.fail_after(10):
            async with open_xts_feed(
                DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=root, logout_on_exit=False, ssl_context=context
            ) as feed:
                assert feed.connected
        process.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            assert await process.wait() == 130
        assert wanted.exists()  # the user's file stays
    finally:
        await reap(process)


async def test_demo_tls_runs_both_feeds_over_tls_and_exits_0() -> None:
    with trio.fail_after(60):
        result = await trio.run_process(
            [
                *CLI,
                "demo",
                "--tls",
                "--broker",
                "both",
                "--duration",
                "2",
                "--symbols",
                "NSE:INFY",
                "--tick-interval",
                "0.05",
            ],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert out.startswith("demo over TLS:")
    assert "status=kite: connected · xts: connected" in out
    finished = [line for line in out.splitlines() if line.startswith("demo finished:")]
    assert int(finished[0].split()[2]) > 0


def test_ca_file_without_tls_is_a_usage_error(
    nothing_runs: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for broker in ("kite", "xts"):
        assert main(["sim", broker, "--ca-file", str(tmp_path / "ca.pem")]) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert "--ca-file" in line
        assert "--tls" in line
    assert main(["demo", "--ca-file", "ca.pem"]) == 2  # the demo's CA never leaves the process
    _one_error_line(capsys.readouterr().err)
    assert nothing_runs == []
    assert not (tmp_path / "ca.pem").exists()


def test_a_ca_file_that_cannot_be_written_is_one_line_and_exit_1(
    nothing_runs: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "missing" / "ca.pem"
    assert main(["sim", "kite", "--tls", "--ca-file", str(target)]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert str(target) in line
    assert nothing_runs == []


def test_a_ca_file_never_replaces_a_file_that_is_not_a_certificate(
    nothing_runs: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    precious = tmp_path / "config"
    precious.write_text("precious\n")
    assert main(["sim", "xts", "--tls", "--ca-file", str(precious)]) == 1
    assert "not a PEM certificate" in _one_error_line(capsys.readouterr().err)
    assert precious.read_text() == "precious\n"
    assert nothing_runs == []


def test_tls_reaches_the_commands(nothing_runs: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, dict[str, object]] = {}

    def spy(name: str) -> object:
        async def job(*args: object, **kwargs: object) -> None:
            seen[name] = kwargs

        return job

    for name in ("run_demo", "run_kite_sim", "run_xts_sim"):
        monkeypatch.setattr(cli, name, spy(name))

    def given(name: str, argument: str) -> object:
        return seen.pop(name)[argument]

    assert main(["demo", "--tls", "--duration", "1"]) == 0
    assert isinstance(given("run_demo", "tls"), SimulatorTLS)
    assert main(["demo", "--duration", "1"]) == 0
    assert given("run_demo", "tls") is None
    assert main(["sim", "xts"]) == 0
    assert seen["run_xts_sim"]["ca_file"] is None
    assert given("run_xts_sim", "tls") is None


# ---------------------------------------------------------------------------------------------------------
# Extras: the simulators need [sim], the live table [cli] (pyproject.toml). A module set to None in
# sys.modules is one that cannot be imported: what a core install (`pip install trading-ws`) looks like.

SIM_MODULES = ("hypercorn", "trustme")
COMMANDS = (
    ["demo"],
    ["demo", "--broker", "xts", "--duration", "1"],
    ["demo", "--tls", "--symbols", "NSE:INFY"],
    ["sim", "kite"],
    ["sim", "kite", "--tls"],
    ["sim", "xts", "--port", "0"],
)


def _without(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make `modules` unimportable for the rest of the test, as if their extra were not installed."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    argv=st.sampled_from(COMMANDS),
    missing=st.sets(st.sampled_from(SIM_MODULES), min_size=1).map(sorted),
)
def test_a_command_without_the_sim_extra_names_it_and_exits_2(
    argv: list[str],
    missing: list[str],
    nothing_runs: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        _without(monkeypatch, *missing)
        assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    line = _one_error_line(err)
    command = "demo" if argv[0] == "demo" else f"sim {argv[1]}"
    assert line == (
        f"trading-ws: error: 'trading-ws {command}' runs the simulators, which need the [sim] extra (not "
        f"installed: {', '.join(missing)}): pip install 'trading-ws[sim]' or 'trading-ws[all]' (from a "
        "checkout: pip install -e '.[all]')"
    )
    assert nothing_runs == []


def test_a_usage_error_without_the_sim_extra_is_still_a_usage_error(
    nothing_runs: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _without(monkeypatch, *SIM_MODULES)
    assert main(["demo", "--duration", "-1"]) == 2
    assert "--duration" in _one_error_line(capsys.readouterr().err)
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("trading-ws ")
    assert nothing_runs == []


def test_help_without_the_sim_extra_names_the_credentials_constants(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _without(monkeypatch, *SIM_MODULES)
    assert main(["sim", "kite", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: trading_ws.sim.DEMO_API_KEY)" in out
    assert "(default: trading_ws.sim.DEMO_ACCESS_TOKEN)" in out
    assert DEMO_API_KEY not in out
    assert main(["sim", "xts", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(user trading_ws.sim.DEMO_USER_ID)" in out
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(needs the [sim] extra)" in out
    assert "2 bad arguments or a missing extra" in out


def test_the_credentials_the_sim_commands_pass_are_the_simulators_unless_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[object, ...]] = []

    async def record(*args: object, **kwargs: object) -> None:
        seen.append(args[2:4])

    monkeypatch.setattr(cli, "run_kite_sim", record)
    monkeypatch.setattr(cli, "run_xts_sim", record)
    assert main(["sim", "kite"]) == 0
    assert main(["sim", "kite", "--api-key", "k", "--access-token", "t"]) == 0
    assert main(["sim", "xts"]) == 0
    assert main(["sim", "xts", "--app-key", "a", "--secret-key", "s"]) == 0
    assert seen == [
        (DEMO_API_KEY, DEMO_ACCESS_TOKEN),
        ("k", "t"),
        (DEMO_APP_KEY, DEMO_SECRET_KEY),
        ("a", "s"),
    ]


@pytest.mark.parametrize(
    ("rich_installed", "plain", "live", "note"),
    [
        pytest.param(True, False, True, False, id="rich on a terminal: the table"),
        pytest.param(True, True, False, False, id="rich, --plain: lines"),
        pytest.param(False, False, False, True, id="no rich on a terminal: lines and a note"),
        pytest.param(False, True, False, False, id="no rich, --plain: lines, no note"),
    ],
)
def test_the_demo_without_the_cli_extra_prints_plain_lines_and_says_why(
    rich_installed: bool,
    plain: bool,
    live: bool,
    note: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[object] = []

    async def record(*args: object, **kwargs: object) -> None:
        seen.append(kwargs["live"])

    monkeypatch.setattr(cli, "run_demo", record)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    if not rich_installed:
        _without(monkeypatch, "rich")
    assert main(["demo", *(["--plain"] if plain else [])]) == 0
    assert seen == [live]
    err = capsys.readouterr().err
    if note:
        assert err == (
            "trading-ws: note: the live table needs the [cli] extra (rich is not installed): printing plain "
            "lines; pip install 'trading-ws[cli]' or 'trading-ws[all]' (from a checkout: pip install -e "
            "'.[all]')\n"
        )
    else:
        assert err == ""


# A core install in miniature: the extras' modules cannot be imported in this child process.
LEAN_CHILD = """
import sys
for name in ("rich", "hypercorn", "trustme"):
    sys.modules[name] = None
from trading_ws.cli import main
print("exit", main(sys.argv[1:]))
print("sim imported:", "trading_ws.sim" in sys.modules)
"""


@pytest.mark.parametrize("argv", [["demo", "--duration", "1"], ["sim", "xts"], ["sim", "kite", "--tls"]])
async def test_without_the_extras_the_command_fails_in_one_line_with_no_traceback(argv: list[str]) -> None:
    with trio.fail_after(60):
        result = await trio.run_process(
            [sys.executable, "-c", LEAN_CHILD, *argv], capture_stdout=True, capture_stderr=True
        )
    assert result.stdout.decode().splitlines() == ["exit 2", "sim imported: False"]
    line = _one_error_line(result.stderr.decode())
    assert "need the [sim] extra (not installed: hypercorn, trustme)" in line
    assert "pip install 'trading-ws[sim]'" in line


# The demo on a terminal where rich cannot be imported: the child's stdout is a pseudo-terminal.
NO_RICH_CHILD = """
import sys
sys.modules["rich"] = None
from trading_ws.cli import main
code = main(["demo", "--duration", "1.5", "--symbols", "NSE:INFY", "--tick-interval", "0.05"])
loaded = sorted(m for m, v in sys.modules.items() if m.startswith("rich") and v is not None)
print("exit", code, "rich loaded:", loaded)
"""


def test_the_demo_on_a_terminal_without_rich_prints_plain_lines() -> None:
    primary, secondary = os.openpty()
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", NO_RICH_CHILD], stdout=secondary, stderr=subprocess.PIPE, text=True
        )
        os.close(secondary)
        output = bytearray()
        while True:  # until the child closes its end (EIO on Linux, an empty read elsewhere)
            try:
                chunk = os.read(primary, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        _, err = child.communicate(timeout=60)
    finally:
        os.close(primary)
    lines = output.decode().replace("\r\n", "\n").splitlines()
    assert child.returncode == 0, err
    assert err == (
        "trading-ws: note: the live table needs the [cli] extra (rich is not installed): printing plain "
        "lines; pip install 'trading-ws[cli]' or 'trading-ws[all]' (from a checkout: pip install -e "
        "'.[all]')\n"
    )
    assert lines[-1] == "exit 0 rich loaded: []"
    assert lines[-2].startswith("demo finished: ")
    assert any("  NSE:INFY  " in line for line in lines)
    assert any("status=connected total_ticks=" in line for line in lines)
