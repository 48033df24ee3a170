"""The XTS instrument master: parse the ``/instruments/master`` result text, and render it back.

``POST /apimarketdata/instruments/master`` answers with ``result`` = one string (xts-protocol.md section 5):
rows separated by ``\\n``, fields by ``|``, no header, the segment *name* first. Three row layouts:

* **cash (22 fields)**: ``ExchangeSegment|ExchangeInstrumentID|InstrumentType|Name|Description|Series|
  NameWithSeries|InstrumentID|PriceBand.High|PriceBand.Low|FreezeQty|TickSize|LotSize|Multiplier|
  DisplayName|ISIN|PriceNumerator|PriceDenominator|DetailedDescription|ExtendedSurvIndicator|
  CautionIndicator|GSMIndicator``
* **options (23 fields)**: the first 14 as above, then ``UnderlyingInstrumentId|UnderlyingIndexName|
  ContractExpiration|StrikePrice|OptionType|DisplayName|PriceNumerator|PriceDenominator|
  DetailedDescription``
* **futures and spreads (21 fields)**: as options, without ``StrikePrice|OptionType``.

Choices (the reference does not settle these):

* A row of a cash segment (a name ending in ``CM``: NSECM, BSECM, MSECM...) is read with the cash layout
  and needs at least its first 15 fields (through DisplayName; ISIN and the rest are optional, so an older
  or shorter cash row still parses). Any other segment is read as derivatives by field count: 23 is an
  option, 21 a future or spread; other counts are malformed.
* Malformed rows: `parse_master` raises `DecodeError` naming the 1-based line number (and carrying the
  line as ``raw``); `parse_master_lenient` skips them and returns their errors (count them with ``len``).
  Blank lines and a trailing ``\\r`` are ignored.
* ``OptionType`` 3 is CE and 4 is PE (the text ``CE``/``PE`` is accepted too); anything else is None.
  ``UnderlyingInstrumentId`` -1 (index derivatives) is None. Empty text fields are None. ``FreezeQty`` may
  be fractional text and is floored. ``ContractExpiration`` (``2026-01-27T14:30:00``) keeps its date.
* The exchange-qualified `XtsInstrument.symbol`: NSECM -> ``NSE:<Name>`` for series EQ and
  ``NSE:<Name>-<Series>`` for other series (the Kite convention, e.g. ``NSE:IDEA-BE``); BSECM ->
  ``BSE:<Name>``; derivatives -> ``<exchange>:<Description>`` (e.g. ``NFO:NIFTY26DECFUT``) with NSEFO -> NFO,
  NSECD -> CDS, BSEFO -> BFO, MCXFO -> MCX; any other segment keeps its XTS name as the prefix
  (``NSECO:...``), with the Name for cash segments and the Description otherwise.

Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date
from typing import Final

import attrs

from ..._errors import DecodeError
from ..._scrub import scrub

__all__ = [
    "EXCHANGE_BY_SEGMENT",
    "SEGMENT_IDS",
    "XtsInstrument",
    "parse_master",
    "parse_master_lenient",
    "parse_master_row",
    "render_master",
]

#: XTS ExchangeSegment names -> numbers (section 4.11; NODE's MSEI* spellings too).
SEGMENT_IDS: Final[dict[str, int]] = {
    "NSECM": 1,
    "NSEFO": 2,
    "NSECD": 3,
    "NSECO": 4,
    "SLBM": 5,
    "OFS": 6,
    "NIFSC": 7,
    "BSECM": 11,
    "BSEFO": 12,
    "BSECD": 13,
    "BSECO": 14,
    "NCDEX": 21,
    "MSECM": 41,
    "MSEFO": 42,
    "MSECD": 43,
    "MSEICM": 41,
    "MSEIFO": 42,
    "MSEICD": 43,
    "MCXFO": 51,
}

#: XTS segment name -> the exchange prefix of `XtsInstrument.symbol` (others keep their XTS name).
EXCHANGE_BY_SEGMENT: Final[dict[str, str]] = {
    "NSECM": "NSE",
    "NSEFO": "NFO",
    "NSECD": "CDS",
    "NSECO": "NCO",
    "BSECM": "BSE",
    "BSEFO": "BFO",
    "BSECD": "BCD",
    "MCXFO": "MCX",
}

_OPTION_TYPES: Final[dict[str, str]] = {"3": "CE", "4": "PE", "CE": "CE", "PE": "PE"}
_OPTION_CODES: Final[dict[str, str]] = {"CE": "3", "PE": "4"}
_CASH_MIN_FIELDS: Final = 15
_OPTION_FIELDS: Final = 23
_FUTURE_FIELDS: Final = 21
_EXPIRY_TIME: Final = "T14:30:00"


@attrs.frozen
class XtsInstrument:
    """One row of the XTS instrument master."""

    segment: str
    """The XTS segment name, e.g. ``"NSECM"``, ``"NSEFO"``."""
    segment_id: int
    """The segment number the socket and subscriptions use (NSECM 1, NSEFO 2...)."""
    instrument_id: int
    """ExchangeInstrumentID: the id to subscribe with (`trading_ws.Tick.instrument_token`)."""
    instrument_type: int
    """1 futures, 2 options, 4 spread, 8 equity... (section 4.11)."""
    name: str
    """The underlying's name, e.g. ``"RELIANCE"``, ``"NIFTY"``."""
    description: str
    """The exchange's trading symbol, e.g. ``"RELIANCE-EQ"``, ``"NIFTY26DECFUT"``."""
    series: str
    """``EQ``, ``BE``, ``FUTIDX``, ``OPTSTK``... (BSE F&O: ``IF``/``IO``)."""
    display_name: str
    tick_size: float
    lot_size: int
    expiry: date | None = None
    strike: float | None = None
    option_type: str | None = None
    """``"CE"``, ``"PE"``, or None."""
    underlying_index_name: str | None = None
    underlying_instrument_id: int | None = None
    """The underlying's composite id; None for index derivatives (sent as -1) and cash rows."""
    isin: str | None = None
    """Cash rows only."""
    freeze_quantity: int = 0
    price_band_high: float = 0.0
    price_band_low: float = 0.0
    multiplier: int = 1
    composite_id: int = 0
    """InstrumentID: XTS's long composite id (e.g. ``2102800043422`` for NSEFO 43422)."""

    @property
    def is_cash(self) -> bool:
        """True for a cash-segment row (its segment name ends in ``CM``)."""
        return self.segment.endswith("CM")

    @property
    def symbol(self) -> str:
        """The exchange-qualified symbol, e.g. ``"NSE:RELIANCE"`` or ``"NFO:NIFTY26DECFUT"``."""
        exchange = EXCHANGE_BY_SEGMENT.get(self.segment, self.segment)
        if not self.is_cash:
            return f"{exchange}:{self.description}"
        if self.segment == "NSECM" and self.series != "EQ":
            return f"{exchange}:{self.name}-{self.series}"
        return f"{exchange}:{self.name}"


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        value = float(text)
        if not value.is_integer():
            raise ValueError(f"expected an integer, got {text!r}") from None
        return int(value)


