"""Fan-out through the manager: ticks delivered per second to 1, 10, 100 and 1000 subscribers.

Usage::

    python benchmarks/bench_fanout.py [--quick] [--rounds N] [--round-seconds S] [--seed N]

Drives the manager's real hot path in one process, with no socket: `open_market_data` over an in-memory
broker (this file's `MemoryBroker`, implementing the `BrokerConfig` and `BrokerFeed` protocols) whose
connection hands out pre-decoded Kite frames of 100 ticks, one frame per scheduler pass, as the Kite
feed's channel does. Its shard task routes each frame with `MarketData._route` into every subscriber's
`SubscriberQueue`; the subscribers, all holding the same 100 instruments, drain with `receive_batch()`
or `async for` and count the ticks. Beside it, in the same run: the decode-only rate (`decode_frame` on
the same frames) and a per-tick ``await send`` memory-channel baseline at 1 and 10 subscribers.

Prints markdown tables: deliveries/s (ticks x subscribers) and ticks-in/s per subscriber count, for QUOTE
and FULL frames. Exit status 1 if a subscriber lost or gained a tick.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime

import trio
from _common import bench_instruments, fmt_rate, machine as _machine

from trading_ws import IST, Broker, Event, Mode, Overflow, RateLimit, Subscription, Tick, open_market_data
from trading_ws._ratelimit import TokenBucket
from trading_ws.brokers._interface import BrokerConfig, BrokerFeed, InstrumentInfo
from trading_ws.brokers._queue import Sink
from trading_ws.brokers.kite import decode_frame
from trading_ws.brokers.kite._codec import encode_frame
from trading_ws.sim import Instrument, Market

PACKETS_PER_FRAME = 100
DISTINCT_FRAMES = 16
SUBSCRIBER_COUNTS = (1, 10, 100, 1000)
BASELINE_COUNTS = (1, 10)
SESSION_START = datetime(2026, 11, 25, 10, 15, 0, tzinfo=IST).timestamp()


# ---------------------------------------------------------------------------------------------------------
# Instruments and frames


def build_frames(instruments: Sequence[Instrument], mode: Mode, seed: int, count: int) -> list[bytes]:
    """`count` Kite frames, one packet per instrument each, from the simulator's seeded random walk."""
    market = Market(seed, instruments)
    frames: list[bytes] = []
    for n in range(count):
        now = SESSION_START + 0.5 * n
        market.step(now)
        frames.append(encode_frame(market.tick(i.kite_token, mode, now) for i in instruments))
    return frames


# ---------------------------------------------------------------------------------------------------------
# An in-memory broker: the manager's protocols, fed from pre-decoded frames


class FrameSource:
    """Hands out pre-decoded frames in rounds: `release(n)` lets the next `n` frames through."""

    def __init__(self, frames: Sequence[list[Event]]) -> None:
        self._frames = frames
        self._next = 0
        self._remaining = 0
        self.released = 0
        self._lot = trio.lowlevel.ParkingLot()

    def release(self, count: int) -> None:
        self._remaining += count
        self.released += count
        self._lot.unpark_all()

    async def next_batch(self) -> list[Event]:
        while not self._remaining:
            await self._lot.park()
        self._remaining -= 1
        frame = self._frames[self._next]
        self._next = (self._next + 1) % len(self._frames)
        # One scheduler pass per frame, as the Kite feed's yield after each hand-off costs.
        await trio.lowlevel.checkpoint()
        return frame


class MemoryFeed:
    """`BrokerFeed`: always connected; requests are accepted and ignored; batches come from a source."""

    def __init__(self, source: FrameSource) -> None:
        self._source = source
        self.requests = 0

    @property
    def connected(self) -> bool:
        return True

    async def subscribe(self, keys: Iterable[Hashable], mode: Mode) -> None:
        self.requests += 1
        await trio.lowlevel.checkpoint()

    async def unsubscribe(self, keys: Iterable[Hashable]) -> None:
        self.requests += 1
        await trio.lowlevel.checkpoint()

    async def receive_batch(self) -> list[Event]:
        return await self._source.next_batch()


