"""Up-front checks of public arguments: each raises `ConfigurationError` naming the argument, and never
echoes a value that may be a secret."""

from __future__ import annotations

import ipaddress
import math
import re
import ssl
from typing import Any, Final
from urllib.parse import SplitResult, urlsplit

import httpx

from ._errors import ConfigurationError

__all__ = [
    "check_api_path",
    "check_callable",
    "check_credential",
    "check_flag",
    "check_instance",
    "check_int",
    "check_label",
    "check_master_source",
    "check_seconds",
    "check_ssl_context",
    "check_token_text",
    "check_url",
    "is_loopback_host",
]


def check_credential(name: str, value: object) -> None:
    """A key, token or secret: a non-empty string of printable ASCII (it travels in a URL or a header).

    Raises:
        ConfigurationError: otherwise; the message names `name` and the type, never the value.
    """
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string, got {type(value).__name__}")
    if not value:
        raise ConfigurationError(f"{name} must not be empty")
    if not (value.isascii() and value.isprintable()) or value != value.strip():
        raise ConfigurationError(
            f"{name} must be printable ASCII without surrounding spaces (value not shown: it is a secret)"
        )


def check_seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """A duration in seconds: a finite int or float, > 0 (>= 0 with `allow_zero`), not a bool.

    Raises:
        ConfigurationError: otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number of seconds, got {type(value).__name__}")
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and math.isfinite(value)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
    return float(value)


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """An int (not a bool) in ``low..high``.

    Raises:
        ConfigurationError: otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise ConfigurationError(f"{name} must be in {span}, got {value!r}")
    return value


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_MAX_URL: Final = 2048
_URL_SPACE_OR_BACKSLASH = re.compile(r"[\s\\]")
_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9.])?")


def check_flag(name: str, value: object) -> bool:
    """A bool (not merely truthy).

    Raises:
        ConfigurationError: otherwise.
    """
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, got {type(value).__name__}")
    return value


def check_instance(name: str, value: object, kind: type[Any], *, optional: bool = False) -> None:
    """An instance of `kind` (or None, if `optional`).

    Raises:
        ConfigurationError: otherwise.
    """
    if not (isinstance(value, kind) or (optional and value is None)):
        expected = kind.__name__ + (" or None" if optional else "")
        raise ConfigurationError(f"{name} must be a {expected}, got {type(value).__name__}")


def check_callable(name: str, value: object) -> None:
    """None or a callable (an async function, as documented; not called here).

    Raises:
        ConfigurationError: otherwise.
    """
    if value is not None and not callable(value):
        raise ConfigurationError(f"{name} must be an async function or None, got {type(value).__name__}")


def check_master_source(name: str, value: object) -> None:
    """An instrument master source: its text, an async function returning it, or None (download it).

    Raises:
        ConfigurationError: otherwise.
    """
    if not (value is None or isinstance(value, str) or callable(value)):
        raise ConfigurationError(
            f"{name} must be the master's text, an async function returning it, or None; "
            f"got {type(value).__name__}"
        )


def check_label(name: str, value: object) -> str:
    """A label such as a broker's name: a printable, non-blank string of at most 64 characters.

    Raises:
        ConfigurationError: otherwise.
    """
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string, got {type(value).__name__}")
    if not value.strip() or not value.isprintable() or len(value) > 64:
        raise ConfigurationError(f"{name} must be a printable, non-blank string of at most 64 characters")
    return value


def check_token_text(name: str, value: object, *, limit: int = 64) -> str:
    """A short protocol word (printable ASCII, no spaces, 1 to `limit` characters).

    Raises:
        ConfigurationError: otherwise.
    """
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string, got {type(value).__name__}")
    if not (0 < len(value) <= limit and value.isascii() and value.isprintable() and " " not in value):
        raise ConfigurationError(f"{name} must be 1 to {limit} printable ASCII characters without spaces")
    return value


