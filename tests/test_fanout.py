"""Subscriber queues: each overflow policy, exact drop counts, status events never dropped."""

from __future__ import annotations

from datetime import UTC, datetime

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings, strategies as st

from trading_ws import (
    Broker,
    Candle,
    ConfigurationError,
    Depth,
    DepthLevel,
    Disconnected,
    Event,
    FeedClosedError,
    Gap,
    InstrumentPropertyChange,
    MarketStatus,
    Mode,
    Ohlc,
    OpenInterest,
    Overflow,
    RateLimit,
    Reconnecting,
    SlowConsumerError,
    Stale,
    Tick,
)
from trading_ws._fanout import SubscriberQueue, coerce_overflow, reduce_tick
from trading_ws._ratelimit import TokenBucket
from trading_ws.brokers._queue import BatchQueue


def tick(token: int, price: float) -> Tick:
    return Tick(Broker.KITE, token, Mode.LTP, True, price, segment=1)


def status() -> Disconnected:
    return Disconnected(Broker.KITE, 0, "test", 0.0)


def oi(token: int, value: int) -> OpenInterest:
    return OpenInterest(Broker.XTS, token, 1, value, None, 0.0)


def market_status(segment: int, message: str) -> MarketStatus:
    return MarketStatus(Broker.XTS, segment, message, None, None, 0.0)


def candle(token: int, close: float) -> Candle:
    when = datetime(2026, 12, 2, 9, 15, tzinfo=UTC)
    return Candle(Broker.XTS, token, 1, when, close, close, close, close, 10, None, 0.0)


def batch_of(*events: Event) -> list[Event]:
    return list(events)


def ended(queue: SubscriberQueue) -> bool:
    """Whether the queue is closed now (a call: mypy does not narrow it across puts)."""
    return queue.closed


async def drain(queue: SubscriberQueue) -> list[Event]:
    return await queue.get_batch()


async def test_within_capacity_every_policy_keeps_everything() -> None:
    for policy in Overflow:
        queue = SubscriberQueue(10, policy)
        queue.put([tick(1, 1.0), tick(2, 2.0)])
        queue.put([tick(3, 3.0)])
        assert [e.instrument_token for e in await drain(queue) if isinstance(e, Tick)] == [1, 2, 3]
        assert queue.statistics().dropped == 0
        assert queue.statistics().received == 3


async def test_drop_oldest_keeps_newest_and_counts() -> None:
    queue = SubscriberQueue(3, Overflow.DROP_OLDEST)
    queue.put([tick(1, 1.0), status(), tick(2, 2.0)])
    queue.put([tick(3, 3.0), tick(4, 4.0), tick(5, 5.0)])
    events = await drain(queue)
    # The status event counts against the 3 too: two ticks fit beside it.
    assert [e.last_price for e in events if isinstance(e, Tick)] == [4.0, 5.0]
    assert isinstance(events[0], Disconnected)  # status kept, in front
    assert len(events) == 3
    stats = queue.statistics()
    assert stats.dropped == 3
    assert stats.received == 6
    assert stats.peak == 3


async def test_drop_newest_keeps_oldest_and_counts() -> None:
    queue = SubscriberQueue(2, Overflow.DROP_NEWEST)
    queue.put([tick(1, 1.0), tick(2, 2.0), tick(3, 3.0), status(), tick(4, 4.0)])
    events = await drain(queue)
    assert [e.last_price for e in events if isinstance(e, Tick)] == [1.0, 2.0]
    assert isinstance(events[-1], Disconnected)
    assert queue.statistics().dropped == 2


async def test_conflate_keeps_latest_per_instrument_in_first_pending_order() -> None:
    queue = SubscriberQueue(10, Overflow.CONFLATE)
    queue.put([tick(1, 1.0), tick(2, 2.0)])
    queue.put([tick(1, 1.5), status(), tick(3, 3.0), tick(2, 2.5)])
    events = await drain(queue)
    ticks = [(e.instrument_token, e.last_price) for e in events if isinstance(e, Tick)]
    assert ticks == [(1, 1.5), (2, 2.5), (3, 3.0)]
    assert any(isinstance(e, Disconnected) for e in events)
    assert (queue.statistics().conflated, queue.statistics().dropped) == (2, 0)  # two replaced, none lost
    # Capacity bounds the number of instruments pending.
    small = SubscriberQueue(2, Overflow.CONFLATE)
    small.put([tick(1, 1.0), tick(2, 2.0), tick(3, 3.0), tick(2, 2.2)])
    assert [(e.instrument_token, e.last_price) for e in await drain(small) if isinstance(e, Tick)] == [
        (1, 1.0),
        (2, 2.2),
    ]
    assert (small.statistics().conflated, small.statistics().dropped) == (1, 1)


