"""The Kite simulator: its universe and random walk, its protocol, its fault knobs, the official client."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from urllib.parse import quote

import attrs
import pytest
import trio
import trio_websocket
from hypothesis import given, settings, strategies as st
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection

from trading_ws import BrokerError, BrokerMessage, ConfigurationError, DecodeError, Mode, OrderUpdate, Tick
from trading_ws.brokers.kite import decode_frame, encode_control, encode_frame, price_divisor
from trading_ws.sim import (
    DEMO_ACCESS_TOKEN,
    DEMO_API_KEY,
    KITE_CSV_HEADER,
    UNIVERSE,
    KiteSimulator,
    Market,
    find_instrument,
    kite_instruments_csv,
)

INFY = 408065
RELIANCE = 738561
NIFTY_50 = 256265
SEGMENT_IDS = {"NSE": 1, "NFO-FUT": 2, "NFO-OPT": 2, "CDS-FUT": 3, "BSE": 4, "BCD-FUT": 6, "INDICES": 9}
SEGMENT_IDS["NCO-FUT"] = 12
NOW = 1_780_000_000.0  # an arbitrary wall-clock instant for Market tests


def _query(api_key: str = DEMO_API_KEY, access_token: str = DEMO_ACCESS_TOKEN) -> str:
    return f"/?api_key={api_key}&access_token={access_token}"


@asynccontextmanager
async def _client(url: str, query: str | None = None) -> AsyncIterator[WebSocketConnection]:
    async with trio_websocket.open_websocket_url(url + (query if query is not None else _query())) as ws:
        yield ws


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    return host, int(port)


@asynccontextmanager
async def _owned_client(url: str) -> AsyncIterator[WebSocketConnection]:
    """A client on a TCP stream the test owns and closes.

    trio-websocket 0.12's ``open_websocket_url`` leaves its socket open when the server refuses the
    handshake or drops the connection (a ResourceWarning, an error here).
    """
    host, port = _address(url)
    async with await trio.open_tcp_stream(host, port) as stream, trio.open_nursery() as nursery:
        ws = await trio_websocket.wrap_client_stream(nursery, stream, host, _query())
        try:
            yield ws
        finally:
            await ws.aclose()


async def _refused(url: str, query: str) -> ConnectionRejected:
    """The refusal of a handshake, made on a TCP stream the test owns and closes (see `_owned_client`)."""
    host, port = _address(url)
    async with await trio.open_tcp_stream(host, port) as stream:
        with pytest.RaisesGroup(ConnectionRejected) as info:
            async with trio.open_nursery() as nursery:
                await trio_websocket.wrap_client_stream(nursery, stream, host, query or "/")
    refusal = info.value.exceptions[0]
    assert isinstance(refusal, ConnectionRejected)
    return refusal


async def _ticks(ws: WebSocketConnection) -> list[Tick]:
    """The ticks of the next data frame (heartbeats and text messages skipped)."""
    while True:
        message = await ws.get_message()
        if isinstance(message, bytes) and len(message) > 1:
            ticks = decode_frame(message)
            assert all(isinstance(t, Tick) for t in ticks)
            return [t for t in ticks if isinstance(t, Tick)]


async def _text(ws: WebSocketConnection) -> str:
    """The next text message (binary messages skipped)."""
    while True:
        message = await ws.get_message()
        if isinstance(message, str):
            return message


async def _quiet_for(ws: WebSocketConnection, seconds: float) -> list[str | bytes]:
    """Read until nothing arrives for `seconds`; return what arrived."""
    seen: list[str | bytes] = []
    while True:
        with trio.move_on_after(seconds) as scope:
            seen.append(await ws.get_message())
        if scope.cancelled_caught:
            return seen


async def _wait_for(predicate: Callable[[], bool]) -> None:
    """Poll `predicate` (state the simulator updates between network events) for up to 2 seconds."""
    for _ in range(200):
        if predicate():
            return
        await trio.sleep(0.01)
    raise AssertionError("the condition did not become true within 2 s")


# ---------------------------------------------------------------------------------------------------------
# The universe


def test_universe_tokens_are_well_formed() -> None:
    segments = set()
    for instrument in UNIVERSE:
        segment_id = SEGMENT_IDS[instrument.kite_segment]
        assert instrument.kite_token == (instrument.exchange_token << 8) | segment_id
        assert instrument.kite_segment_id == segment_id
        assert instrument.tradable == (segment_id != 9)
        assert find_instrument(instrument.symbol) is instrument
        assert find_instrument(instrument.kite_token) is instrument
        segments.add(segment_id)
    assert segments == {1, 2, 3, 4, 6, 9, 12}
    infy = find_instrument("NSE:INFY")
    assert (infy.kite_token, infy.exchange_token, infy.xts_segment, infy.xts_instrument_id) == (
        408065,
        1594,
        1,
        1594,
    )
    assert find_instrument(738561).symbol == "NSE:RELIANCE"
    assert find_instrument("NSE:NIFTY 50").kite_token == NIFTY_50
    assert find_instrument("NSE:NIFTY BANK").kite_token == 260105
    assert find_instrument("BSE:SENSEX").kite_token == 265
    assert {find_instrument(s).kite_token for s in ("NSE:TCS", "NSE:HDFCBANK", "NSE:SBIN")} == {
        2953217,
        341249,
        779521,
    }


def test_find_instrument_unknown_raises_key_error() -> None:
    with pytest.raises(KeyError, match="NSE:NOPE"):
        find_instrument("NSE:NOPE")
    with pytest.raises(KeyError, match="12345"):
        find_instrument(12345)


def test_instrument_rejects_inconsistent_token() -> None:
    with pytest.raises(ValueError, match="kite_token"):
        attrs.evolve(find_instrument("NSE:INFY"), kite_token=408066)


def test_instruments_csv() -> None:
    lines = kite_instruments_csv().splitlines()
    assert lines[0] == KITE_CSV_HEADER
    assert lines[0].split(",") == [
        "instrument_token",
        "exchange_token",
        "tradingsymbol",
        "name",
        "last_price",
        "expiry",
        "strike",
        "tick_size",
        "lot_size",
        "instrument_type",
        "segment",
        "exchange",
    ]
    assert "408065,1594,INFY,INFOSYS,1561.3,,0,0.05,1,EQ,NSE,NSE" in lines
    assert len(lines) == len(UNIVERSE) + 1
    option = next(line for line in lines if ",CE," in line).split(",")
    assert option[5] == "2026-12-29"
    assert option[6] == "26000"
    assert option[10:] == ["NFO-OPT", "NFO"]


# ---------------------------------------------------------------------------------------------------------
# The random walk


def test_market_ticks_round_trip_through_the_codec_in_every_segment_and_mode() -> None:
    market = Market(seed=7)
    for step in range(300):
        market.step(NOW + step * 0.2)
    for instrument in UNIVERSE:
        token = instrument.kite_token
        divisor = price_divisor(token)
        raw_tick = round(instrument.tick_size * divisor)
        for mode in Mode:
            tick = market.tick(token, mode, NOW + 60)
            (decoded,) = decode_frame(encode_frame([tick]), received_at=tick.received_at)
            assert decoded == tick
            assert tick.mode is mode
            assert tick.tradable is instrument.tradable
            assert round(tick.last_price * divisor) % raw_tick == 0
            assert abs(tick.last_price / instrument.base_price - 1) < 0.2
        full = market.tick(token, Mode.FULL, NOW + 60)
        assert full.exchange_time is not None
        assert full.exchange_time.timestamp() == int(NOW + 60)
        assert full.exchange_time.utcoffset() is not None
        assert full.ohlc is not None
        assert full.ohlc.close == instrument.base_price
        assert full.ohlc.low <= full.last_price <= full.ohlc.high
        if instrument.tradable:
            assert full.depth is not None
            assert len(full.depth.bids) == len(full.depth.asks) == 5
            assert full.depth.bids[0].price <= full.last_price < full.depth.asks[0].price
            assert full.last_trade_time is not None
            assert (full.oi or 0) > 0 if instrument.instrument_type != "EQ" else full.oi == 0
        else:
            assert full.depth is None
            assert full.volume is None


def test_market_is_deterministic_per_seed() -> None:
    a, b, c = Market(seed=1), Market(seed=1), Market(seed=2)
    for step in range(50):
        for market in (a, b, c):
            market.step(NOW + step)
    assert [a.tick(i.kite_token, Mode.FULL, NOW) for i in UNIVERSE] == [
        b.tick(i.kite_token, Mode.FULL, NOW) for i in UNIVERSE
    ]
    assert [a.price(i.kite_token) for i in UNIVERSE] != [c.price(i.kite_token) for i in UNIVERSE]
    assert a.steps == 50


def test_market_prices_move() -> None:
    market = Market()
    before = [market.price(i.kite_token) for i in UNIVERSE]
    for step in range(20):
        market.step(NOW + step)
    after = [market.price(i.kite_token) for i in UNIVERSE]
    assert sum(x != y for x, y in zip(before, after, strict=True)) >= len(UNIVERSE) - 2


def test_unknown_tokens_have_no_data_unless_synthetic() -> None:
    token = 123456 << 8 | 1
    plain = Market()
    assert not plain.has_data(token)
    with pytest.raises(KeyError):
        plain.tick(token, Mode.QUOTE, NOW)
    synthetic = Market(synthetic=True)
    other = Market(synthetic=True)
    assert synthetic.has_data(token)
    for segment in (1, 2, 3, 6, 9, 12, 200):
        t = (98765 << 8) | segment
        tick = synthetic.tick(t, Mode.FULL, NOW)
        assert tick.last_price > 0
        assert tick.tradable == (segment != 9)
        assert tick == other.tick(t, Mode.FULL, NOW)  # derived from the token alone
        (decoded,) = decode_frame(encode_frame([tick]), received_at=tick.received_at)
        assert decoded == tick
    synthetic.step(NOW)
    assert synthetic.tick(token, Mode.LTP, NOW).last_price > 0


# ---------------------------------------------------------------------------------------------------------
# Handshake


async def test_bad_access_token_and_bad_api_key_get_403(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        sim = KiteSimulator(access_token="secret-token-1")
        url = await nursery.start(sim.serve)
        for query in (
            _query(access_token="wrong"),
            _query(api_key="wrong", access_token="secret-token-1"),
            "/?api_key=" + DEMO_API_KEY,
            "",
        ):
            refusal = await _refused(url, query)
            assert refusal.status_code == 403
            assert refusal.body is not None
            assert b"TokenException" in refusal.body
            assert b"secret-token-1" not in refusal.body
        assert sim.statistics().handshakes_rejected == {403: 4}
        assert "secret-token-1" not in repr(sim)
        async with _client(url, _query(access_token="secret-token-1")):
            pass
        assert sim.statistics().handshakes_accepted == 1


async def test_query_string_forms_of_every_client(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        token = "tok+en/=="
        sim = KiteSimulator(access_token=token)
        url = await nursery.start(sim.serve)
        # Python client: no path, nothing encoded; Go: encoded; JS: a path and an extra uid parameter.
        for query in (
            f"?api_key={DEMO_API_KEY}&access_token={token}",
            f"?access_token={quote(token, safe='')}&api_key={DEMO_API_KEY}",
            f"/?api_key={DEMO_API_KEY}&access_token={quote(token, safe='')}&uid=1700000000000",
        ):
            async with _client(url, query):
                pass
        assert sim.statistics().handshakes_accepted == 3


async def test_access_token_can_expire_while_serving(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        sim = KiteSimulator()
        url = await nursery.start(sim.serve)
        async with _client(url) as ws:
            sim.access_token = "tomorrows-token"
            refusal = await _refused(url, _query())
            assert refusal.status_code == 403
            await ws.send_message(encode_control("subscribe", [INFY]))
            assert (await _ticks(ws))[0].instrument_token == INFY  # open connections stay open
        async with _client(url, _query(access_token="tomorrows-token")):
            pass


async def test_fourth_connection_gets_429_until_one_closes(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        sim = KiteSimulator()
        url = await nursery.start(sim.serve)
        async with AsyncExitStack() as stack:
            first = await stack.enter_async_context(_client(url))
            for _ in range(2):
                await stack.enter_async_context(_client(url))
            assert sim.statistics().open_connections == 3
            refusal = await _refused(url, _query())
            assert refusal.status_code == 429
            await first.aclose()
            await _wait_for(lambda: sim.statistics().open_connections == 2)
            async with _client(url) as again:
                await again.send_message(encode_control("subscribe", [INFY]))
                assert len(await _ticks(again)) == 1
        assert sim.statistics().handshakes_rejected == {429: 1}
        assert sim.statistics().handshakes_accepted == 4


async def test_serve_refuses_non_loopback_hosts() -> None:
    with trio.fail_after(5):
        with pytest.raises(ConfigurationError, match="loopback"):
            await KiteSimulator().serve("0.0.0.0")
        assert issubclass(ConfigurationError, ValueError)
        with pytest.raises(RuntimeError):
            _ = KiteSimulator().url


BAD_PORTS = st.one_of(
    st.integers(max_value=-1),
    st.integers(min_value=65536),
    st.booleans(),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.none(),
)


@settings(max_examples=30, deadline=None)
@given(BAD_PORTS)
async def test_every_port_outside_0_to_65535_is_refused_before_listening(port: object) -> None:
    # 99999 used to listen on 34463 (99999 - 65536): the socket layer wraps some ports and refuses others.
    sim = KiteSimulator()
    with trio.fail_after(5):
        with pytest.raises(ConfigurationError, match="port"):
            await sim.serve("127.0.0.1", port)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="port"):
            await sim.serve_rest("127.0.0.1", port)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="not serving"):
        _ = sim.url


async def test_serve_reports_its_url(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        sim = KiteSimulator()
        url = await nursery.start(sim.serve)
        assert url.startswith("ws://127.0.0.1:")
        assert int(url.rsplit(":", 1)[1]) > 0
        assert sim.url == url
        with pytest.raises(OSError):  # the port is taken: a plain OSError, not an ExceptionGroup
            await nursery.start(KiteSimulator().serve, "127.0.0.1", _address(url)[1])
        with pytest.raises(RuntimeError, match="already serving"):
            await nursery.start(sim.serve)


# ---------------------------------------------------------------------------------------------------------
# Requests and data


async def test_subscribe_defaults_to_quote_mode(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        sim = KiteSimulator(tick_interval=0.05)
        url = await nursery.start(sim.serve)
        async with _client(url) as ws:
            await ws.send_message(encode_control("subscribe", [INFY, NIFTY_50]))
            message = await ws.get_message()
            while not (isinstance(message, bytes) and len(message) > 1):
                message = await ws.get_message()
            assert isinstance(message, bytes)
            # count, then (length, packet) for a 44-byte quote and a 28-byte index quote
            assert message[:4] == b"\x00\x02\x00\x2c"
            assert message[48:50] == b"\x00\x1c"
            assert len(message) == 78
            infy, nifty = decode_frame(message)
            assert isinstance(infy, Tick)
            assert isinstance(nifty, Tick)
            assert (infy.mode, nifty.mode) == (Mode.QUOTE, Mode.QUOTE)
            assert infy.tradable
            assert not nifty.tradable
            assert infy.depth is None
            assert infy.volume is not None
            assert infy.ohlc is not None
            assert sim.subscriptions() == [{INFY: Mode.QUOTE, NIFTY_50: Mode.QUOTE}]


async def test_full_mode_carries_depth(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        sim = KiteSimulator(tick_interval=0.05)
        url = await nursery.start(sim.serve)
        async with _client(url) as ws:
            await ws.send_message(encode_control("subscribe", [INFY]))
            await ws.send_message(encode_control("mode", [INFY], Mode.FULL))
            tick = (await _ticks(ws))[0]
            while tick.mode is not Mode.FULL:
                tick = (await _ticks(ws))[0]
            assert tick.depth is not None
            assert len(tick.depth.bids) == 5
            assert len(tick.depth.asks) == 5
            assert tick.exchange_time is not None
            assert tick.last_trade_time is not None
            assert tick.depth.bids[0].price <= tick.last_price < tick.depth.asks[0].price


async def test_mode_subscribes_an_unsubscribed_token(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        sim = KiteSimulator(tick_interval=0.05)
        url = await nursery.start(sim.serve)
        async with _client(url) as ws:
            await ws.send_message(encode_control("mode", [RELIANCE], Mode.LTP))
            ticks = await _ticks(ws)
            assert [(t.instrument_token, t.mode) for t in ticks] == [(RELIANCE, Mode.LTP)]
            assert ticks[0].ohlc is None
            assert sim.subscriptions() == [{RELIANCE: Mode.LTP}]


async def test_unsubscribe_stops_data(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        sim = KiteSimulator(tick_interval=0.05, heartbeat_interval=0.1)
        url = await nursery.start(sim.serve)
        async with _client(url) as ws:
            await ws.send_message(encode_control("subscribe", [INFY, RELIANCE]))
            assert len(await _ticks(ws)) == 2
            await ws.send_message(encode_control("unsubscribe", [INFY]))
            await _wait_for(lambda: sim.subscriptions() == [{RELIANCE: Mode.QUOTE}])
            await _quiet_for(ws, 0.0)  # whatever was in flight
            for _ in range(3):
                assert [t.instrument_token for t in await _ticks(ws)] == [RELIANCE]
            await ws.send_message(encode_control("unsubscribe", [RELIANCE, 999]))
            await _wait_for(lambda: sim.subscriptions() == [{}])
            frames_before = sim.statistics().frames_sent
            seen = [await ws.get_message() for _ in range(6)]
            # after at most the frame already in flight, only heartbeats
            assert seen[-3:] == [b"\x00"] * 3
            assert sim.statistics().frames_sent <= frames_before + 1


async def test_tokens_without_data_are_accepted_but_silent(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        sim = KiteSimulator(tick_interval=0.05)
        url = await nursery.start(sim.serve)
        async with _client(url) as ws:
            await ws.send_message(encode_control("subscribe", [123, INFY]))
            assert [t.instrument_token for t in await _ticks(ws)] == [INFY]
            assert sim.statistics().subscribed == (2,)


async def test_instrument_cap_refuses_the_excess(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        sim = KiteSimulator(synthetic=True, tick_interval=0.1)
        url = await nursery.start(sim.serve)
        async with _client(url) as ws:
            tokens = [(n << 8) | 1 for n in range(1, 3002)]
            await ws.send_message(encode_control("subscribe", tokens))
            (error,) = decode_frame(await _text(ws))
            assert isinstance(error, BrokerError)
            assert "Max instruments per connection exceeded" in error.text
            assert "1 token(s)" in error.text
            assert sim.statistics().subscribed == (3000,)
            assert tokens[-1] not in sim.subscriptions()[0]
            # the connection stays open and streams every subscribed token, 500 packets per frame at most
            counts: list[int] = []
            while sum(counts) < 3000:
                counts.append(len(await _ticks(ws)))
            assert max(counts) == 500


async def test_heartbeat_when_idle(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        sim = KiteSimulator(heartbeat_interval=0.1)
        url = await nursery.start(sim.serve)
        async with _client(url) as ws:
            start = trio.current_time()
            assert await ws.get_message() == b"\x00"
            assert await ws.get_message() == b"\x00"
            assert trio.current_time() - start >= 0.15
            assert decode_frame(b"\x00") == []
        assert sim.statistics().heartbeats_sent >= 2


async def test_no_heartbeats_while_data_flows(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        sim = KiteSimulator(tick_interval=0.05, heartbeat_interval=0.12)
        url = await nursery.start(sim.serve)
        async with _client(url) as ws:
            await ws.send_message(encode_control("subscribe", [INFY]))
            await _ticks(ws)
            messages = [await ws.get_message() for _ in range(8)]
            assert b"\x00" not in messages


async def test_every_divisor_segment_round_trips_the_market_prices(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        sim = KiteSimulator(tick_interval=0.5, seed=3)
        url = await nursery.start(sim.serve)
        async with _client(url) as ws:
            await ws.send_message(encode_control("mode", [i.kite_token for i in UNIVERSE], Mode.FULL))
            ticks = await _ticks(ws)
            assert [t.instrument_token for t in ticks] == [i.kite_token for i in UNIVERSE]
            assert {t.segment for t in ticks} == {1, 2, 3, 4, 6, 9, 12}
            for tick in ticks:
                assert tick.mode is Mode.FULL
                assert tick.exchange_time is not None
                expected = sim.market.tick(tick.instrument_token, Mode.FULL, tick.exchange_time.timestamp())
                assert tick == attrs.evolve(expected, received_at=tick.received_at)
                assert tick.last_price == sim.market.price(tick.instrument_token)
            usdinr = next(t for t in ticks if t.segment == 3)
            assert 60 < usdinr.last_price < 110
            assert round(usdinr.last_price, 4) == usdinr.last_price


async def test_bad_request_gets_an_error_text_and_the_connection_stays_open(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        sim = KiteSimulator(tick_interval=0.05)
        url = await nursery.start(sim.serve)
        async with _client(url) as ws:
            for bad in ("not json", '{"a": "subscribe", "v": ["INFY"]}', '{"a": "dance", "v": []}'):
                await ws.send_message(bad)
                (event,) = decode_frame(await _text(ws))
                assert isinstance(event, BrokerError)
                assert event.text.startswith("Invalid message")
            await ws.send_message(encode_control("subscribe", [INFY]))
            assert (await _ticks(ws))[0].instrument_token == INFY


# ---------------------------------------------------------------------------------------------------------
# Fault knobs


async def test_push_text_postbacks(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        sim = KiteSimulator()
        url = await nursery.start(sim.serve)
        async with _client(url) as a, _client(url) as b:
            order = {"order_id": "220303000308932", "status": "COMPLETE", "instrument_token": 779521}
            assert sim.push_text("order", order) == 2
            sim.push_text("message", "Markets close early today")
            for ws in (a, b):
                (update,) = decode_frame(await _text(ws))
                assert isinstance(update, OrderUpdate)
                assert update.order_id == "220303000308932"
                assert update.status == "COMPLETE"
                (message,) = decode_frame(await _text(ws))
                assert isinstance(message, BrokerMessage)
                assert message.text == "Markets close early today"
        assert sim.statistics().text_messages_sent == 4


async def test_go_silent_sends_nothing_and_keeps_the_connection_open(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        sim = KiteSimulator(tick_interval=0.02, heartbeat_interval=0.05)
        url = await nursery.start(sim.serve)
        async with _client(url) as ws:
            await ws.send_message(encode_control("subscribe", [INFY]))
            await _ticks(ws)
            sim.go_silent()
            await _quiet_for(ws, 0.1)  # drain what was already on the wire
            with trio.move_on_after(0.4) as scope:
                await ws.get_message()
            assert scope.cancelled_caught
            sim.push_text("message", "lost")  # dropped while silent
            with trio.move_on_after(0.2) as scope:
                await ws.get_message()
            assert scope.cancelled_caught
            assert sim.statistics().open_connections == 1
            sim.go_silent(False)
            ticks = await _ticks(ws)
            assert ticks[0].instrument_token == INFY


async def test_silent_server_does_not_answer_handshakes(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        sim = KiteSimulator()
        url = await nursery.start(sim.serve)
        sim.go_silent()
        host, port = _address(url)
        async with await trio.open_tcp_stream(host, port) as stream:
            with trio.move_on_after(0.3) as scope:
                async with trio.open_nursery() as client_nursery:
                    await trio_websocket.wrap_client_stream(client_nursery, stream, host, _query())
            assert scope.cancelled_caught
        sim.go_silent(False)
        async with _client(url):
            pass


async def test_drop_connections_aborts_without_close_frame(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        sim = KiteSimulator(tick_interval=0.05)
        url = await nursery.start(sim.serve)
        async with _owned_client(url) as ws, _owned_client(url):
            await ws.send_message(encode_control("subscribe", [INFY]))
            await _ticks(ws)
            assert sim.drop_connections() == 2
            assert sim.statistics().open_connections == 0
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await ws.get_message()
            assert info.value.reason is not None
            assert info.value.reason.code == 1006
            # a new connection is accepted at once
            async with _client(url) as again:
                await again.send_message(encode_control("subscribe", [INFY]))
                assert len(await _ticks(again)) == 1
        assert sim.drop_connections() == 0


async def test_send_garbage_replaces_data_frames(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        sim = KiteSimulator(tick_interval=0.05)
        url = await nursery.start(sim.serve)
        async with _client(url) as ws:
            await ws.send_message(encode_control("subscribe", [INFY, NIFTY_50]))
            await _ticks(ws)
            assert sim.send_garbage(2) == 1
            errors: list[DecodeError] = []
            while len(errors) < 2:
                message = await ws.get_message()
                assert isinstance(message, bytes)
                try:
                    decode_frame(message)
                except DecodeError as exc:
                    errors.append(exc)
                else:
                    assert not errors, "the two malformed frames are consecutive"
            assert "announces 3 packets but holds only 2" in str(errors[0])
            assert "unknown length 12" in str(errors[1])
            assert len(errors[1].events) == 2
            assert len(await _ticks(ws)) == 2  # then well-formed frames again
            assert sim.statistics().garbage_frames_sent == 2


async def test_reject_next(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        sim = KiteSimulator()
        url = await nursery.start(sim.serve)
        sim.reject_next(503, count=2)
        for _ in range(2):
            refusal = await _refused(url, _query())
            assert refusal.status_code == 503
        async with _client(url):
            pass
        assert sim.statistics().handshakes_rejected == {503: 2}
        with pytest.raises(ValueError):
            sim.reject_next(101)


async def test_statistics_count_frames_and_packets(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        sim = KiteSimulator(tick_interval=0.05)
        url = await nursery.start(sim.serve)
        async with _client(url) as ws:
            await ws.send_message(encode_control("subscribe", [INFY, RELIANCE, NIFTY_50]))
            for _ in range(3):
                await _ticks(ws)
            stats = sim.statistics()
            assert stats.frames_sent >= 3
            assert stats.packets_sent == 3 * stats.frames_sent
            assert stats.subscribed == (3,)
            assert stats.open_connections == 1
            assert stats.market_steps >= 3


async def test_configuration_is_validated() -> None:
    with pytest.raises(ConfigurationError):
        KiteSimulator(tick_interval=0)
    with pytest.raises(ConfigurationError):
        KiteSimulator(max_connections=0)
    with pytest.raises(ConfigurationError):
        KiteSimulator(max_packets_per_frame=70_000)


# ---------------------------------------------------------------------------------------------------------
# The official client, unchanged

_KITECONNECT_SCRIPT = r"""
import json, sys
from kiteconnect import KiteTicker

