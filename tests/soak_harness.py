"""Fault-injection soak: a manager with many subscribers runs against the simulators while they break.

Run it long with ``nox -s soak`` (or ``python tests/soak_harness.py --minutes 10 --write-docs``), which
rewrites docs/reliability.md with the figures; ``tests/test_soak.py`` runs a short variant in the
normal suite. Faults, one at a time, each followed by a check that every subscription flows again
within the backoff delay plus 5 s:

Both simulators run at once (Kite, sharded over three connections, and an XTS session) in a child process,
so that the memory measured is the client's alone; each fault hits one of them (or the subscribers).

- ``drop``: the broker drops every TCP connection without a close frame;
- ``silence``: the broker goes silent (no data, no heartbeats) for 1-7 s without closing;
- ``garbage``: malformed frames in the stream;
- ``rate_limited``: connections dropped and the next handshakes (Kite) or logins (XTS) refused with
  HTTP 429;
- ``token_expired``: the access token expires (handshakes refused with HTTP 403) and connections drop;
  the credentials provider hands over the new one (Kite), or the feed logs in again once (XTS);
- ``stall``: a lossy subscriber stops reading for a while;
- ``churn``: subscriptions add and remove symbols, or leave and come back.

Invariants checked throughout: no subscriber receives a tick for a symbol it does not hold; each
subscription's drop counter equals the events it was offered and never consumed (``received ==
events consumed + dropped + conflated + depth + discarded``: the queue counts every event, not only
ticks); no secret appears in any log record, event repr or error message; after the manager exits
the task count is back to its baseline; resident memory stays flat (within 5 % after warm-up, checked
on runs of five minutes or more).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio
from processes import Lines, reap

from trading_ws import (
    Backoff,
    Event,
    KiteBroker,
    Mode,
    Overflow,
    RateLimit,
    Subscription,
    Tick,
    TradingWsError,
    XtsBroker,
    open_market_data,
)
from trading_ws.brokers._interface import BrokerConfig
from trading_ws.sim import (
    DEMO_ACCESS_TOKEN,
    DEMO_API_KEY,
    DEMO_APP_KEY,
    DEMO_SECRET_KEY,
    UNIVERSE,
    KiteSimulator,
    XtsSimulator,
    kite_instruments_csv,
)

_JWT = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}")
FAULT_KINDS = ("drop", "silence", "garbage", "rate_limited", "token_expired", "stall", "churn")
FAULT_WEIGHTS = (30, 4, 15, 12, 12, 12, 15)
BACKOFF = Backoff(initial=0.05, factor=2.0, cap=0.8, jitter=0.2)
WATCHDOG = 5.0
RECOVERY_LIMIT = BACKOFF.cap * 3 + WATCHDOG  # "within the backoff delay plus 5 s"


class SecretScanner(logging.Handler):
    """Collects every log record's final text and remembers any that contains a secret."""

    def __init__(self, secrets: Callable[[], set[str]]) -> None:
        super().__init__(level=logging.DEBUG)
        self._secrets = secrets
        self.records = 0
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + repr(record.exc_info[1])
        self.check(text, f"log {record.name}")

    def check(self, text: str, where: str) -> None:
        for secret in self._secrets():
            if secret in text:
                self.leaks.append(f"{where}: {text[:200]}")
        if _JWT.search(text):
            self.leaks.append(f"{where} (a JWT): {text[:200]}")


@attrs.define
class Consumer:
    """One subscriber of the soak and what it saw."""

    name: str
    broker: str
    universe: list[str]
    """Every symbol its broker knows (for churn)."""
    symbols: set[str]
    mode: Mode
    overflow: Overflow
    delay: float
    """Seconds it sleeps between batches (0: reads as fast as it can)."""
    sub: Subscription | None = None
    consumed: int = 0
    """Ticks it took."""
    events: int = 0
    """Events it took, ticks and the rest (the queue's statistics count events)."""
    foreign: int = 0
    """Ticks received for a symbol it did not hold (must stay 0)."""
    stalled_until: float = 0.0
    generation: int = 0


