"""The one reconnect loop every broker feed runs under: a sans-IO policy and a supervisor around it.

`ReconnectPolicy` decides, without sockets or clocks, what follows a failed or lost connection: wait and
retry, renew the credentials once, or give up. `supervise` is the only loop: it runs a feed's
``_connect_once`` (handshake, resubscribe, read until the connection dies) under the policy, reports each
step as a status event, and turns every error into one of three outcomes:

- before the first connection is up, an error is raised to whoever opened the feed (through
  ``nursery.start``), mapped into the library's tree;
- refused credentials are renewed once (when the feed can) and otherwise end the feed for good;
- anything else, including an error no library was expected to raise, is a failed attempt: the feed backs
  off and tries again, until `Backoff.max_attempts` runs out.

Each feed keeps only its own handshake and reader (its `Connector`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import NoReturn, Protocol

import attrs
import trio

from .._backoff import Backoff
from .._errors import AuthenticationError, ConnectError, TradingWsError
from .._model import Broker, Disconnected, Event, Reconnecting

__all__ = [
    "ConnectionLost",
    "Connector",
    "GiveUp",
    "ReconnectPolicy",
    "Renew",
    "Retry",
    "provider_failed",
    "supervise",
]


class ConnectionLost(ConnectError):
    """An established connection ended. `got_data` says whether it carried anything: a connection that
    delivered data was healthy, so the backoff starts over."""

    def __init__(self, reason: str, got_data: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.got_data = got_data


@attrs.frozen
class Retry:
    """Wait `delay` seconds, then make reconnect attempt number `attempt` (from 1)."""

    attempt: int
    delay: float


@attrs.frozen
class Renew:
    """Ask for fresh credentials, then make reconnect attempt number `attempt` at once."""

    attempt: int


@attrs.frozen
class GiveUp:
    """The feed has failed for good with `error`."""

    error: TradingWsError


Decision = Retry | Renew | GiveUp


class ReconnectPolicy:
    """What to do after each failed or lost connection. Sans-IO: no sockets, no clock, no awaits.

    - Refused credentials (`AuthenticationError`) are renewed once when the feed can renew them; renewal is
      allowed again after a connection has come up. Otherwise they end the feed: never a retry storm.
    - Before the first connection has come up (`started` is false) any other error ends the feed, so that
      a wrong URL or an unreachable broker fails the open at once.
    - After that, every error is a failed attempt: wait the next `Backoff` delay and try again. A lost
      connection that had delivered data for `Backoff.healthy_after` seconds was healthy, so the delays
      (and the count of failed attempts) start over. When `Backoff.max_attempts` consecutive attempts have
      failed, give up.
    """

    def __init__(self, backoff: Backoff, rng: random.Random | None = None) -> None:
        self._backoff = backoff
        self._rng = rng if rng is not None else random.Random()
        self._delays = backoff.delays(self._rng)
        self._renewed = False
        self.started = False
        """Whether a connection has come up yet."""
        self.attempt = 0
        """Reconnect attempts made since the backoff last started over."""

    def connected(self) -> None:
        """A connection came up (its subscriptions restored): from now on errors are retried, and refused
        credentials may be renewed once more."""
        self.started = True
        self._renewed = False

    def failed(
        self, error: TradingWsError, *, got_data: bool = False, uptime: float = 0.0, renewable: bool = False
    ) -> Decision:
        """The decision after `error` ended a connection attempt (or an established connection).

        Args:
            error: why the attempt failed, already mapped into the library's tree.
            got_data: the connection had come up and delivered data.
            uptime: how long (seconds) it had been up; with data, `Backoff.healthy_after` or more of it
                makes the backoff start over.
            renewable: the feed can renew the credentials `error` refused.
        """
        if got_data and uptime >= self._backoff.healthy_after:
            self._delays = self._backoff.delays(self._rng)
            self.attempt = 0
        if isinstance(error, AuthenticationError):
            if renewable and not self._renewed:
                self._renewed = True
                self.attempt += 1
                return Renew(self.attempt)
            return GiveUp(error)
        if not self.started:
            return GiveUp(error)
        delay = next(self._delays, None)
        if delay is None:
            failure = ConnectError(
                f"gave up after {self.attempt} failed reconnect attempts (Backoff.max_attempts); "
                f"last: {error}"
            )
            failure.__cause__ = error
            return GiveUp(failure)
        self.attempt += 1
        return Retry(self.attempt, delay)


class Connector(Protocol):
    """What a feed gives the supervisor: one connection attempt, and how to renew its credentials."""

    @property
    def _closing(self) -> bool:
        """True once the feed's block is ending: a connection error then is expected, not a failure."""
        ...

    async def _connect_once(self, up: Callable[[], None]) -> NoReturn:
        """Connect, restore subscriptions, call `up` once healthy, then read until the connection dies.

        Raises:
            ConnectionLost: an established connection ended.
            AuthenticationError: the credentials were refused.
            TradingWsError: the attempt failed (any other error is treated as a failed attempt too).
        """
        ...

    def _can_renew(self, error: AuthenticationError) -> bool:
        """Whether `_renew_credentials` can answer this refusal."""
        ...

    async def _renew_credentials(self) -> None:
        """Get fresh credentials for the next attempt.

        Raises:
            AuthenticationError: they could not be had (a provider that failed).
        """
        ...

    def _scrub(self, text: str) -> str:
        """`text` with this feed's secrets and control characters taken out (for logs and events)."""
        ...


