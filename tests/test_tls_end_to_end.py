"""Everything over TLS, as the real brokers speak it: the Kite ticker (``wss://``) and its instrument
download (``https://``), the XTS REST session and Socket.IO (``https://`` and ``wss://``), through the
feeds and through the manager, against the simulators serving with a throwaway CA."""

from __future__ import annotations

import ssl

import pytest
import trio

from trading_ws import (
    ConfigurationError,
    KiteBroker,
    Mode,
    Tick,
    TLSError,
    XtsBroker,
    open_market_data,
)
from trading_ws.brokers.kite import open_kite_feed
from trading_ws.brokers.xts import open_xts_feed
from trading_ws.sim import (
    DEMO_ACCESS_TOKEN,
    DEMO_API_KEY,
    DEMO_APP_KEY,
    DEMO_SECRET_KEY,
    KiteSimulator,
    SimulatorTLS,
    XtsSimulator,
)

INFY = 408065
XTS_RELIANCE = (1, 2885)


@pytest.fixture
async def kite(nursery: trio.Nursery, sim_tls: SimulatorTLS) -> tuple[str, str]:
    simulator = KiteSimulator(tick_interval=0.05, seed=11)
    url = await nursery.start(lambda task_status: simulator.serve(tls=sim_tls, task_status=task_status))
    rest = await nursery.start(lambda task_status: simulator.serve_rest(tls=sim_tls, task_status=task_status))
    return url, rest


@pytest.fixture
async def xts(nursery: trio.Nursery, sim_tls: SimulatorTLS) -> str:
    simulator = XtsSimulator(tick_interval=0.05, seed=11)
    root: str = await nursery.start(lambda task_status: simulator.serve(tls=sim_tls, task_status=task_status))
    return root


async def test_the_simulators_speak_tls(kite: tuple[str, str], xts: str) -> None:
    url, rest = kite
    assert url.startswith("wss://")
    assert rest.startswith("https://")
    assert xts.startswith("https://")


async def test_kite_feed_over_wss(kite: tuple[str, str], sim_tls: SimulatorTLS) -> None:
    url, _ = kite
    with trio.fail_after(10):
        async with open_kite_feed(
            DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, ssl_context=sim_tls.client_context()
        ) as feed:
            await feed.subscribe([INFY], Mode.FULL)
            async for event in feed:
                if isinstance(event, Tick) and event.instrument_token == INFY:
                    assert event.depth is not None
                    break


async def test_xts_feed_over_https_and_wss(xts: str, sim_tls: SimulatorTLS) -> None:
    with trio.fail_after(10):
        async with open_xts_feed(
            DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=xts, ssl_context=sim_tls.client_context()
        ) as feed:
            await feed.subscribe([XTS_RELIANCE], Mode.QUOTE)
            async for event in feed:
                if isinstance(event, Tick) and (event.segment, event.instrument_token) == XTS_RELIANCE:
                    break
            assert feed.statistics().rest_requests >= 2  # login and subscribe went over https


async def test_the_manager_over_tls_with_both_brokers(
    kite: tuple[str, str], xts: str, sim_tls: SimulatorTLS
) -> None:
    """One context on each broker config serves its WebSocket and its REST calls: the Kite instrument
    master is downloaded over https, the XTS master and session too."""
    url, rest = kite
    context = sim_tls.client_context()
    brokers: list[KiteBroker | XtsBroker] = [
        KiteBroker(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, api_url=rest, ssl_context=context),
        XtsBroker(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=xts, ssl_context=context),
    ]
    with trio.fail_after(20):
        async with (
            open_market_data(*brokers) as md,
            md.subscribe(["NSE:INFY"], mode=Mode.QUOTE, broker="kite") as kite_sub,
            md.subscribe(["NSE:RELIANCE"], mode=Mode.QUOTE, broker="xts") as xts_sub,
        ):
            await kite_sub.wait_ready()
            await xts_sub.wait_ready()
            for sub, symbol in ((kite_sub, "NSE:INFY"), (xts_sub, "NSE:RELIANCE")):
                async for event in sub:
                    if isinstance(event, Tick):
                        assert event.symbol == symbol
                        break


async def test_without_the_ca_every_surface_fails_at_once(kite: tuple[str, str], xts: str) -> None:
    """The system's trust store does not know the simulators' CA: the ticker, the instrument download and
    the XTS login each fail at once with TLSError saying why (verification is never off)."""
    url, rest = kite
    default = ssl.create_default_context()
    start = trio.current_time()
    with pytest.raises(TLSError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, ssl_context=default):
            pytest.fail("untrusted")
    with pytest.raises(TLSError, match="certificate verify failed"):
        await KiteBroker(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, api_url=rest).load_instruments()
    with pytest.raises(TLSError, match="certificate verify failed"):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=xts):
            pytest.fail("untrusted")
    assert trio.current_time() - start < 3


def _unverifying(what: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    if what == "CERT_NONE":
        context.verify_mode = ssl.CERT_NONE
    return context


@pytest.mark.parametrize("what", ["CERT_NONE", "check_hostname=False"])
async def test_a_context_that_does_not_verify_is_refused(what: str, kite: tuple[str, str], xts: str) -> None:
    """Verification is always on: a context that would accept any certificate (and so hand the access
    token to whoever answers) is refused up front, on every entry point, before anything connects."""
    url, rest = kite
    context = _unverifying(what)
    with pytest.raises(ConfigurationError, match="must verify"):
        KiteBroker(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, api_url=rest, ssl_context=context)
    with pytest.raises(ConfigurationError, match="must verify"):
        XtsBroker(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=xts, ssl_context=context)
    with pytest.raises(ConfigurationError, match="must verify"):
        async with open_kite_feed(DEMO_API_KEY, DEMO_ACCESS_TOKEN, url=url, ssl_context=context):
            pytest.fail("refused")
    with pytest.raises(ConfigurationError, match="must verify"):
        async with open_xts_feed(DEMO_APP_KEY, DEMO_SECRET_KEY, root_url=xts, ssl_context=context):
            pytest.fail("refused")
