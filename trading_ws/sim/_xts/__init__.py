"""A faithful Symphony XTS market-data server (JSON product): REST and Socket.IO on one loopback port.

It speaks xts-protocol.md sections 1-5 as Appendix A describes a mock: REST under ``/apimarketdata``
(login, logout, client config, subscribe, unsubscribe, list subscriptions, quotes, instrument master)
and an Engine.IO v3 / Socket.IO rev 4 WebSocket at ``/apimarketdata/socket.io/`` that streams
``<code>-json-full`` events (the data a JSON *string*) or ``<code>-json-partial`` events (``t:1_2885,
ltp:...``) from the shared seeded `Market`, for the instruments of the shared `UNIVERSE` (the same ones
the Kite simulator streams), addressed by their XTS ExchangeSegment and ExchangeInstrumentID.

The payloads are built from the reference document, independently of the library's own codec
(``trading_ws.brokers.xts._codec``), so that tests of one check the other.

Modules: ``_server`` (`XtsSimulator`: settings, serving, fault knobs, statistics), ``_rest`` (the REST
API, sans-IO, over a session store), ``_socket`` (the ASGI application: the REST adapter and the
Socket.IO sockets' tasks) and ``_payloads`` (the message builders).

The HTTP and WebSocket server is hypercorn's Trio worker running a plain ASGI application (no web
framework: nine routes and one WebSocket endpoint do not need one). Hypercorn's error log goes to the
``trading_ws.sim.http`` logger, its access log nowhere.

Protocol summary (what a client sees):

- ``POST /apimarketdata/auth/login`` with ``appKey``, ``secretKey`` (and optional ``source``) as JSON or
  form-urlencoded: ``{"type":"success","code":"e-response-0010","description":"Provided Valid
  Credentials","result":{"token":<JWT>,"userID":"DEMO01","appVersion":...,"application_expiry_date":
  ...}}``. The token is an HS256 JWT with ``userID`` (``<ClientID>_<appKey>``), ``publicKey``, ``iat``
  and ``exp = iat + 86400``. A login invalidates the previous token of the same appKey.
- Authenticated routes read the raw JWT from the ``Authorization`` header (no ``Bearer``).
- ``POST``/``PUT``/``GET /apimarketdata/instruments/subscription``, ``POST .../instruments/quotes``,
  ``POST .../instruments/master``, ``GET .../instruments/indexlist``, ``GET .../config/clientConfig``,
  ``DELETE .../auth/logout``.
- Socket: ``0{open}``, ``40``, ``42["joined",{...s-socket-0001...}]``, then the events; the client pings
  (``2``), the server answers ``3`` and closes the connection after ``ping_interval + ping_timeout``
  seconds without a ping.

Choices where the reference says "not verified" (or says nothing); each is deliberate:

- **Error codes.** Only ``e-session-0002`` ("Instrument Already Subscribed !") is observed. The others are
  this simulator's, in the observed ``e-<area>-<nnnn>`` shape: ``e-app-0001`` "Invalid appKey or
  secretKey" (HTTP 400); ``e-app-0002`` a login refused by `XtsSimulator.reject_next_login`;
  ``e-token-0001`` "Invalid Token" (HTTP 400, or `invalid_token_status`); ``e-request-0001`` "Bad
  Request" with ``result.errors`` (what PY-SDK's XTSInputException reads); ``e-session-0005``
  "Subscription limit exceeded"; ``e-instrument-0001`` "Instrument not found"; ``e-route-0001`` "Not
  Found" (404) and ``e-route-0002`` "Method Not Allowed" (405).
- **Success codes** other than the observed ones (``e-response-0010`` login, ``s-session-0001`` subscribe,
  ``s-quotes-0001`` quotes, ``s-socket-0001`` joined): ``s-session-0002`` "Instrument subscription
  deleted!" (unsubscribe, the description PAHLWAN's comment gives), ``s-session-0003`` (list),
  ``s-user-0002`` (logout), ``s-instrument-0001`` (master), ``s-config-0001`` (client config).
- **Subscription cap**: `max_subscriptions` (50) per session, counting every (instrument, message code)
  pair, so one instrument in 1501 and 1502 uses two. A request that would exceed it subscribes nothing
  and gets HTTP 400 ``e-session-0005`` with ``Remaining_Subscription_Count``.
- **Mixed subscribe requests** (some already subscribed): HTTP 200 with only the new instruments in
  ``quotesList``/``listQuotes`` (one observation); all already subscribed: HTTP 400 ``e-session-0002``.
- **Unknown instruments** (not in the universe): the whole request is refused (HTTP 400
  ``e-instrument-0001``, ``result.instruments`` lists them); nothing is subscribed.
- **Message codes**: 1501, 1502, 1505, 1510 and 1512 can be subscribed; others (1504, 1507, 1105, 5018)
  are refused as a Bad Request. Indices stream as 1501/1502 touchlines (zero books), as NIFTY does.
- **Unsubscribe** of something not subscribed is not an error: ``unsubList`` lists what was removed.
- **List** (``GET ...subscription?xtsMessageCode=1501``): ``result: {"mdp": 1501, "subscriptionList":
  [{exchangeSegment, exchangeInstrumentID, xtsMessageCode}], "Remaining_Subscription_Count": n}``; without
  ``xtsMessageCode`` every code is listed and ``mdp`` is null.
- **Quotes**: ``publishFormat`` is required (JSON only, any case; ``Binary`` is refused as a Bad Request),
  at most 50 instruments per request; ``quotesList`` echoes the ids as strings, as observed.
- **Master**: needs no ``Authorization`` (OPENALGO calls it without); ``exchangeSegmentList`` holds names
  (``"NSECM"``) or numbers. Rows are rendered by the library's own ``render_master``; indices are not
  master rows (``GET .../instruments/indexlist?exchangeSegment=1`` lists them as ``"NIFTY 50_26000"``).
- **Sessions.** Subscriptions belong to the session (the token), not to a socket: a socket that
  reconnects with the same token gets its ticks again without any REST call. A new login mints a new
  session with no subscriptions; the superseded token (and an expired one, see `expire_tokens`) is refused
  by REST and by new socket handshakes, but sockets already open keep streaming their session's
  subscriptions (the token is checked at the handshake only: "silently invalidates"). Logout clears the
  session and closes its sockets with ``41`` and a WebSocket close (1000). Two logins in the same second
  get ``iat`` one second apart so that their tokens differ (the payload has only the four observed keys).
- **Socket handshake.** A bad, superseded or expired token, or a ``userID`` that is not the session's plain
  client id, is refused with HTTP **401** and a JSON error body before the WebSocket upgrade (what a
  python-socketio 4 server does when its connect handler refuses); ``publishFormat`` other than JSON and
  an unknown ``broadcastMode`` with HTTP 400. ``publishFormat`` defaults to JSON and ``broadcastMode`` to
  Full when absent; both are case-insensitive. ``EIO`` is not checked (an EIO4 client gets EIO3, as from
  the real server); ``transport`` is ignored. HTTP polling is not offered: a plain GET of the socket path
  gets engine.io's ``400 {"code":0,"message":"Transport unknown"}``.
- **Socket frames.** ``joined`` carries an object (`joined_as_string` sends it as a JSON string). The
  ping-timeout close is a WebSocket close frame (1000) without an Engine.IO ``1`` (python-engineio 3
  aborts the same way). A client ``41`` or ``1`` closes the connection; other client packets (events such
  as DOTNET's ``join``, noops, garbage) are ignored. The open packet's times default to python-engineio
  3's 25 s / 60 s.
- **Payloads.** 1501 nested by default (`flat_touchline` for the flat form), with the wire's
  ``LastTradedQunatity``; ``TotalValueTraded`` null (as observed); whole-number prices as JSON integers;
  MessageVersion 4; BookType 1; XMarketType 1 (``XTSMarketType`` in 1510); one increasing
  ``SequenceNumber``. Partial 1501 carries one ``bi``/``ai`` level, 1502 five (``index|size|price|orders``).
- **Times.** NSE segments (1, 2, 3): seconds since 1980-01-01 IST wall clock (``unix - 315513000``).
  Other segments and candle ``BarTime``: seconds since 1970-01-01 IST wall clock (``unix + 19800``), the
  same choice as the library's codec. A 1505 ``BarTime`` is the bar's start.
- **Cadence.** Every `tick_interval` the market moves once and each socket gets, per subscription of its
  session: 1501, 1502 and 1512 always; 1510 for derivatives; 1505 when a bar of `candle_interval` seconds
  (wall clock; 60 by default) has closed. A socket that cannot keep up skips steps (it always gets the
  latest prices). 1510 and 1505 subscriptions of instruments without such data send their snapshot only.

Nothing here logs a token or a secret.
"""

from ._server import (
    DEMO_APP_KEY as DEMO_APP_KEY,
    DEMO_SECRET_KEY as DEMO_SECRET_KEY,
    DEMO_USER_ID as DEMO_USER_ID,
    XtsSimulator as XtsSimulator,
    XtsSimulatorStatistics as XtsSimulatorStatistics,
)

__all__ = [
    "DEMO_APP_KEY",
    "DEMO_SECRET_KEY",
    "DEMO_USER_ID",
    "XtsSimulator",
    "XtsSimulatorStatistics",
]
