"""The await points of a `FakeBroker` that a test can hold, fail or watch (sans-IO bookkeeping plus a
parking lot per point)."""

from __future__ import annotations

from typing import Final, Literal, get_args

import attrs
import trio

__all__ = ["POINTS", "Gates", "Point"]

Point = Literal["master", "connect", "subscribe", "unsubscribe"]
"""An await point of a `FakeBroker`: loading the instrument master (``"master"``), opening a connection
(``"connect"``), a subscribe request (``"subscribe"``, which also changes modes) or an unsubscribe request
(``"unsubscribe"``)."""

POINTS: Final[tuple[Point, ...]] = get_args(Point)


@attrs.define
class _Gate:
    held: bool = False
    waiting: int = 0
    parked: trio.Event = attrs.Factory(trio.Event)
    lot: trio.lowlevel.ParkingLot = attrs.Factory(trio.lowlevel.ParkingLot)
    errors: list[Exception] = attrs.Factory(list)


class Gates:
    """One gate per `Point`: every call passing a point goes through `pass_through`."""

    def __init__(self) -> None:
        self._gates = {point: _Gate() for point in POINTS}

    def _gate(self, point: Point) -> _Gate:
        try:
            return self._gates[point]
        except KeyError:
            raise ValueError(f"no await point {point!r}: one of {', '.join(POINTS)}") from None

    def hold(self, point: Point) -> None:
        gate = self._gate(point)
        if not gate.held:
            gate.held = True
            if not gate.waiting:
                gate.parked = trio.Event()

    def release(self, point: Point) -> None:
        gate = self._gate(point)
        gate.held = False
        gate.lot.unpark_all()

    def waiting(self, point: Point) -> int:
        return self._gate(point).waiting

    async def wait_parked(self, point: Point) -> None:
        gate = self._gate(point)
        if not gate.held and not gate.waiting:
            raise RuntimeError(f"nothing can park at {point!r}: hold({point!r}) first")
        await gate.parked.wait()

    def fail_next(self, point: Point, error: Exception) -> None:
        if not isinstance(error, Exception):
            raise TypeError(f"fail_next takes an exception instance, not {error!r}")
        self._gate(point).errors.append(error)

    async def pass_through(self, point: Point) -> None:
        """Checkpoint; raise the next queued error of `point`, if any; then wait while it is held."""
        await trio.lowlevel.checkpoint()
        gate = self._gates[point]
        if gate.errors:
            raise gate.errors.pop(0)
        while gate.held:
            gate.waiting += 1
            gate.parked.set()
            try:
                await gate.lot.park()
            finally:
                gate.waiting -= 1
