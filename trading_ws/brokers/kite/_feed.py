"""The reconnecting Kite feed: one WebSocket connection, owned by an ``async with`` block.

How a frame travels: the connection's reader (trio-websocket) -> `KiteFeed._read` decodes the whole frame
with the sans-IO codec into one list -> one hand-off per frame to a bounded `BatchQueue` (or to a sink)
-> the consumer's ``async for`` hands the list out event by event. One trio checkpoint per frame, not
per tick.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Final, NoReturn
from urllib.parse import urlencode

import attrs
import trio
import trio_websocket

from ..._backoff import Backoff
from ..._errors import (
    AuthenticationError,
    ConfigurationError,
    DecodeError,
    SubscriptionLimitError,
)
from ..._model import Broker, Connected, Mode, Resubscribed, coerce_mode
from ..._ratelimit import TokenBucket
from ..._scrub import scrub, scrub_event
from ..._transport import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Connect,
    check_connect,
    open_ws,
    parse_ws_url,
    redact_url,
)
from ..._validate import (
    check_callable,
    check_credential,
    check_flag,
    check_instance,
    check_int,
    check_seconds,
    check_ssl_context,
)
from ..._version import __version__
from .._queue import BatchFeed, Sink, run_feed
from .._reconnect import ConnectionLost, provider_failed
from ._codec import decode_frame, encode_control

__all__ = [
    "DEFAULT_BUFFER",
    "KITE_WS_URL",
    "MAX_INSTRUMENTS_PER_CONNECTION",
    "KiteFeed",
    "KiteFeedStatistics",
    "open_kite_feed",
]

logger = logging.getLogger("trading_ws.kite")

#: The production ticker's root URL.
KITE_WS_URL: Final = "wss://ws.kite.trade"
#: The default `buffer` of a standalone feed: events waiting for the consumer before the feed stops reading.
DEFAULT_BUFFER: Final = 20_000
#: Kite's documented limit of instruments per WebSocket connection.
MAX_INSTRUMENTS_PER_CONNECTION: Final = 3000

TokenProvider = Callable[[], Awaitable[str]]


@attrs.frozen
class KiteFeedStatistics:
    """A snapshot of one feed's counters (see `KiteFeed.statistics`)."""

    connected: bool
    """Whether the WebSocket is up right now."""
    subscribed: int
    """Instruments currently subscribed (what a reconnect will subscribe again)."""
    frames: int
    """Binary and text messages received, heartbeats included."""
    heartbeats: int
    ticks: int
    decode_errors: int
    """Malformed messages (counted, logged, and skipped; their good packets are still delivered)."""
    connects: int
    """Successful WebSocket handshakes (the first one included)."""
    reconnects: int
    """Connections lost after being established."""
    queued_batches: int
    """Batches waiting for the consumer."""
    queued_ticks: int
    """Events in those batches (bounded by the feed's `buffer`)."""
    oversized_messages: int
    """Connections closed (code 1009) because a message exceeded ``max_message_size``."""
    last_frame_age: float | None
    """Seconds since the last message of any kind (trio clock), or None before the first."""


