"""The reconnect policy (sans-IO: no sockets, no clock) and the one supervisor loop (under autojump_clock,
with scripted connectors).

The feeds' reconnects end to end (the exact backoff delays, resubscribing, watchdogs and pings, refused and
renewed credentials, 429s) run over their ``connect=`` seam in memory under ``autojump_clock``:
tests/test_feed_memory.py; the manager's handling of them (status events, gaps, failed connections) on
`trading_ws.testing.FakeBroker`: tests/test_manager_fake.py and tests/test_manager_orders.py.
"""

from __future__ import annotations

import logging
import random
import traceback
from collections.abc import Callable
from typing import NoReturn

import pytest
import trio
from hypothesis import given, strategies as st

from trading_ws import (
    AuthenticationError,
    Backoff,
    Broker,
    ConnectError,
    ConnectTimeout,
    Disconnected,
    Event,
    RateLimitedError,
    Reconnecting,
    TradingWsError,
)
from trading_ws._transport import open_service_nursery
from trading_ws.brokers._reconnect import (
    ConnectionLost,
    GiveUp,
    ReconnectPolicy,
    Renew,
    Retry,
    SupervisorState,
    supervise,
)

NO_JITTER = Backoff(initial=1.0, factor=2.0, cap=8.0, jitter=0.0)


# ---------------------------------------------------------------------------------------------------------
# The policy


def test_errors_before_the_first_connection_give_up_at_once() -> None:
    policy = ReconnectPolicy(NO_JITTER)
    error = ConnectTimeout("slow")
    assert policy.failed(error) == GiveUp(error)


def test_refused_credentials_are_renewed_once_per_healthy_connection() -> None:
    policy = ReconnectPolicy(NO_JITTER)
    refused = AuthenticationError("403")
    assert policy.failed(refused, renewable=True) == Renew(1)
    assert policy.failed(refused, renewable=True) == GiveUp(refused)  # never a storm
    policy = ReconnectPolicy(NO_JITTER)
    assert policy.failed(refused, renewable=True) == Renew(1)
    policy.connected()  # the renewal worked
    assert policy.failed(refused, renewable=True) == Renew(2)  # a later refusal may renew again


def test_unrenewable_refusal_ends_the_feed_even_after_start() -> None:
    policy = ReconnectPolicy(NO_JITTER)
    policy.connected()
    refused = AuthenticationError("logged out")
    assert policy.failed(refused, renewable=False) == GiveUp(refused)


def test_backoff_grows_and_starts_over_after_data() -> None:
    policy = ReconnectPolicy(NO_JITTER)
    policy.connected()
    lost = ConnectionLost("closed", got_data=False)
    assert [policy.failed(lost) for _ in range(5)] == [
        Retry(1, 1.0),
        Retry(2, 2.0),
        Retry(3, 4.0),
        Retry(4, 8.0),
        Retry(5, 8.0),
    ]
    policy.connected()
    lost_after_data = ConnectionLost("closed", got_data=True)
    assert policy.failed(lost_after_data, got_data=True, uptime=5.0) == Retry(1, 1.0)
    # Data for less than Backoff.healthy_after (5 s) is no proof of health: a broker that accepts, sends a
    # heartbeat and drops cannot pin the delay at `initial` (or defeat max_attempts).
    policy.connected()
    assert policy.failed(lost_after_data, got_data=True, uptime=4.9) == Retry(2, 2.0)
    # A connection that came up but delivered nothing was not healthy, however long: no fresh start.
    policy.connected()
    assert policy.failed(ConnectionLost("closed", got_data=False), uptime=60.0) == Retry(3, 4.0)


def test_max_attempts_gives_up_with_the_last_error_as_cause() -> None:
    policy = ReconnectPolicy(Backoff(initial=1.0, jitter=0.0, max_attempts=2))
    policy.connected()
    assert isinstance(policy.failed(ConnectError("a")), Retry)
    assert isinstance(policy.failed(ConnectError("b")), Retry)
    last = RateLimitedError("429")
    decision = policy.failed(last)
    assert isinstance(decision, GiveUp)
    assert "gave up after 2 failed reconnect attempts" in str(decision.error)
    assert decision.error.__cause__ is last


