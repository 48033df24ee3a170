"""The documentation's runnable examples really run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import trio

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def load(name: str) -> object:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_embed_manager_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    example = load("embed_manager")
    with trio.fail_after(20):
        ticks = await example.main(1.0)  # type: ignore[attr-defined]
    assert ticks > 0
    out = capsys.readouterr().out
    assert "dashboard: NSE:INFY" in out
    assert "3 instruments upstream" in out
