"""Up-front checks of public arguments: each raises `ConfigurationError` naming the argument, and never
echoes a value that may be a secret."""

from __future__ import annotations

import math

from ._errors import ConfigurationError

__all__ = ["check_credential", "check_int", "check_seconds"]


def check_credential(name: str, value: object) -> None:
    """A key, token or secret: a non-empty string of printable ASCII (it travels in a URL or a header).

    Raises:
        ConfigurationError: otherwise; the message names `name` and the type, never the value.
    """
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string, got {type(value).__name__}")
    if not value:
        raise ConfigurationError(f"{name} must not be empty")
    if not (value.isascii() and value.isprintable()) or value != value.strip():
        raise ConfigurationError(
            f"{name} must be printable ASCII without surrounding spaces (value not shown: it is a secret)"
        )


def check_seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """A duration in seconds: a finite int or float, > 0 (>= 0 with `allow_zero`), not a bool.

    Raises:
        ConfigurationError: otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number of seconds, got {type(value).__name__}")
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and math.isfinite(value)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
    return float(value)


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """An int (not a bool) in ``low..high``.

    Raises:
        ConfigurationError: otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise ConfigurationError(f"{name} must be in {span}, got {value!r}")
    return value
