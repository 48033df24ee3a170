"""The statistics records of a manager (`MarketData.statistics`) and of a subscription
(`Subscription.statistics`): frozen values, taken at one moment."""

from __future__ import annotations

import attrs

from ._fanout import Overflow, QueueStatistics
from ._model import Broker, Mode

__all__ = ["BrokerStatistics", "ConnectionStatistics", "MarketDataStatistics", "SubscriptionStatistics"]


@attrs.frozen
class ConnectionStatistics:
    """One broker connection of a manager."""

    connection: int
    connected: bool
    instruments: int
    ticks: int
    """Ticks received on this connection."""
    reconnects: int
    last_tick_age: float | None
    """Seconds since the last tick on this connection (trio clock), None before the first."""


@attrs.frozen
class BrokerStatistics:
    """One configured broker of a manager."""

    name: str
    broker: Broker
    instruments: int
    """Instruments subscribed upstream (counted once the broker's connection has taken the request)."""
    connections: tuple[ConnectionStatistics, ...]
    rate_limited_seconds: float
    """Total time requests waited for the broker's rate limiter."""


@attrs.frozen
class MarketDataStatistics:
    """A whole manager (see `MarketData.statistics`)."""

    brokers: tuple[BrokerStatistics, ...]
    subscriptions: int
    ticks_in: int
    """Ticks received from all brokers."""
    ticks_out: int
    """Tick deliveries offered to subscriber queues (one tick to three subscribers counts three)."""
    dropped: int
    """Ticks and other market events lost to subscribers' overflow policies, summed."""
    conflated: int = 0
    """Ticks and market events replaced by a newer one of the same key in ``CONFLATE`` queues, summed
    (not lost)."""


@attrs.frozen
class SubscriptionStatistics:
    """One subscription (see `Subscription.statistics`)."""

    symbols: int
    mode: Mode
    overflow: Overflow
    queue: QueueStatistics
    last_tick_age: float | None
    """Seconds since this subscription last received a tick (trio clock), None before the first."""
