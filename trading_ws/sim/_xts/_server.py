"""The XTS simulator itself: `XtsSimulator` (its settings, serving with hypercorn, the market's pace),
its fault knobs and its statistics. The REST API is in ``_rest``, the sockets in ``_socket``, the
messages in ``_payloads``; the behaviour is listed in the docstring of ``trading_ws.sim._xts``.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial
from typing import Final, cast

import attrs
import hypercorn.trio
import trio
from hypercorn.config import Config as HypercornConfig

from ..._errors import ConfigurationError
from .._common import at_least_one, check_serve, logger, positive, reset
from .._tls import HANDSHAKE_TIMEOUT, SimulatorTLS
from .._universe import UNIVERSE, Instrument, Market
from ._payloads import Payloads
from ._rest import RestApi, SessionStore
from ._socket import App

__all__ = [
    "DEMO_APP_KEY",
    "DEMO_SECRET_KEY",
    "DEMO_USER_ID",
    "XtsSimulator",
    "XtsSimulatorStatistics",
]

DEMO_APP_KEY: Final = "demo_app_key"
"""The appKey an `XtsSimulator` accepts by default."""
DEMO_SECRET_KEY: Final = "demo_secret_key"
"""The secretKey an `XtsSimulator` accepts by default."""
DEMO_USER_ID: Final = "DEMO01"
"""The plain client id an `XtsSimulator` logs in by default (the ``userID`` of the socket query)."""

_http_logger = logging.getLogger("trading_ws.sim.http")


def _status(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not (value == 200 or 400 <= value <= 499):
        raise ConfigurationError(f"{attribute.name} must be 200 or a 4xx HTTP status, got {value!r}")


@attrs.frozen
class XtsSimulatorStatistics:
    """A snapshot of an `XtsSimulator`'s counters (they count from the simulator's creation)."""

    logins: int
    """Successful logins."""
    logins_refused: int
    """Logins refused (wrong keys, malformed bodies, `XtsSimulator.reject_next_login`)."""
    sessions: int
    """Sessions whose token is valid now."""
    sockets_open: int
    """Socket.IO connections accepted and still open."""
    sockets_accepted: int
    handshakes_rejected: int
    """WebSocket handshakes refused (bad token or user, bad query, wrong path)."""
    rest_requests: int
    """HTTP requests answered (every route, errors included; not the WebSocket handshakes)."""
    events_sent: int
    """Market-data events (``42["<code>-json-..."]``) sent; ``joined`` and garbage not included."""
    garbage_frames_sent: int
    pings_received: int
    """Engine.IO pings (``2``) received from clients."""
    pongs_sent: int
    connections_dropped: int
    """Sockets aborted by `XtsSimulator.drop_connections`."""
    subscriptions: Mapping[int, int]
    """Subscribed (instrument, message code) pairs of each live session, by session number (1, 2...).

    A session is live while its token is valid or it still has open sockets."""
    market_steps: int


class _TLSConfig(HypercornConfig):
    """Hypercorn's configuration serving TLS with a ready `ssl.SSLContext` (hypercorn itself only loads a
    certificate and key from files; the simulator's key stays in memory)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        context.set_alpn_protocols(["http/1.1"])
        self._tls_context = context

    @property
    def ssl_enabled(self) -> bool:
        return True

    def create_ssl_context(self) -> ssl.SSLContext:
        return self._tls_context


