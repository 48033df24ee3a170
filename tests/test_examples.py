"""The documentation's examples really run: docs/examples/ as shipped, and every ```python block of the
pages in `RUN_PAGES`, against the simulators over loopback.

A block runs as written, with only where it connects changed:

- `open_kite_feed` and `KiteBroker` reach a `KiteSimulator` on loopback (its URL is passed as ``url=``,
  and `KiteBroker` gets the simulator's instruments CSV); the simulator accepts the credentials the block
  uses;
- ``API_KEY`` and ``ACCESS_TOKEN``, the placeholders for the reader's credentials (see
  tests/test_docs_typecheck.py), are bound to the simulator's demo credentials;
- ``trio.run(main)`` at the end hands `main` to the test, which runs it for a moment and then cancels it
  (the examples stream until stopped).

Blocks of other pages (manager.md, xts.md) are sketches that need a real broker or the reader's own
callbacks: tests/test_docs_typecheck.py type-checks them, nothing runs them.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from test_docs_typecheck import python_blocks

import trading_ws
import trading_ws.brokers.kite
from trading_ws import IST, Broker, Candle, Gap, MarketStatus, Mode, Tick
from trading_ws.sim import DEMO_ACCESS_TOKEN, DEMO_API_KEY, KiteSimulator, kite_instruments_csv

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"

#: The pages every example of which runs here (the others' blocks are sketches; see above).
RUN_PAGES = (
    "README.md",
    "docs/index.md",
    "docs/getting-started.md",
    "docs/embedding.md",
    "docs/architecture.md",
)

#: (page, block number from 1) -> a text the block holds (so that a reordered page fails loudly rather than
#: running the wrong block).
RUN = {
    ("README.md", 1): "open_market_data(kite)",
    ("README.md", 2): 'open_kite_feed("my_api_key"',
    ("docs/getting-started.md", 1): "open_kite_feed(API_KEY, ACCESS_TOKEN)",
    ("docs/embedding.md", 1): "async def follow(",
    ("docs/embedding.md", 2): "async def test_my_strategy_survives_a_drop(",
    ("docs/architecture.md", 1): "def describe(event: Event)",
}


def load(name: str) -> object:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def block(page: str, number: int) -> tuple[str, str]:
    """``(origin, code)`` of block `number` of `page`, checked against `RUN`."""
    line, code, _ = list(python_blocks(ROOT / page))[number - 1]
    assert RUN[page, number] in code, f"{page}: block {number} is not the one this test expects"
    return f"{page}:{line}", code


def execute(page: str, number: int, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], list[Any]]:
    """Run a block's module-level code; returns its namespace and what it handed to ``trio.run``."""
    origin, code = block(page, number)
    namespace: dict[str, Any] = {
        "__name__": "docs_example",
        "API_KEY": DEMO_API_KEY,
        "ACCESS_TOKEN": DEMO_ACCESS_TOKEN,
    }
    handed: list[Callable[[], Awaitable[object]]] = []
    with monkeypatch.context() as patch:
        patch.setattr(trio, "run", lambda fn, *args: handed.append(partial(fn, *args)))
        exec(compile(code, origin, "exec"), namespace)
    return namespace, handed


async def serve_kite(
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
    api_key: str = DEMO_API_KEY,
    access_token: str = DEMO_ACCESS_TOKEN,
) -> KiteSimulator:
    """Start a Kite simulator accepting these credentials, and point every `open_kite_feed` and
    `KiteBroker` an example imports at it."""
    sim = KiteSimulator(api_key=api_key, access_token=access_token, tick_interval=0.05)
    url = await nursery.start(sim.serve)
    open_feed = trading_ws.brokers.kite.open_kite_feed
    broker = trading_ws.KiteBroker
    instruments = kite_instruments_csv()

    def open_kite_feed(*args: Any, **kwargs: Any) -> Any:
        return open_feed(*args, **{**kwargs, "url": url})

    def kite_broker(*args: Any, **kwargs: Any) -> trading_ws.KiteBroker:
        return broker(*args, **{**kwargs, "url": url, "instruments": instruments})

    monkeypatch.setattr(trading_ws.brokers.kite, "open_kite_feed", open_kite_feed)
    monkeypatch.setattr(trading_ws, "KiteBroker", kite_broker)
    return sim


async def run_for(seconds: float, handed: list[Callable[[], Awaitable[object]]]) -> None:
    """Run what the example handed to ``trio.run`` for `seconds` (it streams until cancelled)."""
    assert len(handed) == 1, "the example should end with trio.run(main)"
    with trio.move_on_after(seconds) as scope:
        await handed[0]()
    assert scope.cancelled_caught, "the example stopped by itself"


def test_every_example_of_the_listed_pages_runs_here() -> None:
    blocks = {(page, n) for page in RUN_PAGES for n, _ in enumerate(python_blocks(ROOT / page), start=1)}
    assert blocks == set(RUN)


