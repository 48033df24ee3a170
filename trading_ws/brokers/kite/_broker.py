"""`KiteBroker`: Kite as a value the manager can use (limits, instrument master, connections)."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final, cast

import attrs
import httpx

from ..._backoff import Backoff
from ..._errors import AuthenticationError, ConfigurationError, ConnectError, DecodeError, RateLimitedError
from ..._http import MAX_MASTER_BYTES, http_exchange, scrub_chain
from ..._model import Broker, Event, Mode
from ..._ratelimit import RateLimit, TokenBucket
from ..._scrub import scrub
from ..._transport import client_context, context_repr
from ..._validate import (
    check_callable,
    check_credential,
    check_flag,
    check_instance,
    check_int,
    check_label,
    check_master_source,
    check_seconds,
    check_ssl_context,
    check_url,
)
from ..._version import __version__
from .._interface import BrokerFeed, InstrumentInfo
from .._queue import Sink
from ._feed import KITE_WS_URL, MAX_INSTRUMENTS_PER_CONNECTION, KiteFeed, TokenProvider, open_kite_feed
from ._instruments import KITE_API_URL, parse_instruments_csv

__all__ = ["KiteBroker"]

#: Kite allows three WebSocket connections per api_key.
MAX_CONNECTIONS_PER_KEY: Final = 3


def _kite_error(body: bytes, secrets: list[str]) -> str:
    """``": <error_type>: <message>"`` from a Kite error answer (scrubbed), or ``""``."""
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(answer, dict):
        return ""
    parts = [scrub(answer.get(key), secrets, 200) for key in ("error_type", "message") if answer.get(key)]
    return ": " + ": ".join(parts) if parts else ""


class _KiteShardFeed:
    """Adapts `KiteFeed` (integer tokens) to the manager's `BrokerFeed` (hashable keys)."""

    def __init__(self, feed: KiteFeed) -> None:
        self._feed = feed

    @property
    def connected(self) -> bool:
        return self._feed.connected

    async def subscribe(self, keys: Iterable[Hashable], mode: Mode) -> None:
        await self._feed.subscribe(cast("Iterable[int]", keys), mode)  # Kite keys are instrument tokens

    async def unsubscribe(self, keys: Iterable[Hashable]) -> None:
        await self._feed.unsubscribe(cast("Iterable[int]", keys))

    async def receive_batch(self) -> list[Event]:
        return await self._feed.receive_batch()


def _checked_text(text: object) -> str:
    if not isinstance(text, str):
        raise ConfigurationError(
            f"instruments: the function returned {type(text).__name__}, not the instrument master's text"
        )
    return text