def _float(text: str) -> float:
    if not text:
        return 0.0
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {text!r}")
    return value


def _optional(text: str) -> str | None:
    return text or None


def _expiry(text: str) -> date | None:
    return date.fromisoformat(text[:10]) if text else None


def _underlying(text: str) -> int | None:
    if not text:
        return None
    value = _int(text)
    return None if value == -1 else value


def _row(fields: list[str]) -> XtsInstrument:
    segment = fields[0]
    segment_id = SEGMENT_IDS.get(segment)
    if segment_id is None:
        raise ValueError(f"unknown segment {segment!r}")
    count = len(fields)
    cash = segment.endswith("CM")
    if cash:
        if count < _CASH_MIN_FIELDS:
            raise ValueError(f"a cash row needs at least {_CASH_MIN_FIELDS} fields, got {count}")
    elif count not in (_OPTION_FIELDS, _FUTURE_FIELDS):
        raise ValueError(f"a derivatives row has 23 (options) or 21 (futures) fields, got {count}")
    instrument_id = _int(fields[1])
    if not 0 < instrument_id < 2**63:
        raise ValueError(f"ExchangeInstrumentID must be a positive 64-bit int, got {instrument_id}")
    common = (
        segment,
        segment_id,
        instrument_id,
        _int(fields[2]),
        fields[3],
        fields[4],
        fields[5],
    )
    freeze = math.floor(_float(fields[10]))
    band_high = _float(fields[8])
    band_low = _float(fields[9])
    tick_size = _float(fields[11])
    lot_size = _int(fields[12])
    multiplier = _int(fields[13]) if fields[13] else 1
    composite = _int(fields[7]) if fields[7] else 0
    if cash:
        return XtsInstrument(
            *common,
            fields[14],
            tick_size,
            lot_size,
            None,
            None,
            None,
            None,
            None,
            _optional(fields[15]) if count > 15 else None,
            freeze,
            band_high,
            band_low,
            multiplier,
            composite,
        )
    option = count == _OPTION_FIELDS
    return XtsInstrument(
        *common,
        fields[19] if option else fields[17],
        tick_size,
        lot_size,
        _expiry(fields[16]),
        (_float(fields[17]) if fields[17] else None) if option else None,
        _OPTION_TYPES.get(fields[18]) if option else None,
        _optional(fields[15]),
        _underlying(fields[14]),
        None,
        freeze,
        band_high,
        band_low,
        multiplier,
        composite,
    )