class KiteFeed(BatchFeed):
    """One Kite WebSocket connection that reconnects by itself; create it with `open_kite_feed`.

    Iterate it (``async for event in feed``) to receive `Tick` objects, text events (`OrderUpdate`,
    `BrokerMessage`, `BrokerError`) and status events (`Connected`, `Disconnected`, `Reconnecting`,
    `Resubscribed`) in the order they happened. If the feed fails for good (credentials refused with no
    way to renew them, or `Backoff.max_attempts` exhausted), the iterator raises that error.
    """

    _feed_name = "Kite"
    _broker = Broker.KITE
    _log = logger

    def __init__(
        self,
        *,
        api_key: str,
        access_token: str,
        url: str,
        token_provider: TokenProvider | None,
        backoff: Backoff,
        watchdog_timeout: float,
        connect_timeout: float,
        close_timeout: float,
        buffer: int,
        max_instruments: int,
        allow_insecure: bool,
        ssl_context: ssl.SSLContext | None,
        rng: random.Random | None,
        connection_id: int,
        rate_limiter: TokenBucket | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        sink: Sink | None = None,
        connect: Connect | None = None,
    ) -> None:
        check_credential("api_key", api_key)
        check_credential("access_token", access_token)
        for name, value in (
            ("watchdog_timeout", watchdog_timeout),
            ("connect_timeout", connect_timeout),
            ("close_timeout", close_timeout),
        ):
            check_seconds(name, value)
        check_int("buffer", buffer, 1)
        check_int("max_instruments", max_instruments, 1, 65535)
        check_int("max_message_size", max_message_size, 1024)
        check_int("connection_id", connection_id, 0)
        check_instance("backoff", backoff, Backoff)
        check_callable("token_provider", token_provider)
        check_flag("allow_insecure", allow_insecure)
        check_ssl_context("ssl_context", ssl_context)
        check_instance("rng", rng, random.Random, optional=True)
        check_instance("rate_limiter", rate_limiter, TokenBucket, optional=True)
        check_callable("sink", sink)
        check_connect("connect", connect)
        self._endpoint = parse_ws_url(url, allow_insecure=allow_insecure)
        self._url = url
        self._api_key = api_key
        self._access_token = access_token
        self._token_provider = token_provider
        self._watchdog_timeout = watchdog_timeout
        self._connect_timeout = connect_timeout
        self._close_timeout = close_timeout
        self._max_instruments = max_instruments
        self._ssl_context = ssl_context
        self._limiter = rate_limiter
        self._max_message_size = max_message_size
        self._connect = connect
        self._oversized = 0
        self._modes: dict[int, Mode] = {}
        self._conn_scope: trio.CancelScope | None = None
        self._send_lock = trio.StrictFIFOLock()
        self._init_feed(buffer, sink, backoff=backoff, rng=rng, connection_id=connection_id)
        self._frames = self._heartbeats = self._ticks = self._decode_errors = 0
        self._last_frame_at: float | None = None

    def __repr__(self) -> str:
        state = "connected" if self._ws is not None else "closed" if self._closed else "disconnected"
        return (
            f"<KiteFeed {state} url={redact_url(self._url)!r} api_key={self._api_key!r} "
            f"subscribed={len(self._modes)}>"
        )

    # -----------------------------------------------------------------------------------------------
    # Public API

    @property
    def subscriptions(self) -> dict[int, Mode]:
        """A copy of the subscribed instrument tokens and their modes."""
        return dict(self._modes)

    async def subscribe(self, tokens: Iterable[int], mode: Mode | str = Mode.QUOTE) -> None:
        """Subscribe instrument tokens in `mode` (default QUOTE, the broker's own default).

        `mode` is a `Mode` or its string value (``"ltp"``, ``"quote"``, ``"full"``). Tokens already
        subscribed move to `mode`. While disconnected, the request is recorded and sent on the next
        connection. Blocks while another request is being written and while the rate limiter (if any)
        paces requests.

        Cancellation: all or nothing. A cancellation while waiting for the send lock or the rate limiter
        leaves nothing recorded and nothing sent. Once the request is being written it is seen through
        (shielded, at most `watchdog_timeout` seconds; a broker that does not take it in that time is
        presumed dead and the connection is replaced, which sends the request again), then the
        cancellation is raised with the request in effect.

        Raises:
            SubscriptionLimitError: the feed would hold more than its instrument limit (3000 by default);
                nothing is subscribed then.
            FeedClosedError: the feed is closed or has failed.
            ConfigurationError: a token is not an unsigned 32-bit integer, or `mode` is not a mode;
                nothing is recorded or sent.
        """
        mode = coerce_mode(mode)
        wanted = self._check_tokens(tokens)
        async with self._send_lock:
            self._check_open()
            new = [t for t in wanted if t not in self._modes]
            if len(self._modes) + len(new) > self._max_instruments:
                raise SubscriptionLimitError(
                    f"subscribing {len(new)} more instruments would exceed {self._max_instruments} per "
                    f"connection ({len(self._modes)} already subscribed)"
                )

            def record() -> None:
                for token in wanted:
                    self._modes[token] = mode

            await self._send_requests([("subscribe", wanted, None), ("mode", wanted, mode)], record)

    async def unsubscribe(self, tokens: Iterable[int]) -> None:
        """Unsubscribe instrument tokens; tokens that are not subscribed are ignored.

        Cancellation: all or nothing, as for `subscribe`.

        Raises:
            FeedClosedError: the feed is closed or has failed.
            ConfigurationError: a token is not an unsigned 32-bit integer.
        """
        requested = self._check_tokens(tokens)
        async with self._send_lock:
            self._check_open()
            gone = [t for t in requested if t in self._modes]
            if not gone:
                return

            def record() -> None:
                for token in gone:
                    del self._modes[token]

            await self._send_requests([("unsubscribe", gone, None)], record)

    async def set_mode(self, mode: Mode | str, tokens: Iterable[int]) -> None:
        """Change the mode of instrument tokens (a token not yet subscribed becomes subscribed, as on Kite).

        Cancellation: all or nothing, as for `subscribe`.

        Raises:
            As `subscribe`.
        """
        await self.subscribe(tokens, mode)

    def statistics(self) -> KiteFeedStatistics:
        """The feed's counters right now. Does not block."""
        now = trio.current_time()
        return KiteFeedStatistics(
            connected=self._ws is not None,
            subscribed=len(self._modes),
            frames=self._frames,
            heartbeats=self._heartbeats,
            ticks=self._ticks,
            decode_errors=self._decode_errors,
            connects=self._state.connects,
            reconnects=self._state.reconnects,
            queued_batches=len(self._queue),
            queued_ticks=self._queue.ticks,
            oversized_messages=self._oversized,
            last_frame_age=None if self._last_frame_at is None else now - self._last_frame_at,
        )

    # -----------------------------------------------------------------------------------------------
    # Internals

    def _check_tokens(self, tokens: Iterable[int]) -> list[int]:
        self._check_open()
        if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Iterable):
            raise ConfigurationError(f"tokens must be an iterable of ints, got {type(tokens).__name__}")
        items = list(tokens)
        for token in items:  # checked before hashing: a list or a dict is refused, not a TypeError
            if type(token) is not int or not 0 <= token <= 0xFFFFFFFF:
                raise ConfigurationError(
                    f"instrument token must be an unsigned 32-bit int, got {token!r:.40}"
                )
        return list(dict.fromkeys(items))

    async def _send_requests(
        self, requests: list[tuple[str, list[int], Mode | None]], record: Callable[[], None]
    ) -> None:
        """Record a request and send it, all or nothing (the caller holds the send lock).

        The rate limiter is waited for first (a cancellation there leaves nothing done); then `record`
        runs and the messages are written shielded, within `watchdog_timeout`. While disconnected only
        `record` runs: the next connection sends everything recorded.
        """
        messages = [encode_control(action, tokens, mode) for action, tokens, mode in requests if tokens]
        if self._ws is not None and self._limiter is not None:
            for _ in messages:
                await self._limiter.acquire()
        record()
        ws = self._ws
        if ws is not None and messages:
            with trio.CancelScope(shield=True):
                await self._write(ws, messages)

    async def _write(self, ws: trio_websocket.WebSocketConnection, messages: list[str]) -> None:
        """Write control messages on `ws`; a broker that does not take them in time loses the connection."""
        with trio.move_on_after(self._watchdog_timeout) as scope:
            try:
                for message in messages:
                    await ws.send_message(message)
            except trio_websocket.ConnectionClosed:
                logger.debug("connection closed while sending a request; it is replayed on reconnect")
                return
        if scope.cancelled_caught and self._conn_scope is not None and self._ws is ws:
            logger.warning("Kite connection %d did not take a request in time", self._connection_id)
            self._conn_scope.cancel()

    def _resource(self) -> str:
        query = urlencode({"api_key": self._api_key, "access_token": self._access_token})
        return f"{self._endpoint.path}?{query}"

    # The Connector protocol (see `supervise`)

    def _can_renew(self, error: AuthenticationError) -> bool:
        return self._token_provider is not None

    async def _renew_credentials(self) -> None:
        provider = self._token_provider
        assert provider is not None
        failure: AuthenticationError | None = None
        try:
            token = await provider()
        except AuthenticationError:
            raise
        except Exception as exc:
            failure = provider_failed("token provider", exc, self._scrub)
        if failure is not None:  # raised outside the handler: an unsafe error is not even the context
            raise failure from failure.__cause__
        if not isinstance(token, str) or not token or not token.isprintable() or not token.isascii():
            raise AuthenticationError("the token provider returned no usable access token")
        self._remember(token)
        self._access_token = token

    def _scrub(self, text: str) -> str:
        return scrub(text, (self._access_token,))

    async def _connect_once(self, up: Callable[[], None]) -> NoReturn:
        """One connection, from handshake to loss (see `Connector._connect_once`)."""
        if self._limiter is not None:
            await self._limiter.acquire()
        first = self._state.connects == 0
        async with open_ws(
            self._endpoint,
            self._resource(),
            headers=[(b"X-Kite-Version", b"3"), (b"User-Agent", f"trading-ws/{__version__}".encode())],
            connect_timeout=self._connect_timeout,
            close_timeout=self._close_timeout,
            max_message_size=self._max_message_size,
            ssl_context=self._ssl_context,
            scrub=self._scrub,
            connect=self._connect,
        ) as ws:
            try:
                with trio.CancelScope() as self._conn_scope:
                    logger.info("Kite connection %d up (%s)", self._connection_id, redact_url(self._url))
                    async with self._send_lock:
                        self._ws = ws
                        resubscribed = len(self._modes)
                        by_mode: dict[Mode, list[int]] = {}
                        for token, mode in self._modes.items():
                            by_mode.setdefault(mode, []).append(token)
                        messages = [
                            encode_control(action, tokens, action_mode)
                            for mode, tokens in by_mode.items()
                            for action, action_mode in (("subscribe", None), ("mode", mode))
                        ]
                        for message in messages:
                            if self._limiter is not None:
                                await self._limiter.acquire()
                            await self._write(ws, [message])
                    up()
                    now = time.time()
                    self._emit(Connected(Broker.KITE, self._connection_id, now))
                    if not first and resubscribed:
                        self._emit(Resubscribed(Broker.KITE, self._connection_id, resubscribed, now))
                    await self._read(ws)
            finally:
                self._ws = None
                self._conn_scope = None
            # Reached only when `_write` gave up on a request the broker did not take.
            raise ConnectionLost(
                f"the broker did not take a request within {self._watchdog_timeout} s", got_data=False
            )

    async def _read(self, ws: trio_websocket.WebSocketConnection) -> NoReturn:
        """Read frames until the connection dies; raises ConnectionLost."""
        got_data = False
        watchdog = trio.CancelScope()
        queue = self._queue
        timeout = self._watchdog_timeout
        try:
            with watchdog:
                while True:
                    watchdog.deadline = trio.current_time() + timeout
                    message = await ws.get_message()
                    watchdog.deadline = math.inf  # a slow consumer is not a dead connection
                    self._last_frame_at = trio.current_time()
                    got_data = True
                    self._frames += 1
                    try:
                        events = decode_frame(message)
                    except DecodeError as exc:
                        self._decode_errors += 1
                        text = self._scrub(str(exc))
                        logger.warning("skipping a malformed Kite message (%d bytes): %s", len(exc.raw), text)
                        events = list(exc.events)
                    if type(message) is str and events:
                        secrets = (self._access_token,)
                        events = [scrub_event(event, secrets) for event in events]
                    if events:
                        self._ticks += len(events)
                        await queue.put(events)  # the watchdog is off: a slow consumer is not silence
                    elif len(message) < 2:
                        self._heartbeats += 1
        except trio_websocket.ConnectionClosed as exc:
            reason = exc.reason
            if reason is None:
                raise ConnectionLost("connection closed", got_data) from None
            if reason.code == 1009:
                self._oversized += 1
                logger.warning(
                    "a Kite message exceeded %d bytes; connection closed (1009)", self._max_message_size
                )
            detail = f", {self._scrub(reason.reason)}" if reason.reason else ""
            raise ConnectionLost(f"connection closed (code {reason.code}{detail})", got_data) from None
        raise ConnectionLost(f"no data for {timeout:g} s: connection presumed dead", got_data)