@attrs.define(eq=False)
class XtsSimulator:
    """An XTS market-data server (REST + Socket.IO, JSON product) for tests and demos, on one port.

    Start it in a nursery (``root = await nursery.start(sim.serve)``; ``root`` is
    ``http://127.0.0.1:PORT``), log in at ``root + "/apimarketdata/auth/login"`` with
    `DEMO_APP_KEY` / `DEMO_SECRET_KEY`, subscribe over REST, and connect a Socket.IO (EIO3) client to
    ``ws://127.0.0.1:PORT/apimarketdata/socket.io/?token=...&userID=DEMO01&publishFormat=JSON&
    broadcastMode=Full&transport=websocket&EIO=3``. Stopping is cancelling that task; nothing outlives it.

    The docstring of ``trading_ws.sim._xts`` lists the behaviour, including every choice the protocol
    reference leaves open. Prices come from `market` (seeded by `seed`): the shared random walk of the
    Kite simulator.

    Fault knobs, synchronous and safe to call from tests while serving: `drop_connections`, `go_silent`,
    `send_garbage`, `expire_tokens`, `reject_next_login`. Assertions: `statistics`, `subscriptions`.

    Args (all keyword-friendly attrs fields):
        app_key, secret_key, user_id: the one account it accepts (keys are never logged or shown).
        seed: the random walk's seed.
        tick_interval: seconds between market steps (and events).
        ping_interval, ping_timeout: announced in the open packet (seconds); the server closes a socket
            after ``ping_interval + ping_timeout`` seconds without a client ping.
        max_subscriptions: the per-session cap of (instrument, code) pairs.
        invalid_token_status: the HTTP status of "Invalid Token" answers: 400 (what PY-SDK expects), 200 (as
            some deployments do, with ``"type":"error"`` in the body) or another 4xx.
        flat_touchline: send 1501 in the flat form instead of the nested ``Touchline`` object.
        shuffle_keys: shuffle the key order of full messages (seeded), as the real feed's order is unstable.
        joined_as_string: send the ``joined`` payload as a JSON string rather than an object.
        candle_interval: seconds (of `clock`) per 1505 bar.
        clock: wall-clock time for the payloads' timestamps and the tokens (``time.time``).
        instruments: the instruments it serves (the shared `UNIVERSE`).

    Raises:
        ConfigurationError: (at construction) a non-positive interval or limit, or an
            `invalid_token_status` that is neither 200 nor 4xx.
    """

    app_key: str = attrs.field(default=DEMO_APP_KEY, repr=False)
    secret_key: str = attrs.field(default=DEMO_SECRET_KEY, repr=False)
    user_id: str = DEMO_USER_ID
    seed: int = 0
    tick_interval: float = attrs.field(default=0.2, validator=positive)
    ping_interval: float = attrs.field(default=25.0, validator=positive)
    ping_timeout: float = attrs.field(default=60.0, validator=positive)
    max_subscriptions: int = attrs.field(default=50, validator=at_least_one)
    invalid_token_status: int = attrs.field(default=400, validator=_status)
    flat_touchline: bool = False
    shuffle_keys: bool = False
    joined_as_string: bool = False
    candle_interval: float = attrs.field(default=60.0, validator=positive)
    clock: Callable[[], float] = attrs.field(default=time.time, repr=False)
    instruments: tuple[Instrument, ...] = attrs.field(default=UNIVERSE, converter=tuple, repr=False)
    market: Market = attrs.field(init=False, repr=False)
    """The simulated market (built from `seed` and `instruments`)."""

    _url: str | None = attrs.field(init=False, default=None, repr=False)
    _serving: bool = attrs.field(init=False, default=False, repr=False)
    _counters: Counter[str] = attrs.field(init=False, factory=Counter, repr=False)
    _store: SessionStore = attrs.field(init=False, factory=SessionStore, repr=False)
    _payloads: Payloads = attrs.field(init=False, repr=False)
    _rest: RestApi = attrs.field(init=False, repr=False)
    _app: App = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.market = Market(self.seed, self.instruments)
        self._payloads = Payloads(self, self.market, random.Random(self.seed))
        self._rest = RestApi(self, self._store, self._payloads, self._counters)
        self._app = App(self, self._rest, self._payloads, self._counters)

    # -----------------------------------------------------------------------------------------------------
    # Serving

    @property
    def url(self) -> str:
        """The root URL (``http://127.0.0.1:PORT``) of the REST routes and of the socket (as ``ws://``);
        ``https://`` (and ``wss://``) when serving with TLS.

        Raises:
            RuntimeError: the simulator is not serving.
        """
        if self._url is None:
            raise RuntimeError("the XTS simulator is not serving (start it with nursery.start(sim.serve))")
        return self._url

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        allow_non_loopback: bool = False,
        tls: SimulatorTLS | None = None,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve REST and Socket.IO until cancelled; report the root URL (``http://127.0.0.1:PORT``, or
        ``https://`` with `tls`).

        Use as ``root = await nursery.start(sim.serve)``. Blocks until cancelled. Cancellation: every
        connection and task it started is finished when it returns; sessions and their subscriptions stay
        (serving again continues them).

        Args:
            host: the address to listen on; ``"localhost"`` means ``127.0.0.1``.
            port: the TCP port; 0 picks a free one (the reported URL has the real one).
            allow_non_loopback: allow a host that is not a loopback address (the simulator accepts
                well-known demo credentials: think twice).
            tls: serve ``https://`` REST and a ``wss://`` socket (one port, HTTP/1.1) with this
                `SimulatorTLS`'s certificate (clients trust it with ``tls.client_context()`` or the file
                `SimulatorTLS.write_ca` writes). A client whose TLS handshake fails is dropped quietly
                (hypercorn logs nothing for it), within 10 s if it stalls; the simulator serves on.

        Raises:
            ConfigurationError: (a ValueError) a non-loopback host without ``allow_non_loopback``, a
                port outside 0..65535, or a `tls` that is not a SimulatorTLS.
            RuntimeError: the simulator is already serving.
            OSError: the address cannot be listened on.
        """
        bind_host = check_serve(host, port, allow_non_loopback, tls)
        if self._serving:
            raise RuntimeError("this XTS simulator is already serving")
        self._serving = True
        config = HypercornConfig() if tls is None else _TLSConfig(tls.server_context())
        config.ssl_handshake_timeout = HANDSHAKE_TIMEOUT
        config.bind = [f"[{bind_host}]:{port}" if ":" in bind_host else f"{bind_host}:{port}"]
        config.accesslog = None
        config.errorlog = _http_logger
        config.include_server_header = False
        config.graceful_timeout = 0.5
        app = cast("hypercorn.typing.ASGIFramework", self._app.asgi)
        try:
            async with trio.open_nursery() as nursery:
                binds: list[str] = await nursery.start(partial(hypercorn.trio.serve, app, config))
                nursery.start_soon(self._run_market)
                self._url = binds[0]
                logger.info("XTS simulator listening on %s", self._url)
                task_status.started(self._url)
        finally:
            self._url = None
            self._serving = False
            self._app.sockets.clear()
            self._store.detach_sockets()

    async def _run_market(self) -> None:
        deadline = trio.current_time()
        while True:
            deadline += self.tick_interval
            now = trio.current_time()
            if deadline < now:
                deadline = now  # we fell behind (a blocked run): do not burst to catch up
            await trio.sleep_until(deadline)
            self._payloads.step()
            self._app.wake_all()

    # -----------------------------------------------------------------------------------------------------
    # Fault knobs and assertions (synchronous; safe to call from any task of the serving Trio run).

    def drop_connections(self) -> int:
        """Abort every open socket's TCP connection at once (a reset: no Socket.IO or WebSocket close).

        Clients see an abnormal closure (WebSocket code 1006). The sessions and their subscriptions stay:
        a client that reconnects with its token gets its ticks again. Returns the number of sockets
        dropped. Does not block; raises nothing. (Should hypercorn's internals ever hide the TCP stream,
        a socket is closed with WebSocket code 1011 instead, and a warning is logged.)
        """
        dropped = 0
        for sock in list(self._app.sockets.values()):
            if sock.closed:
                continue
            dropped += 1
            sock.closed = True
            sock.reason = "dropped (reset)"
            if not reset(sock.transport):
                logger.warning("XTS simulator: cannot reach socket %d's TCP stream; closing it", sock.number)
                sock.request_close(1011)
        self._counters["dropped"] += dropped
        if dropped:
            logger.info("XTS simulator: dropped %d socket(s)", dropped)
        return dropped

    def go_silent(self, silent: bool = True) -> None:
        """Stop (or, with False, resume) sending events and pongs on every socket; sockets stay open.

        While silent, pings are still read (and counted, and keep the server's ping watchdog happy), but
        not answered; garbage and closes requested by other knobs still go out, and new sockets still get
        their handshake. REST keeps answering. The market keeps moving. Does not block; raises nothing.
        """
        self._app.silent = silent
        if not silent:
            self._app.wake_all()

    def send_garbage(self, count: int = 1) -> int:
        """Send `count` malformed frames to every open socket, at once.

        They cycle through: an event whose JSON-string data is cut, a cut Socket.IO event, an event whose
        data is not a list, an empty event, text that is no packet, a partial event with broken values,
        and an unknown Engine.IO packet type. Returns the number of sockets affected. Does not block.

        Raises:
            ValueError: a negative count.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        affected = 0
        for sock in self._app.sockets.values():
            if not sock.closed:
                sock.garbage += count
                sock.notify()
                affected += 1
        return affected

    def expire_tokens(self) -> int:
        """Make every current token invalid, as the 24 h expiry does.

        REST calls and new socket handshakes with those tokens are refused ("Invalid Token"); sockets
        already open stay open. Clients must log in again. Returns the number of sessions expired. Does not
        block; raises nothing.
        """
        expired = self._store.expire_all()
        if expired:
            logger.info("XTS simulator: expired %d token(s)", expired)
        return expired

    def reject_next_login(self, status: int = 500, count: int = 1) -> None:
        """Refuse the next `count` logins with HTTP `status` and an error envelope (``e-app-0002``).

        The refusal comes before the credentials are checked and does not touch existing sessions. A
        status of 200 gives "HTTP 200 with type error". Does not block.

        Raises:
            ValueError: a status outside 200-599, or a negative count.
        """
        if not 200 <= status <= 599:
            raise ValueError(f"status must be an HTTP status in 200-599, got {status}")
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        self._rest.login_rejections.extend([status] * count)

    def subscriptions(self, token: str | None = None) -> list[tuple[int, int, int]]:
        """The (ExchangeSegment, ExchangeInstrumentID, xtsMessageCode) subscriptions of a session.

        Args:
            token: the session's token; None means the latest login's session (valid or not).

        Returns:
            A copy, in the order subscribed; empty if there is no such session. Does not block.
        """
        session = self._store.get(token) if token is not None else self._store.latest(self.app_key)
        return [] if session is None else list(session.subscriptions)

    def statistics(self) -> XtsSimulatorStatistics:
        """A snapshot of the simulator's counters. Does not block; raises nothing."""
        c = self._counters
        now = self.clock()
        return XtsSimulatorStatistics(
            logins=c["logins"],
            logins_refused=c["logins_refused"],
            sessions=sum(1 for s in self._store if s.valid and s.expires_at > now),
            sockets_open=sum(1 for s in self._app.sockets.values() if not s.closed),
            sockets_accepted=c["sockets_accepted"],
            handshakes_rejected=c["handshakes_rejected"],
            rest_requests=c["rest"],
            events_sent=c["events"],
            garbage_frames_sent=c["garbage"],
            pings_received=c["pings"],
            pongs_sent=c["pongs"],
            connections_dropped=c["dropped"],
            subscriptions={s.number: len(s.subscriptions) for s in self._store if s.valid or s.sockets},
            market_steps=self.market.steps,
        )
