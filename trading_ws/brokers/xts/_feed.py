"""The reconnecting XTS market-data feed: one REST session and one Socket.IO (Engine.IO v3) WebSocket,
owned by an ``async with`` block.

How a message travels: the WebSocket's reader (trio-websocket) -> `XtsFeed._read` parses the Engine.IO /
Socket.IO packet and decodes its market event with the sans-IO codec into one list -> one batch per
message into a bounded queue -> the consumer's ``async for`` hands the list out event by event.

Subscriptions are REST calls (``POST``/``PUT /instruments/subscription``) and belong to the session (the
token), not to the socket (xts-protocol.md section 3.6): after a plain socket reconnect with the same token
ticks resume without any REST call; after a new login (the token was refused by REST or at the socket
handshake) everything is subscribed again. The ``listQuotes`` snapshots of a subscribe are delivered as
the first ticks of their instruments: live ticks that overtake the REST answer are held back until the
snapshot is queued.
"""

from __future__ import annotations

import json
import logging
import math
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Final, NoReturn
from urllib.parse import urlencode

import attrs
import httpx
import trio
import trio_websocket

from ..._backoff import Backoff
from ..._errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    ConnectTimeout,
    DecodeError,
    SubscriptionError,
    SubscriptionLimitError,
    TradingWsError,
)
from ..._model import (
    Broker,
    BrokerError,
    BrokerMessage,
    Connected,
    Event,
    Mode,
    Resubscribed,
    Tick,
    coerce_mode,
)
from ..._ratelimit import TokenBucket
from ..._scrub import EVENT_TEXT_LIMIT, scrub, scrub_event
from ..._transport import Connect, check_connect, open_service_nursery, open_ws
from ..._validate import (
    check_callable,
    check_flag,
    check_instance,
    check_int,
    check_seconds,
    check_ssl_context,
)
from ..._version import __version__
from .._queue import BatchFeed, Sink, run_feed
from .._reconnect import ConnectionLost, provider_failed
from ._codec import CODE_TO_MODE, MESSAGE_CODES, MODE_TO_CODE, decode_event, decode_message, event_name
from ._engineio import (
    EioClose,
    EioNoop,
    EioPing,
    EioPong,
    OpenPacket,
    SioConnect,
    SioDisconnect,
    SioError,
    SioEvent,
    parse_packet,
)
from ._rest import (
    API_PATH,
    MAX_SUBSCRIPTIONS,
    CredentialsProvider,
    InvalidTokenError,
    Key,
    LoginRefusedError,
    XtsSession,
    check_keys,
)

__all__ = [
    "BROADCAST_MODES",
    "DEFAULT_BUFFER",
    "PING_INTERVAL_BOUNDS",
    "PING_TIMEOUT_BOUNDS",
    "XTS_FLAVOURS",
    "XtsFeed",
    "XtsFeedStatistics",
    "open_xts_feed",
]

logger = logging.getLogger("trading_ws.xts")

#: The XTS products whose market data this feed reads: identical for both (xts-protocol.md section 6).
XTS_FLAVOURS: Final = ("pro", "client")
#: ``broadcastMode`` values of the socket query, by their lower-case spelling.
BROADCAST_MODES: Final[dict[str, str]] = {"full": "Full", "partial": "Partial"}

_XTS: Final = Broker.XTS
_FEED_CODES: Final = frozenset(MODE_TO_CODE.values())
_MARKET_EVENTS: Final = frozenset(event_name(c, p) for c in MESSAGE_CODES for p in (False, True))
_DEFAULT_PING_INTERVAL: Final = 25.0
#: The server chooses pingInterval and pingTimeout; a hostile one could make us ping a thousand times a
#: second or never notice a dead connection. Its pingInterval is clamped to these bounds (seconds).
PING_INTERVAL_BOUNDS: Final = (1.0, 60.0)
#: The bounds (seconds) its pingTimeout is clamped to (see `PING_INTERVAL_BOUNDS`).
PING_TIMEOUT_BOUNDS: Final = (1.0, 120.0)
#: The default `buffer`: events waiting for the consumer before the feed stops reading the socket.
DEFAULT_BUFFER: Final = 20_000


def _clamp(value: float, bounds: tuple[float, float], default: float) -> float:
    if not math.isfinite(value) or value <= 0:
        return default
    return min(max(value, bounds[0]), bounds[1])


class _SessionLost(InvalidTokenError):
    """A REST call found the token refused while the socket was up: log in again (once)."""


class _LoggedOut(AuthenticationError):
    """The server sent a ``logout`` event: another login took the session. Not renewed (see docs)."""


@attrs.frozen
class XtsFeedStatistics:
    """A snapshot of one XTS feed's counters (see `XtsFeed.statistics`)."""

    connected: bool
    """Whether the Socket.IO connection is up right now."""
    subscribed: int
    """Instruments currently subscribed (what a new login subscribes again)."""
    frames: int
    """WebSocket messages received (every packet: events, pongs, handshakes...)."""
    ticks: int
    """Market-data events delivered (snapshots included)."""
    snapshots: int
    """Of which ``listQuotes`` snapshots from subscribe answers."""
    decode_errors: int
    """Malformed packets or market events (counted, logged, and skipped)."""
    unknown_packets: int
    """Packets and events the feed does not understand (counted and ignored)."""
    pings_sent: int
    pongs_received: int
    connects: int
    """Socket.IO connections established (the first one included)."""
    reconnects: int
    """Connections lost after being established."""
    logins: int
    """Successful logins (the first one included)."""
    rest_requests: int
    """REST requests sent by the session (login included)."""
    remaining_subscriptions: int
    """What the session may still subscribe (instrument, message code pairs)."""
    queued_batches: int
    """Batches waiting for the consumer."""
    queued_ticks: int
    """Events in those batches (bounded by the feed's `buffer`)."""
    last_frame_age: float | None
    """Seconds since the last message of any kind (trio clock), or None before the first."""