errors = st.sampled_from(
    [
        lambda: ConnectError("x"),
        lambda: ConnectTimeout("x"),
        lambda: RateLimitedError("x"),
        lambda: ConnectionLost("x", got_data=False),
        lambda: ConnectionLost("x", got_data=True),
        lambda: AuthenticationError("x"),
    ]
)
steps = st.lists(st.one_of(st.just("up"), st.tuples(errors, st.booleans(), st.floats(0, 10))), max_size=60)


@given(steps=steps, seed=st.integers(0, 2**32), max_attempts=st.none() | st.integers(0, 5))
def test_policy_rules_hold_for_any_sequence(
    steps: list[str | tuple[Callable[[], TradingWsError], bool, float]], seed: int, max_attempts: int | None
) -> None:
    """The rules, for any sequence of connections and failures:
    - before the first connection, only a renewable refusal (once) does not end the feed;
    - a refusal is renewed at most once between two connections, and never when not renewable;
    - a delay is never above the cap; attempts count up by one, and start over after data that flowed for
      `healthy_after` seconds (not before);
    - other errors after the start are retried until max_attempts consecutive failures.
    """
    backoff = Backoff(initial=0.5, factor=2.0, cap=4.0, jitter=0.3, max_attempts=max_attempts)
    policy = ReconnectPolicy(backoff, random.Random(seed))
    started = False
    renewed = False
    failures = 0  # retries since the backoff last started over
    attempt = 0
    for step in steps:
        if step == "up":
            policy.connected()
            started, renewed = True, False
            continue
        assert not isinstance(step, str)
        make, renewable, uptime = step
        error = make()
        got_data = isinstance(error, ConnectionLost) and error.got_data
        decision = policy.failed(error, got_data=got_data, uptime=uptime, renewable=renewable)
        if got_data and uptime >= backoff.healthy_after:
            failures = attempt = 0
        if isinstance(error, AuthenticationError):
            if renewable and not renewed:
                renewed = True
                attempt += 1
                assert decision == Renew(attempt)
            else:
                assert decision == GiveUp(error)
                return
        elif not started:
            assert decision == GiveUp(error)
            return
        elif max_attempts is not None and failures >= max_attempts:
            assert isinstance(decision, GiveUp)
            assert decision.error.__cause__ is error
            return
        else:
            assert isinstance(decision, Retry)
            failures += 1
            attempt += 1
            assert decision.attempt == attempt
            assert 0 < decision.delay <= backoff.cap


# ---------------------------------------------------------------------------------------------------------
# The supervisor


class Scripted:
    """A connector whose attempts follow a script: each entry is an exception to raise (after `up()` when
    it is a ConnectionLost), or "up-forever"."""

    def __init__(self, script: list[BaseException | str], renewable: bool = False) -> None:
        self.script = list(script)
        self.attempts = 0
        self.renewals = 0
        self.renewable = renewable
        self._closing = False

    async def _connect_once(self, up: Callable[[], None]) -> NoReturn:
        self.attempts += 1
        await trio.sleep(0.01)
        step = self.script.pop(0) if self.script else "up-forever"
        if step == "up-forever":
            up()
            await trio.sleep_forever()
        assert isinstance(step, BaseException)
        if isinstance(step, ConnectionLost):
            up()
        raise step

    def _can_renew(self, error: AuthenticationError) -> bool:
        return self.renewable

    async def _renew_credentials(self) -> None:
        self.renewals += 1

    def _scrub(self, text: str) -> str:
        return text.replace("SECRET", "***")


async def _run(connector: Scripted, backoff: Backoff = NO_JITTER) -> tuple[list[Event], SupervisorState]:
    events: list[Event] = []
    state = SupervisorState()
    async with open_service_nursery() as nursery:
        await nursery.start(
            lambda task_status: supervise(
                connector,
                ReconnectPolicy(backoff),
                broker=Broker.KITE,
                connection_id=3,
                emit=events.append,
                log=logging.getLogger("test"),
                state=state,
                task_status=task_status,
            )
        )
        await trio.sleep(100)
        nursery.cancel_scope.cancel()
    return events, state