@attrs.frozen
class KiteBroker:
    """Zerodha Kite, configured for `open_market_data`.

    Args:
        api_key: the Kite Connect app's api_key (a non-empty printable ASCII string).
        access_token: the day's access token (likewise; never shown in reprs, logs or errors).
        url: the ticker's root URL (``wss://``; ``ws://`` to loopback only, unless `allow_insecure`); no
            user info, query or fragment.
        instruments: the instrument master: the CSV text itself, an async function returning it, or None
            to download it from Kite's REST API (``GET {api_url}/instruments``, authenticated with the
            keys, once per manager).
        api_url: the REST API's root (``https://api.kite.trade``; a simulator's ``http://127.0.0.1:PORT``
            from `KiteSimulator.serve_rest`). Plain ``http://`` only to loopback, unless `allow_insecure`;
            no user info, query or fragment.
        token_provider: an async function returning a fresh access token after HTTP 403 (called once per
            refusal, never in a loop).
        backoff, watchdog_timeout: as for `open_kite_feed` (the watchdog: a finite number of seconds > 0).
        download_timeout: seconds allowed for the whole instrument download (connect, request and the
            complete answer).
        rate_limit: subscribe/unsubscribe messages and connection attempts per second (token bucket).
        max_instruments_per_connection: Kite allows 3000 (1 to 65535 accepted).
        max_connections: Kite allows 3 per api_key (1 to 64 accepted).
        allow_insecure: allow plain ``ws://``/``http://`` to non-loopback hosts.
        name: the label for ``subscribe(..., broker=...)`` (printable, at most 64 characters).
        ssl_context: the TLS settings of every connection this broker makes, the ticker's ``wss://`` and
            the instrument download's ``https://`` alike (default None: the system's trust store). For a
            private CA or a TLS-inspecting proxy: ``ssl.create_default_context(cafile="ca.pem")``.
            Certificates are always verified; the repr shows only whether a context is set.

    A TLS failure (an untrusted, expired or wrong-host certificate, a server that does not speak TLS)
    raises `TLSError` at once, on the first connection and on the download; on a reconnect it is one
    failed attempt (backoff, then a new one).

    Raises:
        ConfigurationError: (at construction) any argument that is not as documented; the message names
            the argument and never shows the access token.
    """

    api_key: str
    access_token: str = attrs.field(repr=False)
    url: str = KITE_WS_URL
    api_url: str = KITE_API_URL
    instruments: str | Callable[[], Awaitable[str]] | None = attrs.field(default=None, repr=False)
    token_provider: TokenProvider | None = attrs.field(default=None, repr=False)
    backoff: Backoff = attrs.field(factory=Backoff)
    watchdog_timeout: float = 5.0
    download_timeout: float = 60.0
    rate_limit: RateLimit = attrs.field(factory=RateLimit)
    max_instruments_per_connection: int = MAX_INSTRUMENTS_PER_CONNECTION
    max_connections: int = MAX_CONNECTIONS_PER_KEY
    allow_insecure: bool = False
    name: str = "kite"
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, repr=context_repr)

    def __attrs_post_init__(self) -> None:
        check_credential("api_key", self.api_key)
        check_credential("access_token", self.access_token)
        check_flag("allow_insecure", self.allow_insecure)
        check_url("url", self.url, secure="wss", plain="ws", allow_insecure=self.allow_insecure)
        check_url("api_url", self.api_url, secure="https", plain="http", allow_insecure=self.allow_insecure)
        check_master_source("instruments", self.instruments)
        check_callable("token_provider", self.token_provider)
        check_instance("backoff", self.backoff, Backoff)
        check_seconds("watchdog_timeout", self.watchdog_timeout)
        check_seconds("download_timeout", self.download_timeout)
        check_instance("rate_limit", self.rate_limit, RateLimit)
        check_int("max_instruments_per_connection", self.max_instruments_per_connection, 1, 65535)
        check_int("max_connections", self.max_connections, 1, 64)
        check_label("name", self.name)
        check_ssl_context("ssl_context", self.ssl_context)

    @property
    def broker(self) -> Broker:
        """Always `Broker.KITE`."""
        return Broker.KITE

    @property
    def keyed_by_segment(self) -> bool:
        """Kite instrument tokens are unique across segments: ticks route by token alone."""
        return False

    async def load_instruments(self) -> Mapping[str, InstrumentInfo]:
        """Load and parse the instrument master (see `instruments`). Blocks for the download, if any.

        Cancellation: nothing is loaded or kept.

        Raises:
            DecodeError: the CSV does not parse (or is not UTF-8 text).
            ConfigurationError: the `instruments` function returned something other than text.
            AuthenticationError: Kite refused the keys (HTTP 401/403).
            RateLimitedError: Kite answered HTTP 429.
            TLSError: TLS with the REST API failed (see `ssl_context`), at once.
            ConnectTimeout: the download did not complete within `download_timeout`.
            ConnectError: the download failed otherwise (unreachable, not HTTP, another status, an answer
                larger than 256 MiB).
        """
        if isinstance(self.instruments, str):
            text = self.instruments
        elif self.instruments is not None:
            text = _checked_text(await self.instruments())
        else:
            text = await self._download()
        try:
            rows = parse_instruments_csv(text)
        except DecodeError as exc:  # its message quotes the text, which came from the server
            scrub_chain(exc, [self.access_token])
            raise
        return {row.symbol: row.info() for row in rows}

    async def _download(self) -> str:
        headers = {
            "X-Kite-Version": "3",
            "Authorization": f"token {self.api_key}:{self.access_token}",
            "User-Agent": f"trading-ws/{__version__}",
        }
        url = self.api_url.rstrip("/") + "/instruments"
        secrets = [self.access_token]
        what = "Kite instruments download"
        try:
            # Proxy settings from the environment only for https: over plain http (loopback, or with
            # allow_insecure) a proxy would see the token in clear.
            client = httpx.AsyncClient(
                follow_redirects=False,
                trust_env=url.startswith("https://"),
                # The same trust as the ticker's (httpx alone would use certifi's bundle instead).
                verify=client_context(self.ssl_context),
            )
        except (httpx.InvalidURL, ValueError) as exc:
            raise ConfigurationError(
                f"{what}: cannot open an HTTP client (the environment's proxy settings?): {scrub(exc)}"
            ) from exc
        async with client:
            status, _, body = await http_exchange(
                client,
                "GET",
                url,
                what=what,
                deadline=self.download_timeout,
                max_bytes=MAX_MASTER_BYTES,
                secrets=secrets,
                headers=headers,
            )
        if status != 200:
            detail = _kite_error(body, secrets)
            if status in (401, 403):
                raise AuthenticationError(f"Kite refused the credentials (HTTP {status}{detail})")
            if status == 429:
                raise RateLimitedError(f"{what}: too many requests (HTTP 429{detail})")
            raise ConnectError(f"{what} failed (HTTP {status}{detail})")
        try:
            return body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"{what}: the answer is not UTF-8 text ({exc.reason})", body[:200]) from None

    def open_feed(
        self, connection_id: int, limiter: TokenBucket, sink: Sink | None = None
    ) -> AbstractAsyncContextManager[BrokerFeed]:
        """Open connection `connection_id` (see `open_kite_feed` for what entering raises)."""
        return self._open(connection_id, limiter, sink)

    @asynccontextmanager
    async def _open(
        self, connection_id: int, limiter: TokenBucket, sink: Sink | None
    ) -> AsyncIterator[BrokerFeed]:
        async with open_kite_feed(
            self.api_key,
            self.access_token,
            url=self.url,
            token_provider=self.token_provider,
            backoff=self.backoff,
            watchdog_timeout=self.watchdog_timeout,
            max_instruments=self.max_instruments_per_connection,
            allow_insecure=self.allow_insecure,
            ssl_context=self.ssl_context,
            connection_id=connection_id,
            rate_limiter=limiter,
            sink=sink,
        ) as feed:
            yield _KiteShardFeed(feed)
