"""engine validate on files and real videos: sizes decoded from the video, missing videos, the CLI's exits."""

import json

import numpy as np
from synthetic import render, write_mp4
from typer.testing import CliRunner

from engine.cli import app
from engine.dataset import validate as validate_mod
from engine.dataset.validate import validate_file
from engine.media import masks

RLE = masks.encode(np.eye(12, 16, dtype=bool))  # the clip below decodes at 12 x 16
GOOD = {
    "id": "good",
    "video": "clip.mp4",
    "conversations": [{"from": "human", "value": "<video>\nDescribe <region>."}, {"from": "gpt", "value": "A."}],
    "annotation": [{"2": {"segmentation": RLE}, "4": {"segmentation": None}}],
}


def _file(tmp_path, records, name="f.json"):
    path = tmp_path / name
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
    return path


def test_sizes_and_ranges_come_from_the_decoded_video_once_per_video(tmp_path, monkeypatch):
    write_mp4(tmp_path / "clip.mp4", render(10, 16, 12)[0])
    half = masks.encode(np.eye(6, 8, dtype=bool))
    records = [
        GOOD,
        {**GOOD, "id": "half", "annotation": [{"2": {"segmentation": half}}]},
        {**GOOD, "id": "late", "annotation": [{"10": {"segmentation": RLE}}]},
        {**GOOD, "id": "gone", "video": "elsewhere/clip.mp4"},
    ]
    from engine.media import video as video_mod

    decoded = []
    real_probe = video_mod.probe
    monkeypatch.setattr(video_mod, "probe", lambda path, *a, **k: decoded.append(path) or real_probe(path, *a, **k))
    report = validate_file(_file(tmp_path, records * 3), video_root=tmp_path)
    assert dict(report.defects) == {"mask_size": 3, "frame_out_of_range": 3, "video_not_found": 3}
    assert report.examples == {"mask_size": "half", "frame_out_of_range": "late", "video_not_found": "gone"}
    assert report.sizes_checked and sorted(p.name for p in decoded) == ["clip.mp4", "clip.mp4"]  # once per video
    sizes = validate_mod.prober(tmp_path)
    assert sizes("clip.mp4") == (10, 12, 16) and sizes("elsewhere/clip.mp4") is None


def test_without_videos_sizes_are_reported_as_not_checked(tmp_path):
    path = _file(tmp_path, [{**GOOD, "annotation": [{"99": {"segmentation": RLE}}]}])
    report = validate_file(path)
    assert report.ok and not report.sizes_checked
    r = CliRunner().invoke(app, ["validate", str(path)])
    assert r.exit_code == 0 and "mask sizes and frame ranges not checked: give --video-root" in r.output


def test_cli_exit_codes_format_and_video_root(tmp_path):
    write_mp4(tmp_path / "clip.mp4", render(10, 16, 12)[0])
    good = _file(tmp_path, [GOOD], "good.json")
    r = CliRunner().invoke(app, ["validate", str(good), "--video-root", str(tmp_path)])
    assert r.exit_code == 0 and "1 videorefer records, no defects" in r.output
    # a misspelled --video-root is an error, never a check switched off
    r = CliRunner().invoke(app, ["validate", str(good), "--video-root", str(tmp_path / "vidoes")])
    assert r.exit_code == 2 and "is not a folder" in r.output
    bad = _file(tmp_path, [GOOD, {**GOOD, "id": "r2", "annotation": []}], "bad.json")
    r = CliRunner().invoke(app, ["validate", str(bad)], env={"COLUMNS": "200"})
    assert r.exit_code == 1 and "region_count" in r.output and "r2" in r.output
    # --format overrides detection: these videorefer records are not videollama3 records
    r = CliRunner().invoke(app, ["validate", str(good), "--format", "videollama3"], env={"COLUMNS": "200"})
    assert r.exit_code == 1 and "not_a_record" in r.output
    assert CliRunner().invoke(app, ["validate", str(good), "--format", "coco"]).exit_code == 2
    assert CliRunner().invoke(app, ["validate", str(tmp_path / "none.json")]).exit_code == 2
