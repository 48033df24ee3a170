"""The Kite Connect v3 simulator: the ticker WebSocket (``_server``) and the instrument master REST
endpoint (``_rest``), served together by `KiteSimulator` on one loopback port each."""

from ._server import (
    DEMO_ACCESS_TOKEN as DEMO_ACCESS_TOKEN,
    DEMO_API_KEY as DEMO_API_KEY,
    KiteSimulator as KiteSimulator,
    KiteSimulatorStatistics as KiteSimulatorStatistics,
)

__all__ = ["DEMO_ACCESS_TOKEN", "DEMO_API_KEY", "KiteSimulator", "KiteSimulatorStatistics"]
