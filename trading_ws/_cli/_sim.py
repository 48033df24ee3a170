"""``trading-ws sim kite`` and ``trading-ws sim xts``: a simulator served for other programs, with a
banner saying where it listens, the credentials it accepts and (with ``--tls``) how to trust its CA.

The simulators (the [sim] extra) are imported by the functions that run them, so this module imports
without them.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import tempfile
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from .._transport import is_loopback_host
from ._common import Failure, leaves, say

if TYPE_CHECKING:
    from ..sim import SimulatorTLS


async def _listen(
    nursery: trio.Nursery, serve: Callable[..., Awaitable[object]], what: str, host: str, port: int
) -> str:
    """Start `serve` (a simulator's ``serve`` with its arguments bound) and return the URL it reports.

    Raises:
        Failure: it could not listen (the port is in use, the host is unknown...).
    """
    try:
        url: str = await nursery.start(serve)
    except (OSError, BaseExceptionGroup) as exc:  # the XTS simulator's OSError comes in a group
        found = leaves(exc)
        errors = [leaf for leaf in found if isinstance(leaf, OSError)]
        if len(errors) != len(found):  # Ctrl-C, or not a listening problem
            raise
        reason = errors[0].strerror or str(errors[0]) or type(errors[0]).__name__
        raise Failure(f"cannot listen on {host}:{port} for the {what}: {reason}") from exc
    return url


def warn_if_exposed(host: str) -> None:
    """Say on stderr that a simulator listening on `host` is reachable from the network, unless `host`
    is a loopback one."""
    if not is_loopback_host(host):
        print(
            f"trading-ws: warning: the simulator listens on {host}, reachable from the network: anyone who "
            "can reach it may connect with the credentials above",
            file=sys.stderr,
            flush=True,
        )


async def run_kite_sim(
    host: str,
    port: int,
    api_key: str,
    access_token: str,
    tick_interval: float,
    *,
    rest_port: int = 0,
    allow_non_loopback: bool = False,
    tls: SimulatorTLS | None = None,
    ca_file: Path | None = None,
) -> None:
    """Serve the Kite simulator until cancelled, printing its URLs and the credentials it accepts once it
    listens: the ticker on `port`, the REST instrument master on `rest_port` (0: a free port) of the
    same host. With `tls`, ``wss://`` and ``https://`` with its certificate; `ca_file` (where the caller
    wrote the CA) is then printed with how to trust it. Needs the [sim] extra.

    Cancellation: the simulator stops listening and drops its connections.

    Raises:
        ConfigurationError: a bad argument (a non-loopback host without `allow_non_loopback`...).
        Failure: a port cannot be listened on.
        OutputClosed: stdout's reader went away.
    """
    from ..sim import KiteSimulator

    simulator = KiteSimulator(api_key=api_key, access_token=access_token, tick_interval=tick_interval)
    async with trio.open_nursery() as nursery:
        serve = partial(simulator.serve, host, port, allow_non_loopback=allow_non_loopback, tls=tls)
        url = await _listen(nursery, serve, "Kite ticker", host, port)
        serve_rest = partial(
            simulator.serve_rest, host, rest_port, allow_non_loopback=allow_non_loopback, tls=tls
        )
        rest = await _listen(nursery, serve_rest, "Kite REST instrument master", host, rest_port)
        say(f"Kite simulator listening on {url}")
        say(f"  connect with: api_key={api_key} access_token={access_token}")
        say(f"  instrument master: GET {rest}/instruments (KiteBroker(api_url={rest!r}))")
        if ca_file is not None:
            auth = shlex.quote(f"Authorization: token {api_key}:{access_token}")
            _say_trust(ca_file, f"--compressed -H {auth} {rest}/instruments/NSE", "KiteBroker")
        warn_if_exposed(host)


async def run_xts_sim(
    host: str,
    port: int,
    app_key: str,
    secret_key: str,
    tick_interval: float,
    *,
    allow_non_loopback: bool = False,
    tls: SimulatorTLS | None = None,
    ca_file: Path | None = None,
) -> None:
    """Serve the XTS simulator (REST and Socket.IO on one port) until cancelled, printing its root URL and
    the credentials it accepts once it listens. With `tls`, ``https://`` (and a ``wss://`` socket) with
    its certificate; `ca_file` (where the caller wrote the CA) is then printed with how to trust it.
    Needs the [sim] extra.

    Cancellation: the simulator stops listening and drops its connections.

    Raises:
        ConfigurationError: a bad argument (a non-loopback host without `allow_non_loopback`...).
        Failure: the port cannot be listened on.
        OutputClosed: stdout's reader went away.
    """
    from ..sim import XtsSimulator

    simulator = XtsSimulator(app_key=app_key, secret_key=secret_key, tick_interval=tick_interval)
    async with trio.open_nursery() as nursery:
        serve = partial(simulator.serve, host, port, allow_non_loopback=allow_non_loopback, tls=tls)
        root = await _listen(nursery, serve, "XTS simulator", host, port)
        say(f"XTS simulator listening on {root}")
        say(
            f"  log in at {root}/apimarketdata/auth/login with appKey={app_key} secretKey={secret_key} "
            f"(user {simulator.user_id})"
        )
        if ca_file is not None:
            form = shlex.quote(f"appKey={app_key}&secretKey={secret_key}")
            _say_trust(ca_file, f"-d {form} {root}/apimarketdata/auth/login", "XtsBroker")
        warn_if_exposed(host)


def _say_trust(ca_file: Path, curl_arguments: str, broker: str) -> None:
    """The TLS lines of a simulator's banner: where the CA is and how to trust it (in Python, with curl
    given `curl_arguments`, and for other OpenSSL programs)."""
    path = str(ca_file)
    say(f"  TLS: a throwaway CA made for this run signed the certificate; the CA certificate: {path}")
    say(f"  trust it in Python: {broker}(..., ssl_context=ssl.create_default_context(cafile={path!r}))")
    say(f"  trust it with curl: curl --cacert {shlex.quote(path)} {curl_arguments}")
    say(f"  trust it elsewhere: SSL_CERT_FILE={shlex.quote(path)} (OpenSSL programs)")


def write_ca(tls: SimulatorTLS, path: str | None, cleanup: contextlib.ExitStack) -> Path:
    """Write `tls`'s CA certificate to `path`, or to ``ca.pem`` in a fresh private temporary directory
    that `cleanup` removes; return the absolute path written.

    Raises:
        OSError: the file cannot be written (FileExistsError: `path` holds something other than a PEM
            certificate, which is never replaced).
    """
    if path is None:
        directory = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="trading-ws-tls-"))
        return tls.write_ca(Path(directory) / "ca.pem")
    target = Path(path).absolute()
    if target.exists() and not _holds_a_certificate(target):
        # A typo must not destroy a file: only an earlier CA (a PEM certificate) is replaced.
        raise FileExistsError(f"{target} exists and is not a PEM certificate: not replacing it")
    return tls.write_ca(target)


def _holds_a_certificate(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(64).startswith(b"-----BEGIN CERTIFICATE-----")
    except OSError:
        return False
