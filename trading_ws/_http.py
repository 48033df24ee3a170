"""The HTTP boundary every REST call crosses (XTS login, subscriptions and master; the Kite instrument
download): one exchange under one whole-call deadline, with everything httpx and what lies under it can
raise mapped into the library's tree, and no secret left in what is kept."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Final

import anyio
import h11
import httpx
import trio

from ._errors import ConnectError, ConnectTimeout
from ._scrub import scrub, secrets_in_flight
from ._transport import find_tls_error, tls_failure

__all__ = ["MAX_MASTER_BYTES", "http_exchange", "scrub_chain", "text_field"]

#: The largest instrument master accepted (XTS's and Kite's full masters are tens of megabytes).
MAX_MASTER_BYTES: Final = 256 * 1024 * 1024

# Everything httpx and what lies under it (httpcore, h11, anyio or trio streams, sockets, TLS) may raise
# out of a request. httpx maps most of it; the rest is listed so that nothing escapes unmapped.
_HTTP_ERRORS: Final = (
    httpx.HTTPError,
    httpx.InvalidURL,
    httpx.StreamError,
    h11.ProtocolError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    OSError,  # ssl.SSLError included
    UnicodeError,
)


def scrub_chain(exc: BaseException, secrets: Iterable[str | None]) -> BaseException:
    """Scrub the message of `exc` and of every exception in its cause/context chain, in place.

    A third-party error may quote the server (an h11 "illegal status line" holds the bytes received), so
    an error kept as ``__cause__`` must not carry a secret the server echoed. Returns `exc`.
    """
    known = [secret for secret in secrets if secret]
    pending: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen or isinstance(error, trio.Cancelled):
            continue
        seen.add(id(error))
        try:
            text = str(error)
        except Exception:  # a broken __str__ must not hide the error itself
            text = type(error).__name__
            error.args = ()
        clean = scrub(text, known)
        if clean != text:
            error.args = (clean,)
            if isinstance(error, OSError):
                # An OSError (ssl.SSLError included) shows its fields, not its args.
                for field in _OS_ERROR_TEXTS:
                    value = getattr(error, field, None)
                    if isinstance(value, str):
                        setattr(error, field, scrub(value, known))
        pending += (error.__cause__, error.__context__)
    return exc


# The fields an OSError's text is made of (and ssl.SSLCertVerificationError's verification message).
_OS_ERROR_TEXTS: Final = ("strerror", "filename", "filename2", "verify_message")


async def http_exchange(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    what: str,
    deadline: float,
    max_bytes: int,
    secrets: Sequence[str | None],
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    params: Mapping[str, Any] | None = None,
) -> tuple[int, Mapping[str, str], bytes]:
    """Send one request and read its whole answer within `deadline` seconds; return status, headers, body.

    The deadline covers the whole exchange (connect, send, headers and the full body). The body is read
    up to `max_bytes` (decoded); a declared or actual larger one is refused. Blocks for the exchange.

    Cancellation: the caller's cancellation propagates as is; the request may have reached the server
    (nothing is recorded here).

    Raises:
        TLSError: the TLS handshake failed (an untrusted, expired or wrong-host certificate, a server that
            does not speak TLS): at once, with the reason in the message and the `ssl.SSLError` (scrubbed)
            as ``__cause__``.
        ConnectTimeout: no complete answer within `deadline`.
        ConnectError: anything else httpx, httpcore, h11, anyio, trio, the OS or TLS raised, or an answer
            larger than `max_bytes`. The original error stays as ``__cause__``, its messages scrubbed of
            `secrets`; the message quotes it scrubbed.
    """
    try:
        with secrets_in_flight(secrets), trio.fail_after(deadline):
            request = client.build_request(
                method, url, headers=headers, json=json_body, params=params, timeout=deadline
            )
            request.stream = _Body(request.content)
            response = await client.send(request, stream=True)
            try:
                declared = response.headers.get("content-length", "")
                if declared.strip().isdigit() and int(declared) > max_bytes:
                    raise ConnectError(f"{what}: the answer is larger than {max_bytes} bytes")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise ConnectError(f"{what}: the answer is larger than {max_bytes} bytes")
                return response.status_code, response.headers, bytes(body)
            finally:
                await response.aclose()
    except trio.TooSlowError as exc:
        raise ConnectTimeout(f"{what}: no complete answer within {deadline:g} s") from exc
    except httpx.TimeoutException as exc:
        scrub_chain(exc, secrets)
        raise ConnectTimeout(f"{what}: no answer within {deadline:g} s ({type(exc).__name__})") from exc
    except _HTTP_ERRORS as exc:
        scrub_chain(exc, secrets)
        tls = find_tls_error(exc)
        if tls is not None:
            # httpx reports it as ConnectError('') around httpcore's around trio's BrokenResourceError:
            # the TLS error deep in that chain is the one that says why, and becomes the cause.
            failure = tls_failure(tls, _where(url), lambda text: scrub(text, secrets), prefix=f"{what}: ")
            raise failure from failure.__cause__
        detail = scrub(f"{type(exc).__name__}: {exc}", secrets)
        raise ConnectError(f"{what} failed: {detail}") from exc


class _Body(httpx.AsyncByteStream):
    """A request body handed to httpcore in one piece by a plain async iterator. httpx's own body stream
    is an async generator: a request cancelled while its body is being sent left it suspended, and trio
    reported it at garbage collection as an unexhausted generator (a ResourceWarning, at some later,
    unrelated moment)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _Once(self._data)


class _Once:
    """An async iterator over one chunk of bytes (none when empty)."""

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data if data else None

    def __aiter__(self) -> _Once:
        return self

    async def __anext__(self) -> bytes:
        data, self._data = self._data, None
        if data is None:
            raise StopAsyncIteration
        return data


def _where(url: str) -> str:
    """``host:port`` of `url` (for messages; the URL itself may hold a query)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "the server"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return f"{host}:{port}"


def text_field(value: object, secrets: Iterable[str | None], limit: int = 300) -> str:
    """A server-provided JSON value as safe text: scrubbed and cut (a string or number; ``""`` otherwise)."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return scrub(value if isinstance(value, str) else str(value), secrets, limit)
    return ""
