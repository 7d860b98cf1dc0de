"""The split phase's driver (engine/runtime/split.py) without Ray: the scans run in this process, so a failing decode
can be scripted. Resume, quarantine and --retry-failed per source; the Ray actor path runs in
tests/pipelines/test_clips.py."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic import render, write_mp4

from engine.config import load_config
from engine.media.clips import scan
from engine.media.shots import make_detector
from engine.runtime import split
from engine.sources.ingest import ingest
from engine.store import schema


@pytest.fixture
def two_sources(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    one = render(60, 320, 256, background=(200, 60, 40))[0]  # 2.5 s at 24 fps
    two = render(60, 320, 256, background=(30, 160, 90))[0][:, ::-1]  # another wall, the shapes upside down
    write_mp4(src / "a.mp4", np.concatenate([one, two]), fps=24.0)
    write_mp4(src / "b.mp4", np.concatenate([one, two])[:, :, ::-1], fps=24.0)  # mirrored: no near-duplicate
    return src


def _run(store, src, monkeypatch, failing=(), retry=False, **rules):
    scanned = []

    def scans(cfg, paths, videos):  # what the SplitWorker actors do, here, with a scripted failure
        detector = make_detector("content")
        for path, v in zip(paths, videos):
            scanned.append(v.rel)
            yield v, (OSError(f"cannot decode {v.rel}") if v.rel in failing else scan(path, detector))

    monkeypatch.setattr(split, "_scans", scans)
    # two small shapes on a flat wall are near-uniform and near-static by the defaults: this tests the driver
    rules = {"min_contrast": 0.0, "min_motion": 0.0, **rules}
    cfg = load_config(
        environ={}, overrides={"split.detector": "content", **{f"split.{k}": v for k, v in rules.items()}}
    )
    report = ingest(store, src)
    run_id = f"run{len(scanned)}{retry}".ljust(32, "0")
    with store.session() as s:
        s.merge(schema.Run(id=run_id, command="test", engine_version="test", config={}))
    out = split.split_sources(cfg, store, report.videos, report.source, run_id, retry_failed=retry)
    return out, scanned


def test_a_source_that_fails_to_decode_is_quarantined_and_retried_only_when_asked(store, two_sources, monkeypatch):
    out, scanned = _run(store, two_sources, monkeypatch, failing={"b.mp4"})
    assert scanned == ["a.mp4", "b.mp4"] and out.scanned == 1 and [r for r, _ in out.failed] == ["b.mp4"]
    assert out.clips == 2 and out.kept == 2 and len(out.units) == 2  # a.mp4's two shots, clips of their own
    with store.session() as s:
        f = s.query(schema.Failure).filter_by(stage="split").one()
        assert f.quarantined and f.error_code == "split_failed" and "cannot decode b.mp4" in f.message

    again, scanned = _run(store, two_sources, monkeypatch)  # a.mp4 was split: read back; b.mp4 stays quarantined
    assert scanned == [] and again.resumed == 1 and again.units == out.units
    assert "quarantined by an earlier run" in again.failed[0][1]

    retried, scanned = _run(store, two_sources, monkeypatch, retry=True)
    assert scanned == ["b.mp4"] and retried.scanned == 1 and retried.resumed == 1 and len(retried.units) == 4
    with store.session() as s:
        assert s.query(schema.Failure).filter_by(stage="split").count() == 0  # it reads now: no longer a failure
        units = (
            s.query(schema.Video)
            .filter(schema.Video.parent_id.is_not(None))
            .order_by(schema.Video.path, schema.Video.first_frame)
            .all()
        )
        assert [(u.path, u.first_frame, u.num_frames) for u in units] == [
            ("a.mp4", 0, 60),
            ("a.mp4", 60, 60),
            ("b.mp4", 0, 60),
            ("b.mp4", 60, 60),
        ]


def test_changing_a_rule_splits_again_and_keeps_the_clip_units(store, two_sources, monkeypatch):
    first, _ = _run(store, two_sources, monkeypatch)
    second, scanned = _run(store, two_sources, monkeypatch, min_brightness=1.0)
    assert scanned == ["a.mp4", "b.mp4"] and second.units == first.units  # same ranges, same units and results
    with store.session() as s:
        assert s.query(schema.Clip).count() == 8  # a row per split version: each keeps its verdicts
