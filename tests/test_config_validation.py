"""Every public constructor argument of `KiteBroker`, `XtsBroker` and `XtsSession` is checked up front.

The rule, tested with arbitrary values for each argument: a value is accepted exactly when the docs say
so, and anything else raises `ConfigurationError` (never another exception type, never later), with a
message that names the argument and never echoes a secret. URLs with user info (``user:pass@``) are
refused in every URL parameter. A last test runs ``mypy --strict`` over user code making the documented
constructor calls.
"""

from __future__ import annotations

import math
import os
import ssl
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from trading_ws import Backoff, ConfigurationError, KiteBroker, RateLimit, XtsBroker
from trading_ws._ratelimit import TokenBucket
from trading_ws.brokers.xts import SEGMENT_IDS, XtsSession, parse_root_url
from trading_ws.sim import DEMO_ACCESS_TOKEN, DEMO_API_KEY, DEMO_APP_KEY, DEMO_SECRET_KEY

ROOT = Path(__file__).resolve().parent.parent


async def _provider() -> str:  # pragma: no cover - never called
    return "token"


# Values of every kind: each argument must take them without any exception but ConfigurationError.
ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-3, max_value=70_000),
    st.floats(),  # nan and ±inf included
    st.text(max_size=12),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=12),
    st.binary(max_size=6),
    st.lists(st.integers(min_value=-2, max_value=60), max_size=3),
    st.tuples(st.integers(min_value=0, max_value=60), st.text(max_size=3)),
    st.lists(st.sampled_from(["NSECM", "nsefo", "NOPE", 1, 2, 99, True]), max_size=3).map(tuple),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from(
        [
            object(),
            print,
            _provider,
            Backoff(),
            RateLimit(),
            TokenBucket(RateLimit()),
            ssl.create_default_context(),
            httpx.MockTransport(lambda request: httpx.Response(500)),
            "pro",
            "client",
            "Full",
            "partial",
            "/apimarketdata",
            "/marketdata/",
            "https://h.example.com",
            "http://127.0.0.1:1",
            "ws://127.0.0.1:1",
            " key",
            "k\x00y",
            "s3cr3t\u00e9",
            2**64,
            -0.0,
            1e-300,
            1e300,
        ]
    ),
)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def credential(value: object) -> bool:
    return (
        isinstance(value, str)
        and bool(value)
        and value.isascii()
        and value.isprintable()
        and value == value.strip()
    )


def seconds(value: object) -> bool:
    return _number(value) and math.isfinite(value) and value > 0  # type: ignore[arg-type, operator]


def seconds_or_zero(value: object) -> bool:
    return _number(value) and math.isfinite(value) and value >= 0  # type: ignore[arg-type, operator]


def int_in(low: int, high: int) -> Callable[[object], bool]:
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def is_bool(value: object) -> bool:
    return isinstance(value, bool)


def optional_callable(value: object) -> bool:
    return value is None or callable(value)


def master_source(value: object) -> bool:
    return value is None or isinstance(value, str) or callable(value)


def instance_of(kind: type) -> Callable[[object], bool]:
    return lambda value: isinstance(value, kind)


def optional_instance_of(kind: type) -> Callable[[object], bool]:
    return lambda value: value is None or isinstance(value, kind)


def label(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip()) and value.isprintable() and len(value) <= 64


def plain_text(value: object) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= 64
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


def api_path(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) <= 256
        and (value == "" or value.startswith("/"))
        and value.isascii()
        and value.isprintable()
        and not any(c in value for c in " ?#@\\")
    )


def _iterable_of(ok: Callable[[object], bool]) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        if isinstance(value, (str, bytes, bytearray)) or not isinstance(value, Iterable):
            return False
        items = list(value)
        return bool(items) and all(ok(item) for item in items)

    return check


_NUMBERS = set(SEGMENT_IDS.values())


def _segment(item: object) -> bool:
    if isinstance(item, str):
        return item.upper() in SEGMENT_IDS
    return isinstance(item, int) and not isinstance(item, bool) and item in _NUMBERS


def _index_segment(item: object) -> bool:
    return isinstance(item, int) and not isinstance(item, bool) and item in _NUMBERS


def _index_segments(value: object) -> bool:
    if isinstance(value, (str, bytes, bytearray)) or not isinstance(value, Iterable):
        return False
    return all(_index_segment(item) for item in value)