class MemoryBroker:
    """`BrokerConfig`: a Kite-like broker (routed by token) whose one connection is a `MemoryFeed`."""

    def __init__(self, instruments: Sequence[Instrument], source: FrameSource) -> None:
        self._infos = {
            i.symbol: InstrumentInfo(i.symbol, i.kite_token, i.kite_token, i.kite_token & 0xFF, i.tradable)
            for i in instruments
        }
        self._source = source

    @property
    def broker(self) -> Broker:
        return Broker.KITE

    @property
    def name(self) -> str:
        return "memory"

    @property
    def max_instruments_per_connection(self) -> int:
        return 3000

    @property
    def max_connections(self) -> int:
        return 1

    @property
    def rate_limit(self) -> RateLimit:
        return RateLimit(rate=1e6, burst=1000)

    @property
    def keyed_by_segment(self) -> bool:
        return False

    async def load_instruments(self) -> Mapping[str, InstrumentInfo]:
        await trio.lowlevel.checkpoint()
        return self._infos

    def open_feed(
        self, connection_id: int, limiter: TokenBucket, sink: Sink | None = None
    ) -> AbstractAsyncContextManager[BrokerFeed]:
        # The sink is not used: the manager's shard task takes the batches from `receive_batch` and routes
        # them, which costs what a real feed's reader does with the sink (one scheduler pass per frame).
        return self._open()

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[BrokerFeed]:
        await trio.lowlevel.checkpoint()
        yield MemoryFeed(self._source)


_CHECK_PROTOCOLS: tuple[type[BrokerConfig], type[BrokerFeed]] = (MemoryBroker, MemoryFeed)  # mypy checks


# ---------------------------------------------------------------------------------------------------------
# Rounds: the producer releases a fixed number of frames; each consumer reports when it has them all


class Rounds:
    def __init__(self, consumers: int) -> None:
        self.consumers = consumers
        self.number = 0
        self.target = 0
        """Cumulative ticks each consumer must have received at the end of this round."""
        self._waiting = 0
        self.done = trio.Event()
        self.counts = [0] * consumers

    def start(self, ticks: int) -> None:
        self.number += 1
        self.target += ticks
        self._waiting = self.consumers
        self.done = trio.Event()

    def reached(self) -> None:
        self._waiting -= 1
        if not self._waiting:
            self.done.set()


async def drain_batches(sub: Subscription, rounds: Rounds, index: int) -> None:
    count = 0
    seen = 0
    while True:
        batch = await sub.receive_batch()
        for event in batch:
            if type(event) is Tick:
                count += 1
        rounds.counts[index] = count
        if count >= rounds.target and seen < rounds.number:
            seen = rounds.number
            rounds.reached()


async def drain_iterator(sub: Subscription, rounds: Rounds, index: int) -> None:
    count = 0
    seen = 0
    async for event in sub:
        if type(event) is Tick:
            count += 1
            if count >= rounds.target and seen < rounds.number:
                rounds.counts[index] = count
                seen = rounds.number
                rounds.reached()


async def drain_channel(receiver: trio.MemoryReceiveChannel[Tick], rounds: Rounds, index: int) -> None:
    count = 0
    seen = 0
    async for event in receiver:
        if type(event) is Tick:
            count += 1
            if count >= rounds.target and seen < rounds.number:
                rounds.counts[index] = count
                seen = rounds.number
                rounds.reached()


# ---------------------------------------------------------------------------------------------------------
# Measurement


class Sample:
    def __init__(self, frames: int, wall: float, cpu: float) -> None:
        self.frames = frames
        self.wall = wall
        self.cpu = cpu


class Result:
    def __init__(self, label: str, subscribers: int, samples: list[Sample]) -> None:
        self.label = label
        self.subscribers = subscribers
        per_delivery = [s.wall / (s.frames * PACKETS_PER_FRAME * subscribers) for s in samples]
        self.ns = statistics.median(per_delivery) * 1e9
        self.cpu_ns = (
            statistics.median(s.cpu / (s.frames * PACKETS_PER_FRAME * subscribers) for s in samples) * 1e9
        )
        q = statistics.quantiles(per_delivery, n=4) if len(per_delivery) >= 2 else [per_delivery[0]] * 3
        self.iqr = (q[2] - q[0]) / statistics.median(per_delivery)
        self.cpu_share = sum(s.cpu for s in samples) / sum(s.wall for s in samples)
        self.deliveries = 1e9 / self.ns
        self.ticks_in = self.deliveries / subscribers
        self.setup: tuple[float, float] | None = None
        self.peak: int | None = None


class ManagerRun:
    def __init__(
        self, samples: list[Sample], subscribe: float, unsubscribe: float, peak: int, problems: list[str]
    ) -> None:
        self.samples = samples
        self.subscribe = subscribe
        """Seconds from starting the subscriber tasks until every one was subscribed."""
        self.unsubscribe = unsubscribe
        """Seconds for every subscription to leave its block (each one unsubscribes)."""
        self.peak = peak
        """The deepest any subscriber's queue got, in ticks."""
        self.problems = problems


Runner = Callable[[int], Awaitable[Sample]]


async def calibrated(run: Runner, rounds: int, round_seconds: float, min_frames: int) -> list[Sample]:
    """A warm-up round, then `rounds` rounds sized to about `round_seconds` each."""
    frames = max(min_frames, 8)
    warm = await run(frames)
    frames = max(min_frames, round(frames * round_seconds / max(warm.wall, 1e-6)))
    return [await run(frames) for _ in range(rounds)]


