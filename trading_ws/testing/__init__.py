"""Test an application against trading_ws without a broker, a socket or a real clock.

`FakeBroker` is a broker for `trading_ws.open_market_data` whose connections (`FakeConnection`) live in
memory and are driven by the test: it pushes ticks and other events, drops and restores connections, makes
them fail for good or refuses credentials, parks any of the manager's awaits to cancel it there, and reads
what the manager subscribed and requested (`Request`). Nothing in it sleeps or touches the network, so a
test runs it under trio's `autojump_clock` and asserts exact outcomes; see docs/testing.md::

    from trading_ws import Mode, open_market_data
    from trading_ws.testing import FakeBroker

    async def test_my_strategy(autojump_clock):
        broker = FakeBroker(["NSE:INFY", "NSE:TCS"])
        async with open_market_data(broker) as md, md.subscribe(["NSE:INFY"]) as sub:
            assert broker.subscriptions == {"NSE:INFY": Mode.QUOTE}
            broker.push(broker.tick("NSE:INFY", 1500.0))
            [tick] = await sub.receive_batch()
            assert tick.last_price == 1500.0

For protocol-level tests the module also offers, imported on first use, the loopback simulators
(`KiteSimulator`, `XtsSimulator`, `SimulatorTLS`, the Kite simulator's master `kite_instruments_csv` and
the demo credentials the simulators accept: `DEMO_API_KEY`, `DEMO_ACCESS_TOKEN`, `DEMO_APP_KEY`,
`DEMO_SECRET_KEY`, `DEMO_USER_ID`; from `trading_ws.sim`, which needs the `[sim]` extra) and the wire
encoders the simulators use: `encode_kite_frame`, `encode_kite_text`, `encode_kite_control` (Kite's binary
frames of ticks, text messages and client requests) and `encode_xts_full`, `encode_xts_partial` (XTS's
JSON events in Full and Partial mode). `from trading_ws.testing import FakeBroker` works without the
`[sim]` extra; importing a simulator name without it raises ImportError naming the extra. `Point` names
the await points of a `FakeBroker` that a test can hold or make fail.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._fake import FakeBroker as FakeBroker, FakeConnection as FakeConnection, Request as Request
from ._gates import Point as Point

if TYPE_CHECKING:
    from ..brokers.kite._codec import (
        encode_control as encode_kite_control,
        encode_frame as encode_kite_frame,
        encode_text as encode_kite_text,
    )
    from ..brokers.xts._codec import encode_full as encode_xts_full, encode_partial as encode_xts_partial
    from ..sim import (
        DEMO_ACCESS_TOKEN as DEMO_ACCESS_TOKEN,
        DEMO_API_KEY as DEMO_API_KEY,
        DEMO_APP_KEY as DEMO_APP_KEY,
        DEMO_SECRET_KEY as DEMO_SECRET_KEY,
        DEMO_USER_ID as DEMO_USER_ID,
        KiteSimulator as KiteSimulator,
        SimulatorTLS as SimulatorTLS,
        XtsSimulator as XtsSimulator,
        kite_instruments_csv as kite_instruments_csv,
    )

__all__ = [
    "DEMO_ACCESS_TOKEN",
    "DEMO_API_KEY",
    "DEMO_APP_KEY",
    "DEMO_SECRET_KEY",
    "DEMO_USER_ID",
    "FakeBroker",
    "FakeConnection",
    "KiteSimulator",
    "Point",
    "Request",
    "SimulatorTLS",
    "XtsSimulator",
    "encode_kite_control",
    "encode_kite_frame",
    "encode_kite_text",
    "encode_xts_full",
    "encode_xts_partial",
    "kite_instruments_csv",
]

#: Names imported on first use: name -> (module, attribute). The simulators need the [sim] extra.
_LAZY: dict[str, tuple[str, str]] = {
    "DEMO_ACCESS_TOKEN": ("trading_ws.sim", "DEMO_ACCESS_TOKEN"),
    "DEMO_API_KEY": ("trading_ws.sim", "DEMO_API_KEY"),
    "DEMO_APP_KEY": ("trading_ws.sim", "DEMO_APP_KEY"),
    "DEMO_SECRET_KEY": ("trading_ws.sim", "DEMO_SECRET_KEY"),
    "DEMO_USER_ID": ("trading_ws.sim", "DEMO_USER_ID"),
    "KiteSimulator": ("trading_ws.sim", "KiteSimulator"),
    "SimulatorTLS": ("trading_ws.sim", "SimulatorTLS"),
    "XtsSimulator": ("trading_ws.sim", "XtsSimulator"),
    "kite_instruments_csv": ("trading_ws.sim", "kite_instruments_csv"),
    "encode_kite_control": ("trading_ws.brokers.kite._codec", "encode_control"),
    "encode_kite_frame": ("trading_ws.brokers.kite._codec", "encode_frame"),
    "encode_kite_text": ("trading_ws.brokers.kite._codec", "encode_text"),
    "encode_xts_full": ("trading_ws.brokers.xts._codec", "encode_full"),
    "encode_xts_partial": ("trading_ws.brokers.xts._codec", "encode_partial"),
}


def __getattr__(name: str) -> Any:
    """Import a simulator or an encoder on first use (the simulators need the ``[sim]`` extra).

    Raises:
        ImportError: a simulator's dependencies are not installed (``pip install 'trading-ws[sim]'``).
        AttributeError: no such name.
    """
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ImportError(
            f"trading_ws.testing.{name} needs the simulators' dependencies ({exc.name} is missing): "
            "pip install 'trading-ws[sim]'",
            name=exc.name,
        ) from exc
    value = getattr(module, attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
