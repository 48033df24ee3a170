"""Making server-provided text safe to log, raise or hand to the application.

A hostile (or merely buggy) broker can echo a credential back in a close reason, an error event or a REST
answer, and can put CR/LF or terminal escapes in any text it sends. Every such text passes through `scrub`
before it reaches a log record, an exception message or an event.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast
from urllib.parse import quote, quote_plus

import attrs

__all__ = [
    "EVENT_TEXT_LIMIT",
    "MAX_SERVER_TEXT",
    "SECRET_PARAMS",
    "ScrubLogFilter",
    "forget_secret",
    "known_secrets",
    "remember_secret",
    "scrub",
    "scrub_event",
    "secrets_in_flight",
]

#: The most characters of one server-provided text kept in a log or an exception message (the rest is cut
#: and marked with an ellipsis).
MAX_SERVER_TEXT = 300
#: The same for the text of an event handed to the application (`BrokerError`, `BrokerMessage`).
EVENT_TEXT_LIMIT = 2000

# Short secrets are not scrubbed by value (a 3-character "secret" would mangle every text containing it);
# real tokens, keys and JWTs are far longer.
_MIN_SECRET = 6


def _escape(char: str) -> str:
    if char == "\n":
        return "\\n"
    if char == "\r":
        return "\\r"
    if char == "\t":
        return " "
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _replace_secrets(text: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET:
            for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
                text = text.replace(form, "***")
    return text


def scrub(text: object, secrets: Iterable[str | None] = (), limit: int = MAX_SERVER_TEXT) -> str:
    """`text` (made a string) with every secret replaced by ``***`` and every character that is not
    printable escaped (``\\n``, ``\\x1b``, ``\\u202e``...; a tab becomes a space).

    Each secret is replaced as it is and in its URL-encoded forms (a server may echo a query string). A
    secret broken up by invisible characters (zero-width spaces, bidi marks, controls) is found too: the
    text then loses its invisible characters. The result is cut to `limit` characters. Does not block.
    """
    out = text if isinstance(text, str) else str(text)
    secrets = tuple(secrets)
    out = _replace_secrets(out, secrets)
    if not out.isprintable():
        # Invisible characters a server could slip into an echoed secret to get it past a plain
        # comparison: controls and format characters (zero-width spaces, bidi marks, tags...).
        visible = "".join(c for c in out if c in "\r\n\t" or unicodedata.category(c) not in ("Cc", "Cf"))
        hidden = _replace_secrets(visible, secrets)
        if hidden != visible:
            out = hidden
        out = "".join(c if c.isprintable() else _escape(c) for c in out)
    if len(out) > limit:
        out = out[: limit - 1] + "…"
    return out


_E = TypeVar("_E", bound=attrs.AttrsInstance)


def _scrub_value(value: Any, secrets: tuple[str | None, ...], depth: int = 0) -> Any:
    if isinstance(value, str):
        return scrub(value, secrets, EVENT_TEXT_LIMIT)
    if depth > 32:  # deeper than any payload a broker documents: keep nothing of it
        return "…"
    if isinstance(value, dict):
        return {
            _scrub_value(k, secrets, depth + 1): _scrub_value(v, secrets, depth + 1) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub_value(v, secrets, depth + 1) for v in value)
    return value


def scrub_event(event: _E, secrets: Iterable[str | None]) -> _E:
    """`event` (an attrs instance) with every string in it scrubbed (see `scrub`, at `EVENT_TEXT_LIMIT`):
    its text fields, and the keys and values of its dicts and lists, however deep. For the rare events that
    carry a server's text (an order update, a broker message, a market status); never for ticks, whose
    only strings are the library's own. Returns `event` itself when nothing changed. Does not block."""
    secrets = tuple(secrets)
    changes = {}
    for field in attrs.fields(type(event)):
        value = getattr(event, field.name)
        if isinstance(value, (str, dict, list, tuple)):
            scrubbed = _scrub_value(value, secrets)
            if scrubbed != value:
                changes[field.alias or field.name] = scrubbed
    if not changes:
        return event
    # mypy's attrs plugin cannot evolve a type variable; at run time `event` is an attrs instance.
    evolved: _E = attrs.evolve(cast("Any", event), **changes)
    return evolved


# The secrets of the feeds alive in this process, for text the library does not produce itself: the log
# records of trio-websocket, which print close reasons and URLs as the server and the request had them.
_LIVE_SECRETS: Counter[str] = Counter()


def remember_secret(secret: str | None) -> None:
    """Scrub `secret` from third-party log records too (see `known_secrets`) until `forget_secret`."""
    if secret:
        _LIVE_SECRETS[secret] += 1


def forget_secret(secret: str | None) -> None:
    """Undo one `remember_secret`."""
    if secret and _LIVE_SECRETS[secret] > 0:
        _LIVE_SECRETS[secret] -= 1
        if not _LIVE_SECRETS[secret]:
            del _LIVE_SECRETS[secret]


def known_secrets() -> tuple[str, ...]:
    """The secrets of the feeds open now."""
    return tuple(_LIVE_SECRETS)


@contextmanager
def secrets_in_flight(secrets: Iterable[str | None]) -> Iterator[None]:
    """Have `secrets` scrubbed from third-party log records (see `ScrubLogFilter`) for the block."""
    held = [secret for secret in secrets if secret]
    for secret in held:
        remember_secret(secret)
    try:
        yield
    finally:
        for secret in held:
            forget_secret(secret)


#: Query parameters whose values are secrets and never printed.
SECRET_PARAMS = frozenset(
    {"access_token", "token", "api_secret", "secretkey", "secret_key", "public_token", "enctoken"}
)
_SECRET_IN_TEXT = re.compile(r"(?i)\b(" + "|".join(sorted(SECRET_PARAMS)) + r")=([^&\s'\"]+)")


class ScrubLogFilter(logging.Filter):
    """Rewrites a third-party log record so that no secret and no control character reaches a log.

    trio-websocket logs the full request URL at DEBUG level ("Connecting to ws://...?access_token=...") and
    the server's close reasons as it got them; httpx and httpcore quote server answers and headers. The
    library installs this filter on those loggers (a filter, not a handler: where records go stays the
    application's choice): secret query values read ``***``, the secrets of every open feed and every
    request in flight are replaced wherever they appear (`remember_secret`, `secrets_in_flight`), and
    control characters are escaped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's to report, not this filter's
            return True
        redacted = scrub(_SECRET_IN_TEXT.sub(r"\1=***", message), known_secrets(), limit=4000)
        if redacted != message:
            record.msg = redacted
            record.args = ()
        return True


_LOG_FILTER = ScrubLogFilter()
for _name in (
    "trio-websocket",
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
):
    logging.getLogger(_name).addFilter(_LOG_FILTER)
