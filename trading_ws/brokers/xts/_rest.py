"""The XTS market-data REST API: one logged-in session (`XtsSession`) over httpx, on Trio.

Every route sits under ``{root}/apimarketdata`` (xts-protocol.md section 1). The session logs in with
``POST /auth/login`` (JSON ``appKey``, ``secretKey``, ``source=WEBAPI``) and then sends the raw JWT in the
``Authorization`` header (no ``Bearer``) of every authenticated call. Answers are envelopes
``{"type": "success"|"error", "code": ..., "description": ..., "result": ...}``; the session checks the
envelope's ``type``, not only the HTTP status, because a dead token may come back as HTTP 200 with
``"type": "error"`` (section 1, "Error handling").

Error mapping at this boundary (third-party errors never leave it; the original stays as ``__cause__``,
its messages scrubbed of every secret):

=========================================================  =============================================
what happened                                              raised
=========================================================  =============================================
no complete answer within the timeout (whole call)         `ConnectTimeout`
TLS failure: an untrusted, expired or wrong-host           `TLSError` (a `ConnectError`), at once
certificate, a server that does not speak TLS
connection refused or reset, an answer that is not HTTP    `ConnectError`
(httpx, httpcore, h11, anyio, OSError)
HTTP 429                                                   `RateLimitedError`
HTTP 5xx, a body that is not a JSON envelope, an answer    `ConnectError`
larger than the bound, a login answer without a usable
token and userID
"Invalid Token" (any status), or HTTP 401/403 with a token `InvalidTokenError` (an `AuthenticationError`)
the login refused (any other error envelope)               `LoginRefusedError` (an `AuthenticationError`)
``e-session-0002`` "Instrument Already Subscribed"         success (`SubscribeResult.already_subscribed`)
a subscribe past the cap                                   `SubscriptionLimitError`, before sending
any other refusal of a subscription request                `SubscriptionError`
=========================================================  =============================================

Every call has one deadline for the whole exchange (connect, send, and the full answer, body included):
httpx times each read on its own, so a server answering one byte a second would otherwise hold a call
forever. Answers are read up to a bound (`MAX_ANSWER_BYTES`; `MAX_MASTER_BYTES` for the instrument
master), and every text the server sends is passed through `trading_ws._scrub.scrub` before it reaches a
message or a log.

No token, secret key or JWT ever appears in a repr, a log line, an exception message or a URL (the token
travels in a header; server texts quoted in messages are scrubbed of both). While a request is in flight,
the debug and info records of httpx and httpcore (which quote server answers) are scrubbed as well.

The API's values and the reading of its answers, without I/O, are in `._api` (the names other modules
import from here are re-exported); the HTTP exchange in `trading_ws._http`, shared with the Kite broker (its
instrument download).
"""

from __future__ import annotations

import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import httpx

from ..._errors import (
    ConfigurationError,
    ConnectError,
    DecodeError,
    SubscriptionError,
    SubscriptionLimitError,
)
from ..._http import MAX_MASTER_BYTES, http_exchange, scrub_chain, text_field
from ..._model import Event
from ..._ratelimit import TokenBucket
from ..._scrub import scrub
from ..._transport import client_context, redact_url
from ..._validate import (
    check_credential,
    check_instance,
    check_int,
    check_seconds,
    check_ssl_context,
    check_token_text,
)
from ..._version import __version__
from ._api import (
    ALREADY_SUBSCRIBED,
    API_PATH,
    MAX_ANSWER_BYTES,
    MAX_SUBSCRIPTIONS,
    TOKEN_TROUBLE,
    Envelope,
    InvalidTokenError,
    Key,
    LoginRefusedError,
    SubscribeResult,
    XtsEndpoints,
    as_int,
    check_code,
    check_keys,
    index_entries,
    keys_of,
    master_segment_names,
    parse_root_url,
    read_envelope,
    usable,
)
from ._codec import decode_list_quotes, subscription_body
from ._instruments import SEGMENT_IDS

