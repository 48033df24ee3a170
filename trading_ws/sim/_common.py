"""What both simulators share: where they may listen, the checks before serving, their settings'
validators, their URLs, and the TCP reset of their ``drop_connections`` knobs.

The TLS side they share (certificates, handshakes) is in ``_tls``; the market and the instruments in
``_universe``.
"""

from __future__ import annotations

import logging
import math
import socket
import struct
from contextlib import suppress
from typing import Final

import attrs
import trio

from .._errors import ConfigurationError
from .._transport import is_loopback_host
from .._validate import check_instance
from ._tls import SimulatorTLS

__all__ = [
    "MAX_PORT",
    "at_least_one",
    "check_serve",
    "listen_host",
    "listen_port",
    "logger",
    "positive",
    "reset",
    "url",
]

logger = logging.getLogger("trading_ws.sim")
"""The simulators' logger (connections, handshakes, knobs; never a token or a secret)."""

MAX_PORT: Final = 65535
"""The highest TCP port number."""

_LINGER_ABORT: Final = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset at once


def listen_host(host: str, allow_non_loopback: bool) -> str:
    """The address to bind for `host`: ``"localhost"`` (any case) means ``127.0.0.1``; IPv6 brackets go.

    Raises:
        ConfigurationError: `host` is not a string, or not a loopback address and `allow_non_loopback` is
            false (the simulators accept well-known demo credentials).
    """
    if not isinstance(host, str):
        raise ConfigurationError(f"host must be a string, got {type(host).__name__}")
    if not allow_non_loopback and not is_loopback_host(host):
        raise ConfigurationError(
            f"the simulator listens on loopback addresses only, not {host!r} (pass allow_non_loopback=True)"
        )
    return "127.0.0.1" if host.lower() == "localhost" else host.strip("[]")


def listen_port(port: int) -> int:
    """`port`, checked: an int from 0 (any free port) to 65535.

    Raises:
        ConfigurationError: `port` is not an int (a bool is not one) or is outside 0..65535. (The socket
            layer would raise OverflowError for some of them and silently wrap others modulo 65536.)
    """
    if isinstance(port, bool) or not isinstance(port, int):
        raise ConfigurationError(f"port must be an int, got {type(port).__name__}")
    if not 0 <= port <= MAX_PORT:
        raise ConfigurationError(f"port must be in 0..{MAX_PORT} (0 picks a free one), got {port}")
    return port


def check_serve(host: str, port: int, allow_non_loopback: bool, tls: SimulatorTLS | None) -> str:
    """The checks every ``serve`` method makes before it listens; returns the address to bind.

    Raises:
        ConfigurationError: a non-loopback host without `allow_non_loopback`, a port outside 0..65535, or
            a `tls` that is neither None nor a `SimulatorTLS`.
    """
    bind = listen_host(host, allow_non_loopback)
    listen_port(port)
    check_instance("tls", tls, SimulatorTLS, optional=True)
    return bind


def url(scheme: str, host: str, port: int) -> str:
    """``scheme://host:port``, with an IPv6 `host` in brackets."""
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    """An attrs validator: `value` is a positive finite number.

    Raises:
        ConfigurationError: otherwise, naming the attribute.
    """
    if not (value > 0 and math.isfinite(value)):
        raise ConfigurationError(f"{attribute.name} must be a positive finite number, got {value!r}")


def at_least_one(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    """An attrs validator: `value` is at least 1.

    Raises:
        ConfigurationError: otherwise, naming the attribute.
    """
    if value < 1:
        raise ConfigurationError(f"{attribute.name} must be at least 1, got {value!r}")


def reset(stream: trio.abc.Stream | None) -> bool:
    """Abort `stream`'s TCP connection now with a reset (no TLS, WebSocket or Socket.IO goodbye).

    A `trio.SSLStream` is reset through the TCP stream under it. Tasks blocked on the stream wake with
    `trio.ClosedResourceError`; the peer sees its connection reset. Returns False (and does nothing) when
    no TCP socket is under `stream`. Does not block; raises nothing.
    """
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if not isinstance(stream, trio.SocketStream):
        return False
    with suppress(OSError):  # already closed by the peer
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ABORT)
    stream.socket.close()
    return True
