"""Making server-provided text safe to log, raise or hand to the application.

A hostile (or merely buggy) broker can echo a credential back in a close reason, an error event or a REST
answer, and can put CR/LF or terminal escapes in any text it sends. Every such text passes through `scrub`
before it reaches a log record, an exception message or an event.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

__all__ = [
    "EVENT_TEXT_LIMIT",
    "MAX_SERVER_TEXT",
    "forget_secret",
    "known_secrets",
    "remember_secret",
    "scrub",
]

#: The most characters of one server-provided text kept in a log or an exception message (the rest is cut
#: and marked with an ellipsis).
MAX_SERVER_TEXT = 300
#: The same for the text of an event handed to the application (`BrokerError`, `BrokerMessage`).
EVENT_TEXT_LIMIT = 2000

# C0 controls, DEL, C1 controls, and the Unicode line and paragraph separators and bidi overrides, which
# would split a log line or reorder what an operator reads.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

# Short secrets are not scrubbed by value (a 3-character "secret" would mangle every text containing it);
# real tokens, keys and JWTs are far longer.
_MIN_SECRET = 6


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\n":
        return "\\n"
    if char == "\r":
        return "\\r"
    if char == "\t":
        return " "
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def scrub(text: object, secrets: Iterable[str | None] = (), limit: int = MAX_SERVER_TEXT) -> str:
    """`text` (made a string) with every secret replaced by ``***`` and control characters escaped.

    Each secret is replaced as it is and in its URL-encoded forms (a server may echo a query string). The
    result is cut to `limit` characters. Does not block.
    """
    out = text if isinstance(text, str) else str(text)
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET:
            for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
                out = out.replace(form, "***")
    out = _CONTROL.sub(_escape, out)
    if len(out) > limit:
        out = out[: limit - 1] + "…"
    return out


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
