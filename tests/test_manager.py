"""The unified manager against the Kite simulator over loopback."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from trading_ws import (
    AuthenticationError,
    Backoff,
    ConfigurationError,
    Connected,
    ConnectError,
    Disconnected,
    Event,
    FeedClosedError,
    Gap,
    KiteBroker,
    Mode,
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
from trading_ws._manager import MarketData
from trading_ws.sim import DEMO_ACCESS_TOKEN, DEMO_API_KEY, KiteSimulator, kite_instruments_csv

INFY, RELIANCE, NIFTY = 408065, 738561, 256265


def broker(url: str, **kwargs: object) -> KiteBroker:
    return KiteBroker(
        DEMO_API_KEY,
        DEMO_ACCESS_TOKEN,
        url=url,
        instruments=kite_instruments_csv(),
        backoff=Backoff(initial=0.05, jitter=0.0),
        **kwargs,  # type: ignore[arg-type]
    )


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll another party's state (the simulator's) until true; the caller's fail_after bounds it."""
    while not predicate():  # noqa: ASYNC110
        await trio.sleep(0.005)


async def next_tick(sub: Subscription, symbol: str | None = None) -> Tick:
    async for event in sub:
        if isinstance(event, Tick) and (symbol is None or event.symbol == symbol):
            return event
    raise AssertionError("subscription ended")


@pytest.fixture
async def sim(nursery: trio.Nursery) -> tuple[KiteSimulator, str]:
    simulator = KiteSimulator(tick_interval=0.02, seed=3)
    url = await nursery.start(simulator.serve)
    return simulator, url


async def test_two_users_share_one_upstream_and_one_leaving_keeps_the_other(
    sim: tuple[KiteSimulator, str],
) -> None:
    simulator, url = sim
    with trio.fail_after(15):
        async with open_market_data(broker(url)) as md:
            async with md.subscribe(["NSE:INFY", "NSE:RELIANCE"], user_id="alice") as alice:
                async with md.subscribe(["NSE:INFY"], user_id="bob") as bob:
                    a, b = await next_tick(alice, "NSE:INFY"), await next_tick(bob, "NSE:INFY")
                    assert a.symbol == b.symbol == "NSE:INFY"
                    assert simulator.subscriptions() == [{INFY: Mode.QUOTE, RELIANCE: Mode.QUOTE}]
                    stats = md.statistics()
                    assert stats.subscriptions == 2
                    assert stats.brokers[0].instruments == 2
                # Bob left: Alice still gets INFY; the upstream subscription stays.
                for _ in range(5):
                    await next_tick(alice, "NSE:INFY")
                assert simulator.subscriptions() == [{INFY: Mode.QUOTE, RELIANCE: Mode.QUOTE}]
                assert md.statistics().subscriptions == 1
            # Alice left too: nothing is subscribed upstream any more.
            await wait_until(lambda: simulator.subscriptions() == [{}])
            assert md.statistics().brokers[0].instruments == 0


async def test_mode_upgrade_reduction_and_downgrade(sim: tuple[KiteSimulator, str]) -> None:
    simulator, url = sim
    with trio.fail_after(15):
        async with open_market_data(broker(url)) as md:
            async with md.subscribe(["NSE:INFY"], mode=Mode.LTP) as light:
                await wait_until(lambda: simulator.subscriptions() == [{INFY: Mode.LTP}])
                async with md.subscribe(["NSE:INFY"], mode=Mode.FULL) as heavy:
                    await wait_until(lambda: simulator.subscriptions() == [{INFY: Mode.FULL}])
                    full = await next_tick(heavy)
                    while (reduced := await next_tick(light)).received_at < full.received_at:
                        pass
                    assert full.mode is Mode.FULL
                    assert full.depth is not None
                    assert reduced.mode is Mode.LTP
                    assert reduced.depth is None
                    assert reduced.ohlc is None
                    assert reduced.symbol == "NSE:INFY"
                    await light.set_mode(Mode.QUOTE)
                    quote = await next_tick(light)
                    while quote.mode is not Mode.QUOTE:
                        quote = await next_tick(light)
                    assert quote.depth is None
                    assert quote.ohlc is not None
                # The FULL subscriber left: upstream goes down to the highest mode still wanted.
                await wait_until(lambda: simulator.subscriptions() == [{INFY: Mode.QUOTE}])