async def test_block_is_lossless_until_over_then_fails_loudly() -> None:
    queue = SubscriberQueue(3, Overflow.BLOCK)
    queue.put([tick(1, 1.0), tick(2, 2.0), tick(3, 3.0)])
    assert queue.statistics().dropped == 0
    queue.put([tick(4, 4.0), tick(5, 5.0)])
    with pytest.raises(SlowConsumerError) as info:
        await queue.get()
    assert info.value.lost == 2
    assert queue.closed


async def test_get_hands_out_one_at_a_time_and_waits() -> None:
    queue = SubscriberQueue(10, Overflow.DROP_OLDEST)
    got: list[Event] = []

    async def consumer() -> None:
        for _ in range(3):
            got.append(await queue.get())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        queue.put([tick(1, 1.0), tick(2, 2.0)])
        await trio.testing.wait_all_tasks_blocked()
        assert len(got) == 2
        queue.put([tick(3, 3.0)])
    assert [e.instrument_token for e in got if isinstance(e, Tick)] == [1, 2, 3]
    assert queue.statistics().delivered == 3
    assert queue.statistics().depth == 0


async def test_close_drains_then_raises() -> None:
    queue = SubscriberQueue(10, Overflow.DROP_OLDEST)
    queue.put([tick(1, 1.0)])
    queue.close()
    queue.put([tick(2, 2.0)])  # ignored once closed
    assert isinstance(await queue.get(), Tick)
    with pytest.raises(FeedClosedError):
        await queue.get()
    failing = SubscriberQueue(10, Overflow.CONFLATE)
    failing.close(KeyError("why"))
    with pytest.raises(KeyError):
        await failing.get_batch()


async def test_waiting_consumer_is_cancellable() -> None:
    queue = SubscriberQueue(10, Overflow.BLOCK)
    with trio.move_on_after(0.01) as scope:
        await queue.get()
    assert scope.cancelled_caught


def test_invalid_capacity() -> None:
    for bad in (0, -1, 1.5, True, "10", None):
        with pytest.raises(ConfigurationError):
            SubscriberQueue(bad, Overflow.BLOCK)  # type: ignore[arg-type]


async def test_token_bucket_paces_on_the_trio_clock(autojump_clock: trio.testing.MockClock) -> None:
    bucket = TokenBucket(RateLimit(rate=10.0, burst=5))
    start = trio.current_time()
    for _ in range(25):
        await bucket.acquire()
    # 5 from the burst, then 20 at 10/s.
    assert trio.current_time() - start == pytest.approx(2.0)
    assert bucket.acquired == 25
    assert bucket.waited == pytest.approx(2.0)


def test_rate_limit_validation() -> None:
    with pytest.raises(ValueError):
        RateLimit(rate=0)
    with pytest.raises(ValueError):
        RateLimit(burst=0)


async def test_discard_ticks_removes_only_those_instruments() -> None:
    for policy in (Overflow.DROP_OLDEST, Overflow.CONFLATE):
        queue = SubscriberQueue(10, policy)
        queue.put([tick(1, 1.0), status(), tick(2, 2.0), tick(1, 1.1)])
        removed = queue.discard_ticks({(1, 1)})
        events = await drain(queue)
        assert [e.instrument_token for e in events if isinstance(e, Tick)] == [2]
        assert any(isinstance(e, Disconnected) for e in events)
        stats = queue.statistics()
        assert stats.discarded == removed
        assert stats.delivered == 2
        assert (
            stats.received
            == stats.delivered + stats.dropped + stats.conflated + stats.depth + stats.discarded
        )


