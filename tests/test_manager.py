"""The unified manager end to end against the Kite simulator over loopback (integration tests), and
`KiteBroker`'s instrument master (given, or downloaded from the simulator's REST API).

The manager's behaviours one by one (sharing, modes, readiness, pacing, gaps, staleness, overflow,
sharding, failures) are tested exactly against `trading_ws.testing.FakeBroker` under ``autojump_clock``
in tests/test_manager_fake.py, tests/test_manager_atomic.py and tests/test_manager_orders.py. The tests
here check that the same holds over the real protocol; they poll nothing: what the simulator holds is read
once a tick shows it has processed the requests before it (it answers on one connection, in order).
"""

from __future__ import annotations

import socket

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
    Gap,
    KiteBroker,
    Mode,
    Reconnecting,
    Resubscribed,
    Subscription,
    Tick,
    open_market_data,
)
from trading_ws._manager import MarketData
from trading_ws.testing import DEMO_ACCESS_TOKEN, DEMO_API_KEY, KiteSimulator, kite_instruments_csv

INFY, RELIANCE, TCS = 408065, 738561, 2953217

pytestmark = pytest.mark.simulator(tick_interval=0.02, seed=3)


def broker(url: str, **kwargs: object) -> KiteBroker:
    return KiteBroker(
        DEMO_API_KEY,
        DEMO_ACCESS_TOKEN,
        url=url,
        instruments=kite_instruments_csv(),
        backoff=Backoff(initial=0.05, jitter=0.0),
        **kwargs,  # type: ignore[arg-type]
    )


async def next_tick(sub: Subscription, symbol: str | None = None) -> Tick:
    async for event in sub:
        if isinstance(event, Tick) and (symbol is None or event.symbol == symbol):
            return event
    raise AssertionError("subscription ended")


async def test_two_users_share_one_upstream_and_one_leaving_keeps_the_other(
    kite_sim: tuple[KiteSimulator, str],
) -> None:
    simulator, url = kite_sim
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
            # Alice left too: nothing is held; a newcomer's first tick shows the simulator took it all.
            assert md.statistics().brokers[0].instruments == 0
            async with md.subscribe(["NSE:TCS"], mode=Mode.LTP) as carol:
                await next_tick(carol, "NSE:TCS")
                assert simulator.subscriptions() == [{TCS: Mode.LTP}]


async def test_mode_upgrade_reduction_and_downgrade(kite_sim: tuple[KiteSimulator, str]) -> None:
    simulator, url = kite_sim
    with trio.fail_after(15):
        async with open_market_data(broker(url)) as md, md.subscribe(["NSE:INFY"], mode=Mode.LTP) as light:
            async with md.subscribe(["NSE:INFY"], mode=Mode.FULL) as heavy:
                full = await next_tick(heavy)
                assert simulator.subscriptions() == [{INFY: Mode.FULL}]
                while (reduced := await next_tick(light)).received_at < full.received_at:
                    pass
                assert (full.mode, reduced.mode) == (Mode.FULL, Mode.LTP)
                assert full.depth is not None
                assert (reduced.depth, reduced.ohlc, reduced.symbol) == (None, None, "NSE:INFY")
            # The FULL subscriber left: upstream goes down to the highest mode still wanted.
            async with md.subscribe(["NSE:TCS"], mode=Mode.LTP) as probe:
                await next_tick(probe, "NSE:TCS")  # sent after the downgrade, on the same connection
                assert simulator.subscriptions() == [{INFY: Mode.LTP, TCS: Mode.LTP}]
            assert (await next_tick(light, "NSE:INFY")).mode is Mode.LTP


async def test_status_and_gap_events_around_a_forced_disconnect(kite_sim: tuple[KiteSimulator, str]) -> None:
    simulator, url = kite_sim
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


async def test_a_broker_refusing_credentials_fails_the_subscribe(kite_sim: tuple[KiteSimulator, str]) -> None:
    _, url = kite_sim
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


async def test_the_instrument_master_is_loaded_once_per_manager(kite_sim: tuple[KiteSimulator, str]) -> None:
    _, url = kite_sim
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


async def test_the_master_downloads_from_the_rest_api(
    nursery: trio.Nursery, kite_sim: tuple[KiteSimulator, str]
) -> None:
    """With ``instruments=None`` the master comes from ``GET {api_url}/instruments`` (gzip, as Kite sends
    it), authenticated with the keys; refused keys fail the subscribe with AuthenticationError."""
    simulator, url = kite_sim
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
