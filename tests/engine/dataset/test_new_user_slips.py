"""What a new user met: `engine validate` on a file that holds no records, a val split far from the fraction
asked with few sources, and a dataset card with an invisible length chart and "1 records"."""

import json

import numpy as np
import pytest
from review_data import ANALYZER_VERSION, CURRENT, lineage_of
from typer.testing import CliRunner

from engine.cli import app
from engine.dataset import records
from engine.dataset.card import length_bins, length_label, write_card
from engine.dataset.export import Filters, export, split_of, split_warnings
from engine.dataset.validate import NotARecordFile, validate_file
from engine.media import masks
from engine.store import schema
from engine.store.ids import stable_id

RLE = masks.encode(np.eye(12, 16, dtype=bool))
GOOD = {
    "id": "good",
    "video": "clip.mp4",
    "conversations": [{"from": "human", "value": "<video>\nDescribe <region>."}, {"from": "gpt", "value": "A."}],
    "annotation": [{"2": {"segmentation": RLE}}],
}


# --- 2. engine validate on a file that is not a record file ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        # an export's manifest.json: one JSON object over many lines (it read as "241 records, 231 not_json")
        (
            "manifest.json",
            json.dumps({"counts": {"qa_train": 4}, "files": ["qa_train.json"]}, indent=2),
            "a JSON object",
        ),
        ("one.json", json.dumps({"counts": {"qa_train": 4}}), "no item has any of a record's fields"),
        ("record.json", json.dumps(GOOD, indent=2), "a JSON object, not a list of records (one record: put it"),
        ("list.json", json.dumps([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], indent=2), "no item has any"),
        ("lines.jsonl", '{"id": 1, "name": "a"}\n{"id": 2, "name": "b"}\n', "no item has any"),
        ("numbers.json", "[1, 2, 3]\n", "no item has any"),
        ("notes.csv", "id,video\n1,a.mp4\n", "not JSON"),
        ("clip.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)), "a binary file"),
        ("latin1.json", "[\n" + json.dumps(GOOD) + "\n]\n" + "caf\xe9", None),  # written as latin-1 below
    ],
)
def test_a_file_that_is_not_a_record_file_is_said_to_be_so_in_one_line(tmp_path, name, content, says):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif name.startswith("latin1"):
        path.write_bytes(content.encode("latin-1"))
        says = "not UTF-8 text"
    else:
        path.write_text(content)
    with pytest.raises(NotARecordFile, match="is not a record file") as e:
        validate_file(path)
    assert says in str(e.value) and "\n" not in str(e.value)
    r = CliRunner().invoke(app, ["validate", str(path)], env={"COLUMNS": "200"})
    assert r.exit_code == 2, r.output
    assert r.output.strip().startswith("error: ") and "is not a record file" in r.output
    assert len(r.output.strip().splitlines()) == 1 and "not_json" not in r.output  # one line, no defect table


def test_a_record_file_with_broken_records_is_still_validated_record_by_record(tmp_path):
    jsonl = tmp_path / "some_broken.jsonl"
    jsonl.write_text(json.dumps(GOOD) + "\n{broken\n" + json.dumps({**GOOD, "id": "r2", "annotation": []}) + "\n")
    report = validate_file(jsonl)
    assert report.records == 3 and dict(report.defects) == {"not_json": 1, "region_count": 1}
    # a JSONL file whose first line is the broken one: lines of records still, never "a JSON object"
    first_broken = tmp_path / "first_broken.jsonl"
    first_broken.write_text('{"id": "x", "video": \n' + json.dumps(GOOD) + "\n")
    assert dict(validate_file(first_broken).defects) == {"not_json": 1}
    # an array one record a line with a broken one, and one with a non-record object among records
    array = tmp_path / "array.json"
    array.write_text("[\n{oops,\n" + json.dumps(GOOD) + ",\n" + json.dumps({"id": "n"}) + "\n]\n")
    assert dict(validate_file(array).defects) == {"not_json": 1, "not_a_record": 1}
    # empty record files are record files (an export writes one for a type with no record)
    for name, text in (("empty.json", "[]\n"), ("empty2.json", "[\n]\n"), ("empty.jsonl", "")):
        (tmp_path / name).write_text(text)
        assert validate_file(tmp_path / name).records == 0


def test_a_pretty_printed_record_file_is_read_whole_not_line_by_line(tmp_path):
    path = tmp_path / "pretty.json"
    path.write_text(json.dumps([GOOD, {**GOOD, "id": "g2"}], indent=2))
    report = validate_file(path)
    assert report.records == 2 and report.ok


# --- 3. a val split far from the fraction asked -----------------------------------------------------------


