"""Simulated broker servers for tests, demos and load tests.

`KiteSimulator` serves the Kite Connect v3 ticker protocol on loopback from a seeded random walk
(`Market`) over a small universe of real instruments (`UNIVERSE`), with fault knobs (dropped
connections, silence, malformed frames, refused handshakes, text postbacks). `XtsSimulator` serves the
Symphony XTS market-data API (REST and Socket.IO on one port) from the same market, with its own knobs
(dropped connections, silence, garbage, expired tokens, refused logins). Both serve TLS (``wss://``,
``https://``) when given a `SimulatorTLS`: a throwaway CA and a certificate for loopback, made on the fly.
"""

from typing import Final

#: The distributions of the ``[sim]`` extra that the simulators import (h11 also comes with httpx).
_EXTRA_MODULES: Final = frozenset({"hypercorn", "trustme", "h11"})

try:
    from ._kite import (
        DEMO_ACCESS_TOKEN as DEMO_ACCESS_TOKEN,
        DEMO_API_KEY as DEMO_API_KEY,
        KiteSimulator as KiteSimulator,
        KiteSimulatorStatistics as KiteSimulatorStatistics,
    )
    from ._tls import SimulatorTLS as SimulatorTLS
    from ._universe import (
        KITE_CSV_HEADER as KITE_CSV_HEADER,
        KITE_SEGMENT_IDS as KITE_SEGMENT_IDS,
        UNIVERSE as UNIVERSE,
        Instrument as Instrument,
        Market as Market,
        find_instrument as find_instrument,
        kite_instruments_csv as kite_instruments_csv,
    )
    from ._xts import (
        DEMO_APP_KEY as DEMO_APP_KEY,
        DEMO_SECRET_KEY as DEMO_SECRET_KEY,
        DEMO_USER_ID as DEMO_USER_ID,
        XtsSimulator as XtsSimulator,
        XtsSimulatorStatistics as XtsSimulatorStatistics,
    )
except ModuleNotFoundError as exc:
    if exc.name is None or exc.name.split(".")[0] not in _EXTRA_MODULES:
        raise
    raise ModuleNotFoundError(
        f"trading_ws.sim needs the [sim] extra ({exc.name} is not installed): "
        "pip install 'trading-ws[sim]' (or 'trading-ws[all]')",
        name=exc.name,
    ) from exc

__all__ = [
    "DEMO_ACCESS_TOKEN",
    "DEMO_API_KEY",
    "DEMO_APP_KEY",
    "DEMO_SECRET_KEY",
    "DEMO_USER_ID",
    "KITE_CSV_HEADER",
    "KITE_SEGMENT_IDS",
    "UNIVERSE",
    "Instrument",
    "KiteSimulator",
    "KiteSimulatorStatistics",
    "Market",
    "SimulatorTLS",
    "XtsSimulator",
    "XtsSimulatorStatistics",
    "find_instrument",
    "kite_instruments_csv",
]
