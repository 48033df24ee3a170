"""A faithful Symphony XTS market-data server (JSON product): REST and Socket.IO on one loopback port.

It speaks xts-protocol.md sections 1-5 as Appendix A describes a mock: REST under ``/apimarketdata``
(login, logout, client config, subscribe, unsubscribe, list subscriptions, quotes, instrument master)
and an Engine.IO v3 / Socket.IO rev 4 WebSocket at ``/apimarketdata/socket.io/`` that streams
``<code>-json-full`` events (the data a JSON *string*) or ``<code>-json-partial`` events (``t:1_2885,
ltp:...``) from the shared seeded `Market`, for the instruments of the shared `UNIVERSE` (the same ones
the Kite simulator streams), addressed by their XTS ExchangeSegment and ExchangeInstrumentID.

The payloads are built here from the reference document, independently of the library's own codec
(``trading_ws.brokers.xts._codec``), so that tests of one check the other.

The HTTP and WebSocket server is hypercorn's Trio worker running a plain ASGI application (no web
framework: nine routes and one WebSocket endpoint do not need one). Hypercorn's error log goes to the
``trading_ws.sim.http`` logger, its access log nowhere.

Protocol summary (what a client sees):

- ``POST /apimarketdata/auth/login`` with ``appKey``, ``secretKey`` (and optional ``source``) as JSON or
  form-urlencoded: ``{"type":"success","code":"e-response-0010","description":"Provided Valid
  Credentials","result":{"token":<JWT>,"userID":"DEMO01","appVersion":...,"application_expiry_date":
  ...}}``. The token is an HS256 JWT with ``userID`` (``<ClientID>_<appKey>``), ``publicKey``, ``iat``
  and ``exp = iat + 86400``. A login invalidates the previous token of the same appKey.
- Authenticated routes read the raw JWT from the ``Authorization`` header (no ``Bearer``).
- ``POST``/``PUT``/``GET /apimarketdata/instruments/subscription``, ``POST .../instruments/quotes``,
  ``POST .../instruments/master``, ``GET .../instruments/indexlist``, ``GET .../config/clientConfig``,
  ``DELETE .../auth/logout``.
- Socket: ``0{open}``, ``40``, ``42["joined",{...s-socket-0001...}]``, then the events; the client pings
  (``2``), the server answers ``3`` and closes the connection after ``ping_interval + ping_timeout``
  seconds without a ping.

Choices where the reference says "not verified" (or says nothing); each is deliberate:

- **Error codes.** Only ``e-session-0002`` ("Instrument Already Subscribed !") is observed. The others are
  this simulator's, in the observed ``e-<area>-<nnnn>`` shape: ``e-app-0001`` "Invalid appKey or
  secretKey" (HTTP 400); ``e-app-0002`` a login refused by `XtsSimulator.reject_next_login`;
  ``e-token-0001`` "Invalid Token" (HTTP 400, or `invalid_token_status`); ``e-request-0001`` "Bad
  Request" with ``result.errors`` (what PY-SDK's XTSInputException reads); ``e-session-0005``
  "Subscription limit exceeded"; ``e-instrument-0001`` "Instrument not found"; ``e-route-0001`` "Not
  Found" (404) and ``e-route-0002`` "Method Not Allowed" (405).
- **Success codes** other than the observed ones (``e-response-0010`` login, ``s-session-0001`` subscribe,
  ``s-quotes-0001`` quotes, ``s-socket-0001`` joined): ``s-session-0002`` "Instrument subscription
  deleted!" (unsubscribe, the description PAHLWAN's comment gives), ``s-session-0003`` (list),
  ``s-user-0002`` (logout), ``s-instrument-0001`` (master), ``s-config-0001`` (client config).
- **Subscription cap**: `max_subscriptions` (50) per session, counting every (instrument, message code)
  pair, so one instrument in 1501 and 1502 uses two. A request that would exceed it subscribes nothing
  and gets HTTP 400 ``e-session-0005`` with ``Remaining_Subscription_Count``.
- **Mixed subscribe requests** (some already subscribed): HTTP 200 with only the new instruments in
  ``quotesList``/``listQuotes`` (one observation); all already subscribed: HTTP 400 ``e-session-0002``.
- **Unknown instruments** (not in the universe): the whole request is refused (HTTP 400
  ``e-instrument-0001``, ``result.instruments`` lists them); nothing is subscribed.
- **Message codes**: 1501, 1502, 1505, 1510 and 1512 can be subscribed; others (1504, 1507, 1105, 5018)
  are refused as a Bad Request. Indices stream as 1501/1502 touchlines (zero books), as NIFTY does.
- **Unsubscribe** of something not subscribed is not an error: ``unsubList`` lists what was removed.
- **List** (``GET ...subscription?xtsMessageCode=1501``): ``result: {"mdp": 1501, "subscriptionList":
  [{exchangeSegment, exchangeInstrumentID, xtsMessageCode}], "Remaining_Subscription_Count": n}``; without
  ``xtsMessageCode`` every code is listed and ``mdp`` is null.
- **Quotes**: ``publishFormat`` is required (JSON only, any case; ``Binary`` is refused as a Bad Request),
  at most 50 instruments per request; ``quotesList`` echoes the ids as strings, as observed.
- **Master**: needs no ``Authorization`` (OPENALGO calls it without); ``exchangeSegmentList`` holds names
  (``"NSECM"``) or numbers. Rows are rendered by the library's own ``render_master``; indices are not
  master rows (``GET .../instruments/indexlist?exchangeSegment=1`` lists them as ``"NIFTY 50_26000"``).
- **Sessions.** Subscriptions belong to the session (the token), not to a socket: a socket that
  reconnects with the same token gets its ticks again without any REST call. A new login mints a new
  session with no subscriptions; the superseded token (and an expired one, see `expire_tokens`) is refused
  by REST and by new socket handshakes, but sockets already open keep streaming their session's
  subscriptions (the token is checked at the handshake only: "silently invalidates"). Logout clears the
  session and closes its sockets with ``41`` and a WebSocket close (1000). Two logins in the same second
  get ``iat`` one second apart so that their tokens differ (the payload has only the four observed keys).
- **Socket handshake.** A bad, superseded or expired token, or a ``userID`` that is not the session's plain
  client id, is refused with HTTP **401** and a JSON error body before the WebSocket upgrade (what a
  python-socketio 4 server does when its connect handler refuses); ``publishFormat`` other than JSON and
  an unknown ``broadcastMode`` with HTTP 400. ``publishFormat`` defaults to JSON and ``broadcastMode`` to
  Full when absent; both are case-insensitive. ``EIO`` is not checked (an EIO4 client gets EIO3, as from
  the real server); ``transport`` is ignored. HTTP polling is not offered: a plain GET of the socket path
  gets engine.io's ``400 {"code":0,"message":"Transport unknown"}``.
- **Socket frames.** ``joined`` carries an object (`joined_as_string` sends it as a JSON string). The
  ping-timeout close is a WebSocket close frame (1000) without an Engine.IO ``1`` (python-engineio 3
  aborts the same way). A client ``41`` or ``1`` closes the connection; other client packets (events such
  as DOTNET's ``join``, noops, garbage) are ignored. The open packet's times default to python-engineio
  3's 25 s / 60 s.
- **Payloads.** 1501 nested by default (`flat_touchline` for the flat form), with the wire's
  ``LastTradedQunatity``; ``TotalValueTraded`` null (as observed); whole-number prices as JSON integers;
  MessageVersion 4; BookType 1; XMarketType 1 (``XTSMarketType`` in 1510); one increasing
  ``SequenceNumber``. Partial 1501 carries one ``bi``/``ai`` level, 1502 five (``index|size|price|orders``).
- **Times.** NSE segments (1, 2, 3): seconds since 1980-01-01 IST wall clock (``unix - 315513000``).
  Other segments and candle ``BarTime``: seconds since 1970-01-01 IST wall clock (``unix + 19800``), the
  same choice as the library's codec. A 1505 ``BarTime`` is the bar's start.
- **Cadence.** Every `tick_interval` the market moves once and each socket gets, per subscription of its
  session: 1501, 1502 and 1512 always; 1510 for derivatives; 1505 when a bar of `candle_interval` seconds
  (wall clock; 60 by default) has closed. A socket that cannot keep up skips steps (it always gets the
  latest prices). 1510 and 1505 subscriptions of instruments without such data send their snapshot only.

Nothing here logs a token or a secret.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import math
import random
import secrets
import socket
import ssl
import string
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import date, timedelta
from functools import partial
from typing import Any, Final, cast
from urllib.parse import parse_qs, parse_qsl

import attrs
import hypercorn.trio
import trio
from hypercorn.config import Config as HypercornConfig

from .._errors import ConfigurationError, DecodeError
from .._model import Mode, Tick
from .._validate import check_instance
from ..brokers.xts._engineio import (
    EioClose,
    EioPing,
    EioPong,
    OpenPacket,
    SioDisconnect,
    encode_connect,
    encode_disconnect,
    encode_event,
    parse_packet,
)
from ..brokers.xts._instruments import SEGMENT_IDS, XtsInstrument, render_master
from ._listen import listen_host, listen_port
from ._tls import HANDSHAKE_TIMEOUT, SimulatorTLS
from ._universe import UNIVERSE, Instrument, Market

__all__ = [
    "DEMO_APP_KEY",
    "DEMO_SECRET_KEY",
    "DEMO_USER_ID",
    "XtsSimulator",
    "XtsSimulatorStatistics",
]

DEMO_APP_KEY: Final = "demo_app_key"
"""The appKey an `XtsSimulator` accepts by default."""
DEMO_SECRET_KEY: Final = "demo_secret_key"
"""The secretKey an `XtsSimulator` accepts by default."""
DEMO_USER_ID: Final = "DEMO01"
"""The plain client id an `XtsSimulator` logs in by default (the ``userID`` of the socket query)."""

logger = logging.getLogger("trading_ws.sim")
_http_logger = logging.getLogger("trading_ws.sim.http")

_PREFIX: Final = "/apimarketdata"
_SOCKET_PATH: Final = _PREFIX + "/socket.io"
_APP_VERSION: Final = "5.0.15"
_TOKEN_LIFETIME: Final = 86400
_MAX_BODY: Final = 1 << 20
_QUOTES_LIMIT: Final = 50
_NSE_SEGMENTS: Final = frozenset({1, 2, 3})
_NSE_OFFSET: Final = 315513000  # unix_utc = xts + 315513000 for segments 1-3 (xts-protocol.md 4.10)
_IST_OFFSET: Final = 19800
_FIRST_SEQUENCE: Final = 1353296204670191  # the shape of a real SequenceNumber (xts-protocol.md 4.1)
_LINGER_ABORT: Final = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset at once
_SID_ALPHABET: Final = string.ascii_letters + string.digits + "-_"

_TOUCHLINE: Final = 1501
_MARKET_DEPTH: Final = 1502
_CANDLE: Final = 1505
_OPEN_INTEREST: Final = 1510
_LTP: Final = 1512
_CODES: Final = (_TOUCHLINE, _MARKET_DEPTH, _CANDLE, _OPEN_INTEREST, _LTP)

#: ExchangeSegment numbers by canonical name (xts-protocol.md 4.11; NODE's MSEI* aliases left out).
_SEGMENTS: Final[dict[str, int]] = {
    name: number for name, number in SEGMENT_IDS.items() if not name.startswith("MSEI")
}
_SEGMENT_NAMES: Final[dict[int, str]] = {number: name for name, number in _SEGMENTS.items()}

_INSTRUMENT_TYPES: Final[dict[str, int]] = {
    "Futures": 1,
    "Options": 2,
    "Spread": 4,
    "Equity": 8,
    "Spot": 16,
    "PreferenceShares": 32,
    "Debentures": 64,
    "Warrants": 128,
    "Miscellaneous": 256,
    "MutualFund": 512,
}

#: Malformed frames `XtsSimulator.send_garbage` sends, in turn.
_GARBAGE: Final[tuple[str, ...]] = (
    '42["1501-json-full","{\\"MessageCode\\":1501,\\"ExchangeSegm',  # a JSON string holding cut JSON
    '42["1501-json-full"',  # the Socket.IO JSON itself cut
    '42{"not":"a list"}',
    "42",
    "garbage that is no packet at all",
    '42["1501-json-partial","t:1_,ltp:abc,,::"]',
    "9unknown packet type",
)

_Scope = Mapping[str, Any]
_Message = Mapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[dict[str, Any]], Awaitable[None]]


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0 or not math.isfinite(value):
        raise ConfigurationError(f"{attribute.name} must be a positive number of seconds, got {value!r}")


def _at_least_one(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ConfigurationError(f"{attribute.name} must be at least 1, got {value!r}")


def _status(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not (value == 200 or 400 <= value <= 499):
        raise ConfigurationError(f"{attribute.name} must be 200 or a 4xx HTTP status, got {value!r}")


# ---------------------------------------------------------------------------------------------------------
# Records


@attrs.frozen
class XtsSimulatorStatistics:
    """A snapshot of an `XtsSimulator`'s counters (they count from the simulator's creation)."""

    logins: int
    """Successful logins."""
    logins_refused: int
    """Logins refused (wrong keys, malformed bodies, `XtsSimulator.reject_next_login`)."""
    sessions: int
    """Sessions whose token is valid now."""
    sockets_open: int
    """Socket.IO connections accepted and still open."""
    sockets_accepted: int
    handshakes_rejected: int
    """WebSocket handshakes refused (bad token or user, bad query, wrong path)."""
    rest_requests: int
    """HTTP requests answered (every route, errors included; not the WebSocket handshakes)."""
    events_sent: int
    """Market-data events (``42["<code>-json-..."]``) sent; ``joined`` and garbage not included."""
    garbage_frames_sent: int
    pings_received: int
    """Engine.IO pings (``2``) received from clients."""
    pongs_sent: int
    connections_dropped: int
    """Sockets aborted by `XtsSimulator.drop_connections`."""
    subscriptions: Mapping[int, int]
    """Subscribed (instrument, message code) pairs of each live session, by session number (1, 2...).

    A session is live while its token is valid or it still has open sockets."""
    market_steps: int


@attrs.frozen
class _Reply:
    status: int
    body: Any


@attrs.define(eq=False)
class _Session:
    number: int
    token: str = attrs.field(repr=False)
    user_id: str
    app_key: str = attrs.field(repr=False)
    expires_at: int
    valid: bool = True
    subscriptions: dict[tuple[int, int, int], Instrument] = attrs.field(factory=dict)
    """(segment, instrument id, message code) -> instrument, in the order subscribed."""
    sockets: set[_Socket] = attrs.field(factory=set)


@attrs.define(eq=False)
class _Socket:
    number: int
    sid: str
    session: _Session
    partial: bool
    send: _Send = attrs.field(repr=False)
    transport: trio.SocketStream | None = attrs.field(repr=False)
    lock: trio.Lock = attrs.field(factory=trio.Lock, repr=False)
    wake: trio.Event = attrs.field(factory=trio.Event, repr=False)
    last_ping: float = 0.0
    generation: int = 0
    candle_generation: int = -1
    garbage: int = 0
    close_code: int | None = None
    closed: bool = False
    reason: str = "client disconnected"


@attrs.define(eq=False)
class _Bar:
    start: int
    open: float
    high: float
    low: float
    close: float
    volume: int = 0
    value: float = 0.0
    oi: int = 0


# ---------------------------------------------------------------------------------------------------------
# Helpers: JSON, JWT, envelopes, numbers, times


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _jwt(payload: Mapping[str, Any], key: bytes) -> str:
    """An HS256 JSON Web Token (compact serialization) over `payload`."""
    signing_input = _b64url(b'{"alg":"HS256","typ":"JWT"}') + "." + _b64url(_dumps(payload).encode())
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64url(signature)


def _success(code: str, description: str, result: Any) -> dict[str, Any]:
    return {"type": "success", "code": code, "description": description, "result": result}


def _error(code: str, description: str, result: Any = None) -> dict[str, Any]:
    return {"type": "error", "code": code, "description": description, "result": result}


def _bad_request(*errors: tuple[str, str]) -> _Reply:
    return _Reply(
        400,
        _error(
            "e-request-0001",
            "Bad Request",
            {"errors": [{"field": field, "message": message} for field, message in errors]},
        ),
    )


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _as_segment(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().upper() in _SEGMENTS:
        return _SEGMENTS[value.strip().upper()]
    return _as_int(value)


def _num(value: float) -> float | int:
    """A price as JSON writes it on the wire: whole numbers as integers (``"Open":222``)."""
    return int(value) if value == int(value) else value


def _text(value: float) -> str:
    return str(_num(value))


def _xts_time(unix: float, segment: int) -> int:
    """XTS seconds: since 1980-01-01 IST wall clock on NSE segments 1-3, since 1970 IST wall clock else."""
    seconds = int(unix)
    if seconds <= 0:
        return 0
    return seconds - _NSE_OFFSET if segment in _NSE_SEGMENTS else seconds + _IST_OFFSET


class _TLSConfig(HypercornConfig):
    """Hypercorn's configuration serving TLS with a ready `ssl.SSLContext` (hypercorn itself only loads a
    certificate and key from files; the simulator's key stays in memory)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        context.set_alpn_protocols(["http/1.1"])
        self._tls_context = context

    @property
    def ssl_enabled(self) -> bool:
        return True

    def create_ssl_context(self) -> ssl.SSLContext:
        return self._tls_context


