"""The Kite simulator's REST endpoint: the instrument master (``GET /instruments[/<exchange>]``), as
``https://api.kite.trade`` serves it, in a few lines of sans-IO HTTP/1.1 (h11) on a Trio stream.

`MasterEndpoint.answer` is the whole API (a request in, a status, headers and body out); `handle` runs
one connection and `serve` the listener.
"""

from __future__ import annotations

import gzip
import hmac
import logging
import ssl
from typing import Final, Protocol
from urllib.parse import urlsplit

import attrs
import h11
import msgspec
import trio

from .._common import url
from .._tls import tls_handshake
from .._universe import Instrument, kite_instruments_csv

__all__ = ["FORBIDDEN_BODY", "MasterEndpoint", "MasterSettings", "error_body"]

logger = logging.getLogger("trading_ws.sim")

_TIMEOUT: Final = 10.0  # seconds a client has to send its request, and to read the answer


def error_body(message: str, error_type: str) -> bytes:
    """A Kite error body: ``{"status": "error", "message": ..., "data": null, "error_type": ...}``."""
    # The shape of Kite's REST error responses; what the WebSocket upgrade sends with 403/429 is not known.
    return msgspec.json.encode(
        {"status": "error", "message": message, "data": None, "error_type": error_type}
    )


FORBIDDEN_BODY: Final = error_body("Incorrect `api_key` or `access_token`.", "TokenException")
"""The body of a 403 for wrong credentials (it never echoes the token)."""

_Headers = list[tuple[bytes, bytes]]


class MasterSettings(Protocol):
    """The `KiteSimulator` settings the endpoint reads, at each request (a change while serving counts)."""

    api_key: str
    access_token: str
    instruments: tuple[Instrument, ...]


@attrs.define(eq=False)
class MasterEndpoint:
    """The instrument-master endpoint of one simulator (see `KiteSimulator.serve_rest`)."""

    settings: MasterSettings = attrs.field(repr=False)

    def answer(self, request: h11.Request) -> tuple[int, _Headers, bytes]:
        """The status, headers and body answering `request` (without Content-Length). Sans-IO."""
        settings = self.settings
        json_type = [(b"Content-Type", b"application/json")]
        path = urlsplit(request.target.decode("ascii", "replace")).path.rstrip("/")
        if not (path == "/instruments" or path.startswith("/instruments/")):
            return 404, json_type, error_body("Route not found", "GeneralException")
        if request.method not in (b"GET", b"HEAD"):
            return 405, json_type, error_body("Method not allowed", "GeneralException")
        wanted = f"token {settings.api_key}:{settings.access_token}".encode()
        given = {name.lower(): value for name, value in request.headers}.get(b"authorization", b"")
        if not hmac.compare_digest(given, wanted):
            return 403, json_type, FORBIDDEN_BODY
        exchange = path.removeprefix("/instruments").strip("/").upper()
        if "/" in exchange:
            return 404, json_type, error_body("Route not found", "GeneralException")
        rows = [i for i in settings.instruments if not exchange or i.exchange == exchange]
        csv = kite_instruments_csv(rows).encode()
        return 200, [(b"Content-Type", b"text/csv"), (b"Content-Encoding", b"gzip")], gzip.compress(csv)

    async def serve(
        self,
        bind: str,
        port: int,
        context: ssl.SSLContext | None,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on `bind`:`port` (TLS with `context`), report the root URL, and answer connections until
        cancelled. Cancellation: the listeners and every connection are closed when it returns.

        Raises:
            OSError: the address cannot be listened on.
        """
        tcp = await trio.open_tcp_listeners(port, host=bind)
        root = url("http" if context is None else "https", bind, tcp[0].socket.getsockname()[1])
        logger.info("Kite simulator REST listening on %s", root)
        task_status.started(root)
        if context is None:
            await trio.serve_listeners(self.handle, tcp)
        else:
            tls_listeners = [trio.SSLListener(t, context, https_compatible=True) for t in tcp]
            await trio.serve_listeners(self.handle, tls_listeners)

    async def handle(self, stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]) -> None:
        """Answer one request on `stream`, then close it (a failed TLS handshake or a broken request is
        logged at INFO and dropped). Cancellation: the stream is closed."""
        conn = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        try:
            if isinstance(stream, trio.SSLStream) and not await tls_handshake(stream, "Kite simulator REST"):
                return
            with trio.move_on_after(_TIMEOUT):  # a client that never finishes its request is dropped
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(bytes(await stream.receive_some(65536)))
                    elif isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                        break
            if request is None:
                return
            status, headers, body = self.answer(request)
            headers = [*headers, (b"Content-Length", str(len(body)).encode()), (b"Connection", b"close")]
            parts: list[h11.Response | h11.Data | h11.EndOfMessage] = [
                h11.Response(status_code=status, headers=headers),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ]
            if request.method == b"HEAD":  # the same headers, no body
                del parts[1]
            data = b"".join(conn.send(part) or b"" for part in parts)
            with trio.move_on_after(_TIMEOUT):  # a client that never reads is dropped too
                await stream.send_all(data)
        except (h11.RemoteProtocolError, h11.LocalProtocolError, trio.BrokenResourceError) as exc:
            logger.info("Kite simulator REST: dropped a request (%s)", type(exc).__name__)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.aclose()