def _text_of(data: Any) -> str:
    if isinstance(data, str):
        return data[:2000]
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)[:2000]
    except (TypeError, ValueError):
        return repr(data)[:2000]


class XtsFeed(BatchFeed):
    """One XTS market-data session and its Socket.IO connection, which reconnects by itself; create it
    with `open_xts_feed`.

    Iterate it (``async for event in feed``) to receive `Tick` objects (and `Candle`, `OpenInterest`,
    `MarketStatus`, `InstrumentPropertyChange` should the server push them), `BrokerError` /
    `BrokerMessage` for socket ``error`` events, and the status events `Connected`, `Disconnected`,
    `Reconnecting`, `Resubscribed`, in the order they happened. If the feed fails for good (credentials
    refused with no renewal left, the server's ``logout``, or `Backoff.max_attempts` exhausted), the
    iterator raises that error.

    Instruments are ``(exchange_segment, exchange_instrument_id)`` pairs, e.g. ``(1, 2885)`` for
    RELIANCE on NSECM; ticks carry them as ``(tick.segment, tick.instrument_token)``.
    """

    _feed_name = "XTS"
    _broker = _XTS
    _log = logger

    def __init__(
        self,
        *,
        session: XtsSession,
        broadcast_mode: str,
        flavour: str,
        credentials_provider: CredentialsProvider | None,
        backoff: Backoff,
        ping_timeout_slack: float,
        connect_timeout: float,
        close_timeout: float,
        buffer: int,
        max_instruments: int,
        ssl_context: ssl.SSLContext | None,
        rng: random.Random | None,
        connection_id: int,
        rate_limiter: TokenBucket | None,
        sink: Sink | None = None,
        connect: Connect | None = None,
    ) -> None:
        mode = BROADCAST_MODES.get(str(broadcast_mode).lower())
        if mode is None:
            raise ConfigurationError(f"broadcast_mode must be 'Full' or 'Partial', got {broadcast_mode!r}")
        if flavour not in XTS_FLAVOURS:
            raise ConfigurationError(f"flavour must be one of {XTS_FLAVOURS}, got {flavour!r}")
        check_seconds("ping_timeout_slack", ping_timeout_slack, allow_zero=True)
        check_seconds("connect_timeout", connect_timeout)
        check_seconds("close_timeout", close_timeout)
        check_int("buffer", buffer, 1)
        check_int("max_instruments", max_instruments, 1)
        check_int("connection_id", connection_id, 0)
        check_instance("backoff", backoff, Backoff)
        check_callable("credentials_provider", credentials_provider)
        check_ssl_context("ssl_context", ssl_context)
        check_instance("rng", rng, random.Random, optional=True)
        check_instance("rate_limiter", rate_limiter, TokenBucket, optional=True)
        check_callable("sink", sink)
        check_connect("connect", connect)
        self._session = session
        self._broadcast_mode = mode
        self._flavour = flavour
        self._provider = credentials_provider
        self._slack = ping_timeout_slack
        self._connect_timeout = connect_timeout
        self._close_timeout = close_timeout
        self._max_instruments = max_instruments
        self._ssl_context = ssl_context
        self._limiter = rate_limiter
        self._connect = connect
        self._wanted: dict[Key, Mode] = {}
        self._lock = trio.StrictFIFOLock()
        self._init_feed(buffer, sink, backoff=backoff, rng=rng, connection_id=connection_id)
        self._awaiting: dict[Key, Mode] = {}
        self._held: list[Tick] = []
        self._conn_scope: trio.CancelScope | None = None
        self._uncertain: set[tuple[int, int, int]] = set()
        self._resync_pending = False
        self._frames = self._ticks = self._snapshots = self._decode_errors = self._unknown = 0
        self._pings = self._pongs = 0
        self._last_frame_at: float | None = None

    def __repr__(self) -> str:
        state = "connected" if self._ws is not None else "closed" if self._closed else "disconnected"
        return (
            f"<XtsFeed {state} root={self._session.endpoints.rest!r} app_key={self._session.app_key!r} "
            f"flavour={self._flavour} broadcast={self._broadcast_mode} subscribed={len(self._wanted)}>"
        )

    # -----------------------------------------------------------------------------------------------
    # Public API

    @property
    def flavour(self) -> str:
        """``"pro"`` or ``"client"``: informational (market data is the same for both)."""
        return self._flavour

    @property
    def broadcast_mode(self) -> str:
        """``"Full"`` (JSON events) or ``"Partial"`` (``key:value`` events)."""
        return self._broadcast_mode

    @property
    def session(self) -> XtsSession:
        """The REST session (for `XtsSession.quotes` and the like; subscribe through the feed)."""
        return self._session

    @property
    def subscriptions(self) -> dict[Key, Mode]:
        """A copy of the subscribed instruments and their modes."""
        return dict(self._wanted)

    async def subscribe(self, instruments: Iterable[Key], mode: Mode | str = Mode.QUOTE) -> None:
        """Subscribe instruments in `mode` (LTP -> 1512, QUOTE -> 1501, FULL -> 1502) over REST.

        Instruments already subscribed move to `mode` (the new code is subscribed, then the old one
        unsubscribed; the other way round when the session's cap leaves no room for both). The snapshots
        of the answer are delivered in the feed's stream before any live tick of those instruments.
        While logged out (a login is pending) the request is recorded and applied after the login.
        `mode` is a `Mode` or its string value (``"ltp"``, ``"quote"``, ``"full"``). Blocks for the REST
        requests (one at a time per feed).

        Cancellation: all or nothing. Cancelled at any point, the request is not recorded: the feed holds
        what it held (what the server confirmed is kept). A REST request cut short may still have reached
        the server, so the feed reconciles the session with its record in the background at once
        (unsubscribing what it did not keep); ticks of those instruments may flow until then.

        Raises:
            SubscriptionLimitError: more instruments than the session allows (50, or what the server's
                count implies); nothing is sent or recorded.
            SubscriptionError: the server refused the request (e.g. an unknown instrument); it is not
                recorded.
            ConnectError: the request failed while the socket is up; it is not recorded (and reconciled,
                as for a cancellation). While disconnected, a request is recorded and applied at the next
                connection instead.
            FeedClosedError: the feed is closed or has failed.
            ConfigurationError: an instrument is not a pair of positive ints, or an unknown mode.
        """
        wanted_mode = coerce_mode(mode)
        keys = self._check(instruments)
        async with self._lock:
            self._check(())
            new = [k for k in keys if k not in self._wanted]
            cap = self._capacity()
            if len(self._wanted) + len(new) > cap:
                raise SubscriptionLimitError(
                    f"subscribing {len(new)} more instruments would exceed the XTS session's {cap} "
                    f"({len(self._wanted)} already subscribed)"
                )
            previous = {k: self._wanted.get(k) for k in keys}
            for key in keys:
                self._wanted[key] = wanted_mode
            await self._apply(previous)

    async def unsubscribe(self, instruments: Iterable[Key]) -> None:
        """Unsubscribe instruments; instruments that are not subscribed are ignored.

        The instruments are forgotten at once. If the server refuses the request or cannot be reached,
        that is logged (not raised) and the unsubscribe is sent again in the background; their ticks may
        flow until then. Blocks for the REST request.

        Cancellation: the instruments are forgotten whatever the point of cancellation (the request takes
        full effect): a REST request cut short is sent again in the background at once.

        Raises:
            FeedClosedError: the feed is closed or has failed.
            ConfigurationError: an instrument is not a pair of positive ints.
        """
        keys = self._check(instruments)
        async with self._lock:
            self._check(())
            gone = [k for k in keys if k in self._wanted]
            for key in gone:
                del self._wanted[key]
            if gone:
                await self._apply({}, quiet=True)

    async def set_mode(self, mode: Mode | str, instruments: Iterable[Key]) -> None:
        """Change the mode of instruments (instruments not yet subscribed become subscribed).

        Cancellation: as for `subscribe` (all or nothing).

        Raises:
            As `subscribe`.
        """
        await self.subscribe(instruments, mode)

    def statistics(self) -> XtsFeedStatistics:
        """The feed's counters right now. Does not block."""
        now = trio.current_time()
        session = self._session
        return XtsFeedStatistics(
            connected=self._ws is not None,
            subscribed=len(self._wanted),
            frames=self._frames,
            ticks=self._ticks,
            snapshots=self._snapshots,
            decode_errors=self._decode_errors,
            unknown_packets=self._unknown,
            pings_sent=self._pings,
            pongs_received=self._pongs,
            connects=self._state.connects,
            reconnects=self._state.reconnects,
            logins=session.logins,
            rest_requests=session.requests,
            remaining_subscriptions=session.remaining,
            queued_batches=len(self._queue),
            queued_ticks=self._queue.ticks,
            last_frame_age=None if self._last_frame_at is None else now - self._last_frame_at,
        )

    # -----------------------------------------------------------------------------------------------
    # Subscriptions

    def _check(self, instruments: Iterable[Key]) -> list[Key]:
        self._check_open()
        return check_keys(instruments)

    def _capacity(self) -> int:
        return min(self._max_instruments, self._session.capacity)

    async def _apply(self, previous: dict[Key, Mode | None], *, quiet: bool = False) -> None:
        """Bring the session in line with `_wanted` after a user request (lock held). With `quiet`,
        refusals and connection failures are logged rather than raised."""
        if not self._session.logged_in:
            return  # a login is pending: the next connection subscribes everything
        out: list[Event] = []
        try:
            await self._sync(out, strict=True)
        except InvalidTokenError:
            logger.warning("XTS refused the session token on a subscription request; logging in again")
            self._relogin_soon()
        except SubscriptionError as exc:
            if quiet:
                logger.warning("XTS refused an unsubscribe (%s); it is sent again in the background", exc)
                self._resync_soon()
                return
            self._roll_back(previous)
            raise
        except ConnectError as exc:
            if self._ws is None:
                logger.info("XTS subscription request failed (%s); it is sent again at the next sync", exc)
                return
            self._roll_back(previous)
            self._resync_soon()
            if not quiet:
                raise
            logger.info("XTS unsubscribe failed (%s); it is sent again in the background", exc)
        except BaseException:  # cancelled: nothing of the request is kept but what the server confirmed
            self._roll_back(previous)
            self._resync_soon()
            raise
        finally:
            self._deliver(out)

    def _roll_back(self, previous: dict[Key, Mode | None]) -> None:
        """Give instruments their mode from before a request, except where the session confirmed it."""
        held = self._session.subscriptions
        for key, mode in previous.items():
            now = self._wanted.get(key)
            if now is not None and (*key, MODE_TO_CODE[now]) in held:
                continue
            if mode is None:
                self._wanted.pop(key, None)
            else:
                self._wanted[key] = mode

    def _resync_soon(self) -> None:
        """Reconcile the session with `_wanted` in the background (once at a time): after a request that
        was cut short or failed, the server may hold more or less than the record says."""
        nursery = self._nursery
        if nursery is None or self._resync_pending or self._closed:
            return
        self._resync_pending = True
        nursery.start_soon(self._resync)

    async def _resync(self) -> None:
        async with self._lock:
            self._resync_pending = False
            if self._closed or self._ws is None or not self._session.logged_in:
                return  # the next connection syncs everything anyway
            out: list[Event] = []
            try:
                await self._sync(out, strict=False)
            except InvalidTokenError:
                self._relogin_soon()
            except TradingWsError as exc:
                logger.info("XTS background sync failed (%s); it runs again with the next change", exc)
            except Exception:  # a bug must not tear the feed down from a background task
                logger.exception("XTS background sync failed; it runs again with the next change")
            finally:
                self._deliver(out)

    def _relogin_soon(self) -> None:
        self._session.invalidate()
        scope = self._conn_scope
        if scope is not None:
            scope.cancel()

    def _deliver(self, events: list[Event]) -> None:
        if events:
            self._queue.put_nowait(events)

    async def _sync(self, out: list[Event], *, strict: bool) -> None:
        """Subscribe and unsubscribe over REST whatever differs between `_wanted` and the session.

        Snapshots (and live ticks held back meanwhile) are appended to `out`. With `strict`, a refused
        request raises; otherwise its instruments are dropped and reported as a `BrokerError` event.
        Lock held.
        """
        session = self._session
        codes_by_key: dict[Key, list[int]] = {}
        for seg, iid, code in session.subscriptions:
            if code in _FEED_CODES:
                codes_by_key.setdefault((seg, iid), []).append(code)
        # Pairs a request cut short may have subscribed on the server: unsubscribed unless wanted.
        maybe: dict[Key, list[int]] = {}
        for seg, iid, code in self._uncertain:
            if code not in codes_by_key.get((seg, iid), ()):
                maybe.setdefault((seg, iid), []).append(code)
        subs: dict[int, list[Key]] = {}
        unsubs: dict[int, list[Key]] = {}
        for key in [*self._wanted, *(k for k in {**codes_by_key, **maybe} if k not in self._wanted)]:
            mode = self._wanted.get(key)
            want = MODE_TO_CODE[mode] if mode is not None else None
            have = codes_by_key.get(key, [])
            if want is not None and want not in have:
                subs.setdefault(want, []).append(key)
            for code in (*have, *maybe.get(key, ())):
                if code != want:
                    unsubs.setdefault(code, []).append(key)
        if not subs and not unsubs:
            self._uncertain.clear()
            return
        awaiting = self._awaiting
        for code, group in subs.items():
            for key in group:
                awaiting[key] = CODE_TO_MODE[code]
        completed = False
        try:
            if sum(map(len, subs.values())) <= session.remaining:
                await self._subscribe_groups(subs, out, strict)
                await self._unsubscribe_groups(unsubs, strict)
            else:
                await self._unsubscribe_groups(unsubs, strict)
                await self._subscribe_groups(subs, out, strict)
            completed = True
        finally:
            if completed:
                self._uncertain.clear()
            else:  # cut short (or refused): what was on its way may have reached the server
                confirmed = session.subscriptions
                self._uncertain.update(
                    (*key, code)
                    for code, group in subs.items()
                    for key in group
                    if (*key, code) not in confirmed
                )
            for group in subs.values():
                for key in group:
                    awaiting.pop(key, None)
            if self._held:
                held, self._held = self._held, []
                for tick in held:
                    if (tick.segment or 0, tick.instrument_token) in awaiting:
                        self._held.append(tick)
                    else:
                        self._ticks += 1
                        out.append(tick)

    async def _subscribe_groups(self, subs: dict[int, list[Key]], out: list[Event], strict: bool) -> None:
        session = self._session
        for code, group in subs.items():
            try:
                result = await session.subscribe(group, code)
            except SubscriptionError as exc:
                if strict:
                    raise
                for key in group:
                    self._wanted.pop(key, None)
                logger.error("XTS refused to subscribe %d instrument(s) again; dropped: %s", len(group), exc)
                out.append(BrokerError(_XTS, f"dropped {len(group)} instrument(s): {exc}", time.time()))
                continue
            snapshots = list(result.snapshots)
            covered = {(e.segment, e.instrument_token) for e in snapshots if isinstance(e, Tick)}
            missing = [k for k in group if k not in covered]
            if missing:
                # Already subscribed (e-session-0002): no listQuotes. Ask /instruments/quotes instead, so
                # that the instrument still starts with a snapshot (best effort).
                try:
                    snapshots += await session.quotes(missing, code)
                except DecodeError as exc:
                    snapshots += exc.events
                except InvalidTokenError:
                    raise
                except TradingWsError as exc:
                    logger.info("XTS quotes for %d instrument(s) failed: %s", len(missing), exc)
            self._snapshots += len(snapshots)
            self._ticks += len(snapshots)
            out += snapshots

    async def _unsubscribe_groups(self, unsubs: dict[int, list[Key]], strict: bool) -> None:
        for code, group in unsubs.items():
            try:
                await self._session.unsubscribe(group, code)
            except SubscriptionError as exc:
                if strict:
                    raise
                logger.warning("XTS refused to unsubscribe %d instrument(s): %s", len(group), exc)

    # -----------------------------------------------------------------------------------------------
    # The connection loop

    async def _leave(self, deadline: float, logout: bool) -> None:
        """Close the WebSocket (while its reader still runs, so the closing handshake can complete: once
        the service nursery is cancelled, trio-websocket's reader is too, and a close waits in vain) and
        log out, side by side, shielded, both done or abandoned by `deadline`: one bound on the whole
        exit, however the server behaves."""
        ws = self._ws
        session = self._session

        async def log_out() -> None:
            try:
                await session.logout()
            except TradingWsError as exc:
                logger.info("XTS logout on exit failed: %s", self._scrub(str(exc)))

        with trio.CancelScope(shield=True, deadline=deadline):
            async with trio.open_nursery() as nursery:
                if ws is not None:
                    nursery.start_soon(ws.aclose)
                if logout and session.token is not None:
                    nursery.start_soon(log_out)

    # The Connector protocol (see `supervise`)

    def _can_renew(self, error: AuthenticationError) -> bool:
        # A refused token is answered by a new login (with the same keys, or the provider's); a refused
        # login only with a provider; the server's logout never (another login took the session).
        return isinstance(error, InvalidTokenError) or (
            isinstance(error, LoginRefusedError) and self._provider is not None
        )

    async def _renew_credentials(self) -> None:
        """Take fresh keys from the provider (if any) and make the next connection log in.

        Raises:
            AuthenticationError: the provider failed, or gave keys that are not keys.
        """
        if self._provider is not None:
            failure: AuthenticationError | None = None
            try:
                app_key, secret_key = await self._provider()
                self._session.set_credentials(app_key, secret_key)
            except AuthenticationError:
                raise
            except Exception as exc:  # a bug, a ConfigurationError for bad keys, a network error...
                failure = provider_failed("XTS credentials provider", exc, self._scrub)
            if failure is not None:  # raised outside the handler: an unsafe error is not even the context
                raise failure from failure.__cause__
            self._remember(secret_key)
        self._session.invalidate()

    def _scrub(self, text: str) -> str:
        return scrub(text, self._session._secrets())

    def _scrub_events(self, events: list[Event]) -> list[Event]:
        """Events with every server text in them made safe (ticks carry none: they pass as they are)."""
        secrets = self._session._secrets()
        return [event if type(event) is Tick else scrub_event(event, secrets) for event in events]

    def _text(self, data: Any) -> str:
        """A server-provided payload as safe text (secrets out, control characters escaped, capped)."""
        return scrub(_text_of(data), self._session._secrets(), EVENT_TEXT_LIMIT)

    def _resource(self) -> str:
        session = self._session
        query = urlencode(
            {
                "token": session.token or "",
                "userID": session.user_id or "",
                "publishFormat": "JSON",
                "broadcastMode": self._broadcast_mode,
                "transport": "websocket",
                "EIO": "3",
            }
        )
        return f"{session.endpoints.socket.path}?{query}"

    async def _connect_once(self, up: Callable[[], None]) -> NoReturn:
        """One connection: log in if needed, the handshake, the sync, then read until the connection dies
        (see `Connector._connect_once`).

        Raises AuthenticationError (InvalidTokenError for a refused token), or ConnectError
        (ConnectionLost once up).
        """
        session = self._session
        if not session.logged_in:
            await session.login()
            self._remember(session.token)
        if self._limiter is not None:
            await self._limiter.acquire()
        endpoint = session.endpoints.socket
        first = self._state.connects == 0
        try:
            async with open_ws(
                endpoint,
                self._resource(),
                headers=[(b"User-Agent", f"trading-ws/{__version__}".encode())],
                connect_timeout=self._connect_timeout,
                close_timeout=self._close_timeout,
                ssl_context=self._ssl_context,
                scrub=self._scrub,
                connect=self._connect,
            ) as ws:
                opened = await self._handshake(ws)
                logger.info(
                    "XTS connection %d up (%s://%s:%d%s, %s)",
                    self._connection_id,
                    "wss" if endpoint.tls else "ws",
                    endpoint.host,
                    endpoint.port,
                    endpoint.path,
                    self._broadcast_mode,
                )
                relogin_scope = trio.CancelScope()
                try:
                    with relogin_scope:
                        async with open_service_nursery() as nursery:
                            self._conn_scope = relogin_scope
                            self._ws = ws
                            nursery.start_soon(self._ping_loop, ws, opened.ping_interval)
                            now = time.time()
                            events: list[Event] = [Connected(_XTS, self._connection_id, now)]
                            async with self._lock:
                                out: list[Event] = []
                                try:
                                    await self._sync(out, strict=False)
                                except BaseException:
                                    self._deliver(events + out)
                                    raise
                                if self._wanted and not first:
                                    events.append(
                                        Resubscribed(_XTS, self._connection_id, len(self._wanted), now)
                                    )
                                self._deliver(events + out)
                            up()
                            await self._read(ws, opened)
                finally:
                    self._ws = None
                    self._conn_scope = None
                # Reached only when `_relogin_soon` cancelled the connection.
                raise _SessionLost("XTS refused the session token on a REST request")
        except (InvalidTokenError, ConnectionLost, _LoggedOut):
            raise
        except AuthenticationError as exc:
            # HTTP 401/403 at the WebSocket handshake: the token is not (or no longer) good.
            session.invalidate()
            raise InvalidTokenError(f"XTS refused the socket handshake ({exc})") from exc

    async def _handshake(self, ws: trio_websocket.WebSocketConnection) -> OpenPacket:
        """Read the Engine.IO open packet and the Socket.IO connect (``40``)."""
        opened: OpenPacket | None = None
        try:
            with trio.fail_after(self._connect_timeout):
                while True:
                    message = await ws.get_message()
                    self._frames += 1
                    self._last_frame_at = trio.current_time()
                    try:
                        packet = parse_packet(message)
                    except DecodeError as exc:
                        text = self._scrub(str(exc))
                        raise ConnectError(f"malformed Engine.IO handshake: {text}") from None
                    if isinstance(packet, OpenPacket):
                        opened = attrs.evolve(
                            packet,
                            ping_interval=_clamp(
                                packet.ping_interval, PING_INTERVAL_BOUNDS, _DEFAULT_PING_INTERVAL
                            ),
                            ping_timeout=_clamp(
                                packet.ping_timeout, PING_TIMEOUT_BOUNDS, _DEFAULT_PING_INTERVAL
                            ),
                        )
                    elif opened is None:
                        raise ConnectError("XTS did not open an Engine.IO session (no open packet first)")
                    elif isinstance(packet, SioConnect) and packet.namespace == "/":
                        return opened
                    elif isinstance(packet, SioError):
                        raise InvalidTokenError(
                            f"XTS refused the Socket.IO connect: {self._text(packet.data)}"
                        )
                    elif isinstance(packet, (SioDisconnect, EioClose)):
                        raise ConnectError("XTS closed the Socket.IO session during the handshake")
        except trio.TooSlowError:
            raise ConnectTimeout(f"no Socket.IO handshake within {self._connect_timeout} s") from None
        except trio_websocket.ConnectionClosed:
            raise ConnectError("the connection closed during the Socket.IO handshake") from None

    async def _ping_loop(self, ws: trio_websocket.WebSocketConnection, interval: float) -> None:
        """EIO3: the client pings (``2``) every pingInterval."""
        while True:
            await trio.sleep(interval)
            try:
                await ws.send_message("2")
            except trio_websocket.ConnectionClosed:
                return
            self._pings += 1

    def _event(self, packet: SioEvent, received_at: float) -> list[Event]:
        """The model events of one Socket.IO event (market data, ``error``), counting the rest."""
        name = packet.name
        data = packet.args[0] if packet.args else None
        try:
            events = decode_event(name, data, received_at)
        except DecodeError as exc:
            self._decode_errors += 1
            logger.warning(
                "skipping a malformed XTS %s event (%d chars): %s",
                self._scrub(name),
                len(exc.raw),
                self._scrub(str(exc)),
            )
            return list(exc.events)
        if events:
            return events
        if name == "joined":
            logger.debug("XTS socket joined: %s", self._text(data))
        elif name == "error":
            return [BrokerError(_XTS, self._text(data), received_at)]
        elif name == "logout":
            text = self._text(data)
            self._queue.put_nowait([BrokerMessage(_XTS, text, received_at)])
            raise _LoggedOut(f"XTS ended the session (logout event: {text})")
        else:
            self._unknown += 1
            if name not in _MARKET_EVENTS:
                logger.debug("ignoring an unknown XTS event %s", self._scrub(repr(name)))
        return []

    def _hold_back(self, events: list[Event]) -> list[Event]:
        """Keep live ticks of instruments whose subscribe answer (and snapshot) is still on its way."""
        awaiting = self._awaiting
        out: list[Event] = []
        for event in events:
            if (
                type(event) is Tick
                and awaiting.get((event.segment or 0, event.instrument_token)) is event.mode
            ):
                self._held.append(event)
            else:
                out.append(event)
        return out

    async def _read(self, ws: trio_websocket.WebSocketConnection, opened: OpenPacket) -> NoReturn:
        """Read messages until the connection dies; raises ConnectionLost (or _LoggedOut).

        The watchdog is a deadline on the read: some message (a pong, a server ping, or data: a connection
        that delivers data is alive, however late its pong) must arrive within pingInterval + pingTimeout
        + slack (clamped, see `PING_INTERVAL_BOUNDS`) of the previous one. Time spent waiting for a slow
        consumer (a full queue) does not count.
        """
        limit = opened.ping_interval + opened.ping_timeout + self._slack
        alive_at = trio.current_time()
        got_data = False
        watchdog = trio.CancelScope()
        queue = self._queue
        try:
            with watchdog:
                while True:
                    watchdog.deadline = alive_at + limit
                    message = await ws.get_message()
                    now = trio.current_time()
                    alive_at = now
                    self._last_frame_at = now
                    self._frames += 1
                    got_data = True
                    received_at = time.time()
                    try:
                        decoded = decode_message(message, received_at)
                    except DecodeError as exc:
                        self._decode_errors += 1
                        text = self._scrub(str(exc))
                        logger.warning("skipping a malformed XTS message (%d chars): %s", len(message), text)
                        decoded = list(exc.events)
                        if not decoded:
                            continue
                    events: list[Event]
                    if type(decoded) is list:  # the hot path: a market-data event
                        events = decoded
                        if not events:
                            self._unknown += 1  # e.g. a 1504 partial naming no numeric instrument
                            continue
                    elif isinstance(decoded, EioPong):
                        self._pongs += 1
                        continue
                    elif isinstance(decoded, EioPing):  # a server that pings (EIO4 style): answer it
                        await ws.send_message(EioPong(decoded.data).encode())
                        continue
                    elif isinstance(decoded, SioEvent):
                        events = self._event(decoded, received_at)
                    elif isinstance(decoded, SioError):
                        events = [BrokerError(_XTS, self._text(decoded.data), received_at)]
                    elif isinstance(decoded, SioDisconnect) and decoded.namespace == "/":
                        raise ConnectionLost("XTS disconnected the Socket.IO session (41)", got_data)
                    elif isinstance(decoded, EioClose):
                        raise ConnectionLost("XTS closed the Engine.IO session (1)", got_data)
                    elif isinstance(decoded, (SioConnect, SioDisconnect, EioNoop)):
                        continue
                    else:
                        self._unknown += 1
                        continue
                    if len(events) != 1 or type(events[0]) is not Tick:  # not the hot path
                        events = self._scrub_events(events)
                    if events and self._awaiting:
                        events = self._hold_back(events)
                    if events:
                        self._ticks += len(events)
                        if queue.full:
                            watchdog.deadline = math.inf  # a slow consumer is not a dead connection
                            await queue.put(events)
                            alive_at += trio.current_time() - now
                        else:
                            await queue.put(events)  # a schedule point, no wait
        except trio_websocket.ConnectionClosed as exc:
            if self._closed:
                # `_close_socket` is closing it: stay inside `open_ws`, whose reader must see the closing
                # handshake through, until the block's end cancels us.
                await trio.sleep_forever()
            reason = exc.reason
            if reason is None:
                raise ConnectionLost("connection closed", got_data) from None
            detail = f", {self._scrub(reason.reason)}" if reason.reason else ""
            raise ConnectionLost(f"connection closed (code {reason.code}{detail})", got_data) from None
        raise ConnectionLost(
            f"no pong or data for {limit:g} s (pingInterval {opened.ping_interval:g} + pingTimeout "
            f"{opened.ping_timeout:g} + slack {self._slack:g}): connection presumed dead",
            got_data,
        )


