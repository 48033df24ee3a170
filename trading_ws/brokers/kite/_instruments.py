"""The Kite instrument master: the daily CSV of ``GET https://api.kite.trade/instruments``."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

import attrs

from ..._errors import DecodeError
from ..._scrub import scrub
from .._interface import InstrumentInfo
from ._codec import INDICES_SEGMENT

__all__ = ["KITE_API_URL", "KITE_INSTRUMENTS_URL", "KiteInstrument", "parse_instruments_csv"]

KITE_API_URL = "https://api.kite.trade"
"""The root of Kite Connect's REST API."""
KITE_INSTRUMENTS_URL = KITE_API_URL + "/instruments"

_COLUMNS = (
    "instrument_token",
    "exchange_token",
    "tradingsymbol",
    "name",
    "last_price",
    "expiry",
    "strike",
    "tick_size",
    "lot_size",
    "instrument_type",
    "segment",
    "exchange",
)


@attrs.frozen
class KiteInstrument:
    """One row of the Kite instruments CSV."""

    instrument_token: int
    exchange_token: int
    tradingsymbol: str
    name: str
    expiry: date | None
    strike: float
    tick_size: float
    lot_size: int
    instrument_type: str
    segment: str
    exchange: str

    @property
    def symbol(self) -> str:
        """The exchange-qualified symbol, ``"<exchange>:<tradingsymbol>"`` (e.g. ``"NSE:NIFTY 50"``)."""
        return f"{self.exchange}:{self.tradingsymbol}"

    def info(self) -> InstrumentInfo:
        """The manager's view of this instrument (routed by instrument token)."""
        segment = self.instrument_token & 0xFF
        return InstrumentInfo(
            self.symbol, self.instrument_token, self.instrument_token, segment, segment != INDICES_SEGMENT
        )


def parse_instruments_csv(text: str) -> list[KiteInstrument]:
    """Parse the Kite instruments CSV (header row first, columns as documented). Does not block.

    Raises:
        DecodeError: a missing column, a row with too few fields, numbers or dates that do not parse, an
            instrument token that is not an unsigned 32-bit int, or text the CSV reader refuses (naming
            the line). Its message quotes the text scrubbed of control characters and cut short;
            ``exc.raw`` holds the row (or the start of the text).
    """
    reader = csv.DictReader(io.StringIO(text))
    try:
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or ())]
    except csv.Error as exc:
        raise DecodeError(scrub(f"Kite instruments CSV: unreadable header: {exc}"), text[:200]) from exc
    if missing:
        raise DecodeError(f"Kite instruments CSV lacks columns {missing}", text[:200])
    out: list[KiteInstrument] = []
    try:
        for line, row in enumerate(reader, start=2):
            out.append(_instrument(row, line))
    except csv.Error as exc:
        raise DecodeError(scrub(f"Kite instruments CSV line {reader.line_num}: {exc}"), text[:200]) from exc
    return out


def _instrument(row: dict[str | Any, str | Any], line: int) -> KiteInstrument:
    fields = [row.get(column) for column in _COLUMNS]
    if not all(isinstance(value, str) for value in fields):
        raise DecodeError(f"Kite instruments CSV line {line}: too few fields", str(row))
    try:
        token = int(row["instrument_token"])
        if not 0 <= token <= 0xFFFFFFFF:
            raise ValueError("instrument_token is not an unsigned 32-bit int")
        expiry = row["expiry"].strip()
        return KiteInstrument(
            token,
            int(row["exchange_token"]),
            row["tradingsymbol"],
            row["name"],
            date.fromisoformat(expiry) if expiry else None,
            float(row["strike"] or 0),
            float(row["tick_size"] or 0),
            int(float(row["lot_size"] or 0)),
            row["instrument_type"],
            row["segment"],
            row["exchange"],
        )
    except (TypeError, ValueError, OverflowError) as exc:
        raise DecodeError(scrub(f"Kite instruments CSV line {line}: {exc}"), str(row)) from exc
