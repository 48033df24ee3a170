"""The transport helpers: URL policy, redaction, and how a connection's exception group is resolved."""

from __future__ import annotations

import logging

import pytest
import trio
import trio_websocket

from trading_ws import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    DecodeError,
    RateLimitedError,
)
from trading_ws._scrub import ScrubLogFilter
from trading_ws._transport import (
    WsEndpoint,
    _choose_from_group,
    is_loopback_host,
    parse_ws_url,
    redact_url,
)

ENDPOINT = WsEndpoint("127.0.0.1", 9, "/", False)


def cancelled() -> trio.Cancelled:
    return trio.Cancelled._create()


def test_keyboard_interrupt_is_never_a_connection_error() -> None:
    group = BaseExceptionGroup("x", [KeyboardInterrupt(), ConnectError("lost")])
    assert _choose_from_group(group, ENDPOINT, 1.0) is None
    assert _choose_from_group(BaseExceptionGroup("x", [SystemExit(1)]), ENDPOINT, 1.0) is None


def test_cancellation_alone_stays_a_group() -> None:
    assert _choose_from_group(BaseExceptionGroup("x", [cancelled(), cancelled()]), ENDPOINT, 1.0) is None


def test_our_error_wins_over_third_party_and_cancellation() -> None:
    ours = DecodeError("bad", b"")
    group = BaseExceptionGroup("x", [cancelled(), OSError("reset"), ours])
    assert _choose_from_group(group, ENDPOINT, 1.0) is ours


def test_third_party_errors_are_mapped() -> None:
    rejected = trio_websocket.ConnectionRejected(403, (), None)
    chosen = _choose_from_group(BaseExceptionGroup("x", [rejected, cancelled()]), ENDPOINT, 1.0)
    assert isinstance(chosen, AuthenticationError)
    limited = _choose_from_group(
        BaseExceptionGroup("x", [trio_websocket.ConnectionRejected(429, (), None)]), ENDPOINT, 1.0
    )
    assert isinstance(limited, RateLimitedError)
    several = _choose_from_group(BaseExceptionGroup("x", [OSError("a"), ValueError("b")]), ENDPOINT, 1.0)
    assert isinstance(several, ConnectError)
    assert isinstance(several.__cause__, BaseExceptionGroup)


def test_url_policy() -> None:
    assert parse_ws_url("ws://127.0.0.1:8765") == WsEndpoint("127.0.0.1", 8765, "/", False)
    assert parse_ws_url("wss://ws.kite.trade") == WsEndpoint("ws.kite.trade", 443, "/", True)
    assert parse_ws_url("ws://localhost/x").path == "/x"
    assert parse_ws_url("ws://10.1.2.3:80", allow_insecure=True).host == "10.1.2.3"
    for bad in ("ws://10.1.2.3", "http://127.0.0.1", "ws:///nohost", "ws://127.0.0.1/?access_token=x"):
        with pytest.raises(ConfigurationError) as info:
            parse_ws_url(bad)
        assert "access_token=x" not in str(info.value)
    assert is_loopback_host("::1")
    assert is_loopback_host("127.8.9.10")
    assert not is_loopback_host("example.com")


def test_redaction() -> None:
    url = "wss://h/?api_key=k&access_token=SECRET&token=JWT&userID=u"
    redacted = redact_url(url)
    assert "SECRET" not in redacted
    assert "JWT" not in redacted
    assert "api_key=k" in redacted
    assert "userID=u" in redacted
    record = logging.LogRecord(
        "trio-websocket",
        logging.DEBUG,
        __file__,
        1,
        "Connecting to %s",
        ("ws://h/?access_token=SECRET",),
        None,
    )
    ScrubLogFilter().filter(record)
    assert "SECRET" not in record.getMessage()
    assert "access_token=***" in record.getMessage()