@attrs.define
class SoakReport:
    """What a soak run measured."""

    seconds: float
    seed: int
    faults: Counter[str] = attrs.field(factory=Counter)
    recovered: int = 0
    failures: list[str] = attrs.field(factory=list)
    resume_times: list[float] = attrs.field(factory=list)
    reconnects: int = 0
    ticks_in: int = 0
    ticks_consumed: int = 0
    dropped: int = 0
    foreign_ticks: int = 0
    accounting_errors: int = 0
    log_records: int = 0
    events_scanned: int = 0
    secret_leaks: list[str] = attrs.field(factory=list)
    tasks_before: int = 0
    tasks_after: int = 0
    rss_samples: list[tuple[float, int]] = attrs.field(factory=list)
    block_samples: list[tuple[float, int]] = attrs.field(factory=list)
    """(seconds into the run, `sys.getallocatedblocks()`): the Python heap, whatever the allocator keeps."""
    warmup: float = 0.0

    @property
    def total_faults(self) -> int:
        return sum(self.faults.values())

    def percentile(self, q: float) -> float:
        if not self.resume_times:
            return math.nan
        ordered = sorted(self.resume_times)
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

    def rss_growth(self) -> float:
        """Relative growth of resident memory from the end of warm-up to the largest later sample."""
        late = [rss for at, rss in self.rss_samples if at >= self.warmup]
        if len(late) < 2:
            return 0.0
        return (max(late) - late[0]) / late[0]

    def heap_change(self) -> tuple[float, float, float]:
        """Allocated Python blocks, median of the first and of the last 30 samples after warm-up, and the
        relative change between them: an object leak shows here, allocator fragmentation does not."""
        late = [blocks for at, blocks in self.block_samples if at >= self.warmup]
        if len(late) < 2:
            return math.nan, math.nan, 0.0
        first = statistics.median(late[:30])
        last = statistics.median(late[-30:])
        return first, last, (last - first) / first

    def problems(self) -> list[str]:
        out = list(self.failures)
        if self.foreign_ticks:
            out.append(f"{self.foreign_ticks} ticks for symbols not held")
        if self.accounting_errors:
            out.append(f"{self.accounting_errors} drop-accounting mismatches")
        if self.secret_leaks:
            out.append(f"{len(self.secret_leaks)} secret leaks, e.g. {self.secret_leaks[0]}")
        if self.tasks_after != self.tasks_before:
            out.append(f"task count {self.tasks_before} before, {self.tasks_after} after")
        return out


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc), 0 where unavailable."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def task_count() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(child) for nursery in task.child_nurseries for child in nursery.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return walk(root)


async def consume(consumer: Consumer, report: SoakReport, scanner: SecretScanner) -> None:
    """Read one subscription until it ends, checking what arrives."""
    sub = consumer.sub
    assert sub is not None
    try:
        while True:
            now = trio.current_time()
            if consumer.stalled_until > now:
                await trio.sleep(consumer.stalled_until - now)
            batch: list[Event] = await sub.receive_batch()
            held = sub.symbols
            consumer.events += len(batch)
            for event in batch:
                if isinstance(event, Tick):
                    consumer.consumed += 1
                    if event.symbol not in held:
                        consumer.foreign += 1
                else:
                    report.events_scanned += 1
                    scanner.check(repr(event), f"event {type(event).__name__}")
            if consumer.delay:
                await trio.sleep(consumer.delay)
    except TradingWsError as exc:
        scanner.check(str(exc) + repr(exc), "error")
        raise


def check_accounting(consumer: Consumer) -> bool:
    sub = consumer.sub
    assert sub is not None
    q = sub.statistics().queue
    return q.received == consumer.events + q.dropped + q.conflated + q.depth + q.discarded


@attrs.define
class Target:
    """One broker of the soak: its simulator's fault knobs and the manager's configuration."""

    name: str
    broker: BrokerConfig
    symbols: list[str]
    faults: Mapping[str, Callable[[random.Random], Awaitable[None]]]


