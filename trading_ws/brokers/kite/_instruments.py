"""The Kite instrument master: the daily CSV of ``GET https://api.kite.trade/instruments``."""

from __future__ import annotations

import csv
import io
from datetime import date

import attrs

from ..._errors import DecodeError
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
    """Parse the Kite instruments CSV (header row first, columns as documented).

    Raises:
        DecodeError: a missing column, or a row whose numbers or dates do not parse (naming the line).
    """
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in _COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise DecodeError(f"Kite instruments CSV lacks columns {missing}", text[:200])
    out: list[KiteInstrument] = []
    for line, row in enumerate(reader, start=2):
        try:
            expiry = row["expiry"].strip()
            out.append(
                KiteInstrument(
                    int(row["instrument_token"]),
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
            )
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"Kite instruments CSV line {line}: {exc}", str(row)) from exc
    return out
