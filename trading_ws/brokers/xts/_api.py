"""The XTS market-data REST API without I/O: its values (`XtsEndpoints`, `SubscribeResult`), the checks of
what a caller sends (`check_keys`, `check_code`), and the reading of what the server answers (`read_envelope`,
the instrument keys of an answer, the index list). `XtsSession` (in `._rest`) does the I/O around them.

Answers are envelopes ``{"type": "success"|"error", "code": ..., "description": ..., "result": ...}``: the
envelope's ``type`` counts, not only the HTTP status, because a dead token may come back as HTTP 200 with
``"type": "error"`` (xts-protocol.md section 1, "Error handling"). Every text taken from an answer is
scrubbed of the secrets it is given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, Final, TypeGuard
from urllib.parse import urlunsplit

import attrs

from ..._errors import AuthenticationError, ConfigurationError, ConnectError, RateLimitedError
from ..._http import text_field
from ..._model import Event
from ..._scrub import scrub
from ..._transport import WsEndpoint, parse_ws_url
from ..._validate import check_api_path, check_flag, check_url
from ._codec import MESSAGE_CODES
from ._instruments import SEGMENT_IDS

__all__ = [
    "ALREADY_SUBSCRIBED",
    "API_PATH",
    "MAX_ANSWER_BYTES",
    "MAX_SUBSCRIPTIONS",
    "TOKEN_TROUBLE",
    "Envelope",
    "InvalidTokenError",
    "Key",
    "LoginRefusedError",
    "SubscribeResult",
    "XtsEndpoints",
    "as_int",
    "check_code",
    "check_keys",
    "index_entries",
    "keys_of",
    "master_segment_names",
    "parse_root_url",
    "read_envelope",
    "usable",
]

#: The path prefix of the JSON market-data product (``/marketdata`` before late 2023; the binary product
#: uses ``/apibinarymarketdata``, which this library does not speak).
API_PATH: Final = "/apimarketdata"
#: The per-session subscription cap seen on every deployment (xts-protocol.md section 3.1): the default,
#: corrected from each ``Remaining_Subscription_Count`` the server reports.
MAX_SUBSCRIPTIONS: Final = 50
#: The largest answer (decoded body) accepted from any route but the instrument master: a subscribe
#: answer for 50 instruments with full snapshots is about 100 KB.
MAX_ANSWER_BYTES: Final = 4 * 1024 * 1024
#: The error code of a subscribe whose instruments were all subscribed already (a success).
ALREADY_SUBSCRIBED: Final = "e-session-0002"

Key = tuple[int, int]
"""An instrument address: ``(exchange_segment, exchange_instrument_id)``."""


class InvalidTokenError(AuthenticationError):
    """XTS refused the session token ("Invalid Token", expired, superseded by another login, or a refused
    socket handshake). The remedy is a new login, which a feed does once, never in a loop."""


class LoginRefusedError(AuthenticationError):
    """XTS refused the login itself (wrong appKey/secretKey, or the application is not allowed)."""


# ---------------------------------------------------------------------------------------------------------
# URLs


@attrs.frozen
class XtsEndpoints:
    """Where one XTS deployment answers: the REST base URL and the Socket.IO WebSocket endpoint."""

    rest: str
    """``{root}{api_path}``, e.g. ``https://xts.example.com/apimarketdata`` (no trailing slash)."""
    socket: WsEndpoint
    """The WebSocket endpoint; its path is ``{root path}{api_path}/socket.io/``."""