class RemoteSimulators:
    """Both simulators, running in a child process so that the soak's memory figures are the
    client's alone; their fault knobs are driven by one command per line on the child's stdin
    (see `serve_simulators`), each answered by ``ok``."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self._stdin = process.stdin
        self.lines = Lines(process.stdout)
        self._lock = trio.Lock()

    async def command(self, *words: object) -> None:
        """Send one knob command (``kite drop``, ``xts garbage 3``...) and wait for the answer."""
        async with self._lock:
            await self._stdin.send_all((" ".join(map(str, words)) + "\n").encode())
            answer = await self.lines.readline()
        if answer != "ok":
            raise RuntimeError(f"the simulator process answered {answer!r} to {words}")

    async def silence(self, broker: str, rng: random.Random) -> None:
        await self.command(broker, "silent", 1)
        await trio.sleep(rng.uniform(1.0, 7.0))
        await self.command(broker, "silent", 0)


@asynccontextmanager
async def open_simulators(
    seed: int, tick_interval: float
) -> AsyncIterator[tuple[RemoteSimulators, str, str]]:
    """Start `serve_simulators` in a child process; yield it with the Kite and XTS URLs."""
    process = await trio.lowlevel.open_process(
        [
            sys.executable,
            __file__,
            "--serve-simulators",
            "--seed",
            str(seed),
            "--tick-interval",
            str(tick_interval),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        sims = RemoteSimulators(process)
        with trio.fail_after(30):
            kite_url, xts_url = (await sims.lines.readline()).split()
        yield sims, kite_url, xts_url
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            assert process.stdin is not None
            await process.stdin.aclose()  # end of input: the child stops its simulators and exits
            await process.wait()
        await reap(process)


async def serve_simulators(seed: int, tick_interval: float) -> None:
    """The child's side of `open_simulators`: serve both simulators on loopback, print their URLs on
    one line, then apply knob commands read from stdin until it ends."""
    kite = KiteSimulator(tick_interval=tick_interval, seed=seed)
    # EIO3 liveness within the soak's 5 s: a ping every second, a pong due within a second (+1 s slack).
    xts = XtsSimulator(tick_interval=tick_interval, seed=seed, ping_interval=1.0, ping_timeout=1.0)

    def set_kite_token(token: str) -> None:
        kite.access_token = token

    knobs: dict[tuple[str, str], Callable[[list[str]], object]] = {
        ("kite", "drop"): lambda _: kite.drop_connections(),
        ("kite", "silent"): lambda a: kite.go_silent(a[0] == "1"),
        ("kite", "garbage"): lambda a: kite.send_garbage(int(a[0])),
        ("kite", "reject"): lambda a: kite.reject_next(int(a[0]), int(a[1])),
        ("kite", "token"): lambda a: set_kite_token(a[0]),
        ("xts", "drop"): lambda _: xts.drop_connections(),
        ("xts", "silent"): lambda a: xts.go_silent(a[0] == "1"),
        ("xts", "garbage"): lambda a: xts.send_garbage(int(a[0])),
        ("xts", "expire"): lambda _: xts.expire_tokens(),
        ("xts", "reject_login"): lambda a: xts.reject_next_login(int(a[0]), int(a[1])),
    }
    commands = Lines(trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())))
    async with trio.open_nursery() as nursery:
        kite_url = await nursery.start(kite.serve)
        xts_url = await nursery.start(xts.serve)
        print(kite_url, xts_url, flush=True)
        while True:
            try:
                line = await commands.readline()
            except EOFError:
                break
            try:
                broker, knob, *args = line.split()
                knobs[broker, knob](args)
            except (KeyError, ValueError, IndexError) as exc:  # a harness bug: say so, keep serving
                print(f"error: {exc!r} in {line!r}", flush=True)
            else:
                print("ok", flush=True)
        nursery.cancel_scope.cancel()


def kite_target(sims: RemoteSimulators, url: str, tokens: set[str]) -> Target:
    """Kite: three connections (six instruments each), a token provider for the daily rollover."""
    current = DEMO_ACCESS_TOKEN

    async def provider() -> str:
        return current

    async def token_expired(rng: random.Random) -> None:
        nonlocal current
        current = f"token-{rng.getrandbits(64):016x}"
        tokens.add(current)
        await sims.command("kite", "token", current)
        await sims.command("kite", "drop")

    async def rate_limited(rng: random.Random) -> None:
        await sims.command("kite", "reject", 429, rng.randint(1, 3))
        await sims.command("kite", "drop")

    async def drop(rng: random.Random) -> None:
        await sims.command("kite", "drop")

    async def garbage(rng: random.Random) -> None:
        await sims.command("kite", "garbage", rng.randint(1, 5))

    broker = KiteBroker(
        DEMO_API_KEY,
        DEMO_ACCESS_TOKEN,
        url=url,
        instruments=kite_instruments_csv(),
        token_provider=provider,
        backoff=BACKOFF,
        watchdog_timeout=WATCHDOG,
        rate_limit=RateLimit(rate=200, burst=50),
        max_instruments_per_connection=6,  # the universe spreads over three connections
    )
    faults = {
        "drop": drop,
        "silence": lambda rng: sims.silence("kite", rng),
        "garbage": garbage,
        "rate_limited": rate_limited,
        "token_expired": token_expired,
    }
    return Target("kite", broker, [i.symbol for i in UNIVERSE], faults)


async def xts_target(sims: RemoteSimulators, url: str) -> Target:
    """XTS: one session; an expired token means one new login (and a resubscribe)."""

    async def drop(rng: random.Random) -> None:
        await sims.command("xts", "drop")

    async def garbage(rng: random.Random) -> None:
        await sims.command("xts", "garbage", rng.randint(1, 5))

    async def token_expired(rng: random.Random) -> None:
        await sims.command("xts", "expire")
        await sims.command("xts", "drop")

    async def rate_limited(rng: random.Random) -> None:
        await sims.command("xts", "reject_login", 429, rng.randint(1, 2))
        await sims.command("xts", "expire")
        await sims.command("xts", "drop")

    broker = XtsBroker(
        DEMO_APP_KEY,
        DEMO_SECRET_KEY,
        url,
        backoff=BACKOFF,
        ping_timeout_slack=1.0,
        rate_limit=RateLimit(rate=200, burst=50),
    )
    symbols = sorted(await broker.load_instruments())
    faults = {
        "drop": drop,
        "silence": lambda rng: sims.silence("xts", rng),
        "garbage": garbage,
        "rate_limited": rate_limited,
        "token_expired": token_expired,
    }
    return Target("xts", broker, symbols, faults)


async def run_soak(
    seconds: float,
    *,
    seed: int = 1,
    consumers: int = 12,
    tick_interval: float = 0.05,
    progress: Callable[[str], None] | None = None,
) -> SoakReport:
    """Run the soak for `seconds` and return its report (see the module docstring)."""
    rng = random.Random(seed)
    report = SoakReport(seconds=seconds, seed=seed, warmup=seconds * 0.2)
    tokens = {DEMO_ACCESS_TOKEN, DEMO_SECRET_KEY}
    scanner = SecretScanner(lambda: tokens)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(scanner)
    root.setLevel(logging.DEBUG)
    try:
        async with open_simulators(seed, tick_interval) as (sims, kite_url, xts_url):
            targets = [kite_target(sims, kite_url, tokens), await xts_target(sims, xts_url)]
            report.tasks_before = task_count()
            await _soak(report, rng, targets, consumers, scanner, progress)
            with trio.fail_after(10):
                while task_count() != report.tasks_before:  # noqa: ASYNC110  (tasks winding down)
                    await trio.sleep(0.05)
            report.tasks_after = task_count()
    except trio.TooSlowError:
        report.tasks_after = task_count()
    finally:
        root.removeHandler(scanner)
        root.setLevel(old_level)
    report.log_records = scanner.records
    report.secret_leaks = scanner.leaks
    return report


async def _soak(
    report: SoakReport,
    rng: random.Random,
    targets: list[Target],
    count: int,
    scanner: SecretScanner,
    progress: Callable[[str], None] | None,
) -> None:
    policies = [Overflow.BLOCK, Overflow.DROP_OLDEST, Overflow.DROP_NEWEST, Overflow.CONFLATE]
    people = []
    for i in range(count):
        target = targets[i % len(targets)]
        policy = policies[(i // len(targets)) % 4]
        people.append(
            Consumer(
                name=f"user{i}",
                broker=target.name,
                universe=target.symbols,
                symbols=set(rng.sample(target.symbols, rng.randint(2, 6))),
                mode=rng.choice(list(Mode)),
                overflow=policy,
                delay=0.0 if policy is Overflow.BLOCK else rng.choice([0.0, 0.05, 0.3]),
            )
        )
    started = trio.current_time()
    end = started + report.seconds
    async with open_market_data(*(t.broker for t in targets)) as md, trio.open_nursery() as nursery:

        async def serve_consumer(consumer: Consumer, task_status: trio.TaskStatus[None]) -> None:
            buffer = 50_000 if consumer.overflow is Overflow.BLOCK else 200
            async with md.subscribe(
                sorted(consumer.symbols),
                mode=consumer.mode,
                broker=consumer.broker,
                user_id=consumer.name,
                overflow=consumer.overflow,
                buffer=buffer,
            ) as sub:
                consumer.sub = sub
                consumer.consumed = consumer.events = 0
                task_status.started()
                try:
                    await consume(consumer, report, scanner)
                finally:
                    if not check_accounting(consumer):
                        report.accounting_errors += 1
                    report.foreign_ticks += consumer.foreign
                    consumer.foreign = 0
                    report.ticks_consumed += consumer.consumed
                    report.dropped += sub.statistics().queue.dropped

        scopes: dict[str, trio.CancelScope] = {}

        async def run_consumer(consumer: Consumer, task_status: trio.TaskStatus[None]) -> None:
            with trio.CancelScope() as scope:
                scopes[consumer.name] = scope
                await serve_consumer(consumer, task_status=task_status)

        for consumer in people:
            await nursery.start(run_consumer, consumer)
        sample_at = 0.0
        # Every kind once first (in a seeded order), so that even a short run exercises them all.
        opening = rng.sample(FAULT_KINDS, len(FAULT_KINDS))
        while trio.current_time() < end:
            now = trio.current_time()
            if now >= sample_at:
                report.rss_samples.append((now - started, rss_bytes()))
                report.block_samples.append((now - started, sys.getallocatedblocks()))
                sample_at = now + 1.0
            kind = opening.pop() if opening else rng.choices(FAULT_KINDS, FAULT_WEIGHTS)[0]
            target = rng.choice(targets)
            if kind == "stall":
                victim = rng.choice([p for p in people if p.overflow is not Overflow.BLOCK])
                victim.stalled_until = trio.current_time() + rng.uniform(0.5, 3.0)
                label = kind
            elif kind == "churn":
                await _churn(rng, rng.choice(people), nursery, run_consumer, scopes)
                label = kind
            else:
                await target.faults[kind](rng)
                label = f"{target.name}:{kind}"
            fault_end = trio.current_time()
            report.faults[label] += 1
            resumed = await _wait_flowing(people, fault_end, RECOVERY_LIMIT)
            if resumed is None:
                report.failures.append(
                    f"{label} at {fault_end - started:.1f} s: not flowing again within {RECOVERY_LIMIT} s"
                )
            else:
                report.recovered += 1
                report.resume_times.append(resumed)
            if progress is not None and report.total_faults % 50 == 0:
                progress(
                    f"{trio.current_time() - started:6.0f} s  faults={report.total_faults} "
                    f"failures={len(report.failures)} rss={rss_bytes() / 2**20:.1f} MiB"
                )
            await trio.sleep(rng.uniform(0.05, 0.3))
        stats = md.statistics()
        report.reconnects = sum(c.reconnects for b in stats.brokers for c in b.connections)
        report.ticks_in = stats.ticks_in
        nursery.cancel_scope.cancel()


async def _churn(
    rng: random.Random,
    consumer: Consumer,
    nursery: trio.Nursery,
    run_consumer: Callable[..., Awaitable[object]],
    scopes: dict[str, trio.CancelScope],
) -> None:
    """Add or remove a symbol of a running subscription, or leave and subscribe again."""
    sub = consumer.sub
    if rng.random() < 0.5 and sub is not None:
        extra = rng.choice(consumer.universe)
        held = sorted(sub.symbols)
        if extra not in held:
            await sub.add([extra])
            consumer.symbols.add(extra)
        elif len(held) > 1:
            await sub.remove([extra])
            consumer.symbols.discard(extra)
    else:
        scopes[consumer.name].cancel()  # leave, then come back with the same symbols
        await trio.sleep(0.01)
        consumer.generation += 1
        await nursery.start(run_consumer, consumer)


async def _wait_flowing(people: list[Consumer], since: float, limit: float) -> float | None:
    """Seconds until every subscription has been offered a tick after `since`, or None past `limit`."""
    with trio.move_on_after(limit):
        while True:
            waiting = [
                p
                for p in people
                if p.sub is None or p.sub.last_tick_at is None or p.sub.last_tick_at <= since
            ]
            if not waiting:
                return trio.current_time() - since
            await trio.sleep(0.01)
    return None


def render_section(report: SoakReport) -> str:
    """The "Last long run" section of docs/reliability.md, from a report (the rest of the page is written
    by hand and kept as it is: see `update_docs`)."""
    rss = [r for _, r in report.rss_samples]
    lines = [
        "## Last long run",
        "",
        f"- Duration: {report.seconds / 60:.1f} min, seed {report.seed}.",
        f"- Faults injected: **{report.total_faults}**, recovered: **{report.recovered}**, "
        f"failures: **{len(report.failures)}**.",
        "",
        "| fault | injected |",
        "|---|---:|",
        *[f"| {label} | {n} |" for label, n in sorted(report.faults.items())],
        "",
        f"- Reconnects: {report.reconnects}.",
        f"- Time for every subscription to be offered ticks again after a fault: p50 "
        f"{report.percentile(0.5) * 1000:.0f} ms, p99 {report.percentile(0.99) * 1000:.0f} ms, "
        f"max {max(report.resume_times, default=math.nan) * 1000:.0f} ms (silences count from the "
        "moment the broker speaks again; the watchdog's own 5 s are part of the silence).",
        f"- Ticks received {report.ticks_in:,}; consumed by subscribers {report.ticks_consumed:,}; "
        f"dropped by overflow policies {report.dropped:,} (every drop accounted for: "
        f"{report.accounting_errors} mismatches).",
        f"- Ticks for a symbol the subscriber did not hold: {report.foreign_ticks}.",
        f"- Secrets: {report.log_records:,} log records of the client process (DEBUG and up, every "
        f"logger) and {report.events_scanned:,} status events and errors scanned for every access token "
        f"used; leaks found: {len(report.secret_leaks)}.",
        f"- Tasks: {report.tasks_before} before the manager, {report.tasks_after} after it exited.",
    ]
    if rss:
        lines.append(
            f"- Resident memory: {rss[0] / 2**20:.1f} MiB at start, "
            f"{min(rss) / 2**20:.1f}-{max(rss) / 2**20:.1f} MiB over the run; growth after the "
            f"{report.warmup:.0f} s warm-up: {report.rss_growth() * 100:.1f} % (limit 5 %): the "
            "largest sample after warm-up against the first, for the client process alone (the "
            "simulators run in a child process)."
        )
    if report.block_samples:
        first, last, change = report.heap_change()
        lines.append(
            "- Python heap (allocated blocks, `sys.getallocatedblocks()`), median of the first and the "
            f"last 30 one-second samples after warm-up: {first:,.0f} and {last:,.0f} "
            f"({change * 100:+.1f} %). Leaked objects would show here; the allocator's fragmentation "
            "shows only in resident memory."
        )
    if report.failures:
        lines += ["", "### Failures", "", *[f"- {f}" for f in report.failures]]
    lines.append("")
    return "\n".join(lines)


def update_docs(path: Path, section: str, command: str) -> str:
    """`path`'s text with its "## Last long run" section replaced by `section` (up to the next ``## ``
    heading) and the regeneration command refreshed; everything else stays as written."""
    text = path.read_text()
    start = text.index("## Last long run")
    end = text.find("\n## ", start + 1)
    end = len(text) if end < 0 else end + 1
    text = text[:start] + section.rstrip("\n") + "\n\n" + text[end:]
    fence = text.index("```sh\n") + len("```sh\n")
    return text[:fence] + command + text[text.index("\n```", fence) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write-docs", action="store_true", help="rewrite docs/reliability.md")
    parser.add_argument("--tick-interval", type=float, default=0.05)
    parser.add_argument(
        "--serve-simulators", action="store_true", help="be the simulators' child process (internal)"
    )
    args = parser.parse_args(argv)
    if args.serve_simulators:
        trio.run(serve_simulators, args.seed, args.tick_interval)
        return 0
    started = time.monotonic()
    report = trio.run(
        lambda: run_soak(
            args.minutes * 60,
            seed=args.seed,
            tick_interval=args.tick_interval,
            progress=lambda s: print(s, flush=True),
        )
    )
    print(f"done in {time.monotonic() - started:.0f} s")
    problems = report.problems()
    if report.seconds >= 300 and report.rss_growth() > 0.05:
        problems.append(f"resident memory grew {report.rss_growth() * 100:.1f} % after warm-up")
    if report.seconds >= 300 and report.heap_change()[2] > 0.05:
        problems.append(f"the Python heap grew {report.heap_change()[2] * 100:.1f} % after warm-up")
    command = f"nox -s soak  # python tests/soak_harness.py --minutes {args.minutes:g} --write-docs"
    section = render_section(report)
    print(section)
    if args.write_docs:
        path = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
        path.write_text(update_docs(path, section, command))
    for problem in problems:
        print("PROBLEM:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
