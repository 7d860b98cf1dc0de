"""Skipped is not failed, end to end: a source with unreadable files beside a good video finishes with exit 0, and a
rerun with nothing left to do says so, counting the skipped inputs, never calling them quarantined."""

from __future__ import annotations

import re

from engine_runs import open_store, run_engine
from synthetic import render, write_mp4

from engine.store import schema


def _quarantined_lines(output: str) -> list[str]:
    """Lines that call something quarantined with a count above 0 (the summary table may print a row of zeros)."""
    return [line for line in output.splitlines() if "quarantined" in line and re.search(r"[1-9]", line)]


def test_skipped_inputs_do_not_fail_a_run_or_its_rerun(endpoint, tmp_path):
    src = tmp_path / "videos"
    (src / "broken").mkdir(parents=True)
    write_mp4(src / "shapes.mp4", render(24, 96, 72)[0])
    (src / "shapes.txt").write_text("A red square slides past a blue circle.")
    data = (src / "shapes.mp4").read_bytes()
    (src / "broken" / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (src / "broken" / "notes.mp4").write_text("this is a text file, not a video\n")
    (src / "broken" / "empty.mp4").write_bytes(b"")
    args = ("--source", str(src), "--pipelines", "short")

    first = run_engine(endpoint, tmp_path / "d", *args)
    flat = " ".join(first.output.split())
    assert first.exit_code == 0, first.output
    assert "Skipped inputs" in first.output and all(f"broken/{n}.mp4" in flat for n in ("truncated", "notes", "empty"))
    assert "finished (3 inputs skipped: see Skipped inputs)" in flat
    assert not _quarantined_lines(first.output), first.output

    again = run_engine(endpoint, tmp_path / "d", *args)
    flat = " ".join(again.output.split())
    assert again.exit_code == 0, again.output
    assert "finished: nothing was left to do (3 inputs skipped: see Skipped inputs)" in flat
    assert not _quarantined_lines(again.output), again.output
    with open_store(tmp_path / "d").session() as s:
        runs = s.query(schema.Run).filter(schema.Run.command.like("run --pipelines%")).order_by(schema.Run.started_at)
        assert [(r.status, r.summary["skipped_inputs"], r.summary["quarantined"]) for r in runs] == [
            ("finished", 3, 0),
            ("finished", 3, 0),
        ]
        assert s.query(schema.Sample).filter_by(data_type="short").count() >= 1
        assert not s.query(schema.Failure).filter(schema.Failure.quarantined).count()
