"""Where a simulator may listen."""

from __future__ import annotations

from .._errors import ConfigurationError
from .._transport import is_loopback_host


def listen_host(host: str, allow_non_loopback: bool) -> str:
    """The address to bind for `host`: ``"localhost"`` (any case) means ``127.0.0.1``; IPv6 brackets go.

    Raises:
        ConfigurationError: `host` is not a loopback address and `allow_non_loopback` is false (the
            simulators accept well-known demo credentials).
    """
    if not allow_non_loopback and not is_loopback_host(host):
        raise ConfigurationError(
            f"the simulator listens on loopback addresses only, not {host!r} (pass allow_non_loopback=True)"
        )
    return "127.0.0.1" if host.lower() == "localhost" else host.strip("[]")
