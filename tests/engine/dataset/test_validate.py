"""engine validate on a hand-made file with every defect, in both file layouts."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from engine.media import masks
from engine.cli import app
from synthetic import render, write_mp4
from engine.dataset.validate import DEFECTS, validate_file

RLE = masks.encode(np.eye(8, 12, dtype=bool))
GOOD = {"id": "good", "video": "clip.mp4",
        "conversations": [{"from": "human", "value": "<video>\nDescribe <region>."}, {"from": "gpt", "value": "A."}],
        "annotation": [{"2": {"segmentation": RLE}}]}


def _bad_records() -> dict[str, dict | str]:
    def rec(**over):
        return {**json.loads(json.dumps(GOOD)), **over}

    def human(text):
        return [{"from": "human", "value": text}, {"from": "gpt", "value": "A."}]

    return {
        "not_json": '{"id": "broken", ',
        "not_a_record": {"id": "x", "video": "clip.mp4"},
        "bad_conversations": rec(id="conv", conversations=[{"from": "human", "value": "<video>\n<region>"}]),
        "video_placeholder": rec(id="novideo", conversations=human("Describe <region>.")),
        "region_count": rec(id="regions", conversations=human("<video>\n<region> and <region>")),
        "empty_annotation": rec(id="empty", annotation=[{}]),
        "frame_key": rec(id="key", annotation=[{"two": {"segmentation": RLE}}]),
        "frame_out_of_range": rec(id="range", annotation=[{"99": {"segmentation": RLE}}]),
        "missing_segmentation": rec(id="noseg", annotation=[{"2": {"mask": RLE}}]),
        "bad_rle": rec(id="rle", annotation=[{"2": {"segmentation": {"size": [8, 12], "counts": "!!garbage"}}}]),
        "null_mask": rec(id="null", annotation=[{"2": None}]),
    }


@pytest.mark.parametrize("layout", ["array_per_line", "array_compact", "jsonl"])
def test_every_defect_is_counted(tmp_path, layout):
    write_mp4(tmp_path / "clip.mp4", render(10, 16, 12)[0])
    bad = _bad_records()
    items = [GOOD, *bad.values()]
    lines = [x if isinstance(x, str) else json.dumps(x) for x in items]
    path = tmp_path / ("f.jsonl" if layout == "jsonl" else "f.json")
    if layout == "jsonl":
        path.write_text("\n".join(lines) + "\n")
    elif layout == "array_per_line":
        path.write_text("[\n" + ",\n".join(lines) + "\n]\n")
    else:  # someone else's file: a compact array cannot hold a broken record, so leave that one out
        path.write_text(json.dumps([x for x in items if not isinstance(x, str)]))
    report = validate_file(path, video_root=tmp_path)
    expected = {k: 1 for k in bad} if layout != "array_compact" else {k: 1 for k in bad if k != "not_json"}
    assert dict(report.defects) == expected
    assert report.records == len(items) - (layout == "array_compact")
    assert set(DEFECTS) == set(bad)
    allowed = validate_file(path, video_root=tmp_path, allow_empty=True)
    assert "null_mask" not in allowed.defects


def test_frame_range_is_skipped_when_the_video_cannot_be_found(tmp_path):
    path = tmp_path / "f.json"
    path.write_text(json.dumps([{**GOOD, "annotation": [{"99": {"segmentation": RLE}}]}]))
    assert validate_file(path).ok  # no --video-root: nothing to check the range against


def test_cli_exit_codes_and_table(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps([GOOD]))
    r = CliRunner().invoke(app, ["validate", str(good)])
    assert r.exit_code == 0 and "1 records, no defects" in r.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([GOOD, {**GOOD, "id": "r2", "annotation": []}]))
    r = CliRunner().invoke(app, ["validate", str(bad)], env={"COLUMNS": "200"})
    assert r.exit_code == 1 and "region_count" in r.output and "r2" in r.output
    assert CliRunner().invoke(app, ["validate", str(tmp_path / "none.json")]).exit_code == 2