def check_api_path(name: str, value: object) -> str:
    """A route prefix: ``""`` or a path starting with ``/`` (printable ASCII; no space, ``?``, ``#``,
    ``@`` or backslash), at most 256 characters.

    Raises:
        ConfigurationError: otherwise.
    """
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string, got {type(value).__name__}")
    if (
        len(value) > 256
        or (value and not value.startswith("/"))
        or not (value.isascii() and value.isprintable())
        or any(char in value for char in " ?#@\\")
    ):
        raise ConfigurationError(
            f"{name} must be '' or a path starting with '/' (printable ASCII without spaces, '?', '#', '@' "
            "or backslashes)"
        )
    return value


def check_url(name: str, value: object, *, secure: str, plain: str, allow_insecure: bool) -> SplitResult:
    """A root URL: scheme `secure` (or `plain` to a loopback host, or anywhere with `allow_insecure`), a
    host and an optional port and path; no user info, query or fragment. Does not block.

    The URL must be printable ASCII without spaces or backslashes (percent-encode a path; give an
    international host name in its ``xn--`` form), so that every parser reads the same host. Messages
    never show the URL itself (it might carry a password or a token); they name the argument and, where it
    helps, the scheme or host.

    Returns:
        The URL's parts.

    Raises:
        ConfigurationError: anything else.
    """
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a {secure}:// URL string, got {type(value).__name__}")
    if len(value) > _MAX_URL:
        raise ConfigurationError(f"{name} must be at most {_MAX_URL} characters")
    if not (value.isascii() and value.isprintable()) or _URL_SPACE_OR_BACKSLASH.search(value):
        raise ConfigurationError(
            f"{name} must be printable ASCII without spaces or backslashes (percent-encode the path; give an "
            "international host name in its xn-- form)"
        )
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ConfigurationError(f"{name} is not a valid URL") from None
    if "@" in parts.netloc:
        raise ConfigurationError(
            f"{name} must not carry user info (user:password@host): give credentials as arguments"
        )
    if "?" in value or "#" in value:
        raise ConfigurationError(
            f"{name} must be a root URL without a query or fragment (the library adds the credentials)"
        )
    if parts.scheme not in (secure, plain):
        got = f"scheme {parts.scheme[:16]!r}" if parts.scheme else "no scheme"
        raise ConfigurationError(f"{name} must be a {secure}:// URL (or {plain}:// to loopback), got {got}")
    host = parts.hostname
    if not host:
        raise ConfigurationError(f"{name} has no host")
    if "[" in parts.netloc or "]" in parts.netloc:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigurationError(f"{name} has an invalid IPv6 host") from None
    elif not _HOST_NAME.fullmatch(host):
        raise ConfigurationError(f"{name} has an invalid host name (letters, digits, '.', '-' and '_' only)")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or parts.netloc.endswith(":"):
        raise ConfigurationError(f"{name} has an invalid port (give 1 to 65535, or none)")
    try:
        httpx.URL(value)  # the parser of the REST calls must agree that it is a URL
    except (httpx.InvalidURL, ValueError):
        raise ConfigurationError(f"{name} is not a valid URL (host {host!r})") from None
    if parts.scheme == plain and not allow_insecure and not is_loopback_host(host):
        raise ConfigurationError(
            f"{name}: refusing plain {plain}:// to {host!r}: credentials would travel unencrypted "
            f"(use {secure}://, or pass allow_insecure=True)"
        )
    return parts


def check_ssl_context(name: str, value: object) -> None:
    """None, or an `ssl.SSLContext` that verifies: certificates required and host names checked. The
    library never talks to a broker it cannot authenticate (it would hand it the credentials), so a
    context with verification turned off is refused rather than used.

    Raises:
        ConfigurationError: not a context, or one with ``verify_mode=CERT_NONE`` (or ``CERT_OPTIONAL``)
            or ``check_hostname=False``.
    """
    check_instance(name, value, ssl.SSLContext, optional=True)
    if isinstance(value, ssl.SSLContext) and (
        value.verify_mode != ssl.CERT_REQUIRED or not value.check_hostname
    ):
        raise ConfigurationError(
            f"{name} must verify certificates and host names (verify_mode=CERT_REQUIRED, "
            "check_hostname=True): to trust a private CA, load it into the context instead "
            "(context.load_verify_locations(cafile=...))"
        )
