"""The XTS simulator's REST API, sans-IO: a request (method, path, headers, body, query) in, a `Reply`
(status and JSON body) out, over a `SessionStore`.

Routes, error codes and every choice the reference leaves open are listed in the docstring of
``trading_ws.sim._xts``. The ASGI adapter that reads requests and writes replies is in ``_socket``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, timedelta
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl

import attrs

from ...brokers.xts._instruments import render_master
from .._universe import Instrument
from ._payloads import (
    CANDLE,
    CODES,
    INSTRUMENT_TYPES,
    MARKET_DEPTH,
    OPEN_INTEREST,
    SEGMENT_NAMES,
    SEGMENTS,
    TOUCHLINE,
    Payloads,
    dumps,
    master_record,
)

__all__ = [
    "PREFIX",
    "SOCKET_PATH",
    "Reply",
    "RestApi",
    "RestSettings",
    "Session",
    "SessionSocket",
    "SessionStore",
    "bad_request",
    "error",
]

logger = logging.getLogger("trading_ws.sim")

PREFIX: Final = "/apimarketdata"
"""The root of every route."""
SOCKET_PATH: Final = PREFIX + "/socket.io"
"""The Socket.IO endpoint (a plain HTTP request there gets engine.io's "Transport unknown")."""

_APP_VERSION: Final = "5.0.15"
_TOKEN_LIFETIME: Final = 86400
_QUOTES_LIMIT: Final = 50

_Handler = Callable[["Session", Mapping[str, Any]], "Reply"]


@attrs.frozen
class Reply:
    """An HTTP answer: the status and the body (a JSON value)."""

    status: int
    body: Any


class SessionSocket(Protocol):
    """What a session asks of the sockets attached to it."""

    def notify(self) -> None:
        """Wake the socket's writer (its session's subscriptions changed). Does not block."""

    def request_close(self, code: int) -> None:
        """Ask the socket's writer to close it with a Socket.IO disconnect and WebSocket `code`."""


@attrs.define(eq=False)
class Session:
    """One login: its token, its subscriptions and the sockets opened with its token."""

    number: int
    """1 for the first login, 2 for the next..."""
    token: str = attrs.field(repr=False)
    user_id: str
    app_key: str = attrs.field(repr=False)
    expires_at: int
    """Unix time at which the token expires."""
    valid: bool = True
    """False once superseded, expired or logged out (open sockets keep streaming)."""
    subscriptions: dict[tuple[int, int, int], Instrument] = attrs.field(factory=dict)
    """(segment, instrument id, message code) -> instrument, in the order subscribed."""
    sockets: set[SessionSocket] = attrs.field(factory=set)
    """The open sockets of this session."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _jwt(payload: Mapping[str, Any], key: bytes) -> str:
    """An HS256 JSON Web Token (compact serialization) over `payload`."""
    signing_input = _b64url(b'{"alg":"HS256","typ":"JWT"}') + "." + _b64url(dumps(payload).encode())
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64url(signature)


@attrs.define(eq=False)
class SessionStore:
    """The sessions of one simulator by token, and which one is each app key's latest. Sans-IO.

    A login mints a new session and supersedes the app key's previous one; its token is an HS256 JWT
    signed with a key made for this store. Two logins in the same second get ``iat`` one second apart, so
    that their tokens differ.
    """

    _signing_key: bytes = attrs.field(factory=lambda: secrets.token_bytes(32), repr=False)
    _sessions: dict[str, Session] = attrs.field(init=False, factory=dict, repr=False)
    _current: dict[str, Session] = attrs.field(init=False, factory=dict, repr=False)
    _last_iat: dict[str, int] = attrs.field(init=False, factory=dict, repr=False)
    _opened: int = attrs.field(init=False, default=0)

    def __iter__(self) -> Iterator[Session]:
        """Every session, in login order (superseded and expired ones included)."""
        return iter(self._sessions.values())

    def open(self, user_id: str, app_key: str, now: int) -> Session:
        """Log `user_id` in under `app_key` at unix time `now`: a new session, the previous one of that app
        key superseded (its token refused from now on; its open sockets stream on)."""
        iat = max(now, self._last_iat.get(app_key, 0) + 1)
        self._last_iat[app_key] = iat
        token = _jwt(
            {
                "userID": f"{user_id}_{app_key}",
                "publicKey": app_key,
                "iat": iat,
                "exp": iat + _TOKEN_LIFETIME,
            },
            self._signing_key,
        )
        previous = self._current.get(app_key)
        if previous is not None and previous.valid:
            previous.valid = False
            logger.info("XTS simulator: session %d superseded by a new login", previous.number)
        self._opened += 1
        session = Session(self._opened, token, user_id, app_key, iat + _TOKEN_LIFETIME)
        self._sessions[token] = session
        self._current[app_key] = session
        return session

    def find(self, token: str | None, now: float) -> Session | None:
        """The valid session of `token` at unix time `now`; None for a missing, unknown, superseded or
        expired token (an expired session is marked invalid)."""
        if not token:
            return None
        session = self._sessions.get(token.strip())
        if session is None or not session.valid:
            return None
        if session.expires_at <= now:
            session.valid = False
            return None
        return session

    def get(self, token: str) -> Session | None:
        """The session of `token`, valid or not."""
        return self._sessions.get(token)

    def latest(self, app_key: str) -> Session | None:
        """The latest login's session of `app_key`, valid or not."""
        return self._current.get(app_key)

    def expire_all(self) -> int:
        """Make every valid session invalid; returns how many were."""
        expired = 0
        for session in self._sessions.values():
            if session.valid:
                session.valid = False
                expired += 1
        return expired

    def detach_sockets(self) -> None:
        """Forget every session's sockets (the server stopped: they are gone)."""
        for session in self._sessions.values():
            session.sockets.clear()


def _success(code: str, description: str, result: Any) -> dict[str, Any]:
    return {"type": "success", "code": code, "description": description, "result": result}


def error(code: str, description: str, result: Any = None) -> dict[str, Any]:
    """An XTS error envelope: ``{"type": "error", "code": ..., "description": ..., "result": ...}``."""
    return {"type": "error", "code": code, "description": description, "result": result}


def bad_request(*errors: tuple[str, str]) -> Reply:
    """HTTP 400 ``e-request-0001`` "Bad Request" with ``result.errors`` ((field, message) pairs), what
    PY-SDK's XTSInputException reads."""
    return Reply(
        400,
        error(
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
    if isinstance(value, str) and value.strip().upper() in SEGMENTS:
        return SEGMENTS[value.strip().upper()]
    return _as_int(value)


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


class RestSettings(Protocol):
    """The `XtsSimulator` settings the REST API reads, at each request (a change while serving counts)."""

    app_key: str
    secret_key: str
    user_id: str
    max_subscriptions: int
    invalid_token_status: int
    clock: Callable[[], float]
    instruments: tuple[Instrument, ...]


@attrs.define(eq=False)
class RestApi:
    """The REST routes of one simulator over its `store`; `answer` is the whole API. Sans-IO.

    `counters` gets ``logins`` and ``logins_refused``; `login_rejections` holds the statuses of the logins
    `XtsSimulator.reject_next_login` asked to refuse, first first.
    """

    settings: RestSettings = attrs.field(repr=False)
    store: SessionStore
    payloads: Payloads = attrs.field(repr=False)
    counters: Counter[str] = attrs.field(repr=False)
    login_rejections: list[int] = attrs.field(factory=list)

    def answer(self, method: str, path: str, headers: Mapping[str, str], raw: bytes, query: str) -> Reply:
        """The reply to one request. `path` has no trailing slash; `headers` have lower-case names."""
        routes: dict[str, dict[str, _Handler]] = {
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
        if not path.startswith(PREFIX + "/"):
            return Reply(404, error("e-route-0001", "Not Found"))
        route = path[len(PREFIX) :]
        allowed = routes.get(route)
        if route in ("/auth/login", "/instruments/master"):
            allowed_methods: Iterable[str] = ("POST",)
        elif allowed is not None:
            allowed_methods = allowed
        else:
            return Reply(404, error("e-route-0001", "Not Found"))
        if method not in allowed_methods:
            return Reply(405, error("e-route-0002", "Method Not Allowed"))
        if method in ("GET", "DELETE"):
            body: Mapping[str, Any] | None = dict(parse_qsl(query, keep_blank_values=True))
        else:
            body = _parse_body(headers.get("content-type", ""), raw)
        if route == "/auth/login":
            if body is None:
                self.counters["logins_refused"] += 1
                return bad_request(("body", "not JSON nor form-urlencoded"))
            return self._login(body)
        if body is None:
            return bad_request(("body", "not a JSON object"))
        if route == "/instruments/master":
            return self._master(body)
        session = self.session_for(headers.get("authorization"))
        if session is None:
            return Reply(self.settings.invalid_token_status, error("e-token-0001", "Invalid Token"))
        assert allowed is not None
        return allowed[method](session, body)

    def session_for(self, token: str | None) -> Session | None:
        """The valid session of `token` now (the settings' clock), or None."""
        return self.store.find(token, self.settings.clock())

    # -- auth

    def _login(self, body: Mapping[str, Any]) -> Reply:
        settings = self.settings
        if self.login_rejections:
            status = self.login_rejections.pop(0)
            self.counters["logins_refused"] += 1
            logger.info("XTS simulator: login refused with HTTP %d (reject_next_login)", status)
            return Reply(status, error("e-app-0002", "Login rejected (simulated fault)"))
        app_key, secret_key = body.get("appKey"), body.get("secretKey")
        missing = [(name, f'"{name}" is required') for name in ("appKey", "secretKey") if not body.get(name)]
        if missing or not isinstance(app_key, str) or not isinstance(secret_key, str):
            self.counters["logins_refused"] += 1
            return bad_request(*(missing or [("appKey", "must be a string")]))
        good_app = hmac.compare_digest(app_key.encode(), settings.app_key.encode())
        good_secret = hmac.compare_digest(secret_key.encode(), settings.secret_key.encode())
        if not (good_app and good_secret):
            self.counters["logins_refused"] += 1
            logger.info("XTS simulator: login refused (wrong appKey or secretKey)")
            return Reply(400, error("e-app-0001", "Invalid appKey or secretKey"))
        now = int(settings.clock())
        session = self.store.open(settings.user_id, settings.app_key, now)
        self.counters["logins"] += 1
        logger.info("XTS simulator: user %s logged in (session %d)", settings.user_id, session.number)
        expiry = (date.fromtimestamp(now) + timedelta(days=365)).strftime("%d-%m-%Y")
        return Reply(
            200,
            _success(
                "e-response-0010",
                "Provided Valid Credentials",
                {
                    "token": session.token,
                    "userID": settings.user_id,
                    "appVersion": _APP_VERSION,
                    "application_expiry_date": expiry,
                },
            ),
        )

    def _logout(self, session: Session, body: Mapping[str, Any]) -> Reply:
        session.valid = False
        session.subscriptions.clear()
        for sock in session.sockets:
            sock.request_close(1000)
        logger.info("XTS simulator: session %d logged out", session.number)
        return Reply(200, _success("s-user-0002", "User logged out successfully!", {}))

    def _client_config(self, session: Session, body: Mapping[str, Any]) -> Reply:
        instrument_type: dict[str, Any] = dict(INSTRUMENT_TYPES)
        instrument_type.update({str(number): name for name, number in INSTRUMENT_TYPES.items()})
        return Reply(
            200,
            _success(
                "s-config-0001",
                "Client config fetched successfully!",
                {
                    "exchangeSegments": dict(SEGMENTS),
                    "xtsMessageCode": {
                        "touchlineEvent": TOUCHLINE,
                        "marketDepthEvent": MARKET_DEPTH,
                        "indexDataEvent": 1504,
                        "candleDataEvent": CANDLE,
                        "openInterestEvent": OPEN_INTEREST,
                        "instrumentPropertyChangeEvent": 1105,
                    },
                    "publishFormat": ["Binary", "JSON"],
                    "broadCastMode": ["Full", "Partial"],
                    "instrumentType": instrument_type,
                },
            ),
        )

    # -- instruments

    def _instruments_of(self, body: Mapping[str, Any]) -> tuple[int, list[Instrument]] | Reply:
        """The message code and the (deduplicated) instruments of a subscribe/unsubscribe/quotes body."""
        code = _as_int(body.get("xtsMessageCode"))
        if code is None:
            return bad_request(("xtsMessageCode", '"xtsMessageCode" is required (a number)'))
        if code not in CODES:
            codes = ", ".join(map(str, CODES))
            return bad_request(("xtsMessageCode", f"{code} is not supported (supported: {codes})"))
        raw = body.get("instruments")
        if isinstance(raw, str):  # form-urlencoded bodies carry the list as JSON text
            try:
                raw = json.loads(raw)
            except ValueError:
                raw = None
        if not isinstance(raw, list) or not raw:
            return bad_request(("instruments", '"instruments" must be a non-empty array'))
        found: dict[tuple[int, int], Instrument] = {}
        unknown: list[dict[str, Any]] = []
        for index, item in enumerate(raw):
            if not isinstance(item, Mapping):
                return bad_request((f"instruments[{index}]", "must be an object"))
            seg = _as_segment(item.get("exchangeSegment"))
            iid = _as_int(item.get("exchangeInstrumentID"))
            if seg is None or iid is None:
                return bad_request(
                    (f"instruments[{index}]", "needs a numeric exchangeSegment and exchangeInstrumentID")
                )
            instrument = self.payloads.find(seg, iid)
            if instrument is None:
                unknown.append({"exchangeSegment": seg, "exchangeInstrumentID": iid})
            else:
                found[(seg, iid)] = instrument
        if unknown:
            return Reply(400, error("e-instrument-0001", "Instrument not found", {"instruments": unknown}))
        return code, list(found.values())

    def _remaining(self, session: Session) -> int:
        return max(0, self.settings.max_subscriptions - len(session.subscriptions))

    def _subscribe(self, session: Session, body: Mapping[str, Any]) -> Reply:
        parsed = self._instruments_of(body)
        if isinstance(parsed, Reply):
            return parsed
        code, instruments = parsed
        new = [
            i for i in instruments if (i.xts_segment, i.xts_instrument_id, code) not in session.subscriptions
        ]
        if not new:
            return Reply(
                400,
                error(
                    "e-session-0002",
                    "Instrument Already Subscribed !",
                    {"Remaining_Subscription_Count": self._remaining(session)},
                ),
            )
        limit = self.settings.max_subscriptions
        if len(session.subscriptions) + len(new) > limit:
            return Reply(
                400,
                error(
                    "e-session-0005",
                    f"Subscription limit exceeded: {len(new)} new subscription(s) requested, "
                    f"{self._remaining(session)} remaining (limit {limit})",
                    {"Remaining_Subscription_Count": self._remaining(session)},
                ),
            )
        now = self.settings.clock()
        for i in new:
            session.subscriptions[(i.xts_segment, i.xts_instrument_id, code)] = i
        for sock in session.sockets:
            sock.notify()
        logger.debug("XTS simulator: session %d subscribed %d in %d", session.number, len(new), code)
        return Reply(
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
                    "listQuotes": [self.payloads.full_json(i, code, now) for i in new],
                    "Remaining_Subscription_Count": self._remaining(session),
                },
            ),
        )

    def _unsubscribe(self, session: Session, body: Mapping[str, Any]) -> Reply:
        parsed = self._instruments_of(body)
        if isinstance(parsed, Reply):
            return parsed
        code, instruments = parsed
        removed = []
        for i in instruments:
            if session.subscriptions.pop((i.xts_segment, i.xts_instrument_id, code), None) is not None:
                removed.append(
                    {"exchangeSegment": i.xts_segment, "exchangeInstrumentID": i.xts_instrument_id}
                )
        return Reply(
            200,
            _success(
                "s-session-0002", "Instrument subscription deleted!", {"mdp": code, "unsubList": removed}
            ),
        )

    def _list_subscriptions(self, session: Session, body: Mapping[str, Any]) -> Reply:
        raw_code = body.get("xtsMessageCode")
        code = _as_int(raw_code)
        if raw_code not in (None, "") and code is None:
            return bad_request(("xtsMessageCode", "must be a number"))
        listed = [
            {"exchangeSegment": seg, "exchangeInstrumentID": iid, "xtsMessageCode": c}
            for seg, iid, c in session.subscriptions
            if code is None or c == code
        ]
        return Reply(
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

    def _quotes(self, session: Session, body: Mapping[str, Any]) -> Reply:
        publish_format = body.get("publishFormat")
        if not isinstance(publish_format, str) or not publish_format:
            return bad_request(("publishFormat", '"publishFormat" is required'))
        if publish_format.lower() != "json":
            return bad_request(("publishFormat", "only JSON is supported by the simulator"))
        parsed = self._instruments_of(body)
        if isinstance(parsed, Reply):
            return parsed
        code, instruments = parsed
        if len(instruments) > _QUOTES_LIMIT:
            return bad_request(("instruments", f"at most {_QUOTES_LIMIT} instruments per request"))
        now = self.settings.clock()
        return Reply(
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
                    "listQuotes": [self.payloads.full_json(i, code, now) for i in instruments],
                },
            ),
        )

    def _master(self, body: Mapping[str, Any]) -> Reply:
        raw = body.get("exchangeSegmentList")
        if isinstance(raw, str):  # a form body: JSON text, or one name
            try:
                raw = json.loads(raw)
            except ValueError:
                raw = [raw]
        if not isinstance(raw, list) or not raw:
            return bad_request(("exchangeSegmentList", '"exchangeSegmentList" must be a non-empty array'))
        segments: set[int] = set()
        for name in raw:
            segment = _as_segment(name)
            if segment is None or segment not in SEGMENT_NAMES:
                return bad_request(("exchangeSegmentList", f"unknown exchange segment {name!r}"))
            segments.add(segment)
        # Indices are not master rows (they come from /instruments/indexlist).
        rows = render_master(
            master_record(i) for i in self.settings.instruments if i.xts_segment in segments and i.tradable
        )
        return Reply(200, _success("s-instrument-0001", "Instrument master fetched successfully!", rows))

    def _index_list(self, session: Session, body: Mapping[str, Any]) -> Reply:
        segment = _as_segment(body.get("exchangeSegment"))
        if segment is None:
            return bad_request(("exchangeSegment", '"exchangeSegment" is required (a number)'))
        names = [
            f"{i.name}_{i.xts_instrument_id}"
            for i in self.settings.instruments
            if not i.tradable and i.xts_segment == segment
        ]
        return Reply(
            200,
            _success(
                "s-instrument-0002",
                "Index list fetched successfully!",
                {"exchangeSegment": segment, "indexList": names},
            ),
        )
