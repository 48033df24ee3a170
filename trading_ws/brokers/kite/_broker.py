"""`KiteBroker`: Kite as a value the manager can use (limits, instrument master, connections)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final, cast
from urllib.parse import urlsplit

import attrs

from ..._backoff import Backoff
from ..._errors import AuthenticationError, ConfigurationError, ConnectError
from ..._model import Broker, Event, Mode
from ..._ratelimit import RateLimit, TokenBucket
from ..._transport import is_loopback_host
from .._interface import BrokerFeed, InstrumentInfo
from .._queue import Sink
from ._feed import KITE_WS_URL, MAX_INSTRUMENTS_PER_CONNECTION, KiteFeed, TokenProvider, open_kite_feed
from ._instruments import KITE_API_URL, parse_instruments_csv

__all__ = ["KiteBroker"]

#: Kite allows three WebSocket connections per api_key.
MAX_CONNECTIONS_PER_KEY: Final = 3


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


@attrs.frozen
class KiteBroker:
    """Zerodha Kite, configured for `open_market_data`.

    Args:
        api_key: the Kite Connect app's api_key.
        access_token: the day's access token (never shown in reprs or logs).
        url: the ticker's root URL.
        instruments: the instrument master: the CSV text itself, an async function returning it, or None
            to download it from Kite's REST API (``GET {api_url}/instruments``, authenticated with the
            keys, once per manager).
        api_url: the REST API's root (``https://api.kite.trade``; a simulator's ``http://127.0.0.1:PORT``
            from `KiteSimulator.serve_rest`). Plain ``http://`` only to loopback, unless `allow_insecure`.
        token_provider: an async function returning a fresh access token after HTTP 403 (called once per
            refusal, never in a loop).
        backoff, watchdog_timeout: as for `open_kite_feed`.
        rate_limit: subscribe/unsubscribe messages and connection attempts per second (token bucket).
        max_instruments_per_connection: Kite allows 3000.
        max_connections: Kite allows 3 per api_key.
        allow_insecure: allow plain ``ws://``/``http://`` to non-loopback hosts.
        name: the label for ``subscribe(..., broker=...)``.
    """

    api_key: str
    access_token: str = attrs.field(repr=False)
    url: str = KITE_WS_URL
    api_url: str = KITE_API_URL
    instruments: str | Callable[[], Awaitable[str]] | None = attrs.field(default=None, repr=False)
    token_provider: TokenProvider | None = attrs.field(default=None, repr=False)
    backoff: Backoff = attrs.field(factory=Backoff)
    watchdog_timeout: float = 5.0
    rate_limit: RateLimit = attrs.field(factory=RateLimit)
    max_instruments_per_connection: int = MAX_INSTRUMENTS_PER_CONNECTION
    max_connections: int = MAX_CONNECTIONS_PER_KEY
    allow_insecure: bool = False
    name: str = "kite"

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.max_connections <= 64:
            raise ConfigurationError("max_connections must be in 1..64")
        for label, value in (("api_key", self.api_key), ("access_token", self.access_token)):
            if not (value.isascii() and value.isprintable()):  # never echo it: it may be a secret
                raise ConfigurationError(f"{label} must be printable ASCII")
        parts = urlsplit(self.api_url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigurationError("api_url must be an https:// URL with a host")
        if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
            raise ConfigurationError("api_url must be a plain root URL: no user info, query or fragment")
        if parts.scheme == "http" and not self.allow_insecure and not is_loopback_host(parts.hostname):
            raise ConfigurationError(
                f"refusing plain http:// to {parts.hostname!r}: the access token would travel unencrypted "
                "(use https://, or pass allow_insecure=True)"
            )

    @property
    def broker(self) -> Broker:
        """Always `Broker.KITE`."""
        return Broker.KITE

    @property
    def keyed_by_segment(self) -> bool:
        """Kite instrument tokens are unique across segments: ticks route by token alone."""
        return False

    async def load_instruments(self) -> Mapping[str, InstrumentInfo]:
        """Load and parse the instrument master (see `instruments`).

        Raises:
            DecodeError: the CSV does not parse.
            AuthenticationError, ConnectError: downloading it failed.
        """
        if isinstance(self.instruments, str):
            text = self.instruments
        elif self.instruments is not None:
            text = await self.instruments()
        else:
            text = await self._download()
        return {row.symbol: row.info() for row in parse_instruments_csv(text)}

    async def _download(self) -> str:
        import httpx

        headers = {
            "X-Kite-Version": "3",
            "Authorization": f"token {self.api_key}:{self.access_token}",
        }
        url = self.api_url.rstrip("/") + "/instruments"
        try:
            # Proxy settings from the environment only for https: over plain http (loopback, or with
            # allow_insecure) a proxy would see the token in clear.
            async with httpx.AsyncClient(timeout=30.0, trust_env=url.startswith("https://")) as client:
                response = await client.get(url, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
            # `from None`: the chained error may carry the request's headers, and so the token.
            raise ConnectError(f"cannot download the Kite instruments: {type(exc).__name__}") from None
        if response.status_code in (401, 403):
            raise AuthenticationError(f"Kite refused the credentials (HTTP {response.status_code})")
        if response.status_code != 200:
            raise ConnectError(f"Kite instruments download failed (HTTP {response.status_code})")
        return response.text

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
            connection_id=connection_id,
            rate_limiter=limiter,
            sink=sink,
        ) as feed:
            yield _KiteShardFeed(feed)
