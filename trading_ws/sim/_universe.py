"""The simulators' instrument universe and their seeded random walk.

`UNIVERSE` is a small, fixed set of real instruments with their real Kite tokens where those are public
(NSE and BSE cash, the indices) and made-up but well-formed tokens for the December 2026 derivatives.
Every Kite token satisfies ``kite_token == (exchange_token << 8) | segment_id`` (kite-protocol.md section
6), and every instrument also carries its XTS address (ExchangeSegment and ExchangeInstrumentID).

`Market` moves the prices of those instruments (and, if asked, of any token at all) by a seeded random
walk and builds model `Tick` objects exactly as a client decodes them from the Kite wire: prices are
held as the integers the wire carries, so they survive the codec's divisor unchanged.

Nothing here does I/O or reads a clock: callers pass the time.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterable
from datetime import date, datetime
from typing import Final

import attrs

from .._model import Broker, Depth, DepthLevel, Mode, Ohlc, Tick, full_tick, ltp_tick, quote_tick
from ..brokers._timecache import TimeCache
from ..brokers.kite._codec import price_divisor

__all__ = [
    "KITE_CSV_HEADER",
    "KITE_SEGMENT_IDS",
    "UNIVERSE",
    "Instrument",
    "Market",
    "find_instrument",
    "kite_instruments_csv",
]

#: The Kite segment id (the token's low byte) of each instruments-CSV ``segment`` string.
KITE_SEGMENT_IDS: Final[dict[str, int]] = {
    "NSE": 1,
    "NFO-FUT": 2,
    "NFO-OPT": 2,
    "CDS-FUT": 3,
    "BSE": 4,
    "BCD-FUT": 6,
    "INDICES": 9,
    "NCO-FUT": 12,
}

_EXCHANGES: Final = frozenset({"NSE", "NFO", "CDS", "BCD", "NCO", "BSE"})
_INSTRUMENT_TYPES: Final = frozenset({"EQ", "FUT", "CE", "PE"})
# The exchange(s) each CSV segment string may belong to.
_SEGMENT_EXCHANGES: Final[dict[str, frozenset[str]]] = {
    "NSE": frozenset({"NSE"}),
    "NFO-FUT": frozenset({"NFO"}),
    "NFO-OPT": frozenset({"NFO"}),
    "CDS-FUT": frozenset({"CDS"}),
    "BSE": frozenset({"BSE"}),
    "BCD-FUT": frozenset({"BCD"}),
    "INDICES": frozenset({"NSE", "BSE"}),
    "NCO-FUT": frozenset({"NCO"}),
}

_INDICES_SEGMENT: Final = 9
#: Values are kept below 2**31: the protocol's fields are int32 in the docs and the JS client reads them
#: signed (kite-protocol.md 3.2), although the Python client reads them unsigned.
_MAX_WIRE: Final = 2**31 - 1


@attrs.frozen
class Instrument:
    """One tradable instrument or index, with its Kite and XTS identities.

    Raises:
        ValueError: (at construction) the token does not match ``(exchange_token << 8) | segment id`` of
            `kite_segment`, or the exchange, segment, instrument type or numbers are not consistent.
    """

    symbol: str
    """Exchange-qualified symbol, e.g. ``"NSE:INFY"``, ``"NSE:NIFTY 50"``, ``"NFO:NIFTY26DECFUT"``."""
    exchange: str
    """``NSE``, ``NFO``, ``CDS``, ``BCD``, ``NCO`` or ``BSE``."""
    tradingsymbol: str
    name: str
    kite_token: int
    """Kite ``instrument_token``: ``(exchange_token << 8) | segment id``."""
    exchange_token: int
    kite_segment: str
    """The instruments-CSV segment string (``NSE``, ``NFO-FUT``, ``NFO-OPT``, ``INDICES``...)."""
    instrument_type: str
    """``EQ`` (also used for indices, as Kite's CSV does), ``FUT``, ``CE`` or ``PE``."""
    expiry: date | None
    strike: float
    tick_size: float
    lot_size: int
    base_price: float
    """The previous session's close: where the random walk starts and what it reverts to."""
    xts_segment: int
    """XTS ExchangeSegment id (xts-protocol.md 4.11): NSECM 1, NSEFO 2, NSECD 3, NSECO 4, BSECM 11..."""
    xts_instrument_id: int
    """XTS ExchangeInstrumentID (the exchange token for exchange instruments; 26000... for indices)."""

    def __attrs_post_init__(self) -> None:
        segment_id = KITE_SEGMENT_IDS.get(self.kite_segment)
        if segment_id is None:
            raise ValueError(f"{self.symbol}: unknown Kite segment {self.kite_segment!r}")
        if self.exchange not in _EXCHANGES or self.exchange not in _SEGMENT_EXCHANGES[self.kite_segment]:
            raise ValueError(f"{self.symbol}: exchange {self.exchange!r} does not match {self.kite_segment}")
        if self.symbol != f"{self.exchange}:{self.tradingsymbol}":
            raise ValueError(f"{self.symbol}: symbol must be exchange:tradingsymbol")
        if self.kite_token != (self.exchange_token << 8) | segment_id or not 0 < self.kite_token <= 2**32 - 1:
            raise ValueError(
                f"{self.symbol}: kite_token {self.kite_token} != ({self.exchange_token} << 8) | {segment_id}"
            )
        if self.instrument_type not in _INSTRUMENT_TYPES:
            raise ValueError(f"{self.symbol}: unknown instrument type {self.instrument_type!r}")
        if (self.instrument_type == "EQ") != (self.expiry is None):
            raise ValueError(f"{self.symbol}: derivatives (and only they) have an expiry")
        if not (self.tick_size > 0 and self.lot_size > 0 and self.base_price > 0 and self.strike >= 0):
            raise ValueError(f"{self.symbol}: tick size, lot size and base price must be positive")
        divisor = price_divisor(self.kite_token)
        if round(self.base_price * divisor * 1.25) > _MAX_WIRE:
            raise ValueError(f"{self.symbol}: base price {self.base_price} is too large for the wire")

    @property
    def kite_segment_id(self) -> int:
        """The Kite segment id, ``kite_token & 0xFF`` (1 nse, 2 nfo, 3 cds, 4 bse, 6 bcd, 9 indices...)."""
        return self.kite_token & 0xFF

    @property
    def tradable(self) -> bool:
        """False for indices (Kite segment 9), as Kite's ticks say."""
        return self.kite_segment_id != _INDICES_SEGMENT


_DEC_2026_MONTHLY: Final = date(2026, 12, 29)  # last Tuesday of December 2026 (NSE F&O monthly expiry)
_DEC_2026_CURRENCY: Final = date(2026, 12, 29)  # two working days before the month's last working day
_DEC_2026_COMMODITY: Final = date(2026, 12, 31)  # last working day of the month


def _cash(
    exchange: str, tradingsymbol: str, name: str, exchange_token: int, base: float, xts_id: int
) -> Instrument:
    segment = "NSE" if exchange == "NSE" else "BSE"
    return Instrument(
        symbol=f"{exchange}:{tradingsymbol}",
        exchange=exchange,
        tradingsymbol=tradingsymbol,
        name=name,
        kite_token=exchange_token << 8 | KITE_SEGMENT_IDS[segment],
        exchange_token=exchange_token,
        kite_segment=segment,
        instrument_type="EQ",
        expiry=None,
        strike=0.0,
        tick_size=0.05,
        lot_size=1,
        base_price=base,
        xts_segment=1 if exchange == "NSE" else 11,
        xts_instrument_id=xts_id,
    )


def _index(exchange: str, name: str, exchange_token: int, base: float, xts_id: int) -> Instrument:
    # Index values move in steps of 0.01; the simulator gives them tick size 0.01 and lot size 1.
    return Instrument(
        symbol=f"{exchange}:{name}",
        exchange=exchange,
        tradingsymbol=name,
        name=name,
        kite_token=exchange_token << 8 | _INDICES_SEGMENT,
        exchange_token=exchange_token,
        kite_segment="INDICES",
        instrument_type="EQ",
        expiry=None,
        strike=0.0,
        tick_size=0.01,
        lot_size=1,
        base_price=base,
        # XTS streams indices on the cash segments: NIFTY 50 26000, NIFTY BANK 26001 on NSECM (xts-protocol
        # md 4.1); SENSEX 26065 on BSECM is what public XTS client code subscribes to (not in the doc).
        xts_segment=1 if exchange == "NSE" else 11,
        xts_instrument_id=xts_id,
    )


def _derivative(
    exchange: str,
    kite_segment: str,
    tradingsymbol: str,
    name: str,
    exchange_token: int,
    instrument_type: str,
    expiry: date,
    *,
    strike: float = 0.0,
    tick_size: float,
    lot_size: int,
    base: float,
    xts_segment: int,
) -> Instrument:
    return Instrument(
        symbol=f"{exchange}:{tradingsymbol}",
        exchange=exchange,
        tradingsymbol=tradingsymbol,
        name=name,
        kite_token=exchange_token << 8 | KITE_SEGMENT_IDS[kite_segment],
        exchange_token=exchange_token,
        kite_segment=kite_segment,
        instrument_type=instrument_type,
        expiry=expiry,
        strike=strike,
        tick_size=tick_size,
        lot_size=lot_size,
        base_price=base,
        xts_segment=xts_segment,
        # XTS addresses exchange instruments by their exchange token on every segment.
        xts_instrument_id=exchange_token,
    )


UNIVERSE: Final[tuple[Instrument, ...]] = (
    # NSE cash: real Kite tokens (408065 = 1594 << 8 | 1 ...); XTS NSECM uses the exchange token.
    _cash("NSE", "INFY", "INFOSYS", 1594, 1561.30, 1594),
    _cash("NSE", "RELIANCE", "RELIANCE INDUSTRIES", 2885, 1478.60, 2885),
    _cash("NSE", "TCS", "TATA CONSULTANCY SERV LT", 11536, 3142.20, 11536),
    _cash("NSE", "HDFCBANK", "HDFC BANK", 1333, 991.35, 1333),
    _cash("NSE", "SBIN", "STATE BANK OF INDIA", 3045, 958.45, 3045),
    # BSE cash: INFY's BSE scrip code 500209 -> Kite token 128053508 (segment 4); XTS BSECM 11.
    _cash("BSE", "INFY", "INFOSYS", 500209, 1561.50, 500209),
    # Indices (Kite segment 9): NIFTY 50 256265, NIFTY BANK 260105, SENSEX 265.
    _index("NSE", "NIFTY 50", 1001, 25960.55, 26000),
    _index("NSE", "NIFTY BANK", 1016, 59013.20, 26001),
    _index("BSE", "SENSEX", 1, 84950.35, 26065),
    # NSE F&O, December 2026 monthly contracts (tokens made up, well formed); XTS NSEFO 2.
    _derivative(
        "NFO",
        "NFO-FUT",
        "NIFTY26DECFUT",
        "NIFTY",
        52168,
        "FUT",
        _DEC_2026_MONTHLY,
        tick_size=0.05,
        lot_size=65,
        base=26210.40,
        xts_segment=2,
    ),
    _derivative(
        "NFO",
        "NFO-OPT",
        "NIFTY26DEC26000CE",
        "NIFTY",
        52170,
        "CE",
        _DEC_2026_MONTHLY,
        strike=26000.0,
        tick_size=0.05,
        lot_size=65,
        base=1432.65,
        xts_segment=2,
    ),
    _derivative(
        "NFO",
        "NFO-OPT",
        "NIFTY26DEC26000PE",
        "NIFTY",
        52171,
        "PE",
        _DEC_2026_MONTHLY,
        strike=26000.0,
        tick_size=0.05,
        lot_size=65,
        base=1048.30,
        xts_segment=2,
    ),
    # NSE currency (Kite segment 3, divisor 1e7, four decimals); XTS NSECD 3.
    _derivative(
        "CDS",
        "CDS-FUT",
        "USDINR26DECFUT",
        "USDINR",
        1246,
        "FUT",
        _DEC_2026_CURRENCY,
        tick_size=0.0025,
        lot_size=1,
        base=84.1275,
        xts_segment=3,
    ),
    # BSE currency (Kite segment 6, divisor 1e4); XTS BSECD 13.
    _derivative(
        "BCD",
        "BCD-FUT",
        "EURINR26DECFUT",
        "EURINR",
        1163,
        "FUT",
        _DEC_2026_CURRENCY,
        tick_size=0.0025,
        lot_size=1,
        base=97.4550,
        xts_segment=13,
    ),
    # NSE commodity (Kite segment 12, divisor 1e4, kiteconnect >= 5.2.2); XTS NSECO 4 (xts-protocol.md 4.11
    # lists NSECO 4 as the NSE commodity segment).
    _derivative(
        "NCO",
        "NCO-FUT",
        "ALUMINI26DECFUT",
        "ALUMINI",
        121900,
        "FUT",
        _DEC_2026_COMMODITY,
        tick_size=0.05,
        lot_size=1,
        base=378.20,
        xts_segment=4,
    ),
)
"""The shipped instruments: five NSE stocks, one BSE stock, three indices, a NIFTY future and two options,
and one future each on NSE currency, BSE currency and NSE commodity (one per Kite price divisor)."""

_BY_SYMBOL: Final[dict[str, Instrument]] = {i.symbol: i for i in UNIVERSE}
_BY_TOKEN: Final[dict[int, Instrument]] = {i.kite_token: i for i in UNIVERSE}
assert len(_BY_SYMBOL) == len(_BY_TOKEN) == len(UNIVERSE)


def find_instrument(symbol_or_token: str | int) -> Instrument:
    """Look an instrument of `UNIVERSE` up by symbol (``"NSE:INFY"``) or Kite token (``408065``).

    Does not block.

    Raises:
        KeyError: no instrument of the universe has that symbol or token.
    """
    found = (
        _BY_TOKEN.get(symbol_or_token)
        if isinstance(symbol_or_token, int)
        else _BY_SYMBOL.get(symbol_or_token)
    )
    if found is None:
        known = ", ".join(sorted(_BY_SYMBOL))
        raise KeyError(f"no instrument {symbol_or_token!r} in the simulator universe (known: {known})")
    return found


KITE_CSV_HEADER: Final = (
    "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,"
    "instrument_type,segment,exchange"
)
"""The header row of Kite's instruments CSV (kite-protocol.md section 6)."""


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def kite_instruments_csv(instruments: Iterable[Instrument] = UNIVERSE) -> str:
    """Render instruments as Kite's instruments CSV (``GET /instruments``, uncompressed), header first.

    ``last_price`` is the base price (the file is generated once a day, so it holds the previous close);
    ``expiry`` is ISO (``2026-12-29``) or empty; integral numbers are written without a fraction
    (``0``, ``26000``). Lines end with ``\\n``. Does not block; raises nothing.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(KITE_CSV_HEADER.split(","))
    for i in instruments:
        writer.writerow(
            [
                i.kite_token,
                i.exchange_token,
                i.tradingsymbol,
                i.name,
                _number(i.base_price),
                "" if i.expiry is None else i.expiry.isoformat(),
                _number(i.strike),
                _number(i.tick_size),
                i.lot_size,
                i.instrument_type,
                i.kite_segment,
                i.exchange,
            ]
        )
    return out.getvalue()


# ---------------------------------------------------------------------------------------------------------
# The random walk.

# Segments whose instruments are derivatives (they carry open interest): nfo, cds, bfo, bcd, mcx, mcxsx, nco.
_DERIVATIVE_SEGMENTS: Final = frozenset({2, 3, 5, 6, 7, 8, 12})
_STEP_VOLATILITY: Final = 0.0002  # standard deviation of one step, relative to the price (2 basis points)
_REVERSION: Final = 0.002  # share of the distance to the base price recovered each step
_BAND: Final = 0.2  # prices stay within +-20% of the base price (the widest exchange circuit band)
_IRWIN_HALL_MEAN: Final = 4 * 4095 / 2
_IRWIN_HALL_STD: Final = (4 * (4096**2 - 1) / 12) ** 0.5


@attrs.define(slots=True, eq=False)
class _State:
    """One instrument's market, in wire integers (prices in raw units: rupees x divisor)."""

    token: int
    divisor: float
    tradable: bool
    derivative: bool
    tick: int
    lot: int
    base: int
    floor: int
    ceiling: int
    last: int
    open: int
    high: int
    low: int
    close: int
    last_quantity: int
    volume: int
    turnover: int
    average: int
    buy_quantity: int
    sell_quantity: int
    oi: int
    oi_high: int
    oi_low: int
    last_trade_time: int
    noise: int
    depth: Depth | None = None
    """This step's book, built the first time a full tick asks for it (then shared: depth is a value)."""


def _new_state(
    token: int, base_price: float, tick_size: float, lot_size: int, derivative: bool, rng: random.Random
) -> _State:
    divisor = price_divisor(token)
    tick = max(1, round(tick_size * divisor))
    base = max(tick, round(base_price * divisor / tick) * tick)
    floor = max(tick, round(base * (1 - _BAND) / tick) * tick)
    ceiling = min(_MAX_WIRE // tick * tick, round(base * (1 + _BAND) / tick) * tick)
    # The day opens with a gap of up to about half a percent from the previous close.
    gap = round(rng.gauss(0.0, 0.002) * base / tick) * tick
    opening = min(max(base + gap, floor), ceiling)
    tradable = token & 0xFF != _INDICES_SEGMENT
    volume = lot_size * rng.randint(1_000, 100_000) if tradable else 0
    oi = lot_size * rng.randint(10_000, 200_000) if tradable and derivative else 0
    return _State(
        token=token,
        divisor=divisor,
        tradable=tradable,
        derivative=derivative,
        tick=tick,
        lot=lot_size,
        base=base,
        floor=floor,
        ceiling=ceiling,
        last=opening,
        open=opening,
        high=opening,
        low=opening,
        close=base,
        last_quantity=lot_size * rng.randint(1, 20) if tradable else 0,
        volume=volume,
        turnover=volume * opening,
        average=opening if tradable else 0,
        buy_quantity=lot_size * rng.randint(5_000, 50_000) if tradable else 0,
        sell_quantity=lot_size * rng.randint(5_000, 50_000) if tradable else 0,
        oi=oi,
        oi_high=oi,
        oi_low=oi,
        last_trade_time=0,
        noise=rng.getrandbits(64),
    )


def _synthetic_state(token: int, seed: int) -> _State:
    """A made-up instrument for a token outside the universe, derived from the token (and the seed)."""
    segment = token & 0xFF
    rng = random.Random(token * 1_000_003 + seed)
    if segment in (3, 6):  # currencies: a USDINR-like price, four decimals
        tick_size = 0.0025
        base_price = 50 + (token * 2654435761 % 4_000_000) / 100_000
    else:
        tick_size = 0.05
        base_price = 50 + (token * 2654435761 % 500_000) / 100
    return _new_state(token, base_price, tick_size, 1, segment in _DERIVATIVE_SEGMENTS, rng)


def _instrument_tuple(instruments: Iterable[Instrument]) -> tuple[Instrument, ...]:
    return tuple(instruments)


@attrs.define(eq=False)
class Market:
    """A seeded random walk over instruments, and the Kite ticks it implies.

    Every `step` moves each price by a small random number of ticks (about two basis points per step,
    pulled back towards the base price and kept within +-20% of it), records a trade (last quantity,
    volume, average price), moves the total buy/sell quantities and, for derivatives, open interest. The
    day's open, high and low are tracked from the creation of the market; the previous close is the base
    price. Identical seeds and identical calls give identical ticks.

    Tokens outside `instruments` have no data (the real server does not validate tokens and sends nothing
    for them), unless `synthetic` is true: then any token ticks, with a base price derived from the token
    (useful for load tests with thousands of tokens). A synthetic token joins the walk the first time it
    is asked for.

    Args:
        seed: the seed of the walk.
        instruments: the instruments to simulate (the shipped `UNIVERSE` by default).
        synthetic: make tokens outside `instruments` tick too.

    Nothing blocks; nothing reads a clock (the caller passes ``now``, seconds since the UNIX epoch).
    """

    seed: int = 0
    instruments: tuple[Instrument, ...] = attrs.field(default=UNIVERSE, converter=_instrument_tuple)
    synthetic: bool = False
    _rng: random.Random = attrs.field(init=False, repr=False)
    _states: dict[int, _State] = attrs.field(init=False, repr=False, factory=dict)
    _steps: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        for instrument in self.instruments:
            self._states[instrument.kite_token] = _new_state(
                instrument.kite_token,
                instrument.base_price,
                instrument.tick_size,
                instrument.lot_size,
                instrument.instrument_type != "EQ",
                self._rng,
            )

    @property
    def steps(self) -> int:
        """How many times `step` has run."""
        return self._steps

    def has_data(self, token: int) -> bool:
        """Whether `tick` gives data for this token (it is simulated, or the market is synthetic)."""
        return self.synthetic or token in self._states

    def _state(self, token: int) -> _State:
        state = self._states.get(token)
        if state is None:
            if not self.synthetic or not 0 <= token <= 0xFFFFFFFF:
                raise KeyError(f"token {token} is not simulated (and the market is not synthetic)")
            state = self._states[token] = _synthetic_state(token, self.seed)
        return state

    def step(self, now: float) -> None:
        """Move every price one step and record a trade at ``now`` (UNIX seconds). Raises nothing."""
        self._steps += 1
        getrandbits = self._rng.getrandbits
        trade_time = max(0, int(now))
        for s in self._states.values():
            r = getrandbits(64)
            # An approximately normal draw (Irwin-Hall of four 12-bit uniforms) from one 64-bit number.
            z = ((r & 0xFFF) + (r >> 12 & 0xFFF) + (r >> 24 & 0xFFF) + (r >> 36 & 0xFFF)) - _IRWIN_HALL_MEAN
            move = z / _IRWIN_HALL_STD * s.last * _STEP_VOLATILITY + (s.base - s.last) * _REVERSION
            last = s.last + round(move / s.tick) * s.tick
            s.last = last = s.floor if last < s.floor else s.ceiling if last > s.ceiling else last
            if last > s.high:
                s.high = last
            elif last < s.low:
                s.low = last
            s.noise = r
            s.depth = None
            if not s.tradable:
                continue
            quantity = s.lot * (1 + (r >> 48 & 0x1F))
            if s.volume + quantity <= _MAX_WIRE:
                s.volume += quantity
                s.turnover += quantity * last
                s.average = round(s.turnover / s.volume)
            s.last_quantity = quantity
            s.last_trade_time = trade_time
            s.buy_quantity = min(_MAX_WIRE, max(s.lot, s.buy_quantity + s.lot * ((r >> 53 & 0x3F) - 31)))
            s.sell_quantity = min(_MAX_WIRE, max(s.lot, s.sell_quantity + s.lot * ((r >> 58 & 0x3F) - 31)))
            if s.derivative:
                s.oi = oi = min(_MAX_WIRE, max(s.lot, s.oi + s.lot * ((r >> 40 & 0xFF) - 127)))
                if oi > s.oi_high:
                    s.oi_high = oi
                elif oi < s.oi_low:
                    s.oi_low = oi

    def price(self, token: int) -> float:
        """The last price of a token, in rupees.

        Raises:
            KeyError: the token has no data (see `has_data`).
        """
        s = self._state(token)
        return s.last / s.divisor

    def tick(self, token: int, mode: Mode, now: float) -> Tick:
        """The `Tick` a Kite client decodes for this token in this mode, with ``exchange_time`` ``now``.

        The tick carries exactly the fields the packet of that mode carries (an LTP tick only the price;
        an index tick no quantities; FULL adds depth, open interest and the timestamps, as timezone-aware
        IST datetimes of whole seconds); `segment` is set, `symbol` is None, and `received_at` is ``now``.
        Encoding it with the codec's ``encode_frame`` and decoding it gives it back unchanged (except for
        `received_at`). Does not block.

        Raises:
            KeyError: the token has no data (see `has_data`).
        """
        s = self._state(token)
        d = s.divisor
        segment = token & 0xFF
        last = s.last / d
        if mode is Mode.LTP:
            return ltp_tick(
                Broker.KITE, token, s.tradable, last, None, None, received_at=now, segment=segment
            )
        close = s.close / d
        full = mode is Mode.FULL
        tradable = s.tradable
        # An index carries no quantities and no depth; FULL adds the times, open interest and depth.
        return (full_tick if full else quote_tick)(
            Broker.KITE,
            token,
            tradable,
            last,
            last_quantity=s.last_quantity if tradable else None,
            average_price=s.average / d if tradable else None,
            volume=s.volume if tradable else None,
            total_buy_quantity=s.buy_quantity if tradable else None,
            total_sell_quantity=s.sell_quantity if tradable else None,
            ohlc=Ohlc(s.open / d, s.high / d, s.low / d, close),
            change=(last - close) * 100 / close if close else 0.0,
            last_trade_time=_datetime(s.last_trade_time) if full and tradable else None,
            exchange_time=_datetime(int(now)) if full else None,
            depth=(s.depth or _depth(s)) if full and tradable else None,
            received_at=now,
            segment=segment,
            oi=s.oi if full and tradable else None,
            oi_day_high=s.oi_high if full and tradable else None,
            oi_day_low=s.oi_low if full and tradable else None,
        )


#: The simulator's timestamps as the codecs decode them (the one cache type of the brokers' codecs).
_TIMES: Final = TimeCache(max_entries=1024)


def _datetime(seconds: int) -> datetime | None:
    # As the codec decodes a timestamp: 0 (never) is None.
    return _TIMES[seconds] if seconds > 0 else None


# An odd 128-bit constant: multiplying the step's 64-bit noise by it spreads the bits over 192.
_DEPTH_MIX: Final = 0x9E3779B97F4A7C15F39CC0605CEDC835


def _depth(s: _State) -> Depth:
    """Five bids from the last price down and five asks from one tick above it; sizes (1-256 lots) and
    order counts (1-16) come from the step's noise. Built once per step and cached in the state."""
    bits = (s.noise | 1) * _DEPTH_MIX >> 16
    d = s.divisor
    tick = s.tick
    last = s.last
    lot = s.lot
    levels: list[DepthLevel] = []
    for i in range(10):
        chunk = bits >> (12 * i) & 0xFFF
        price = max(tick, last - i * tick) if i < 5 else last + (i - 4) * tick
        levels.append(DepthLevel(price / d, lot * (1 + (chunk & 0xFF)), 1 + (chunk >> 8)))
    s.depth = depth = Depth(levels[:5], levels[5:])
    return depth