async def test_batch_queue_backpressure_order_and_close() -> None:
    queue = BatchQueue(2)
    a: list[Event] = [tick(1, 1.0)]
    b: list[Event] = [tick(2, 2.0)]
    c: list[Event] = [status()]
    queue.put_nowait(a)
    await queue.put(b)
    assert queue.full
    assert len(queue) == 2
    put_done = trio.Event()

    async def late_put() -> None:
        await queue.put(c)  # waits: two batches wait already
        put_done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(late_put)
        await trio.testing.wait_all_tasks_blocked()
        assert not put_done.is_set()
        assert await queue.get() is a  # frees a place: the writer goes on
        await put_done.wait()
    assert await queue.get() is b
    assert await queue.get() is c
    queue.put_nowait(a)
    queue.close()
    queue.put_nowait(b)  # after close: dropped
    assert await queue.get() is a  # close drains what was queued first
    with pytest.raises(trio.EndOfChannel):
        await queue.get()


async def test_batch_queue_close_discard_wakes_waiting_reader_and_writer() -> None:
    queue = BatchQueue(1)
    queue.put_nowait(batch_of(tick(1, 1.0)))
    outcomes: list[str] = []

    async def writer() -> None:
        await queue.put(batch_of(tick(2, 2.0)))
        outcomes.append("writer woke")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()
        queue.close(discard=True)
    assert outcomes == ["writer woke"]
    assert len(queue) == 0
    with pytest.raises(trio.EndOfChannel):
        await queue.get()

    waiting = BatchQueue(1)

    async def reader() -> None:
        with pytest.raises(trio.EndOfChannel):
            await waiting.get()
        outcomes.append("reader woke")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        waiting.close()
    assert outcomes[-1] == "reader woke"


async def test_batch_queue_with_a_sink_hands_over_at_once(autojump_clock: trio.testing.MockClock) -> None:
    got: list[list[Event]] = []
    queue = BatchQueue(1, got.append)
    a: list[Event] = [tick(1, 1.0)]
    b: list[Event] = [tick(2, 2.0)]
    queue.put_nowait(a)
    with trio.testing.assert_checkpoints():  # never waits (nothing is queued), but lets consumers run
        await queue.put(b)
    assert got == [a, b]
    assert len(queue) == 0
    assert not queue.full
    with trio.move_on_after(0.1) as scope:  # get only waits for the end
        await queue.get()
    assert scope.cancelled_caught
    queue.close()
    queue.put_nowait([status()])
    assert got == [a, b]  # nothing after close
    with pytest.raises(trio.EndOfChannel):
        await queue.get()


async def test_get_batch_checkpoints_once_whether_or_not_it_waits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue = SubscriberQueue(10, Overflow.BLOCK)
    queue.put([tick(1, 1.0)])
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await queue.get_batch()  # a cancel point even with events pending
    assert [e.instrument_token for e in await queue.get_batch() if isinstance(e, Tick)] == [1]

    async def later() -> None:
        await trio.sleep(0.01)
        queue.put([tick(2, 2.0)])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(later)
        batch = await queue.get_batch()  # parks, then returns at once when woken
    assert [e.instrument_token for e in batch if isinstance(e, Tick)] == [2]


async def test_batch_queue_a_failing_sink_ends_it_and_get_raises_the_error() -> None:
    got: list[list[Event]] = []

    def sink(batch: list[Event]) -> None:
        if any(isinstance(e, Disconnected) for e in batch):
            raise ZeroDivisionError("consumer bug")
        got.append(batch)

    queue = BatchQueue(4, sink)
    first = batch_of(tick(1, 1.0))
    queue.put_nowait(first)
    queue.put_nowait(batch_of(status()))  # raises inside: the queue ends, nothing escapes to the caller
    queue.put_nowait(batch_of(tick(2, 2.0)))  # dropped
    assert got == [first]
    assert queue.closed
    with pytest.raises(ZeroDivisionError, match="consumer bug"):
        await queue.get()


# ---------------------------------------------------------------------------------------------------------
# Overflow values, the conflated counter, cancellation of the consumer side