def test_split_warnings_say_when_few_sources_make_the_split_far_from_the_fraction():
    from collections import Counter

    # the issue: --val-fraction 0.25 over 2 sources put 3 of 4 records in val
    counts = Counter({("short", "train"): 1, ("short", "val"): 3})
    (w,) = split_warnings(0.25, {"a": "val", "b": "train"}, counts)
    assert "--val-fraction 0.25 put 1 of 2 source videos in val, 3 of 4 records (75%)" in w and "far from 25%" in w
    (w,) = split_warnings(0.25, {"a": "train"}, Counter({("short", "train"): 4, ("short", "val"): 0}))
    assert "0 of 1 source video in val" in w and "the val files are empty" in w
    (w,) = split_warnings(0.5, {"a": "val", "b": "val"}, Counter({("qa", "val"): 2, ("qa", "train"): 0}))
    assert "the train files are empty" in w
    near = Counter({("short", "train"): 76, ("short", "val"): 24})
    assert split_warnings(0.25, {str(i): "val" if i < 24 else "train" for i in range(100)}, near) == []
    assert split_warnings(0.0, {"a": "train"}, Counter({("short", "train"): 4})) == []


@pytest.fixture
def two_sources(sqlite_store, tmp_path):
    """Two source videos, one with 3 short samples of one word count, the other with 1; a seed that puts the first
    in val and the second in train (the issue's 3 of 4 records in val)."""
    store = sqlite_store
    ids = {"a": stable_id("video", "a"), "b": stable_id("video", "b")}
    seed = next(
        s for s in range(1000) if (split_of(ids["a"], 0.25, s), split_of(ids["b"], 0.25, s)) == ("val", "train")
    )
    frame = {"0": masks.encode(np.eye(12, 16, dtype=bool))}
    with store.session() as s:
        for name, n in (("a", 3), ("b", 1)):
            s.add(
                schema.Video(
                    id=ids[name],
                    path=f"{name}.mp4",
                    source_root=str(tmp_path),
                    kind="file",
                    num_frames=4,
                    fps=12.0,
                    width=16,
                    height=12,
                    size_bytes=1,
                )
            )
            s.flush()
            oid = stable_id("object", ids[name])
            s.add(schema.VideoObject(id=oid, video_id=ids[name], noun="cup", stage_version=ANALYZER_VERSION))
            s.flush()
            for i in range(n):
                s.add(
                    schema.Sample(
                        id=stable_id("s", name, i),
                        data_type="short",
                        video_id=ids[name],
                        lineage=lineage_of("short", "short_samples"),
                        object_ids=[oid],
                        mode="single",
                        annotation=[records.region(frame, 0, "single")],
                        conversations=records.conversation(
                            records.single_object_turn(records.SHORT_PROMPTS[0]), "A red cup."
                        ),
                    )
                )
    return store, seed


def test_export_warns_when_the_val_split_is_far_from_the_fraction(two_sources, tmp_path):
    store, seed = two_sources
    result = export(store, tmp_path / "out", CURRENT, filters=Filters(types=("short",), val_fraction=0.25, seed=seed))
    assert result.counts[("short", "val")] == 3 and len(result.warnings) == 1
    assert "3 of 4 records (75%)" in result.warnings[0]
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["warnings"] == result.warnings
    r = CliRunner().invoke(
        app,
        ["export", "--out", str(tmp_path / "cli"), "--database-url", store.url, "--types", "short"]
        + ["--val-fraction", "0.25", "--seed", str(seed)],
        env={"COLUMNS": "200"},
    )
    assert r.exit_code == 0, r.output
    assert "warning: --val-fraction 0.25 put 1 of 2 source videos in val" in " ".join(r.output.split())


# --- 1. the card: a one-value length distribution, and counts in agreement with their nouns --------------------


def test_length_bins_make_a_one_value_distribution_a_visible_bar():
    bins = length_bins({"short": [3, 3, 3, 3], "detailed": list(range(10, 300))})
    assert all(b - a >= 1 for a, b in zip(bins, bins[1:])) and len(bins) <= 42
    assert bins[0] <= 3 <= bins[1] and bins[-1] >= 299  # the lone value lies inside a bin of at least a word
    assert length_bins({"short": [3, 3]}) == [2.5, 3.5]  # one bar a word wide, centred on its length
    assert length_label("short", [3, 3, 3, 3]) == "short: all 4 answers have 3 words"
    assert length_label("qa", [1]) == "qa: 1 answer, 1 word"
    assert length_label("detailed", [10, 20]) == "detailed (n=2)"


def test_card_states_a_one_value_length_and_agrees_in_number(two_sources, tmp_path):
    store, seed = two_sources
    out = tmp_path / "card"
    result = export(store, out, CURRENT, filters=Filters(types=("short",), val_fraction=0.25, seed=seed))
    reports = [validate_file(p) for p in result.files]
    card = write_card(store, result, reports, "videorefer").read_text()
    assert "Answer lengths: short: all 4 answers have 3 words." in card
    assert "`short_train.json`: 1 record, no defects" in card and "`short_val.json`: 3 records, no defects" in card
    assert "1 records" not in card and "Warning: --val-fraction 0.25 put 1 of 2 source videos in val" in card
    png = out / "charts" / "lengths.png"
    import matplotlib.image

    pixels = matplotlib.image.imread(str(png))[..., :3]
    coloured = (pixels.max(axis=2) - pixels.min(axis=2)) > 0.15  # the bar (and the legend's patch), not grey
    assert coloured.mean() > 0.05, coloured.mean()  # matplotlib's own 30 bins drew a sliver: 2.5% of the image
