"""Where a simulator may listen."""

from __future__ import annotations

from .._errors import ConfigurationError
from .._transport import is_loopback_host

MAX_PORT = 65535
"""The highest TCP port number."""


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
