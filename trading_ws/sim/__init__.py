"""Simulated broker servers for tests, demos and load tests.

`KiteSimulator` serves the Kite Connect v3 ticker protocol on loopback from a seeded random walk
(`Market`) over a small universe of real instruments (`UNIVERSE`), with fault knobs (dropped
connections, silence, malformed frames, refused handshakes, text postbacks).
"""

from ._kite import (
    DEMO_ACCESS_TOKEN as DEMO_ACCESS_TOKEN,
    DEMO_API_KEY as DEMO_API_KEY,
    KiteSimulator as KiteSimulator,
    KiteSimulatorStatistics as KiteSimulatorStatistics,
)
from ._universe import (
    KITE_CSV_HEADER as KITE_CSV_HEADER,
    KITE_SEGMENT_IDS as KITE_SEGMENT_IDS,
    UNIVERSE as UNIVERSE,
    Instrument as Instrument,
    Market as Market,
    find_instrument as find_instrument,
    kite_instruments_csv as kite_instruments_csv,
)

__all__ = [
    "DEMO_ACCESS_TOKEN",
    "DEMO_API_KEY",
    "KITE_CSV_HEADER",
    "KITE_SEGMENT_IDS",
    "UNIVERSE",
    "Instrument",
    "KiteSimulator",
    "KiteSimulatorStatistics",
    "Market",
    "find_instrument",
    "kite_instruments_csv",
]
