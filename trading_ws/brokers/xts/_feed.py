"""The reconnecting XTS market-data feed: one REST session and one Socket.IO (Engine.IO v3) WebSocket,
owned by an ``async with`` block.

How a message travels: the WebSocket's reader (trio-websocket) -> `XtsSocket.read` parses the Engine.IO /
Socket.IO packet and decodes its market event with the sans-IO codec into one list -> one batch per
message into a bounded queue -> the consumer's ``async for`` hands the list out event by event.

Subscriptions are REST calls (``POST``/``PUT /instruments/subscription``) and belong to the session (the
token), not to the socket (xts-protocol.md section 3.6): after a plain socket reconnect with the same token
ticks resume without any REST call; after a new login (the token was refused by REST or at the socket
handshake) everything is subscribed again. The ``listQuotes`` snapshots of a subscribe are delivered as
the first ticks of their instruments: live ticks that overtake the REST answer are held back until the
snapshot is queued.

Module map: this module holds the feed (its public API, the connection attempt the reconnect supervisor
runs, `open_xts_feed`); `._socket` one Socket.IO connection (the Engine.IO handshake, pings, the reader);
`._subscriptions` the subscription record and its reconciliation with the REST session; `._rest` the
session.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Final, NoReturn
from urllib.parse import urlencode

import attrs
import httpx
import trio

from ..._backoff import Backoff
from ..._errors import (
    AuthenticationError,
    ConfigurationError,
    SubscriptionLimitError,
    TradingWsError,
)
from ..._model import (
    Broker,
    Connected,
    Event,
    Mode,
    Resubscribed,
    coerce_mode,
)
from ..._ratelimit import TokenBucket
from ..._scrub import scrub
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
from ._api import API_PATH, MAX_SUBSCRIPTIONS, InvalidTokenError, Key, LoginRefusedError, check_keys
from ._rest import CredentialsProvider, XtsSession
from ._socket import PING_INTERVAL_BOUNDS, PING_TIMEOUT_BOUNDS, LoggedOut, SocketCounters, XtsSocket
from ._subscriptions import SubscriptionBook

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
#: The default `buffer`: events waiting for the consumer before the feed stops reading the socket.
DEFAULT_BUFFER: Final = 20_000


class _SessionLost(InvalidTokenError):
    """A REST call found the token refused while the socket was up: log in again (once)."""


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
        self._init_feed(buffer, sink, backoff=backoff, rng=rng, connection_id=connection_id)
        self._book = SubscriptionBook(session, self)
        self._conn_scope: trio.CancelScope | None = None
        self._counters = SocketCounters()

    def __repr__(self) -> str:
        state = "connected" if self._ws is not None else "closed" if self._closed else "disconnected"
        return (
            f"<XtsFeed {state} root={self._session.endpoints.rest!r} app_key={self._session.app_key!r} "
            f"flavour={self._flavour} broadcast={self._broadcast_mode} subscribed={len(self._book.wanted)}>"
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
        return dict(self._book.wanted)

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
        book = self._book
        async with book.lock:
            self._check(())
            wanted = book.wanted
            new = [k for k in keys if k not in wanted]
            cap = self._capacity()
            if len(wanted) + len(new) > cap:
                raise SubscriptionLimitError(
                    f"subscribing {len(new)} more instruments would exceed the XTS session's {cap} "
                    f"({len(wanted)} already subscribed)"
                )
            previous = {k: wanted.get(k) for k in keys}
            for key in keys:
                wanted[key] = wanted_mode
            await book.apply(previous)

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
        book = self._book
        async with book.lock:
            self._check(())
            gone = [k for k in keys if k in book.wanted]
            for key in gone:
                del book.wanted[key]
            if gone:
                await book.apply({}, quiet=True)

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
        counters = self._counters
        last = counters.last_frame_at
        return XtsFeedStatistics(
            connected=self._ws is not None,
            subscribed=len(self._book.wanted),
            frames=counters.frames,
            ticks=counters.ticks + self._book.ticks,
            snapshots=self._book.snapshots,
            decode_errors=counters.decode_errors,
            unknown_packets=counters.unknown,
            pings_sent=counters.pings,
            pongs_received=counters.pongs,
            connects=self._state.connects,
            reconnects=self._state.reconnects,
            logins=session.logins,
            rest_requests=session.requests,
            remaining_subscriptions=session.remaining,
            queued_batches=len(self._queue),
            queued_ticks=self._queue.ticks,
            last_frame_age=None if last is None else now - last,
        )

    # -----------------------------------------------------------------------------------------------
    # Subscriptions

    def _check(self, instruments: Iterable[Key]) -> list[Key]:
        self._check_open()
        return check_keys(instruments)

    def _capacity(self) -> int:
        return min(self._max_instruments, self._session.capacity)

    def _relogin_soon(self) -> None:
        self._session.invalidate()
        scope = self._conn_scope
        if scope is not None:
            scope.cancel()

    def _deliver(self, events: list[Event]) -> None:
        if events:
            self._queue.put_nowait(events)

    # -----------------------------------------------------------------------------------------------
    # The connection loop

    async def _leave(self, deadline: float, logout: bool) -> None:
        """Close the WebSocket (while its reader still runs, so the closing handshake can complete: once
        the service nursery is cancelled, trio-websocket's reader is too, and a close waits in vain) and
        log out, side by side, shielded, both done or abandoned by `deadline`: one bound on the whole
        exit, however the server behaves.

        When the feed is being cancelled (the manager leaving, or the caller's scope), the reader is
        cancelled as well and nobody would read the server's close reply: the polite close is skipped
        (the socket itself is closed by the transport in every case) and only the logout runs."""
        ws = self._ws if trio.current_effective_deadline() != -math.inf else None
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
                socket = XtsSocket(ws, self, self._counters, handshake_timeout=self._connect_timeout)
                opened = await socket.handshake()
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
                            nursery.start_soon(socket.ping_loop, opened.ping_interval)
                            now = time.time()
                            events: list[Event] = [Connected(_XTS, self._connection_id, now)]
                            book = self._book
                            async with book.lock:
                                out: list[Event] = []
                                try:
                                    await book.sync(out, strict=False)
                                except BaseException:
                                    self._deliver(events + out)
                                    raise
                                if book.wanted and not first:
                                    events.append(
                                        Resubscribed(_XTS, self._connection_id, len(book.wanted), now)
                                    )
                                self._deliver(events + out)
                            up()
                            await socket.read(opened, self._slack)
                finally:
                    self._ws = None
                    self._conn_scope = None
                # Reached only when `_relogin_soon` cancelled the connection.
                raise _SessionLost("XTS refused the session token on a REST request")
        except (InvalidTokenError, ConnectionLost, LoggedOut):
            raise
        except AuthenticationError as exc:
            # HTTP 401/403 at the WebSocket handshake: the token is not (or no longer) good.
            session.invalidate()
            raise InvalidTokenError(f"XTS refused the socket handshake ({exc})") from exc


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
