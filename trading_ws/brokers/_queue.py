"""The hand-off between a broker feed's reader task and its consumer."""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import NoReturn, TypeVar

import trio
import trio_websocket

from .._backoff import Backoff
from .._errors import AuthenticationError, FeedClosedError
from .._model import Broker, Event
from .._scrub import forget_secret, remember_secret
from .._transport import open_service_nursery
from ._reconnect import ReconnectPolicy, SupervisorState, supervise

logger = logging.getLogger("trading_ws")

#: A synchronous consumer of batches, called where they are produced (see `BatchQueue`).
Sink = Callable[[list[Event]], None]


class BatchQueue:
    """A FIFO of event batches between a feed's reader task and its consumer, bounded in events.

    `put` waits while `bound` events (or more) wait (backpressure on the socket reader; a batch is never
    split, so at most `bound` events plus one batch are ever queued by `put`); `put_nowait` never waits
    (status events and snapshots: rare and small, and a subscribe call made by the consumer itself must not
    wait for the consumer). `get` hands out the oldest batch.

    With a `sink`, batches are not queued: `put_nowait` and `put` call ``sink(batch)`` at once, in the
    caller's task (the feed's reader; for an XTS subscribe answer's snapshots, the task that called
    ``subscribe``, which may hold locks), and `get` only waits for `close`. This spares a busy feed one task
    hop per frame. The sink must not block (it is a plain function) and must not call back into the feed. An
    `Exception` it raises (a bug in the consumer) ends the queue: later batches are dropped, and `get` raises
    that exception, so the consumer that awaits `get` learns of it and the feed's reader is not torn down
    mid-frame.
    """

    __slots__ = ("_bound", "_error", "_items", "_readers", "_sink", "_writers", "closed", "ticks")

    def __init__(self, bound: int, sink: Sink | None = None) -> None:
        self._items: deque[list[Event]] = deque()
        self._bound = bound
        self.ticks = 0
        """Events queued now."""
        self._readers = trio.lowlevel.ParkingLot()
        self._writers = trio.lowlevel.ParkingLot()
        self._sink = sink
        self._error: Exception | None = None
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        """Whether `put` would wait (never, with a sink)."""
        return self.ticks >= self._bound

    def put_nowait(self, batch: list[Event]) -> None:
        """Queue `batch` (or hand it to the sink); does nothing once closed. Never blocks."""
        if not self.closed:
            sink = self._sink
            if sink is not None:
                try:
                    sink(batch)
                except Exception as exc:  # the consumer's bug: end the hand-off, `get` raises it
                    # No traceback here: `get` raises the exception itself, traceback and all.
                    logger.error(
                        "a feed's sink raised %s: %s; its later batches are dropped", type(exc).__name__, exc
                    )
                    self._error = exc
                    self.close()
            else:
                self._items.append(batch)
                self.ticks += len(batch)
                self._readers.unpark()

    async def put(self, batch: list[Event]) -> None:
        """Queue `batch` (or hand it to the sink), waiting while the queue is full (until a `get` or
        `close`). Always a schedule point: the consumers run before the producer makes its next batch, so
        one batch's objects are alive at a time and the cyclic GC's young generation stays small (with
        two, a gen-0 collection cost about 0.3 µs per tick in the end-to-end benchmark)."""
        await trio.lowlevel.checkpoint_if_cancelled()  # cancelled: not queued (as a channel's send)
        parked = False
        while self.ticks >= self._bound and not self.closed:
            await self._writers.park()
            parked = True
        self.put_nowait(batch)
        if not parked:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def get(self) -> list[Event]:
        """The oldest batch. Always checkpoints.

        Raises:
            trio.EndOfChannel: closed, and nothing is left.
            Exception: whatever the sink raised, once it has (see the class).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        parked = False
        while not self._items:
            if self.closed:
                if self._error is not None:
                    raise self._error
                raise trio.EndOfChannel
            await self._readers.park()
            parked = True
        batch = self._items.popleft()
        self.ticks -= len(batch)
        self._writers.unpark()
        if not parked:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return batch

    def close(self, discard: bool = False) -> None:
        """End the queue: `get` drains what is queued (nothing, with `discard`), then raises
        `trio.EndOfChannel` (or the sink's exception); waiting writers wake up and their batches are
        dropped."""
        self.closed = True
        if discard:
            self._items.clear()
            self.ticks = 0
        self._readers.unpark_all()
        self._writers.unpark_all()


class BatchFeed:
    """What every broker feed shares: its hand-off queue, the batch and event iterators, the reconnect
    loop it runs under (`supervise`, as its `Connector`), and how it opens and ends (`run_feed`).

    A subclass calls `_init_feed` in its constructor and supplies one connection attempt
    (`_connect_once`), its renewal (`_can_renew`, `_renew_credentials`) and its secrets (`_scrub`).
    `_feed_name` names it in errors and logs.
    """

    _feed_name = "broker"
    _broker: Broker
    _log: logging.Logger

    def _init_feed(
        self,
        buffer: int,
        sink: Sink | None,
        *,
        backoff: Backoff,
        rng: random.Random | None,
        connection_id: int,
    ) -> None:
        self._queue = BatchQueue(buffer, sink)
        self._pending: deque[Event] = deque()
        self._failure: BaseException | None = None
        self._failure_seen = False
        self._closed = False
        self._backoff = backoff
        self._rng = rng if rng is not None else random.Random()
        self._connection_id = connection_id
        self._state = SupervisorState()
        self._ws: trio_websocket.WebSocketConnection | None = None
        self._remembered: list[str] = []
        self._nursery: trio.Nursery | None = None
        """The feed's service nursery while its block runs (for background work a request leaves)."""

    def _remember(self, secret: str | None) -> None:
        """Have `secret` scrubbed from third-party log records too, until the feed's block ends."""
        if secret and secret not in self._remembered:
            remember_secret(secret)
            self._remembered.append(secret)

    @property
    def connected(self) -> bool:
        """Whether the connection is up right now."""
        return self._ws is not None

    # The Connector protocol (see `supervise`); a subclass supplies the last four.

    @property
    def _closing(self) -> bool:
        return self._closed

    async def _connect_once(self, up: Callable[[], None]) -> NoReturn:
        raise NotImplementedError

    def _can_renew(self, error: AuthenticationError) -> bool:
        raise NotImplementedError

    async def _renew_credentials(self) -> None:
        raise NotImplementedError

    def _scrub(self, text: str) -> str:
        raise NotImplementedError

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, read, and reconnect until cancelled, under `supervise`; reports readiness after the
        first connection. Errors before it propagate (through ``nursery.start``); a later failure for good
        is recorded and raised to the consumer."""
        try:
            self._failure = await supervise(
                self,
                ReconnectPolicy(self._backoff, self._rng),
                broker=self._broker,
                connection_id=self._connection_id,
                emit=self._emit,
                log=self._log,
                state=self._state,
                task_status=task_status,
            )
        finally:
            self._ws = None
            self._queue.close()

    def _emit(self, event: Event) -> None:
        self._queue.put_nowait([event])

    async def receive_batch(self) -> list[Event]:
        """Wait for the next batch of events: one socket message's worth, the snapshots of a subscribe
        answer, or a status event. The cheapest way to consume a busy feed: one checkpoint per batch.

        With a sink (see the feed's opener), nothing is queued: this only waits for the feed to end.

        Raises:
            AuthenticationError, ConnectError: the feed failed for good (the error that ended it).
            FeedClosedError: the feed was closed.
            Exception: what the sink raised, if it did.
        """
        if self._pending:
            batch = list(self._pending)
            self._pending.clear()
            await trio.lowlevel.checkpoint()
            return batch
        try:
            return await self._queue.get()
        except trio.EndOfChannel:
            self._raise_end()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        """The next event. Checkpoints once per batch, not once per event. Raises as `receive_batch`."""
        pending = self._pending
        if not pending:
            try:
                pending.extend(await self._queue.get())
            except trio.EndOfChannel:
                self._raise_end()
        return pending.popleft()

    def _raise_end(self) -> NoReturn:
        if self._failure is not None:
            self._failure_seen = True
            raise self._failure
        raise FeedClosedError(f"the {self._feed_name} feed is closed")

    def _check_open(self) -> None:
        """Raise FeedClosedError if the feed has failed or is closed (before a subscription request)."""
        if self._failure is not None:
            raise FeedClosedError(f"the {self._feed_name} feed has failed") from self._failure
        if self._closed:
            raise FeedClosedError(f"the {self._feed_name} feed is closed")


_F = TypeVar("_F", bound=BatchFeed)


@asynccontextmanager
async def run_feed(feed: _F, leave: Callable[[], Awaitable[None]] | None = None) -> AsyncIterator[_F]:
    """Run `feed`'s connection loop for the block: entering waits for the first connection (its failure is
    raised here); leaving marks the feed closed, runs `leave` (a bounded goodbye to the broker, while the
    connection's tasks still run), stops the loop, and raises the feed's failure for good if the consumer
    never saw it."""
    try:
        async with open_service_nursery() as nursery:
            await nursery.start(feed._run)
            feed._nursery = nursery
            try:
                yield feed
            finally:
                feed._closed = True
                feed._nursery = None
                if leave is not None:
                    await leave()
                nursery.cancel_scope.cancel()
    finally:
        for secret in feed._remembered:
            forget_secret(secret)
        feed._remembered.clear()
    if feed._failure is not None and not feed._failure_seen:
        raise feed._failure