def _flavour(value: object) -> bool:
    return value in ("pro", "client") and isinstance(value, str)


def _broadcast_mode(value: object) -> bool:
    return isinstance(value, str) and value.lower() in ("full", "partial")


# argument -> (accepted?, is it a secret?)
Rule = tuple[Callable[[object], bool], bool]

KITE_RULES: dict[str, Rule] = {
    "api_key": (credential, True),
    "access_token": (credential, True),
    "instruments": (master_source, False),
    "token_provider": (optional_callable, False),
    "backoff": (instance_of(Backoff), False),
    "watchdog_timeout": (seconds, False),
    "download_timeout": (seconds, False),
    "rate_limit": (instance_of(RateLimit), False),
    "max_instruments_per_connection": (int_in(1, 65535), False),
    "max_connections": (int_in(1, 64), False),
    "allow_insecure": (is_bool, False),
    "name": (label, False),
}

XTS_RULES: dict[str, Rule] = {
    "app_key": (credential, True),
    "secret_key": (credential, True),
    "flavour": (_flavour, False),
    "broadcast_mode": (_broadcast_mode, False),
    "instruments": (master_source, False),
    "segments": (_iterable_of(_segment), False),
    "index_segments": (_index_segments, False),
    "credentials_provider": (optional_callable, False),
    "backoff": (instance_of(Backoff), False),
    "ping_timeout_slack": (seconds_or_zero, False),
    "rate_limit": (instance_of(RateLimit), False),
    "max_instruments_per_connection": (int_in(1, 65535), False),
    "max_connections": (int_in(1, 1), False),
    "allow_insecure": (is_bool, False),
    "api_path": (api_path, False),
    "name": (label, False),
}

SESSION_RULES: dict[str, Rule] = {
    "app_key": (credential, True),
    "secret_key": (credential, True),
    "allow_insecure": (is_bool, False),
    "ssl_context": (optional_instance_of(ssl.SSLContext), False),
    "timeout": (seconds, False),
    "max_subscriptions": (int_in(1, 65535), False),
    "source": (plain_text, False),
    "api_path": (api_path, False),
    "rate_limiter": (optional_instance_of(TokenBucket), False),
    "transport": (optional_instance_of(httpx.AsyncBaseTransport), False),
}


def make_kite(**changes: Any) -> KiteBroker:
    return KiteBroker(**{"api_key": DEMO_API_KEY, "access_token": DEMO_ACCESS_TOKEN, **changes})


def make_xts(**changes: Any) -> XtsBroker:
    options = {"app_key": DEMO_APP_KEY, "secret_key": DEMO_SECRET_KEY, "root_url": "https://xts.example.com"}
    return XtsBroker(**{**options, **changes})


def make_session(**changes: Any) -> XtsSession:
    options: dict[str, Any] = {"root_url": "https://xts.example.com"}
    positional: dict[str, Any] = {"app_key": DEMO_APP_KEY, "secret_key": DEMO_SECRET_KEY}
    positional.update({k: v for k, v in changes.items() if k in positional})
    options.update({k: v for k, v in changes.items() if k not in positional})
    return XtsSession(positional["app_key"], positional["secret_key"], **options)


FACTORIES: dict[str, tuple[Callable[..., object], dict[str, Rule]]] = {
    "KiteBroker": (make_kite, KITE_RULES),
    "XtsBroker": (make_xts, XTS_RULES),
    "XtsSession": (make_session, SESSION_RULES),
}

CASES = [(factory, argument) for factory, (_, rules) in FACTORIES.items() for argument in rules]


def check_outcome(factory: str, argument: str, value: object) -> None:
    make, rules = FACTORIES[factory]
    accepted, secret = rules[argument]
    try:
        made = make(**{argument: value})
    except ConfigurationError as exc:
        message = str(exc)
        assert not accepted(value), f"{factory}({argument}={value!r}) refused a valid value: {message}"
        assert argument in message, f"the message does not name {argument}: {message}"
        if secret and isinstance(value, str) and len(value) >= 3:
            assert repr(value) not in message
            assert len(value) < 8 or value not in message
        return
    assert accepted(value), f"{factory}({argument}={value!r}) was accepted"
    if secret and isinstance(value, str) and len(value) >= 8 and argument not in ("api_key", "app_key"):
        assert value not in repr(made) or value in repr(make())  # (unless another field shows the same)