@given(st.one_of(st.text(max_size=20), st.sampled_from([m.value for m in Overflow]), st.from_type(type)))
def test_overflow_accepts_members_and_their_values_and_refuses_the_rest(value: object) -> None:
    """A member or its string value is that member; anything else is a ConfigurationError (never a silent
    BLOCK, as ``"conflate"`` used to be)."""
    values = {m.value: m for m in Overflow}
    if isinstance(value, str) and value in values:
        assert coerce_overflow(value) is values[value]
        assert value == values[value]  # a StrEnum: members compare equal to their values
    else:
        with pytest.raises(ConfigurationError, match="overflow must be"):
            coerce_overflow(value)


@pytest.mark.parametrize(
    "odd", [None, 0, 1, True, "CONFLATE", "Overflow.CONFLATE", " block", b"block", Mode.LTP]
)
def test_overflow_refuses_near_misses(odd: object) -> None:
    with pytest.raises(ConfigurationError):
        coerce_overflow(odd)
    with pytest.raises(ConfigurationError):
        SubscriberQueue(10, odd)  # type: ignore[arg-type]


async def test_a_queue_given_a_string_policy_applies_it() -> None:
    for policy in Overflow:
        assert coerce_overflow(policy) is policy
    queue = SubscriberQueue(10, "conflate")  # type: ignore[arg-type]
    queue.put([tick(1, 1.0), tick(1, 2.0)])
    assert [e.last_price for e in await drain(queue) if isinstance(e, Tick)] == [2.0]


async def test_conflate_counts_replacements_apart_from_losses() -> None:
    """A replaced tick is superseded, not lost: `conflated` counts it, `dropped` only ticks that could not
    be kept at all (a new instrument with the buffer full)."""
    queue = SubscriberQueue(2, Overflow.CONFLATE)
    queue.put([tick(1, 1.0), tick(2, 2.0), tick(1, 1.1), tick(3, 3.0), tick(1, 1.2), tick(3, 3.1)])
    stats = queue.statistics()
    assert (stats.received, stats.conflated, stats.dropped, stats.depth) == (6, 2, 2, 2)
    got = [e for e in await drain(queue) if isinstance(e, Tick)]
    assert [(e.instrument_token, e.last_price) for e in got] == [(1, 1.2), (2, 2.0)]
    stats = queue.statistics()
    assert stats.received == len(got) + stats.dropped + stats.conflated + stats.depth + stats.discarded
    for policy in (Overflow.DROP_OLDEST, Overflow.DROP_NEWEST):
        other = SubscriberQueue(1, policy)
        other.put([tick(1, 1.0), tick(1, 1.1)])
        assert (other.statistics().dropped, other.statistics().conflated) == (1, 0)


@pytest.mark.parametrize("policy", [Overflow.DROP_OLDEST, Overflow.CONFLATE])
async def test_a_cancelled_get_takes_nothing_at_its_periodic_checkpoint(policy: Overflow) -> None:
    """`get` checkpoints every 256 events; a cancellation there must not take (and lose) an event."""
    queue = SubscriberQueue(1000, policy)
    queue.put([tick(n, float(n)) for n in range(600)])
    taken: list[int] = []
    for _ in range(600):
        with trio.CancelScope() as scope:
            scope.cancel()
            event = await queue.get()
            assert isinstance(event, Tick)
            taken.append(event.instrument_token)
    assert taken == sorted(taken)
    assert len(taken) < 600  # some calls were cancelled: those took nothing
    while queue.statistics().depth:
        event = await queue.get()
        assert isinstance(event, Tick)
        taken.append(event.instrument_token)
    assert taken == list(range(600))
    assert queue.statistics().delivered == 600


async def test_a_cancelled_get_batch_takes_nothing() -> None:
    queue = SubscriberQueue(10, Overflow.DROP_OLDEST)
    queue.put([tick(1, 1.0)])
    with trio.CancelScope() as scope:
        scope.cancel()
        await queue.get_batch()
    assert scope.cancelled_caught
    assert queue.statistics().depth == 1
    assert len(await queue.get_batch()) == 1


