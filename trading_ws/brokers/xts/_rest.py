"""The XTS market-data REST API: one logged-in session (`XtsSession`) over httpx, on Trio.

Every route sits under ``{root}/apimarketdata`` (xts-protocol.md section 1). The session logs in with
``POST /auth/login`` (JSON ``appKey``, ``secretKey``, ``source=WEBAPI``) and then sends the raw JWT in the
``Authorization`` header (no ``Bearer``) of every authenticated call. Answers are envelopes
``{"type": "success"|"error", "code": ..., "description": ..., "result": ...}``; the session checks the
envelope's ``type``, not only the HTTP status, because a dead token may come back as HTTP 200 with
``"type": "error"`` (section 1, "Error handling").

Error mapping at this boundary (third-party errors never leave it; the original stays as ``__cause__``):

=========================================================  =============================================
what happened                                              raised
=========================================================  =============================================
no answer within the timeout                               `ConnectTimeout`
connection refused, reset, TLS failure, other httpx error   `ConnectError`
HTTP 429                                                   `RateLimitedError`
HTTP 5xx, or a body that is not a JSON envelope            `ConnectError`
"Invalid Token" (any status), or HTTP 401/403 with a token `InvalidTokenError` (an `AuthenticationError`)
the login refused (any other error envelope)               `LoginRefusedError` (an `AuthenticationError`)
``e-session-0002`` "Instrument Already Subscribed"         success (`SubscribeResult.already_subscribed`)
a subscribe past the cap                                   `SubscriptionLimitError`, before sending
any other refusal of a subscription request                `SubscriptionError`
=========================================================  =============================================

No token, secret key or JWT ever appears in a repr, a log line, an exception message or a URL (the token
travels in a header; server texts quoted in messages are scrubbed of both).
"""

from __future__ import annotations

import logging
import math
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import attrs
import httpx

from ..._errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    ConnectTimeout,
    DecodeError,
    RateLimitedError,
    SubscriptionError,
    SubscriptionLimitError,
)
from ..._model import Event
from ..._ratelimit import TokenBucket
from ..._transport import WsEndpoint, is_loopback_host, parse_ws_url, redact_url
from ..._version import __version__
from ._codec import MESSAGE_CODES, decode_list_quotes, subscription_body
from ._instruments import SEGMENT_IDS

__all__ = [
    "API_PATH",
    "MAX_SUBSCRIPTIONS",
    "CredentialsProvider",
    "InvalidTokenError",
    "Key",
    "LoginRefusedError",
    "SubscribeResult",
    "XtsEndpoints",
    "XtsSession",
    "check_keys",
    "parse_root_url",
]

logger = logging.getLogger("trading_ws.xts")

#: The path prefix of the JSON market-data product (``/marketdata`` before late 2023; the binary product
#: uses ``/apibinarymarketdata``, which this library does not speak).
API_PATH: Final = "/apimarketdata"
#: The per-session subscription cap seen on every deployment (xts-protocol.md section 3.1): the default,
#: corrected from each ``Remaining_Subscription_Count`` the server reports.
MAX_SUBSCRIPTIONS: Final = 50
#: At most this many instruments per quotes (and subscription) request (OPENALGO's "XTS API limit").
_BATCH: Final = 50
_ALREADY_SUBSCRIBED: Final = "e-session-0002"

CredentialsProvider = Callable[[], Awaitable[tuple[str, str]]]
"""An async function returning fresh ``(app_key, secret_key)`` (called at most once per refusal)."""

Key = tuple[int, int]
"""An instrument address: ``(exchange_segment, exchange_instrument_id)``."""


class InvalidTokenError(AuthenticationError):
    """XTS refused the session token ("Invalid Token", expired, superseded by another login, or a refused
    socket handshake). The remedy is a new login, which a feed does once, never in a loop."""


class LoginRefusedError(AuthenticationError):
    """XTS refused the login itself (wrong appKey/secretKey, or the application is not allowed)."""


# ---------------------------------------------------------------------------------------------------------
# URLs


