"""Reconnect delays as data: a pure, seedable exponential backoff with bounded jitter."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import attrs

from ._errors import ConfigurationError
from ._validate import check_int

__all__ = ["Backoff"]


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number, got {type(value).__name__}")
    return value


def _check_positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (_number(attribute.name, value) > 0 and math.isfinite(value)):
        raise ConfigurationError(f"{attribute.name} must be a positive finite number, got {value!r}")


def _check_jitter(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 <= _number("jitter", value) < 1:
        raise ConfigurationError(f"jitter must be in [0, 1), got {value!r}")


def _check_attempts(instance: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None:
        check_int("max_attempts", value, 0)


def _check_healthy(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (_number("healthy_after", value) >= 0 and math.isfinite(value)):
        raise ConfigurationError(f"healthy_after must be a finite number of seconds >= 0, got {value!r}")


def _check_factor(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (_number("factor", value) >= 1 and math.isfinite(value)):
        raise ConfigurationError(f"factor must be >= 1, got {value!r}")


@attrs.frozen
class Backoff:
    """How long to wait before each reconnect attempt.

    The n-th delay (n from 0) is ``min(cap, initial * factor**n)``, then multiplied by a random factor in
    ``[1 - jitter, 1 + jitter]`` and capped again, so no delay ever exceeds `cap` (unlike the official
    Kite client, whose jitter is applied after the cap). The sequence (and the count of failed attempts)
    restarts only after a healthy connection: one that delivered data and stayed up `healthy_after`
    seconds, so a broker that accepts, sends a heartbeat and drops cannot pin the delay at `initial` or
    defeat `max_attempts`.

    Args:
        initial: the first delay, in seconds.
        factor: growth per attempt (>= 1).
        cap: the largest delay, in seconds.
        jitter: the relative spread of the random factor, in [0, 1). Jitter keeps many clients that lost
            the broker together from reconnecting in lockstep.
        max_attempts: give up after this many consecutive failed attempts (None: never give up).
        healthy_after: how long (seconds) a connection must stay up, delivering data, before the delays
            start over.

    Raises:
        ConfigurationError: for a non-positive delay, a factor below 1, jitter outside [0, 1), a
            negative `healthy_after`, or a value that is not a number (or an int, for `max_attempts`).
    """

    initial: float = attrs.field(default=0.5, validator=_check_positive)
    factor: float = attrs.field(default=2.0, validator=_check_factor)
    cap: float = attrs.field(default=30.0, validator=_check_positive)
    jitter: float = attrs.field(default=0.2, validator=_check_jitter)
    max_attempts: int | None = attrs.field(default=None, validator=_check_attempts)
    healthy_after: float = attrs.field(default=5.0, validator=_check_healthy)

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """Yield the delay before each attempt, forever or until `max_attempts` is reached.

        Pure and deterministic for a seeded `rng`; never sleeps. With ``jitter=0`` it needs no `rng`.
        """
        rng = rng if rng is not None else random.Random()
        attempt = 0
        base = self.initial
        while self.max_attempts is None or attempt < self.max_attempts:
            delay = base
            if self.jitter:
                delay *= rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)
            yield min(delay, self.cap)
            attempt += 1
            base = min(base * self.factor, self.cap)
