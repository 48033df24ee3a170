"""`XtsBroker`: Symphony XTS as a value the manager can use (limits, instrument master, the connection)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final

import attrs

from ..._backoff import Backoff
from ..._errors import AuthenticationError, ConfigurationError
from ..._model import Broker, Event, Mode
from ..._ratelimit import RateLimit, TokenBucket
from ..._scrub import scrub
from ..._transport import context_repr
from ..._validate import (
    check_callable,
    check_credential,
    check_instance,
    check_int,
    check_label,
    check_master_source,
    check_seconds,
    check_ssl_context,
)
from .._interface import BrokerFeed, InstrumentInfo
from .._queue import Sink
from ._api import API_PATH, MAX_SUBSCRIPTIONS, parse_root_url
from ._feed import BROADCAST_MODES, XTS_FLAVOURS, XtsFeed, open_xts_feed
from ._instruments import EXCHANGE_BY_SEGMENT, SEGMENT_IDS, parse_master_lenient
from ._rest import CredentialsProvider, XtsSession

__all__ = ["DEFAULT_MASTER_SEGMENTS", "XtsBroker"]

logger = logging.getLogger("trading_ws.xts")

#: The segments whose instrument master `XtsBroker` loads by default: NSE cash and F&O.
DEFAULT_MASTER_SEGMENTS: Final = ("NSECM", "NSEFO")

_SEGMENT_NAMES: Final = {number: name for name, number in SEGMENT_IDS.items() if not name.startswith("MSEI")}


class _XtsShardFeed:
    """Adapts `XtsFeed` ((segment, id) pairs) to the manager's `BrokerFeed` (hashable keys)."""

    def __init__(self, feed: XtsFeed) -> None:
        self._feed = feed

    @property
    def connected(self) -> bool:
        return self._feed.connected

    async def subscribe(self, keys: Iterable[Hashable], mode: Mode) -> None:
        await self._feed.subscribe([_key(k) for k in keys], mode)

    async def unsubscribe(self, keys: Iterable[Hashable]) -> None:
        await self._feed.unsubscribe([_key(k) for k in keys])

    async def receive_batch(self) -> list[Event]:
        return await self._feed.receive_batch()


def _key(key: Hashable) -> tuple[int, int]:
    if not (isinstance(key, tuple) and len(key) == 2):
        raise ConfigurationError(f"an XTS instrument key is a (segment, instrument id) pair, got {key!r}")
    segment, instrument_id = key
    return int(segment), int(instrument_id)


_SEGMENT_NUMBERS: Final = frozenset(SEGMENT_IDS.values())


def _items(name: str, value: object) -> tuple[object, ...]:
    if isinstance(value, (str, bytes, bytearray)) or not isinstance(value, Iterable):
        raise ConfigurationError(f"{name} must be a sequence (a tuple or list), got {type(value).__name__}")
    return tuple(value)


def _shown(item: object) -> str:
    return scrub(repr(item), limit=40)


def _master_segments(value: Iterable[str | int]) -> tuple[str | int, ...]:
    """`segments` as given, checked: at least one, each a known segment name or number."""
    out: list[str | int] = []
    for item in _items("segments", value):
        if isinstance(item, str) and item.upper() in SEGMENT_IDS:
            out.append(item)
            continue
        if type(item) is int and item in _SEGMENT_NUMBERS:
            out.append(item)
            continue
        raise ConfigurationError(f"segments: unknown XTS exchange segment {_shown(item)}")
    if not out:
        raise ConfigurationError("segments must name at least one exchange segment")
    return tuple(out)


def _index_segments(value: Iterable[int]) -> tuple[int, ...]:
    """`index_segments` as given, checked: each a known segment number."""
    out: list[int] = []
    for item in _items("index_segments", value):
        if type(item) is not int or item not in _SEGMENT_NUMBERS:
            raise ConfigurationError(f"index_segments: unknown XTS segment number {_shown(item)}")
        out.append(item)
    return tuple(out)


def _checked_text(text: object) -> str:
    if not isinstance(text, str):
        raise ConfigurationError(
            f"instruments: the function returned {type(text).__name__}, not the instrument master's text"
        )
    return text


