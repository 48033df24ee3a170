"""An in-memory broker for the manager's tests, and the tests that it keeps the feed contract.

`FakeBroker` implements `BrokerConfig` and its connections `FakeFeed` implement `BrokerFeed`, with no
socket: a test can park any of the manager's await points (the master load, a connection's opening, a
subscribe or unsubscribe request) and cancel it there, make a request fail, and hand the manager batches
of events as a feed's reader would. A feed's request is atomic, as the real feeds' are: it waits for the
broker's rate limiter, then for its gate, and records its effect only once nothing is left to wait for (a
cancelled request records nothing; a completed one records everything).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Hashable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import trio
import trio.testing

from trading_ws import Broker, Connected, Disconnected, Event, FeedClosedError, Mode, RateLimit, Tick
from trading_ws._model import coerce_mode
from trading_ws._ratelimit import TokenBucket
from trading_ws.brokers._interface import BrokerConfig, BrokerFeed, InstrumentInfo
from trading_ws.brokers._queue import Sink

#: Symbols of the fake master: "NSE:A" is token 1, "NSE:B" token 2, ...
SYMBOLS = tuple(f"NSE:{chr(ord('A') + n)}" for n in range(12))
TOKENS = {symbol: n + 1 for n, symbol in enumerate(SYMBOLS)}


def tick(symbol: str, mode: Mode = Mode.FULL, price: float = 100.0) -> Tick:
    """A tick of `symbol` as a feed would decode it (segment 1, routed by token)."""
    return Tick(Broker.KITE, TOKENS[symbol], mode, True, price, 1, price, 10, segment=1)


class FakeFeed:
    """`BrokerFeed`: one connection of a `FakeBroker`.

    `subscriptions` is what it holds (key -> mode), changed only by completed requests; `requests` lists
    the completed ones in order. `emit` hands a batch to the manager's sink, as the reader task would.
    """

    def __init__(self, broker: FakeBroker, index: int, limiter: TokenBucket, sink: Sink | None) -> None:
        self.broker = broker
        self.index = index
        self.limiter = limiter
        self.sink = sink
        self.subscriptions: dict[Hashable, Mode] = {}
        self.requests: list[tuple[str, tuple[Hashable, ...], Mode | None]] = []
        self.up = True
        self.failure: BaseException | None = None
        self.closed = False
        self._lot = trio.lowlevel.ParkingLot()

    @property
    def connected(self) -> bool:
        return self.up and self.failure is None and not self.closed

    def _check_open(self) -> None:
        if self.closed or self.failure is not None:
            raise FeedClosedError("the fake feed is closed") from self.failure

    async def subscribe(self, keys: Iterable[Hashable], mode: Mode) -> None:
        wanted = list(keys)
        mode = coerce_mode(mode)
        self._check_open()
        await self.limiter.acquire()
        await self.broker.gate("subscribe")
        self._check_open()
        for key in wanted:
            self.subscriptions[key] = mode
        self.requests.append(("subscribe", tuple(wanted), mode))

    async def unsubscribe(self, keys: Iterable[Hashable]) -> None:
        gone = list(keys)
        self._check_open()
        await self.limiter.acquire()
        await self.broker.gate("unsubscribe")
        self._check_open()
        for key in gone:
            self.subscriptions.pop(key, None)
        self.requests.append(("unsubscribe", tuple(gone), None))

    async def receive_batch(self) -> list[Event]:
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self.closed and self.failure is None:
            await self._lot.park()
        if self.failure is not None:
            raise self.failure
        raise FeedClosedError("the fake feed is closed")

    def emit(self, *events: Event) -> None:
        """Hand one frame's events to the manager, as the feed's reader task does."""
        assert self.sink is not None
        self.sink(list(events))

    def drop(self) -> None:
        """The connection is lost (it will come back with `restore`)."""
        self.up = False
        self.emit(Disconnected(self.broker.broker, self.index, "dropped by the test", time.time()))

    def restore(self) -> None:
        self.up = True
        self.emit(Connected(self.broker.broker, self.index, time.time()))

    def fail(self, error: BaseException) -> None:
        """The connection fails for good with `error`."""
        self.failure = error
        self._lot.unpark_all()


class FakeBroker:
    """`BrokerConfig` with in-memory connections (`feeds`) and gates on every await point.

    ``hold(point)`` makes every later wait at `point` ("master", "connect", "subscribe", "unsubscribe")
    park until ``release(point)``; ``parked(point)`` is an event set once something waits there.
    ``fail_next(point, error)`` makes the next wait there raise `error`.
    """

    def __init__(
        self,
        *,
        name: str = "fake",
        broker: Broker = Broker.KITE,
        per_connection: int = 100,
        connections: int = 3,
        rate_limit: RateLimit | None = None,
    ) -> None:
        self._name = name
        self._broker = broker
        self._per_connection = per_connection
        self._connections = connections
        self._rate_limit = rate_limit or RateLimit(rate=1e6, burst=1000)
        self.feeds: list[FakeFeed] = []
        self.master_loads = 0
        self._held: set[str] = set()
        self._parked: dict[str, trio.Event] = {}
        self._errors: dict[str, BaseException] = {}
        self._lot = trio.lowlevel.ParkingLot()

    # ----------------------------------------------------------------------------- test controls

    def hold(self, point: str) -> None:
        self._held.add(point)
        self._parked[point] = trio.Event()

    def release(self, point: str) -> None:
        self._held.discard(point)
        self._lot.unpark_all()

    def parked(self, point: str) -> trio.Event:
        return self._parked.setdefault(point, trio.Event())

    def fail_next(self, point: str, error: BaseException) -> None:
        self._errors[point] = error

    async def gate(self, point: str) -> None:
        await trio.lowlevel.checkpoint()
        error = self._errors.pop(point, None)
        if error is not None:
            raise error
        while point in self._held:
            self.parked(point).set()
            await self._lot.park()

    def upstream(self) -> dict[Hashable, Mode]:
        """Everything subscribed on the open connections (key -> mode)."""
        merged: dict[Hashable, Mode] = {}
        for feed in self.feeds:
            if not feed.closed and feed.failure is None:
                merged.update(feed.subscriptions)
        return merged

    # ----------------------------------------------------------------------------- BrokerConfig

    @property
    def broker(self) -> Broker:
        return self._broker

    @property
    def name(self) -> str:
        return self._name

    @property
    def max_instruments_per_connection(self) -> int:
        return self._per_connection

    @property
    def max_connections(self) -> int:
        return self._connections

    @property
    def rate_limit(self) -> RateLimit:
        return self._rate_limit

    @property
    def keyed_by_segment(self) -> bool:
        return False

    async def load_instruments(self) -> Mapping[str, InstrumentInfo]:
        await self.gate("master")
        self.master_loads += 1
        return {s: InstrumentInfo(s, TOKENS[s], TOKENS[s], 1) for s in SYMBOLS}

    def open_feed(
        self, connection_id: int, limiter: TokenBucket, sink: Sink | None = None
    ) -> AbstractAsyncContextManager[BrokerFeed]:
        return self._open(connection_id, limiter, sink)

    @asynccontextmanager
    async def _open(self, index: int, limiter: TokenBucket, sink: Sink | None) -> AsyncIterator[BrokerFeed]:
        await limiter.acquire()
        await self.gate("connect")
        feed = FakeFeed(self, index, limiter, sink)
        self.feeds.append(feed)
        try:
            feed.emit(Connected(self._broker, index, time.time()))
            yield feed
        finally:
            feed.closed = True


_CHECK_PROTOCOLS: tuple[type[BrokerConfig], type[BrokerFeed]] = (FakeBroker, FakeFeed)  # mypy checks


# ---------------------------------------------------------------------------------------------------------
# The fake keeps the contract the manager relies on


async def test_a_fake_request_is_all_or_nothing() -> None:
    broker = FakeBroker()
    feed = FakeFeed(broker, 0, TokenBucket(broker.rate_limit), None)
    broker.hold("subscribe")
    with trio.move_on_after(0.01) as scope:
        await feed.subscribe([1, 2], Mode.FULL)
    assert scope.cancelled_caught
    assert feed.subscriptions == {}
    assert feed.requests == []
    broker.release("subscribe")
    await feed.subscribe([1, 2], Mode.FULL)
    assert feed.subscriptions == {1: Mode.FULL, 2: Mode.FULL}
    broker.fail_next("unsubscribe", RuntimeError("refused"))
    with pytest.raises(RuntimeError):
        await feed.unsubscribe([1])
    assert feed.subscriptions == {1: Mode.FULL, 2: Mode.FULL}
    await feed.unsubscribe([1])
    assert feed.subscriptions == {2: Mode.FULL}
    assert isinstance(broker, BrokerConfig)
    assert isinstance(feed, BrokerFeed)
