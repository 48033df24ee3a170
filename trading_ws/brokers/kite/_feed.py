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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
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
    ConnectError,
    DecodeError,
    SubscriptionLimitError,
)
from ..._model import Broker, Connected, Disconnected, Event, Mode, Reconnecting, Resubscribed
from ..._ratelimit import TokenBucket
from ..._transport import open_service_nursery, open_ws, parse_ws_url, redact_url
from ..._version import __version__
from .._queue import BatchFeed, Sink
from ._codec import decode_frame, encode_control

__all__ = [
    "KITE_WS_URL",
    "MAX_INSTRUMENTS_PER_CONNECTION",
    "KiteFeed",
    "KiteFeedStatistics",
    "open_kite_feed",
]

logger = logging.getLogger("trading_ws.kite")

KITE_WS_URL: Final = "wss://ws.kite.trade"
#: Kite's documented limit of instruments per WebSocket connection.
MAX_INSTRUMENTS_PER_CONNECTION: Final = 3000

TokenProvider = Callable[[], Awaitable[str]]


class _ConnectionLost(ConnectError):
    """An established connection ended; `got_data` says whether it carried anything (resets backoff)."""

    def __init__(self, reason: str, got_data: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.got_data = got_data


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
        max_message_size: int = 4 * 1024 * 1024,
        sink: Sink | None = None,
    ) -> None:
        if not api_key or not access_token:
            raise ConfigurationError("api_key and access_token must not be empty")
        if not (watchdog_timeout > 0 and connect_timeout > 0 and close_timeout > 0):
            raise ConfigurationError("watchdog_timeout, connect_timeout and close_timeout must be > 0")
        if buffer < 1:
            raise ConfigurationError("buffer must be at least 1 batch")
        if not 1 <= max_instruments <= 65535:
            raise ConfigurationError("max_instruments must be in 1..65535")
        self._endpoint = parse_ws_url(url, allow_insecure=allow_insecure)
        self._url = url
        self._api_key = api_key
        self._access_token = access_token
        self._token_provider = token_provider
        self._backoff = backoff
        self._watchdog_timeout = watchdog_timeout
        self._connect_timeout = connect_timeout
        self._close_timeout = close_timeout
        self._max_instruments = max_instruments
        self._ssl_context = ssl_context
        self._rng = rng if rng is not None else random.Random()
        self._connection_id = connection_id
        self._limiter = rate_limiter
        if max_message_size < 1024:
            raise ConfigurationError("max_message_size must be at least 1024 bytes")
        self._max_message_size = max_message_size
        self._oversized = 0
        self._modes: dict[int, Mode] = {}
        self._ws: trio_websocket.WebSocketConnection | None = None
        self._send_lock = trio.StrictFIFOLock()
        self._init_feed(buffer, sink)
        self._frames = self._heartbeats = self._ticks = self._decode_errors = 0
        self._connects = self._reconnects = 0
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
    def connected(self) -> bool:
        """Whether the WebSocket is up right now."""
        return self._ws is not None

    @property
    def subscriptions(self) -> dict[int, Mode]:
        """A copy of the subscribed instrument tokens and their modes."""
        return dict(self._modes)

    async def subscribe(self, tokens: Iterable[int], mode: Mode = Mode.QUOTE) -> None:
        """Subscribe instrument tokens in `mode` (default QUOTE, the broker's own default).

        Tokens already subscribed move to `mode`. While disconnected, the request is recorded and sent on
        the next connection. Blocks only while another request is being written.

        Raises:
            SubscriptionLimitError: the feed would hold more than its instrument limit (3000 by default);
                nothing is subscribed then.
            FeedClosedError: the feed is closed or has failed.
            ConfigurationError: a token is not an unsigned 32-bit integer.
        """
        wanted = self._check_tokens(tokens)
        new = [t for t in wanted if t not in self._modes]
        if len(self._modes) + len(new) > self._max_instruments:
            raise SubscriptionLimitError(
                f"subscribing {len(new)} more instruments would exceed {self._max_instruments} per "
                f"connection ({len(self._modes)} already subscribed)"
            )
        async with self._send_lock:
            for token in wanted:
                self._modes[token] = mode
            await self._send_requests([("subscribe", wanted, None), ("mode", wanted, mode)])

    async def unsubscribe(self, tokens: Iterable[int]) -> None:
        """Unsubscribe instrument tokens; tokens that are not subscribed are ignored.

        Raises:
            FeedClosedError: the feed is closed or has failed.
            ConfigurationError: a token is not an unsigned 32-bit integer.
        """
        gone = [t for t in self._check_tokens(tokens) if t in self._modes]
        async with self._send_lock:
            for token in gone:
                del self._modes[token]
            if gone:
                await self._send_requests([("unsubscribe", gone, None)])

    async def set_mode(self, mode: Mode, tokens: Iterable[int]) -> None:
        """Change the mode of instrument tokens (a token not yet subscribed becomes subscribed, as on Kite).

        Raises:
            SubscriptionLimitError: new tokens would exceed the instrument limit.
            FeedClosedError: the feed is closed or has failed.
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
            connects=self._connects,
            reconnects=self._reconnects,
            queued_batches=len(self._queue),
            oversized_messages=self._oversized,
            last_frame_age=None if self._last_frame_at is None else now - self._last_frame_at,
        )

    # -----------------------------------------------------------------------------------------------
    # Internals

    def _check_tokens(self, tokens: Iterable[int]) -> list[int]:
        self._check_open()
        out = list(dict.fromkeys(tokens))
        for token in out:
            if type(token) is not int or not 0 <= token <= 0xFFFFFFFF:
                raise ConfigurationError(f"instrument token must be an unsigned 32-bit int, got {token!r}")
        return out

    async def _send_requests(self, requests: list[tuple[str, list[int], Mode | None]]) -> None:
        # Caller holds the send lock. When disconnected the state is kept and sent at the next connect.
        ws = self._ws
        if ws is None or not requests:
            return
        try:
            for action, tokens, mode in requests:
                if tokens:
                    if self._limiter is not None:
                        await self._limiter.acquire()
                    await ws.send_message(encode_control(action, tokens, mode))
        except trio_websocket.ConnectionClosed:
            logger.debug("connection closed while sending a request; it will be replayed on reconnect")

    def _resource(self) -> str:
        query = urlencode({"api_key": self._api_key, "access_token": self._access_token})
        return f"{self._endpoint.path}?{query}"

    def _emit(self, event: Event) -> None:
        self._queue.put_nowait([event])

    def _finish(self, failure: BaseException | None) -> None:
        self._failure = failure
        self._ws = None
        self._queue.close()

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, read, and reconnect until cancelled; reports readiness after the first connection.

        Errors before the first connection propagate (through ``nursery.start``); later fatal errors are
        recorded and raised to the consumer.
        """
        started = False
        renewed = False
        delays: Iterator[float] = self._backoff.delays(self._rng)
        attempt = 0

        def on_connected() -> None:
            nonlocal started, renewed
            renewed = False
            if not started:
                started = True
                task_status.started()

        try:
            while True:
                reset = False
                try:
                    await self._connection(on_connected, attempt)
                except AuthenticationError as exc:
                    if self._token_provider is not None and not renewed:
                        renewed = True
                        logger.warning("Kite refused the access token; asking the provider for a new one")
                        self._access_token = await self._token_provider()
                        continue
                    if not started:
                        raise
                    self._emit(self._disconnected(str(exc)))
                    self._finish(exc)
                    return
                except ConnectError as exc:
                    if not started:
                        raise
                    reset = isinstance(exc, _ConnectionLost) and exc.got_data
                    logger.warning("Kite connection %d: %s", self._connection_id, exc)
                    self._emit(self._disconnected(str(exc)))
                if reset:
                    delays = self._backoff.delays(self._rng)
                    attempt = 0
                attempt += 1
                delay = next(delays, None)
                if delay is None:
                    failure = ConnectError(
                        f"gave up after {attempt - 1} failed reconnect attempts (Backoff.max_attempts)"
                    )
                    self._finish(failure)
                    return
                self._emit(Reconnecting(Broker.KITE, self._connection_id, attempt, delay, time.time()))
                await trio.sleep(delay)
        finally:
            self._ws = None
            self._queue.close()

    def _disconnected(self, reason: str) -> Disconnected:
        return Disconnected(Broker.KITE, self._connection_id, reason, time.time())

    async def _connection(self, on_connected: Callable[[], None], attempt: int) -> None:
        """One connection, from handshake to loss; raises ConnectError (_ConnectionLost once up)."""
        if self._limiter is not None:
            await self._limiter.acquire()
        async with open_ws(
            self._endpoint,
            self._resource(),
            headers=[(b"X-Kite-Version", b"3"), (b"User-Agent", f"trading-ws/{__version__}".encode())],
            connect_timeout=self._connect_timeout,
            close_timeout=self._close_timeout,
            max_message_size=self._max_message_size,
            ssl_context=self._ssl_context,
        ) as ws:
            try:
                self._connects += 1
                logger.info("Kite connection %d up (%s)", self._connection_id, redact_url(self._url))
                async with self._send_lock:
                    self._ws = ws
                    resubscribed = len(self._modes)
                    by_mode: dict[Mode, list[int]] = {}
                    for token, mode in self._modes.items():
                        by_mode.setdefault(mode, []).append(token)
                    await self._send_requests(
                        [
                            request
                            for mode, tokens in by_mode.items()
                            for request in (("subscribe", tokens, None), ("mode", tokens, mode))
                        ]
                    )
                on_connected()
                now = time.time()
                self._emit(Connected(Broker.KITE, self._connection_id, now))
                if attempt and resubscribed:
                    self._emit(Resubscribed(Broker.KITE, self._connection_id, resubscribed, now))
                await self._read(ws)
            finally:
                self._ws = None

    async def _read(self, ws: trio_websocket.WebSocketConnection) -> NoReturn:
        """Read frames until the connection dies; raises _ConnectionLost."""
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
                        logger.warning("skipping a malformed Kite message (%d bytes): %s", len(exc.raw), exc)
                        events = list(exc.events)
                    if events:
                        self._ticks += len(events)
                        await queue.put(events)  # the watchdog is off: a slow consumer is not silence
                    elif len(message) < 2:
                        self._heartbeats += 1
        except trio_websocket.ConnectionClosed as exc:
            self._reconnects += 1
            reason = exc.reason
            if reason is None:
                raise _ConnectionLost("connection closed", got_data) from None
            if reason.code == 1009:
                self._oversized += 1
                logger.warning(
                    "a Kite message exceeded %d bytes; connection closed (1009)", self._max_message_size
                )
            detail = f", {reason.reason}" if reason.reason else ""
            raise _ConnectionLost(f"connection closed (code {reason.code}{detail})", got_data) from None
        self._reconnects += 1
        raise _ConnectionLost(f"no data for {timeout} s: connection presumed dead", got_data)


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
    buffer: int = 256,
    max_instruments: int = MAX_INSTRUMENTS_PER_CONNECTION,
    allow_insecure: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    rng: random.Random | None = None,
    connection_id: int = 0,
    rate_limiter: TokenBucket | None = None,
    max_message_size: int = 4 * 1024 * 1024,
    sink: Sink | None = None,
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
        buffer: how many frames may wait for the consumer; when full, the feed stops reading the socket
            (backpressure) but its watchdog does not count that time as silence. Status events are
            queued even when it is full (a few per reconnect).
        max_instruments: instruments allowed on this connection (Kite: 3000).
        allow_insecure: allow plain ``ws://`` to a non-loopback host.
        ssl_context: TLS settings for ``wss://`` (default: the system's, with verification).
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

    Raises:
        AuthenticationError: the credentials were refused (after one renewal, with a provider).
        RateLimitedError: the broker refused the connection with HTTP 429.
        ConnectTimeout, ConnectError: the first connection could not be made.
        ConfigurationError: invalid arguments (a non-loopback ``ws://`` URL, empty credentials...).
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
    )
    async with open_service_nursery() as nursery:
        await nursery.start(feed._run)
        try:
            yield feed
        finally:
            feed._closed = True
            nursery.cancel_scope.cancel()
    if feed._failure is not None and not feed._failure_seen:
        raise feed._failure