async def test_unknown_symbols_are_named_and_nothing_is_subscribed(
    sim: tuple[KiteSimulator, str],
) -> None:
    simulator, url = sim
    with trio.fail_after(10):
        async with open_market_data(broker(url)) as md:
            with pytest.raises(UnknownSymbolError) as info:
                async with md.subscribe(["NSE:INFY", "NSE:NOPE", "BSE:ALSO-NOPE"]):
                    pytest.fail("must not subscribe")  # pragma: no cover
            assert info.value.symbols == ("NSE:NOPE", "BSE:ALSO-NOPE")
            assert "NSE:NOPE" in str(info.value)
            assert md.statistics().subscriptions == 0
            assert md.statistics().brokers[0].connections == ()  # not even a connection was opened
            async with md.subscribe(["NSE:INFY"]) as sub:
                with pytest.raises(UnknownSymbolError):
                    await sub.add(["NSE:RELIANCE", "NSE:MISSING"])
                assert sub.symbols == {"NSE:INFY"}
                await wait_until(lambda: simulator.subscriptions() == [{INFY: Mode.QUOTE}])
            with pytest.raises(ConfigurationError):
                async with md.subscribe(["NSE:INFY"], broker="xts"):
                    pytest.fail("no such broker")  # pragma: no cover


async def test_add_and_remove_while_running(sim: tuple[KiteSimulator, str]) -> None:
    simulator, url = sim
    with trio.fail_after(10):
        async with open_market_data(broker(url)) as md, md.subscribe(["NSE:INFY"]) as sub:
            await sub.add(["NSE:NIFTY 50"])
            await next_tick(sub, "NSE:NIFTY 50")
            await sub.remove(["NSE:INFY", "NSE:NOT-HELD"])
            assert sub.symbols == {"NSE:NIFTY 50"}
            await wait_until(lambda: simulator.subscriptions() == [{NIFTY: Mode.QUOTE}])


async def test_first_tick_readiness(sim: tuple[KiteSimulator, str]) -> None:
    simulator, url = sim
    with trio.fail_after(10):
        async with open_market_data(broker(url)) as md:
            async with md.subscribe(["NSE:INFY", "NSE:NIFTY 50"]) as sub:
                await sub.wait_ready()
                # Ready: a tick of every symbol is already in this subscriber's queue.
                seen = {e.symbol for e in await sub.receive_batch() if isinstance(e, Tick)}
                assert seen == {"NSE:INFY", "NSE:NIFTY 50"}
            simulator.go_silent()
            async with md.subscribe(["NSE:TCS"]) as quiet:
                with trio.move_on_after(1.0) as scope:
                    await quiet.wait_ready()
                assert scope.cancelled_caught  # no tick: not ready, and the caller's timeout rules
            simulator.go_silent(False)


async def test_a_late_joiner_is_ready_only_once_a_tick_reached_it(sim: tuple[KiteSimulator, str]) -> None:
    """Another subscriber having had ticks of a symbol does not make a newcomer ready."""
    simulator, url = sim
    with trio.fail_after(10):
        async with open_market_data(broker(url)) as md, md.subscribe(["NSE:INFY"]) as first:
            await first.wait_ready()
            simulator.go_silent()  # the connection stays up (well within the watchdog), ticks stop
            async with md.subscribe(["NSE:INFY"]) as second:
                with trio.move_on_after(0.3) as scope:
                    await second.wait_ready()
                assert scope.cancelled_caught
                simulator.go_silent(False)
                await second.wait_ready()
                assert "NSE:INFY" in {e.symbol for e in await second.receive_batch() if isinstance(e, Tick)}


