"""The one data model every broker fills.

Market data (`Tick`, `Ohlc`, `Depth`, `DepthLevel`), broker messages (`OrderUpdate`, `BrokerMessage`,
`BrokerError`) and connection status events (`Connected`, `Disconnected`, `Reconnecting`,
`Resubscribed`) are plain attrs classes with slots.

Hot-path classes are mutable (`attrs.define`): on these machines `attrs.frozen` costs 4-5x more per
instance, and a Kite frame can carry thousands of ticks. Treat them as values all the same: the library
never changes a tick after handing it out, and neither should you (copy with `attrs.evolve`).
Status events are rare and frozen.

Timestamps are timezone-aware `datetime` objects (Indian Standard Time for exchange times), never naive.
A field that a packet kind does not carry is `None`.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeAlias

import attrs

__all__ = [
    "IST",
    "Broker",
    "BrokerError",
    "BrokerMessage",
    "Connected",
    "Depth",
    "DepthLevel",
    "Disconnected",
    "Event",
    "Mode",
    "Ohlc",
    "OrderUpdate",
    "Reconnecting",
    "Resubscribed",
    "StatusEvent",
    "Tick",
]

#: Indian Standard Time (UTC+05:30, no daylight saving): the zone of every exchange timestamp.
IST = timezone(timedelta(hours=5, minutes=30), "IST")


class Broker(enum.StrEnum):
    """Which broker protocol produced an event."""

    KITE = "kite"
    """Zerodha Kite Connect v3 (binary WebSocket ticker)."""
    XTS = "xts"
    """Symphony XTS market data (Socket.IO); the Pro and Client flavours send identical market data."""


class Mode(enum.StrEnum):
    """How much market data a subscription carries, from least to most.

    Modes are ordered: ``Mode.LTP < Mode.QUOTE < Mode.FULL``.
    """

    LTP = "ltp"
    """Last traded price only."""
    QUOTE = "quote"
    """Prices, quantities and OHLC, without market depth."""
    FULL = "full"
    """Everything: quote plus timestamps, open interest and five levels of market depth."""

    @property
    def rank(self) -> int:
        """0 for LTP, 1 for QUOTE, 2 for FULL."""
        return _MODE_RANK[self]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Mode):
            return NotImplemented
        return _MODE_RANK[self] < _MODE_RANK[other]

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Mode):
            return NotImplemented
        return _MODE_RANK[self] <= _MODE_RANK[other]

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Mode):
            return NotImplemented
        return _MODE_RANK[self] > _MODE_RANK[other]

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Mode):
            return NotImplemented
        return _MODE_RANK[self] >= _MODE_RANK[other]


_MODE_RANK = {Mode.LTP: 0, Mode.QUOTE: 1, Mode.FULL: 2}


@attrs.define(slots=True)
class Ohlc:
    """The day's open, high and low, and the previous session's close."""

    open: float
    high: float
    low: float
    close: float
    """The previous trading session's close (the reference for `Tick.change`)."""


@attrs.define(slots=True)
class DepthLevel:
    """One price level of the order book."""

    price: float
    quantity: int
    orders: int
    """Number of orders at this level."""


class Depth:
    """Market depth: bid and ask levels in the order the broker sent them (best first).

    ``Depth(bids, asks)`` takes two sequences of `DepthLevel`. Depth decoded from a Kite frame keeps the
    packet's integers and builds its `DepthLevel` objects the first time `bids` or `asks` is read (then
    keeps them): ten objects per full packet would otherwise be most of the cost of decoding a tick that
    many consumers only read the last price of. Equality, hashing (none: depth is mutable) and repr
    behave as for a plain two-field value class.
    """

    __slots__ = ("_asks", "_bids", "_divisor", "_packed")

    def __init__(self, bids: Sequence[DepthLevel], asks: Sequence[DepthLevel]) -> None:
        self._bids: Sequence[DepthLevel] | None = bids
        self._asks: Sequence[DepthLevel] | None = asks
        self._packed = b""
        self._divisor = 1.0

    def _materialize(self) -> None:
        # Kite full packets: the 120 depth bytes, as (quantity, raw price, orders) x 5 bids, x 5 asks.
        v = _KITE_DEPTH.unpack(self._packed)
        d = self._divisor
        levels = [DepthLevel(v[i + 1] / d, v[i], v[i + 2]) for i in range(0, 30, 3)]
        self._bids = levels[:5]
        self._asks = levels[5:]

    @property
    def bids(self) -> Sequence[DepthLevel]:
        """Bid levels, best (highest) first as sent."""
        if self._bids is None:
            self._materialize()
        assert self._bids is not None
        return self._bids

    @property
    def asks(self) -> Sequence[DepthLevel]:
        """Ask levels, best (lowest) first as sent."""
        if self._asks is None:
            self._materialize()
        assert self._asks is not None
        return self._asks

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Depth):
            return NotImplemented
        return list(self.bids) == list(other.bids) and list(self.asks) == list(other.asks)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Depth(bids={list(self.bids)!r}, asks={list(self.asks)!r})"


