"""An XTS feed's subscription bookkeeping: what it wants subscribed, and how it brings its REST session in
line (the reconciliation).

Subscriptions are REST calls and belong to the session (the token), not to the socket (xts-protocol.md
section 3.6). `SubscriptionBook` keeps the feed's record (`SubscriptionBook.wanted`: instrument -> mode) and
computes, at each sync, what differs from what the session holds: it subscribes what is missing,
unsubscribes what is no longer wanted, in the order the session's cap allows, and unsubscribes as well what
a request cut short may have left on the server (`SubscriptionBook.uncertain`). After a plain socket
reconnect with the same token there is nothing to do; after a new login (an empty session) everything is
subscribed again.

The ``listQuotes`` snapshots of a subscribe are delivered as the first ticks of their instruments: while a
subscribe answer is on its way its instruments are `SubscriptionBook.awaiting`, and the feed's reader
hands their live ticks to `SubscriptionBook.hold_back`, which keeps them until the snapshots are queued.

The book does the REST calls but owns no task and no socket: its feed (a `SyncHost`) queues what it
delivers, logs in again when the token is refused, and runs the background reconciliation in its nursery.
"""

from __future__ import annotations

import logging
import time
from typing import Final, Protocol

import trio

from ..._errors import (
    ConnectError,
    DecodeError,
    SubscriptionError,
    TradingWsError,
)
from ..._model import Broker, BrokerError, Event, Mode, Tick
from ._api import InvalidTokenError, Key
from ._codec import CODE_TO_MODE, MODE_TO_CODE
from ._rest import XtsSession

__all__ = ["SubscriptionBook", "SyncHost"]

logger = logging.getLogger("trading_ws.xts")

_XTS: Final = Broker.XTS
_FEED_CODES: Final = frozenset(MODE_TO_CODE.values())


class SyncHost(Protocol):
    """What a `SubscriptionBook` needs from its feed."""

    @property
    def connected(self) -> bool:
        """Whether the socket is up right now."""
        ...

    @property
    def _closing(self) -> bool:
        """True once the feed's block is ending."""
        ...

    @property
    def _nursery(self) -> trio.Nursery | None:
        """The feed's service nursery while its block runs (for the background reconciliation)."""
        ...

    def _deliver(self, events: list[Event]) -> None:
        """Hand a batch to the consumer (never blocks; nothing for an empty batch)."""
        ...

    def _relogin_soon(self) -> None:
        """The session's token was refused: make the connection log in again (once)."""
        ...