async def test_requests_and_connections_go_through_the_broker_rate_limiter(
    sim: tuple[KiteSimulator, str],
) -> None:
    """Every control message and connection attempt takes a token from the broker's bucket: five
    separate adds (a subscribe and a mode message each) at 20 per second, burst 1, must be paced."""
    simulator, url = sim
    symbols = ["NSE:INFY", "NSE:RELIANCE", "NSE:TCS", "NSE:NIFTY 50", "NSE:SBIN"]
    with trio.fail_after(10):
        async with open_market_data(broker(url, rate_limit=RateLimit(rate=20, burst=1))) as md:
            async with md.subscribe([symbols[0]]) as sub:
                started = trio.current_time()
                for symbol in symbols[1:]:
                    await sub.add([symbol])
                elapsed = trio.current_time() - started
                # 4 adds x 2 messages, one token per 50 ms: at least 7 waits.
                assert elapsed >= 7 * 0.05 * 0.9
                assert md.statistics().brokers[0].rate_limited_seconds >= 7 * 0.05 * 0.9
                await wait_until(lambda: len(simulator.subscriptions()[0]) == len(symbols))


async def test_status_and_gap_events_around_a_forced_disconnect(sim: tuple[KiteSimulator, str]) -> None:
    simulator, url = sim
    with trio.fail_after(10):
        async with open_market_data(broker(url)) as md, md.subscribe(["NSE:INFY"]) as sub:
            await sub.wait_ready()
            simulator.drop_connections()
            statuses: list[Event] = []
            async for event in sub:
                if not isinstance(event, Tick):
                    statuses.append(event)
                if isinstance(event, Gap):
                    break
            kinds = [type(e) for e in statuses]
            assert kinds[-4:] == [Reconnecting, Connected, Resubscribed, Gap]
            assert Disconnected in kinds
            gap = statuses[-1]
            assert isinstance(gap, Gap)
            assert gap.symbols == ("NSE:INFY",)
            assert 0 <= gap.duration < 5
            await next_tick(sub, "NSE:INFY")
            assert md.statistics().brokers[0].connections[0].reconnects == 1


async def test_stale_symbols_are_reported(nursery: trio.Nursery) -> None:
    simulator = KiteSimulator(tick_interval=0.02)
    url = await nursery.start(simulator.serve)
    with trio.fail_after(10):
        async with open_market_data(broker(url), stale_after=0.3) as md:
            async with md.subscribe(["NSE:INFY", "NSE:RELIANCE"]) as sub:
                await sub.wait_ready()
                simulator.go_silent()  # the connection stays up, heartbeats stop too
                stale = None
                async for event in sub:
                    if isinstance(event, Stale):
                        stale = event
                        break
                assert stale is not None
                assert stale.symbols == ("NSE:INFY", "NSE:RELIANCE")
                assert stale.after == 0.3
                simulator.go_silent(False)


@pytest.mark.parametrize("policy", [Overflow.DROP_OLDEST, Overflow.DROP_NEWEST, Overflow.CONFLATE])
async def test_a_stalled_consumer_never_stalls_the_others(
    sim: tuple[KiteSimulator, str], policy: Overflow
) -> None:
    _, url = sim
    symbols = ["NSE:INFY", "NSE:RELIANCE", "NSE:TCS", "NSE:NIFTY 50"]
    with trio.fail_after(15):
        async with (
            open_market_data(broker(url)) as md,
            md.subscribe(symbols, buffer=3, overflow=policy) as stalled,
            md.subscribe(symbols) as healthy,
        ):
            received = 0
            statuses: list[Event] = []
            while received < 200:  # ~50 frames
                batch = await healthy.receive_batch()
                received += sum(isinstance(e, Tick) for e in batch)
                statuses += [e for e in batch if not isinstance(e, Tick)]
            # The reader kept pace: no reconnect, and the manager took in at least what the healthy one got.
            assert statuses == []
            assert md.statistics().brokers[0].connections[0].reconnects == 0
            assert md.statistics().ticks_in >= received
            stats = stalled.statistics().queue
            assert stats.received >= 150
            assert stats.depth <= 3
            # Every tick not waiting is accounted for: lost (dropped) or, conflating, replaced by a newer one.
            assert stats.dropped + stats.conflated == stats.received - stats.depth
            assert (stats.conflated > 0) is (policy is Overflow.CONFLATE)
            assert healthy.statistics().queue.dropped == 0
            assert md.statistics().dropped == stats.dropped
            assert md.statistics().conflated == stats.conflated
            pending = [e for e in await stalled.receive_batch() if isinstance(e, Tick)]
            if policy is Overflow.CONFLATE:
                assert len({p.symbol for p in pending}) == len(pending)  # one (the latest) per symbol
            else:
                assert len(pending) == 3