@pytest.mark.parametrize(("factory", "argument"), CASES)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=ANYTHING)
def test_every_argument_is_accepted_as_documented_or_refused(
    factory: str, argument: str, value: object
) -> None:
    check_outcome(factory, argument, value)


@pytest.mark.parametrize(
    ("factory", "argument", "value"),
    [
        ("KiteBroker", "api_key", ""),
        ("KiteBroker", "api_key", None),
        ("KiteBroker", "api_key", 42),
        ("KiteBroker", "access_token", None),
        ("KiteBroker", "access_token", b"token"),
        ("KiteBroker", "watchdog_timeout", math.nan),
        ("KiteBroker", "watchdog_timeout", math.inf),
        ("KiteBroker", "watchdog_timeout", -1.0),
        ("KiteBroker", "watchdog_timeout", True),
        ("KiteBroker", "download_timeout", 0),
        ("KiteBroker", "max_connections", True),
        ("KiteBroker", "max_connections", "3"),
        ("KiteBroker", "max_instruments_per_connection", 0),
        ("KiteBroker", "allow_insecure", "yes"),
        ("KiteBroker", "backoff", None),
        ("KiteBroker", "rate_limit", (10, 20)),
        ("KiteBroker", "instruments", b"csv"),
        ("KiteBroker", "token_provider", "token"),
        ("KiteBroker", "name", ""),
        ("KiteBroker", "name", None),
        ("XtsBroker", "secret_key", None),
        ("XtsBroker", "app_key", 7),
        ("XtsBroker", "flavour", ["pro"]),
        ("XtsBroker", "broadcast_mode", None),
        ("XtsBroker", "segments", "NSECM"),
        ("XtsBroker", "segments", 1),
        ("XtsBroker", "segments", ()),
        ("XtsBroker", "segments", ("NOPE",)),
        ("XtsBroker", "index_segments", (True,)),
        ("XtsBroker", "index_segments", ("1",)),
        ("XtsBroker", "index_segments", 1),
        ("XtsBroker", "ping_timeout_slack", math.nan),
        ("XtsBroker", "max_connections", True),
        ("XtsBroker", "api_path", None),
        ("XtsBroker", "api_path", "/a?b"),
        ("XtsSession", "timeout", math.inf),
        ("XtsSession", "timeout", "10"),
        ("XtsSession", "max_subscriptions", 2.5),
        ("XtsSession", "source", ""),
        ("XtsSession", "source", "WEB\r\nAPI"),
        ("XtsSession", "ssl_context", True),
        ("XtsSession", "rate_limiter", RateLimit()),
        ("XtsSession", "transport", object()),
    ],
)
def test_named_nonsense_is_refused(factory: str, argument: str, value: object) -> None:
    make, _ = FACTORIES[factory]
    with pytest.raises(ConfigurationError, match=argument):
        make(**{argument: value})
    check_outcome(factory, argument, value)


# ---------------------------------------------------------------------------------------------------------
# URLs: built from parts, so that whether each one is acceptable is known independently of the code.

PASSWORD = "pw-s3cr3t-9"
_SCHEMES = ["http", "https", "ws", "wss", "HTTPS", "Wss", "file", "ftp", "javascript", ""]
_USERINFO = ["", "user@", f"user:{PASSWORD}@", f":{PASSWORD}@", "@"]
_HOSTS = {
    "127.0.0.1": (True, True),  # (valid, loopback)
    "localhost": (True, True),
    "[::1]": (True, True),
    "api.example.com": (True, False),
    "10.0.0.1": (True, False),
    "xn--bcher-kva.example": (True, False),
    "": (False, False),
    "ex ample.com": (False, False),
    "exa\nmple.com": (False, False),
    "bücher.example": (False, False),
    "[::1": (False, False),
    "[nope]": (False, False),
    "a\\b": (False, False),
}
_PORTS = {
    "": True,
    ":80": True,
    ":8080": True,
    ":65535": True,
    ":0": False,
    ":65536": False,
    ":x": False,
    ":": False,
}
_PATHS = {
    "": True,
    "/": True,
    "/prefix/": True,
    "/%20x": True,
    "/a b": False,
    "/p?token=q": False,
    "/?": False,
    "/#frag": False,
    "/\t": False,
}


