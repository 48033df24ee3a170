"""One bounded cache from a broker's integer timestamps to IST datetimes, shared by every codec.

Exchange timestamps repeat from packet to packet and from frame to frame within a second, and
``datetime.fromtimestamp`` costs far more than a dictionary lookup. A `TimeCache` is a `dict` whose
`__missing__` does the conversion, so on the hot path ``times[seconds]`` is a single subscript once a
second has been seen. Each broker's time base is an offset added to its seconds (Kite: Unix time, offset
0; XTS: see `trading_ws.brokers.xts._codec._wire`).

Pure and synchronous: no I/O, no clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from .._model import IST

__all__ = ["DEFAULT_MAX_ENTRIES", "TimeCache"]

#: Live timestamps cluster around "now": a few minutes of seconds.
DEFAULT_MAX_ENTRIES: Final = 512


class TimeCache(dict[int | None, datetime | None]):
    """Broker seconds -> the aware IST datetime ``datetime.fromtimestamp(seconds + offset, IST)``.

    ``times[seconds]`` gives exactly what that conversion gives, and None for 0 or None (a timestamp the
    packet does not carry). Values are computed on the first lookup of a key and kept; the cache is
    emptied whenever it reaches `max_entries` (live timestamps move forward, so the old ones are not
    wanted again). Does not block.

    Raises (on a key not yet cached):
        OverflowError, ValueError, OSError: the time is outside the platform's range (nothing is cached).
        TypeError: the key is not an integer (nor None).
    """

    __slots__ = ("max_entries", "offset")

    def __init__(self, offset: int = 0, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        super().__init__()
        self.offset: Final = offset
        """Seconds added to a key to make Unix time."""
        self.max_entries: Final = max_entries
        """The most entries the cache holds."""

    def __missing__(self, seconds: int | None) -> datetime | None:
        value = datetime.fromtimestamp(seconds + self.offset, IST) if seconds else None
        if len(self) >= self.max_entries:
            self.clear()
        self[seconds] = value
        return value

    def __repr__(self) -> str:
        return f"TimeCache(offset={self.offset}, {len(self)} of {self.max_entries} entries)"