def parse_root_url(root_url: str, *, api_path: str = API_PATH, allow_insecure: bool = False) -> XtsEndpoints:
    """Check an XTS root URL (``https://host[:port][/prefix]``) and derive the REST and socket endpoints.

    Plain ``http://`` (and so ``ws://``) is accepted only for loopback hosts unless `allow_insecure`,
    so that the secret key and the token never cross a network in clear text by accident. Does not block.

    Raises:
        ConfigurationError: not http/https, no host, user info (``user:pass@``), a query or fragment, an
            invalid port, insecure to a non-loopback host, or an invalid `api_path` (see `check_url`).
    """
    check_flag("allow_insecure", allow_insecure)
    check_api_path("api_path", api_path)
    parts = check_url("root_url", root_url, secure="https", plain="http", allow_insecure=allow_insecure)
    prefix = parts.path.rstrip("/") + api_path.rstrip("/")
    rest = urlunsplit((parts.scheme, parts.netloc, prefix, "", ""))
    ws_scheme = "wss" if parts.scheme == "https" else "ws"
    socket = parse_ws_url(
        urlunsplit((ws_scheme, parts.netloc, prefix + "/socket.io/", "", "")), allow_insecure=allow_insecure
    )
    return XtsEndpoints(rest, socket)


# ---------------------------------------------------------------------------------------------------------
# Results


@attrs.frozen
class SubscribeResult:
    """What a subscribe request achieved."""

    code: int
    """The message code (1501, 1502, 1512...)."""
    instruments: tuple[Key, ...]
    """Every instrument of the request; all of them are subscribed in `code` now."""
    newly_subscribed: tuple[Key, ...]
    """The instruments the server listed as new (``quotesList``); the request's instruments if it did not
    say, empty when every one was already subscribed."""
    snapshots: tuple[Event, ...]
    """The ``listQuotes`` snapshots, decoded (one event per new instrument, in order)."""
    already_subscribed: bool
    """True for ``e-session-0002`` (every instrument was subscribed already; counts as success)."""
    remaining: int | None
    """``Remaining_Subscription_Count`` as the server reported it, None if it did not."""
    decode_errors: int = 0
    """Snapshots that could not be decoded (logged and left out of `snapshots`)."""


@attrs.frozen
class Envelope:
    """One answer of the REST API: its HTTP status, whether it is a success, and the envelope's fields
    (``code`` and ``description`` scrubbed; ``result`` as the server sent it)."""

    status: int
    ok: bool
    code: str
    description: str
    result: Any

    @property
    def detail(self) -> str:
        """``code 'description' (HTTP status)`` for error messages (both scrubbed)."""
        return f"{self.code} '{self.description}' (HTTP {self.status})"


def as_int(value: Any) -> int | None:
    """An integer the server sent as a number or a numeric string; None for anything else (bools too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def keys_of(items: Any) -> list[Key]:
    """``[{exchangeSegment, exchangeInstrumentID}, ...]`` (ids possibly strings) as (segment, id) pairs."""
    out: list[Key] = []
    if not isinstance(items, list):
        return out
    for item in items:
        if not isinstance(item, dict):
            continue
        seg = item.get("exchangeSegment")
        segment = SEGMENT_IDS.get(seg.strip().upper()) if isinstance(seg, str) else None
        if segment is None:
            segment = as_int(seg)
        iid = as_int(item.get("exchangeInstrumentID"))
        if segment is not None and iid is not None:
            out.append((segment, iid))
    return out


def check_keys(instruments: Iterable[Key]) -> list[Key]:
    """Deduplicate (segment, instrument id) pairs, keeping order; check they are positive integers.

    Raises:
        ConfigurationError: an item is not a pair of positive ints.
    """
    given: object = instruments  # a careless caller's value, whatever the annotation says
    if isinstance(given, (str, bytes)) or not isinstance(given, Iterable):
        raise ConfigurationError(
            f"instruments must be an iterable of (segment, id) pairs, got {type(given).__name__}"
        )
    items = list(given)
    for key in items:  # checked before hashing: a list or a dict is refused, not a TypeError
        if (
            not isinstance(key, tuple)
            or len(key) != 2
            or not all(type(v) is int and 0 < v < 2**63 for v in key)
        ):
            raise ConfigurationError(
                f"an XTS instrument is a (exchange_segment, exchange_instrument_id) pair of positive "
                f"ints, got {key!r:.60}"
            )
    return list(dict.fromkeys(items))


def check_code(code: int) -> int:
    """`code`, if it is a known XTS message code.

    Raises:
        ConfigurationError: otherwise.
    """
    if type(code) is not int or code not in MESSAGE_CODES:
        raise ConfigurationError(f"unknown XTS message code {code!r} (known: {sorted(MESSAGE_CODES)})")
    return code


def usable(value: object, limit: int) -> TypeGuard[str]:
    """A server-given credential or id we can send back: printable ASCII, no spaces, 1 to `limit` chars."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= limit
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


