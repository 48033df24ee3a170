"""Fixtures and helpers shared by the test files.

Simulators on loopback (protocol and integration tests; the manager's behaviour is tested against the
in-memory `trading_ws.testing.FakeBroker` instead, under ``autojump_clock``):

- ``kite_sim`` -> ``(KiteSimulator, url)`` and ``xts_sim`` -> ``(XtsSimulator, root)``: a simulator serving
  on loopback in the test's nursery for the test's duration. The simulator's constructor options come
  from the ``simulator`` marker, on the test or its module::

      pytestmark = pytest.mark.simulator(tick_interval=0.02, seed=3)

      async def test_something(kite_sim: tuple[KiteSimulator, str]) -> None:
          simulator, url = kite_sim

  Without the marker a simulator is built with its defaults.
- ``sim_tls`` -> `SimulatorTLS`: one throwaway CA and loopback certificate for the whole run (making one
  takes a while).

`wait_until` polls another party's state (a simulator over loopback, a child process) until a predicate
holds; import it (``from conftest import wait_until``). Never use it on the library's own state: against
`FakeBroker` every effect is reached at an exact checkpoint (`trio.testing.wait_all_tasks_blocked`).

The simulators are imported only when a fixture needs them, so a test module that uses none of them runs
without the ``[sim]`` extra.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
import trio

if TYPE_CHECKING:
    from trading_ws.sim import KiteSimulator, SimulatorTLS, XtsSimulator

#: `pytester` runs the documented example in a pytest session of its own (tests/test_testing_module.py).
pytest_plugins = ("pytester",)

#: How often `wait_until` looks (seconds of trio's clock).
POLL_INTERVAL = 0.005


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "simulator(**options): constructor options of the kite_sim / xts_sim fixtures' simulator",
    )


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Wait until `predicate()` is true, looking every `POLL_INTERVAL` seconds; the caller's
    ``trio.fail_after`` bounds the wait. For another party's state only (see the module docstring)."""
    while not predicate():  # noqa: ASYNC110  (polling another party's state)
        await trio.sleep(POLL_INTERVAL)


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("simulator")
    if marker is None:
        return {}
    if marker.args:
        raise TypeError("the simulator marker takes keyword options only")
    return dict(marker.kwargs)


@pytest.fixture
async def kite_sim(nursery: trio.Nursery, request: pytest.FixtureRequest) -> tuple[KiteSimulator, str]:
    """A `KiteSimulator` serving WebSocket on loopback, and its ``ws://`` URL."""
    from trading_ws.sim import KiteSimulator

    simulator = KiteSimulator(**_options(request))
    url: str = await nursery.start(simulator.serve)
    return simulator, url


@pytest.fixture
async def xts_sim(nursery: trio.Nursery, request: pytest.FixtureRequest) -> tuple[XtsSimulator, str]:
    """An `XtsSimulator` serving REST and Socket.IO on loopback, and its ``http://`` root."""
    from trading_ws.sim import XtsSimulator

    simulator = XtsSimulator(**_options(request))
    root: str = await nursery.start(simulator.serve)
    return simulator, root


@pytest.fixture(scope="session")
def sim_tls() -> SimulatorTLS:
    """A throwaway CA and a certificate for loopback, shared by the whole run."""
    from trading_ws.sim import SimulatorTLS

    return SimulatorTLS()
