"""WebSocket plumbing shared by the broker feeds: URL policy, a tuned connect that maps every error of
trio-websocket, wsproto, h11, TLS and the OS to ours, and a nursery that does not wrap a lone error in a
group. (Secrets are scrubbed by `trading_ws._scrub`, whose log filter also covers trio-websocket.)

The test seam is `Connect`: `open_ws` opens its byte stream with ``await connect(host, port)`` when given
one (``trio.open_tcp_stream`` otherwise), and does everything above that stream itself (TLS, the
WebSocket handshake, the error mapping). A test hands it one end of `trio.testing.memory_stream_pair` and
serves the other end (``trio_websocket.wrap_server_stream``, or a scripted peer), so a feed runs with no
socket at all, under ``autojump_clock``.

No broker wire format is known here.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import NoReturn, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs
import trio
import trio_websocket

from ._errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    ConnectTimeout,
    RateLimitedError,
    TLSError,
    TradingWsError,
)
from ._scrub import SECRET_PARAMS
from ._validate import check_url, is_loopback_host

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MESSAGE_QUEUE_SIZE",
    "RECEIVE_BUFFER_SIZE",
    "Connect",
    "WsEndpoint",
    "check_connect",
    "client_context",
    "context_repr",
    "find_tls_error",
    "is_loopback_host",
    "open_service_nursery",
    "open_ws",
    "parse_ws_url",
    "redact_url",
    "tls_failure",
    "tls_reason",
]

logger = logging.getLogger("trading_ws")

# Measured here: the defaults (4 KiB receive buffer, a queue of 1 message) cost about 3x per frame.
RECEIVE_BUFFER_SIZE = 65536
#: Messages trio-websocket may hold for a feed's reader: with `DEFAULT_MAX_MESSAGE_SIZE`, a consumer that
#: stops reading makes the connection hold at most 16 x 4 MiB of raw frames before the kernel's buffers.
MESSAGE_QUEUE_SIZE = 16
#: The largest WebSocket message a feed accepts by default (a Kite frame of 3000 full packets is ~560 KB).
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024


def redact_url(url: str) -> str:
    """The URL with every secret query value, and any user info, replaced by ``***`` (safe to log or
    show)."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        parts = parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2])
        url = urlunsplit(parts)
    if not parts.query:
        return url
    query = [
        (key, "***" if key.lower() in SECRET_PARAMS else value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


@attrs.frozen
class WsEndpoint:
    """Where a WebSocket connects: host, port, path (with no query) and TLS."""

    host: str
    port: int
    path: str
    tls: bool


def parse_ws_url(url: str, *, allow_insecure: bool = False) -> WsEndpoint:
    """Check and split a ``ws://`` or ``wss://`` root URL (see `check_url`).

    Plain ``ws://`` is accepted only for loopback hosts unless `allow_insecure` is true, so credentials
    never cross a network in clear text by accident.

    Raises:
        ConfigurationError: another scheme, no host, a bad port, user info, a query or fragment, or an
            insecure non-loopback URL; the message never shows the URL.
    """
    parts = check_url("url", url, secure="wss", plain="ws", allow_insecure=allow_insecure)
    tls = parts.scheme == "wss"
    hostname = parts.hostname or ""
    port = parts.port or (443 if tls else 80)
    return WsEndpoint(hostname, port, parts.path or "/", tls)


Connect = Callable[[str, int], Awaitable[trio.abc.Stream]]
"""How a connection's byte stream is opened: ``await connect(host, port)`` returns a connected
`trio.abc.Stream` to that host and port (the URL's; the default is ``trio.open_tcp_stream``).

The stream is the transport only: for ``wss://`` the library runs TLS over it itself (the handshake first,
the certificate and host name verified against the feed's SSL context), then the WebSocket handshake. So a
connector can tunnel (a SOCKS or HTTP CONNECT proxy), or, in tests, return one end of
``trio.testing.memory_stream_pair()`` while the test serves the other end. Whatever it raises is one
failed connection attempt, mapped like any other (`ConnectError`, `ConnectTimeout` past the feed's
``connect_timeout``); it must honour cancellation."""


def check_connect(name: str, value: object) -> None:
    """A `Connect` argument: None (the default TCP connect) or a callable (an async function, as
    documented; not called here). Does not block.

    Raises:
        ConfigurationError: otherwise.
    """
    if value is not None and not callable(value):
        raise ConfigurationError(
            f"{name} must be an async function (host, port) -> trio.abc.Stream, or None; "
            f"got {type(value).__name__}"
        )


async def _open_stream(endpoint: WsEndpoint, connect: Connect | None) -> trio.abc.Stream:
    """The transport stream to `endpoint`: `connect`'s, or a TCP connection.

    Raises:
        ConfigurationError: `connect` returned something that is not awaitable, or not a trio Stream.
        Exception: whatever the connect raised (the caller maps it).
    """
    if connect is None:
        return await trio.open_tcp_stream(endpoint.host, endpoint.port)
    pending: object = connect(endpoint.host, endpoint.port)
    if not inspect.isawaitable(pending):
        if isinstance(pending, trio.abc.AsyncResource):
            await trio.aclose_forcefully(pending)
        raise ConfigurationError(
            f"connect must be an async function returning a trio.abc.Stream; it returned "
            f"{type(pending).__name__} (not awaitable)"
        )
    stream: object = await pending  # a careless connector's value, whatever its annotation says
    if isinstance(stream, trio.abc.Stream):
        return stream
    if isinstance(stream, trio.abc.AsyncResource):
        await trio.aclose_forcefully(stream)
    raise ConfigurationError(f"connect returned {type(stream).__name__}, not a trio.abc.Stream")


Scrub = Callable[[str], str]


def _describe(exc: BaseException, scrub: Scrub | None) -> tuple[str, bool]:
    """A safe one-line text for a third-party error, and whether the error itself is safe to keep as the
    cause (its text carries no secret)."""
    if isinstance(exc, trio_websocket.ConnectionRejected):
        raw = f"HTTP {exc.status_code}"
        keep = scrub is None or scrub(str(exc)) == str(exc)
        return raw, keep
    raw = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = scrub(raw) if scrub is not None else raw
    return text, text == raw


def find_tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind `exc`, if any: `exc` itself or one in its cause/context chain (trio reports a
    failed handshake as a BrokenResourceError caused by it; httpx wraps that in two ConnectErrors)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 8:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


_SSL_DECORATION = re.compile(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$")
# OpenSSL's reasons for an answer that is not TLS at all (plain HTTP, say) where a handshake was expected.
_NOT_TLS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "RECORD_LAYER_FAILURE",
        "PACKET_LENGTH_TOO_LONG",
        "HTTP_REQUEST",
        "HTTPS_PROXY_REQUEST",
    }
)


def tls_reason(error: ssl.SSLError) -> str:
    """Why TLS failed, in words: for a certificate, OpenSSL's verification message and its reason code
    ("certificate verify failed: unable to get local issuer certificate (CERTIFICATE_VERIFY_FAILED)", "...
    Hostname mismatch, certificate is not valid for 'x' (...)", "... certificate has expired (...)");
    otherwise the protocol error without OpenSSL's decorations ("protocol error: wrong version number (does
    the server speak TLS on that port?)")."""
    reason = getattr(error, "reason", None)
    if isinstance(error, ssl.SSLCertVerificationError):
        detail = str(getattr(error, "verify_message", None) or "the certificate was refused").rstrip(".")
        code = f" ({reason})" if isinstance(reason, str) and reason else ""
        return f"certificate verify failed: {detail}{code}"
    if isinstance(error, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return "the server ended the connection in the middle of TLS (is it a TLS server?)"
    raw = error.strerror if isinstance(error.strerror, str) else str(error)
    text = _SSL_DECORATION.sub("", raw).strip() or type(error).__name__
    if isinstance(reason, str) and reason and reason.lower().replace("_", " ") != text.lower():
        text = f"{text} ({reason})"
    if reason in _NOT_TLS:
        text += " (does the server speak TLS on that port?)"
    return f"protocol error: {text}"


def client_context(context: ssl.SSLContext | None) -> ssl.SSLContext:
    """The TLS settings of one client connection: `context`, or else the default every connection of the
    library uses, WebSocket and REST alike: the system's trust store (``ssl.create_default_context()``,
    which honours ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``), certificates and host names verified."""
    return context if context is not None else _default_context()


@functools.cache
def _default_context() -> ssl.SSLContext:
    # Made once per process: loading the trust store takes tens of milliseconds of CPU, which every
    # reconnect attempt would otherwise spend blocking the event loop. Never changed once made.
    return ssl.create_default_context()


def context_repr(context: ssl.SSLContext | None) -> str:
    """How a broker config's repr shows its `ssl.SSLContext`: only whether one is set."""
    return "None" if context is None else "<SSLContext>"


def tls_failure(error: ssl.SSLError, where: str, scrub: Scrub | None = None, *, prefix: str = "") -> TLSError:
    """The `TLSError` for `error` on a connection to `where` (``host:port``): the reason in the message,
    `error` kept as ``__cause__`` when its text is safe (`scrub` changes nothing in it)."""
    reason = tls_reason(error)
    if scrub is not None:
        reason = scrub(reason)
    return _caused_by(TLSError(f"{prefix}TLS with {where} failed: {reason}"), error, scrub)


_Mapped = TypeVar("_Mapped", bound=ConnectError)


def _caused_by(mapped: _Mapped, exc: BaseException, scrub: Scrub | None) -> _Mapped:
    """`mapped` with `exc` as its ``__cause__`` when the text of `exc` is safe (no secret), else none."""
    if _describe(exc, scrub)[1]:
        mapped.__cause__ = exc
    else:
        mapped.__suppress_context__ = True
    return mapped


def _map_error(
    exc: BaseException, endpoint: WsEndpoint, connect_timeout: float, scrub: Scrub | None = None
) -> BaseException:
    """Our exception for a third-party one, with the original as ``__cause__`` when its text is safe (or
    `exc` itself when it is ours, or not an `Exception`: cancellation, KeyboardInterrupt...).

    Every `Exception` that is not the library's maps to a `ConnectError` subclass: whatever trio,
    trio-websocket, wsproto, h11, ssl or the OS raise while a connection is made or read is a failed
    connection, never an escape from the tree.
    """
    if isinstance(exc, TradingWsError) or not isinstance(exc, Exception):
        return exc
    mapped: ConnectError
    if isinstance(exc, trio.TooSlowError):
        mapped = ConnectTimeout(f"no WebSocket handshake within {connect_timeout:g} s")
    elif isinstance(exc, trio_websocket.ConnectionRejected):
        status = exc.status_code
        if status in (401, 403):
            mapped = AuthenticationError(f"broker refused the credentials (HTTP {status})")
        elif status == 429:
            mapped = RateLimitedError("broker refused the connection: too many (HTTP 429)")
        else:
            mapped = ConnectError(f"broker refused the WebSocket handshake (HTTP {status})")
    elif (tls := find_tls_error(exc)) is not None:
        # The TLS error itself is the cause (not trio's BrokenResourceError around it): it says why.
        return tls_failure(tls, f"{endpoint.host}:{endpoint.port}", scrub)
    else:
        text, _ = _describe(exc, scrub)
        if isinstance(exc, (trio_websocket.HandshakeError, trio_websocket.ConnectionClosed)):
            mapped = ConnectError(f"WebSocket handshake failed: {text}")
        elif isinstance(exc, (OSError, trio.BrokenResourceError)):
            mapped = ConnectError(f"cannot connect to {endpoint.host}:{endpoint.port}: {text}")
        else:
            # h11/wsproto protocol errors on a malformed answer, and anything else: a failed attempt.
            mapped = ConnectError(f"connection to {endpoint.host}:{endpoint.port} failed: {text}")
    return _caused_by(mapped, exc, scrub)


@asynccontextmanager
async def open_ws(
    endpoint: WsEndpoint,
    resource: str,
    *,
    headers: list[tuple[bytes, bytes]],
    connect_timeout: float,
    close_timeout: float,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ssl_context: ssl.SSLContext | None = None,
    scrub: Scrub | None = None,
    connect: Connect | None = None,
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """Open a tuned WebSocket for the duration of the block; its reader task lives inside.

    The byte stream comes from `connect` (see `Connect`; default: a TCP connection to the endpoint). TLS
    verification is on for ``wss://``: the default SSL context, or `ssl_context` (the library never turns
    verification off); the TLS handshake is completed before the WebSocket's, over whatever stream
    `connect` gave. On exit the closing handshake gets `close_timeout` seconds (shielded), then the stream
    is closed.
    Errors of the body pass through unchanged (not wrapped in a group). Every other `Exception` (from the
    connect, the handshake, or trio-websocket's reader task) is mapped to a `ConnectError` subclass, with
    the original as ``__cause__`` unless its text would show a secret (`scrub` names the secrets: text it
    changes is never kept).

    Raises:
        AuthenticationError: HTTP 401 or 403 at the handshake.
        RateLimitedError: HTTP 429 at the handshake.
        TLSError: the TLS handshake failed (an untrusted, expired or wrong-host certificate, a server
            that does not speak TLS): at once, the `ssl.SSLError` as ``__cause__``.
        ConnectTimeout: the TCP connect and handshake took longer than `connect_timeout`.
        ConnectError: anything else that stopped the connection (refused, reset, a malformed answer,
            another HTTP status), `connect`'s own errors included.
        ConfigurationError: `connect` returned something that is not awaitable, or not a trio Stream.
    """
    stream: trio.abc.Stream | None = None
    body_error: BaseException | None = None
    mapped: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(connect_timeout):
                stream = await _open_stream(endpoint, connect)
                if endpoint.tls:
                    # What trio.open_ssl_over_tcp_stream does, over whatever stream `connect` gave.
                    tls = trio.SSLStream(
                        stream,
                        client_context(ssl_context),
                        server_hostname=endpoint.host,
                        https_compatible=True,
                    )
                    stream = tls
                    # At once, so that a certificate the client does not trust fails as itself (inside
                    # trio-websocket it would surface only as a handshake that never completes).
                    await tls.do_handshake()
                default_port = 443 if endpoint.tls else 80
                host_header = (
                    endpoint.host if endpoint.port == default_port else f"{endpoint.host}:{endpoint.port}"
                )
                with trio.CancelScope() as answer_scope:
                    watched = _Watched(stream, answer_scope)
                    ws = await trio_websocket.wrap_client_stream(
                        nursery,
                        # It takes any trio Stream, though its annotation names the two it is usually given.
                        cast("trio.SocketStream", watched),
                        host_header,
                        resource,
                        extra_headers=headers,
                        message_queue_size=MESSAGE_QUEUE_SIZE,
                        max_message_size=max_message_size,
                        receive_buffer_size=RECEIVE_BUFFER_SIZE,
                    )
                    watched.answered()
                if answer_scope.cancelled_caught:
                    error: BaseException = ConnectError(
                        f"{endpoint.host}:{endpoint.port} closed the connection before answering the "
                        "WebSocket handshake"
                    )
                    if isinstance(watched.ended, BaseException):
                        error = _map_error(watched.ended, endpoint, connect_timeout, scrub)
                    raise error
            try:
                yield ws
            except BaseException as exc:
                body_error = exc
                raise
            finally:
                # A polite closing handshake, unless we are being cancelled: then the reader task is
                # cancelled too, nobody would read the broker's answer, and waiting would only delay
                # shutdown. The socket itself is closed below in every case.
                if trio.current_effective_deadline() != -math.inf:
                    with trio.move_on_after(close_timeout, shield=True):
                        await ws.aclose()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        chosen = _choose_from_group(group, endpoint, connect_timeout, body_error, scrub)
        if chosen is None:
            raise
        if any(chosen is leaf for leaf in _leaves(group)):
            _reraise_leaf(chosen)
        mapped = chosen
    except BaseException as exc:
        if exc is body_error:
            raise
        mapped = _map_error(exc, endpoint, connect_timeout, scrub)
        if mapped is exc:
            raise
    finally:
        if stream is not None:
            # trio-websocket leaves the stream open when the handshake is refused; we own it.
            await trio.aclose_forcefully(stream)
    if mapped is not None:
        # Raised here, outside the handler: the third-party errors stay reachable only as the cause, and
        # only when their text is safe (`_map_error`), never as the implicit context.
        raise mapped from mapped.__cause__


class _Watched(trio.abc.Stream):
    """The connection's stream as trio-websocket reads it, watched until the handshake is answered: trio-
    websocket's reader swallows an end of stream or a reset that comes before the answer, and the handshake
    would then wait out the whole connect timeout. Here it cancels `scope` at once, and `ended` says why
    (the error, or True for a clean end of stream)."""

    __slots__ = ("_scope", "_stream", "ended")

    def __init__(self, stream: trio.abc.Stream, scope: trio.CancelScope) -> None:
        self._stream = stream
        self._scope: trio.CancelScope | None = scope
        self.ended: BaseException | bool = False

    def answered(self) -> None:
        """The handshake was answered: stop watching."""
        self._scope = None

    def _end(self, why: BaseException | bool) -> None:
        if self._scope is not None:
            self.ended = why
            self._scope.cancel()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self._stream.receive_some(max_bytes)
        except Exception as exc:
            self._end(exc)
            raise
        if not data:
            self._end(True)
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


def _choose_from_group(
    group: BaseExceptionGroup[BaseException],
    endpoint: WsEndpoint,
    connect_timeout: float,
    body_error: BaseException | None = None,
    scrub: Scrub | None = None,
) -> BaseException | None:
    """The one exception a connection's exception group stands for, or None to re-raise the group.

    KeyboardInterrupt, SystemExit and friends are never turned into connection errors (None); a group of
    cancellations alone stays as it is (None). The body's own error wins, unchanged, since it says why the
    connection ended; then any library error; otherwise a lone third-party error is mapped to ours, and
    several become one ConnectError (caused by the group).
    """
    leaves = list(_leaves(group))
    if any(not isinstance(leaf, (Exception, trio.Cancelled)) for leaf in leaves):
        return None
    errors = [leaf for leaf in leaves if isinstance(leaf, Exception)]
    if not errors:
        return None
    for leaf in errors:
        if leaf is body_error:
            return leaf
    ours = [leaf for leaf in errors if isinstance(leaf, TradingWsError)]
    if ours:
        return ours[0]
    if len(errors) == 1:
        return _map_error(errors[0], endpoint, connect_timeout, scrub)
    error = ConnectError(f"connection to {endpoint.host}:{endpoint.port} failed ({len(errors)} errors)")
    if all(_describe(leaf, scrub)[1] for leaf in errors):
        error.__cause__ = group
    return error


def _reraise_leaf(exc: BaseException) -> NoReturn:
    # Re-raise without chaining the group as context (trio-websocket's recipe, trio#1559).
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context
        del exc, context


@asynccontextmanager
async def open_service_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery for a library's background tasks that raises a lone error as itself.

    The library's own background tasks never raise once started (they record failures and hand them to
    the consumer), so the only exceptions that can leave this nursery are the body's own, or a startup
    error from ``nursery.start``. When exactly one leaf exception is in the group, that exception is
    raised unwrapped, so ``except AuthenticationError`` works for callers. Several leaves propagate as
    the group itself.
    """
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if len(leaves) == 1:
            _reraise_leaf(leaves[0])
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc
