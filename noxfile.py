"""Developer tasks: ``nox -s tests``, ``nox -s lint``, ``nox -s typecheck``, ``nox -s bench``, ``nox -s lean``
(the core install without extras)."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (pytest-trio, hypothesis, loopback integration tests against the simulators)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (with the flake8-async ASYNC rules) and the formatter check."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, the tests and the benchmarks."""
    session.install("-e", ".[lint]")
    session.run("mypy")


# What `nox -s lean` runs in the core install: the library and FakeBroker work, the simulators and the
# commands that run them name the [sim] extra.
LEAN_CHECK = """
import subprocess, sys
import trio, trio.testing
from trading_ws import Mode, Tick, open_market_data
from trading_ws.testing import FakeBroker

async def main():
    broker = FakeBroker(["NSE:INFY"])
    async with open_market_data(broker) as md, md.subscribe(["NSE:INFY"], mode=Mode.LTP) as sub:
        broker.push(broker.tick("NSE:INFY", 1500.5))
        [tick] = await sub.receive_batch()
        assert isinstance(tick, Tick) and tick.last_price == 1500.5, tick

trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
try:
    import trading_ws.sim
except ImportError as exc:
    assert "[sim]" in str(exc), exc
    print("import trading_ws.sim:", exc)
else:
    sys.exit("trading_ws.sim imported without the [sim] extra")
demo = subprocess.run(["trading-ws", "demo"], capture_output=True, text=True)
assert demo.returncode == 2 and "[sim]" in demo.stderr, demo
print("trading-ws demo:", demo.stderr.strip())
"""


@nox.session(reuse_venv=False)
def lean(session: nox.Session) -> None:
    """The core install, as an embedding application gets it (``pip install .``, no extras, a fresh
    environment each time): installs neither rich nor hypercorn nor trustme, and the library runs without
    them."""
    session.install(".")
    listed = session.run("python", "-m", "pip", "list", "--format", "freeze", silent=True)
    installed = {line.split("==")[0].lower() for line in str(listed).split()}
    extras = installed & {"rich", "hypercorn", "trustme"}
    if extras:
        session.error(f"the core install brought {sorted(extras)}")
    session.run("python", "-c", LEAN_CHECK)


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark, each beside its baseline measured in the same run (``-- --quick`` for a smoke run)."""
    session.install("-e", ".[test,bench]")
    for script in sorted(__import__("pathlib").Path("benchmarks").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """The long fault-injection soak (10 minutes by default; ``-- --minutes 2`` for less); rewrites
    docs/reliability.md with its figures."""
    session.install("-e", ".[test]")
    args = session.posargs or ["--minutes", "10"]
    session.run("python", "tests/soak_harness.py", *args, "--write-docs")


@nox.session
def fuzz(session: nox.Session) -> None:
    """Fuzz every decoder (figures in docs/fuzzing.md): the hypothesis fuzz tests with
    ``TRADING_WS_FUZZ_EXAMPLES`` examples each (default 20000), then, if atheris installs, coverage-guided
    fuzzing for ``TRADING_WS_FUZZ_ATHERIS_SECONDS`` seconds per target (default 30; 0 skips it).
    ``-- -k xts`` passes options to pytest."""
    environ = __import__("os").environ
    session.install("-e", ".[test]")
    examples = environ.get("TRADING_WS_FUZZ_EXAMPLES", "20000")
    pytest_args = ["-m", "fuzz", "tests/fuzz", "--durations=0", *session.posargs]
    session.run("pytest", *pytest_args, env={"TRADING_WS_FUZZ_EXAMPLES": examples})
    seconds = environ.get("TRADING_WS_FUZZ_ATHERIS_SECONDS", "30")
    if seconds == "0":
        return
    try:
        session.install("atheris")
    except nox.command.CommandFailed:
        session.warn("atheris did not install (no wheel for this platform or Python?): skipped")
        return
    artifacts = __import__("pathlib").Path(session.create_tmp()) / "atheris-artifacts"
    atheris_args = ["--all", "--seconds", seconds, "--artifacts", str(artifacts)]
    session.run("python", "tests/fuzz/atheris_targets.py", *atheris_args)
