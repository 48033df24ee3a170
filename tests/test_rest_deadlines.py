"""The REST boundary against a hostile server: whole-call deadlines, mapped errors, bounded and scrubbed
answers, for every XTS route and the Kite instrument download.

The servers here are raw Trio TCP servers on loopback that write whatever bytes a test wants (a trickle of
one byte per second, a status line that is not one, a header block that never ends...). They sleep on
Trio's clock, so the tests that trickle run under `autojump_clock` and take no real time.

When an answer is cut short (too large, or its gzip stream is corrupt), httpx's nested async generators
(httpcore's body iterators) are left unexhausted; Trio finalizes them and warns with a ResourceWarning,
which Python ignores by default and this project's pytest settings make an error. That warning is
httpx's, not ours: it is ignored here.
"""

from __future__ import annotations

import gzip
import json
import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing
from hypothesis import example, given, settings, strategies as st

from trading_ws import (
    AuthenticationError,
    ConnectError,
    ConnectTimeout,
    DecodeError,
    KiteBroker,
    RateLimitedError,
    SubscriptionError,
    SubscriptionLimitError,
    TradingWsError,
    XtsBroker,
)
from trading_ws.brokers.kite import parse_instruments_csv
from trading_ws.brokers.xts import LoginRefusedError, XtsSession

SECRET = "Sk-9f8e7d6c5b4a"  # the XTS secret key
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJERU1PMDEifQ.c2lnbmF0dXJlLXNlY3JldA"  # the session token (a JWT)
APP_KEY = "app-key-1234"
KITE_KEY = "kite-api-key"
KITE_TOKEN = "kiteAccessToken0123456789abcdef"

RELIANCE = (1, 2885)

pytestmark = [
    pytest.mark.filterwarnings("ignore:Async generator 'httpx.:ResourceWarning"),
    pytest.mark.filterwarnings("ignore:Async generator 'httpcore.:ResourceWarning"),
]


@attrs.frozen
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Responder = Callable[[trio.SocketStream, Request], Awaitable[None]]


async def read_request(stream: trio.SocketStream, buffer: bytearray) -> Request | None:
    """One HTTP/1.1 request off `stream` (None at EOF); what follows it stays in `buffer`."""
    while b"\r\n\r\n" not in buffer:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = bytearray(rest)
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        body += chunk
    buffer[:] = body[length:]
    return Request(method, path, headers, bytes(body[:length]))


def http(status: int, body: bytes | str | dict[str, Any], *, extra: str = "") -> bytes:
    payload = json.dumps(body).encode() if isinstance(body, dict) else body
    payload = payload.encode() if isinstance(payload, str) else payload
    head = (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n{extra}\r\n"
    )
    return head.encode() + payload


def envelope(
    result: Any = None, *, kind: str = "success", code: str = "s-ok", description: str = "ok"
) -> dict[str, Any]:
    return {"type": kind, "code": code, "description": description, "result": result}


LOGIN_OK = http(200, envelope({"token": TOKEN, "userID": "DEMO01", "appVersion": "1"}))


async def trickle(stream: trio.SocketStream, data: bytes, interval: float = 1.0) -> None:
    """Write `data` one byte per `interval` seconds (Trio's clock)."""
    for i in range(len(data)):
        await stream.send_all(data[i : i + 1])
        await trio.sleep(interval)


@asynccontextmanager
async def raw_server(responder: Responder) -> AsyncIterator[tuple[str, list[Request]]]:
    """Serve `responder` on 127.0.0.1 until the block ends; yields the root URL and the requests seen."""
    seen: list[Request] = []

    async def handle(stream: trio.SocketStream) -> None:
        buffer = bytearray()
        try:
            while (request := await read_request(stream, buffer)) is not None:
                seen.append(request)
                await responder(stream, request)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        yield f"http://127.0.0.1:{port}", seen
        nursery.cancel_scope.cancel()


def route(request: Request) -> str:
    return request.path.split("?")[0].removeprefix("/apimarketdata")


def xts_server(answers: dict[str, Responder | bytes]) -> Responder:
    """A responder: the login answers at once unless `answers` says otherwise; each route gets its answer
    (bytes sent at once, or a function that writes whatever it likes)."""

    async def respond(stream: trio.SocketStream, request: Request) -> None:
        answer = answers.get(route(request), LOGIN_OK if route(request) == "/auth/login" else http(404, "{}"))
        if isinstance(answer, bytes):
            await stream.send_all(answer)
        else:
            await answer(stream, request)

    return respond