def test_a_reduced_tick_keeps_exactly_the_fields_of_its_mode() -> None:
    """What the router hands a holder of a lower mode: the same tick with the richer fields cleared."""
    ohlc = Ohlc(1.0, 2.0, 0.5, 1.5)
    depth = Depth([DepthLevel(99.5, 10, 1)], [DepthLevel(100.5, 20, 2)])
    full = Tick(
        Broker.KITE,
        7,
        Mode.FULL,
        True,
        100.0,
        5,
        99.9,
        1000,
        10,
        20,
        ohlc,
        0.5,
        None,
        None,
        30,
        40,
        20,
        depth,
        123.0,
        "NSE:X",
        1,
    )
    quote = reduce_tick(full, Mode.QUOTE.rank)
    assert quote == attrs.evolve(full, mode=Mode.QUOTE, depth=None)
    ltp = reduce_tick(full, Mode.LTP.rank)
    assert ltp == Tick(Broker.KITE, 7, Mode.LTP, True, 100.0, received_at=123.0, symbol="NSE:X", segment=1)
    assert full.depth is depth  # the original is untouched


# ---------------------------------------------------------------------------------------------------------
# Every event counts against the buffer; market events follow the policy, status events are kept (bounded)


@pytest.mark.parametrize("policy", list(Overflow))
async def test_market_events_that_are_not_ticks_are_bounded_by_the_policy(policy: Overflow) -> None:
    """50 000 open-interest updates to a queue of 10 nobody reads: never more than 10 pending."""
    queue = SubscriberQueue(10, policy)
    for n in range(50_000):
        queue.put([oi(7, n)])
    stats = queue.statistics()
    assert stats.peak <= 10
    if policy is Overflow.BLOCK:
        assert queue.closed
        with pytest.raises(SlowConsumerError, match="10 events behind") as info:
            await queue.get_batch()
        assert info.value.lost == 1
        assert stats.received == 11
        return
    got = await drain(queue)
    values = [e.open_interest for e in got if isinstance(e, OpenInterest)]
    assert len(got) == len(values)
    if policy is Overflow.DROP_OLDEST:
        assert values == list(range(49_990, 50_000))
        assert (stats.dropped, stats.conflated, stats.depth) == (49_990, 0, 10)
    elif policy is Overflow.DROP_NEWEST:
        assert values == list(range(10))
        assert (stats.dropped, stats.conflated, stats.depth) == (49_990, 0, 10)
    else:
        assert values == [49_999]  # one per (type, instrument)
        assert (stats.dropped, stats.conflated, stats.depth) == (0, 49_999, 1)
    assert stats.received == 50_000 == len(got) + stats.dropped + stats.conflated


async def test_conflate_keys_market_events_by_type_and_instrument_or_segment() -> None:
    queue = SubscriberQueue(10, Overflow.CONFLATE)
    queue.put([tick(1, 1.0), oi(1, 5), candle(1, 1.0), market_status(1, "pre-open"), oi(2, 6)])
    queue.put([oi(1, 50), candle(1, 1.5), market_status(1, "open"), market_status(2, "closed"), tick(1, 1.1)])
    got = await drain(queue)
    assert [type(e).__name__ for e in got] == [
        "Tick",
        "OpenInterest",
        "Candle",
        "MarketStatus",
        "OpenInterest",
        "MarketStatus",
    ]
    assert got[0] == tick(1, 1.1)
    assert got[1] == oi(1, 50)
    assert isinstance(got[2], Candle)
    assert got[2].close == 1.5
    assert got[3] == market_status(1, "open")
    assert got[4] == oi(2, 6)
    assert got[5] == market_status(2, "closed")
    stats = queue.statistics()
    assert (stats.received, stats.conflated, stats.dropped, stats.peak) == (10, 4, 0, 6)
    change = InstrumentPropertyChange(Broker.XTS, 3, 1, {"HighExecBand": "110"}, 0.0)
    queue.put([change, InstrumentPropertyChange(Broker.XTS, 3, 1, {"HighExecBand": "120"}, 0.0)])
    (latest,) = await drain(queue)
    assert isinstance(latest, InstrumentPropertyChange)
    assert latest.properties == {"HighExecBand": "120"}