async def test_block_policy_ends_only_the_slow_subscription(sim: tuple[KiteSimulator, str]) -> None:
    _, url = sim
    with trio.fail_after(15):
        async with (
            open_market_data(broker(url)) as md,
            md.subscribe(["NSE:INFY", "NSE:TCS"], buffer=5, overflow=Overflow.BLOCK) as slow,
            md.subscribe(["NSE:INFY"]) as fine,
        ):
            for _ in range(40):
                await next_tick(fine)
            with pytest.raises(SlowConsumerError):
                async for _event in slow:
                    await trio.sleep(1)  # far too slow
            for _ in range(5):
                await next_tick(fine)


async def test_sharding_7000_over_three_connections_and_the_cap(nursery: trio.Nursery) -> None:
    simulator = KiteSimulator(tick_interval=2.0, synthetic=True, heartbeat_interval=1.0)
    url = await nursery.start(simulator.serve)
    rows = ["instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,"
            "lot_size,instrument_type,segment,exchange"]  # fmt: skip
    for i in range(1, 9002):
        rows.append(f"{(100000 + i) << 8 | 1},{100000 + i},SYN{i},SYNTHETIC,0,,0,0.05,1,EQ,NSE,NSE")
    csv_text = "\n".join(rows) + "\n"
    kite = KiteBroker(
        DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, instruments=csv_text, rate_limit=RateLimit(1000, 1000)
    )
    symbols = [f"NSE:SYN{i}" for i in range(1, 9002)]
    with trio.fail_after(60):
        async with open_market_data(kite) as md:
            async with md.subscribe(
                symbols[:7000], mode=Mode.LTP, buffer=100_000, overflow=Overflow.CONFLATE
            ):
                await wait_until(lambda: sorted(map(len, simulator.subscriptions())) == [1000, 3000, 3000])
                counts = [c.instruments for c in md.statistics().brokers[0].connections]
                assert counts == [3000, 3000, 1000]
                async with md.subscribe(symbols[7000:9000], mode=Mode.LTP, overflow=Overflow.CONFLATE):
                    assert [c.instruments for c in md.statistics().brokers[0].connections] == [
                        3000,
                        3000,
                        3000,
                    ]
                    with pytest.raises(SubscriptionLimitError, match="9000"):
                        async with md.subscribe([symbols[9000]]):
                            pytest.fail("the 9001st must be refused")  # pragma: no cover
                    # An instrument already held costs nothing more.
                    async with md.subscribe([symbols[0]], mode=Mode.LTP):
                        pass
                assert simulator.statistics().open_connections == 3


async def test_a_broker_refusing_credentials_fails_the_subscribe(sim: tuple[KiteSimulator, str]) -> None:
    _, url = sim
    bad = KiteBroker(DEMO_API_KEY, "nope", url=url, instruments=kite_instruments_csv())
    with trio.fail_after(10):
        async with open_market_data(bad) as md:
            with pytest.raises(AuthenticationError):
                async with md.subscribe(["NSE:INFY"]):
                    pytest.fail("must not subscribe")  # pragma: no cover


async def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        async with open_market_data():
            pass  # pragma: no cover
    kite = KiteBroker(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url="ws://127.0.0.1:1", instruments="")
    with pytest.raises(ConfigurationError):
        async with open_market_data(kite, kite):
            pass  # pragma: no cover
    with pytest.raises(ConfigurationError):
        async with open_market_data(kite, stale_after=0):
            pass  # pragma: no cover
    assert "nope" not in repr(KiteBroker(DEMO_API_KEY, "nope"))