async def test_embed_manager_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    example = load("embed_manager")
    with trio.fail_after(20):
        ticks = await example.main(1.0)  # type: ignore[attr-defined]
    assert ticks > 0
    out = capsys.readouterr().out
    assert "dashboard: NSE:INFY" in out
    assert "3 instruments upstream" in out


async def test_readme_manager_example_runs(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await serve_kite(nursery, monkeypatch, "my_api_key", "todays_access_token")
    _, handed = execute("README.md", 1, monkeypatch)
    await run_for(1.0, handed)
    lines = [line.rsplit(" ", 1) for line in capsys.readouterr().out.splitlines()]
    assert {symbol for symbol, _ in lines} == {"NSE:INFY", "NSE:NIFTY 50"}
    assert all(float(price) > 0 for _, price in lines)


async def test_readme_feed_example_runs(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await serve_kite(nursery, monkeypatch, "my_api_key", "todays_access_token")
    _, handed = execute("README.md", 2, monkeypatch)
    await run_for(1.0, handed)
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert {int(words[0]) for words in lines} == {408065, 738561}
    assert all(float(words[1]) > 0 for words in lines)


async def test_getting_started_example_runs(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await serve_kite(nursery, monkeypatch)
    _, handed = execute("docs/getting-started.md", 1, monkeypatch)
    await run_for(1.0, handed)
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert {int(words[0]) for words in lines} == {408065, 738561, 256265}
    assert all(words[2].endswith("%") for words in lines)


async def test_embedding_nursery_example_runs(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = await serve_kite(nursery, monkeypatch)
    _, handed = execute("docs/embedding.md", 1, monkeypatch)
    await run_for(1.0, handed)
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert {int(words[0]) for words in lines} == {408065, 738561, 256265, 260105}
    assert sim.statistics().handshakes_accepted == 2


async def test_embedding_test_example_passes(nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    namespace, handed = execute("docs/embedding.md", 2, monkeypatch)
    assert handed == []
    await namespace["test_my_strategy_survives_a_drop"](nursery)


def test_architecture_match_example_names_every_event(monkeypatch: pytest.MonkeyPatch) -> None:
    namespace, _ = execute("docs/architecture.md", 1, monkeypatch)
    describe = namespace["describe"]
    tick = Tick(
        broker=Broker.KITE,
        instrument_token=408065,
        mode=Mode.LTP,
        tradable=True,
        last_price=1561.3,
        symbol="NSE:INFY",
    )
    assert describe(tick) == "NSE:INFY 1561.3"
    gap = Gap(broker=Broker.KITE, connection=0, symbols=("NSE:INFY",), start=1.0, end=2.5)
    assert describe(gap) == "status: Gap"
    status = MarketStatus(
        broker=Broker.XTS,
        segment=1,
        message="THE NORMAL MARKET HAS OPENED",
        trading_session=None,
        exchange_time=None,
        received_at=0.0,
    )
    assert describe(status) == "segment 1: THE NORMAL MARKET HAS OPENED"
    candle = Candle(
        broker=Broker.XTS,
        instrument_token=2885,
        segment=1,
        bar_time=datetime(2026, 12, 1, 9, 30, tzinfo=IST),
        open=1.0,
        high=2.0,
        low=0.5,
        close=1.5,
        volume=10,
        open_interest=None,
        received_at=0.0,
        symbol="NSE:RELIANCE",
    )
    assert describe(candle) == "NSE:RELIANCE bar at 09:30: close 1.5"


# ---------------------------------------------------------------------------------------------------------
# The set-up commands: the README's two (one runs the demo, one the tests), the same in getting-started.md,
# the test command run verbatim by CI, and the extras they name present in pyproject.toml.

DEMO_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -e '.[all]' && .venv/bin/trading-ws demo --duration 20"
)
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest"


def shell_blocks(page: str) -> list[str]:
    """The ```sh blocks of `page`, each stripped."""
    text = (ROOT / page).read_text(encoding="utf-8")
    return [m.group(1).strip() for m in re.finditer(r"^```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL)]


def test_the_readme_has_exactly_the_two_set_up_commands() -> None:
    assert shell_blocks("README.md") == [DEMO_COMMAND, TEST_COMMAND]
    assert shell_blocks("docs/getting-started.md") == [DEMO_COMMAND, TEST_COMMAND]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert TEST_COMMAND in lines
    # ...in a fresh environment: the old one is removed before it.
    assert lines.index("rm -rf .venv") < lines.index(TEST_COMMAND)


def test_the_set_up_commands_install_what_they_run() -> None:
    """The demo's extra brings the simulators and the table; the test extra brings what the suite imports."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    assert extras["all"] == ["trading-ws[cli,sim]"]
    assert "trading-ws[cli,sim]" in extras["test"]
    assert {"pytest", "pytest-trio", "hypothesis"} <= {re.split(r"[<>=!~; ]", r)[0] for r in extras["test"]}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for extra in extras:
        assert f"`[{extra}]`" in readme, f"the README's table of extras leaves out [{extra}]"
    assert "`pip install trading-ws`" in readme