async def test_supervisor_raises_the_first_error_where_the_feed_was_opened(
    autojump_clock: trio.abc.Clock,
) -> None:
    with pytest.raises(ConnectTimeout):
        await _run(Scripted([ConnectTimeout("slow")]))


async def test_supervisor_maps_a_foreign_error_on_the_first_connect(autojump_clock: trio.abc.Clock) -> None:
    foreign = ValueError("wsproto says no")
    with pytest.raises(ConnectError) as caught:
        await _run(Scripted([foreign]))
    assert caught.value.__cause__ is foreign
    assert str(caught.value) == "unexpected error: ValueError: wsproto says no"


async def test_a_foreign_error_showing_a_secret_is_not_kept_or_logged(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    foreign = ValueError("wsproto says SECRET is bad")
    with pytest.raises(ConnectError) as caught:
        await _run(Scripted([foreign]))
    assert caught.value.__cause__ is None
    assert "SECRET" not in "".join(traceback.format_exception(caught.value))
    assert "SECRET" not in caplog.text
    assert "***" in caplog.text


async def test_supervisor_backs_off_through_any_error_after_the_start(autojump_clock: trio.abc.Clock) -> None:
    script: list[BaseException | str] = [
        ConnectionLost("closed", got_data=True),
        KeyError("a bug in a library"),  # not ours, not mapped: still a failed attempt
        ConnectTimeout("slow"),
        RateLimitedError("429"),
    ]
    connector = Scripted(script)
    events, state = await _run(connector)
    reconnecting = [e for e in events if isinstance(e, Reconnecting)]
    assert [(e.attempt, e.delay) for e in reconnecting] == [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)]
    assert [e.reason for e in events if isinstance(e, Disconnected)] == [
        "closed",
        "unexpected error: KeyError: 'a bug in a library'",
        "slow",
        "429",
    ]
    assert all(e.connection == 3 for e in events if isinstance(e, (Disconnected, Reconnecting)))
    assert connector.attempts == 5
    assert state.connects == 2
    assert state.reconnects == 1


async def test_supervisor_renews_once_then_fails_for_good(autojump_clock: trio.abc.Clock) -> None:
    connector = Scripted(
        [
            ConnectionLost("closed", got_data=True),
            AuthenticationError("403"),
            AuthenticationError("403 again"),
        ],
        renewable=True,
    )
    events: list[Event] = []
    state = SupervisorState()
    async with trio.open_nursery() as nursery:
        result = await _supervise_to_end(connector, events, state, nursery)
    assert isinstance(result, AuthenticationError)
    assert str(result) == "403 again"
    assert connector.renewals == 1
    assert [type(e) for e in events] == [Disconnected, Reconnecting, Disconnected]


async def _supervise_to_end(
    connector: Scripted, events: list[Event], state: SupervisorState, nursery: trio.Nursery
) -> TradingWsError | None:
    result: list[TradingWsError | None] = []
    done = trio.Event()

    async def run(task_status: trio.TaskStatus[None]) -> None:
        result.append(
            await supervise(
                connector,
                ReconnectPolicy(NO_JITTER),
                broker=Broker.XTS,
                connection_id=0,
                emit=events.append,
                log=logging.getLogger("test"),
                state=state,
                task_status=task_status,
            )
        )
        done.set()

    await nursery.start(run)
    await done.wait()
    return result[0]


async def test_supervisor_returns_quietly_while_the_feed_is_closing(autojump_clock: trio.abc.Clock) -> None:
    connector = Scripted([])

    async def connect_once(up: Callable[[], None]) -> NoReturn:
        up()
        connector._closing = True
        raise ConnectionLost("closed by us", got_data=True)

    connector._connect_once = connect_once  # type: ignore[method-assign]
    events: list[Event] = []
    async with trio.open_nursery() as nursery:
        result = await _supervise_to_end(connector, events, SupervisorState(), nursery)
    assert result is None
    assert events == []


async def test_supervisor_never_swallows_cancellation(autojump_clock: trio.abc.Clock) -> None:
    connector = Scripted([])
    with trio.move_on_after(5) as scope:
        await _run(connector)
    assert scope.cancelled_caught