def _find_socket_stream(send: object) -> trio.SocketStream | None:
    """The TCP stream under a hypercorn ASGI ``send`` callable, so that a drop can reset it.

    Hypercorn (0.17, 0.18) hands the app the bound ``WSStream.app_send``; its ``send`` is the HTTP/1.1
    protocol's, whose ``send`` is the Trio ``TCPServer``'s, which holds ``stream``. ASGI has no way to
    abort a connection without a close frame, so this walks that chain; None if it is not there.
    """
    target: object = send
    for _ in range(4):
        owner = getattr(target, "__self__", None)
        if owner is None:
            return None
        stream = getattr(owner, "stream", None)
        if isinstance(stream, trio.SSLStream):  # served with tls: the TCP stream is under it
            stream = stream.transport_stream
        if isinstance(stream, trio.SocketStream):
            return stream
        target = getattr(owner, "send", None)
    return None


_INDEX_UNDERLYINGS: Final = frozenset({"NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "SENSEX", "BANKEX"})


def _master_record(instrument: Instrument) -> XtsInstrument:
    """The instrument-master record of a universe instrument (indices have none: see `_master`).

    Cash rows: Name is the trading symbol and Description ``<symbol>-EQ`` (series EQ), as XTS writes
    them. Derivatives: Description is the trading symbol; series FUTIDX/OPTIDX for index underlyings,
    FUTSTK/OPTSTK for stocks, FUTCUR/OPTCUR on currency segments (3, 13), FUTCOM on commodity ones. The
    price band is the random walk's +-20% band; the composite InstrumentID is made up
    (``<segment>1<segment:03><id:08>``, which gives the observed ``11001...`` shape on NSECM).
    """
    seg = instrument.xts_segment
    tick = instrument.tick_size
    band_high = round(round(instrument.base_price * 1.2 / tick) * tick, 4)
    band_low = round(round(instrument.base_price * 0.8 / tick) * tick, 4)
    common: dict[str, Any] = {
        "segment": _SEGMENT_NAMES[seg],
        "segment_id": seg,
        "instrument_id": instrument.xts_instrument_id,
        "tick_size": tick,
        "lot_size": instrument.lot_size,
        "price_band_high": band_high,
        "price_band_low": band_low,
        "composite_id": int(f"{seg}1{seg:03d}{instrument.xts_instrument_id:08d}"),
    }
    if instrument.instrument_type == "EQ":
        return XtsInstrument(
            name=instrument.tradingsymbol,
            description=f"{instrument.tradingsymbol}-EQ",
            series="EQ",
            display_name=instrument.tradingsymbol,
            instrument_type=_INSTRUMENT_TYPES["Equity"],
            **common,
        )
    option = instrument.instrument_type in ("CE", "PE")
    if seg in (3, 13):
        kind = "CUR"
    elif seg in (4, 14, 21, 51):
        kind = "COM"
    else:
        kind = "IDX" if instrument.name in _INDEX_UNDERLYINGS else "STK"
    expiry = instrument.expiry
    display = f"{instrument.name} {expiry:%d%b%Y}".upper() if expiry is not None else instrument.name
    display += f" {instrument.instrument_type} {_text(instrument.strike)}" if option else " FUT"
    return XtsInstrument(
        name=instrument.name,
        description=instrument.tradingsymbol,
        series=("OPT" if option else "FUT") + kind,
        display_name=display,
        instrument_type=_INSTRUMENT_TYPES["Options" if option else "Futures"],
        expiry=expiry,
        strike=instrument.strike if option else None,
        option_type=instrument.instrument_type if option else None,
        underlying_index_name=instrument.name if kind == "IDX" else None,
        **common,
    )


# ---------------------------------------------------------------------------------------------------------
# The simulator


@attrs.define(eq=False)
class XtsSimulator:
    """An XTS market-data server (REST + Socket.IO, JSON product) for tests and demos, on one port.

    Start it in a nursery (``root = await nursery.start(sim.serve)``; ``root`` is
    ``http://127.0.0.1:PORT``), log in at ``root + "/apimarketdata/auth/login"`` with
    `DEMO_APP_KEY` / `DEMO_SECRET_KEY`, subscribe over REST, and connect a Socket.IO (EIO3) client to
    ``ws://127.0.0.1:PORT/apimarketdata/socket.io/?token=...&userID=DEMO01&publishFormat=JSON&
    broadcastMode=Full&transport=websocket&EIO=3``. Stopping is cancelling that task; nothing outlives it.

    The module docstring lists the behaviour, including every choice the protocol reference leaves open.
    Prices come from `market` (seeded by `seed`): the shared random walk of the Kite simulator.

    Fault knobs, synchronous and safe to call from tests while serving: `drop_connections`, `go_silent`,
    `send_garbage`, `expire_tokens`, `reject_next_login`. Assertions: `statistics`, `subscriptions`.

    Args (all keyword-friendly attrs fields):
        app_key, secret_key, user_id: the one account it accepts (keys are never logged or shown).
        seed: the random walk's seed.
        tick_interval: seconds between market steps (and events).
        ping_interval, ping_timeout: announced in the open packet (seconds); the server closes a socket
            after ``ping_interval + ping_timeout`` seconds without a client ping.
        max_subscriptions: the per-session cap of (instrument, code) pairs.
        invalid_token_status: the HTTP status of "Invalid Token" answers: 400 (what PY-SDK expects), 200 (as
            some deployments do, with ``"type":"error"`` in the body) or another 4xx.
        flat_touchline: send 1501 in the flat form instead of the nested ``Touchline`` object.
        shuffle_keys: shuffle the key order of full messages (seeded), as the real feed's order is unstable.
        joined_as_string: send the ``joined`` payload as a JSON string rather than an object.
        candle_interval: seconds (of `clock`) per 1505 bar.
        clock: wall-clock time for the payloads' timestamps and the tokens (``time.time``).
        instruments: the instruments it serves (the shared `UNIVERSE`).

    Raises:
        ConfigurationError: (at construction) a non-positive interval or limit, or an
            `invalid_token_status` that is neither 200 nor 4xx.
    """

    app_key: str = attrs.field(default=DEMO_APP_KEY, repr=False)
    secret_key: str = attrs.field(default=DEMO_SECRET_KEY, repr=False)
    user_id: str = DEMO_USER_ID
    seed: int = 0
    tick_interval: float = attrs.field(default=0.2, validator=_positive)
    ping_interval: float = attrs.field(default=25.0, validator=_positive)
    ping_timeout: float = attrs.field(default=60.0, validator=_positive)
    max_subscriptions: int = attrs.field(default=50, validator=_at_least_one)
    invalid_token_status: int = attrs.field(default=400, validator=_status)
    flat_touchline: bool = False
    shuffle_keys: bool = False
    joined_as_string: bool = False
    candle_interval: float = attrs.field(default=60.0, validator=_positive)
    clock: Callable[[], float] = attrs.field(default=time.time, repr=False)
    instruments: tuple[Instrument, ...] = attrs.field(default=UNIVERSE, converter=tuple, repr=False)
    market: Market = attrs.field(init=False, repr=False)
    """The simulated market (built from `seed` and `instruments`)."""

    _url: str | None = attrs.field(init=False, default=None, repr=False)
    _serving: bool = attrs.field(init=False, default=False, repr=False)
    _signing_key: bytes = attrs.field(init=False, factory=lambda: secrets.token_bytes(32), repr=False)
    _by_address: dict[tuple[int, int], Instrument] = attrs.field(init=False, factory=dict, repr=False)
    _sessions: dict[str, _Session] = attrs.field(init=False, factory=dict, repr=False)
    _current: dict[str, _Session] = attrs.field(init=False, factory=dict, repr=False)
    _last_iat: dict[str, int] = attrs.field(init=False, factory=dict, repr=False)
    _sockets: dict[int, _Socket] = attrs.field(init=False, factory=dict, repr=False)
    _silent: bool = attrs.field(init=False, default=False, repr=False)
    _login_rejections: list[int] = attrs.field(init=False, factory=list, repr=False)
    _generation: int = attrs.field(init=False, default=0, repr=False)
    _candle_generation: int = attrs.field(init=False, default=-1, repr=False)
    _ticks: dict[int, Tick] = attrs.field(init=False, factory=dict, repr=False)
    _frames: dict[tuple[int, int, int, bool], str | None] = attrs.field(init=False, factory=dict, repr=False)
    _bars: dict[int, _Bar] = attrs.field(init=False, factory=dict, repr=False)
    _candles: dict[int, _Bar] = attrs.field(init=False, factory=dict, repr=False)
    _sequence: int = attrs.field(init=False, default=_FIRST_SEQUENCE, repr=False)
    _rng: random.Random = attrs.field(init=False, repr=False)
    _numbers: dict[str, int] = attrs.field(init=False, factory=dict, repr=False)
    _counters: dict[str, int] = attrs.field(init=False, factory=dict, repr=False)

    def __attrs_post_init__(self) -> None:
        self.market = Market(self.seed, self.instruments)
        self._rng = random.Random(self.seed)
        for instrument in self.instruments:
            self._by_address[(instrument.xts_segment, instrument.xts_instrument_id)] = instrument
        now = self.clock()
        bucket = self._bucket(now)
        for instrument in self.instruments:
            tick = self._tick(instrument, now)
            self._bars[instrument.kite_token] = _Bar(
                bucket, tick.last_price, tick.last_price, tick.last_price, tick.last_price, oi=tick.oi or 0
            )

    # -----------------------------------------------------------------------------------------------------
    # Serving

    @property
    def url(self) -> str:
        """The root URL (``http://127.0.0.1:PORT``) of the REST routes and of the socket (as ``ws://``);
        ``https://`` (and ``wss://``) when serving with TLS.

        Raises:
            RuntimeError: the simulator is not serving.
        """
        if self._url is None:
            raise RuntimeError("the XTS simulator is not serving (start it with nursery.start(sim.serve))")
        return self._url

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        allow_non_loopback: bool = False,
        tls: SimulatorTLS | None = None,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve REST and Socket.IO until cancelled; report the root URL (``http://127.0.0.1:PORT``, or
        ``https://`` with `tls`).

        Use as ``root = await nursery.start(sim.serve)``. Blocks until cancelled; every connection and task
        it started is finished when it returns.

        Args:
            host: the address to listen on; ``"localhost"`` means ``127.0.0.1``.
            port: the TCP port; 0 picks a free one (the reported URL has the real one).
            allow_non_loopback: allow a host that is not a loopback address (the simulator accepts
                well-known demo credentials: think twice).
            tls: serve ``https://`` REST and a ``wss://`` socket (one port, HTTP/1.1) with this
                `SimulatorTLS`'s certificate (clients trust it with ``tls.client_context()`` or the file
                `SimulatorTLS.write_ca` writes). A client whose TLS handshake fails is dropped quietly
                (hypercorn logs nothing for it), within 10 s if it stalls; the simulator serves on.

        Raises:
            ConfigurationError: (a ValueError) a non-loopback host without ``allow_non_loopback``, a
                port outside 0..65535, or a `tls` that is not a SimulatorTLS.
            RuntimeError: the simulator is already serving.
            OSError: the address cannot be listened on.
        """
        bind_host = listen_host(host, allow_non_loopback)
        listen_port(port)
        check_instance("tls", tls, SimulatorTLS, optional=True)
        if self._serving:
            raise RuntimeError("this XTS simulator is already serving")
        self._serving = True
        config = HypercornConfig() if tls is None else _TLSConfig(tls.server_context())
        config.ssl_handshake_timeout = HANDSHAKE_TIMEOUT
        config.bind = [f"[{bind_host}]:{port}" if ":" in bind_host else f"{bind_host}:{port}"]
        config.accesslog = None
        config.errorlog = _http_logger
        config.include_server_header = False
        config.graceful_timeout = 0.5
        app = cast("hypercorn.typing.ASGIFramework", self._asgi)
        try:
            async with trio.open_nursery() as nursery:
                binds: list[str] = await nursery.start(partial(hypercorn.trio.serve, app, config))
                nursery.start_soon(self._run_market)
                self._url = binds[0]
                logger.info("XTS simulator listening on %s", self._url)
                task_status.started(self._url)
        finally:
            self._url = None
            self._serving = False
            self._sockets.clear()
            for session in self._sessions.values():
                session.sockets.clear()

    async def _asgi(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    # -----------------------------------------------------------------------------------------------------
    # The market

    def _bucket(self, now: float) -> int:
        return int(now // self.candle_interval)

    def _tick(self, instrument: Instrument, now: float) -> Tick:
        tick = self._ticks.get(instrument.kite_token)
        if tick is None:
            tick = self._ticks[instrument.kite_token] = self.market.tick(
                instrument.kite_token, Mode.FULL, now
            )
        return tick

    async def _run_market(self) -> None:
        deadline = trio.current_time()
        while True:
            deadline += self.tick_interval
            now = trio.current_time()
            if deadline < now:
                deadline = now  # we fell behind (a blocked run): do not burst to catch up
            await trio.sleep_until(deadline)
            self._step()

    def _step(self) -> None:
        now = self.clock()
        self.market.step(now)
        self._generation += 1
        self._ticks.clear()
        self._frames.clear()
        bucket = self._bucket(now)
        closed = False
        for instrument in self.instruments:
            tick = self._tick(instrument, now)
            bar = self._bars[instrument.kite_token]
            price = tick.last_price
            if bar.start != bucket:
                self._candles[instrument.kite_token] = bar
                bar = self._bars[instrument.kite_token] = _Bar(bucket, price, price, price, price)
                closed = True
            else:
                bar.high = max(bar.high, price)
                bar.low = min(bar.low, price)
                bar.close = price
            quantity = tick.last_quantity or 0
            bar.volume += quantity
            bar.value += quantity * price
            bar.oi = tick.oi or 0
        if closed:
            self._candle_generation = self._generation
        for sock in self._sockets.values():
            sock.wake.set()

    def _next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    def _shuffled(self, body: dict[str, Any]) -> dict[str, Any]:
        if not self.shuffle_keys:
            return body
        items = list(body.items())
        self._rng.shuffle(items)
        return {k: self._shuffled(v) if isinstance(v, dict) else v for k, v in items}

    def _full_body(self, instrument: Instrument, code: int, now: float) -> dict[str, Any]:
        """The ``<code>-json-full`` object of one instrument (xts-protocol.md section 4)."""
        seg, iid = instrument.xts_segment, instrument.xts_instrument_id
        tick = self._tick(instrument, now)
        stamp = _xts_time(now, seg)
        header: dict[str, Any] = {
            "MessageCode": code,
            "MessageVersion": 4,
            "ApplicationType": 0,
            "TokenID": 0,
            "ExchangeSegment": seg,
            "ExchangeInstrumentID": iid,
        }
        if code == _LTP:
            header.update(
                BookType=1,
                XMarketType=1,
                LastTradedPrice=_num(tick.last_price),
                LastTradedQunatity=tick.last_quantity or 0,
                LastUpdateTime=stamp,
            )
            return header
        if code == _OPEN_INTEREST:
            header.update(
                ExchangeTimeStamp=stamp,
                XTSMarketType=1,
                OpenInterest=tick.oi or 0,
                SequenceNumber=self._next_sequence(),
            )
            return header
        if code == _CANDLE:
            bar = self._candles.get(instrument.kite_token) or self._bars[instrument.kite_token]
            start = bar.start * self.candle_interval
            header.update(
                BarTime=int(start) + _IST_OFFSET,
                BarVolume=bar.volume,
                Open=_num(bar.open),
                High=_num(bar.high),
                Low=_num(bar.low),
                Close=_num(bar.close),
                OpenInterest=bar.oi,
                SumOfQtyInToPrice=_num(round(bar.value, 2)),
            )
            return header
        header["ExchangeTimeStamp"] = stamp
        touchline = self._touchline(tick, seg, now)
        if code == _MARKET_DEPTH:
            bids = tick.depth.bids if tick.depth is not None else ()
            asks = tick.depth.asks if tick.depth is not None else ()
            header["Bids"] = [_book(bids[i] if i < len(bids) else None) for i in range(5)]
            header["Asks"] = [_book(asks[i] if i < len(asks) else None) for i in range(5)]
            header["Touchline"] = touchline
        elif self.flat_touchline:
            header.update(touchline)
        else:
            header["Touchline"] = touchline
        header.update(BookType=1, XMarketType=1, SequenceNumber=self._next_sequence())
        return header

    @staticmethod
    def _touchline(tick: Tick, seg: int, now: float) -> dict[str, Any]:
        ohlc = tick.ohlc
        close = ohlc.close if ohlc is not None else tick.last_price
        change = (tick.last_price - close) * 100 / close if close else 0.0
        bids = tick.depth.bids if tick.depth is not None else ()
        asks = tick.depth.asks if tick.depth is not None else ()
        traded = tick.last_trade_time.timestamp() if tick.last_trade_time is not None else now
        return {
            "BidInfo": _book(bids[0] if bids else None),
            "AskInfo": _book(asks[0] if asks else None),
            "LastTradedPrice": _num(tick.last_price),
            "LastTradedQunatity": tick.last_quantity or 0,
            "TotalBuyQuantity": tick.total_buy_quantity or 0,
            "TotalSellQuantity": tick.total_sell_quantity or 0,
            "TotalTradedQuantity": tick.volume or 0,
            "AverageTradedPrice": _num(tick.average_price if tick.average_price else tick.last_price),
            "LastTradedTime": _xts_time(traded, seg),
            "LastUpdateTime": _xts_time(now, seg),
            "PercentChange": round(change, 2),
            "Open": _num(ohlc.open if ohlc is not None else tick.last_price),
            "High": _num(ohlc.high if ohlc is not None else tick.last_price),
            "Low": _num(ohlc.low if ohlc is not None else tick.last_price),
            "Close": _num(close),
            "TotalValueTraded": None,
            "BuyBackTotalBuy": 0,
            "BuyBackTotalSell": 0,
        }

    def _full_json(self, instrument: Instrument, code: int, now: float) -> str:
        return _dumps(self._shuffled(self._full_body(instrument, code, now)))

    def _partial_text(self, instrument: Instrument, code: int, now: float) -> str:
        """The ``<code>-json-partial`` text of one instrument (xts-protocol.md section 4.9)."""
        seg, iid = instrument.xts_segment, instrument.xts_instrument_id
        parts = [f"t:{seg}_{iid}"]
        tick = self._tick(instrument, now)
        if code == _LTP:
            parts += [
                f"ltp:{_text(tick.last_price)}",
                f"ltq:{tick.last_quantity or 0}",
                f"lut:{_xts_time(now, seg)}",
            ]
        elif code == _OPEN_INTEREST:
            parts.append(f"o:{tick.oi or 0}")
        elif code == _CANDLE:
            bar = self._candles.get(instrument.kite_token) or self._bars[instrument.kite_token]
            parts += [
                f"o:{_text(bar.open)}",
                f"h:{_text(bar.high)}",
                f"l:{_text(bar.low)}",
                f"c:{_text(bar.close)}",
                f"bt:{int(bar.start * self.candle_interval) + _IST_OFFSET}",
                f"bv:{bar.volume}",
                f"pv:{_text(round(bar.value, 2))}",
            ]
        else:
            levels = 5 if code == _MARKET_DEPTH else 1
            bids = tick.depth.bids if tick.depth is not None else ()
            asks = tick.depth.asks if tick.depth is not None else ()
            parts.append("bi:" + _levels(bids, levels))
            parts.append("ai:" + _levels(asks, levels))
            body = self._touchline(tick, seg, now)
            parts += [
                f"ltp:{_text(tick.last_price)}",
                f"ltq:{body['LastTradedQunatity']}",
                f"tb:{body['TotalBuyQuantity']}",
                f"ts:{body['TotalSellQuantity']}",
                f"v:{body['TotalTradedQuantity']}",
                f"ap:{body['AverageTradedPrice']}",
                f"ltt:{body['LastTradedTime']}",
                f"lut:{body['LastUpdateTime']}",
                f"pc:{body['PercentChange']}",
                f"o:{body['Open']}",
                f"h:{body['High']}",
                f"l:{body['Low']}",
                f"c:{body['Close']}",
            ]
        return ",".join(parts)

    def _frame(self, key: tuple[int, int, int], partial_mode: bool) -> str | None:
        """The event frame of one subscription at the current step (None: nothing to send), cached."""
        cache_key = (*key, partial_mode)
        if cache_key in self._frames:
            return self._frames[cache_key]
        seg, iid, code = key
        instrument = self._by_address[(seg, iid)]
        frame: str | None = None
        send = (
            code in (_TOUCHLINE, _MARKET_DEPTH, _LTP)
            or (code == _OPEN_INTEREST and instrument.instrument_type != "EQ")
            or (code == _CANDLE and instrument.kite_token in self._candles)
        )
        if send:
            now = self.clock()
            if partial_mode:
                frame = encode_event(f"{code}-json-partial", self._partial_text(instrument, code, now))
            else:
                frame = encode_event(f"{code}-json-full", self._full_json(instrument, code, now))
        self._frames[cache_key] = frame
        return frame

    # -----------------------------------------------------------------------------------------------------
    # HTTP

    def _count(self, name: str, n: int = 1) -> None:
        self._counters[name] = self._counters.get(name, 0) + n

    async def _http(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"].rstrip("/") or "/"
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = bytes(message.get("body", b""))
            size += len(chunk)
            if size <= _MAX_BODY:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        self._count("rest")
        headers = {
            bytes(k).decode("latin-1").lower(): bytes(v).decode("latin-1") for k, v in scope["headers"]
        }
        if size > _MAX_BODY:
            reply = _bad_request(("body", f"larger than {_MAX_BODY} bytes"))
        elif path == _SOCKET_PATH:
            reply = _Reply(400, {"code": 0, "message": "Transport unknown"})
        else:
            query = bytes(scope.get("query_string", b"")).decode("latin-1")
            reply = self._route(method, path, headers, b"".join(chunks), query)
        data = _dumps(reply.body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})

    def _route(self, method: str, path: str, headers: Mapping[str, str], raw: bytes, query: str) -> _Reply:
        routes: dict[str, dict[str, Callable[[_Session, Mapping[str, Any]], _Reply]]] = {
            "/auth/logout": {"DELETE": self._logout},
            "/config/clientConfig": {"GET": self._client_config},
            "/instruments/subscription": {
                "POST": self._subscribe,
                "PUT": self._unsubscribe,
                "GET": self._list_subscriptions,
            },
            "/instruments/quotes": {"POST": self._quotes},
            "/instruments/indexlist": {"GET": self._index_list},
        }
        if not path.startswith(_PREFIX + "/"):
            return _Reply(404, _error("e-route-0001", "Not Found"))
        route = path[len(_PREFIX) :]
        allowed = routes.get(route)
        if route in ("/auth/login", "/instruments/master"):
            allowed_methods: Iterable[str] = ("POST",)
        elif allowed is not None:
            allowed_methods = allowed
        else:
            return _Reply(404, _error("e-route-0001", "Not Found"))
        if method not in allowed_methods:
            return _Reply(405, _error("e-route-0002", "Method Not Allowed"))
        if method in ("GET", "DELETE"):
            body: Mapping[str, Any] | None = dict(parse_qsl(query, keep_blank_values=True))
        else:
            body = _parse_body(headers.get("content-type", ""), raw)
        if route == "/auth/login":
            if body is None:
                self._count("logins_refused")
                return _bad_request(("body", "not JSON nor form-urlencoded"))
            return self._login(body)
        if body is None:
            return _bad_request(("body", "not a JSON object"))
        if route == "/instruments/master":
            return self._master(body)
        session = self._session_for(headers.get("authorization"))
        if session is None:
            return self._invalid_token()
        assert allowed is not None
        return allowed[method](session, body)

    def _invalid_token(self) -> _Reply:
        return _Reply(self.invalid_token_status, _error("e-token-0001", "Invalid Token"))

    def _session_for(self, token: str | None) -> _Session | None:
        if not token:
            return None
        session = self._sessions.get(token.strip())
        if session is None or not session.valid:
            return None
        if session.expires_at <= self.clock():
            session.valid = False
            return None
        return session

    # -- auth

    def _login(self, body: Mapping[str, Any]) -> _Reply:
        if self._login_rejections:
            status = self._login_rejections.pop(0)
            self._count("logins_refused")
            logger.info("XTS simulator: login refused with HTTP %d (reject_next_login)", status)
            return _Reply(status, _error("e-app-0002", "Login rejected (simulated fault)"))
        app_key, secret_key = body.get("appKey"), body.get("secretKey")
        missing = [(name, f'"{name}" is required') for name in ("appKey", "secretKey") if not body.get(name)]
        if missing or not isinstance(app_key, str) or not isinstance(secret_key, str):
            self._count("logins_refused")
            return _bad_request(*(missing or [("appKey", "must be a string")]))
        good_app = hmac.compare_digest(app_key.encode(), self.app_key.encode())
        good_secret = hmac.compare_digest(secret_key.encode(), self.secret_key.encode())
        if not (good_app and good_secret):
            self._count("logins_refused")
            logger.info("XTS simulator: login refused (wrong appKey or secretKey)")
            return _Reply(400, _error("e-app-0001", "Invalid appKey or secretKey"))
        now = int(self.clock())
        iat = max(now, self._last_iat.get(self.app_key, 0) + 1)
        self._last_iat[self.app_key] = iat
        token = _jwt(
            {
                "userID": f"{self.user_id}_{self.app_key}",
                "publicKey": self.app_key,
                "iat": iat,
                "exp": iat + _TOKEN_LIFETIME,
            },
            self._signing_key,
        )
        previous = self._current.get(self.app_key)
        if previous is not None and previous.valid:
            previous.valid = False
            logger.info("XTS simulator: session %d superseded by a new login", previous.number)
        number = self._numbers["session"] = self._numbers.get("session", 0) + 1
        session = _Session(number, token, self.user_id, self.app_key, iat + _TOKEN_LIFETIME)
        self._sessions[token] = session
        self._current[self.app_key] = session
        self._count("logins")
        logger.info("XTS simulator: user %s logged in (session %d)", self.user_id, number)
        expiry = (date.fromtimestamp(now) + timedelta(days=365)).strftime("%d-%m-%Y")
        return _Reply(
            200,
            _success(
                "e-response-0010",
                "Provided Valid Credentials",
                {
                    "token": token,
                    "userID": self.user_id,
                    "appVersion": _APP_VERSION,
                    "application_expiry_date": expiry,
                },
            ),
        )

    def _logout(self, session: _Session, body: Mapping[str, Any]) -> _Reply:
        session.valid = False
        session.subscriptions.clear()
        for sock in session.sockets:
            sock.close_code = 1000
            sock.wake.set()
        logger.info("XTS simulator: session %d logged out", session.number)
        return _Reply(200, _success("s-user-0002", "User logged out successfully!", {}))

    def _client_config(self, session: _Session, body: Mapping[str, Any]) -> _Reply:
        instrument_type: dict[str, Any] = dict(_INSTRUMENT_TYPES)
        instrument_type.update({str(number): name for name, number in _INSTRUMENT_TYPES.items()})
        return _Reply(
            200,
            _success(
                "s-config-0001",
                "Client config fetched successfully!",
                {
                    "exchangeSegments": dict(_SEGMENTS),
                    "xtsMessageCode": {
                        "touchlineEvent": _TOUCHLINE,
                        "marketDepthEvent": _MARKET_DEPTH,
                        "indexDataEvent": 1504,
                        "candleDataEvent": _CANDLE,
                        "openInterestEvent": _OPEN_INTEREST,
                        "instrumentPropertyChangeEvent": 1105,
                    },
                    "publishFormat": ["Binary", "JSON"],
                    "broadCastMode": ["Full", "Partial"],
                    "instrumentType": instrument_type,
                },
            ),
        )

    # -- instruments

    def _instruments_of(self, body: Mapping[str, Any]) -> tuple[int, list[Instrument]] | _Reply:
        """The message code and the (deduplicated) instruments of a subscribe/unsubscribe/quotes body."""
        code = _as_int(body.get("xtsMessageCode"))
        if code is None:
            return _bad_request(("xtsMessageCode", '"xtsMessageCode" is required (a number)'))
        if code not in _CODES:
            codes = ", ".join(map(str, _CODES))
            return _bad_request(("xtsMessageCode", f"{code} is not supported (supported: {codes})"))
        raw = body.get("instruments")
        if isinstance(raw, str):  # form-urlencoded bodies carry the list as JSON text
            try:
                raw = json.loads(raw)
            except ValueError:
                raw = None
        if not isinstance(raw, list) or not raw:
            return _bad_request(("instruments", '"instruments" must be a non-empty array'))
        found: dict[tuple[int, int], Instrument] = {}
        unknown: list[dict[str, Any]] = []
        for index, item in enumerate(raw):
            if not isinstance(item, Mapping):
                return _bad_request((f"instruments[{index}]", "must be an object"))
            seg = _as_segment(item.get("exchangeSegment"))
            iid = _as_int(item.get("exchangeInstrumentID"))
            if seg is None or iid is None:
                return _bad_request(
                    (f"instruments[{index}]", "needs a numeric exchangeSegment and exchangeInstrumentID")
                )
            instrument = self._by_address.get((seg, iid))
            if instrument is None:
                unknown.append({"exchangeSegment": seg, "exchangeInstrumentID": iid})
            else:
                found[(seg, iid)] = instrument
        if unknown:
            return _Reply(400, _error("e-instrument-0001", "Instrument not found", {"instruments": unknown}))
        return code, list(found.values())

    def _remaining(self, session: _Session) -> int:
        return max(0, self.max_subscriptions - len(session.subscriptions))

    def _subscribe(self, session: _Session, body: Mapping[str, Any]) -> _Reply:
        parsed = self._instruments_of(body)
        if isinstance(parsed, _Reply):
            return parsed
        code, instruments = parsed
        new = [
            i for i in instruments if (i.xts_segment, i.xts_instrument_id, code) not in session.subscriptions
        ]
        if not new:
            return _Reply(
                400,
                _error(
                    "e-session-0002",
                    "Instrument Already Subscribed !",
                    {"Remaining_Subscription_Count": self._remaining(session)},
                ),
            )
        if len(session.subscriptions) + len(new) > self.max_subscriptions:
            return _Reply(
                400,
                _error(
                    "e-session-0005",
                    f"Subscription limit exceeded: {len(new)} new subscription(s) requested, "
                    f"{self._remaining(session)} remaining (limit {self.max_subscriptions})",
                    {"Remaining_Subscription_Count": self._remaining(session)},
                ),
            )
        now = self.clock()
        for i in new:
            session.subscriptions[(i.xts_segment, i.xts_instrument_id, code)] = i
        for sock in session.sockets:
            sock.wake.set()
        logger.debug("XTS simulator: session %d subscribed %d in %d", session.number, len(new), code)
        return _Reply(
            200,
            _success(
                "s-session-0001",
                "Instrument subscribed successfully!",
                {
                    "mdp": code,
                    "quotesList": [
                        {"exchangeSegment": i.xts_segment, "exchangeInstrumentID": i.xts_instrument_id}
                        for i in new
                    ],
                    "listQuotes": [self._full_json(i, code, now) for i in new],
                    "Remaining_Subscription_Count": self._remaining(session),
                },
            ),
        )

    def _unsubscribe(self, session: _Session, body: Mapping[str, Any]) -> _Reply:
        parsed = self._instruments_of(body)
        if isinstance(parsed, _Reply):
            return parsed
        code, instruments = parsed
        removed = []
        for i in instruments:
            if session.subscriptions.pop((i.xts_segment, i.xts_instrument_id, code), None) is not None:
                removed.append(
                    {"exchangeSegment": i.xts_segment, "exchangeInstrumentID": i.xts_instrument_id}
                )
        return _Reply(
            200,
            _success(
                "s-session-0002", "Instrument subscription deleted!", {"mdp": code, "unsubList": removed}
            ),
        )

    def _list_subscriptions(self, session: _Session, body: Mapping[str, Any]) -> _Reply:
        raw_code = body.get("xtsMessageCode")
        code = _as_int(raw_code)
        if raw_code not in (None, "") and code is None:
            return _bad_request(("xtsMessageCode", "must be a number"))
        listed = [
            {"exchangeSegment": seg, "exchangeInstrumentID": iid, "xtsMessageCode": c}
            for seg, iid, c in session.subscriptions
            if code is None or c == code
        ]
        return _Reply(
            200,
            _success(
                "s-session-0003",
                "Subscription list fetched successfully!",
                {
                    "mdp": code,
                    "subscriptionList": listed,
                    "Remaining_Subscription_Count": self._remaining(session),
                },
            ),
        )

    def _quotes(self, session: _Session, body: Mapping[str, Any]) -> _Reply:
        publish_format = body.get("publishFormat")
        if not isinstance(publish_format, str) or not publish_format:
            return _bad_request(("publishFormat", '"publishFormat" is required'))
        if publish_format.lower() != "json":
            return _bad_request(("publishFormat", "only JSON is supported by the simulator"))
        parsed = self._instruments_of(body)
        if isinstance(parsed, _Reply):
            return parsed
        code, instruments = parsed
        if len(instruments) > _QUOTES_LIMIT:
            return _bad_request(("instruments", f"at most {_QUOTES_LIMIT} instruments per request"))
        now = self.clock()
        return _Reply(
            200,
            _success(
                "s-quotes-0001",
                "Get quotes successfully!",
                {
                    "mdp": code,
                    "quotesList": [
                        {"exchangeSegment": i.xts_segment, "exchangeInstrumentID": str(i.xts_instrument_id)}
                        for i in instruments
                    ],
                    "listQuotes": [self._full_json(i, code, now) for i in instruments],
                },
            ),
        )

    def _master(self, body: Mapping[str, Any]) -> _Reply:
        raw = body.get("exchangeSegmentList")
        if isinstance(raw, str):  # a form body: JSON text, or one name
            try:
                raw = json.loads(raw)
            except ValueError:
                raw = [raw]
        if not isinstance(raw, list) or not raw:
            return _bad_request(("exchangeSegmentList", '"exchangeSegmentList" must be a non-empty array'))
        segments: set[int] = set()
        for name in raw:
            segment = _as_segment(name)
            if segment is None or segment not in _SEGMENT_NAMES:
                return _bad_request(("exchangeSegmentList", f"unknown exchange segment {name!r}"))
            segments.add(segment)
        # Indices are not master rows (they come from /instruments/indexlist).
        rows = render_master(
            _master_record(i) for i in self.instruments if i.xts_segment in segments and i.tradable
        )
        return _Reply(200, _success("s-instrument-0001", "Instrument master fetched successfully!", rows))

    def _index_list(self, session: _Session, body: Mapping[str, Any]) -> _Reply:
        segment = _as_segment(body.get("exchangeSegment"))
        if segment is None:
            return _bad_request(("exchangeSegment", '"exchangeSegment" is required (a number)'))
        names = [
            f"{i.name}_{i.xts_instrument_id}"
            for i in self.instruments
            if not i.tradable and i.xts_segment == segment
        ]
        return _Reply(
            200,
            _success(
                "s-instrument-0002",
                "Index list fetched successfully!",
                {"exchangeSegment": segment, "indexList": names},
            ),
        )

    # -----------------------------------------------------------------------------------------------------
    # Socket.IO

    async def _reject(self, send: _Send, status: int, body: Any) -> None:
        self._count("handshakes_rejected")
        data = _dumps(body).encode()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": data})

    def _admit(self, scope: _Scope) -> tuple[_Session, bool] | _Reply:
        """The session and broadcast mode (True: Partial) of a handshake, or the refusal."""
        if scope["path"].rstrip("/") != _SOCKET_PATH:
            return _Reply(404, _error("e-route-0001", "Not Found"))
        query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"), keep_blank_values=True)

        def first(name: str) -> str | None:
            values = query.get(name)
            return values[0] if values else None

        session = self._session_for(first("token"))
        if session is None:
            return _Reply(401, _error("e-token-0001", "Invalid Token"))
        if first("userID") != session.user_id:
            return _Reply(401, _error("e-token-0002", "Invalid userID"))
        publish_format = (first("publishFormat") or "JSON").lower()
        if publish_format != "json":
            return _Reply(400, _error("e-request-0001", "Bad Request: only publishFormat=JSON is simulated"))
        mode = (first("broadcastMode") or "Full").lower()
        if mode not in ("full", "partial"):
            return _Reply(400, _error("e-request-0001", "Bad Request: broadcastMode must be Full or Partial"))
        return session, mode == "partial"

    async def _websocket(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        admitted = self._admit(scope)
        if isinstance(admitted, _Reply):
            logger.info("XTS simulator: socket handshake refused with HTTP %d", admitted.status)
            await self._reject(send, admitted.status, admitted.body)
            return
        session, partial_mode = admitted
        await send({"type": "websocket.accept"})
        number = self._numbers["socket"] = self._numbers.get("socket", 0) + 1
        sid = "".join(secrets.choice(_SID_ALPHABET) for _ in range(20))
        sock = _Socket(
            number,
            sid,
            session,
            partial_mode,
            send,
            _find_socket_stream(send),
            last_ping=trio.current_time(),
            generation=self._generation,
            candle_generation=self._candle_generation,
        )
        self._sockets[number] = sock
        session.sockets.add(sock)
        self._count("sockets_accepted")
        logger.info(
            "XTS simulator: socket %d open (session %d, %s)",
            number,
            session.number,
            "Partial" if partial_mode else "Full",
        )
        try:
            async with trio.open_nursery() as nursery:
                await self._send(sock, OpenPacket(sid, (), self.ping_interval, self.ping_timeout).encode())
                await self._send(sock, encode_connect())
                joined = {
                    "type": "success",
                    "code": "s-socket-0001",
                    "description": f"Socket joined successfully! SocketId={sid}",
                }
                await self._send(
                    sock, encode_event("joined", _dumps(joined) if self.joined_as_string else joined)
                )
                nursery.start_soon(self._write, sock, nursery.cancel_scope)
                nursery.start_soon(self._watch_pings, sock, nursery.cancel_scope)
                await self._read(sock, receive)
                nursery.cancel_scope.cancel()
        finally:
            sock.closed = True
            self._sockets.pop(number, None)
            session.sockets.discard(sock)
            logger.info("XTS simulator: socket %d closed (%s)", number, sock.reason)

    async def _send(self, sock: _Socket, text: str) -> None:
        async with sock.lock:
            await sock.send({"type": "websocket.send", "text": text})

    async def _close(self, sock: _Socket, code: int, *, socketio: bool) -> None:
        if socketio:
            await self._send(sock, encode_disconnect())
        async with sock.lock:
            await sock.send({"type": "websocket.close", "code": code})

    async def _read(self, sock: _Socket, receive: _Receive) -> None:
        """Read client packets until the client goes (or closes the session)."""
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                if not sock.closed:
                    sock.reason = f"client disconnected, code {message.get('code')}"
                return
            text = message.get("text")
            if kind != "websocket.receive" or text is None:
                continue  # binary messages mean nothing to the JSON product
            try:
                packet = parse_packet(text)
            except DecodeError:
                logger.debug("XTS simulator: socket %d sent a malformed packet (ignored)", sock.number)
                continue
            if isinstance(packet, EioPing):
                self._count("pings")
                sock.last_ping = trio.current_time()
                if not self._silent:
                    await self._send(sock, EioPong(packet.data).encode())
                    self._count("pongs")
            elif isinstance(packet, EioClose) or (
                isinstance(packet, SioDisconnect) and packet.namespace == "/"
            ):
                sock.reason = "client closed the session"
                await self._close(sock, 1000, socketio=False)
                return

    async def _watch_pings(self, sock: _Socket, cancel_scope: trio.CancelScope) -> None:
        """Close the socket when no ping arrived for ping_interval + ping_timeout (the EIO3 server rule)."""
        limit = self.ping_interval + self.ping_timeout
        while True:
            deadline = sock.last_ping + limit
            if trio.current_time() >= deadline:
                sock.reason = "no ping within pingInterval + pingTimeout"
                await self._close(sock, 1000, socketio=False)
                cancel_scope.cancel()
                return
            await trio.sleep_until(deadline)

    async def _write(self, sock: _Socket, cancel_scope: trio.CancelScope) -> None:
        """Send the session's events at each market step, garbage on request, and requested closes."""
        garbage_index = 0
        while True:
            await sock.wake.wait()
            sock.wake = trio.Event()
            if sock.close_code is not None:
                sock.reason = "logged out" if sock.close_code == 1000 else "dropped (close 1011)"
                await self._close(sock, sock.close_code, socketio=True)
                cancel_scope.cancel()
                return
            while sock.garbage > 0:
                sock.garbage -= 1
                await self._send(sock, _GARBAGE[garbage_index % len(_GARBAGE)])
                garbage_index += 1
                self._count("garbage")
            if self._silent or sock.generation == self._generation:
                continue
            sock.generation = self._generation
            # A socket that skipped steps still gets each bar close once (the latest bar).
            candle_due = sock.candle_generation < self._candle_generation
            sock.candle_generation = self._candle_generation
            for key in list(sock.session.subscriptions):
                if key[2] == _CANDLE and not candle_due:
                    continue
                frame = self._frame(key, sock.partial)
                if frame is not None:
                    await self._send(sock, frame)
                    self._count("events")

    # -----------------------------------------------------------------------------------------------------
    # Fault knobs and assertions (synchronous; safe to call from any task of the serving Trio run).

    def drop_connections(self) -> int:
        """Abort every open socket's TCP connection at once (a reset: no Socket.IO or WebSocket close).

        Clients see an abnormal closure (WebSocket code 1006). The sessions and their subscriptions stay:
        a client that reconnects with its token gets its ticks again. Returns the number of sockets
        dropped. Does not block; raises nothing. (Should hypercorn's internals ever hide the TCP stream,
        a socket is closed with WebSocket code 1011 instead, and a warning is logged.)
        """
        dropped = 0
        for sock in list(self._sockets.values()):
            if sock.closed:
                continue
            dropped += 1
            sock.closed = True
            sock.reason = "dropped (reset)"
            stream = sock.transport
            if stream is None:
                logger.warning("XTS simulator: cannot reach socket %d's TCP stream; closing it", sock.number)
                sock.close_code = 1011
                sock.wake.set()
                continue
            with contextlib.suppress(OSError):  # already closed by the peer
                stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ABORT)
            stream.socket.close()
        self._count("dropped", dropped)
        if dropped:
            logger.info("XTS simulator: dropped %d socket(s)", dropped)
        return dropped

    def go_silent(self, silent: bool = True) -> None:
        """Stop (or, with False, resume) sending events and pongs on every socket; sockets stay open.

        While silent, pings are still read (and counted, and keep the server's ping watchdog happy), but
        not answered; garbage and closes requested by other knobs still go out, and new sockets still get
        their handshake. REST keeps answering. The market keeps moving. Does not block; raises nothing.
        """
        self._silent = silent
        if not silent:
            for sock in self._sockets.values():
                sock.wake.set()

    def send_garbage(self, count: int = 1) -> int:
        """Send `count` malformed frames to every open socket, at once.

        They cycle through: an event whose JSON-string data is cut, a cut Socket.IO event, an event whose
        data is not a list, an empty event, text that is no packet, a partial event with broken values,
        and an unknown Engine.IO packet type. Returns the number of sockets affected. Does not block.

        Raises:
            ValueError: a negative count.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        affected = 0
        for sock in self._sockets.values():
            if not sock.closed:
                sock.garbage += count
                sock.wake.set()
                affected += 1
        return affected

    def expire_tokens(self) -> int:
        """Make every current token invalid, as the 24 h expiry does.

        REST calls and new socket handshakes with those tokens are refused ("Invalid Token"); sockets
        already open stay open. Clients must log in again. Returns the number of sessions expired. Does not
        block; raises nothing.
        """
        expired = 0
        for session in self._sessions.values():
            if session.valid:
                session.valid = False
                expired += 1
        if expired:
            logger.info("XTS simulator: expired %d token(s)", expired)
        return expired

    def reject_next_login(self, status: int = 500, count: int = 1) -> None:
        """Refuse the next `count` logins with HTTP `status` and an error envelope (``e-app-0002``).

        The refusal comes before the credentials are checked and does not touch existing sessions. A
        status of 200 gives "HTTP 200 with type error". Does not block.

        Raises:
            ValueError: a status outside 200-599, or a negative count.
        """
        if not 200 <= status <= 599:
            raise ValueError(f"status must be an HTTP status in 200-599, got {status}")
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        self._login_rejections.extend([status] * count)

    def subscriptions(self, token: str | None = None) -> list[tuple[int, int, int]]:
        """The (ExchangeSegment, ExchangeInstrumentID, xtsMessageCode) subscriptions of a session.

        Args:
            token: the session's token; None means the latest login's session (valid or not).

        Returns:
            A copy, in the order subscribed; empty if there is no such session. Does not block.
        """
        session = self._sessions.get(token) if token is not None else self._current.get(self.app_key)
        return [] if session is None else list(session.subscriptions)

    def statistics(self) -> XtsSimulatorStatistics:
        """A snapshot of the simulator's counters. Does not block; raises nothing."""
        c = self._counters.get
        live = [s for s in self._sessions.values() if s.valid or s.sockets]
        return XtsSimulatorStatistics(
            logins=c("logins", 0),
            logins_refused=c("logins_refused", 0),
            sessions=sum(1 for s in self._sessions.values() if s.valid and s.expires_at > self.clock()),
            sockets_open=sum(1 for s in self._sockets.values() if not s.closed),
            sockets_accepted=c("sockets_accepted", 0),
            handshakes_rejected=c("handshakes_rejected", 0),
            rest_requests=c("rest", 0),
            events_sent=c("events", 0),
            garbage_frames_sent=c("garbage", 0),
            pings_received=c("pings", 0),
            pongs_sent=c("pongs", 0),
            connections_dropped=c("dropped", 0),
            subscriptions={s.number: len(s.subscriptions) for s in live},
            market_steps=self.market.steps,
        )


def _book(level: Any) -> dict[str, Any]:
    if level is None:
        return {"Size": 0, "Price": 0, "TotalOrders": 0, "BuyBackMarketMaker": 0}
    return {
        "Size": level.quantity,
        "Price": _num(level.price),
        "TotalOrders": level.orders,
        "BuyBackMarketMaker": 0,
    }


def _levels(levels: Sequence[Any], count: int) -> str:
    groups = []
    for i in range(count):
        level = levels[i] if i < len(levels) else None
        if level is None:
            groups.append(f"{i}|0|0|0")
        else:
            groups.append(f"{i}|{level.quantity}|{_text(level.price)}|{level.orders}")
    return "|".join(groups)


def _parse_body(content_type: str, raw: bytes) -> dict[str, Any] | None:
    """A request body as a dict: JSON, or form-urlencoded (by content type, else whichever parses)."""
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "application/x-www-form-urlencoded" in content_type.lower():
        return dict(parse_qsl(text, keep_blank_values=True))
    try:
        value = json.loads(text)
    except ValueError:
        if "=" in text and "json" not in content_type.lower():
            return dict(parse_qsl(text, keep_blank_values=True))
        return None
    return value if isinstance(value, dict) else None
