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

from ._errors import ConfigurationError

__all__ = [
    "IST",
    "Broker",
    "BrokerError",
    "BrokerMessage",
    "Candle",
    "Connected",
    "Depth",
    "DepthLevel",
    "Disconnected",
    "Event",
    "Gap",
    "InstrumentPropertyChange",
    "MarketStatus",
    "Mode",
    "Ohlc",
    "OpenInterest",
    "OrderUpdate",
    "Reconnecting",
    "Resubscribed",
    "Stale",
    "StatusEvent",
    "Tick",
    "coerce_mode",
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

    Modes are ordered by how much they carry: ``Mode.LTP < Mode.QUOTE < Mode.FULL`` (a plain string
    such as ``"quote"`` compares by the same rank; an unknown one raises TypeError).
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
        rank = _rank_of(other)
        return NotImplemented if rank is None else _MODE_RANK[self] < rank

    def __le__(self, other: object) -> bool:
        rank = _rank_of(other)
        return NotImplemented if rank is None else _MODE_RANK[self] <= rank

    def __gt__(self, other: object) -> bool:
        rank = _rank_of(other)
        return NotImplemented if rank is None else _MODE_RANK[self] > rank

    def __ge__(self, other: object) -> bool:
        rank = _rank_of(other)
        return NotImplemented if rank is None else _MODE_RANK[self] >= rank


_MODE_RANK = {Mode.LTP: 0, Mode.QUOTE: 1, Mode.FULL: 2}


def coerce_mode(value: object) -> Mode:
    """`value` as a `Mode`: a member, or one of its string values (``"ltp"``, ``"quote"``, ``"full"``).

    Every public entry point that takes a mode calls this before it records or sends anything, so a bad
    mode is refused up front. Does not block.

    Raises:
        ConfigurationError: anything else (``"FULL"``, ``"depth"``, ``2``, None...); the message lists the
            accepted values.
    """
    if type(value) is Mode:
        return value
    if isinstance(value, str):
        try:
            return Mode(value)
        except ValueError:
            pass
    accepted = ", ".join(repr(m.value) for m in Mode)
    raise ConfigurationError(f"mode must be a Mode or one of {accepted}, got {value!r:.40}")


def _rank_of(other: object) -> int | None:
    # Plain strings compare by rank too ("quote" < Mode.FULL), never alphabetically; an unknown string is
    # a TypeError, and other types are not comparable (NotImplemented).
    if not isinstance(other, str):
        return None
    try:
        return _MODE_RANK[Mode(other)]
    except ValueError:
        raise TypeError(f"cannot compare a Mode with {other!r}") from None


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
        # ``new(DepthLevel); init(level, ...)`` is ``DepthLevel(...)`` without type.__call__ (faster).
        d = self._divisor
        new = _new_object
        init = _init_level
        levels: list[DepthLevel] = []
        append = levels.append
        for quantity, price, orders in _KITE_LEVEL.iter_unpack(self._packed):
            level = new(DepthLevel)
            init(level, price / d, quantity, orders)
            append(level)
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


_KITE_LEVEL = struct.Struct(">IIHxx")


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


# Hot-path construction, for the decoders: ``obj = _new_object(Cls); _init_cls(obj, ...)`` builds the same
# object as ``Cls(...)`` (these attrs classes define no __new__), but a Python-to-Python call of __init__
# skips type.__call__: about 140 ns less per Tick on the project's machines.
_new_object = object.__new__
_init_tick = Tick.__init__
_init_ohlc = Ohlc.__init__
_init_level = DepthLevel.__init__


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


@attrs.frozen
class Gap:
    """Ticks for `symbols` could not arrive between `start` and `end` (both UNIX-epoch seconds).

    A manager sends it to a subscription after the connection carrying those symbols is back and
    subscribed again; `start` is when the loss was noticed, `end` when data could flow again.
    """

    broker: Broker
    connection: int
    symbols: tuple[str, ...]
    start: float
    end: float

    @property
    def duration(self) -> float:
        """Length of the gap in seconds."""
        return self.end - self.start


@attrs.frozen
class Stale:
    """No tick for `symbols` for at least `after` seconds while their connection was up (or since they
    were subscribed, for symbols that never ticked: an acknowledged but silent subscription).

    A manager with ``stale_after`` set sends it once per quiet spell; the next tick of a symbol is the
    sign it is flowing again. A quiet market and a muted feed look alike on the wire: this tells you
    which instruments to check, it does not reconnect.
    """

    broker: Broker
    symbols: tuple[str, ...]
    after: float
    at: float


StatusEvent: TypeAlias = Connected | Disconnected | Reconnecting | Resubscribed | Gap | Stale
"""Connection status events."""


# ---------------------------------------------------------------------------------------------------------
# Other market-data events (Symphony XTS message codes 1505, 1510, 1507 and 1105). Candles, open interest
# and property changes can come once per instrument per minute or faster, so they are `attrs.define`
# like `Tick`; market status messages are rare and frozen.


@attrs.define(slots=True)
class Candle:
    """One bar (XTS 1505: one minute) for one instrument."""

    broker: Broker
    instrument_token: int
    segment: int | None
    bar_time: datetime
    """The bar's time as the broker stamps it (timezone-aware)."""
    open: float
    high: float
    low: float
    close: float
    volume: int
    """Quantity traded within the bar."""
    open_interest: int | None
    received_at: float
    """Local receipt time, seconds since the UNIX epoch."""
    symbol: str | None = None
    """Exchange-qualified symbol such as ``"NSE:INFY"``; None until a manager resolves it."""


@attrs.define(slots=True)
class OpenInterest:
    """An open-interest update for one derivative (XTS 1510)."""

    broker: Broker
    instrument_token: int
    segment: int | None
    open_interest: int
    exchange_time: datetime | None
    received_at: float
    symbol: str | None = None


@attrs.frozen
class MarketStatus:
    """A market (session) status message for a whole segment (XTS 1507), e.g. the pre-open starting."""

    broker: Broker
    segment: int | None
    message: str
    """The exchange's text, e.g. ``"THE NORMAL MARKET HAS PREOPENED FOR 22 JAN 2021"``."""
    trading_session: int | None
    """The broker's session code (XTS: not a verified enumeration), None if absent."""
    exchange_time: datetime | None
    received_at: float
    market_type: int | None = None
    """The broker's market type code (XTS ``maketType``, 1 = normal), None if absent."""


@attrs.define(slots=True)
class InstrumentPropertyChange:
    """Instrument properties the exchange changed intraday (XTS 1105: price bands, tick size...)."""

    broker: Broker
    instrument_token: int
    segment: int | None
    properties: dict[str, str]
    """Property name (such as ``"HighExecBand"``) -> value as sent; an unknown property keeps its numeric
    code as the key."""
    received_at: float


Event: TypeAlias = (
    Tick
    | OrderUpdate
    | BrokerMessage
    | BrokerError
    | StatusEvent
    | Candle
    | OpenInterest
    | MarketStatus
    | InstrumentPropertyChange
)
"""Anything a feed yields."""