async def test_a_routing_bug_ends_that_connection_loudly_and_the_manager_goes_on(
    sim: tuple[KiteSimulator, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The router runs in the feed's reader task: an exception there ends that connection's
    subscriptions with the error (never a silent stall), and later subscriptions open a new connection."""
    simulator, url = sim
    route = MarketData._route
    broken = True

    def buggy(self: MarketData, state: Any, shard: Any, batch: list[Event]) -> None:
        if broken and any(isinstance(e, Tick) for e in batch):
            raise ZeroDivisionError("a bug in the router")
        route(self, state, shard, batch)

    monkeypatch.setattr(MarketData, "_route", buggy)
    with trio.fail_after(10):
        async with open_market_data(broker(url)) as md:
            async with md.subscribe(["NSE:INFY"]) as sub:
                with pytest.raises(ZeroDivisionError, match="router"):
                    async for _event in sub:
                        pass
                await wait_until(lambda: not md.statistics().brokers[0].connections[0].connected)
                broken = False
                # The failed subscription is still open; a newcomer must not join the dead connection,
                # nor inherit the dead subscription's mode (QUOTE): it gets LTP, and every tick it is due.
                async with md.subscribe(["NSE:INFY"], mode=Mode.LTP) as again:
                    tick = await next_tick(again)
                    assert (tick.symbol, tick.mode) == ("NSE:INFY", Mode.LTP)
                    assert [c.connection for c in md.statistics().brokers[0].connections] == [0, 1]
                    await wait_until(lambda: {INFY: Mode.LTP} in simulator.subscriptions())
                    stats = md.statistics()
                    assert stats.brokers[0].instruments == 1
                    assert stats.ticks_out <= stats.ticks_in  # nothing routed to the ended subscription
                with pytest.raises(FeedClosedError):
                    await sub.add(["NSE:TCS"])  # an ended subscription changes nothing upstream
            async with md.subscribe(["NSE:TCS"]) as other:
                assert (await next_tick(other)).symbol == "NSE:TCS"
            assert md.statistics().brokers[0].connections[0].instruments == 0
            assert md.statistics().brokers[0].instruments == 0  # nothing left behind
    # A bug (not a broker failure) is logged with its traceback.
    failures = [r for r in caplog.records if r.name == "trading_ws.manager" and "failed" in r.getMessage()]
    assert failures
    assert failures[0].exc_info is not None


async def test_the_instrument_master_is_loaded_once_per_manager(sim: tuple[KiteSimulator, str]) -> None:
    _, url = sim
    loads = 0

    async def master() -> str:
        nonlocal loads
        loads += 1
        await trio.lowlevel.checkpoint()
        return kite_instruments_csv()

    kite = KiteBroker(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, instruments=master)
    with trio.fail_after(10):
        async with open_market_data(kite) as md:
            async with trio.open_nursery() as nursery:  # concurrent first subscribes share one load
                for symbols in (["NSE:INFY"], ["NSE:TCS"], ["NSE:RELIANCE"]):
                    nursery.start_soon(subscribe_once, md, symbols)
            async with md.subscribe(["NSE:INFY"]) as sub:
                await sub.add(["NSE:SBIN"])
    assert loads == 1


async def subscribe_once(md: MarketData, symbols: list[str]) -> None:
    async with md.subscribe(symbols) as sub:
        await sub.wait_ready()


async def test_the_master_downloads_from_the_rest_api(nursery: trio.Nursery) -> None:
    """With ``instruments=None`` the master comes from ``GET {api_url}/instruments`` (gzip, as Kite sends
    it), authenticated with the keys; refused keys fail the subscribe with AuthenticationError."""
    simulator = KiteSimulator(tick_interval=0.02, seed=3)
    url = await nursery.start(simulator.serve)
    rest = await nursery.start(simulator.serve_rest)
    assert rest.startswith("http://127.0.0.1:")
    with trio.fail_after(10):
        kite = KiteBroker(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, api_url=rest)
        async with open_market_data(kite) as md, md.subscribe(["NSE:INFY", "NFO:NIFTY26DECFUT"]) as sub:
            await sub.wait_ready()
        bad = KiteBroker(DEMO_API_KEY, "expired", url=url, api_url=rest)
        async with open_market_data(bad) as md:
            with pytest.raises(AuthenticationError, match="403"):
                async with md.subscribe(["NSE:INFY"]):
                    pytest.fail("must not subscribe")  # pragma: no cover
        with socket.socket() as closed:  # a port nothing listens on
            closed.bind(("127.0.0.1", 0))
            dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
            async with open_market_data(
                KiteBroker(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, api_url=dead)
            ) as md:
                with pytest.raises(ConnectError, match="download"):
                    async with md.subscribe(["NSE:INFY"]):
                        pytest.fail("must not subscribe")  # pragma: no cover


async def test_the_simulator_rest_api_answers_like_kite(nursery: trio.Nursery) -> None:
    simulator = KiteSimulator()
    rest = await nursery.start(simulator.serve_rest)
    auth = {"X-Kite-Version": "3", "Authorization": f"token {DEMO_API_KEY}:{DEMO_ACCESS_TOKEN}"}
    with trio.fail_after(10):
        async with httpx.AsyncClient() as client:
            nfo = await client.get(rest + "/instruments/NFO", headers=auth)
            assert nfo.status_code == 200
            assert nfo.headers["content-encoding"] == "gzip"
            rows = nfo.text.splitlines()
            assert rows[0].startswith("instrument_token,exchange_token,tradingsymbol")
            assert len(rows) > 1
            assert all(row.endswith(",NFO") for row in rows[1:])
            everything = await client.get(rest + "/instruments", headers=auth)
            assert len(everything.text.splitlines()) == len(simulator.instruments) + 1
            refused = await client.get(rest + "/instruments", headers={"Authorization": "token a:b"})
            assert refused.status_code == 403
            assert refused.json()["error_type"] == "TokenException"
            assert (await client.get(rest + "/quote", headers=auth)).status_code == 404
            assert (await client.get(rest + "/instruments/NSE/extra", headers=auth)).status_code == 404
            assert (await client.post(rest + "/instruments", headers=auth)).status_code == 405
            head = await client.head(rest + "/instruments", headers=auth)
            assert head.status_code == 200
            assert head.content == b""
            assert head.headers["content-length"] == everything.headers["content-length"]


async def test_the_download_ignores_proxy_settings_over_plain_http(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over plain http a proxy would see the token in clear: environment proxies are not used."""
    simulator = KiteSimulator()
    rest = await nursery.start(simulator.serve_rest)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # the discard port: nothing answers there
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    with trio.fail_after(10):
        master = await KiteBroker(DEMO_API_KEY, DEMO_ACCESS_TOKEN, api_url=rest).load_instruments()
    assert "NSE:INFY" in master


def test_api_url_and_keys_are_checked_without_echoing_secrets() -> None:
    for bad in (
        "http://user:s3cr3t@127.0.0.1:1",
        "https://api.example.com/?token=s3cr3t",
        "https://h/#s3cr3t",
    ):
        with pytest.raises(ConfigurationError) as info:
            KiteBroker(DEMO_API_KEY, DEMO_ACCESS_TOKEN, api_url=bad)
        assert "s3cr3t" not in str(info.value)
    with pytest.raises(ConfigurationError, match="access_token must be printable ASCII") as info:
        KiteBroker(DEMO_API_KEY, "s3cr3t\u00e9")
    assert "s3cr3t" not in str(info.value)
    KiteBroker(DEMO_API_KEY, DEMO_ACCESS_TOKEN, api_url="http://[::1]:8080/")


def test_plain_http_api_url_is_refused_off_loopback() -> None:
    with pytest.raises(ConfigurationError, match="unencrypted"):
        KiteBroker(DEMO_API_KEY, DEMO_ACCESS_TOKEN, api_url="http://api.example.com")
    with pytest.raises(ConfigurationError, match="https"):
        KiteBroker(DEMO_API_KEY, DEMO_ACCESS_TOKEN, api_url="ftp://api.example.com")
    KiteBroker(DEMO_API_KEY, DEMO_ACCESS_TOKEN, api_url="http://api.example.com", allow_insecure=True)


async def test_the_rest_root_is_a_usable_url_on_ipv6_loopback(nursery: trio.Nursery) -> None:
    simulator = KiteSimulator()
    try:
        rest = await nursery.start(simulator.serve_rest, "::1")
    except OSError:  # pragma: no cover - a machine without IPv6 loopback
        pytest.skip("no IPv6 loopback here")
    assert rest.startswith("http://[::1]:")
    with trio.fail_after(10):
        master = await KiteBroker(DEMO_API_KEY, DEMO_ACCESS_TOKEN, api_url=rest).load_instruments()
    assert "NSE:INFY" in master