__all__ = [
    "API_PATH",
    "MAX_ANSWER_BYTES",
    "MAX_MASTER_BYTES",
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

#: At most this many instruments per quotes (and subscription) request (OPENALGO's "XTS API limit").
_BATCH: Final = 50
#: The instrument master gets at least this many seconds, whatever the session's timeout.
MASTER_TIMEOUT: Final = 60.0

CredentialsProvider = Callable[[], Awaitable[tuple[str, str]]]
"""An async function returning fresh ``(app_key, secret_key)`` (called at most once per refusal)."""


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
            ``http://127.0.0.1:PORT`` (no user info, query or fragment).
        allow_insecure: allow plain ``http://`` to a non-loopback host.
        ssl_context: TLS settings for ``https://`` (default: the system's trust store); certificates are
            always verified.
        timeout: seconds allowed for each request, start to finish: connect, send, and the whole answer
            (the instrument master gets at least 60).
        max_subscriptions: the cap until the server says otherwise (1 to 65535).
        source: the login's ``source`` field.
        api_path: the route prefix (``/apimarketdata``).
        rate_limiter: a token bucket every request takes a token from.
        transport: the httpx transport every request goes through (default None: httpx's connection
            pool over TCP, and TLS verified with `ssl_context`). The test seam: an ``httpx.MockTransport``
            answers the routes with no socket; requests, deadlines and the mapping of errors stay the same.

    Raises:
        ConfigurationError: (at construction) an argument that is not as documented: an invalid or unsafe
            URL, empty or non-ASCII keys, a timeout that is not a finite number > 0...; the message names
            the argument and never shows a key.
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
        check_credential("app_key", app_key)
        check_credential("secret_key", secret_key)
        self.endpoints = parse_root_url(root_url, api_path=api_path, allow_insecure=allow_insecure)
        check_ssl_context("ssl_context", ssl_context)
        self._timeout = check_seconds("timeout", timeout)
        self._default_cap = check_int("max_subscriptions", max_subscriptions, 1, 65535)
        self._source = check_token_text("source", source)
        check_instance("rate_limiter", rate_limiter, TokenBucket, optional=True)
        check_instance("transport", transport, httpx.AsyncBaseTransport, optional=True)
        self._root = root_url
        self._app_key = app_key
        self._secret_key = secret_key
        self._ssl_context = ssl_context
        self._cap = self._default_cap
        self._limiter = rate_limiter
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._token: str | None = None
        self._retired: deque[str] = deque(maxlen=8)  # earlier tokens and keys: still scrubbed
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
        """Open the HTTP client. Sends nothing.

        Raises:
            RuntimeError: the session is open already.
            ConfigurationError: the environment's proxy settings (used for https only) are invalid.
        """
        if self._client is not None:
            raise RuntimeError("this XtsSession is already open")
        try:
            self._client = httpx.AsyncClient(
                timeout=self._timeout,
                # The same trust as the socket's (httpx alone would use certifi's bundle instead).
                verify=client_context(self._ssl_context),
                transport=self._transport,
                headers={"User-Agent": f"trading-ws/{__version__}"},
                follow_redirects=False,
                # Proxy settings from the environment only for https: over plain http (loopback, or with
                # allow_insecure) a proxy would see the keys and the token in clear.
                trust_env=self.endpoints.rest.startswith("https://"),
            )
        except (httpx.InvalidURL, ValueError) as exc:
            raise ConfigurationError(
                f"XTS: cannot open an HTTP client (the environment's proxy settings?): {scrub(exc)}"
            ) from exc
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
            ConfigurationError: a key that is not a non-empty printable ASCII string (nothing changes).
        """
        check_credential("app_key", app_key)
        check_credential("secret_key", secret_key)
        if secret_key != self._secret_key:
            self._retired.append(self._secret_key)
        self._app_key = app_key
        self._secret_key = secret_key

    def invalidate(self) -> None:
        """Forget that the token is usable (the next feed connection logs in first). Does not block."""
        self._valid = False

    # -----------------------------------------------------------------------------------------------
    # Plumbing

    def _secrets(self) -> list[str | None]:
        """Every secret a server text might echo: the secret key, the token, and earlier ones."""
        return [self._secret_key, self._token, *self._retired]

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
        max_bytes: int = MAX_ANSWER_BYTES,
    ) -> Envelope:
        """Send one request and return its envelope (ok or not) after the mappings common to every route.

        The whole exchange must finish within `limit` seconds (the session's timeout by default).

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
        secrets = self._secrets()
        status, _, raw = await http_exchange(
            client,
            method,
            self.endpoints.rest + route,
            what=f"XTS {what}",
            deadline=limit if limit is not None else self._timeout,
            max_bytes=max_bytes,
            secrets=secrets,
            headers=headers,
            json_body=json,
            params=params,
        )
        try:
            return read_envelope(status, raw, secrets, what=what, auth=auth)
        except InvalidTokenError:
            if generation == self._generation:  # not if a new login came meanwhile
                self._valid = False
            raise

    def _update_cap(self, remaining: int | None) -> None:
        if remaining is not None and remaining >= 0:
            self._cap = len(self._subscribed) + remaining

    # -----------------------------------------------------------------------------------------------
    # Routes

    async def login(self) -> None:
        """Log in (``POST /auth/login``) and keep the token and user id; starts a new, empty session.

        Any earlier token of this appKey (here or elsewhere) stops working: XTS allows one session per
        appKey. Blocks for one request (at most the session's timeout).

        Cancellation: if cancelled, the session is as it was (the server may have ended the earlier
        session all the same).

        Raises:
            LoginRefusedError: the server refused the credentials.
            ConnectError: the answer was malformed (no usable token and userID), or the request failed.
            RateLimitedError, ConnectTimeout: the request failed.
        """
        self.login_attempts += 1
        body = {"appKey": self._app_key, "secretKey": self._secret_key, "source": self._source}
        envelope = await self._call("POST", "/auth/login", what="login", json=body, auth=False)
        if not envelope.ok:
            detail = f"{envelope.code} '{envelope.description}'".strip()
            raise LoginRefusedError(f"XTS refused the login ({detail}, HTTP {envelope.status})")
        result = envelope.result if isinstance(envelope.result, dict) else {}
        token, user_id = result.get("token"), result.get("userID")
        if not usable(token, 8192) or not usable(user_id, 128):
            # A success without a usable token is a broken answer, not refused credentials: an attempt
            # that failed (ConnectError), which a feed retries with backoff.
            raise ConnectError("XTS login answered success without a usable token and userID")
        if self._token is not None:
            self._retired.append(self._token)
        self._token = token
        self._valid = True
        self._user_id = user_id
        self._app_version = text_field(result.get("appVersion"), self._secrets(), 64) or None
        self._generation += 1
        self._subscribed.clear()
        self._cap = self._default_cap
        self.logins += 1
        logger.info("XTS login ok (user %s, session %d)", user_id, self._generation)

    async def logout(self) -> None:
        """Log out (``DELETE /auth/logout``): the server drops the session and its subscriptions.

        A token the server already refuses is simply forgotten. Blocks for one request (at most the
        session's timeout).

        Cancellation: the token is forgotten all the same; the server may still hold the session until it
        expires (or until the next login with these keys).

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
            self._retired.append(self._token)
            self._token = None
            self._valid = False
            self._subscribed.clear()
            self._cap = self._default_cap
        logger.info("XTS logout (session %d)", self._generation)

    async def subscribe(self, instruments: Sequence[Key], code: int) -> SubscribeResult:
        """Subscribe instruments to message `code` (``POST /instruments/subscription``).

        Instruments this session already holds in `code` are sent too (the server answers
        ``e-session-0002`` for them, which counts as success). Blocks for one request per 50 instruments
        (each within the session's timeout).

        Cancellation: batches answered before it stay subscribed and recorded; the batch in flight is not
        recorded, though the server may have applied it (subscribing it again is answered
        ``e-session-0002``, which records it). With at most 50 instruments there is one batch: nothing is
        recorded.

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
        code = check_code(code)
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
        remaining = as_int(result.get("Remaining_Subscription_Count"))
        if not envelope.ok:
            already = (
                envelope.code == ALREADY_SUBSCRIBED or "already subscribed" in envelope.description.lower()
            )
            if already:
                for key in keys:
                    self._subscribed[(*key, code)] = None
                self._update_cap(remaining)
                return SubscribeResult(code, tuple(keys), (), (), True, remaining)
            detail = envelope.detail
            if "limit" in envelope.description.lower() or (remaining == 0 and envelope.status == 400):
                self._update_cap(remaining)
                raise SubscriptionLimitError(f"XTS refused the {what}: over the session's cap: {detail}")
            raise SubscriptionError(f"XTS refused the {what}: {detail}")
        for key in keys:
            self._subscribed[(*key, code)] = None
        self._update_cap(remaining)
        listed = keys_of(result.get("quotesList"))
        newly = tuple(listed) if "quotesList" in result else tuple(keys)
        snapshots, errors = self._decode_snapshots(code, result.get("listQuotes"), what)
        return SubscribeResult(code, tuple(keys), newly, tuple(snapshots), False, remaining, errors)

    def _decode_snapshots(self, code: int, list_quotes: Any, what: str) -> tuple[list[Event], int]:
        if not isinstance(list_quotes, list) or not list_quotes:
            return [], 0
        try:
            return decode_list_quotes(code, list_quotes), 0
        except DecodeError as exc:
            good = list(exc.events)
            bad = len(list_quotes) - len(good)
            logger.warning(
                "XTS %s: %d malformed snapshot(s) skipped: %s", what, bad, scrub(exc, self._secrets())
            )
            return good, bad

    async def unsubscribe(self, instruments: Sequence[Key], code: int) -> tuple[Key, ...]:
        """Unsubscribe instruments from message `code` (``PUT /instruments/subscription``).

        Instruments not subscribed are not an error. Blocks for one request per 50 instruments (each
        within the session's timeout).

        Cancellation: batches answered before it are unsubscribed and forgotten; the batch in flight stays
        recorded, though the server may have removed it.

        Returns:
            The instruments the server reported removed (``unsubList``; the request's if it did not say).

        Raises:
            SubscriptionError: the server refused the request.
            InvalidTokenError: the token was refused.
            ConfigurationError: malformed instruments or an unknown code.
            RateLimitedError, ConnectTimeout, ConnectError: the request failed.
        """
        keys = check_keys(instruments)
        code = check_code(code)
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
            removed += keys_of(result.get("unsubList")) if "unsubList" in result else batch
        return tuple(removed)

    async def quotes(self, instruments: Sequence[Key], code: int) -> list[Event]:
        """Snapshots without subscribing (``POST /instruments/quotes``, ``publishFormat: JSON``).

        Blocks for one request per 50 instruments (each within the session's timeout). Cancellation
        changes nothing in the session.

        Returns:
            The decoded snapshots, in the server's order.

        Raises:
            DecodeError: some snapshots are malformed (``exc.events`` holds the others).
            SubscriptionError: the server refused the request.
            InvalidTokenError: the token was refused.
            RateLimitedError, ConnectTimeout, ConnectError: the request failed.
        """
        keys = check_keys(instruments)
        code = check_code(code)
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
                    secrets = self._secrets()
                    scrub_chain(exc, secrets)
                    raise DecodeError(scrub(exc, secrets), exc.raw, [*events, *exc.events]) from exc
        return events

    async def instrument_master(self, segments: Sequence[str | int]) -> str:
        """The instrument master text of `segments` (``POST /instruments/master``).

        Segments are names (``"NSECM"``) or numbers (1). The request carries the token when logged in and
        none otherwise (the deployments seen serve the master without one). Blocks for one request (with
        at least 60 s allowed for the whole download: the master is large). Cancellation changes nothing
        in the session.

        Returns:
            The ``result`` text (parse it with `parse_master`).

        Raises:
            InvalidTokenError: the server wants a session (log in first).
            ConnectTimeout: no complete answer within the session's timeout (at least 60 s).
            ConnectError: the request failed, the server refused it, or the answer is larger than
                `MAX_MASTER_BYTES`.
            ConfigurationError: an unknown segment.
        """
        names = master_segment_names(segments)
        envelope = await self._call(
            "POST",
            "/instruments/master",
            what="instrument master",
            json={"exchangeSegmentList": names},
            auth=self._token is not None,
            limit=max(MASTER_TIMEOUT, self._timeout),
            max_bytes=MAX_MASTER_BYTES,
        )
        if not envelope.ok:
            if envelope.status in (401, 403) or TOKEN_TROUBLE.search(envelope.description):
                raise InvalidTokenError(f"XTS wants a session for the instrument master ({envelope.code})")
            raise ConnectError(f"XTS refused the instrument master: {envelope.detail}")
        if not isinstance(envelope.result, str):
            raise ConnectError("XTS instrument master: the result is not text")
        return envelope.result

    async def index_list(self, segment: int) -> list[tuple[str, int]]:
        """The indices of `segment` (``GET /instruments/indexlist``) as (name, instrument id) pairs.

        Entries are ``"<name>_<id>"``; malformed ones (not text, no positive id, a name with control
        characters or a secret in it) are skipped. Blocks for one request (at most the session's timeout).
        Cancellation changes nothing in the session.

        Raises:
            InvalidTokenError: the token was refused (this route needs a login).
            ConnectError: the request failed or the server refused it, or the answer holds no index list.
            ConfigurationError: `segment` is not a known segment number.
        """
        if type(segment) is not int or segment not in SEGMENT_IDS.values():
            raise ConfigurationError(
                f"segment must be a known XTS segment number, got {scrub(repr(segment))}"
            )
        envelope = await self._call(
            "GET", "/instruments/indexlist", what="index list", params={"exchangeSegment": segment}
        )
        if not envelope.ok:
            raise ConnectError(f"XTS refused the index list: {envelope.detail}")
        result = envelope.result if isinstance(envelope.result, dict) else {}
        entries = result.get("indexList")
        if entries is None:
            entries = []
        if not isinstance(entries, list):
            raise ConnectError("XTS index list: the answer holds no list of indices")
        return index_entries(entries, self._secrets())