def trickling(data: bytes) -> Callable[[trio.SocketStream, Request], Awaitable[None]]:
    async def answer(stream: trio.SocketStream, request: Request) -> None:
        await trickle(stream, data)

    return answer


ROUTES = {  # a call -> the route its request goes to
    "/auth/login": "/auth/login",
    "subscribe": "/instruments/subscription",
    "unsubscribe": "/instruments/subscription",
    "quotes": "/instruments/quotes",
    "/auth/logout": "/auth/logout",
    "/instruments/master": "/instruments/master",
    "/instruments/indexlist": "/instruments/indexlist",
}


def session_for(root: str, **options: Any) -> XtsSession:
    return XtsSession(APP_KEY, SECRET, root_url=root, **options)


# ---------------------------------------------------------------------------------------------------------
# Whole-call deadlines


@pytest.mark.parametrize("call", sorted(ROUTES))
async def test_a_trickled_answer_times_out_on_every_xts_route(
    autojump_clock: trio.testing.MockClock, call: str
) -> None:
    """One byte a second never trips httpx's per-read timeout; the whole-call deadline ends it."""
    result = {"token": TOKEN, "userID": "DEMO01", "indexList": [], "listQuotes": []}
    body = envelope(result, description="x" * 300)
    slow = http(200, body)
    responder = xts_server({ROUTES[call]: trickling(slow)})
    async with raw_server(responder) as (root, _):
        async with session_for(root, timeout=3) as session:
            with trio.fail_after(1000):
                if call != "/auth/login":
                    await session.login()
                start = trio.current_time()
                with pytest.raises(ConnectTimeout, match="no complete answer within") as info:
                    await run_call(session, call)
                elapsed = trio.current_time() - start
    allowed = 60 if call == "/instruments/master" else 3  # the master gets at least 60 s
    assert allowed <= elapsed < allowed + 1
    assert f"{allowed:g} s" in str(info.value)
    assert isinstance(info.value.__cause__, trio.TooSlowError)


async def run_call(session: XtsSession, call: str) -> None:
    """Make `call` (a key of ROUTES); all but the login need the session logged in."""
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "/auth/login": session.login,
        "subscribe": lambda: session.subscribe([RELIANCE], 1501),
        "unsubscribe": lambda: session.unsubscribe([RELIANCE], 1501),
        "quotes": lambda: session.quotes([RELIANCE], 1501),
        "/auth/logout": session.logout,
        "/instruments/master": lambda: session.instrument_master(["NSECM"]),
        "/instruments/indexlist": lambda: session.index_list(1),
    }
    await calls[call]()


async def test_a_header_block_that_never_ends_times_out(autojump_clock: trio.testing.MockClock) -> None:
    async def endless(stream: trio.SocketStream, request: Request) -> None:
        await stream.send_all(b"HTTP/1.1 200 OK\r\n")
        while True:
            await stream.send_all(b"X-A: b\r\n")
            await trio.sleep(0.5)

    async with raw_server(xts_server({"/auth/login": endless})) as (root, _):
        async with session_for(root, timeout=2) as session:
            with trio.fail_after(100), pytest.raises(ConnectTimeout):
                await session.login()


async def test_the_callers_cancellation_is_not_a_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async with raw_server(xts_server({"/auth/login": trickling(LOGIN_OK)})) as (root, _):
        async with session_for(root, timeout=50) as session:
            with trio.move_on_after(2) as scope:
                await session.login()
            assert scope.cancelled_caught
            assert not session.logged_in


async def test_a_trickled_kite_download_times_out(autojump_clock: trio.testing.MockClock) -> None:
    csv_text = "instrument_token,exchange_token\n" * 50
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(csv_text), csv_text.encode())

    async def respond(stream: trio.SocketStream, request: Request) -> None:
        await trickle(stream, answer)

    async with raw_server(respond) as (root, _):
        broker = KiteBroker(KITE_KEY, KITE_TOKEN, api_url=root, download_timeout=5)
        start = trio.current_time()
        with trio.fail_after(1000), pytest.raises(ConnectTimeout, match="within 5 s"):
            await broker.load_instruments()
        assert trio.current_time() - start < 6


# ---------------------------------------------------------------------------------------------------------
# Hostile answers: every one a typed error, no secret and no control character in any message


