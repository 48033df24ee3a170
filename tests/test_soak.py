"""A short fault-injection soak in the normal suite (the long one: ``nox -s soak``)."""

from __future__ import annotations

from pathlib import Path

from soak_harness import FAULT_KINDS, run_soak, update_docs


async def test_short_soak_survives_every_fault() -> None:
    report = await run_soak(20.0, seed=7)
    assert report.problems() == []
    assert report.total_faults >= 30
    assert report.recovered == report.total_faults
    assert {label.split(":")[-1] for label in report.faults} == set(FAULT_KINDS)
    assert {label.split(":")[0] for label in report.faults} >= {"kite", "xts"}
    assert report.reconnects > 0
    assert report.foreign_ticks == 0
    assert report.secret_leaks == []
    assert report.log_records > 0
    assert report.tasks_after == report.tasks_before


def test_the_soak_rewrites_only_its_own_section(tmp_path: Path) -> None:
    page = tmp_path / "reliability.md"
    page.write_text(
        "# Reliability\n\n```sh\nold command\n```\n\nintro\n\n## Last long run\n\n- old figures\n\n"
        "## A hostile broker\n\nhand-written\n"
    )
    text = update_docs(page, "## Last long run\n\n- new figures\n", "new command")
    assert text == (
        "# Reliability\n\n```sh\nnew command\n```\n\nintro\n\n## Last long run\n\n- new figures\n\n"
        "## A hostile broker\n\nhand-written\n"
    )
