"""End to end: a blaster server -> real loopback WebSocket -> `open_market_data(KiteBroker(...))` subscribers.

Usage::

    python benchmarks/bench_end_to_end.py [--quick] [--runs N] [--window S] [--pin] [--seed N]

A server in a separate process (multiprocessing, spawn) accepts the Kite handshake with trio-websocket's
`serve_websocket` (any credentials), ignores control messages, and after the first one sends
pre-encoded Kite frames of 100 FULL packets (100 made-up instruments, listed in the instruments CSV the
client gets as ``instruments=``):

- ``/throughput``: as fast as the connection takes them;
- ``/latency/<frames per second>``: at a fixed frame rate, with the send time (``time.time_ns()``) in the
  first packet of every frame: high 32 bits in ``oi_day_high``, low 32 bits in ``oi_day_low``.

The client (this process) subscribes 1 or 10 subscribers to all 100 instruments in FULL mode; each
drains with `Subscription.receive_batch()` and counts ticks. Throughput is ticks delivered per subscriber
per second over a window after a warm-up, one fresh connection per run, median of the runs, beside the
rate of `decode_frame` alone on the same frames, measured in the same process between the runs. Latency
is subscriber receipt time minus send time of the first tick of each frame, at a tenth of the measured
peak rate of the same subscriber count. For contrast, a bare trio-websocket client (the library's buffer
settings, no decoding, no manager) receives the same frames: the transport floor of both.

The OS places the two processes; ``--pin`` puts the server on the first CPU and the client on the second
(better on an idle machine, worse when another busy process shares the client's CPU). Everything
listens on and connects to 127.0.0.1 only.

Every wait is bounded; the server process stops by itself after a deadline even if this process dies.
Exit status 1 if a run failed (reconnects, dropped ticks, a subscriber ended).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import multiprocessing
import os
import resource
import ssl
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from multiprocessing.connection import Connection
from urllib.parse import urlsplit

import trio
import trustme
from _common import bench_instruments, fmt_rate, machine as _machine
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    open_websocket_url,
    serve_websocket,
)

from trading_ws import IST, Backoff, KiteBroker, Mode, Overflow, Tick, open_market_data
from trading_ws._transport import MESSAGE_QUEUE_SIZE, RECEIVE_BUFFER_SIZE
from trading_ws.brokers.kite import decode_frame
from trading_ws.brokers.kite._codec import encode_frame
from trading_ws.sim import Instrument, Market, kite_instruments_csv

PACKETS_PER_FRAME = 100
DISTINCT_FRAMES = 16
SESSION_START = datetime(2026, 11, 25, 10, 15, 0, tzinfo=IST).timestamp()
HOST = "127.0.0.1"
# The stamp: the first packet's oi_day_high and oi_day_low (fields 13 and 14 of the 16 leading uint32),
# after the frame's packet count (2 bytes) and the packet's length (2 bytes).
_STAMP = struct.Struct(">II")
_STAMP_OFFSET = 2 + 2 + 13 * 4
SERVER_LIFETIME = 600.0  # the server process ends by itself after this many seconds, whatever happens


# ---------------------------------------------------------------------------------------------------------
# Instruments and frames (the same as bench_fanout.py's, so the two compare)


def build_frames(instruments: Sequence[Instrument], seed: int, count: int) -> list[bytes]:
    """`count` Kite frames of FULL packets, one per instrument each, from the simulator's random walk."""
    market = Market(seed, instruments)
    frames: list[bytes] = []
    for n in range(count):
        now = SESSION_START + 0.5 * n
        market.step(now)
        frames.append(encode_frame(market.tick(i.kite_token, Mode.FULL, now) for i in instruments))
    return frames


# ---------------------------------------------------------------------------------------------------------
# The blaster server (runs in its own process)


async def _blast(ws: WebSocketConnection, frames: Sequence[bytes]) -> None:
    i = 0
    count = len(frames)
    while True:
        await ws.send_message(frames[i])
        i = (i + 1) % count


