"""The argument checks of `FakeBroker` and `FakeConnection`: every one raises `ConfigurationError` naming
the argument, before anything is recorded or sent. Pure: no I/O, no clock."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Final, TypeAlias, get_args

from .._errors import ConfigurationError
from .._model import (
    Broker,
    Connected,
    Depth,
    Disconnected,
    Event,
    Gap,
    Ohlc,
    Reconnecting,
    Resubscribed,
    Stale,
)
from .._validate import check_flag, check_instance

__all__ = ["SEGMENT", "check_events", "coerce_broker", "finite", "instrument_tokens", "tick_fields"]

#: The segment id every instrument of a `FakeBroker` has (NSE's, on both brokers).
SEGMENT: Final = 1

_CONNECTION_EVENTS: Final = (Connected, Disconnected, Reconnecting, Resubscribed)
_EVENT_TYPES: Final[tuple[type, ...]] = get_args(Event)


def instrument_tokens(instruments: object) -> dict[str, int]:
    """The master `FakeBroker` is given, as symbol -> token, or ConfigurationError."""
    if isinstance(instruments, (str, bytes, bytearray, memoryview)):
        raise ConfigurationError(
            f"instruments must be an iterable of symbols (or a mapping of symbol to token), not a bare "
            f"{type(instruments).__name__}: write [{instruments!r:.40}]"
        )
    if isinstance(instruments, Mapping):
        pairs: Sequence[tuple[object, object]] = list(instruments.items())
    else:
        try:
            symbols = list(instruments)  # type: ignore[call-overload]
        except TypeError:
            raise ConfigurationError(
                "instruments must be an iterable of symbols (or a mapping of symbol to token), got "
                f"{type(instruments).__name__}"
            ) from None
        pairs = [(symbol, n) for n, symbol in enumerate(symbols, start=1)]
    tokens: dict[str, int] = {}
    for symbol, token in pairs:
        if not isinstance(symbol, str) or not symbol:
            raise ConfigurationError(f"an instrument's symbol must be a non-empty string, not {symbol!r:.40}")
        if symbol in tokens:
            raise ConfigurationError(f"instrument {symbol!r:.40} is listed twice")
        if type(token) is not int or token < 1:
            raise ConfigurationError(f"{symbol:.40}: a token must be a positive int, not {token!r:.40}")
        tokens[symbol] = token
    if len(set(tokens.values())) != len(tokens):
        raise ConfigurationError("two instruments have the same token")
    return tokens


def coerce_broker(value: object) -> Broker:
    """`value` as a `Broker`: a member, or its value exactly (``"kite"``, ``"xts"``); else
    ConfigurationError."""
    if isinstance(value, Broker):
        return value
    if isinstance(value, str):
        for member in Broker:
            if value == member.value:
                return member
    accepted = ", ".join(repr(member.value) for member in Broker)
    raise ConfigurationError(f"broker must be a Broker or one of {accepted}, got {value!r:.40}")


def check_events(events: tuple[object, ...]) -> None:
    """ConfigurationError unless every one of `events` is an event a feed yields."""
    for event in events:
        if not isinstance(event, _EVENT_TYPES):
            raise ConfigurationError(
                f"push takes trading_ws events (a Tick, an OrderUpdate...), got {type(event).__name__}"
            )
        if isinstance(event, _CONNECTION_EVENTS):
            raise ConfigurationError(
                f"{type(event).__name__} is a connection status event: use drop(), reconnect() or fail()"
            )
        if isinstance(event, (Gap, Stale)):
            raise ConfigurationError(
                f"{type(event).__name__} is made by the manager, not by a feed: drop() and reconnect() a "
                "connection for a Gap; open_market_data(stale_after=...) sends Stale"
            )


def finite(name: str, value: object) -> float:
    """A finite int or float (not a bool), as a float; else ConfigurationError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        number = math.inf
    if not math.isfinite(number):
        raise ConfigurationError(f"{name} must be a finite number, got {value!r:.40}")
    return number


def _whole(name: str, value: object) -> int:
    """An int (not a bool); else ConfigurationError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{name} must be an int, got {type(value).__name__}")
    return value


_Check: TypeAlias = Callable[[str, object], object]
"""A check of one `Tick` attribute: (name, value) -> the value to store, or ConfigurationError."""


def _kind(kind: type) -> _Check:
    """A check that a value is a `kind` instance (ConfigurationError otherwise)."""

    def check(name: str, value: object) -> object:
        check_instance(name, value, kind)
        return value

    return check


#: What `FakeBroker.tick` accepts for each `Tick` attribute it lets a test set: (check, may be None).
_TICK_FIELDS: Final[dict[str, tuple[_Check, bool]]] = {
    "tradable": (check_flag, False),
    "last_quantity": (_whole, True),
    "average_price": (finite, True),
    "volume": (_whole, True),
    "total_buy_quantity": (_whole, True),
    "total_sell_quantity": (_whole, True),
    "ohlc": (_kind(Ohlc), True),
    "change": (finite, True),
    "last_trade_time": (_kind(datetime), True),
    "exchange_time": (_kind(datetime), True),
    "oi": (_whole, True),
    "oi_day_high": (_whole, True),
    "oi_day_low": (_whole, True),
    "depth": (_kind(Depth), True),
    "received_at": (finite, False),
    "segment": (_whole, True),
}


def tick_fields(fields: Mapping[str, object]) -> dict[str, object]:
    """`fields` of `FakeBroker.tick`, checked (floats made floats); else ConfigurationError."""
    checked: dict[str, object] = {}
    for name, value in fields.items():
        try:
            check, optional = _TICK_FIELDS[name]
        except KeyError:
            if name in ("broker", "instrument_token"):
                why = "it follows from the broker and the symbol"
            elif name == "symbol":
                why = "the manager sets it"
            else:
                why = "Tick has no such attribute"
            raise ConfigurationError(f"tick() cannot set {name!r:.40}: {why}") from None
        checked[name] = None if value is None and optional else check(name, value)
    return checked