@pytest.mark.parametrize("policy", list(Overflow))
async def test_status_events_count_are_never_dropped_and_may_pass_the_buffer(policy: Overflow) -> None:
    queue = SubscriberQueue(3, policy)
    queue.put([tick(1, 1.0), tick(2, 2.0), tick(3, 3.0)])
    kept: list[Event] = [
        status(),
        Reconnecting(Broker.KITE, 0, 1, 1.0, 1.0),
        Gap(Broker.KITE, 0, (), 0.0, 1.0),
    ]
    kept.append(Stale(Broker.KITE, ("NSE:A",), 30.0, 1.0))
    queue.put(kept)
    stats = queue.statistics()
    assert not queue.closed
    if policy is Overflow.DROP_OLDEST:  # room is made by dropping the oldest ticks first
        assert (stats.depth, stats.peak, stats.dropped) == (4, 4, 3)
    else:
        assert (stats.depth, stats.peak, stats.dropped) == (7, 7, 0)  # past the buffer, all shown
    queue.put([tick(4, 4.0)])  # a tick does not fit beside them
    got = await drain(queue) if policy is not Overflow.BLOCK else None
    if policy is Overflow.BLOCK:
        with pytest.raises(SlowConsumerError):
            await queue.get_batch()
        return
    assert got is not None
    assert [e for e in got if not isinstance(e, Tick)] == kept
    ticks = [e.instrument_token for e in got if isinstance(e, Tick)]
    if policy is Overflow.DROP_OLDEST:
        assert ticks == []  # the ticks (all of them, oldest first) went; the status events stay
        assert queue.statistics().dropped == 4
    else:
        assert ticks == [1, 2, 3]
        assert queue.statistics().dropped == 1


@pytest.mark.parametrize("policy", list(Overflow))
@pytest.mark.parametrize("capacity", [1, 100])
async def test_status_events_past_the_hard_limit_end_the_queue_loudly(
    policy: Overflow, capacity: int
) -> None:
    """At most capacity + max(capacity, 64) events wait; a status event beyond that (it cannot be
    dropped) ends the queue with SlowConsumerError, whatever the policy."""
    limit = capacity + max(capacity, 64)
    queue = SubscriberQueue(capacity, policy)
    for _ in range(limit):
        queue.put([status()])
    assert not queue.closed
    assert queue.statistics().depth == limit
    queue.put([status()])
    assert ended(queue)
    with pytest.raises(SlowConsumerError, match=f"more than {limit} events behind") as info:
        await queue.get_batch()
    assert info.value.lost == 1
    assert queue.statistics().peak == limit


def _events() -> st.SearchStrategy[list[Event]]:
    one = st.one_of(
        st.builds(tick, st.integers(1, 4), st.floats(1, 2)),
        st.builds(oi, st.integers(1, 4), st.integers(0, 9)),
        st.builds(market_status, st.integers(1, 2), st.sampled_from(["a", "b"])),
        st.just(status()),
    )
    return st.lists(one, max_size=12)


@settings(deadline=None)
@given(
    policy=st.sampled_from(Overflow),
    capacity=st.integers(1, 6),
    steps=st.lists(st.tuples(_events(), st.booleans()), max_size=25),
)
async def test_any_mix_of_events_stays_bounded_and_accounted(
    policy: Overflow, capacity: int, steps: list[tuple[list[Event], bool]]
) -> None:
    """Depth never passes the hard limit; market events never take it past the buffer; status events are
    lost only with the queue; every event offered is delivered, dropped, conflated, pending or discarded."""
    queue = SubscriberQueue(capacity, policy)
    limit = capacity + max(capacity, 64)
    offered_status = delivered_status = 0
    for events, read in steps:
        if queue.closed:
            break
        pending = queue.statistics().depth
        queue.put(events)
        offered_status += sum(isinstance(e, Disconnected) for e in events)
        stats = queue.statistics()
        assert stats.depth <= limit
        assert stats.peak <= limit
        if ended(queue):  # ended loudly (what was pending went with it): BLOCK, or too many status events
            assert policy is Overflow.BLOCK or offered_status - delivered_status > limit - capacity
            break
        if not any(isinstance(e, Disconnected) for e in events):
            assert stats.depth <= max(capacity, pending)  # market events alone never pass the buffer
        assert (
            stats.received
            == stats.delivered + stats.dropped + stats.conflated + stats.depth + stats.discarded
        )
        if read and not queue.closed and stats.depth:
            with trio.fail_after(1):
                delivered_status += sum(isinstance(e, Disconnected) for e in await queue.get_batch())
    if not queue.closed:
        delivered_status += sum(
            isinstance(e, Disconnected) for e in (await queue.get_batch() if queue.statistics().depth else [])
        )
        assert delivered_status == offered_status
