"""The library's exceptions: one small tree under `TradingWsError`.

::

    TradingWsError
    ├── DecodeError               a frame or message could not be decoded (carries the raw bytes)
    ├── ConnectError              a connection could not be opened or was lost
    │   ├── ConnectTimeout        the TCP connect or WebSocket handshake took too long
    │   ├── TLSError              the TLS handshake failed: an untrusted, expired or wrong-host certificate,
    │   │                         or a protocol error (no TLS server on that port); raised at once
    │   ├── AuthenticationError   the broker refused the credentials (HTTP 403); never retried in a loop
    │   └── RateLimitedError      the broker refused with HTTP 429 (too many connections or requests)
    ├── SubscriptionError         a subscribe request was refused before it reached the broker
    │   └── SubscriptionLimitError   it would exceed a broker limit (instruments per connection...)
    ├── FeedClosedError           the feed was closed, or has failed; `__cause__` says why
    └── ConfigurationError        an argument is invalid (a non-loopback plain-text URL, a bad option...)

Third-party errors (trio-websocket's, OSError, msgspec's) are converted where they enter the library, with
the original kept as ``__cause__``. No message ever contains an access token, secret key or JWT.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "ConnectError",
    "ConnectTimeout",
    "DecodeError",
    "FeedClosedError",
    "RateLimitedError",
    "SubscriptionError",
    "SubscriptionLimitError",
    "TLSError",
    "TradingWsError",
]


class TradingWsError(Exception):
    """Base class of every exception the library raises on purpose."""


class DecodeError(TradingWsError):
    """A frame or message could not be decoded.

    Attributes:
        raw: the undecodable bytes (or text), unchanged, for logging or replay.
        events: whatever the message still held that could be decoded (for a Kite frame with one bad
            packet, every other packet), so that a bad packet costs only itself.
    """

    def __init__(self, message: str, raw: bytes | str, events: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.raw = raw
        self.events: Sequence[Any] = events

    def __reduce__(self) -> tuple[type[DecodeError], tuple[str, bytes | str, Sequence[object]]]:
        return (type(self), (str(self), self.raw, self.events))


class ConnectError(TradingWsError):
    """A connection to a broker could not be opened, or was lost."""


class ConnectTimeout(ConnectError):
    """The TCP connect or the WebSocket/HTTP handshake did not finish in time."""


class TLSError(ConnectError):
    """TLS with the broker failed: the handshake (a certificate the client does not trust, a hostname
    mismatch, an expired certificate, a protocol error such as a server that does not speak TLS on that
    port) or, rarely, the TLS layer of an established connection.

    Raised within the time of the handshake, never as a `ConnectTimeout`. The message says why (for a
    certificate, OpenSSL's verification message: "certificate verify failed: unable to get local issuer
    certificate", "... Hostname mismatch ...", "... certificate has expired"); the `ssl.SSLError` is kept as
    ``__cause__``. Certificate verification is always on: pass an ``ssl_context`` that trusts your CA
    (``ssl.create_default_context(cafile=...)``) to the feed or the broker config instead. A reconnecting
    feed counts it as one failed attempt and backs off (certificates get rotated).
    """


class AuthenticationError(ConnectError):
    """The broker refused the credentials (for Kite, HTTP 403 at the WebSocket handshake).

    Feeds never retry this in a loop: they ask the credentials provider (if any) for fresh credentials
    once, and raise this error if those are refused too.
    """


class RateLimitedError(ConnectError):
    """The broker refused with HTTP 429: too many connections for one key, or too many requests."""


class SubscriptionError(TradingWsError):
    """A subscription request was refused."""


class SubscriptionLimitError(SubscriptionError):
    """The request would exceed a broker limit; nothing of it was sent."""


class FeedClosedError(TradingWsError):
    """The feed is closed (the ``async with`` block ended) or has failed; ``__cause__`` tells why."""


class ConfigurationError(TradingWsError, ValueError):
    """An argument or option is invalid."""
