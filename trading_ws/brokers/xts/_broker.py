"""`XtsBroker`: Symphony XTS as a value the manager can use (limits, instrument master, the connection)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final

import attrs

from ..._backoff import Backoff
from ..._errors import AuthenticationError, ConfigurationError
from ..._model import Broker, Event, Mode
from ..._ratelimit import RateLimit, TokenBucket
from .._interface import BrokerFeed, InstrumentInfo
from .._queue import Sink
from ._feed import BROADCAST_MODES, XTS_FLAVOURS, XtsFeed, open_xts_feed
from ._instruments import EXCHANGE_BY_SEGMENT, SEGMENT_IDS, parse_master_lenient
from ._rest import API_PATH, MAX_SUBSCRIPTIONS, CredentialsProvider, XtsSession, parse_root_url

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


def _check_flavour(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in XTS_FLAVOURS:
        raise ConfigurationError(f"flavour must be one of {XTS_FLAVOURS}, got {value!r}")


def _check_mode(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if str(value).lower() not in BROADCAST_MODES:
        raise ConfigurationError(f"broadcast_mode must be 'Full' or 'Partial', got {value!r}")


def _check_connections(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value != 1:
        raise ConfigurationError(
            "XTS allows one market-data session per appKey, and every socket of a session receives all "
            "of its subscriptions: max_connections must be 1"
        )


def _check_instruments(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ConfigurationError("max_instruments_per_connection must be at least 1")


@attrs.frozen
class XtsBroker:
    """Symphony XTS market data (the JSON product), configured for `open_market_data`.

    Instruments are keyed by ``(ExchangeSegment, ExchangeInstrumentID)``: ticks route by
    ``(tick.segment, tick.instrument_token)``. Symbols come from the instrument master as its parser names
    them (`XtsInstrument.symbol`): ``NSE:INFY``, ``NSE:IDEA-BE``, ``NFO:NIFTY26DECFUT``...

    Args:
        app_key: the market-data appKey.
        secret_key: the market-data secretKey (never shown in reprs or logs).
        root_url: the deployment's root, e.g. ``https://ttblaze.iifl.com`` (or a simulator's
            ``http://127.0.0.1:PORT``).
        flavour: ``"pro"`` (dealer) or ``"client"`` (investor). Informational: XTS market data is the same
            for both (only the interactive API differs).
        broadcast_mode: ``"Full"`` or ``"Partial"`` (see `open_xts_feed`).
        instruments: the instrument master: the ``result`` text itself, an async function returning it,
            or None to download it (``POST /instruments/master`` for `segments`, without a login; if the
            server wants one, with a login that the feed's own login then supersedes).
        segments: the master segments to download (names such as ``"NSECM"``, or numbers).
        index_segments: segments whose indices to add from ``GET /instruments/indexlist`` (e.g. ``(1,)``
            gives ``NSE:NIFTY 50``...). The master has no index rows; the index list needs a login, so
            loading costs one extra login (which the feed's own login then supersedes).
        credentials_provider: an async function returning fresh ``(app_key, secret_key)`` (see
            `open_xts_feed`; called at most once per refusal).
        backoff, ping_timeout_slack: as for `open_xts_feed`.
        rate_limit: REST requests and connection attempts per second (token bucket).
        max_instruments_per_connection: the session's subscription cap (50).
        max_connections: must be 1 (one session per appKey; a session's sockets all receive everything).
        allow_insecure: allow plain ``http://`` to non-loopback hosts.
        name: the label for ``subscribe(..., broker=...)``.

    Raises:
        ConfigurationError: (at construction) an invalid URL, flavour, broadcast mode or limit.
    """

    app_key: str
    secret_key: str = attrs.field(repr=False)
    root_url: str
    flavour: str = attrs.field(default="pro", validator=_check_flavour)
    broadcast_mode: str = attrs.field(default="Full", validator=_check_mode)
    instruments: str | Callable[[], Awaitable[str]] | None = attrs.field(default=None, repr=False)
    segments: tuple[str | int, ...] = attrs.field(default=DEFAULT_MASTER_SEGMENTS, converter=tuple)
    index_segments: tuple[int, ...] = attrs.field(default=(), converter=tuple)
    credentials_provider: CredentialsProvider | None = attrs.field(default=None, repr=False)
    backoff: Backoff = attrs.field(factory=Backoff)
    ping_timeout_slack: float = 5.0
    rate_limit: RateLimit = attrs.field(factory=RateLimit)
    max_instruments_per_connection: int = attrs.field(default=MAX_SUBSCRIPTIONS, validator=_check_instruments)
    max_connections: int = attrs.field(default=1, validator=_check_connections)
    allow_insecure: bool = False
    api_path: str = API_PATH
    name: str = "xts"

    def __attrs_post_init__(self) -> None:
        if not self.app_key or not self.secret_key:
            raise ConfigurationError("app_key and secret_key must not be empty")
        parse_root_url(self.root_url, api_path=self.api_path, allow_insecure=self.allow_insecure)

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
            api_path=self.api_path,
        )

    async def load_instruments(self) -> Mapping[str, InstrumentInfo]:
        """Load and parse the instrument master (and the index lists of `index_segments`).

        Malformed master rows are skipped (and counted in a warning). Blocks for the downloads.

        Raises:
            AuthenticationError: the server wanted a login and refused the keys.
            ConnectError: a download failed.
        """
        text: str | None = None
        if isinstance(self.instruments, str):
            text = self.instruments
        elif self.instruments is not None:
            text = await self.instruments()
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
            logger.warning("skipped %d malformed XTS master rows (first: %s)", len(bad), bad[0])
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
            max_instruments=self.max_instruments_per_connection,
            allow_insecure=self.allow_insecure,
            connection_id=connection_id,
            rate_limiter=limiter,
            sink=sink,
            api_path=self.api_path,
        ) as feed:
            yield _XtsShardFeed(feed)