@attrs.frozen
class XtsEndpoints:
    """Where one XTS deployment answers: the REST base URL and the Socket.IO WebSocket endpoint."""

    rest: str
    """``{root}{api_path}``, e.g. ``https://xts.example.com/apimarketdata`` (no trailing slash)."""
    socket: WsEndpoint
    """The WebSocket endpoint; its path is ``{root path}{api_path}/socket.io/``."""


def parse_root_url(root_url: str, *, api_path: str = API_PATH, allow_insecure: bool = False) -> XtsEndpoints:
    """Check an XTS root URL (``https://host[:port][/prefix]``) and derive the REST and socket endpoints.

    Plain ``http://`` (and so ``ws://``) is accepted only for loopback hosts unless `allow_insecure`,
    so that the secret key and the token never cross a network in clear text by accident. Does not block.

    Raises:
        ConfigurationError: not http/https, no host, a query or fragment, or insecure to a non-loopback
            host.
    """
    parts = urlsplit(root_url)
    if parts.scheme not in ("http", "https"):
        raise ConfigurationError(f"expected an http:// or https:// root URL, got {redact_url(root_url)!r}")
    if not parts.hostname:
        raise ConfigurationError(f"root URL has no host: {redact_url(root_url)!r}")
    if parts.query or parts.fragment:
        raise ConfigurationError(
            "give the XTS root URL without a query; credentials are added by the session"
        )
    if parts.scheme == "http" and not allow_insecure and not is_loopback_host(parts.hostname):
        raise ConfigurationError(
            f"refusing plain http:// to non-loopback host {parts.hostname!r}: the secret key and token "
            "would travel unencrypted (use https://, or pass allow_insecure=True)"
        )
    if api_path and not api_path.startswith("/"):
        raise ConfigurationError(f"api_path must start with '/', got {api_path!r}")
    prefix = parts.path.rstrip("/") + api_path.rstrip("/")
    rest = urlunsplit((parts.scheme, parts.netloc, prefix, "", ""))
    ws_scheme = "wss" if parts.scheme == "https" else "ws"
    socket = parse_ws_url(
        urlunsplit((ws_scheme, parts.netloc, prefix + "/socket.io/", "", "")), allow_insecure=allow_insecure
    )
    return XtsEndpoints(rest, socket)


# ---------------------------------------------------------------------------------------------------------
# Results


@attrs.frozen
class SubscribeResult:
    """What a subscribe request achieved."""

    code: int
    """The message code (1501, 1502, 1512...)."""
    instruments: tuple[Key, ...]
    """Every instrument of the request; all of them are subscribed in `code` now."""
    newly_subscribed: tuple[Key, ...]
    """The instruments the server listed as new (``quotesList``); the request's instruments if it did not
    say, empty when every one was already subscribed."""
    snapshots: tuple[Event, ...]
    """The ``listQuotes`` snapshots, decoded (one event per new instrument, in order)."""
    already_subscribed: bool
    """True for ``e-session-0002`` (every instrument was subscribed already; counts as success)."""
    remaining: int | None
    """``Remaining_Subscription_Count`` as the server reported it, None if it did not."""
    decode_errors: int = 0
    """Snapshots that could not be decoded (logged and left out of `snapshots`)."""


@attrs.frozen
class _Envelope:
    status: int
    ok: bool
    code: str
    description: str
    result: Any

    @property
    def detail(self) -> str:
        """``code 'description' (HTTP status)`` for error messages (the description is scrubbed)."""
        return f"{self.code} {self.description!r} (HTTP {self.status})"


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _keys_of(items: Any) -> list[Key]:
    """``[{exchangeSegment, exchangeInstrumentID}, ...]`` (ids possibly strings) as (segment, id) pairs."""
    out: list[Key] = []
    if not isinstance(items, list):
        return out
    for item in items:
        if not isinstance(item, dict):
            continue
        seg = item.get("exchangeSegment")
        segment = SEGMENT_IDS.get(seg.strip().upper()) if isinstance(seg, str) else None
        if segment is None:
            segment = _as_int(seg)
        iid = _as_int(item.get("exchangeInstrumentID"))
        if segment is not None and iid is not None:
            out.append((segment, iid))
    return out


