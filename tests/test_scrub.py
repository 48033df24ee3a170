"""The scrubbing of server-provided text, tested as rules: for any text a server could send, with a secret
put anywhere in it (plain, URL-encoded, or broken up by invisible characters), nothing of the secret and no
unprintable character comes out."""

from __future__ import annotations

import logging
import re
import string
from urllib.parse import quote, quote_plus

from hypothesis import example, given, strategies as st

from trading_ws import Broker, BrokerMessage, MarketStatus, OrderUpdate
from trading_ws._scrub import (
    EVENT_TEXT_LIMIT,
    ScrubLogFilter,
    forget_secret,
    remember_secret,
    scrub,
    scrub_event,
    secrets_in_flight,
)

# Secrets as brokers issue them (tokens, keys, JWTs): printable ASCII, no '*' (what a secret becomes) and
# no backslash (what escapes are made of).
SECRET_ALPHABET = "".join(c for c in string.ascii_letters + string.digits + "-_.=+/:" if c not in "*\\")
secrets_ = st.text(SECRET_ALPHABET, min_size=6, max_size=40)
INVISIBLE = [
    "\u200b",
    "\u200d",
    "\u2060",
    "\ufeff",
    "\u200e",
    "\u202e",
    "\u061c",
    "\x00",
    "\x1b",
    "\U000e0041",
]


def _forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote_plus(secret)}


@given(
    before=st.text(max_size=50),
    after=st.text(max_size=50),
    secret=secrets_,
    form=st.sampled_from(["plain", "quote", "quote_plus"]),
)
@example(before="close: ", after="\r\nINJECTED: 1", secret="tok-123456", form="plain")
def test_no_secret_and_nothing_unprintable_comes_out(before: str, after: str, secret: str, form: str) -> None:
    echoed = {"plain": secret, "quote": quote(secret, safe=""), "quote_plus": quote_plus(secret)}[form]
    out = scrub(before + echoed + after, [secret], limit=10_000)
    assert not any(f in out for f in _forms(secret))
    assert out.isprintable()
    assert "***" in out


#: The escapes `scrub` writes for the invisible characters the test slips into a secret.
_ESCAPE = re.compile("|".join(re.escape(scrub(char)) for char in INVISIBLE))


@example(secret="000000", cuts=[(1, "\u2060")], around="000000")  # an escape's digits next to the text's
@given(
    secret=secrets_,
    cuts=st.lists(st.tuples(st.integers(1, 39), st.sampled_from(INVISIBLE)), min_size=1, max_size=4),
    around=st.text(string.printable, max_size=20),
)
def test_a_secret_broken_up_by_invisible_characters_is_found(
    secret: str, cuts: list[tuple[int, str]], around: str
) -> None:
    broken = secret
    for position, char in sorted(cuts, reverse=True):
        position = min(position, len(broken) - 1)
        broken = broken[:position] + char + broken[position:]
    out = scrub(around + broken + around, [secret], limit=10_000)
    assert secret not in out
    # What a reader sees once the escapes of invisible characters are taken out: no piece between two
    # redactions holds the secret. (Pieces are checked apart: text around a "***" is not the secret's,
    # and an escape's own digits, as in "\\u2060", are not text.)
    visible = _ESCAPE.sub("", out)
    assert not any(secret in piece for piece in visible.split("***"))
    assert out.isprintable()


@given(text=st.text(max_size=2000), limit=st.integers(2, 500))
def test_the_result_is_bounded(text: str, limit: int) -> None:
    out = scrub(text, (), limit=limit)
    assert len(out) <= limit
    assert out.isprintable()


def test_escapes_are_readable() -> None:
    assert scrub("a\r\nb\tc\x1bd\u202ee") == "a\\r\\nb c\\x1bd\\u202ee"
    assert scrub("₹ é 中", ["secret-value"]) == "₹ é 中"  # printable text is left alone


@given(secret=secrets_, key_secret=st.booleans(), depth=st.integers(0, 5))
@example(secret="sessio", key_secret=False, depth=0)  # a part of a field name in the event's repr
@example(secret="status", key_secret=False, depth=2)  # equal to keys of the payload itself
@example(secret="nested", key_secret=True, depth=3)
def test_every_string_of_an_event_is_scrubbed_however_deep(secret: str, key_secret: bool, depth: int) -> None:
    payload: object = {"status": f"ok {secret}\n", secret if key_secret else "k": [f"x{secret}", 5, None]}
    for _ in range(depth):
        payload = {"nested": [payload]}
    assert isinstance(payload, dict)
    update = scrub_event(OrderUpdate(Broker.KITE, payload, 1.0), [secret])
    # The server's text only: the repr's own field names ("trading_session", "received_at") are not the
    # server's, and a short drawn secret such as "sessio" can be a part of them.
    assert secret not in repr(update.data)
    assert "\n" not in repr(update.data)
    message = scrub_event(BrokerMessage(Broker.XTS, "bye " + secret, 1.0), [secret])
    assert message.text == "bye ***"
    status = MarketStatus(Broker.XTS, 1, "open " + secret + "\u202e", 1, None, 1.0)
    scrubbed = scrub_event(status, [secret])
    assert isinstance(scrubbed, MarketStatus)
    assert scrubbed.message == "open ***\\u202e"


def test_an_event_without_server_text_is_returned_as_it_is() -> None:
    message = BrokerMessage(Broker.KITE, "hello", 1.0)
    assert scrub_event(message, ["a-long-secret"]) is message
    assert len(scrub_event(BrokerMessage(Broker.KITE, "x" * 5000, 1.0), ()).text) == EVENT_TEXT_LIMIT


def test_the_log_filter_scrubs_live_secrets_only_while_they_live() -> None:
    record = logging.LogRecord("trio-websocket", logging.DEBUG, "f", 1, "closed: %s", ("tok-abcdef1",), None)
    remember_secret("tok-abcdef1")
    try:
        ScrubLogFilter().filter(record)
        assert record.getMessage() == "closed: ***"
    finally:
        forget_secret("tok-abcdef1")
    with secrets_in_flight(["key-987654"]):
        record = logging.LogRecord("httpx", logging.INFO, "f", 1, "answer key-987654\r\n", (), None)
        ScrubLogFilter().filter(record)
        assert record.getMessage() == "answer ***\\r\\n"
    record = logging.LogRecord("httpx", logging.INFO, "f", 1, "answer key-987654", (), None)
    ScrubLogFilter().filter(record)
    assert record.getMessage() == "answer key-987654"  # forgotten once the request is over