_KITE_DEPTH = struct.Struct(">" + "IIHxx" * 10)


@attrs.define(slots=True)
class Tick:
    """One market-data update for one instrument, in the shape every broker fills.

    Attributes a packet kind does not carry are `None` (an LTP packet carries only `last_price`).
    Prices are in rupees (Kite's paise and currency scalings already applied).
    """

    broker: Broker
    instrument_token: int
    """The broker's numeric instrument id (Kite instrument_token; XTS ExchangeInstrumentID)."""
    mode: Mode
    """The amount of data this tick carries."""
    tradable: bool
    """False for indices."""
    last_price: float
    last_quantity: int | None = None
    average_price: float | None = None
    volume: int | None = None
    total_buy_quantity: int | None = None
    total_sell_quantity: int | None = None
    ohlc: Ohlc | None = None
    change: float | None = None
    """Percent change of `last_price` against the previous close (`ohlc.close`); 0.0 if close is 0."""
    last_trade_time: datetime | None = None
    exchange_time: datetime | None = None
    oi: int | None = None
    oi_day_high: int | None = None
    oi_day_low: int | None = None
    depth: Depth | None = None
    received_at: float = 0.0
    """Local receipt time, seconds since the UNIX epoch (`time.time()`), taken once per frame."""
    symbol: str | None = None
    """Exchange-qualified symbol such as ``"NSE:INFY"``; None until a manager resolves it."""
    segment: int | None = None
    """The broker's segment id for this instrument (Kite: ``token & 0xFF``; XTS: ExchangeSegment)."""


@attrs.frozen
class OrderUpdate:
    """An order postback pushed by the broker over the market-data socket (Kite ``type: order``)."""

    broker: Broker
    data: dict[str, Any]
    """The broker's order payload, as sent."""
    received_at: float

    @property
    def order_id(self) -> str | None:
        """The broker's order id, if the payload carries one."""
        value = self.data.get("order_id")
        return None if value is None else str(value)

    @property
    def status(self) -> str | None:
        """The order status (``COMPLETE``, ``CANCEL``, ``REJECTED``, ``UPDATE``...), if present."""
        value = self.data.get("status")
        return None if value is None else str(value)


@attrs.frozen
class BrokerMessage:
    """An informational message or alert from the broker (Kite ``type: message``)."""

    broker: Broker
    text: str
    received_at: float


@attrs.frozen
class BrokerError:
    """An application-level error the broker reported; the connection stays open (Kite ``type: error``)."""

    broker: Broker
    text: str
    received_at: float


# ---------------------------------------------------------------------------------------------------------
# Status events. They travel in the same stream as ticks so that a consumer sees, in order, exactly when
# its data could not flow.


@attrs.frozen
class Connected:
    """A connection to the broker is up (the WebSocket handshake completed)."""

    broker: Broker
    connection: int
    """Index of the connection within its feed or manager (0 for a single feed)."""
    at: float
    """When it happened, seconds since the UNIX epoch."""


@attrs.frozen
class Disconnected:
    """A connection was lost; ticks for its instruments stop until `Connected` comes again."""

    broker: Broker
    connection: int
    reason: str
    """Why, in words (never containing credentials)."""
    at: float


@attrs.frozen
class Reconnecting:
    """The feed will try to connect again after `delay` seconds; `attempt` counts from 1."""

    broker: Broker
    connection: int
    attempt: int
    delay: float
    at: float


@attrs.frozen
class Resubscribed:
    """After a reconnect, every instrument that was subscribed was requested again in its mode."""

    broker: Broker
    connection: int
    instruments: int
    """How many instruments were subscribed again."""
    at: float


StatusEvent: TypeAlias = Connected | Disconnected | Reconnecting | Resubscribed
"""Connection status events."""

Event: TypeAlias = Tick | OrderUpdate | BrokerMessage | BrokerError | StatusEvent
"""Anything a feed yields."""