async def _paced(ws: WebSocketConnection, frames: Sequence[bytes], rate: float) -> None:
    buffers = [bytearray(f) for f in frames]
    period = 1.0 / rate
    next_at = trio.current_time()
    i = 0
    while True:
        buf = buffers[i]
        i = (i + 1) % len(buffers)
        sent = time.time_ns()
        _STAMP.pack_into(buf, _STAMP_OFFSET, sent >> 32, sent & 0xFFFFFFFF)
        await ws.send_message(bytes(buf))
        next_at += period
        await trio.sleep_until(next_at)


async def _handle(frames: Sequence[bytes], request: WebSocketRequest) -> None:
    path = urlsplit(request.path).path
    ws = await request.accept()
    subscribed = trio.Event()

    async def read_and_ignore() -> None:
        try:
            while True:
                await ws.get_message()
                subscribed.set()
        except ConnectionClosed:
            subscribed.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_and_ignore)
        try:
            await subscribed.wait()
            if path.startswith("/latency/"):
                await _paced(ws, frames, float(path.rsplit("/", 1)[1]))
            else:
                await _blast(ws, frames)
        except ConnectionClosed:
            pass
        nursery.cancel_scope.cancel()


async def _serve(conn: Connection, frames: Sequence[bytes], lifetime: float, tls: ssl.SSLContext) -> None:
    """Serve the frames twice, plain ``ws://`` and ``wss://`` (with `tls`); reports both ports."""
    with trio.move_on_after(lifetime):
        async with trio.open_nursery() as nursery:
            ports = []
            for context in (None, tls):
                server = await nursery.start(
                    partial(
                        serve_websocket,
                        partial(_handle, frames),
                        HOST,
                        0,
                        context,
                        message_queue_size=64,
                        receive_buffer_size=65536,
                    )
                )
                ports.append(server.port)
            conn.send(ports)
            with contextlib.suppress(EOFError):  # until the parent says stop or goes away
                await trio.to_thread.run_sync(conn.recv, abandon_on_cancel=True)
            nursery.cancel_scope.cancel()


def server_main(
    conn: Connection, frames: list[bytes], cpu: int | None, lifetime: float, key_and_chain: bytes
) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    # A throwaway CA's certificate for 127.0.0.1, its key and chain given as PEM (a context does not cross
    # processes).
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as directory:
        pem = os.path.join(directory, "server.pem")
        with open(pem, "wb") as file:
            file.write(key_and_chain)
        tls.load_cert_chain(pem)
    trio.run(_serve, conn, frames, lifetime, tls)


