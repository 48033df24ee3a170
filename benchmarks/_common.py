"""What every benchmark script prints the same way: rates, and the machine it ran on."""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import date
from importlib import metadata

from trading_ws.sim import Instrument

__all__ = ["Result", "bench_instruments", "fmt_rate", "machine", "measure"]

PACKETS_PER_FRAME = 100


def fmt_rate(per_second: float) -> str:
    """A rate for a table: ``1.95 M``, ``414.0 k`` or ``950``."""
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f} M"
    if per_second >= 1e3:
        return f"{per_second / 1e3:.1f} k"
    return f"{per_second:.0f}"


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def machine(packages: Sequence[str], *, cpus: str | None = None, load: bool = False) -> str:
    """Markdown bullet lines describing the interpreter, platform, CPU, package versions and GC.

    Args:
        packages: distributions whose versions matter to the measurement.
        cpus: what to say about CPU placement (default: how many CPUs this process may use).
        load: also report the load average at start.
    """
    if cpus is None:
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
        cpus = f"{usable} usable by this process"
    versions = ", ".join(f"{pkg} {metadata.version(pkg)}" for pkg in packages)
    gc_line = f"- GC: {'on' if gc.isenabled() else 'off'}"
    if load:
        gc_line += "; load average at start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return "\n".join(
        [
            f"- Python: {platform.python_implementation()} {platform.python_version()} "
            f"({platform.python_compiler()})",
            f"- Platform: {platform.platform()}",
            f"- CPU: {cpu_model()}; {os.cpu_count()} logical CPUs ({cpus})",
            f"- Packages: {versions}",
            gc_line,
        ]
    )


def bench_instruments(count: int = PACKETS_PER_FRAME) -> list[Instrument]:
    """`count` made-up instruments: 7 in 10 NSE equities, the rest NFO futures (which carry OI)."""
    out: list[Instrument] = []
    for i in range(count):
        exchange_token = 900_000 + i
        if i % 10 < 7:
            out.append(
                Instrument(
                    symbol=f"NSE:BENCH{i:03d}",
                    exchange="NSE",
                    tradingsymbol=f"BENCH{i:03d}",
                    name=f"BENCH EQUITY {i}",
                    kite_token=exchange_token << 8 | 1,
                    exchange_token=exchange_token,
                    kite_segment="NSE",
                    instrument_type="EQ",
                    expiry=None,
                    strike=0.0,
                    tick_size=0.05,
                    lot_size=1,
                    base_price=50.0 + 37.5 * i,
                    xts_segment=1,
                    xts_instrument_id=exchange_token,
                )
            )
        else:
            out.append(
                Instrument(
                    symbol=f"NFO:BENCH{i:03d}26DECFUT",
                    exchange="NFO",
                    tradingsymbol=f"BENCH{i:03d}26DECFUT",
                    name=f"BENCH{i:03d}",
                    kite_token=exchange_token << 8 | 2,
                    exchange_token=exchange_token,
                    kite_segment="NFO-FUT",
                    instrument_type="FUT",
                    expiry=date(2026, 12, 29),
                    strike=0.0,
                    tick_size=0.05,
                    lot_size=25,
                    base_price=120.0 + 41.25 * i,
                    xts_segment=2,
                    xts_instrument_id=exchange_token,
                )
            )
    return out


class Result:
    """The repeats of one variant: median, minimum and interquartile range relative to the median."""

    def __init__(self, name: str, samples: list[float]) -> None:
        self.name = name
        self.samples = samples  # time per item (ns or µs, as measured), one per repeat
        self.median = statistics.median(samples)
        self.min = min(samples)
        q = statistics.quantiles(samples, n=4) if len(samples) >= 2 else [self.median] * 3
        self.iqr = (q[2] - q[0]) / self.median


def measure(
    variants: dict[str, Callable[[], object]],
    items_per_call: int,
    repeats: int,
    target: float,
    *,
    scale: float = 1e9,
) -> list[Result]:
    """Calibrate each variant to about `target` seconds a repeat, then run them round-robin.

    Samples are seconds per item times `scale` (1e9: ns, 1e6: µs).
    """
    loops: dict[str, int] = {}
    for name, fn in variants.items():
        fn()  # warm-up (and fills any cache the variant uses, as a running feed would)
        n = 1
        while True:
            start = time.perf_counter()
            for _ in range(n):
                fn()
            elapsed = time.perf_counter() - start
            if elapsed >= target / 4:
                break
            n *= 2
        loops[name] = max(1, round(n * target / elapsed))
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            n = loops[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            elapsed = time.perf_counter() - start
            samples[name].append(elapsed / (n * items_per_call) * scale)
    return [Result(name, s) for name, s in samples.items()]
