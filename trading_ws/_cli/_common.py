"""What every part of the ``trading-ws`` command shares: exit codes, printing to a stdout that may go
away, the failures a user can act on, how an error out of a command becomes its exit code, and the
extras (optional dependencies) a command needs."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from typing import Final

from .._errors import TradingWsError
from .._scrub import scrub

logger = logging.getLogger("trading_ws.cli")

EXIT_FAILURE: Final = 1
"""The command failed at run time (a port in use, a simulator that cannot start)."""
EXIT_USAGE: Final = 2
"""Bad arguments (argparse's code), or an extra the command needs is not installed."""
EXIT_INTERRUPTED: Final = 130
"""Stopped by Ctrl-C (128 + SIGINT)."""
EXIT_OUTPUT_CLOSED: Final = 141
"""The reader of stdout went away (128 + SIGPIPE, what a shell reports for ``yes | head -1``)."""

EXTRAS: Final[dict[str, tuple[str, ...]]] = {"cli": ("rich",), "sim": ("hypercorn", "trustme")}
"""The top-level modules each extra of pyproject.toml brings that the core install lacks (h11, also in
[sim], is a core dependency)."""


class OutputClosed(Exception):
    """Stdout's reader went away (``trading-ws demo | head -2``): the command stops quietly."""


class Failure(Exception):
    """A run-time failure the user can act on; its message is the whole story (one line)."""


def say(*values: object, sep: str = " ") -> None:
    """Print one line to stdout, flushed.

    Raises:
        OutputClosed: stdout's reader went away.
    """
    try:
        print(*values, sep=sep, flush=True)
    except BrokenPipeError as exc:
        raise OutputClosed("stdout was closed") from exc


def missing_modules(extra: str) -> list[str]:
    """The modules of `extra` (a key of `EXTRAS`) that cannot be imported here: empty when the extra is
    installed. Does not import them; a module set to None in ``sys.modules``, or one an import hook
    refuses, counts as missing."""
    return [name for name in EXTRAS[extra] if not _findable(name)]


def _findable(name: str) -> bool:
    """Whether the top-level module `name` can be found, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # refused by a finder; in sys.modules without a spec
        return False


def install_hint(extra: str) -> str:
    """How to install `extra` (or [all], every extra), from an index or from a checkout."""
    return (
        f"pip install 'trading-ws[{extra}]' or 'trading-ws[all]' (from a checkout: pip install -e '.[all]')"
    )


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions in `error`, exception groups flattened."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


def one_line(error: BaseException) -> str:
    """`error` as one printable line, with its cause when the message alone does not say why."""
    text = str(error) or type(error).__name__
    cause = error.__cause__
    if isinstance(error, TradingWsError) and cause is not None and not isinstance(cause, BaseExceptionGroup):
        reason = str(cause) or type(cause).__name__
        if reason not in text:
            text = f"{text}: {reason}"
    return scrub(" ".join(text.split()), limit=500)


def _quiet_stdout() -> None:
    """Point stdout's descriptor at the null device, so the interpreter's last flush of what is still
    buffered does not fail again (the recipe of Python's docs, "Note on SIGPIPE")."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a StringIO (tests) or already closed
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def exit_code(error: BaseException) -> int | None:
    """The exit code for an error out of the command, after saying what happened on stderr; None for an
    error the command does not expect (a bug), which the caller re-raises with its traceback."""
    found = leaves(error)
    if any(isinstance(leaf, KeyboardInterrupt) for leaf in found):
        # Ctrl-C while tasks run arrives wrapped by the nurseries it passed through, sometimes beside
        # the errors it caused on its way out (a socket closed under a reader, a feed closed under its
        # consumer). Ctrl-C anywhere in the group means the user stopped us; those others are echoes.
        print("stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    if any(isinstance(leaf, OutputClosed) for leaf in found):
        # The reader is gone (| head): stop quietly, as a process killed by SIGPIPE would. (Restoring
        # SIGPIPE's default action instead would also kill us for a peer closing one of our sockets.)
        _quiet_stdout()
        return EXIT_OUTPUT_CLOSED
    if not all(isinstance(leaf, TradingWsError | Failure | OSError) for leaf in found):
        return None
    logger.debug("the command failed", exc_info=error)  # the traceback, with -v
    messages = list(dict.fromkeys(one_line(leaf) for leaf in found))
    print(f"trading-ws: error: {'; '.join(messages)}", file=sys.stderr)
    return EXIT_FAILURE
