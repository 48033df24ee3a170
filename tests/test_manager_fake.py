"""The manager's behaviour against the in-memory `trading_ws.testing.FakeBroker`, under ``autojump_clock``.

Sharing, modes, readiness, pacing, status events and gaps, staleness, overflow policies, sharding and
failures, each checked exactly: what the broker was asked for (`FakeBroker.requests`,
`FakeBroker.subscriptions`), what each subscription received, at which virtual time. The manager is
driven synchronously (`FakeBroker.push` routes at once), so no test polls: it waits with
``trio.testing.wait_all_tasks_blocked()`` or on the subscription itself.

The same behaviours against the Kite simulator over loopback, end to end: tests/test_manager.py.
The helpers here (`SYMBOLS`, `fake`, `tick`) are shared by the other manager test files.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trading_ws import (
    AuthenticationError,
    Broker,
    ConfigurationError,
    Connected,
    ConnectError,
    Depth,
    DepthLevel,
    Disconnected,
    Event,
    FeedClosedError,
    Gap,
    Mode,
    Ohlc,
    OpenInterest,
    Overflow,
    RateLimit,
    Reconnecting,
    Resubscribed,
    SlowConsumerError,
    Stale,
    Subscription,
    SubscriptionLimitError,
    Tick,
    UnknownSymbolError,
    open_market_data,
)
from trading_ws.testing import FakeBroker, Request

#: Symbols of the fake master: "NSE:A" is token 1, "NSE:B" token 2, ...
SYMBOLS = tuple(f"NSE:{chr(ord('A') + n)}" for n in range(12))
TOKENS = {symbol: n + 1 for n, symbol in enumerate(SYMBOLS)}
A, B, C, D = SYMBOLS[:4]

DEPTH = Depth([DepthLevel(99.5, 10, 1)] * 5, [DepthLevel(100.5, 10, 1)] * 5)


def fake(**options: Any) -> FakeBroker:
    """A `FakeBroker` over `SYMBOLS`."""
    return FakeBroker(SYMBOLS, **options)


def tick(symbol: str, mode: Mode = Mode.FULL, price: float = 100.0) -> Tick:
    """A tick of `symbol` as a feed would decode it in `mode` (a FULL one carries OHLC and depth)."""
    rich = mode is not Mode.LTP
    return Tick(
        broker=Broker.KITE,
        instrument_token=TOKENS[symbol],
        mode=mode,
        tradable=True,
        last_price=price,
        last_quantity=1 if rich else None,
        average_price=price if rich else None,
        volume=10 if rich else None,
        ohlc=Ohlc(price, price, price, price) if rich else None,
        depth=DEPTH if mode is Mode.FULL else None,
        segment=1,
    )


async def batch(sub: Subscription) -> list[Event]:
    """The subscription's queued events, which must be there already (fails rather than hangs)."""
    with trio.fail_after(1):
        return await sub.receive_batch()


async def ticks(sub: Subscription) -> list[tuple[str | None, float]]:
    """(symbol, price) of the ticks queued for `sub` (at least one event must be queued)."""
    return [(e.symbol, e.last_price) for e in await batch(sub) if isinstance(e, Tick)]


def no_events(sub: Subscription) -> bool:
    """Whether nothing waits in `sub`'s queue."""
    return sub.statistics().queue.depth == 0


# ---------------------------------------------------------------------------------------------------------
# Sharing and modes


