"""Skipped is not failed: every input ingest skips is listed with its reason and counted, and none of them is a
quarantined unit or changes how a run ends."""

from __future__ import annotations

import os
import shutil

import pytest
from synthetic import render, write_frame_folder

from engine.runtime.run_state import FINISHED, FINISHED_WITH_FAILURES, outcome
from engine.runtime.summary import run_summary
from engine.sources.ingest import ingest, scan
from engine.store import schema
from engine.store.current import Current

RUN = "s" * 32


@pytest.fixture
def bad_source(tmp_path, shapes_clip):
    """Two good videos beside every kind of input ingest skips."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    shutil.copy(shapes_clip[0], src / "sub" / "good.mp4")
    write_frame_folder(src / "frames" / "seq", render(4, 32, 24)[0])
    data = shapes_clip[0].read_bytes()
    (src / "empty.mp4").write_bytes(b"")
    (src / "notes.mp4").write_text("a text file, not a video\n")
    (src / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (src / "old.flv").write_bytes(b"FLV")
    (src / "folder.mp4").mkdir()  # a folder named like a video, holding no frames
    (src / "folder.mp4" / "readme.txt").write_text("not frames")
    (src / "sub" / "back").symlink_to("..", target_is_directory=True)  # a folder link back to the source: a loop
    (src / "self.mp4").symlink_to("self.mp4")  # a file link to itself: ELOOP
    (src / "gone.mp4").symlink_to(src / "missing.mp4")  # a broken link
    (src / "alias").symlink_to("sub", target_is_directory=True)  # the same folder twice: scanned once, as sub
    (src / ".#lock.txt").symlink_to("user@host.1")  # an editor's lock file: hidden, not an input
    (src / "locked.mp4").write_bytes(data)  # permission denied (made so below: tests run as root)
    (src / "closed").mkdir()
    shutil.copy(shapes_clip[0], src / "closed" / "inside.mp4")
    return src


EXPECTED = {
    "empty.mp4": ("empty_file", "empty"),
    "notes.mp4": ("corrupt", "not a video this engine can read"),
    "truncated.mp4": ("corrupt", "not a video this engine can read"),
    "old.flv": ("unsupported_format", "not supported"),
    "folder.mp4": ("not_a_video", "a folder named like a video"),
    "sub/back": ("symlink_loop", "a link back to the source folder"),
    "self.mp4": ("symlink_loop", "leads back to itself"),
    "gone.mp4": ("broken_symlink", "does not exist"),
    "alias": ("duplicate_folder", "the same folder as sub"),
    "locked.mp4": ("permission_denied", "permission denied"),
    "closed": ("permission_denied", "cannot list this folder: permission denied"),
}


def _deny(monkeypatch, src):
    """Permission denied on locked.mp4 and the folder closed/, as a non-root user would meet it (root reads all)."""
    real_access, real_scandir = os.access, os.scandir
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: False if str(p) == str(src / "locked.mp4") else real_access(p, mode, **kw)
    )

    def scandir(p="."):
        if str(p) == str(src / "closed"):
            raise PermissionError(13, "Permission denied", str(p))
        return real_scandir(p)

    monkeypatch.setattr(os, "scandir", scandir)


def test_every_skipped_input_is_listed_with_its_reason_and_none_is_quarantined(store, bad_source, monkeypatch):
    _deny(monkeypatch, bad_source)
    with store.session() as s:
        s.add(schema.Run(id=RUN, command="run --pipelines short", engine_version="0", config={}))
    report = ingest(store, bad_source, run_id=RUN)
    assert sorted(v.rel for v in report.videos) == ["frames/seq", "sub/good.mp4"]
    got = {p.rel: p for p in report.problems}
    assert set(got) == set(EXPECTED), report.problems
    for rel, (code, words) in EXPECTED.items():
        assert got[rel].code == code and words in got[rel].reason, got[rel]
    with store.session() as s:
        rows = s.query(schema.Failure).all()
        assert {(f.unit_id, f.stage, f.error_code, f.quarantined, f.run_id) for f in rows} == {
            (str(bad_source.resolve() / rel), "ingest", code, False, RUN) for rel, (code, _) in EXPECTED.items()
        }

    # the run's summary counts them apart: not failures, not quarantined, and the run finished
    summary = run_summary(store, RUN, [v.id for v in report.videos], Current())
    assert (summary["skipped_inputs"], summary["failures"], summary["quarantined"]) == (len(EXPECTED), 0, 0)
    out = outcome(summary)
    assert (out.state, out.exit_code) == (FINISHED, 0)
    assert out.sentence == f"finished: nothing was left to do ({len(EXPECTED)} inputs skipped: see Skipped inputs)"

    # an ingest again (a rerun) finds the same inputs, and the rows stay one per input
    again = ingest(store, bad_source, run_id=RUN)
    assert {p.rel for p in again.problems} == set(EXPECTED)
    assert store.counts()["failures"] == len(EXPECTED)


def test_a_scan_of_a_link_loop_ends_and_walks_each_real_folder_once(tmp_path, shapes_clip):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    shutil.copy(shapes_clip[0], src / "a" / "x.mp4")
    (src / "a" / "to_b").symlink_to(src / "b", target_is_directory=True)
    (src / "b" / "to_a").symlink_to(src / "a", target_is_directory=True)  # a -> b -> a: round and round
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(shapes_clip[0], outside / "y.mp4")
    (src / "linked").symlink_to(outside, target_is_directory=True)  # a link out of the source is followed
    found, problems = scan(src)
    assert [c.rel for c in found] == ["a/x.mp4", "linked/y.mp4"]
    assert {(p.rel, p.code) for p in problems} == {("a/to_b", "duplicate_folder"), ("b/to_a", "duplicate_folder")}


def test_a_video_file_unreadable_at_probe_time_is_skipped_with_its_reason(
    sqlite_store, tmp_path, shapes_clip, monkeypatch
):
    import engine.sources.ingest as ingest_module

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(shapes_clip[0], src / "a.mp4")

    def denied(c):
        raise PermissionError(13, "Permission denied", str(c.path))

    monkeypatch.setattr(ingest_module, "_file_stamp", denied)  # readable when scanned, not when read
    report = ingest(sqlite_store, src)
    assert [(p.rel, p.code, p.reason) for p in report.problems] == [
        ("a.mp4", "permission_denied", "cannot read it: permission denied")
    ]


@pytest.mark.skipif(
    os.geteuid() == 0,
    reason="root reads a file and lists a folder whatever their mode: the "
    "monkeypatched test above covers permission denied there",
)
def test_permission_denied_for_real(tmp_path, shapes_clip):
    src = tmp_path / "src"
    (src / "closed").mkdir(parents=True)
    shutil.copy(shapes_clip[0], src / "locked.mp4")
    (src / "locked.mp4").chmod(0)
    (src / "closed").chmod(0)
    try:
        _, problems = scan(src)
    finally:
        (src / "closed").chmod(0o755)
    assert {(p.rel, p.code) for p in problems} == {
        ("locked.mp4", "permission_denied"),
        ("closed", "permission_denied"),
    }


def test_a_run_sentence_counts_skipped_inputs_and_only_quarantined_units_fail_it():
    work = {"new_results": 2, "work_requests": 5, "units_run": 1}
    assert outcome({**work, "skipped_inputs": 1}).sentence == "finished (1 input skipped: see Skipped inputs)"
    assert outcome(work).sentence == "finished"
    assert outcome({"skipped_inputs": 0}).sentence == "finished: nothing was left to do"
    failed = outcome({**work, "quarantined": 1, "skipped_inputs": 3})
    assert (failed.state, failed.exit_code) == (FINISHED_WITH_FAILURES, 1) and "3 inputs skipped" in failed.sentence