def parse_master_row(line: str, line_number: int = 1) -> XtsInstrument:
    """Parse one master row. Does not block.

    Raises:
        DecodeError: the row is malformed (unknown segment, wrong field count, a number that is not one,
            an instrument id that is not a positive 64-bit int, a bad expiry date); the message names
            ``line_number`` and quotes the row's text scrubbed of control characters and cut short;
            ``exc.raw`` is the line.
    """
    try:
        return _row(line.rstrip("\r").split("|"))
    except (ValueError, OverflowError, IndexError) as exc:
        raise DecodeError(scrub(f"malformed XTS master row at line {line_number}: {exc}"), line) from exc


def _rows(text: str) -> Iterable[tuple[int, str]]:
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            yield number, line


def parse_master(text: str) -> list[XtsInstrument]:
    """Parse the ``result`` text of ``/instruments/master`` into records, in file order. Does not block.

    Raises:
        DecodeError: the first malformed row; the message names its 1-based line number and ``exc.raw``
            is that line. Use `parse_master_lenient` to skip bad rows instead.
    """
    return [parse_master_row(line, number) for number, line in _rows(text)]


def _drop_tracebacks(exc: BaseException) -> None:
    # A kept error must not keep its tracebacks (nor those of its causes): their frames hold the bad row
    # split into fields, about 1.5 KB a row, and a master whose layout changed is nothing but bad rows.
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is not None and error.__traceback__ is not None:
            error.__traceback__ = None
            pending += (error.__cause__, error.__context__)


def parse_master_lenient(text: str) -> tuple[list[XtsInstrument], list[DecodeError]]:
    """Parse the master like `parse_master`, but skip malformed rows. Does not block, raises nothing.

    Returns:
        The records of the good rows, and one `DecodeError` per skipped row (naming its line number).
    """
    good: list[XtsInstrument] = []
    bad: list[DecodeError] = []
    for number, line in _rows(text):
        try:
            good.append(parse_master_row(line, number))
        except DecodeError as exc:
            _drop_tracebacks(exc)
            bad.append(exc)
    return good, bad


def _num(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _render(inst: XtsInstrument) -> str:
    head = [
        inst.segment,
        str(inst.instrument_id),
        str(inst.instrument_type),
        inst.name,
        inst.description,
        inst.series,
        f"{inst.name}-{inst.series}",
        str(inst.composite_id),
        _num(inst.price_band_high),
        _num(inst.price_band_low),
        str(inst.freeze_quantity),
        _num(inst.tick_size),
        str(inst.lot_size),
        str(inst.multiplier),
    ]
    if inst.is_cash:
        tail = [
            inst.display_name,
            inst.isin or "",
            "1",
            "1",
            f"{inst.name}-{inst.series}",
            "0",
            "0",
            "0",
        ]
    else:
        underlying = inst.underlying_instrument_id
        tail = [
            "-1" if underlying is None else str(underlying),
            inst.underlying_index_name or "",
            "" if inst.expiry is None else inst.expiry.isoformat() + _EXPIRY_TIME,
        ]
        if inst.strike is not None or inst.option_type is not None:
            tail += [
                "" if inst.strike is None else _num(inst.strike),
                _OPTION_CODES.get(inst.option_type or "", ""),
            ]
        tail += [inst.display_name, "1", "1", inst.description]
    return "|".join(head + tail)


def render_master(instruments: Iterable[XtsInstrument]) -> str:
    """Render records as master ``result`` text (the inverse of `parse_master`; used by the simulator).

    Cash rows get 22 fields, options 23, futures 21; fields the record does not keep (price numerator
    and denominator, the surveillance indicators) are written as ``1``/``1``/``0``. Does not block.

    Raises:
        ValueError: a text field contains ``|`` or a line break, which the format cannot carry.
    """
    lines = []
    for inst in instruments:
        for text in (
            inst.segment,
            inst.name,
            inst.description,
            inst.series,
            inst.display_name,
            inst.isin or "",
            inst.underlying_index_name or "",
        ):
            if "|" in text or "\n" in text or "\r" in text:
                raise ValueError(f"field {text!r} of {inst.instrument_id} contains '|' or a line break")
        lines.append(_render(inst))
    return "\n".join(lines)