def provider_failed(what: str, exc: Exception, scrub: Callable[[str], str]) -> AuthenticationError:
    """The AuthenticationError for a credentials provider (or a renewal) that raised `exc`: its text
    scrubbed, and `exc` kept as the cause only when its text shows no secret."""
    raw = f"{type(exc).__name__}: {exc}"
    text = scrub(raw)
    failure = AuthenticationError(f"the {what} failed: {text}")
    if text == raw:
        failure.__cause__ = exc
    return failure


@attrs.define
class SupervisorState:
    """Counters the supervisor keeps for the feed's statistics."""

    connects: int = 0
    """Connections that came up."""
    reconnects: int = 0
    """Established connections that were lost."""


async def supervise(
    connector: Connector,
    policy: ReconnectPolicy,
    *,
    broker: Broker,
    connection_id: int,
    emit: Callable[[Event], None],
    log: logging.Logger,
    state: SupervisorState,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> TradingWsError | None:
    """Run `connector` until cancelled or until the policy gives up; returns the terminal error then.

    Reports readiness through `task_status` once the first connection is up. Until then, every failure is
    raised (through ``nursery.start``, so the caller of the feed's opener sees it), mapped into the
    library's tree. Afterwards it emits `Disconnected` after each failed or lost attempt and
    `Reconnecting` before each new one, and never raises an `Exception`: a failure for good is returned.
    Returns None when the feed's block is ending (`Connector._closing`).
    """
    name = broker.value.capitalize() if broker is Broker.KITE else broker.value.upper()
    is_up = False
    up_at = 0.0

    def up() -> None:
        nonlocal is_up, up_at
        is_up = True
        up_at = trio.current_time()
        state.connects += 1
        started = policy.started
        policy.connected()
        if not started:
            task_status.started()

    while True:
        is_up = False
        try:
            await connector._connect_once(up)
        except ConnectionLost as exc:
            error: TradingWsError = exc
            got_data = exc.got_data
        except TradingWsError as exc:
            error = exc
            got_data = False
        except Exception as exc:
            # An error no boundary mapped: a third-party library's or our own bug. Never let it end a
            # running feed for good (that is the broker's or the network's fault to forgive), but say so
            # loudly, with the traceback.
            raw = f"{type(exc).__name__}: {exc}"
            text = connector._scrub(raw)
            safe = text == raw  # the traceback and the cause would show the error's text as it is
            log.error("%s connection %d: unexpected error: %s", name, connection_id, text, exc_info=safe)
            error = ConnectError(f"unexpected error: {text}")
            if safe:
                error.__cause__ = exc
            else:
                error.__suppress_context__ = True
            got_data = False
        if connector._closing:
            return None
        if is_up:
            state.reconnects += 1
        reason = connector._scrub(str(error))
        renewable = isinstance(error, AuthenticationError) and connector._can_renew(error)
        try:
            uptime = trio.current_time() - up_at if is_up else 0.0
            decision = policy.failed(error, got_data=got_data, uptime=uptime, renewable=renewable)
        except Exception as exc:  # a bug (a broken random source, say): end the feed, typed and loud
            log.error("%s connection %d: the reconnect policy failed", name, connection_id, exc_info=True)
            broken = ConnectError(f"the reconnect policy failed ({type(exc).__name__}) after: {reason}")
            broken.__cause__ = exc
            decision = GiveUp(broken)
        if isinstance(decision, GiveUp) and not policy.started:
            raise decision.error
        # Every failed attempt is reported, except a refusal that is renewed before its connection came
        # up: the renewed attempt follows at once, and its outcome is what counts.
        announce = policy.started and (is_up or not isinstance(decision, Renew))
        if announce:
            emit(Disconnected(broker, connection_id, reason, time.time()))
        if isinstance(decision, GiveUp):
            log.error("%s connection %d failed for good: %s", name, connection_id, reason)
            return decision.error
        if isinstance(decision, Renew):
            log.warning("%s connection %d: %s; renewing the credentials", name, connection_id, reason)
            refused: AuthenticationError | None = None
            try:
                await connector._renew_credentials()
            except AuthenticationError as exc:
                refused = exc
            except Exception as exc:  # a connector's bug: the feed ends, typed
                refused = provider_failed("renewal of the credentials", exc, connector._scrub)
            if refused is not None:
                if not policy.started:
                    raise refused from refused.__cause__
                text = connector._scrub(str(refused))
                log.error("%s connection %d failed for good: %s", name, connection_id, text)
                return refused
            if announce:
                emit(Reconnecting(broker, connection_id, decision.attempt, 0.0, time.time()))
            continue
        log.warning("%s connection %d: %s", name, connection_id, reason)
        emit(Reconnecting(broker, connection_id, decision.attempt, decision.delay, time.time()))
        await trio.sleep(decision.delay)
