"""Throwaway TLS certificates for the simulators: a private CA and a server certificate for loopback.

Made on the fly by trustme (a library for test certificates) and kept in memory: nothing is written
anywhere unless asked (`SimulatorTLS.write_ca` writes the CA's certificate, which is public). The one
exception is the standard library's: `ssl.SSLContext.load_cert_chain` reads a key only from a file, so
`SimulatorTLS.server_context` writes the server key and certificate to a private temporary file (mode
0600, in the system's temporary directory) for the length of that call and removes it at once.
"""

from __future__ import annotations

import errno
import logging
import os
import ssl
from pathlib import Path
from typing import Final

import trio
import trustme

from .._errors import ConfigurationError
from .._scrub import scrub

__all__ = ["HandshakingListener", "SimulatorTLS", "tls_handshake"]

logger = logging.getLogger("trading_ws.sim")

_ORGANIZATION: Final = "trading-ws simulator"
# Out of file descriptors or memory: accepting may work again later (trio.serve_listeners' list).
_ACCEPT_CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
HANDSHAKE_TIMEOUT: Final = 10.0
"""Seconds a client has to complete its TLS handshake with a simulator."""


class SimulatorTLS:
    """A throwaway certificate authority and a server certificate it signed, for the simulators' TLS.

    ``SimulatorTLS()`` makes a fresh CA (ECDSA P-256) and a certificate for ``localhost``, ``127.0.0.1``
    and ``::1`` (the addresses the simulators listen on), valid from now on for many years. Nothing
    trusts that CA but what is told to: pass `client_context` to a client (``open_kite_feed(...,
    ssl_context=tls.client_context())``), or write the CA with `write_ca` for other programs
    (``SSL_CERT_FILE=ca.pem curl https://127.0.0.1:PORT/...``,
    ``ssl.create_default_context(cafile="ca.pem")``).

    Give it to ``KiteSimulator.serve(tls=...)``, ``KiteSimulator.serve_rest(tls=...)`` or
    ``XtsSimulator.serve(tls=...)``. One instance may serve any number of simulators at once.

    The private keys stay in memory (see the module docstring for the one short-lived temporary file);
    the repr shows none of them. Construction does not block on I/O (key generation takes a few
    milliseconds of CPU).
    """

    HOSTNAMES: Final = ("localhost", "127.0.0.1", "::1")
    """The names and addresses the server certificate is valid for."""

    __slots__ = ("_ca", "_server")

    def __init__(self) -> None:
        self._ca = trustme.CA(organization_name=_ORGANIZATION)
        self._server = self._ca.issue_cert(*self.HOSTNAMES, organization_name=_ORGANIZATION)

    def __repr__(self) -> str:
        return f"SimulatorTLS(hostnames={self.HOSTNAMES!r})"

    @property
    def ca_pem(self) -> bytes:
        """The CA's certificate, PEM-encoded (public: no key). What a client must trust."""
        return self._ca.cert_pem.bytes()

    def server_context(self) -> ssl.SSLContext:
        """A new server-side context presenting the server certificate (TLS 1.2 or later).

        The simulators call this; a test serving its own TLS endpoint may too. Does not block (see the
        module docstring for its brief temporary file).

        Raises:
            OSError: the temporary file for the key could not be written.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._server.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A new client-side context that trusts this CA and nothing else, verification on.

        Certificates are required and checked, and so is the hostname (``localhost``, ``127.0.0.1`` or
        ``::1`` match; any other name fails, as it should). Does not block; raises nothing.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._ca.configure_trust(context)
        return context

    def write_ca(self, path: str | os.PathLike[str]) -> Path:
        """Write the CA's certificate (`ca_pem`) to `path`, replacing any file there; return the path.

        Only the public certificate is written, never a key. Blocks on the file system (a small write).

        Raises:
            ConfigurationError: `path` is not a str or a path-like object.
            OSError: the file cannot be written.
        """
        if not isinstance(path, str | os.PathLike):
            raise ConfigurationError(f"path must be a str or a path, got {type(path).__name__}")
        target = Path(path)
        target.write_bytes(self.ca_pem)
        return target


async def tls_handshake(stream: trio.SSLStream[trio.SocketStream], server: str) -> bool:
    """Run the server side of `stream`'s TLS handshake; True when it succeeded.

    A failed handshake (a client that does not trust the CA, plain HTTP on the TLS port, a client that
    hangs up or says nothing for `HANDSHAKE_TIMEOUT` seconds) is logged at INFO, without a traceback, and
    gives False: the caller closes the stream and serves on. Cancellation propagates.
    """
    try:
        with trio.fail_after(HANDSHAKE_TIMEOUT):
            await stream.do_handshake()
    except (trio.BrokenResourceError, trio.TooSlowError) as exc:
        cause = exc.__cause__
        reason = (
            "timed out"
            if isinstance(exc, trio.TooSlowError)
            else getattr(cause, "reason", None) or str(cause or "the client closed the connection")
        )
        logger.info("%s: a TLS handshake failed (%s)", server, scrub(str(reason), limit=200))
        return False
    return True


class HandshakingListener(trio.abc.Listener[trio.SSLStream[trio.SocketStream]]):
    """A listener whose `accept` gives only TLS streams whose handshake succeeded.

    For servers that would otherwise run the handshake lazily inside their connection handling
    (trio-websocket's server waits out its connect timeout, 60 s, with the socket open, after a failed
    handshake). Handshakes run concurrently in `run`, which must be running (``await
    nursery.start(listener.run)``) for `accept` to return; a failed one is logged at INFO (see
    `tls_handshake`) and its connection closed at once.
    """

    def __init__(self, tcp: list[trio.SocketListener], context: ssl.SSLContext, server: str) -> None:
        self._tcp = tcp
        self._tls = [trio.SSLListener(t, context, https_compatible=True) for t in tcp]
        self._server = server
        self._send, self._receive = trio.open_memory_channel[trio.SSLStream[trio.SocketStream]](0)

    @property
    def port(self) -> int:
        """The TCP port of the first listening socket."""
        port: int = self._tcp[0].socket.getsockname()[1]
        return port

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept TCP connections and run their TLS handshakes until cancelled; reports when listening."""
        # Not trio.serve_listeners: it closes a stream when its handler returns, and a stream handed over
        # to `accept` must stay open.
        async with trio.open_nursery() as nursery:
            for listener in self._tls:
                nursery.start_soon(self._accept, listener, nursery)
            task_status.started()  # the sockets listen already: connections queue until accepted

    async def _accept(self, listener: trio.SSLListener[trio.SocketStream], nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                logger.warning("%s: cannot accept a connection now (%s); retrying", self._server, exc)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(self._handshake, stream)

    async def _handshake(self, stream: trio.SSLStream[trio.SocketStream]) -> None:
        handed_over = False
        try:
            if await tls_handshake(stream, self._server):
                await self._send.send(stream)  # if cancelled, nothing was sent: the stream is still ours
                handed_over = True
        finally:
            if not handed_over:
                await trio.aclose_forcefully(stream)

    async def accept(self) -> trio.SSLStream[trio.SocketStream]:
        """The next connection whose TLS handshake succeeded (waits for one).

        Raises:
            trio.ClosedResourceError: the listener was closed.
        """
        try:
            return await self._receive.receive()
        except trio.EndOfChannel as exc:  # pragma: no cover - the send side is never closed
            raise trio.ClosedResourceError("the listener was closed") from exc

    async def aclose(self) -> None:
        """Close the listening sockets; `accept` then raises ClosedResourceError."""
        self._receive.close()
        for listener in self._tcp:
            listener.socket.close()
        await trio.lowlevel.checkpoint()