def _preemptions(pid: int) -> int | None:
    """Involuntary context switches of a process so far, from /proc (None where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("nonvoluntary_ctxt_switches:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, from /proc (None where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------------------
# The client side


class GcWatch:
    """Records the duration of every cyclic-GC collection while active (a `gc.callbacks` entry)."""

    def __init__(self) -> None:
        self.active = False
        self.pauses: list[tuple[int, float]] = []  # (generation, seconds)
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if not self.active:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._started))


class RunResult:
    def __init__(self, subscribers: int, deliveries: int, ticks_in: int, wall: float, cpu: float) -> None:
        self.subscribers = subscribers
        self.deliveries = deliveries
        self.ticks_in = ticks_in
        self.wall = wall
        self.cpu = cpu
        self.server_cpu: float | None = None
        self.gc_pauses: list[tuple[int, float]] = []
        self.preemptions = 0
        """Involuntary context switches of this process during the window (another task took the CPU)."""
        self.server_preemptions: int | None = None

    @property
    def rate(self) -> float:
        """Ticks per second delivered to each subscriber."""
        return self.deliveries / self.subscribers / self.wall


class Bench:
    def __init__(
        self,
        url: str,
        csv: str,
        instruments: Sequence[Instrument],
        server_pid: int | None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self.ssl_context = ssl_context
        self.csv = csv
        self.symbols = [i.symbol for i in instruments]
        self.stamp_token = instruments[0].kite_token
        self.server_pid = server_pid
        self.problems: list[str] = []

    def broker(self, path: str) -> KiteBroker:
        return KiteBroker(
            "bench_api_key",
            "bench_access_token",
            url=self.url + path,
            instruments=self.csv,
            backoff=Backoff(initial=0.05, max_attempts=1),  # a lost connection ends the run, loudly
            ssl_context=self.ssl_context,
        )

    async def run(
        self,
        path: str,
        subscribers: int,
        warmup: float,
        window: float,
        latencies: list[tuple[int, int]] | None,
    ) -> RunResult:
        """One fresh connection: subscribe, warm up, measure a window. With `latencies`, record for every
        stamped tick (receipt - send, decode start - send) in ns: the decode start is `Tick.received_at`,
        the wall-clock time the feed took when it began decoding the frame."""
        counts = [0] * subscribers
        subscribed = 0
        all_subscribed = trio.Event()
        recording = False
        stamp_token = self.stamp_token

        async def subscriber(index: int) -> None:
            nonlocal subscribed
            async with md.subscribe(self.symbols, mode=Mode.FULL, overflow=Overflow.BLOCK) as sub:
                subscribed += 1
                if subscribed == subscribers:
                    all_subscribed.set()
                while True:
                    batch = await sub.receive_batch()
                    now = time.time_ns()
                    n = 0
                    for event in batch:
                        if type(event) is Tick:
                            n += 1
                            if (
                                latencies is not None
                                and recording
                                and event.instrument_token == stamp_token
                                and event.oi_day_high is not None
                                and event.oi_day_low is not None
                            ):
                                sent = event.oi_day_high << 32 | event.oi_day_low
                                latencies.append((now - sent, int(event.received_at * 1e9) - sent))
                    counts[index] += n

        with trio.fail_after(warmup + window + 30):
            async with open_market_data(self.broker(path)) as md, trio.open_nursery() as nursery:
                for index in range(subscribers):
                    nursery.start_soon(subscriber, index)
                await all_subscribed.wait()
                await trio.sleep(warmup)
                before = list(counts)
                ticks_before = md.statistics().ticks_in
                server_before = self._server_cpu()
                server_switches = None if self.server_pid is None else _preemptions(self.server_pid)
                watch = GcWatch()
                gc.callbacks.append(watch)
                switches = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
                watch.active = recording = True
                cpu0 = time.process_time()
                t0 = time.perf_counter()
                await trio.sleep(window)
                t1 = time.perf_counter()
                cpu1 = time.process_time()
                watch.active = recording = False
                switches = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw - switches
                gc.callbacks.remove(watch)
                server_after = self._server_cpu()
                if server_switches is not None and self.server_pid is not None:
                    after_switches = _preemptions(self.server_pid)
                    if after_switches is not None:
                        server_switches = after_switches - server_switches
                stats = md.statistics()
                after = list(counts)
                nursery.cancel_scope.cancel()
        deliveries = sum(after) - sum(before)
        result = RunResult(subscribers, deliveries, stats.ticks_in - ticks_before, t1 - t0, cpu1 - cpu0)
        result.gc_pauses = watch.pauses
        result.preemptions = switches
        result.server_preemptions = server_switches
        if server_before is not None and server_after is not None:
            result.server_cpu = (server_after - server_before) / (t1 - t0)
        reconnects = sum(c.reconnects for b in stats.brokers for c in b.connections)
        if reconnects or stats.dropped:
            self.problems.append(f"{path} x{subscribers}: {reconnects} reconnects, {stats.dropped} dropped")
        spread = max(a - b for a, b in zip(after, before, strict=True)) - min(
            a - b for a, b in zip(after, before, strict=True)
        )
        if spread > 10 * PACKETS_PER_FRAME:
            self.problems.append(f"{path} x{subscribers}: subscribers' counts differ by {spread} ticks")
        return result

    def _server_cpu(self) -> float | None:
        return None if self.server_pid is None else _process_cpu_seconds(self.server_pid)

    async def raw_throughput(self, warmup: float, window: float) -> RunResult:
        """The transport floor: a bare trio-websocket client (the library's buffer settings, no decode,
        no manager) counting the frames of ``/throughput``."""
        url = f"{self.url}/throughput?api_key=bench_api_key&access_token=bench_access_token"
        frames = 0
        with trio.fail_after(warmup + window + 30):
            async with open_websocket_url(
                url,
                self.ssl_context,
                message_queue_size=MESSAGE_QUEUE_SIZE,
                receive_buffer_size=RECEIVE_BUFFER_SIZE,
            ) as ws:
                await ws.send_message('{"a": "subscribe", "v": []}')
                with trio.move_on_after(warmup):
                    while True:
                        await ws.get_message()
                switches = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
                server_before = self._server_cpu()
                cpu0 = time.process_time()
                t0 = time.perf_counter()
                with trio.move_on_after(window):
                    while True:
                        await ws.get_message()
                        frames += 1
                wall = time.perf_counter() - t0
                cpu = time.process_time() - cpu0
                server_after = self._server_cpu()
                switches = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw - switches
        ticks = frames * PACKETS_PER_FRAME
        result = RunResult(1, ticks, ticks, wall, cpu)
        result.preemptions = switches
        if server_before is not None and server_after is not None:
            result.server_cpu = (server_after - server_before) / wall
        return result

    async def raw_latency(self, frame_rate: float, warmup: float, window: float) -> list[int]:
        """The transport floor: a bare trio-websocket client (the library's buffer settings, no decode,
        no manager) reading the stamped frames; send -> `get_message` returned, in ns."""
        samples: list[int] = []
        url = f"{self.url}/latency/{frame_rate:g}?api_key=bench_api_key&access_token=bench_access_token"
        with trio.fail_after(warmup + window + 30):
            async with open_websocket_url(
                url, message_queue_size=MESSAGE_QUEUE_SIZE, receive_buffer_size=RECEIVE_BUFFER_SIZE
            ) as ws:
                await ws.send_message('{"a": "subscribe", "v": []}')
                deadline = trio.current_time() + warmup + window
                record_from = trio.current_time() + warmup
                while trio.current_time() < deadline:
                    message = await ws.get_message()
                    now = time.time_ns()
                    if trio.current_time() >= record_from and isinstance(message, bytes):
                        high, low = _STAMP.unpack_from(message, _STAMP_OFFSET)
                        samples.append(now - (high << 32 | low))
        return samples


def decode_rate(frames: Sequence[bytes], seconds: float) -> tuple[float, float]:
    """(wall, CPU) ns per tick of `decode_frame` alone over about `seconds` (after one untimed pass)."""
    for frame in frames:
        decode_frame(frame)
    loops = 0
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    while True:
        for frame in frames:
            decode_frame(frame)
        loops += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            ticks = loops * len(frames) * PACKETS_PER_FRAME
            return elapsed / ticks * 1e9, (time.process_time() - cpu0) / ticks * 1e9


# ---------------------------------------------------------------------------------------------------------
# Output


def preempted_text(results: Sequence[RunResult]) -> str:
    client = sum(r.preemptions for r in results)
    server = [r.server_preemptions for r in results if r.server_preemptions is not None]
    return f"{client:,} / {sum(server):,}" if server else f"{client:,} / ?"


def percentile(sorted_values: Sequence[int], q: float) -> float:
    """The q-th percentile (0..100), nearest rank."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def machine(pinned: bool, usable: int) -> str:
    placement = "server pinned to the first CPU, client to the second" if pinned else "not pinned"
    return _machine(
        ("trading-ws", "trio", "trio-websocket", "wsproto", "msgspec", "attrs"),
        cpus=f"{usable} usable; {placement}",
        load=True,
    )