async def test_two_users_share_one_upstream_and_one_leaving_keeps_the_other(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = fake()
    async with open_market_data(broker) as md:
        async with md.subscribe([A, B], user_id="alice") as alice:
            async with md.subscribe([A], user_id="bob") as bob:
                assert broker.subscriptions == {A: Mode.QUOTE, B: Mode.QUOTE}
                broker.push(tick(A, price=1.0), tick(B, price=2.0))
                assert await ticks(alice) == [(A, 1.0), (B, 2.0)]
                assert await ticks(bob) == [(A, 1.0)]
                stats = md.statistics()
                assert (stats.subscriptions, stats.brokers[0].instruments) == (2, 2)
            # Bob left: Alice still gets A; the upstream subscription stays.
            broker.push(tick(A, price=3.0))
            assert await ticks(alice) == [(A, 3.0)]
            assert broker.subscriptions == {A: Mode.QUOTE, B: Mode.QUOTE}
            assert md.statistics().subscriptions == 1
        # Alice left too: nothing is subscribed upstream any more.
        assert broker.subscriptions == {}
        assert md.statistics().brokers[0].instruments == 0
    assert broker.requests == [
        Request(0, "subscribe", (A, B), Mode.QUOTE),
        Request(0, "unsubscribe", (A, B), None),
    ]


async def test_mode_upgrade_reduction_and_downgrade(autojump_clock: trio.testing.MockClock) -> None:
    broker = fake()
    async with open_market_data(broker) as md, md.subscribe([A], mode=Mode.LTP) as light:
        assert broker.subscriptions == {A: Mode.LTP}
        async with md.subscribe([A], mode=Mode.FULL) as heavy:
            assert broker.subscriptions == {A: Mode.FULL}
            broker.push(tick(A, Mode.FULL))
            [full] = await batch(heavy)
            [reduced] = await batch(light)
            assert isinstance(full, Tick)
            assert isinstance(reduced, Tick)
            assert (full.mode, full.depth, full.volume) == (Mode.FULL, DEPTH, 10)
            assert (reduced.mode, reduced.depth, reduced.ohlc, reduced.volume) == (Mode.LTP, None, None, None)
            assert (reduced.symbol, reduced.last_price) == (A, 100.0)
            await light.set_mode(Mode.QUOTE)
            assert broker.subscriptions == {A: Mode.FULL}  # FULL is still wanted
            broker.push(tick(A, Mode.FULL))
            [quote] = await batch(light)
            assert isinstance(quote, Tick)
            assert (quote.mode, quote.depth, quote.ohlc) == (
                Mode.QUOTE,
                None,
                Ohlc(100.0, 100.0, 100.0, 100.0),
            )
        # The FULL subscriber left: upstream goes down to the highest mode still wanted.
        assert broker.subscriptions == {A: Mode.QUOTE}
    assert [(r.action, r.mode) for r in broker.requests] == [
        ("subscribe", Mode.LTP),
        ("subscribe", Mode.FULL),
        ("subscribe", Mode.QUOTE),
        ("unsubscribe", None),
    ]


async def test_unknown_symbols_are_named_and_nothing_is_subscribed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = fake()
    async with open_market_data(broker) as md:
        with pytest.raises(UnknownSymbolError) as info:
            async with md.subscribe([A, "NSE:NOPE", "BSE:ALSO-NOPE"]):
                pytest.fail("must not subscribe")  # pragma: no cover
        assert info.value.symbols == ("NSE:NOPE", "BSE:ALSO-NOPE")
        assert "NSE:NOPE" in str(info.value)
        assert md.statistics().subscriptions == 0
        assert broker.connections == []  # not even a connection was opened
        async with md.subscribe([A]) as sub:
            with pytest.raises(UnknownSymbolError):
                await sub.add([B, "NSE:MISSING"])
            assert sub.symbols == {A}
            assert broker.subscriptions == {A: Mode.QUOTE}
        with pytest.raises(ConfigurationError):
            async with md.subscribe([A], broker="xts"):
                pytest.fail("no such broker")  # pragma: no cover
    assert [r.symbols for r in broker.requests] == [(A,), (A,)]


async def test_add_and_remove_while_running(autojump_clock: trio.testing.MockClock) -> None:
    broker = fake()
    async with open_market_data(broker) as md, md.subscribe([A]) as sub:
        await sub.add([B])
        broker.push(tick(B, price=7.0))
        assert await ticks(sub) == [(B, 7.0)]
        await sub.remove([A, "NSE:NOT-HELD"])
        assert sub.symbols == {B}
        assert broker.subscriptions == {B: Mode.QUOTE}
        broker.push(tick(A), tick(B, price=8.0))
        assert await ticks(sub) == [(B, 8.0)]
    assert broker.requests[:3] == [
        Request(0, "subscribe", (A,), Mode.QUOTE),
        Request(0, "subscribe", (B,), Mode.QUOTE),
        Request(0, "unsubscribe", (A,), None),
    ]


# ---------------------------------------------------------------------------------------------------------
# Readiness


async def test_first_tick_readiness(autojump_clock: trio.testing.MockClock) -> None:
    broker = fake()
    async with open_market_data(broker) as md:
        async with md.subscribe([A, B]) as sub:
            broker.push(tick(A))
            with trio.move_on_after(1.0) as scope:
                await sub.wait_ready()
            assert scope.cancelled_caught  # B has not ticked: not ready, and the caller's timeout rules
            broker.push(tick(B))
            with trio.fail_after(1):
                await sub.wait_ready()
            # Ready: a tick of every symbol is already in this subscriber's queue.
            assert {symbol for symbol, _ in await ticks(sub)} == {A, B}


async def test_a_late_joiner_is_ready_only_once_a_tick_reached_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Another subscriber having had ticks of a symbol does not make a newcomer ready."""
    broker = fake()
    async with open_market_data(broker) as md, md.subscribe([A]) as first:
        broker.push(tick(A))
        await first.wait_ready()
        async with md.subscribe([A]) as second:
            with trio.move_on_after(5) as scope:
                await second.wait_ready()
            assert scope.cancelled_caught
            broker.push(tick(A, price=5.0))
            with trio.fail_after(1):
                await second.wait_ready()
            assert await ticks(second) == [(A, 5.0)]


async def test_wait_ready_on_an_ended_subscription_raises_its_end_at_once_or_when_it_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Never ready once ended: a waiting call wakes up with the error the iterator ends with, a later
    call raises it at once, on whichever way the subscription ended."""
    broker = fake()
    async with open_market_data(broker) as md:
        # Its connection fails for good while wait_ready waits (nothing ever ticked).
        async with md.subscribe([A]) as failed:
            with trio.fail_after(60):  # (fails rather than hangs)
                async with trio.open_nursery() as nursery:
                    errors: list[BaseException] = []

                    async def wait() -> None:
                        try:
                            await failed.wait_ready()
                        except ConnectError as exc:
                            errors.append(exc)

                    nursery.start_soon(wait)
                    await trio.testing.wait_all_tasks_blocked()
                    assert errors == []
                    start = trio.current_time()
                    broker.connections[0].fail()
            assert trio.current_time() == start  # woken at once
            assert len(errors) == 1
            assert failed.symbols == frozenset()
            with pytest.raises(ConnectError) as info:
                await failed.wait_ready()
            assert info.value is errors[0]
            with trio.fail_after(1), pytest.raises(ConnectError) as ended:
                async for _ in failed:  # what was queued (its status events), then the same end
                    pass
            assert ended.value is errors[0]
        # Its block was left: FeedClosedError, even though it had been ready.
        async with md.subscribe([B]) as left:
            broker.push(tick(B))
            await left.wait_ready()
        start = trio.current_time()
        with trio.fail_after(60), pytest.raises(FeedClosedError):
            await left.wait_ready()
        assert trio.current_time() == start
        # Overflow.BLOCK overflowed: SlowConsumerError.
        async with md.subscribe([C], buffer=1) as slow:
            broker.push(tick(C), tick(C))
            with trio.fail_after(60), pytest.raises(SlowConsumerError):
                await slow.wait_ready()


async def test_wait_ready_checkpoints_and_a_cancelled_call_changes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = fake()
    async with open_market_data(broker) as md, md.subscribe([A]) as sub:
        broker.push(tick(A))
        with trio.CancelScope() as scope:
            scope.cancel()
            await sub.wait_ready()  # ready, but a checkpoint all the same
        assert scope.cancelled_caught
        await sub.wait_ready()
        assert await ticks(sub) == [(A, 100.0)]


# ---------------------------------------------------------------------------------------------------------
# Pacing


async def test_requests_and_connections_go_through_the_broker_rate_limiter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Every request and connection attempt takes a token from the broker's bucket: at 20 per second,
    burst 1, four separate adds after the first subscribe wait 50 ms each."""
    broker = fake(rate_limit=RateLimit(rate=20, burst=1))
    async with open_market_data(broker) as md:
        started = trio.current_time()
        async with md.subscribe([A]) as sub:
            assert trio.current_time() - started == pytest.approx(0.05)  # the connection, then the request
            started = trio.current_time()
            for symbol in (B, C, D, SYMBOLS[4]):
                await sub.add([symbol])
            assert trio.current_time() - started == pytest.approx(4 * 0.05)
            assert md.statistics().brokers[0].rate_limited_seconds == pytest.approx(5 * 0.05)
            assert len(broker.subscriptions) == 5


# ---------------------------------------------------------------------------------------------------------
# Status events, gaps, staleness


async def test_status_and_gap_events_around_a_disconnect(autojump_clock: trio.testing.MockClock) -> None:
    broker = fake()
    async with open_market_data(broker) as md, md.subscribe([A, B]) as sub, md.subscribe([C]) as other:
        broker.push(tick(A), tick(C))
        await batch(sub)
        await batch(other)
        [connection] = broker.connections
        down = broker._now()
        connection.drop("reset by peer", delay=0.5)
        await trio.sleep(0.5)
        connection.reconnect()
        up = broker._now()
        broker.push(tick(B, price=9.0))
        events = await batch(sub)
        assert events[:5] == [
            Disconnected(Broker.KITE, 0, "reset by peer", down),
            Reconnecting(Broker.KITE, 0, 1, 0.5, down),
            Connected(Broker.KITE, 0, up),
            Resubscribed(Broker.KITE, 0, 3, up),
            Gap(Broker.KITE, 0, (A, B), down, up),
        ]
        assert [(e.symbol, e.last_price) for e in events[5:] if isinstance(e, Tick)] == [(B, 9.0)]
        assert len(events) == 6
        gaps = [e for e in await batch(other) if isinstance(e, Gap)]
        assert gaps == [Gap(Broker.KITE, 0, (C,), down, up)]
        assert gaps[0].duration == pytest.approx(0.5)
        stats = md.statistics().brokers[0].connections[0]
        assert (stats.connected, stats.reconnects) == (True, 1)


async def test_stale_symbols_are_reported_once_per_quiet_spell(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = fake()
    async with open_market_data(broker, stale_after=0.3) as md, md.subscribe([A, B]) as sub:
        broker.push(tick(A), tick(B))
        await batch(sub)
        quiet_since = trio.current_time()
        with trio.fail_after(5):
            [stale] = await sub.receive_batch()
        assert isinstance(stale, Stale)
        assert (stale.symbols, stale.after) == ((A, B), 0.3)
        assert 0.3 <= trio.current_time() - quiet_since <= 0.6  # found by a scan that runs every after/2
        with trio.move_on_after(10) as scope:
            await sub.receive_batch()
        assert scope.cancelled_caught  # once per quiet spell
        broker.push(tick(A))  # A flows again; B stays quiet
        await batch(sub)
        with trio.fail_after(5):
            [again] = await sub.receive_batch()
        assert isinstance(again, Stale)
        assert again.symbols == (A,)


# ---------------------------------------------------------------------------------------------------------
# Slow consumers


@pytest.mark.parametrize("policy", [Overflow.DROP_OLDEST, Overflow.DROP_NEWEST, Overflow.CONFLATE])
async def test_a_stalled_consumer_never_stalls_the_others(
    autojump_clock: trio.testing.MockClock, policy: Overflow
) -> None:
    broker = fake()
    symbols = [A, B, C, D]
    async with (
        open_market_data(broker) as md,
        md.subscribe(symbols, buffer=3, overflow=policy) as stalled,
        md.subscribe(symbols) as healthy,
    ):
        for n in range(50):
            broker.push(*(tick(s, Mode.QUOTE, 100.0 + n) for s in symbols))
        received = [e for e in await batch(healthy) if isinstance(e, Tick)]
        assert len(received) == 200
        assert md.statistics().ticks_in == 200
        stats = stalled.statistics().queue
        assert stats.received == 200
        pending = [(e.symbol, e.last_price) for e in await batch(stalled) if isinstance(e, Tick)]
        # Every tick not waiting is accounted for: lost (dropped) or, conflating, replaced by a newer one.
        assert stats.dropped + stats.conflated == 200 - stats.depth
        assert healthy.statistics().queue.dropped == 0
        assert (md.statistics().dropped, md.statistics().conflated) == (stats.dropped, stats.conflated)
        if policy is Overflow.DROP_OLDEST:
            assert pending == [(B, 149.0), (C, 149.0), (D, 149.0)]  # the newest three
            assert (stats.dropped, stats.conflated) == (197, 0)
        elif policy is Overflow.DROP_NEWEST:
            assert pending == [(A, 100.0), (B, 100.0), (C, 100.0)]  # the first three
            assert (stats.dropped, stats.conflated) == (197, 0)
        else:
            # the latest of the first three instruments (the buffer's size); D's ticks found no room
            assert pending == [(A, 149.0), (B, 149.0), (C, 149.0)]
            assert (stats.dropped, stats.conflated) == (50, 147)
        assert [c.reconnects for c in md.statistics().brokers[0].connections] == [0]


async def test_block_policy_ends_only_the_slow_subscription(autojump_clock: trio.testing.MockClock) -> None:
    broker = fake()
    async with (
        open_market_data(broker) as md,
        md.subscribe([A, B], buffer=5, overflow=Overflow.BLOCK) as slow,
        md.subscribe([A]) as fine,
    ):
        for n in range(6):
            broker.push(tick(A, price=float(n)))
        assert len(await ticks(fine)) == 6
        read = []
        with pytest.raises(SlowConsumerError, match="5 events behind") as info:
            async for event in slow:
                read.append(event)  # pragma: no cover
        assert read == []  # ended loudly at once: what was queued is discarded with it
        assert info.value.lost == 1  # the sixth did not fit
        assert slow.statistics().queue.received == 6
        broker.push(tick(A, price=7.0))
        assert await ticks(fine) == [(A, 7.0)]
    assert broker.subscriptions == {}


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest", "conflate"])
async def test_market_events_that_are_not_ticks_follow_the_policy_and_status_events_are_kept(
    autojump_clock: trio.testing.MockClock, overflow: str
) -> None:
    """Open-interest updates count against the buffer as ticks do; a status event still reaches the
    consumer, and the statistics show everything waiting."""
    broker = fake(broker=Broker.XTS, keyed_by_segment=True)
    async with open_market_data(broker) as md, md.subscribe([A], buffer=10, overflow=overflow) as sub:
        token = broker.instruments[A]
        for n in range(5_000):
            broker.push(OpenInterest(Broker.XTS, token, 1, n, None, 0.0))
        stats = sub.statistics().queue
        assert stats.peak <= 10
        assert stats.received == 5_000
        broker.connections[0].drop()
        await trio.testing.wait_all_tasks_blocked()
        got = await batch(sub)
        assert any(isinstance(e, Disconnected) for e in got)
        kept = [e.open_interest for e in got if isinstance(e, OpenInterest)]
        status = len(got) - len(kept)
        assert status >= 1
        if overflow == "drop_oldest":  # the status events took the places of the oldest
            assert kept == list(range(5_000 - (10 - status), 5_000))
        elif overflow == "drop_newest":  # the status events were queued past the buffer
            assert kept == list(range(10))
        else:
            assert kept == [4_999]
        assert all(e.symbol == A for e in got if isinstance(e, OpenInterest))


# ---------------------------------------------------------------------------------------------------------
# Sharding and capacity


async def test_sharding_7000_over_three_connections_and_the_cap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    symbols = [f"NSE:SYN{i}" for i in range(1, 9002)]
    broker = FakeBroker(symbols, max_instruments_per_connection=3000, max_connections=3)
    async with open_market_data(broker) as md:
        async with md.subscribe(symbols[:7000], mode=Mode.LTP, overflow=Overflow.CONFLATE):
            assert [len(c.subscriptions) for c in broker.connections] == [3000, 3000, 1000]
            assert [c.instruments for c in md.statistics().brokers[0].connections] == [3000, 3000, 1000]
            async with md.subscribe(symbols[7000:9000], mode=Mode.LTP, overflow=Overflow.CONFLATE):
                assert [len(c.subscriptions) for c in broker.connections] == [3000, 3000, 3000]
                requests = len(broker.requests)
                with pytest.raises(SubscriptionLimitError, match="9000"):
                    async with md.subscribe([symbols[9000]]):
                        pytest.fail("the 9001st must be refused")  # pragma: no cover
                # An instrument already held costs nothing more.
                async with md.subscribe([symbols[0]], mode=Mode.LTP):
                    pass
                assert len(broker.requests) == requests  # neither sent anything
            assert len(broker.connections) == 3


# ---------------------------------------------------------------------------------------------------------
# Failures


async def test_a_broker_refusing_credentials_fails_the_subscribe(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = fake()
    broker.refuse_credentials()
    async with open_market_data(broker) as md:
        with pytest.raises(AuthenticationError):
            async with md.subscribe([A]):
                pytest.fail("must not subscribe")  # pragma: no cover
        assert md.statistics().subscriptions == 0
    assert broker.connections == []


class BuggyTick(Tick):
    """A tick whose routing raises (the manager sets its symbol): a stand-in for a bug in the router."""

    @property
    def symbol(self) -> str | None:
        return None

    @symbol.setter
    def symbol(self, value: str | None) -> None:
        if value is not None:
            raise ZeroDivisionError("a bug in the router")


async def test_a_routing_bug_ends_that_connection_loudly_and_the_manager_goes_on(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The router runs in the feed's reader task: an exception there ends that connection's
    subscriptions with the error (never a silent stall), and later subscriptions open a new connection."""
    broker = fake()
    async with open_market_data(broker) as md:
        async with md.subscribe([A]) as sub:
            [first] = broker.connections
            first.push(BuggyTick(Broker.KITE, TOKENS[A], Mode.QUOTE, True, 1.0, segment=1))
            assert isinstance(first.failed, ZeroDivisionError)
            with pytest.raises(ZeroDivisionError, match="router"):
                async for _event in sub:
                    pass
            assert not md.statistics().brokers[0].connections[0].connected
            # The failed subscription is still open; a newcomer must not join the dead connection,
            # nor inherit the dead subscription's mode (QUOTE): it gets LTP, and every tick it is due.
            async with md.subscribe([A], mode=Mode.LTP) as again:
                assert [c.index for c in broker.connections] == [0, 1]
                assert broker.subscriptions == {A: Mode.LTP}
                broker.push(tick(A, price=2.0))
                [fresh] = await batch(again)
                assert isinstance(fresh, Tick)
                assert (fresh.symbol, fresh.mode, fresh.last_price) == (A, Mode.LTP, 2.0)
                stats = md.statistics()
                assert stats.brokers[0].instruments == 1
                assert stats.ticks_out == 1  # nothing routed to the ended subscription
            with pytest.raises(FeedClosedError):
                await sub.add([B])  # an ended subscription changes nothing upstream
            assert B not in broker.subscriptions
        async with md.subscribe([B]) as other:
            broker.push(tick(B))
            assert [s for s, _ in await ticks(other)] == [B]
        assert md.statistics().brokers[0].instruments == 0  # nothing left behind
        assert broker.subscriptions == {}
    # A bug (not a broker failure) is logged with its traceback.
    failures = [r for r in caplog.records if r.name == "trading_ws.manager" and "failed" in r.getMessage()]
    assert failures
    assert failures[0].exc_info is not None


async def test_the_instrument_master_is_loaded_once_per_manager(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = fake()
    async with open_market_data(broker) as md:
        broker.hold("master")
        async with trio.open_nursery() as nursery:  # concurrent first subscribes share one load

            async def subscribe_once(symbol: str) -> None:
                async with md.subscribe([symbol]):
                    pass

            for symbol in (A, B, C):
                nursery.start_soon(subscribe_once, symbol)
            await trio.testing.wait_all_tasks_blocked()
            assert broker.waiting("master") == 1
            broker.release("master")
        async with md.subscribe([A]) as sub:
            await sub.add([D])
    assert broker.master_loads == 1