@attrs.frozen
class XtsBroker:
    """Symphony XTS market data (the JSON product), configured for `open_market_data`.

    Instruments are keyed by ``(ExchangeSegment, ExchangeInstrumentID)``: ticks route by
    ``(tick.segment, tick.instrument_token)``. Symbols come from the instrument master as its parser names
    them (`XtsInstrument.symbol`): ``NSE:INFY``, ``NSE:IDEA-BE``, ``NFO:NIFTY26DECFUT``...

    Args:
        app_key: the market-data appKey (a non-empty printable ASCII string).
        secret_key: the market-data secretKey (likewise; never shown in reprs, logs or errors).
        root_url: the deployment's root, e.g. ``https://ttblaze.iifl.com`` (or a simulator's
            ``http://127.0.0.1:PORT``); no user info, query or fragment.
        flavour: ``"pro"`` (dealer) or ``"client"`` (investor). Informational: XTS market data is the same
            for both (only the interactive API differs).
        broadcast_mode: ``"Full"`` or ``"Partial"``, any case (see `open_xts_feed`).
        instruments: the instrument master: the ``result`` text itself, an async function returning it,
            or None to download it (``POST /instruments/master`` for `segments`, without a login; if the
            server wants one, with a login that the feed's own login then supersedes).
        segments: the master segments to download (at least one; names such as ``"NSECM"``, or numbers).
        index_segments: segment numbers whose indices to add from ``GET /instruments/indexlist`` (e.g.
            ``(1,)`` gives ``NSE:NIFTY 50``...). The master has no index rows; the index list needs a
            login, so loading costs one extra login (which the feed's own login then supersedes).
        credentials_provider: an async function returning fresh ``(app_key, secret_key)`` (see
            `open_xts_feed`; called at most once per refusal).
        backoff, ping_timeout_slack: as for `open_xts_feed` (the slack: a finite number of seconds >= 0).
        request_timeout: seconds allowed for each REST request, start to finish (the instrument master
            gets at least 60).
        rate_limit: REST requests and connection attempts per second (token bucket).
        max_instruments_per_connection: the session's subscription cap (50; 1 to 65535).
        max_connections: must be 1 (one session per appKey; a session's sockets all receive everything).
        allow_insecure: allow plain ``http://`` to non-loopback hosts.
        api_path: the route prefix (``/apimarketdata``; ``/marketdata`` for servers before late 2023).
        name: the label for ``subscribe(..., broker=...)`` (printable, at most 64 characters).
        ssl_context: the TLS settings of every connection this broker makes, REST (login, subscriptions,
            instrument master) and the Socket.IO ``wss://`` alike (default None: the system's trust
            store). For a private CA or a TLS-inspecting proxy:
            ``ssl.create_default_context(cafile="ca.pem")``. Certificates are always verified; the repr
            shows only whether a context is set.

    A TLS failure (an untrusted, expired or wrong-host certificate, a server that does not speak TLS)
    raises `TLSError` at once, on the first login or connection and on the downloads; on a reconnect it
    is one failed attempt (backoff, then a new one).

    Raises:
        ConfigurationError: (at construction) any argument that is not as documented; the message names
            the argument and never shows a key.
    """

    app_key: str
    secret_key: str = attrs.field(repr=False)
    root_url: str
    flavour: str = "pro"
    broadcast_mode: str = "Full"
    instruments: str | Callable[[], Awaitable[str]] | None = attrs.field(default=None, repr=False)
    segments: tuple[str | int, ...] = attrs.field(default=DEFAULT_MASTER_SEGMENTS, converter=_master_segments)
    index_segments: tuple[int, ...] = attrs.field(default=(), converter=_index_segments)
    credentials_provider: CredentialsProvider | None = attrs.field(default=None, repr=False)
    backoff: Backoff = attrs.field(factory=Backoff)
    ping_timeout_slack: float = 5.0
    request_timeout: float = 10.0
    rate_limit: RateLimit = attrs.field(factory=RateLimit)
    max_instruments_per_connection: int = MAX_SUBSCRIPTIONS
    max_connections: int = 1
    allow_insecure: bool = False
    api_path: str = API_PATH
    name: str = "xts"
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, repr=context_repr)

    def __attrs_post_init__(self) -> None:
        check_credential("app_key", self.app_key)
        check_credential("secret_key", self.secret_key)
        parse_root_url(self.root_url, api_path=self.api_path, allow_insecure=self.allow_insecure)
        if not (isinstance(self.flavour, str) and self.flavour in XTS_FLAVOURS):
            raise ConfigurationError(f"flavour must be one of {XTS_FLAVOURS}, got {_shown(self.flavour)}")
        if not (isinstance(self.broadcast_mode, str) and self.broadcast_mode.lower() in BROADCAST_MODES):
            raise ConfigurationError(
                f"broadcast_mode must be 'Full' or 'Partial', got {_shown(self.broadcast_mode)}"
            )
        check_master_source("instruments", self.instruments)
        check_callable("credentials_provider", self.credentials_provider)
        check_instance("backoff", self.backoff, Backoff)
        check_seconds("ping_timeout_slack", self.ping_timeout_slack, allow_zero=True)
        check_seconds("request_timeout", self.request_timeout)
        check_instance("rate_limit", self.rate_limit, RateLimit)
        check_int("max_instruments_per_connection", self.max_instruments_per_connection, 1, 65535)
        if isinstance(self.max_connections, bool) or self.max_connections != 1:
            raise ConfigurationError(
                "XTS allows one market-data session per appKey, and every socket of a session receives all "
                "of its subscriptions: max_connections must be 1"
            )
        check_label("name", self.name)
        check_ssl_context("ssl_context", self.ssl_context)

    @property
    def broker(self) -> Broker:
        """Always `Broker.XTS`."""
        return Broker.XTS

    @property
    def keyed_by_segment(self) -> bool:
        """XTS instrument ids repeat across segments: ticks route by (segment, id)."""
        return True

    def _session(self) -> XtsSession:
        return XtsSession(
            self.app_key,
            self.secret_key,
            root_url=self.root_url,
            allow_insecure=self.allow_insecure,
            ssl_context=self.ssl_context,
            timeout=self.request_timeout,
            api_path=self.api_path,
        )

    async def load_instruments(self) -> Mapping[str, InstrumentInfo]:
        """Load and parse the instrument master (and the index lists of `index_segments`).

        Malformed master rows are skipped (and counted in a warning). Blocks for the downloads, each
        request within `request_timeout` (the master within at least 60 s).

        Cancellation: nothing is loaded; a login made for the index list may stay open on the server
        until the feed's own login supersedes it.

        Raises:
            AuthenticationError: the server wanted a login and refused the keys.
            ConfigurationError: the `instruments` function returned something other than text.
            TLSError: TLS with the server failed (see `ssl_context`), at once.
            ConnectTimeout: a request did not complete in time.
            ConnectError: a download failed (unreachable, refused, malformed or too large an answer).
        """
        text: str | None = None
        if isinstance(self.instruments, str):
            text = self.instruments
        elif self.instruments is not None:
            text = _checked_text(await self.instruments())
        out: dict[str, InstrumentInfo] = {}
        if text is None or self.index_segments:
            async with self._session() as session:
                if text is None:
                    try:
                        text = await session.instrument_master(self.segments)
                    except AuthenticationError:
                        logger.info("XTS wants a session for the instrument master; logging in for it")
                        await session.login()
                        text = await session.instrument_master(self.segments)
                if self.index_segments:
                    if not session.logged_in:
                        await session.login()
                    for segment in self.index_segments:
                        exchange = EXCHANGE_BY_SEGMENT.get(_SEGMENT_NAMES.get(segment, ""), str(segment))
                        for name, instrument_id in await session.index_list(segment):
                            symbol = f"{exchange}:{name}"
                            out[symbol] = InstrumentInfo(
                                symbol, (segment, instrument_id), instrument_id, segment, tradable=False
                            )
                if session.logged_in:
                    await session.logout()  # the feed logs in for itself
        records, bad = parse_master_lenient(text)
        if bad:
            first = scrub(bad[0], [self.secret_key])
            logger.warning("skipped %d malformed XTS master rows (first: %s)", len(bad), first)
        for record in records:
            key = (record.segment_id, record.instrument_id)
            out.setdefault(
                record.symbol, InstrumentInfo(record.symbol, key, record.instrument_id, record.segment_id)
            )
        return out

    def open_feed(
        self, connection_id: int, limiter: TokenBucket, sink: Sink | None = None
    ) -> AbstractAsyncContextManager[BrokerFeed]:
        """Open connection `connection_id` (see `open_xts_feed` for what entering raises)."""
        return self._open(connection_id, limiter, sink)

    @asynccontextmanager
    async def _open(
        self, connection_id: int, limiter: TokenBucket, sink: Sink | None
    ) -> AsyncIterator[BrokerFeed]:
        async with open_xts_feed(
            self.app_key,
            self.secret_key,
            root_url=self.root_url,
            broadcast_mode=self.broadcast_mode,
            flavour=self.flavour,
            credentials_provider=self.credentials_provider,
            backoff=self.backoff,
            ping_timeout_slack=self.ping_timeout_slack,
            request_timeout=self.request_timeout,
            max_instruments=self.max_instruments_per_connection,
            allow_insecure=self.allow_insecure,
            ssl_context=self.ssl_context,
            connection_id=connection_id,
            rate_limiter=limiter,
            sink=sink,
            api_path=self.api_path,
        ) as feed:
            yield _XtsShardFeed(feed)