@asynccontextmanager
async def open_kite_feed(
    api_key: str,
    access_token: str,
    *,
    url: str = KITE_WS_URL,
    token_provider: TokenProvider | None = None,
    backoff: Backoff | None = None,
    watchdog_timeout: float = 5.0,
    connect_timeout: float = 10.0,
    close_timeout: float = 0.5,
    buffer: int = DEFAULT_BUFFER,
    max_instruments: int = MAX_INSTRUMENTS_PER_CONNECTION,
    allow_insecure: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    rng: random.Random | None = None,
    connection_id: int = 0,
    rate_limiter: TokenBucket | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    sink: Sink | None = None,
    connect: Connect | None = None,
) -> AsyncIterator[KiteFeed]:
    """Open one Kite ticker connection and keep it alive until the block ends.

    Entering connects (the first handshake must succeed, so bad credentials or a wrong URL fail here);
    afterwards the feed reconnects by itself with `backoff`, subscribes every instrument again in its
    mode, and reports each step as a status event. A connection that sends nothing at all (not even the
    broker's one-second heartbeat) for `watchdog_timeout` seconds is treated as dead.

    Args:
        api_key: the Kite Connect app's api_key.
        access_token: the day's access token. Never logged or shown in reprs and errors.
        url: the ticker's root URL (``wss://ws.kite.trade``; a simulator's ``ws://127.0.0.1:PORT``).
        token_provider: an async function returning a fresh access token. When the broker refuses the
            token (HTTP 403), it is called once and the connection retried; a second refusal fails the
            feed with `AuthenticationError`. Without a provider the first refusal fails the feed.
        backoff: reconnect delays (default `Backoff()`: 0.5 s doubling to 30 s, 20 % jitter, forever).
        watchdog_timeout: seconds of silence after which the connection is presumed dead.
        connect_timeout: limit for the TCP connect and WebSocket handshake, each attempt.
        close_timeout: limit for the closing handshake when a connection ends.
        buffer: how many events (ticks) may wait for the consumer; when that many wait, the feed stops
            reading the socket (backpressure: the broker's frames wait in the kernel and, at most
            `MESSAGE_QUEUE_SIZE` of them, in the WebSocket's queue) and its watchdog does not count that
            time as silence. One frame is never split, so the hard bound is `buffer` ticks plus one frame;
            status events are queued even when it is full (a few per reconnect). A consumer that does not
            read therefore holds at most about `buffer` decoded ticks plus
            ``MESSAGE_QUEUE_SIZE * max_message_size`` bytes.
        max_instruments: instruments allowed on this connection (Kite: 3000).
        allow_insecure: allow plain ``ws://`` to a non-loopback host.
        ssl_context: TLS settings for ``wss://`` (default: the system's trust store). Certificates are
            always verified; for a private CA, ``ssl.create_default_context(cafile="ca.pem")``.
        rng: the random source of the backoff jitter (seed it for reproducible runs).
        connection_id: the index reported in status events.
        rate_limiter: a token bucket shared with other connections to the same broker; every control
            message and every connection attempt takes a token from it.
        max_message_size: the largest WebSocket message accepted; a larger one closes the connection
            with code 1009 (counted in ``statistics().oversized_messages``) and the feed reconnects.
            A full frame of 3000 full packets is about 560 KB.
        sink: a plain function to call with every batch, in order, instead of queueing it for
            `KiteFeed.receive_batch` (which then only waits for the feed to end and raises how it ended). It
            is called from the feed's reader task. For a consumer that never blocks, such as the manager's
            router: it spares one task hop per frame. It must not block. An exception it raises ends the
            hand-off: later batches are dropped and `receive_batch` raises that exception.
        connect: how each connection's byte stream is opened (see `trading_ws._transport.Connect`): an
            async function ``(host, port) -> trio.abc.Stream``, called once per attempt with the URL's host
            and port; default None, a TCP connection. The feed does everything above that stream itself:
            TLS for ``wss://`` (handshake first, verified with `ssl_context`), the WebSocket handshake, the
            error mapping, the scrubbing of secrets. The test seam: return one end of
            ``trio.testing.memory_stream_pair()`` and serve the other (``trio_websocket.wrap_server_stream``
            then ``request.accept()``, or a scripted peer), and the feed runs with no socket, under
            ``autojump_clock``.

    After the first connection, every failure is a failed attempt (backoff, then a new one), whatever
    raised it — a refused or malformed handshake, a reset, a TLS error, a silent broker — except refused
    credentials, which end the feed (after one renewal, with a provider). See `supervise`.

    Raises:
        AuthenticationError: the credentials were refused (after one renewal, with a provider).
        RateLimitedError: the broker refused the connection with HTTP 429.
        TLSError: TLS failed on the first connection (an untrusted, expired or wrong-host certificate, a
            server that does not speak TLS), at once; the `ssl.SSLError` is kept as ``__cause__``.
        ConnectTimeout, ConnectError: the first connection could not be made (a malformed handshake
            answer included); the cause is kept as ``__cause__``.
        ConfigurationError: invalid arguments (a non-loopback ``ws://`` URL, empty credentials, a
            duration that is not a positive finite number, a `connect` that is not callable, or one that
            returned something other than a trio Stream on the first connection).
    """
    feed = KiteFeed(
        api_key=api_key,
        access_token=access_token,
        url=url,
        token_provider=token_provider,
        backoff=backoff if backoff is not None else Backoff(),
        watchdog_timeout=watchdog_timeout,
        connect_timeout=connect_timeout,
        close_timeout=close_timeout,
        buffer=buffer,
        max_instruments=max_instruments,
        allow_insecure=allow_insecure,
        ssl_context=ssl_context,
        rng=rng,
        connection_id=connection_id,
        rate_limiter=rate_limiter,
        max_message_size=max_message_size,
        sink=sink,
        connect=connect,
    )
    feed._remember(access_token)
    async with run_feed(feed) as running:
        yield running