def check_keys(instruments: Iterable[Key]) -> list[Key]:
    """Deduplicate (segment, instrument id) pairs, keeping order; check they are positive integers.

    Raises:
        ConfigurationError: an item is not a pair of positive ints.
    """
    out = list(dict.fromkeys(instruments))
    for key in out:
        if (
            not isinstance(key, tuple)
            or len(key) != 2
            or not all(type(v) is int and 0 < v < 2**63 for v in key)
        ):
            raise ConfigurationError(
                f"an XTS instrument is a (exchange_segment, exchange_instrument_id) pair of positive "
                f"ints, got {key!r}"
            )
    return out


def _check_code(code: int) -> int:
    if type(code) is not int or code not in MESSAGE_CODES:
        raise ConfigurationError(f"unknown XTS message code {code!r} (known: {sorted(MESSAGE_CODES)})")
    return code


_TOKEN_TROUBLE = re.compile(r"(?i)\b(invalid|expired?)\b.*\btoken\b|\btoken\b.*\b(invalid|expired?)\b")


# ---------------------------------------------------------------------------------------------------------
# The session


class XtsSession:
    """One XTS market-data session (one login, one token) over an httpx client running on Trio.

    Use it as an async context manager (``async with XtsSession(...) as session:``), which owns the HTTP
    client; nothing is sent until `login` (the instrument master needs no login on the deployments seen).
    XTS allows one session per appKey: a second login invalidates the first token, here or in another
    process, so log in once per feed.

    The session keeps what it subscribed (per message code) and the subscription cap: `MAX_SUBSCRIPTIONS`
    (or `max_subscriptions`) until the server reports ``Remaining_Subscription_Count``, then the total
    that count implies. A subscribe that would pass the cap raises `SubscriptionLimitError` before
    anything is sent. A login starts a new, empty session.

    Args:
        app_key, secret_key: the market-data API keys (the secret never appears in reprs, logs or errors).
        root_url: the deployment's root, e.g. ``https://ttblaze.iifl.com`` or the simulator's
            ``http://127.0.0.1:PORT``.
        allow_insecure: allow plain ``http://`` to a non-loopback host.
        ssl_context: TLS settings (default: the system's, with certificate verification).
        timeout: seconds allowed for each request (the instrument master gets at least 60).
        max_subscriptions: the cap until the server says otherwise.
        source: the login's ``source`` field.
        api_path: the route prefix (``/apimarketdata``).
        rate_limiter: a token bucket every request takes a token from.
        transport: an httpx transport (tests).

    Raises:
        ConfigurationError: (at construction) an invalid URL or empty keys.
    """

    def __init__(
        self,
        app_key: str,
        secret_key: str,
        *,
        root_url: str,
        allow_insecure: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        max_subscriptions: int = MAX_SUBSCRIPTIONS,
        source: str = "WEBAPI",
        api_path: str = API_PATH,
        rate_limiter: TokenBucket | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not app_key or not secret_key:
            raise ConfigurationError("app_key and secret_key must not be empty")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ConfigurationError("timeout must be a positive number of seconds")
        if max_subscriptions < 1:
            raise ConfigurationError("max_subscriptions must be at least 1")
        self.endpoints = parse_root_url(root_url, api_path=api_path, allow_insecure=allow_insecure)
        self._root = root_url
        self._app_key = app_key
        self._secret_key = secret_key
        self._ssl_context = ssl_context
        self._timeout = timeout
        self._default_cap = max_subscriptions
        self._cap = max_subscriptions
        self._source = source
        self._limiter = rate_limiter
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._token: str | None = None
        self._valid = False
        self._user_id: str | None = None
        self._app_version: str | None = None
        self._generation = 0
        self._subscribed: dict[tuple[int, int, int], None] = {}
        self.logins = 0
        """Successful logins."""
        self.login_attempts = 0
        """Login requests sent (refused ones included)."""
        self.requests = 0
        """HTTP requests sent (every route)."""

    def __repr__(self) -> str:
        state = "logged in" if self.logged_in else "logged out"
        return (
            f"<XtsSession {state} root={redact_url(self._root)!r} app_key={self._app_key!r} "
            f"user={self._user_id!r} subscribed={len(self._subscribed)} remaining={self.remaining}>"
        )

    async def __aenter__(self) -> XtsSession:
        if self._client is not None:
            raise RuntimeError("this XtsSession is already open")
        self._client = httpx.AsyncClient(
            timeout=self._timeout,
            verify=self._ssl_context if self._ssl_context is not None else True,
            transport=self._transport,
            headers={"User-Agent": f"trading-ws/{__version__}"},
            follow_redirects=False,
            # Proxy settings from the environment only for https: over plain http (loopback, or with
            # allow_insecure) a proxy would see the keys and the token in clear.
            trust_env=self.endpoints.rest.startswith("https://"),
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client (does not log out: see `logout`). Blocks until its connections close."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -----------------------------------------------------------------------------------------------
    # State

    @property
    def logged_in(self) -> bool:
        """Whether the session holds a token that the server has not refused."""
        return self._token is not None and self._valid

    @property
    def token(self) -> str | None:
        """The session token (a JWT; a secret: never log it), None before the first login."""
        return self._token

    @property
    def user_id(self) -> str | None:
        """The plain client id of the login response (the socket's ``userID``)."""
        return self._user_id

    @property
    def app_key(self) -> str:
        """The appKey logins use."""
        return self._app_key

    @property
    def app_version(self) -> str | None:
        """The server's ``appVersion`` from the last login, if it said."""
        return self._app_version

    @property
    def generation(self) -> int:
        """Increases with every successful login (a new token)."""
        return self._generation

    @property
    def subscriptions(self) -> frozenset[tuple[int, int, int]]:
        """The (segment, instrument id, message code) triples subscribed in this session."""
        return frozenset(self._subscribed)

    @property
    def capacity(self) -> int:
        """The session's subscription cap as known now (see the class docstring)."""
        return self._cap

    @property
    def remaining(self) -> int:
        """Subscriptions (instrument, code pairs) still allowed in this session."""
        return max(0, self._cap - len(self._subscribed))

    def set_credentials(self, app_key: str, secret_key: str) -> None:
        """Use these keys for the next `login`. Does not block.

        Raises:
            ConfigurationError: an empty key.
        """
        if not app_key or not secret_key:
            raise ConfigurationError("app_key and secret_key must not be empty")
        self._app_key = app_key
        self._secret_key = secret_key

    def invalidate(self) -> None:
        """Forget that the token is usable (the next feed connection logs in first). Does not block."""
        self._valid = False

    # -----------------------------------------------------------------------------------------------
    # Plumbing

    def _scrub(self, text: str) -> str:
        for secret in (self._secret_key, self._token):
            if secret:
                text = text.replace(secret, "***")
        return text[:300]

    async def _call(
        self,
        method: str,
        route: str,
        *,
        what: str,
        json: Any = None,
        params: dict[str, Any] | None = None,
        auth: bool = True,
        limit: float | None = None,
    ) -> _Envelope:
        """Send one request and return its envelope (ok or not) after the mappings common to every route.

        Raises:
            InvalidTokenError: "Invalid Token" (or HTTP 401/403 on an authenticated call).
            RateLimitedError, ConnectTimeout, ConnectError: as in the module docstring.
        """
        client = self._client
        if client is None:
            raise RuntimeError("the XtsSession is not open (use `async with XtsSession(...)`)")
        headers: dict[str, str] = {}
        generation = self._generation
        if auth:
            if self._token is None:
                raise InvalidTokenError(f"XTS {what}: not logged in")
            headers["Authorization"] = self._token
        if self._limiter is not None:
            await self._limiter.acquire()
        self.requests += 1
        try:
            response = await client.request(
                method,
                self.endpoints.rest + route,
                json=json,
                params=params,
                headers=headers,
                timeout=limit if limit is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TimeoutException as exc:
            raise ConnectTimeout(f"XTS {what}: no answer within {limit or self._timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise ConnectError(f"XTS {what} failed: {type(exc).__name__}: {self._scrub(str(exc))}") from exc
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            kind = body.get("type")
            code = str(body.get("code") or "")
            description = self._scrub(str(body.get("description") or ""))
            result = body.get("result")
        else:
            kind, code, description, result = None, "", "", None
        ok = kind == "success" and status < 400
        if ok:
            return _Envelope(status, True, code, description, result)
        detail = f"{code} {description!r}".strip() if (code or description) else "no error envelope"
        if auth and (_TOKEN_TROUBLE.search(description) or status in (401, 403)):
            if generation == self._generation:
                self._valid = False
            raise InvalidTokenError(f"XTS refused the session token on {what} ({detail}, HTTP {status})")
        if status == 429:
            raise RateLimitedError(f"XTS {what}: too many requests ({detail}, HTTP 429)")
        if status >= 500 or not isinstance(body, dict):
            raise ConnectError(f"XTS {what} failed ({detail}, HTTP {status})")
        return _Envelope(status, False, code, description, result)

    def _update_cap(self, remaining: int | None) -> None:
        if remaining is not None and remaining >= 0:
            self._cap = len(self._subscribed) + remaining

    # -----------------------------------------------------------------------------------------------
    # Routes

    async def login(self) -> None:
        """Log in (``POST /auth/login``) and keep the token and user id; starts a new, empty session.

        Any earlier token of this appKey (here or elsewhere) stops working: XTS allows one session per
        appKey. Blocks for one request.

        Raises:
            LoginRefusedError: the server refused the credentials (or sent no token).
            RateLimitedError, ConnectTimeout, ConnectError: the request failed.
        """
        self.login_attempts += 1
        body = {"appKey": self._app_key, "secretKey": self._secret_key, "source": self._source}
        envelope = await self._call("POST", "/auth/login", what="login", json=body, auth=False)
        if not envelope.ok:
            detail = f"{envelope.code} {envelope.description!r}".strip()
            raise LoginRefusedError(f"XTS refused the login ({detail}, HTTP {envelope.status})")
        result = envelope.result if isinstance(envelope.result, dict) else {}
        token, user_id = result.get("token"), result.get("userID")
        if not isinstance(token, str) or not token or not isinstance(user_id, str) or not user_id:
            raise LoginRefusedError("XTS login answered success without a token and userID")
        self._token = token
        self._valid = True
        self._user_id = user_id
        version = result.get("appVersion")
        self._app_version = version if isinstance(version, str) else None
        self._generation += 1
        self._subscribed.clear()
        self._cap = self._default_cap
        self.logins += 1
        logger.info("XTS login ok (user %s, session %d)", user_id, self._generation)

    async def logout(self) -> None:
        """Log out (``DELETE /auth/logout``): the server drops the session and its subscriptions.

        A token the server already refuses is simply forgotten. Blocks for one request.

        Raises:
            RateLimitedError, ConnectTimeout, ConnectError: the request failed (the token is forgotten
                anyway).
        """
        if self._token is None:
            return
        try:
            await self._call("DELETE", "/auth/logout", what="logout")
        except InvalidTokenError:
            pass
        finally:
            self._token = None
            self._valid = False
            self._subscribed.clear()
            self._cap = self._default_cap
        logger.info("XTS logout (session %d)", self._generation)

    async def subscribe(self, instruments: Sequence[Key], code: int) -> SubscribeResult:
        """Subscribe instruments to message `code` (``POST /instruments/subscription``).

        Instruments this session already holds in `code` are sent too (the server answers
        ``e-session-0002`` for them, which counts as success). Blocks for one request per 50 instruments.

        Returns:
            The snapshots (``listQuotes``, decoded) and the server's remaining count.

        Raises:
            SubscriptionLimitError: the new instruments would pass the cap (nothing is sent), or the server
                said so.
            SubscriptionError: the server refused the request (unknown instrument, bad request...).
            InvalidTokenError: the token was refused (log in again).
            ConfigurationError: malformed instruments or an unknown code.
            RateLimitedError, ConnectTimeout, ConnectError: the request failed.
        """
        keys = check_keys(instruments)
        code = _check_code(code)
        new = [k for k in keys if (*k, code) not in self._subscribed]
        if len(new) > self.remaining:
            raise SubscriptionLimitError(
                f"subscribing {len(new)} more instruments to {code} would pass the XTS session cap of "
                f"{self._cap} ({len(self._subscribed)} subscribed, {self.remaining} remaining)"
            )
        results = [
            await self._subscribe_batch(keys[i : i + _BATCH], code) for i in range(0, len(keys), _BATCH)
        ]
        if len(results) == 1:
            return results[0]
        return SubscribeResult(
            code,
            tuple(keys),
            tuple(k for r in results for k in r.newly_subscribed),
            tuple(e for r in results for e in r.snapshots),
            all(r.already_subscribed for r in results),
            results[-1].remaining,
            sum(r.decode_errors for r in results),
        )

    async def _subscribe_batch(self, keys: list[Key], code: int) -> SubscribeResult:
        what = f"subscribe ({len(keys)} instruments, {code})"
        envelope = await self._call(
            "POST", "/instruments/subscription", what=what, json=subscription_body(keys, code)
        )
        result = envelope.result if isinstance(envelope.result, dict) else {}
        remaining = _as_int(result.get("Remaining_Subscription_Count"))
        if not envelope.ok:
            already = (
                envelope.code == _ALREADY_SUBSCRIBED or "already subscribed" in envelope.description.lower()
            )
            if already:
                for key in keys:
                    self._subscribed[(*key, code)] = None
                self._update_cap(remaining)
                return SubscribeResult(code, tuple(keys), (), (), True, remaining)
            detail = f"{envelope.code} {envelope.description!r} (HTTP {envelope.status})"
            if "limit" in envelope.description.lower() or (remaining == 0 and envelope.status == 400):
                self._update_cap(remaining)
                raise SubscriptionLimitError(f"XTS refused the {what}: over the session's cap: {detail}")
            raise SubscriptionError(f"XTS refused the {what}: {detail}")
        for key in keys:
            self._subscribed[(*key, code)] = None
        self._update_cap(remaining)
        listed = _keys_of(result.get("quotesList"))
        newly = tuple(listed) if "quotesList" in result else tuple(keys)
        snapshots, errors = self._decode_snapshots(code, result.get("listQuotes"), what)
        return SubscribeResult(code, tuple(keys), newly, tuple(snapshots), False, remaining, errors)

    @staticmethod
    def _decode_snapshots(code: int, list_quotes: Any, what: str) -> tuple[list[Event], int]:
        if not isinstance(list_quotes, list) or not list_quotes:
            return [], 0
        try:
            return decode_list_quotes(code, list_quotes), 0
        except DecodeError as exc:
            good = list(exc.events)
            bad = len(list_quotes) - len(good)
            logger.warning("XTS %s: %d malformed snapshot(s) skipped: %s", what, bad, exc)
            return good, bad

    async def unsubscribe(self, instruments: Sequence[Key], code: int) -> tuple[Key, ...]:
        """Unsubscribe instruments from message `code` (``PUT /instruments/subscription``).

        Instruments not subscribed are not an error. Blocks for one request per 50 instruments.

        Returns:
            The instruments the server reported removed (``unsubList``; the request's if it did not say).

        Raises:
            SubscriptionError: the server refused the request.
            InvalidTokenError: the token was refused.
            ConfigurationError: malformed instruments or an unknown code.
            RateLimitedError, ConnectTimeout, ConnectError: the request failed.
        """
        keys = check_keys(instruments)
        code = _check_code(code)
        removed: list[Key] = []
        for i in range(0, len(keys), _BATCH):
            batch = keys[i : i + _BATCH]
            what = f"unsubscribe ({len(batch)} instruments, {code})"
            envelope = await self._call(
                "PUT", "/instruments/subscription", what=what, json=subscription_body(batch, code)
            )
            if not envelope.ok:
                raise SubscriptionError(f"XTS refused the {what}: {envelope.detail}")
            for key in batch:
                self._subscribed.pop((*key, code), None)
            result = envelope.result if isinstance(envelope.result, dict) else {}
            removed += _keys_of(result.get("unsubList")) if "unsubList" in result else batch
        return tuple(removed)

    async def quotes(self, instruments: Sequence[Key], code: int) -> list[Event]:
        """Snapshots without subscribing (``POST /instruments/quotes``, ``publishFormat: JSON``).

        Blocks for one request per 50 instruments.

        Returns:
            The decoded snapshots, in the server's order.

        Raises:
            DecodeError: some snapshots are malformed (``exc.events`` holds the others).
            SubscriptionError: the server refused the request.
            InvalidTokenError: the token was refused.
            RateLimitedError, ConnectTimeout, ConnectError: the request failed.
        """
        keys = check_keys(instruments)
        code = _check_code(code)
        events: list[Event] = []
        for i in range(0, len(keys), _BATCH):
            batch = keys[i : i + _BATCH]
            body = {**subscription_body(batch, code), "publishFormat": "JSON"}
            what = f"quotes ({len(batch)} instruments, {code})"
            envelope = await self._call("POST", "/instruments/quotes", what=what, json=body)
            if not envelope.ok:
                raise SubscriptionError(f"XTS refused the {what}: {envelope.detail}")
            result = envelope.result if isinstance(envelope.result, dict) else {}
            list_quotes = result.get("listQuotes")
            if isinstance(list_quotes, list):
                try:
                    events += decode_list_quotes(code, list_quotes)
                except DecodeError as exc:
                    raise DecodeError(str(exc), exc.raw, [*events, *exc.events]) from exc
        return events

    async def instrument_master(self, segments: Sequence[str | int]) -> str:
        """The instrument master text of `segments` (``POST /instruments/master``).

        Segments are names (``"NSECM"``) or numbers (1). The request carries the token when logged in and
        none otherwise (the deployments seen serve the master without one). Blocks for one request (with
        at least 60 s allowed: the master is large).

        Returns:
            The ``result`` text (parse it with `parse_master`).

        Raises:
            InvalidTokenError: the server wants a session (log in first).
            ConnectError: the request failed or the server refused it.
            ConfigurationError: an unknown segment.
        """
        names_by_id = {number: name for name, number in SEGMENT_IDS.items() if not name.startswith("MSEI")}
        names: list[str] = []
        for segment in segments:
            if isinstance(segment, int) and not isinstance(segment, bool) and segment in names_by_id:
                names.append(names_by_id[segment])
            elif isinstance(segment, str) and segment.upper() in SEGMENT_IDS:
                names.append(segment.upper())
            else:
                raise ConfigurationError(f"unknown XTS exchange segment {segment!r}")
        if not names:
            raise ConfigurationError("name at least one exchange segment")
        envelope = await self._call(
            "POST",
            "/instruments/master",
            what="instrument master",
            json={"exchangeSegmentList": names},
            auth=self._token is not None,
            limit=max(60.0, self._timeout),
        )
        if not envelope.ok:
            if envelope.status in (401, 403) or _TOKEN_TROUBLE.search(envelope.description):
                raise InvalidTokenError(f"XTS wants a session for the instrument master ({envelope.code})")
            raise ConnectError(
                f"XTS refused the instrument master: {envelope.code} {envelope.description!r} "
                f"(HTTP {envelope.status})"
            )
        if not isinstance(envelope.result, str):
            raise ConnectError("XTS instrument master: the result is not text")
        return envelope.result

    async def index_list(self, segment: int) -> list[tuple[str, int]]:
        """The indices of `segment` (``GET /instruments/indexlist``) as (name, instrument id) pairs.

        Entries are ``"<name>_<id>"``; malformed ones are skipped. Blocks for one request.

        Raises:
            InvalidTokenError: the token was refused (this route needs a login).
            ConnectError: the request failed or the server refused it.
        """
        envelope = await self._call(
            "GET", "/instruments/indexlist", what="index list", params={"exchangeSegment": segment}
        )
        if not envelope.ok:
            raise ConnectError(f"XTS refused the index list: {envelope.detail}")
        result = envelope.result if isinstance(envelope.result, dict) else {}
        out: list[tuple[str, int]] = []
        for entry in result.get("indexList") or ():
            if isinstance(entry, str) and "_" in entry:
                name, _, number = entry.rpartition("_")
                iid = _as_int(number)
                if name and iid is not None:
                    out.append((name, iid))
        return out