async def main_async(
    args: argparse.Namespace,
    urls: tuple[str, str],
    server_pid: int | None,
    pinned: bool,
    usable: int,
    tls_context: ssl.SSLContext,
) -> int:
    quick: bool = args.quick
    runs: int = args.runs or (2 if quick else 5)
    window: float = args.window or (1.0 if quick else 3.0)
    warmup = 0.3 if quick else 0.5
    latency_runs = 1 if quick else 3
    decode_seconds = 0.2 if quick else 0.5
    instruments = bench_instruments()
    frames = build_frames(instruments, args.seed, DISTINCT_FRAMES)
    url, tls_url = urls
    bench = Bench(url, kite_instruments_csv(instruments), instruments, server_pid)
    tls_bench = Bench(tls_url, kite_instruments_csv(instruments), instruments, server_pid, tls_context)

    print("# End-to-end benchmark: blaster server -> loopback WebSocket -> open_market_data subscribers\n")
    print(machine(pinned, usable))
    print(
        f"- Frames: {DISTINCT_FRAMES} distinct Kite frames of {PACKETS_PER_FRAME} FULL packets "
        f"({len(frames[0]):,} B), 70 NSE equities and 30 NFO futures; subscribers in FULL mode, "
        "draining with `receive_batch()`"
    )
    print(
        f"- Throughput: {runs} runs per row, each a fresh connection, {warmup:.1f} s warm-up then a "
        f"{window:.1f} s window; latency: {latency_runs} run(s) of {window:.1f} s per row\n"
    )

    decode_ns: list[tuple[float, float]] = []
    throughput: dict[int, list[RunResult]] = {}
    for subscribers in (1, 10):
        results: list[RunResult] = []
        for _ in range(runs):
            decode_ns.append(decode_rate(frames, decode_seconds))
            results.append(await bench.run("/throughput", subscribers, warmup, window, None))
            print(
                f"  throughput x{subscribers}: {fmt_rate(results[-1].rate)} ticks/s per subscriber",
                file=sys.stderr,
            )
        throughput[subscribers] = results
    raw_runs: list[RunResult] = []
    for _ in range(1 if quick else 3):
        raw_runs.append(await bench.raw_throughput(warmup, window))
    # The same over TLS (wss://, the library's default verification against a throwaway CA): decryption
    # is a cost every real deployment pays.
    tls_runs: list[RunResult] = []
    for _ in range(runs):
        decode_ns.append(decode_rate(frames, decode_seconds))
        tls_runs.append(await tls_bench.run("/throughput", 1, warmup, window, None))
        print(f"  throughput x1 over TLS: {fmt_rate(tls_runs[-1].rate)} ticks/s", file=sys.stderr)
    raw_tls_runs: list[RunResult] = []
    for _ in range(1 if quick else 3):
        raw_tls_runs.append(await tls_bench.raw_throughput(warmup, window))
    decode_ns.append(decode_rate(frames, decode_seconds))
    decode = 1e9 / statistics.median(wall for wall, _ in decode_ns)
    decode_cpu_us = statistics.median(cpu for _, cpu in decode_ns) / 1e3

    latency: dict[int, tuple[float, list[tuple[int, int]], list[RunResult]]] = {}
    for subscribers in (1, 10):
        peak = statistics.median(r.rate for r in throughput[subscribers])
        frame_rate = max(1.0, round(peak / 10 / PACKETS_PER_FRAME))
        samples: list[tuple[int, int]] = []
        results = []
        for _ in range(latency_runs):
            results.append(await bench.run(f"/latency/{frame_rate:g}", subscribers, warmup, window, samples))
        latency[subscribers] = (frame_rate, samples, results)
        print(f"  latency x{subscribers}: {len(samples)} samples at {frame_rate:g} frames/s", file=sys.stderr)
    raw: list[int] = []
    for _ in range(latency_runs):
        raw += await bench.raw_latency(latency[1][0], warmup, window)
    raw.sort()

    # Tables.
    print("#### Throughput: Kite FULL frames over loopback WebSocket -> manager -> subscribers\n")
    print(
        f"Decode only (`decode_frame` on the same frames, in the client process between the runs): "
        f"**{fmt_rate(decode)} ticks/s** (median of {len(decode_ns)} rounds, "
        f"{min(1e9 / x for x, _ in decode_ns) / 1e3:.0f}–{max(1e9 / x for x, _ in decode_ns) / 1e3:.0f} k; "
        f"{decode_cpu_us:.2f} CPU µs/tick).\n"
    )
    print(
        "| subscribers | ticks/s per subscriber (median) | deliveries/s | vs decode-only | min..max "
        "ticks/s | client CPU | client CPU µs/tick in | server CPU | preempted (client/server) |"
    )
    print("|---:|---:|---:|---:|---|---:|---:|---:|---:|")

    def row(label: str, results: Sequence[RunResult], decode: float = decode) -> None:
        subscribers = results[0].subscribers
        rates = sorted(r.rate for r in results)
        median = statistics.median(rates)
        cpu_share = sum(r.cpu for r in results) / sum(r.wall for r in results)
        cpu_per_tick = sum(r.cpu for r in results) / sum(r.ticks_in for r in results) * 1e6
        server = [r.server_cpu for r in results if r.server_cpu is not None]
        server_text = f"{statistics.median(server):.0%}" if server else "?"
        print(
            f"| {label} | {fmt_rate(median)} | {fmt_rate(median * subscribers)} "
            f"| {median / decode:.2f}x | {fmt_rate(rates[0])}..{fmt_rate(rates[-1])} | {cpu_share:.0%} "
            f"| {cpu_per_tick:.2f} | {server_text} | {preempted_text(results)} |"
        )

    for subscribers, results in throughput.items():
        row(f"{subscribers}", results)
    row("1, over TLS (`wss://`)", tls_runs)
    row("bare trio-websocket client, no decoding (the transport floor)", raw_runs)
    row("bare trio-websocket client over TLS, no decoding (the TLS transport floor)", raw_tls_runs)
    cpu_one = sum(r.cpu for r in throughput[1]) / sum(r.ticks_in for r in throughput[1]) * 1e6
    cpu_raw = sum(r.cpu for r in raw_runs) / sum(r.ticks_in for r in raw_runs) * 1e6
    print(
        f"\nClient CPU per tick, 1 subscriber: {cpu_one:.2f} µs = transport {cpu_raw:.2f} (bare client) "
        f"+ decode {decode_cpu_us:.2f} (decode-only) + the rest {cpu_one - cpu_raw - decode_cpu_us:.2f} "
        "(hand-off, routing, queue, subscriber)."
    )
    cpu_tls = sum(r.cpu for r in tls_runs) / sum(r.ticks_in for r in tls_runs) * 1e6
    cpu_raw_tls = sum(r.cpu for r in raw_tls_runs) / sum(r.ticks_in for r in raw_tls_runs) * 1e6
    print(
        f"Over TLS: {cpu_tls:.2f} µs per tick (+{cpu_tls - cpu_one:.2f} µs, {cpu_tls / cpu_one - 1:+.0%}); "
        f"the bare client {cpu_raw_tls:.2f} µs (+{cpu_raw_tls - cpu_raw:.2f} µs): what decryption costs."
    )

    print("\n#### Latency: server send -> subscriber receipt, first tick of each frame\n")
    print(
        "| subscribers | frames/s (ticks/s) | share of peak | samples | p50 | p90 | p99 | p99.9 | max "
        "| client CPU | GC runs (gen 2) | longest GC | preempted (client/server) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    totals: dict[int, list[int]] = {}
    for subscribers, (frame_rate, samples, runs_) in latency.items():
        values = totals[subscribers] = sorted(total for total, _ in samples)
        pauses = [p for r in runs_ for p in r.gc_pauses]
        gen2 = sum(1 for g, _ in pauses if g == 2)
        longest = max((d for _, d in pauses), default=0.0)
        cpu_share = sum(r.cpu for r in runs_) / sum(r.wall for r in runs_)
        peak = statistics.median(r.rate for r in throughput[subscribers])

        def ms(q: float, values: Sequence[int] = values) -> str:
            return f"{percentile(values, q) / 1e6:.3f} ms"

        print(
            f"| {subscribers} | {frame_rate:g} ({fmt_rate(frame_rate * PACKETS_PER_FRAME)}) "
            f"| {frame_rate * PACKETS_PER_FRAME / peak:.0%} | {len(values):,} | {ms(50)} | {ms(90)} "
            f"| {ms(99)} | {ms(99.9)} | {ms(100)} | {cpu_share:.0%} | {len(pauses):,} ({gen2}) "
            f"| {longest * 1e3:.2f} ms | {preempted_text(runs_)} |"
        )

    print("\nWhere it goes (each part's own percentiles; they do not add up exactly):\n")
    print("| subscribers | part | p50 | p90 | p99 |")
    print("|---:|---|---:|---:|---:|")
    print(
        f"| – | bare trio-websocket client at {latency[1][0]:g} frames/s, no decoding: send -> "
        f"`get_message` returns ({len(raw):,} samples) | {percentile(raw, 50) / 1e6:.3f} ms "
        f"| {percentile(raw, 90) / 1e6:.3f} ms | {percentile(raw, 99) / 1e6:.3f} ms |"
    )
    for subscribers, (_, samples, _) in latency.items():
        parts = (
            ("send -> the feed starts decoding (server framing, loopback, wsproto, trio-websocket)", 1),
            ("decoding starts -> subscriber has the tick (decode 100 packets, routing, queue)", 2),
        )
        for label, which in parts:
            part = sorted(t if which == 1 else total - t for total, t in samples)
            print(
                f"| {subscribers} | {label} | {percentile(part, 50) / 1e6:.3f} ms "
                f"| {percentile(part, 90) / 1e6:.3f} ms | {percentile(part, 99) / 1e6:.3f} ms |"
            )

    one = statistics.median(r.rate for r in throughput[1])
    p99 = percentile(totals[1], 99) / 1e6
    p99_ten = percentile(totals[10], 99) / 1e6
    print("\nGoals:")
    print(
        f"- throughput, 1 subscriber, at least half the decode-only rate: {fmt_rate(one)} / "
        f"{fmt_rate(decode)} = {one / decode:.2f}x: {'met' if one >= decode / 2 else 'NOT met'} "
        f"(in client CPU time per tick, whatever else ran on the machine: {decode_cpu_us:.2f} / "
        f"{cpu_one:.2f} µs = {decode_cpu_us / cpu_one:.2f}x)"
    )
    print(
        f"- latency p99 under 2 ms at a tenth of the peak rate: {p99:.3f} ms (1 subscriber), "
        f"{p99_ten:.3f} ms (10 subscribers): {'met' if max(p99, p99_ten) < 2 else 'NOT met'}"
    )
    if bench.problems:
        print("\nPROBLEMS:", file=sys.stderr)
        for line in bench.problems:
            print("  " + line, file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (under 20 s)")
    parser.add_argument("--runs", type=int, default=None, help="throughput runs per row (5)")
    parser.add_argument("--window", type=float, default=None, help="seconds measured per run (3)")
    parser.add_argument("--pin", action="store_true", help="pin server and client to different CPUs")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pinned = args.pin and len(cpus) >= 2
    frames = build_frames(bench_instruments(), args.seed, DISTINCT_FRAMES)
    authority = trustme.CA()
    key_and_chain = authority.issue_cert(HOST).private_key_and_cert_chain_pem.bytes()
    tls_context = ssl.create_default_context()
    authority.configure_trust(tls_context)
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(
        target=server_main,
        args=(theirs, frames, cpus[0] if pinned else None, SERVER_LIFETIME, key_and_chain),
        name="bench-blaster",
        daemon=True,
    )
    server.start()
    try:
        if not ours.poll(30):
            print("the server process did not start within 30 s", file=sys.stderr)
            return 1
        port, tls_port = ours.recv()
        if pinned:
            os.sched_setaffinity(0, {cpus[1]})
        urls = (f"ws://{HOST}:{port}", f"wss://{HOST}:{tls_port}")
        return trio.run(main_async, args, urls, server.pid, pinned, len(cpus), tls_context)
    finally:
        with contextlib.suppress(OSError):
            ours.send("stop")
        server.join(5)
        if server.is_alive():
            server.terminate()
            server.join(5)


if __name__ == "__main__":
    sys.exit(main())