def assert_clean(exc: BaseException, *secrets: str) -> None:
    """No secret and no raw CR/LF in the message, the causes, or the printed traceback."""
    printed = "".join(traceback.format_exception(exc))
    for secret in secrets:
        assert secret not in printed, printed
    message = str(exc)
    for control in "\r\n\x1b":
        assert control not in message, message
    cause: BaseException | None = exc
    while cause is not None:
        assert not any(secret in str(cause) for secret in secrets)
        cause = cause.__cause__ or cause.__context__


def check_error(exc: BaseException, *secrets: str) -> None:
    """A message of bounded length, free of `secrets` and control characters."""
    assert len(str(exc)) < 1000
    assert_clean(exc, *secrets)


def assert_logs_clean(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    for record in caplog.records:
        text = record.getMessage()
        assert not any(secret in text for secret in secrets), text
        assert "\r" not in text, text
        assert "\n" not in text, text


HOSTILE = f"Bad {SECRET} and {TOKEN}\r\nX-Injected: 1\x1b[31m\u2028"


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (f"HTTP/1.1 2OO {SECRET} {TOKEN}\r\n\r\n".encode(), ConnectError),  # not a status line
        (f"HTTX/9 200 OK\r\nA: {TOKEN}\r\n\r\n".encode(), ConnectError),
        (f"HTTP/1.1 200 OK\r\nBad Header {SECRET}\r\n\r\n".encode(), ConnectError),
        (b"HTTP/1.1 200 OK\r\n" + b"X-Flood: " + b"a" * 200_000 + b"\r\n\r\n", ConnectError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", ConnectError),  # not JSON
        (b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n[[[[[[[[[[[[", ConnectError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n\xff\xfe\xfd\xfc", ConnectError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n" + b"[" * 2_000_000, ConnectError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n{}", ConnectError),  # too big: refused
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope", ConnectError),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", ConnectError),
        (b"", ConnectError),  # closed at once
        (http(200, envelope({"token": 5, "userID": "DEMO01"})), ConnectError),
        (http(200, envelope({"token": TOKEN, "userID": ["x"]})), ConnectError),
        (http(200, envelope({"token": "a b\r\nc", "userID": "DEMO01"})), ConnectError),
        (http(200, envelope({"token": TOKEN, "userID": "DE\x1bMO"})), ConnectError),
        (http(200, envelope("not a dict")), ConnectError),
        (http(200, {"type": "success"}), ConnectError),
        (http(200, envelope(kind="error", code=HOSTILE, description=HOSTILE)), LoginRefusedError),
        (http(401, envelope(kind="error", code="e-1", description=HOSTILE)), LoginRefusedError),
        (http(429, envelope(kind="error", description=HOSTILE)), RateLimitedError),
        (http(503, envelope(kind="error", description=HOSTILE)), ConnectError),
        (http(302, "", extra="Location: http://127.0.0.1:1/\r\n"), ConnectError),
    ],
)
async def test_hostile_login_answers_are_typed_and_scrubbed(
    answer: bytes, kind: type[Exception], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def respond(stream: trio.SocketStream, request: Request) -> None:
        await stream.send_all(answer)
        await stream.aclose()

    async with raw_server(xts_server({"/auth/login": respond})) as (root, _):
        async with session_for(root, timeout=5) as session:
            with trio.fail_after(10), pytest.raises(TradingWsError) as info:
                await session.login()
            assert not session.logged_in
    assert isinstance(info.value, kind), repr(info.value)
    if kind is ConnectError:  # a malformed answer is a failed attempt, not refused credentials
        assert not isinstance(info.value, AuthenticationError)
    # Before a login succeeds the session holds no token: the secret key is what must not leak.
    assert_clean(info.value, SECRET)
    assert_logs_clean(caplog, SECRET)


async def test_a_server_echoing_the_secret_and_the_token_never_reaches_a_message_or_a_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    refusal = http(400, envelope(kind="error", code=f"e-{TOKEN}\n", description=HOSTILE))
    limited = http(
        400,
        envelope(
            {"Remaining_Subscription_Count": 0}, kind="error", code="e-9", description="limit " + HOSTILE
        ),
    )
    bad_snapshots = http(200, envelope({"listQuotes": [HOSTILE, json.dumps({"t": SECRET, "u": TOKEN})]}))
    subscribe_answers = [refusal, limited, bad_snapshots]

    async def subscription(stream: trio.SocketStream, request: Request) -> None:
        await stream.send_all(subscribe_answers.pop(0) if request.method == "POST" else refusal)

    responder = xts_server(
        {
            "/instruments/subscription": subscription,
            "/instruments/quotes": http(200, envelope({"listQuotes": [HOSTILE, json.dumps({"t": SECRET})]})),
            "/instruments/indexlist": http(
                200, envelope({"indexList": [f"{TOKEN}_1", "OK\r\nX_2", "NIFTY 50_26000", 5, "NIFTY_-3"]})
            ),
            "/instruments/master": http(400, envelope(kind="error", description=HOSTILE)),
            "/auth/logout": http(400, envelope(kind="error", description=HOSTILE)),
        }
    )
    errors: list[BaseException] = []
    async with raw_server(responder) as (root, _):
        async with session_for(root, timeout=5) as session:
            with trio.fail_after(20):
                await session.login()
                calls: list[Callable[[], Awaitable[object]]] = [
                    lambda: session.subscribe([RELIANCE], 1501),
                    lambda: session.subscribe([RELIANCE], 1501),
                    lambda: session.unsubscribe([RELIANCE], 1501),
                    lambda: session.quotes([RELIANCE], 1501),
                    lambda: session.instrument_master(["NSECM"]),
                ]
                for call in calls:
                    with pytest.raises(TradingWsError) as info:
                        await call()
                    errors.append(info.value)
                await session.login()  # a new session: the cap the refusal taught is forgotten
                result = await session.subscribe([RELIANCE], 1501)  # its snapshots are both malformed
                assert result.decode_errors == 2
                assert result.snapshots == ()
                # Entries that are malformed, or name an index after a secret, are left out.
                assert await session.index_list(1) == [("NIFTY 50", 26000)]
                await session.logout()  # refused: the token is forgotten all the same
                assert session.token is None
    assert [type(e) for e in errors] == [
        SubscriptionError,
        SubscriptionLimitError,
        SubscriptionError,
        DecodeError,
        ConnectError,
    ]
    for error in errors:
        assert_clean(error, SECRET, TOKEN)
    assert_logs_clean(caplog, SECRET, TOKEN)
    assert any("malformed snapshot" in record.getMessage() for record in caplog.records)


async def test_a_giant_answer_is_refused_while_it_streams(caplog: pytest.LogCaptureFixture) -> None:
    async def endless(stream: trio.SocketStream, request: Request) -> None:
        await stream.send_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        for _ in range(200):  # 13 MB, more than any answer but the master may be
            await stream.send_all(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await stream.send_all(b"0\r\n\r\n")

    async with raw_server(xts_server({"/auth/login": endless})) as (root, _):
        async with session_for(root, timeout=10) as session:
            with trio.fail_after(20), pytest.raises(ConnectError, match="larger than"):
                await session.login()


# ---------------------------------------------------------------------------------------------------------
# Arbitrary JSON answers: success, or one of our errors, never anything else

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from([SECRET, TOKEN, f"x{TOKEN}\r\nX: 1", "\x1b[2J\u2028", "invalid token"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
KEYS = [
    "token",
    "userID",
    "listQuotes",
    "quotesList",
    "unsubList",
    "indexList",
    "Remaining_Subscription_Count",
]
RESULTS = st.one_of(JSON, st.dictionaries(st.sampled_from(KEYS), JSON, max_size=5))
ANSWERS = st.builds(
    lambda status, kind, code, description, result: (
        status,
        {"type": kind, "code": code, "description": description, "result": result},
    ),
    st.sampled_from([200, 400, 401, 403, 404, 429, 500]),
    st.one_of(st.sampled_from(["success", "error"]), JSON),
    JSON,
    JSON,
    RESULTS,
) | st.tuples(st.sampled_from([200, 400]), JSON)


@settings(max_examples=300, deadline=None)
@given(answer=ANSWERS, call=st.sampled_from(sorted(ROUTES)))
@example(answer=(200, envelope({"indexList": 5})), call="/instruments/indexlist")
@example(answer=(200, envelope({"token": TOKEN, "userID": 7})), call="/auth/login")
@example(answer=(400, envelope(kind="error", code=f"{TOKEN}\r\n", description=SECRET)), call="subscribe")
async def test_any_json_answer_is_a_result_or_one_of_our_errors(answer: tuple[int, Any], call: str) -> None:
    status, body = answer
    login = httpx.Response(200, json=envelope({"token": TOKEN, "userID": "DEMO01"}))

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/login") and call != "/auth/login":
            return login
        return httpx.Response(status, content=json.dumps(body).encode())  # NaN and Infinity included

    async with session_for("http://127.0.0.1:9", transport=httpx.MockTransport(handler)) as session:
        try:
            if call != "/auth/login":
                await session.login()
            await run_call(session, call)
        except TradingWsError as exc:
            # The session knows the token only once a login gave it: before, it is just text.
            known = (SECRET,) if call == "/auth/login" else (SECRET, TOKEN)
            check_error(exc, *known)


# ---------------------------------------------------------------------------------------------------------
# The Kite download


def kite_answer(status: int, body: bytes, *, gzipped: bool = False, extra: str = "") -> bytes:
    if gzipped:
        body = gzip.compress(body)
        extra += "Content-Encoding: gzip\r\n"
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n%s" % (status, len(body), extra.encode(), body)


KITE_ERROR = json.dumps(
    {
        "status": "error",
        "message": f"token {KITE_KEY}:{KITE_TOKEN} \r\n\x1b[2J bad",
        "error_type": "TokenException",
    }
).encode()
CSV_HEAD = (
    "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,"
    "instrument_type,segment,exchange\n"
)


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (kite_answer(403, KITE_ERROR), AuthenticationError),
        (kite_answer(429, KITE_ERROR), RateLimitedError),
        (kite_answer(500, KITE_ERROR), ConnectError),
        (f"HTTP/1.1 2OO {KITE_TOKEN}\r\n\r\n".encode(), ConnectError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n", ConnectError),
        (kite_answer(200, b"\xff\xfe not text"), DecodeError),
        (kite_answer(200, b"nope", extra="Content-Encoding: gzip\r\n"), ConnectError),
        (kite_answer(200, f"{CSV_HEAD}1,2,A\x1b,n,0,,{KITE_TOKEN},0,1,EQ,NSE,NSE\n".encode()), DecodeError),
        (kite_answer(200, (CSV_HEAD + "1,2\n").encode(), gzipped=True), DecodeError),
        (kite_answer(200, (CSV_HEAD + "99999999999,2,A,n,0,,0,0,1,EQ,NSE,NSE\n").encode()), DecodeError),
        (b"", ConnectError),
    ],
)
async def test_hostile_kite_download_answers_are_typed_and_scrubbed(
    answer: bytes, kind: type[Exception], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def respond(stream: trio.SocketStream, request: Request) -> None:
        assert request.headers["authorization"] == f"token {KITE_KEY}:{KITE_TOKEN}"
        await stream.send_all(answer)
        await stream.aclose()

    async with raw_server(respond) as (root, seen):
        broker = KiteBroker(KITE_KEY, KITE_TOKEN, api_url=root)
        with trio.fail_after(10), pytest.raises(TradingWsError) as info:
            await broker.load_instruments()
        assert seen
    assert isinstance(info.value, kind), repr(info.value)
    assert_clean(info.value, KITE_TOKEN)
    assert_logs_clean(caplog, KITE_TOKEN)


async def test_a_kite_download_that_is_well_formed_still_loads() -> None:
    text = CSV_HEAD + "408065,1594,INFY,INFOSYS,0,,0,0.05,1,EQ,NSE,NSE\n"

    async def respond(stream: trio.SocketStream, request: Request) -> None:
        await stream.send_all(kite_answer(200, text.encode(), gzipped=True))

    async with raw_server(respond) as (root, seen):
        with trio.fail_after(10):
            master = await KiteBroker(KITE_KEY, KITE_TOKEN, api_url=root).load_instruments()
    assert master["NSE:INFY"].token == 408065
    assert seen[0].path == "/instruments"


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(st.text(), st.lists(st.sampled_from(list(',"\n\r\x00ab1.-é ')), max_size=80).map("".join))
)
def test_any_kite_csv_parses_or_is_a_decode_error(text: str) -> None:
    for candidate in (text, CSV_HEAD + text):
        try:
            rows = parse_instruments_csv(candidate)
        except DecodeError as exc:
            check_error(exc)  # no secret known to the parser: bounded, without control characters
        else:
            assert all(0 <= row.instrument_token <= 0xFFFFFFFF for row in rows)


async def test_xts_broker_loading_maps_the_same_errors(autojump_clock: trio.testing.MockClock) -> None:
    slow_master = trickling(http(200, envelope("x" * 100)))
    async with raw_server(xts_server({"/instruments/master": slow_master})) as (root, _):
        broker = XtsBroker(APP_KEY, SECRET, root)
        with trio.fail_after(1000), pytest.raises(ConnectTimeout):
            await broker.load_instruments()
