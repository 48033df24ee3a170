"""Coverage-guided fuzzing of the decoders with atheris (libFuzzer for Python).

The targets are those of ``fuzz_targets.py`` (the same byte-level input convention and contract check as
the hypothesis fuzz tests): only `trading_ws.DecodeError` may escape and whatever is returned must be
well-formed; libFuzzer itself reports stalls (``-timeout``, seconds per input: atheris' instrumentation makes
calls several times slower, so the 50 ms deadline of the hypothesis tests is not applied here) and memory
blow-ups (``-rss_limit_mb``). The seed corpus (valid Kite frames, the XTS reference payloads, master rows)
and a dictionary of hostile tokens are written to a scratch directory first.

Usage (atheris must be installed: ``pip install atheris``)::

    python tests/fuzz/atheris_targets.py --list
    python tests/fuzz/atheris_targets.py --all --seconds 30            # each target in turn
    python tests/fuzz/atheris_targets.py --all --runs 100000
    python tests/fuzz/atheris_targets.py xts_packet -runs=10000         # one target, libFuzzer flags
    python tests/fuzz/atheris_targets.py xts_packet crash-<sha1>        # replay a crash artifact

``nox -s fuzz`` runs ``--all`` after the hypothesis tests, for ``TRADING_WS_FUZZ_ATHERIS_SECONDS`` seconds
(default 30) per target.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LIBFUZZER_DEFAULTS = ["-timeout=5", "-rss_limit_mb=2048", "-max_len=65536", "-print_final_stats=1"]


def _atheris() -> Any:
    return importlib.import_module("atheris")  # untyped, and optional: imported only when fuzzing


def _dictionary(tokens: tuple[bytes, ...]) -> str:
    """libFuzzer's dictionary format: one double-quoted token per line, bytes as \\xNN."""
    lines = []
    for token in tokens:
        escaped = "".join(
            chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\x{b:02x}" for b in token
        )
        lines.append(f'"{escaped}"')
    return "\n".join(lines) + "\n"


def fuzz_one(name: str, libfuzzer_args: list[str]) -> None:
    """Fuzz one target in this process (never returns: libFuzzer exits)."""
    atheris = _atheris()
    sys.path.insert(0, str(HERE))
    with atheris.instrument_imports(include=["trading_ws", "fuzz_targets"]):
        import fuzz_targets

    target = fuzz_targets.TARGETS[name]
    limit = fuzz_targets.MAX_INPUT

    def one_input(data: bytes) -> None:
        fuzz_targets.check(target, data[:limit], timed=False)

    args = [sys.argv[0], *libfuzzer_args]
    if not any(not a.startswith("-") for a in libfuzzer_args):  # no corpus or artifact given: seed one
        scratch = Path(tempfile.mkdtemp(prefix=f"atheris-{name}-"))
        corpus = scratch / "corpus"
        corpus.mkdir()
        for i, seed in enumerate(target.seeds):
            (corpus / f"seed-{i:03d}").write_bytes(seed)
        (scratch / "tokens.dict").write_text(_dictionary(fuzz_targets.TOKENS))
        args += [f"-dict={scratch / 'tokens.dict'}", str(corpus)]
        if not any(a.startswith("-artifact_prefix=") for a in libfuzzer_args):
            args.append(f"-artifact_prefix={scratch}/")
        print(f"atheris {name}: corpus and artifacts in {scratch}", flush=True)
    atheris.Setup(args, one_input)
    atheris.Fuzz()


def fuzz_all(seconds: int, runs: int, artifacts: Path | None) -> int:
    """Fuzz every target in turn, each in a subprocess; returns the number of targets that failed."""
    sys.path.insert(0, str(HERE))
    import fuzz_targets

    failed = []
    for name in fuzz_targets.TARGETS:
        args = [*LIBFUZZER_DEFAULTS, f"-max_total_time={seconds}", f"-runs={runs}"]
        if artifacts is not None:
            artifacts.mkdir(parents=True, exist_ok=True)
            args.append(f"-artifact_prefix={artifacts}/{name}-")
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, __file__, name, *args], capture_output=True, text=True, check=False
        )
        elapsed = time.monotonic() - start
        stats = {
            key: value
            for line in proc.stderr.splitlines()
            if line.startswith("stat::")
            for key, _, value in [line[len("stat::") :].partition(":")]
        }
        executed = stats.get("number_of_executed_units", "?").strip()
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        print(f"atheris {name:16} {executed:>9} inputs in {elapsed:6.1f} s  {status}", flush=True)
        if proc.returncode != 0:
            failed.append(name)
            print(proc.stdout[-4000:], proc.stderr[-8000:], sep="\n", file=sys.stderr)
    return len(failed)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", nargs="?", help="one target (then libFuzzer flags may follow)")
    parser.add_argument("--list", action="store_true", help="list the targets")
    parser.add_argument("--all", action="store_true", help="fuzz every target in turn")
    parser.add_argument("--seconds", type=int, default=30, help="per target, with --all (default 30)")
    parser.add_argument(
        "--runs", type=int, default=-1, help="inputs per target, with --all (default: no cap)"
    )
    parser.add_argument("--artifacts", type=Path, help="directory for crash inputs, with --all")
    options, rest = parser.parse_known_args(argv)
    if options.list:
        sys.path.insert(0, str(HERE))
        import fuzz_targets

        print("\n".join(fuzz_targets.TARGETS))
        return 0
    if options.all:
        return 1 if fuzz_all(options.seconds, options.runs, options.artifacts) else 0
    if options.target is None:
        parser.error("give a target, --all or --list")
    fuzz_one(options.target, rest)
    return 0  # not reached: libFuzzer exits


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
