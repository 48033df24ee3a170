"""What a consumer of the manager holds: `Subscription` (market data) and `OrderUpdates` (order updates).

A `Subscription` is a view of one `SubscriberState` (the record the ledger and the router share) plus the
consumer's side of its queue; its changes go to the manager through the `change` callable it was given.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence

import trio

from ._errors import ConfigurationError, FeedClosedError
from ._fanout import Overflow, SlowConsumerError, SubscriberQueue
from ._ledger import SubscriberState
from ._model import Event, Gap, Mode, OrderUpdate, coerce_mode
from ._stats import SubscriptionStatistics

__all__ = ["OrderUpdates", "Subscription", "check_symbols"]

#: Applies one change of a subscription: (symbols to add, symbols to remove, the mode from now on, or None
#: to keep the mode it has when the change is applied: read under the broker's lock, never before it).
ChangeFn = Callable[[Sequence[str], Sequence[str], Mode | None], Awaitable[None]]


def check_symbols(symbols: object, what: str = "symbols") -> list[str]:
    """`symbols` as a list without repeats, or ConfigurationError: it must be an iterable of str."""
    if isinstance(symbols, (str, bytes, bytearray)):
        raise ConfigurationError(
            f"{what} must be an iterable of str, not a bare string: write [{symbols!r:.40}]"
        )
    try:
        items = list(symbols)  # type: ignore[call-overload]
    except TypeError:
        raise ConfigurationError(f"{what} must be an iterable of str, got {type(symbols).__name__}") from None
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(f"{what} must all be str, got {item!r:.40}")
    return list(dict.fromkeys(items))


class Subscription:
    """A live subscription: an async iterator of events for its symbols (see `MarketData.subscribe`).

    Yields `Tick` objects (shared with other subscribers: treat them as read-only) and the status events
    of the connections carrying its symbols (`Connected`, `Disconnected`, `Reconnecting`,
    `Resubscribed`, `Gap`, `Stale`), and other per-instrument or per-connection broker events; never
    `OrderUpdate` (see `MarketData.order_updates`). Ends with `SlowConsumerError` (``Overflow.BLOCK``
    overflowed), the broker's terminal error (its credentials were refused for good), or
    `FeedClosedError` after the ``async with`` block or the manager ended.

    Iterating is atomic with respect to cancellation: a cancelled ``__anext__`` or `receive_batch` took
    nothing from the subscription's queue.
    """

    _ids = itertools.count(1)

    def __init__(
        self,
        state: SubscriberState,
        queue: SubscriberQueue,
        change: ChangeFn,
        *,
        broker: str,
        user_id: str | None,
        overflow: Overflow,
    ) -> None:
        self.id = next(self._ids)
        self.user_id = user_id
        self._state = state
        self._queue = queue
        self._change = change
        self._broker = broker
        self._overflow = overflow
        self._ready = trio.Event()
        state.notify = self._update_ready
        queue.on_close = self._wake_on_end

    def __repr__(self) -> str:
        return (
            f"<Subscription #{self.id} user={self.user_id!r} broker={self._broker!r} "
            f"mode={self._state.mode.value} symbols={len(self._state.keys)}>"
        )

    @property
    def mode(self) -> Mode:
        """The mode this subscription receives ticks in (richer ticks are reduced to it)."""
        return self._state.mode

    @property
    def symbols(self) -> frozenset[str]:
        """The symbols held now (including those of a change in progress, until it is undone)."""
        return frozenset(self._state.keys.values())

    @property
    def last_tick_at(self) -> float | None:
        """When this subscription last received a tick (trio clock), None before the first."""
        return self._state.last_tick_at

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    def __anext__(self) -> Awaitable[Event]:
        """The next event; checkpoints at least once per 256 events.

        Returns the queue's own coroutine: one coroutine frame per event instead of two.

        Cancellation: if cancelled, nothing was taken from the queue.
        """
        return self._queue.get()

    async def receive_batch(self) -> list[Event]:
        """Everything pending (waiting for at least one event): the cheapest way to keep up.

        Cancellation: if cancelled, nothing was taken from the queue.

        Raises:
            SlowConsumerError, the broker's terminal error, or FeedClosedError, as the iterator does.
        """
        return await self._queue.get_batch()

    async def add(self, symbols: Iterable[str]) -> None:
        """Start receiving `symbols` too (in this subscription's mode).

        Returns once every new instrument is subscribed upstream (its first tick may come later: see
        `wait_ready`). Blocks while another change for the same broker is in progress, for the broker's
        rate limiter, and, if the instruments need one, while a new connection opens.

        Cancellation: all or nothing. If cancelled (or failing), the subscription holds exactly what it
        held before: ticks of the new symbols that arrived in the meantime and are still queued are
        discarded (counted in ``statistics().queue.discarded``), and an upstream request it had already
        completed is undone in the background. A connection it opened stays open for later use.

        Raises:
            ConfigurationError: `symbols` is not an iterable of str (a bare string included).
            UnknownSymbolError: some symbols are unknown; nothing is added.
            SubscriptionLimitError: the broker's connections cannot hold them; nothing is added.
            AuthenticationError, ConnectError: a connection was needed and could not be opened, or the
                connection failed while the request was made; nothing is added.
            SubscriptionError: the broker refused the request; nothing is added.
            FeedClosedError: the subscription has ended.
        """
        wanted = check_symbols(symbols)
        await self._change(wanted, (), None)  # the mode is read under the lock

    async def remove(self, symbols: Iterable[str]) -> None:
        """Stop receiving `symbols`; their ticks still queued are discarded (counted in
        ``statistics().queue.discarded``), so no tick of a symbol no longer held is ever delivered.
        Unknown or unheld symbols are ignored. The upstream unsubscribe (when no other subscription
        holds the instrument) is made before this returns; blocks while another change for the same
        broker is in progress, and for the broker's rate limiter.

        Cancellation: if cancelled while waiting for another change, nothing was removed. Past that
        point the removal is applied at once, in full: a cancellation during the upstream unsubscribe
        that follows leaves the symbols removed, and the unsubscribe is completed in the background.

        Raises:
            ConfigurationError: `symbols` is not an iterable of str (a bare string included).
            FeedClosedError: the subscription has ended.
        """
        gone = check_symbols(symbols)
        await self._change((), gone, None)

    async def set_mode(self, mode: Mode | str) -> None:
        """Receive all symbols in `mode` (a `Mode`, or ``"ltp"``, ``"quote"``, ``"full"``) from now on,
        upgrading the upstream subscription if needed, downgrading it when no other subscriber needs
        more. Blocks as `add` does.

        Cancellation: an upgrade is all or nothing, as `add`: if cancelled, the mode is unchanged (ticks
        of the richer mode already queued stay queued). A downgrade is applied at once once no other
        change is in progress (if cancelled before, nothing changed): a cancellation during the upstream
        request that follows leaves the new mode in force, and the request is completed in the
        background.

        Raises:
            ConfigurationError: `mode` is not a mode.
            AuthenticationError, ConnectError, SubscriptionError: as for `add`; the mode is unchanged.
            FeedClosedError: the subscription has ended.
        """
        new = coerce_mode(mode)
        await self._change((), (), new)

    async def wait_ready(self) -> None:
        """Wait until every symbol held has delivered its first tick (a snapshot counts).

        Blocks until then; the caller owns the timeout (``with trio.fail_after(5): await
        sub.wait_ready()``). Symbols added later are waited for as well. Always checkpoints.

        Once the subscription has ended (its connection failed for good, it overflowed with
        ``Overflow.BLOCK``, its ``async with`` block was left, or the manager closed), it can never
        become ready: `wait_ready` raises at once, and a call waiting when it ends wakes up and raises,
        whether or not it had been ready before (events still queued can be read: the iterator and
        `receive_batch` raise the same error only after them).

        Cancellation: only waits; cancelling it changes nothing.

        Raises:
            SlowConsumerError, the connection's terminal error (e.g. `AuthenticationError`), or
            FeedClosedError: the subscription has ended, with the error its iterator ends with.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        queue = self._queue
        parked = False
        while True:
            queue.raise_if_closed()
            ready = self._ready
            if ready.is_set():
                break
            await ready.wait()  # set when ready, and when the subscription ends
            parked = True
        if not parked:
            await trio.lowlevel.cancel_shielded_checkpoint()

    def statistics(self) -> SubscriptionStatistics:
        """This subscription's counters. Does not block."""
        last = self._state.last_tick_at
        return SubscriptionStatistics(
            symbols=len(self._state.keys),
            mode=self._state.mode,
            overflow=self._overflow,
            queue=self._queue.statistics(),
            last_tick_age=None if last is None else trio.current_time() - last,
        )

    def _wake_on_end(self) -> None:
        """The queue's end hook: wake `wait_ready` (it then raises the queue's error)."""
        self._ready.set()

    def _update_ready(self) -> None:
        """The state's readiness hook: set the ready event once nothing is waiting for a first tick, and
        replace it when something is again."""
        waiting = self._state.waiting
        if not waiting and not self._ready.is_set():
            self._ready.set()
        elif waiting and self._ready.is_set():
            self._ready = trio.Event()


class OrderUpdates:
    """The order updates of one broker, each delivered once: an async iterator (see
    `MarketData.order_updates`).

    Yields `OrderUpdate` for every distinct update the broker pushes, on whichever of its connections it
    arrives first (the copies the other connections deliver are skipped), and `Gap` (with no symbols)
    when a span ends during which none of the broker's connections was up: updates of that span may
    have been missed, and the broker does not send them again, so fetch the order book to catch up.

    Ends, once what is queued has been read, with `SlowConsumerError` when `buffer` events were waiting
    unread (never silently skipping one), the broker's terminal error when its last connection failed
    for good, or `FeedClosedError` after the ``async with`` block or the manager ended.
    """

    def __init__(self, broker: str, buffer: int) -> None:
        self.broker = broker
        """The name of the configured broker the updates come from."""
        self._capacity = buffer
        self._events: deque[OrderUpdate | Gap] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False
        self._error: BaseException | None = None
        self._since = time.time()

    def __repr__(self) -> str:
        return f"<OrderUpdates broker={self.broker!r} pending={len(self._events)}>"

    def __aiter__(self) -> AsyncIterator[OrderUpdate | Gap]:
        return self

    async def __anext__(self) -> OrderUpdate | Gap:
        """As `receive`."""
        return await self.receive()

    async def receive(self) -> OrderUpdate | Gap:
        """The next order update (or gap), waiting for one. Always checkpoints.

        Cancellation: if cancelled, nothing was taken.

        Raises:
            SlowConsumerError, the broker's terminal error, or FeedClosedError, once nothing is pending
            (see the class).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._events:
            await trio.lowlevel.cancel_shielded_checkpoint()
        while not self._events:
            if self._closed:
                if self._error is not None:
                    raise self._error
                raise FeedClosedError("the order update stream is closed")
            await self._lot.park()
        return self._events.popleft()

    def _put(self, event: OrderUpdate | Gap) -> None:
        if self._closed:
            return
        if len(self._events) >= self._capacity:
            self._close(
                SlowConsumerError(
                    f"order updates of broker {self.broker!r}: {self._capacity} were waiting unread; "
                    "the stream ended rather than skip one",
                    1,
                )
            )
            return
        self._events.append(event)
        self._lot.unpark()

    def _close(self, error: BaseException | None = None) -> None:
        if not self._closed:
            self._closed = True
            self._error = error
            self._lot.unpark_all()
