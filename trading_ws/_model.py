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
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Protocol, TypeAlias

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

    Each member's `rank` is that order as an int: 0 for LTP, 1 for QUOTE, 2 for FULL.
    """

    #: 0 for LTP, 1 for QUOTE, 2 for FULL. A plain attribute of each member (not a property), as cheap to
    #: read as a dictionary lookup, for code that counts or compares modes per tick.
    rank: int

    LTP = "ltp"
    """Last traded price only."""
    QUOTE = "quote"
    """Prices, quantities and OHLC, without market depth."""
    FULL = "full"
    """Everything: quote plus timestamps, open interest and five levels of market depth."""

    def __init__(self, value: str) -> None:
        # Members are created in the order they are written: LTP, QUOTE, FULL.
        self.rank = len(type(self).__members__)

    def __lt__(self, other: object) -> bool:
        theirs = _rank_of(other)
        return NotImplemented if theirs is None else self.rank < theirs

    def __le__(self, other: object) -> bool:
        theirs = _rank_of(other)
        return NotImplemented if theirs is None else self.rank <= theirs

    def __gt__(self, other: object) -> bool:
        theirs = _rank_of(other)
        return NotImplemented if theirs is None else self.rank > theirs

    def __ge__(self, other: object) -> bool:
        theirs = _rank_of(other)
        return NotImplemented if theirs is None else self.rank >= theirs


_LTP = Mode.LTP


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
        return Mode(other).rank
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

    ``Depth(bids, asks)`` takes two sequences of `DepthLevel`. Equality, hashing (none: depth is mutable)
    and repr behave as for a plain two-field value class.

    A broker's codec may return a private subclass that keeps the decoded wire data and builds its
    `DepthLevel` objects the first time `bids` or `asks` is read (then keeps them): ten objects per packet
    would otherwise be most of the cost of decoding a tick that many consumers only read the last price
    of. Such a subclass is made with ``object.__new__``, sets ``_bids`` and ``_asks`` to None and
    implements `_materialize`; it compares, prints and pickles as the plain value does.
    """

    __slots__ = ("_asks", "_bids")

    def __init__(self, bids: Sequence[DepthLevel], asks: Sequence[DepthLevel]) -> None:
        self._bids: Sequence[DepthLevel] | None = bids
        self._asks: Sequence[DepthLevel] | None = asks

    def _materialize(self) -> None:
        """Set ``_bids`` and ``_asks`` from the wire data (the hook of a lazy subclass; a `Depth` built
        with its levels never calls it)."""
        raise NotImplementedError(f"{type(self).__name__} has no wire data to build its levels from")

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


# The field order is the order of Tick's positional arguments, which applications may use: tests/test_model.py
# pins it. The library itself builds ticks with the per-mode builders below (ltp_tick, quote_tick, full_tick),
# which set every field by name; a field added here must be added to them (a test checks they set all).
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


# ---------------------------------------------------------------------------------------------------------
# Hot-path construction, for the decoders. ``obj = _new_object(Cls)`` then setting every field builds the
# same object as ``Cls(...)`` (these attrs classes define no __new__, no validators, no converters) but
# skips type.__call__: about 140 ns less per Tick on the project's machines. The tick builders set the
# fields by name, so their callers do not depend on the order of Tick's fields; each costs what the
# positional ``Tick.__init__`` call it replaces cost (one Python call, one store per field).

_new_object = object.__new__
_init_ohlc = Ohlc.__init__
_init_level = DepthLevel.__init__


def ltp_tick(
    broker: Broker,
    instrument_token: int,
    tradable: bool,
    last_price: float,
    last_quantity: int | None,
    exchange_time: datetime | None,
    received_at: float,
    segment: int | None,
    symbol: str | None = None,
) -> Tick:
    """A `Tick` of mode LTP: the last price (XTS also sends the last quantity and the exchange time),
    every other field None. Does not block, raises nothing."""
    tick = _new_object(Tick)
    tick.broker = broker
    tick.instrument_token = instrument_token
    tick.mode = _LTP
    tick.tradable = tradable
    tick.last_price = last_price
    tick.last_quantity = last_quantity
    tick.average_price = None
    tick.volume = None
    tick.total_buy_quantity = None
    tick.total_sell_quantity = None
    tick.ohlc = None
    tick.change = None
    tick.last_trade_time = None
    tick.exchange_time = exchange_time
    tick.oi = None
    tick.oi_day_high = None
    tick.oi_day_low = None
    tick.depth = None
    tick.received_at = received_at
    tick.symbol = symbol
    tick.segment = segment
    return tick


class BookTickBuilder(Protocol):
    """The signature of `quote_tick` and `full_tick`, which differ only in the mode they stamp."""

    __name__: str

    def __call__(
        self,
        broker: Broker,
        instrument_token: int,
        tradable: bool,
        last_price: float,
        last_quantity: int | None,
        average_price: float | None,
        volume: int | None,
        total_buy_quantity: int | None,
        total_sell_quantity: int | None,
        ohlc: Ohlc | None,
        change: float | None,
        last_trade_time: datetime | None,
        exchange_time: datetime | None,
        depth: Depth | None,
        received_at: float,
        segment: int | None,
        oi: int | None = None,
        oi_day_high: int | None = None,
        oi_day_low: int | None = None,
        symbol: str | None = None,
    ) -> Tick:
        """A `Tick` of the builder's mode with these fields. Does not block, raises nothing."""
        ...


def _book_tick_builder(mode: Mode) -> BookTickBuilder:
    def build(
        broker: Broker,
        instrument_token: int,
        tradable: bool,
        last_price: float,
        last_quantity: int | None,
        average_price: float | None,
        volume: int | None,
        total_buy_quantity: int | None,
        total_sell_quantity: int | None,
        ohlc: Ohlc | None,
        change: float | None,
        last_trade_time: datetime | None,
        exchange_time: datetime | None,
        depth: Depth | None,
        received_at: float,
        segment: int | None,
        oi: int | None = None,
        oi_day_high: int | None = None,
        oi_day_low: int | None = None,
        symbol: str | None = None,
    ) -> Tick:
        tick = _new_object(Tick)
        tick.broker = broker
        tick.instrument_token = instrument_token
        tick.mode = mode
        tick.tradable = tradable
        tick.last_price = last_price
        tick.last_quantity = last_quantity
        tick.average_price = average_price
        tick.volume = volume
        tick.total_buy_quantity = total_buy_quantity
        tick.total_sell_quantity = total_sell_quantity
        tick.ohlc = ohlc
        tick.change = change
        tick.last_trade_time = last_trade_time
        tick.exchange_time = exchange_time
        tick.oi = oi
        tick.oi_day_high = oi_day_high
        tick.oi_day_low = oi_day_low
        tick.depth = depth
        tick.received_at = received_at
        tick.symbol = symbol
        tick.segment = segment
        return tick

    build.__name__ = build.__qualname__ = f"{mode.value}_tick"
    build.__doc__ = (
        f"A `Tick` of mode {mode.name} with these fields (open interest and the symbol None unless "
        "given). Does not block, raises nothing."
    )
    return build


#: A `Tick` of mode QUOTE (see `BookTickBuilder` for the arguments).
quote_tick: Final = _book_tick_builder(Mode.QUOTE)
#: A `Tick` of mode FULL (see `BookTickBuilder` for the arguments).
full_tick: Final = _book_tick_builder(Mode.FULL)


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