async def bench_manager(
    instruments: Sequence[Instrument],
    frames: Sequence[list[Event]],
    mode: Mode,
    subscribers: int,
    consumer: Callable[[Subscription, Rounds, int], Awaitable[None]],
    rounds: int,
    round_seconds: float,
) -> ManagerRun:
    source = FrameSource(frames)
    state = Rounds(subscribers)
    symbols = [i.symbol for i in instruments]
    problems: list[str] = []
    subscribed = 0
    all_subscribed = trio.Event()
    subs: list[Subscription] = []

    async def subscriber(index: int) -> None:
        nonlocal subscribed
        async with md.subscribe(symbols, mode=mode, overflow=Overflow.BLOCK) as sub:
            subs.append(sub)
            subscribed += 1
            if subscribed == subscribers:
                all_subscribed.set()
            await consumer(sub, state, index)

    async def run(count: int) -> Sample:
        state.start(count * PACKETS_PER_FRAME)
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        source.release(count)
        await state.done.wait()
        t1 = time.perf_counter()
        return Sample(count, t1 - t0, time.process_time() - cpu0)

    async with open_market_data(MemoryBroker(instruments, source)) as md:
        async with trio.open_nursery() as nursery:
            t0 = time.perf_counter()
            for index in range(subscribers):
                nursery.start_soon(subscriber, index)
            await all_subscribed.wait()
            setup = time.perf_counter() - t0
            samples = await calibrated(run, rounds, round_seconds, min_frames=10)
            stats = md.statistics()
            released = source.released * PACKETS_PER_FRAME
            if stats.ticks_in != released or stats.ticks_out != released * subscribers or stats.dropped:
                problems.append(
                    f"{subscribers} subscribers: ticks_in {stats.ticks_in} (expected {released}), ticks_out "
                    f"{stats.ticks_out} (expected {released * subscribers}), dropped {stats.dropped}"
                )
            wrong = [c for c in state.counts if c != state.target]
            if wrong:
                problems.append(f"{subscribers} subscribers: {len(wrong)} counts differ from {state.target}")
            peak = max(sub.statistics().queue.peak for sub in subs)
            t0 = time.perf_counter()
            nursery.cancel_scope.cancel()  # every subscription leaves its block (and unsubscribes)
        teardown = time.perf_counter() - t0
    return ManagerRun(samples, setup, teardown, peak, problems)


async def bench_channel(
    frames: Sequence[list[Event]], subscribers: int, rounds: int, round_seconds: float
) -> list[Sample]:
    """The contrast: one producer, an ``await send`` per tick into each subscriber's channel (1024)."""
    source = FrameSource(frames)
    state = Rounds(subscribers)

    async def producer(senders: list[trio.MemorySendChannel[Tick]]) -> None:
        while True:
            batch = await source.next_batch()
            for event in batch:
                if type(event) is Tick:
                    for sender in senders:
                        await sender.send(event)

    async def run(count: int) -> Sample:
        state.start(count * PACKETS_PER_FRAME)
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        source.release(count)
        await state.done.wait()
        t1 = time.perf_counter()
        return Sample(count, t1 - t0, time.process_time() - cpu0)

    async with trio.open_nursery() as nursery:
        senders: list[trio.MemorySendChannel[Tick]] = []
        for index in range(subscribers):
            sender, receiver = trio.open_memory_channel[Tick](1024)
            senders.append(sender)
            nursery.start_soon(drain_channel, receiver, state, index)
        nursery.start_soon(producer, senders)
        samples = await calibrated(run, rounds, round_seconds, min_frames=2)
        nursery.cancel_scope.cancel()
    return samples


def bench_decode(encoded: Sequence[bytes], rounds: int, round_seconds: float) -> list[tuple[float, float]]:
    """(wall, CPU) ns per tick of `decode_frame` alone, one sample per round."""
    for frame in encoded:
        decode_frame(frame)
    loops = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(loops):
            for frame in encoded:
                decode_frame(frame)
        elapsed = time.perf_counter() - t0
        if elapsed > round_seconds / 4:
            break
        loops *= 2
    loops = max(1, round(loops * round_seconds / elapsed))
    out: list[tuple[float, float]] = []
    ticks = loops * len(encoded) * PACKETS_PER_FRAME
    for _ in range(rounds):
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        for _ in range(loops):
            for frame in encoded:
                decode_frame(frame)
        wall = time.perf_counter() - t0
        out.append((wall / ticks * 1e9, (time.process_time() - cpu0) / ticks * 1e9))
    return out


# ---------------------------------------------------------------------------------------------------------
# Output