@asynccontextmanager
async def open_xts_feed(
    app_key: str,
    secret_key: str,
    *,
    root_url: str,
    broadcast_mode: str = "Full",
    flavour: str = "pro",
    credentials_provider: CredentialsProvider | None = None,
    backoff: Backoff | None = None,
    ping_timeout_slack: float = 5.0,
    connect_timeout: float = 10.0,
    request_timeout: float = 10.0,
    close_timeout: float = 1.0,
    buffer: int = DEFAULT_BUFFER,
    max_instruments: int = MAX_SUBSCRIPTIONS,
    allow_insecure: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    rng: random.Random | None = None,
    connection_id: int = 0,
    rate_limiter: TokenBucket | None = None,
    logout_on_exit: bool = True,
    api_path: str = API_PATH,
    sink: Sink | None = None,
    connect: Connect | None = None,
    http_transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[XtsFeed]:
    """Open one XTS market-data session and its Socket.IO connection until the block ends.

    Entering logs in (REST) and connects the socket (Engine.IO v3 over a WebSocket); both must succeed,
    so bad credentials or a wrong URL fail here. Afterwards the feed pings every pingInterval, reconnects
    by itself with `backoff`, and reports each step as a status event. Leaving the block closes the
    socket and (with `logout_on_exit`) logs out, which frees the session's subscriptions on the server.

    XTS allows one session per appKey: a login elsewhere with the same keys ends this one (and this
    feed's logins end theirs). Run one feed per appKey.

    Args:
        app_key, secret_key: the market-data API keys (never logged or shown).
        root_url: the deployment's root (``https://ttblaze.iifl.com``, the simulator's
            ``http://127.0.0.1:PORT``); REST goes to ``{root}/apimarketdata/...``, the socket to
            ``{root}/apimarketdata/socket.io/``.
        broadcast_mode: ``"Full"`` (JSON events) or ``"Partial"`` (``key:value`` events; only what the
            server sends, so some fields are None or nan).
        flavour: ``"pro"`` (dealer) or ``"client"`` (investor): informational, market data is identical.
        credentials_provider: an async function returning ``(app_key, secret_key)``. When the server
            refuses the token (or the login), it is called once and the feed logs in again; a second
            refusal fails the feed. Without it, a refused token is answered by one new login with the
            same keys, and a refused login fails the feed.
        backoff: reconnect delays (default `Backoff()`).
        ping_timeout_slack: extra seconds on top of pingInterval + pingTimeout before a connection
            without pongs is presumed dead.
        connect_timeout: limit for the TCP connect and WebSocket + Socket.IO handshake, each attempt.
        request_timeout: limit for each REST request.
        close_timeout: limit for the closing handshake, and for the logout on exit.
        buffer: how many events (ticks) may wait for the consumer before the feed stops reading the socket
            (backpressure; a message is never split, so the bound is `buffer` events plus one message).
            Snapshots and status events are queued even when it is full.
        max_instruments: instruments allowed (XTS: 50 per session; lowered if the server says so).
        allow_insecure: allow plain ``http://`` to a non-loopback host.
        ssl_context: TLS settings for REST and the socket (default: the system's trust store).
            Certificates are always verified; for a private CA,
            ``ssl.create_default_context(cafile="ca.pem")``.
        rng: the random source of the backoff jitter.
        connection_id: the index reported in status events.
        rate_limiter: a token bucket every REST request and connection attempt takes a token from.
        logout_on_exit: log out when the block ends.
        api_path: the route prefix (``/apimarketdata``).
        sink: a plain function to call with every batch, in order, instead of queueing it for
            `XtsFeed.receive_batch` (which then only waits for the feed to end and raises how it ended). It is
            called from the feed's reader task, and from the task that calls `XtsFeed.subscribe` for the
            snapshots of the answer. For a consumer that never blocks, such as the manager's router: it spares
            one task hop per message. It must not block. An exception it raises ends the hand-off: later
            batches are dropped and `receive_batch` raises that exception.
        connect: how each Socket.IO connection's byte stream is opened (see
            `trading_ws._transport.Connect`): an async function ``(host, port) -> trio.abc.Stream``, called
            once per attempt with the root URL's host and port; default None, a TCP connection. The feed
            does everything above that stream itself (TLS for ``https://`` roots, verified with
            `ssl_context`; the WebSocket and Engine.IO handshakes; the error mapping and scrubbing).
        http_transport: the httpx transport of the REST session (login, subscriptions, logout); default
            None, httpx's own connection pool over TCP (and TLS, verified with `ssl_context`). Requests,
            answers, deadlines, the mapping of errors and the scrubbing of secrets are the same whatever
            the transport.

    With both, the feed runs with no socket at all (the test seam): `connect` returns one end of
    ``trio.testing.memory_stream_pair()`` whose other end a test serves (``trio_websocket.
    wrap_server_stream``, then the Engine.IO open packet and ``40``), and `http_transport` is an
    ``httpx.MockTransport`` answering the REST routes, all under ``autojump_clock``.

    After the first connection, every failure is a failed attempt (backoff, then a new one), whatever
    raised it — a refused or malformed handshake, a reset, a TLS error, a silent server — except refused
    credentials (after one renewal) and the server's ``logout``, which end the feed. Leaving the block
    takes at most `close_timeout`, however the server behaves.

    Raises:
        AuthenticationError: the credentials were refused (`LoginRefusedError`), or the token was
            refused again after one new login (`InvalidTokenError`).
        TLSError: TLS failed at the login or on the first connection (an untrusted, expired or wrong-host
            certificate, a server that does not speak TLS), at once; the `ssl.SSLError` is kept as
            ``__cause__``.
        RateLimitedError, ConnectTimeout, ConnectError: the first connection could not be made (a
            malformed handshake answer included); the cause is kept as ``__cause__``.
        ConfigurationError: invalid arguments (a non-loopback ``http://`` URL, empty keys, an unknown
            broadcast mode or flavour, a duration that is not a positive finite number, a `connect` that is
            not callable or an `http_transport` that is not an ``httpx.AsyncBaseTransport``...).
    """
    check_seconds("request_timeout", request_timeout)
    check_flag("logout_on_exit", logout_on_exit)
    check_instance("http_transport", http_transport, httpx.AsyncBaseTransport, optional=True)
    session = XtsSession(
        app_key,
        secret_key,
        root_url=root_url,
        allow_insecure=allow_insecure,
        ssl_context=ssl_context,
        timeout=request_timeout,
        max_subscriptions=max_instruments,
        api_path=api_path,
        rate_limiter=rate_limiter,
        transport=http_transport,
    )
    feed = XtsFeed(
        session=session,
        broadcast_mode=broadcast_mode,
        flavour=flavour,
        credentials_provider=credentials_provider,
        backoff=backoff if backoff is not None else Backoff(),
        ping_timeout_slack=ping_timeout_slack,
        connect_timeout=connect_timeout,
        close_timeout=close_timeout,
        buffer=buffer,
        max_instruments=max_instruments,
        ssl_context=ssl_context,
        rng=rng,
        connection_id=connection_id,
        rate_limiter=rate_limiter,
        sink=sink,
        connect=connect,
    )
    feed._remember(secret_key)
    async with session:
        left = False

        async def leave() -> None:
            nonlocal left
            left = True
            await feed._leave(trio.current_time() + close_timeout, logout_on_exit)

        try:
            async with run_feed(feed, leave) as running:
                yield running
        finally:
            feed._closed = True
            if feed._failure is None:
                feed._queue.close(discard=True)
            if not left:  # the open failed: still log out of a session it may have made
                await feed._leave(trio.current_time() + close_timeout, logout_on_exit)
