"""A token bucket on Trio's clock, so a thousand symbols or a reconnect storm never floods a broker."""

from __future__ import annotations

import math

import attrs
import trio

from ._errors import ConfigurationError
from ._validate import check_int

__all__ = ["RateLimit", "TokenBucket"]


@attrs.frozen
class RateLimit:
    """How fast requests may go to one broker: `rate` per second on average, bursts of up to `burst`.

    Raises:
        ConfigurationError: a non-positive rate or a burst below 1.
    """

    rate: float = 10.0
    burst: int = 20

    def __attrs_post_init__(self) -> None:
        rate: object = self.rate
        if (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not (rate > 0 and math.isfinite(rate))
        ):
            raise ConfigurationError(
                f"rate must be a positive finite number of requests per second, got {rate!r:.40}"
            )
        check_int("burst", self.burst, 1)


class TokenBucket:
    """A token bucket; `acquire` waits (on Trio's clock, so MockClock drives it) until a token is free.

    Waiters are served first come, first served.
    """

    def __init__(self, limit: RateLimit) -> None:
        self._rate = limit.rate
        self._burst = float(limit.burst)
        self._tokens = float(limit.burst)
        self._updated: float | None = None
        self._lock = trio.StrictFIFOLock()
        self.waited = 0.0
        """Total seconds callers spent waiting for tokens."""
        self.acquired = 0
        """Tokens handed out."""

    def _refill(self, now: float) -> None:
        if self._updated is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    async def acquire(self, tokens: int = 1) -> None:
        """Take `tokens` from the bucket, sleeping until they are available. Always checkpoints.

        Raises:
            ConfigurationError: more tokens than the bucket can ever hold.
        """
        if tokens > self._burst:
            raise ConfigurationError(f"cannot take {tokens} tokens from a bucket of {self._burst:g}")
        async with self._lock:
            now = trio.current_time()
            self._refill(now)
            if self._tokens < tokens:
                wait = (tokens - self._tokens) / self._rate
                self.waited += wait
                await trio.sleep(wait)
                self._refill(trio.current_time())
            else:
                await trio.lowlevel.checkpoint()
            self._tokens -= tokens
            self.acquired += tokens