def table(title: str, decode_ns: float, decode_cpu_ns: float, results: list[Result]) -> str:
    lines = [
        f"#### {title}",
        "",
        f"Decode only (`decode_frame`, same frames, same run): **{fmt_rate(1e9 / decode_ns)} ticks/s** "
        f"({decode_ns:,.0f} ns/tick; {decode_cpu_ns:,.0f} CPU ns/tick).",
        "",
        "| path | subscribers | deliveries/s (median) | ticks in/s | ns/delivery | CPU ns/delivery "
        "| IQR | CPU | subscribe / unsubscribe all | deepest queue |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        setup = "–" if r.setup is None else f"{r.setup[0] * 1000:,.0f} / {r.setup[1] * 1000:,.0f} ms"
        peak = "–" if r.peak is None else f"{r.peak:,}"
        lines.append(
            f"| {r.label} | {r.subscribers:,} | {fmt_rate(r.deliveries)} | {fmt_rate(r.ticks_in)} "
            f"| {r.ns:,.0f} | {r.cpu_ns:,.0f} | {r.iqr:.0%} | {r.cpu_share:.0%} | {setup} "
            f"| {peak} |"
        )
    return "\n".join(lines)


def machine() -> str:
    return _machine(("trading-ws", "trio", "msgspec", "attrs"), load=True)


async def main_async(args: argparse.Namespace) -> int:
    rounds: int = args.rounds or (3 if args.quick else 7)
    round_seconds: float = args.round_seconds or (0.05 if args.quick else 0.3)
    counts = SUBSCRIBER_COUNTS
    instruments = bench_instruments()
    problems: list[str] = []

    print("# Manager fan-out benchmark\n")
    print(machine())
    print(
        f"- Frames: {DISTINCT_FRAMES} distinct pre-decoded Kite frames per mode, {PACKETS_PER_FRAME} "
        f"ticks each (one per instrument; 70 NSE equities, 30 NFO futures)"
    )
    print(
        f"- Rounds: a warm-up round, then {rounds} rounds of about {round_seconds * 1000:.0f} ms per row; "
        "median reported; subscribers use the defaults (`Overflow.BLOCK`, a 10,000-tick buffer)\n"
    )

    for mode in (Mode.QUOTE, Mode.FULL):
        encoded = build_frames(instruments, mode, args.seed, DISTINCT_FRAMES)
        frames = [decode_frame(f) for f in encoded]
        decode_samples: list[tuple[float, float]] = []
        results: list[Result] = []
        consumers: tuple[tuple[str, Callable[[Subscription, Rounds, int], Awaitable[None]]], ...] = (
            ("manager, `receive_batch()`", drain_batches),
            ("manager, `async for`", drain_iterator),
        )
        for label, consumer in consumers:
            for k in counts:
                decode_samples += bench_decode(encoded, 1, round_seconds)
                run = await bench_manager(instruments, frames, mode, k, consumer, rounds, round_seconds)
                problems += run.problems
                result = Result(label, k, run.samples)
                result.setup = (run.subscribe, run.unsubscribe)
                result.peak = run.peak
                results.append(result)
                print(
                    f"  {mode.value:5} {label:28} {k:5}: {fmt_rate(result.deliveries)} deliveries/s",
                    file=sys.stderr,
                )
        for k in BASELINE_COUNTS:
            decode_samples += bench_decode(encoded, 1, round_seconds)
            samples = await bench_channel(frames, k, rounds, round_seconds)
            results.append(Result("baseline: `await send` per tick, channel buffer 1024", k, samples))
        decode_ns = statistics.median(wall for wall, _ in decode_samples)
        decode_cpu_ns = statistics.median(cpu for _, cpu in decode_samples)
        size = len(encoded[0])
        print(
            table(
                f"{mode.value} frames, {PACKETS_PER_FRAME} ticks/frame ({size:,} B)",
                decode_ns,
                decode_cpu_ns,
                results,
            )
        )
        by = {(r.label, r.subscribers): r for r in results}
        one = by[("manager, `receive_batch()`", 1)]
        print(
            f"\nReading: 1 subscriber: routing + queue + consumer run at {fmt_rate(one.ticks_in)} ticks/s, "
            f"{one.ticks_in * decode_ns / 1e9:.1f}x the decode-only rate; in CPU time, "
            f"{one.cpu_ns:,.0f} ns per tick against {decode_cpu_ns:,.0f} ns to decode it "
            f"({one.cpu_ns / decode_cpu_ns:.0%}).\n"
        )
    if problems:
        print("COUNT MISMATCH:", file=sys.stderr)
        for line in problems:
            print("  " + line, file=sys.stderr)
        return 1
    print("Every subscriber received exactly the ticks released; the manager's counters agree.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short rounds (a smoke test, a few seconds)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per row (7)")
    parser.add_argument("--round-seconds", type=float, default=None, help="length of a round (0.3)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    return trio.run(main_async, args)


if __name__ == "__main__":
    sys.exit(main())