#: What an error description says when the token is the trouble ("Invalid Token", "token expired"...).
TOKEN_TROUBLE: Final = re.compile(r"(?i)\b(invalid|expired?)\b.*\btoken\b|\btoken\b.*\b(invalid|expired?)\b")


def read_envelope(
    status: int, raw: bytes, secrets: Sequence[str | None], *, what: str, auth: bool
) -> Envelope:
    """The envelope of an answer (ok or not), after the mappings common to every route. Does not block.

    Args:
        status, raw: the HTTP status and the whole body.
        secrets: what to scrub from the texts kept (the secret key, tokens).
        what: the request, for messages (``"subscribe (2 instruments, 1501)"``).
        auth: the request carried the token (a refusal of it is then `InvalidTokenError`).

    Raises:
        InvalidTokenError: "Invalid Token" (or HTTP 401/403) on an authenticated call.
        RateLimitedError: HTTP 429.
        ConnectError: HTTP 5xx, or a refusal that is no JSON envelope.
    """
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the parser's depth
        body = None
    if isinstance(body, dict):
        kind = body.get("type")
        code = text_field(body.get("code"), secrets, limit=64)
        description = text_field(body.get("description"), secrets)
        result = body.get("result")
    else:
        kind, code, description, result = None, "", "", None
    ok = kind == "success" and status < 400
    if ok:
        return Envelope(status, True, code, description, result)
    detail = f"{code} '{description}'".strip() if (code or description) else "no error envelope"
    if auth and (TOKEN_TROUBLE.search(description) or status in (401, 403)):
        raise InvalidTokenError(f"XTS refused the session token on {what} ({detail}, HTTP {status})")
    if status == 429:
        raise RateLimitedError(f"XTS {what}: too many requests ({detail}, HTTP 429)")
    if status >= 500 or not isinstance(body, dict):
        raise ConnectError(f"XTS {what} failed ({detail}, HTTP {status})")
    return Envelope(status, False, code, description, result)


def master_segment_names(segments: Sequence[str | int]) -> list[str]:
    """The names (``"NSECM"``) of master segments given by name or number (1). Does not block.

    Raises:
        ConfigurationError: an unknown segment, or none at all.
    """
    names_by_id = {number: name for name, number in SEGMENT_IDS.items() if not name.startswith("MSEI")}
    names: list[str] = []
    for segment in segments:
        if isinstance(segment, int) and not isinstance(segment, bool) and segment in names_by_id:
            names.append(names_by_id[segment])
        elif isinstance(segment, str) and segment.upper() in SEGMENT_IDS:
            names.append(segment.upper())
        else:
            raise ConfigurationError(f"unknown XTS exchange segment {segment!r}")
    if not names:
        raise ConfigurationError("name at least one exchange segment")
    return names


def index_entries(entries: list[Any], secrets: Sequence[str | None]) -> list[tuple[str, int]]:
    """The (name, instrument id) pairs of an index list's ``"<name>_<id>"`` entries; malformed ones (not
    text, no positive id, a name with control characters or a secret in it) are skipped. Does not block."""
    out: list[tuple[str, int]] = []
    for entry in entries:
        if isinstance(entry, str) and "_" in entry:
            name, _, number = entry.rpartition("_")
            iid = as_int(number)
            if name and iid is not None and 0 < iid < 2**63 and scrub(name, secrets) == name:
                out.append((name, iid))
    return out
