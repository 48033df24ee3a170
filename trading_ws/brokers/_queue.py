"""The hand-off between a broker feed's reader task and its consumer."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import trio

from .._model import Event

logger = logging.getLogger("trading_ws")

#: A synchronous consumer of batches, called in the feed's reader task (see `BatchQueue`).
Sink = Callable[[list[Event]], None]


class BatchQueue:
    """A FIFO of event batches between a feed's reader task and its consumer.

    `put` waits while `bound` batches wait (backpressure on the socket reader); `put_nowait` never waits
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

    __slots__ = ("_bound", "_error", "_items", "_readers", "_sink", "_writers", "closed")

    def __init__(self, bound: int, sink: Sink | None = None) -> None:
        self._items: deque[list[Event]] = deque()
        self._bound = bound
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
        return len(self._items) >= self._bound

    def put_nowait(self, batch: list[Event]) -> None:
        """Queue `batch` (or hand it to the sink); does nothing once closed. Never blocks."""
        if not self.closed:
            sink = self._sink
            if sink is not None:
                try:
                    sink(batch)
                except Exception as exc:  # the consumer's bug: end the hand-off, `get` raises it
                    logger.error("a feed's sink raised; its later batches are dropped", exc_info=exc)
                    self._error = exc
                    self.close()
            else:
                self._items.append(batch)
                self._readers.unpark()

    async def put(self, batch: list[Event]) -> None:
        """Queue `batch`, waiting while the queue is full (until a `get` or `close`)."""
        while len(self._items) >= self._bound and not self.closed:
            await self._writers.park()
        self.put_nowait(batch)

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
        self._writers.unpark()
        if not parked:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return batch

    def close(self, discard: bool = False) -> None:
        """End the queue: `get` drains what is queued (nothing, with `discard`), then raises
        `trio.EndOfChannel`; waiting writers wake up and their batches are dropped."""
        self.closed = True
        if discard:
            self._items.clear()
        self._readers.unpark_all()
        self._writers.unpark_all()