class SubscriptionBook:
    """One XTS feed's subscriptions: its record, what is on its way, and the reconciliation with the
    session (see the module docstring). Every method but `hold_back` and `resync_soon` runs with `lock`
    held, by the feed's requests, its connection (at each connect) and the background reconciliation."""

    def __init__(self, session: XtsSession, host: SyncHost) -> None:
        self._session = session
        self._host = host
        self.wanted: dict[Key, Mode] = {}
        """The feed's record: every instrument it wants and its mode."""
        self.lock = trio.StrictFIFOLock()
        """Held by whoever changes `wanted` or talks to the session about subscriptions (one at a time)."""
        self.awaiting: dict[Key, Mode] = {}
        """Instruments whose subscribe answer (and snapshot) is on its way, and the mode asked for."""
        self.uncertain: set[tuple[int, int, int]] = set()
        """(segment, id, code) triples a request cut short may have subscribed on the server."""
        self._held: list[Tick] = []
        self._resync_pending = False
        self.snapshots = 0
        """Snapshots delivered (from subscribe answers and quotes)."""
        self.ticks = 0
        """Ticks the book delivered: snapshots, and the live ticks it held back."""

    async def apply(self, previous: dict[Key, Mode | None], *, quiet: bool = False) -> None:
        """Bring the session in line with `wanted` after a user request (lock held). With `quiet`,
        refusals and connection failures are logged rather than raised.

        `previous` holds the modes the request's instruments had before it (None: not wanted): what a
        failed or cancelled request is rolled back to, except where the session confirmed the new mode.
        """
        if not self._session.logged_in:
            return  # a login is pending: the next connection subscribes everything
        out: list[Event] = []
        try:
            await self.sync(out, strict=True)
        except InvalidTokenError:
            logger.warning("XTS refused the session token on a subscription request; logging in again")
            self._host._relogin_soon()
        except SubscriptionError as exc:
            if quiet:
                logger.warning("XTS refused an unsubscribe (%s); it is sent again in the background", exc)
                self.resync_soon()
                return
            self.roll_back(previous)
            raise
        except ConnectError as exc:
            if not self._host.connected:
                logger.info("XTS subscription request failed (%s); it is sent again at the next sync", exc)
                return
            self.roll_back(previous)
            self.resync_soon()
            if not quiet:
                raise
            logger.info("XTS unsubscribe failed (%s); it is sent again in the background", exc)
        except BaseException:  # cancelled: nothing of the request is kept but what the server confirmed
            self.roll_back(previous)
            self.resync_soon()
            raise
        finally:
            self._host._deliver(out)

    def roll_back(self, previous: dict[Key, Mode | None]) -> None:
        """Give instruments their mode from before a request, except where the session confirmed it."""
        held = self._session.subscriptions
        for key, mode in previous.items():
            now = self.wanted.get(key)
            if now is not None and (*key, MODE_TO_CODE[now]) in held:
                continue
            if mode is None:
                self.wanted.pop(key, None)
            else:
                self.wanted[key] = mode

    def resync_soon(self) -> None:
        """Reconcile the session with `wanted` in the background (once at a time): after a request that
        was cut short or failed, the server may hold more or less than the record says. Does not block."""
        nursery = self._host._nursery
        if nursery is None or self._resync_pending or self._host._closing:
            return
        self._resync_pending = True
        nursery.start_soon(self._resync)

    async def _resync(self) -> None:
        async with self.lock:
            self._resync_pending = False
            host = self._host
            if host._closing or not host.connected or not self._session.logged_in:
                return  # the next connection syncs everything anyway
            out: list[Event] = []
            try:
                await self.sync(out, strict=False)
            except InvalidTokenError:
                host._relogin_soon()
            except TradingWsError as exc:
                logger.info("XTS background sync failed (%s); it runs again with the next change", exc)
            except Exception:  # a bug must not tear the feed down from a background task
                logger.exception("XTS background sync failed; it runs again with the next change")
            finally:
                host._deliver(out)

    def hold_back(self, events: list[Event]) -> list[Event]:
        """`events` without the live ticks of instruments whose subscribe answer (and snapshot) is still on
        its way: those are kept, and delivered by the sync after the snapshots."""
        awaiting = self.awaiting
        out: list[Event] = []
        for event in events:
            if (
                type(event) is Tick
                and awaiting.get((event.segment or 0, event.instrument_token)) is event.mode
            ):
                self._held.append(event)
            else:
                out.append(event)
        return out

    async def sync(self, out: list[Event], *, strict: bool) -> None:
        """Subscribe and unsubscribe over REST whatever differs between `wanted` and the session.

        Snapshots (and live ticks held back meanwhile) are appended to `out`. With `strict`, a refused
        request raises; otherwise its instruments are dropped and reported as a `BrokerError` event.
        Lock held.
        """
        session = self._session
        codes_by_key: dict[Key, list[int]] = {}
        for seg, iid, code in session.subscriptions:
            if code in _FEED_CODES:
                codes_by_key.setdefault((seg, iid), []).append(code)
        # Pairs a request cut short may have subscribed on the server: unsubscribed unless wanted.
        maybe: dict[Key, list[int]] = {}
        for seg, iid, code in self.uncertain:
            if code not in codes_by_key.get((seg, iid), ()):
                maybe.setdefault((seg, iid), []).append(code)
        subs: dict[int, list[Key]] = {}
        unsubs: dict[int, list[Key]] = {}
        for key in [*self.wanted, *(k for k in {**codes_by_key, **maybe} if k not in self.wanted)]:
            mode = self.wanted.get(key)
            want = MODE_TO_CODE[mode] if mode is not None else None
            have = codes_by_key.get(key, [])
            if want is not None and want not in have:
                subs.setdefault(want, []).append(key)
            for code in (*have, *maybe.get(key, ())):
                if code != want:
                    unsubs.setdefault(code, []).append(key)
        if not subs and not unsubs:
            self.uncertain.clear()
            return
        awaiting = self.awaiting
        for code, group in subs.items():
            for key in group:
                awaiting[key] = CODE_TO_MODE[code]
        completed = False
        try:
            if sum(map(len, subs.values())) <= session.remaining:
                await self._subscribe_groups(subs, out, strict)
                await self._unsubscribe_groups(unsubs, strict)
            else:
                await self._unsubscribe_groups(unsubs, strict)
                await self._subscribe_groups(subs, out, strict)
            completed = True
        finally:
            if completed:
                self.uncertain.clear()
            else:  # cut short (or refused): what was on its way may have reached the server
                confirmed = session.subscriptions
                self.uncertain.update(
                    (*key, code)
                    for code, group in subs.items()
                    for key in group
                    if (*key, code) not in confirmed
                )
            for group in subs.values():
                for key in group:
                    awaiting.pop(key, None)
            if self._held:
                held, self._held = self._held, []
                for tick in held:
                    if (tick.segment or 0, tick.instrument_token) in awaiting:
                        self._held.append(tick)
                    else:
                        self.ticks += 1
                        out.append(tick)

    async def _subscribe_groups(self, subs: dict[int, list[Key]], out: list[Event], strict: bool) -> None:
        session = self._session
        for code, group in subs.items():
            try:
                result = await session.subscribe(group, code)
            except SubscriptionError as exc:
                if strict:
                    raise
                for key in group:
                    self.wanted.pop(key, None)
                logger.error("XTS refused to subscribe %d instrument(s) again; dropped: %s", len(group), exc)
                out.append(BrokerError(_XTS, f"dropped {len(group)} instrument(s): {exc}", time.time()))
                continue
            snapshots = list(result.snapshots)
            covered = {(e.segment, e.instrument_token) for e in snapshots if isinstance(e, Tick)}
            missing = [k for k in group if k not in covered]
            if missing:
                # Already subscribed (e-session-0002): no listQuotes. Ask /instruments/quotes instead, so
                # that the instrument still starts with a snapshot (best effort).
                try:
                    snapshots += await session.quotes(missing, code)
                except DecodeError as exc:
                    snapshots += exc.events
                except InvalidTokenError:
                    raise
                except TradingWsError as exc:
                    logger.info("XTS quotes for %d instrument(s) failed: %s", len(missing), exc)
            self.snapshots += len(snapshots)
            self.ticks += len(snapshots)
            out += snapshots

    async def _unsubscribe_groups(self, unsubs: dict[int, list[Key]], strict: bool) -> None:
        for code, group in unsubs.items():
            try:
                await self._session.unsubscribe(group, code)
            except SubscriptionError as exc:
                if strict:
                    raise
                logger.warning("XTS refused to unsubscribe %d instrument(s): %s", len(group), exc)