url, api_key, access_token = sys.argv[1:4]
kws = KiteTicker(api_key, access_token, root=url)
ticks = []

def on_connect(ws, response):
    ws.subscribe([408065])
    ws.set_mode(ws.MODE_FULL, [408065])

def on_ticks(ws, batch):
    ticks.extend(t for t in batch if t.get("mode") == "full")
    if len(ticks) >= 3:
        kws.stop()

kws.on_connect = on_connect
kws.on_ticks = on_ticks
kws.connect()
print(json.dumps(ticks, default=str))
"""


async def test_official_kiteconnect_client_works_unchanged(nursery: trio.Nursery) -> None:
    pytest.importorskip("kiteconnect")
    with trio.fail_after(30):
        sim = KiteSimulator(tick_interval=0.05)
        url = await nursery.start(sim.serve)
        result = await trio.run_process(
            [sys.executable, "-c", _KITECONNECT_SCRIPT, url, DEMO_API_KEY, DEMO_ACCESS_TOKEN],
            capture_stdout=True,
            capture_stderr=True,
        )
        ticks = json.loads(result.stdout)
        assert len(ticks) >= 3
        base = find_instrument(INFY).base_price
        for tick in ticks:
            assert tick["instrument_token"] == INFY
            assert tick["mode"] == "full"
            assert tick["tradable"] is True
            assert abs(tick["last_price"] / base - 1) < 0.2
            assert tick["ohlc"]["close"] == base
            assert len(tick["depth"]["buy"]) == len(tick["depth"]["sell"]) == 5
            assert tick["depth"]["buy"][0]["price"] <= tick["last_price"] < tick["depth"]["sell"][0]["price"]
        assert sim.statistics().handshakes_accepted == 1