@st.composite
def built_urls(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    parts = {
        "scheme": draw(st.sampled_from(_SCHEMES)),
        "userinfo": draw(st.sampled_from(_USERINFO)),
        "host": draw(st.sampled_from(sorted(_HOSTS))),
        "port": draw(st.sampled_from(sorted(_PORTS))),
        "path": draw(st.sampled_from(sorted(_PATHS))),
    }
    url = f"{parts['scheme']}://{parts['userinfo']}{parts['host']}{parts['port']}{parts['path']}"
    return url, parts


def url_acceptable(parts: dict[str, Any], schemes: tuple[str, str], allow_insecure: bool) -> bool:
    secure, plain = schemes
    scheme = parts["scheme"].lower()
    valid_host, loopback = _HOSTS[parts["host"]]
    return (
        scheme in (secure, plain)
        and parts["userinfo"] == ""
        and valid_host
        and _PORTS[parts["port"]]
        and _PATHS[parts["path"]]
        and (scheme == secure or loopback or allow_insecure)
    )


URL_ARGUMENTS: list[tuple[str, str, tuple[str, str], Callable[[str, bool], object]]] = [
    ("KiteBroker", "url", ("wss", "ws"), lambda url, insecure: make_kite(url=url, allow_insecure=insecure)),
    (
        "KiteBroker",
        "api_url",
        ("https", "http"),
        lambda url, insecure: make_kite(api_url=url, allow_insecure=insecure),
    ),
    (
        "XtsBroker",
        "root_url",
        ("https", "http"),
        lambda url, insecure: make_xts(root_url=url, allow_insecure=insecure),
    ),
    (
        "XtsSession",
        "root_url",
        ("https", "http"),
        lambda url, insecure: make_session(root_url=url, allow_insecure=insecure),
    ),
    (
        "parse_root_url",
        "root_url",
        ("https", "http"),
        lambda url, insecure: parse_root_url(url, allow_insecure=insecure),
    ),
]


@pytest.mark.parametrize(("owner", "argument", "schemes", "make"), URL_ARGUMENTS)
@settings(max_examples=200, deadline=None)
@given(built=built_urls(), insecure=st.booleans())
def test_urls_are_accepted_exactly_as_documented(
    owner: str,
    argument: str,
    schemes: tuple[str, str],
    make: Callable[[str, bool], object],
    built: tuple[str, dict[str, Any]],
    insecure: bool,
) -> None:
    url, parts = built
    try:
        made = make(url, insecure)
    except ConfigurationError as exc:
        message = str(exc)
        assert not url_acceptable(parts, schemes, insecure), f"{owner}: {url!r} refused: {message}"
        assert argument in message
        assert PASSWORD not in message
        return
    assert url_acceptable(parts, schemes, insecure), f"{owner}: {url!r} was accepted"
    assert PASSWORD not in repr(made)


@pytest.mark.parametrize(("owner", "argument", "schemes", "make"), URL_ARGUMENTS)
@settings(max_examples=100, deadline=None)
@given(value=st.one_of(ANYTHING, st.text(max_size=40), st.text(max_size=20).map(lambda s: "https://" + s)))
def test_any_value_as_a_url_is_a_configuration_error_or_accepted(
    owner: str, argument: str, schemes: tuple[str, str], make: Callable[[Any, bool], object], value: object
) -> None:
    try:
        make(value, False)
    except ConfigurationError as exc:
        message = str(exc)
        assert argument in message


@pytest.mark.parametrize(("owner", "argument", "schemes", "make"), URL_ARGUMENTS)
@pytest.mark.parametrize(
    "userinfo", [f"user:{PASSWORD}@", f"{PASSWORD}@", f":{PASSWORD}@", f"u%40x:{PASSWORD}@", "@"]
)
def test_user_info_is_refused_in_every_url_without_showing_it(
    owner: str,
    argument: str,
    schemes: tuple[str, str],
    make: Callable[[str, bool], object],
    userinfo: str,
) -> None:
    secure, _ = schemes
    for insecure in (False, True):
        with pytest.raises(ConfigurationError, match="user info") as info:
            make(f"{secure}://{userinfo}127.0.0.1:8080/", insecure)
        assert PASSWORD not in str(info.value)
        assert info.value.__cause__ is None or PASSWORD not in str(info.value.__cause__)


def test_accepted_arguments_are_kept() -> None:
    xts = make_xts(segments=["nsecm", 2], index_segments=iter([1, 11]), root_url="HTTPS://xts.example.com/")
    assert xts.segments == ("nsecm", 2)
    assert xts.index_segments == (1, 11)
    kite = make_kite(watchdog_timeout=3, download_timeout=12.5, url="wss://ws.example.com/x")
    assert kite.watchdog_timeout == 3
    assert kite.download_timeout == 12.5
    assert DEMO_ACCESS_TOKEN not in repr(kite)
    assert DEMO_SECRET_KEY not in repr(xts)
    session = make_session(timeout=1, source="WEBAPI")
    assert DEMO_SECRET_KEY not in repr(session)


def test_new_credentials_are_checked_too() -> None:
    session = make_session()
    for app_key, secret_key in (("", "x" * 10), ("key", None), ("key", "s3cr3t\r\nX-Evil: 1")):
        with pytest.raises(ConfigurationError) as info:
            session.set_credentials(app_key, secret_key)  # type: ignore[arg-type]
        assert "s3cr3t" not in str(info.value)


# ---------------------------------------------------------------------------------------------------------
# mypy --strict on user code making the documented constructor calls

USER_CODE = """
from typing import assert_type

from trading_ws import Backoff, KiteBroker, RateLimit, XtsBroker
from trading_ws.brokers.xts import XtsSession

APP_KEY = "app-key"
SECRET_KEY = "secret-key"
API_KEY = "api-key"
ACCESS_TOKEN = "access-token"


async def fetch_todays_token() -> str:
    return ACCESS_TOKEN


async def fresh_keys() -> tuple[str, str]:
    return APP_KEY, SECRET_KEY


xts = XtsBroker(APP_KEY, SECRET_KEY, "https://ttblaze.iifl.com", index_segments=(1,))
assert_type(xts.index_segments, tuple[int, ...])
both = XtsBroker(
    APP_KEY,
    SECRET_KEY,
    "https://ttblaze.iifl.com",
    segments=("NSECM", 2),
    index_segments=[1, 11],
    credentials_provider=fresh_keys,
    rate_limit=RateLimit(rate=10, burst=20),
)
assert_type(both.segments, tuple[str | int, ...])
kite = KiteBroker("my_api_key", "todays_access_token")
renewing = KiteBroker(
    API_KEY,
    ACCESS_TOKEN,
    token_provider=fetch_todays_token,
    backoff=Backoff(initial=0.5),
    rate_limit=RateLimit(rate=10, burst=20),
    download_timeout=30.0,
)
session = XtsSession(APP_KEY, SECRET_KEY, root_url="https://ttblaze.iifl.com", timeout=5)
"""


def test_documented_constructor_calls_pass_mypy_strict(
    tmp_path: Path, pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    mypy_api = pytest.importorskip("mypy.api")
    snippet = tmp_path / "user_code.py"
    snippet.write_text(textwrap.dedent(USER_CODE))
    pytest_cache = getattr(pytestconfig, "cache", None)  # None with -p no:cacheprovider
    cache = pytest_cache.mkdir("mypy-user-code") if pytest_cache is not None else tmp_path / "cache"
    # The package as a user sees it: found on the path, its own errors not reported (as for an installed
    # package), the user's file checked strictly with no project configuration.
    monkeypatch.setenv("MYPYPATH", str(ROOT))
    stdout, stderr, status = mypy_api.run(
        [
            str(snippet),
            "--strict",
            "--config-file=",
            "--follow-imports=silent",
            "--python-version=3.11",
            f"--cache-dir={cache}",
            "--no-color-output",
        ]
    )
    assert status == 0, stdout + stderr
    assert "Success" in stdout
    assert os.fspath(snippet) not in stdout


async def test_an_instruments_function_must_return_text() -> None:
    async def numbers() -> str:
        return 42  # type: ignore[return-value]

    for broker in (make_kite(instruments=numbers), make_xts(instruments=numbers)):
        with pytest.raises(ConfigurationError, match="instruments"):
            await broker.load_instruments()
