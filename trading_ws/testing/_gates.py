"""The await points of a `FakeBroker` that a test can hold, fail or watch (sans-IO bookkeeping plus a
parking lot per point)."""

from __future__ import annotations

from typing import Final, Literal, get_args

import attrs
import trio

from .._errors import ConfigurationError

__all__ = ["POINTS", "Gates", "Point"]

Point = Literal["master", "connect", "subscribe", "unsubscribe"]
"""An await point of a `FakeBroker`: loading the instrument master (``"master"``), opening a connection
(``"connect"``), a subscribe request (``"subscribe"``, which also changes modes) or an unsubscribe request
(``"unsubscribe"``)."""

POINTS: Final[tuple[Point, ...]] = get_args(Point)


@attrs.define
class _Gate:
    held: bool = False
    generation: int = 0
    """Bumped by every `Gates.release`: a call parked under an older generation has been released, and
    goes on whatever happens after (a `hold` right after the `release` catches only later calls)."""
    waiting: int = 0
    """Calls parked and not released (a released call no longer counts, even before it has run)."""
    lot: trio.lowlevel.ParkingLot = attrs.Factory(trio.lowlevel.ParkingLot)
    watchers: trio.lowlevel.ParkingLot = attrs.Factory(trio.lowlevel.ParkingLot)
    """The `Gates.wait_parked` calls, woken when a call parks or the point is released."""
    errors: list[Exception] = attrs.Factory(list)


class Gates:
    """One gate per `Point`: every call passing a point goes through `pass_through`."""

    def __init__(self) -> None:
        self._gates = {point: _Gate() for point in POINTS}

    def _gate(self, point: Point) -> _Gate:
        try:
            return self._gates[point]
        except (KeyError, TypeError):
            raise ConfigurationError(f"no await point {point!r:.40}: one of {', '.join(POINTS)}") from None

    def hold(self, point: Point) -> None:
        self._gate(point).held = True

    def release(self, point: Point) -> None:
        gate = self._gate(point)
        gate.held = False
        gate.generation += 1
        gate.waiting = 0
        gate.lot.unpark_all()
        gate.watchers.unpark_all()

    def waiting(self, point: Point) -> int:
        return self._gate(point).waiting

    async def wait_parked(self, point: Point) -> None:
        gate = self._gate(point)
        if not gate.held:
            raise RuntimeError(f"nothing can park at {point!r}: hold({point!r}) first")
        await trio.lowlevel.checkpoint()
        while not gate.waiting:
            if not gate.held:
                raise RuntimeError(f"{point!r} was released before a call parked there")
            await gate.watchers.park()

    def fail_next(self, point: Point, error: Exception) -> None:
        gate = self._gate(point)
        if not isinstance(error, Exception):
            raise ConfigurationError(f"fail_next takes an exception instance, not {error!r:.60}")
        gate.errors.append(error)

    async def pass_through(self, point: Point) -> None:
        """Checkpoint; raise the next queued error of `point`, if any; then wait while it is held (until
        the next `release`, even if the point is held again at once)."""
        await trio.lowlevel.checkpoint()
        gate = self._gates[point]
        if gate.errors:
            raise gate.errors.pop(0)
        if not gate.held:
            return
        generation = gate.generation
        gate.waiting += 1
        gate.watchers.unpark_all()
        try:
            while gate.generation == generation:
                await gate.lot.park()
        finally:
            if gate.generation == generation:  # cancelled while parked: no longer waiting
                gate.waiting -= 1
