"""engine export: formats, filters, leak-free splits, provenance, reload with json and `datasets`, the card."""

import json

import numpy as np
import pytest
from review_data import ANALYZER_VERSION, CURRENT, LINEAGE, lineage_of
from synthetic import render, write_mp4
from typer.testing import CliRunner

from engine.cli import app
from engine.dataset import records
from engine.dataset.export import Filters, export, split_of
from engine.dataset.validate import validate_file
from engine.media import masks
from engine.store import schema
from engine.store.ids import stable_id


@pytest.fixture
def filled(tmp_path, sqlite_store):
    """A store with 6 videos (real files), two objects each, reviews, an audit, and samples of every type."""
    store, src = sqlite_store, tmp_path / "src"
    expected_masks = {}
    with store.session() as s:
        for v in range(6):
            frames, gt = render(10, 64, 48)
            write_mp4(src / f"clip{v}.mp4", frames)
            vid = stable_id("video", v)
            s.add(
                schema.Video(
                    id=vid,
                    path=f"clip{v}.mp4",
                    source_root=str(src),
                    kind="file",
                    num_frames=10,
                    fps=12.0,
                    width=64,
                    height=48,
                    size_bytes=1,
                )
            )
            s.flush()
            oids = []
            for k, noun in enumerate(gt):
                oid = stable_id("object", vid, noun)
                oids.append(oid)
                frame_masks = {str(f): masks.encode(np.roll(gt[noun][f], v, axis=1)) for f in (0, 3, 6, 9)}
                if k == 1:
                    frame_masks["6"] = None  # the segmentor lost this object on frame 6
                expected_masks[oid] = frame_masks
                s.add(schema.VideoObject(id=oid, video_id=vid, noun=noun, stage_version=ANALYZER_VERSION))
                s.flush()
                s.add(
                    schema.Masklet(
                        id=stable_id("m", oid),
                        object_id=oid,
                        backend_version="t@1",
                        anchor_frame=3,
                        lineage=LINEAGE["segment"],
                        box=[0, 0, 1, 1],
                        grounding_score=1,
                        mask_score=1,
                        height=48,
                        width=64,
                        frames=frame_masks,
                        coverage=1.0 if k == 0 else 0.25,
                        area_variation=0,
                        mean_consecutive_iou=1,
                        empty_frames=0,
                        border_contact=0,
                    )
                )
                rid = stable_id("r", oid)
                s.add(
                    schema.Review(
                        id=rid,
                        object_id=oid,
                        mode="paper",
                        verdict=k == 0,
                        confidence=0.9,
                        rationale="r",
                        model="m",
                        prompt_version="reviewer_judge@1",
                        lineage=LINEAGE["review"],
                    )
                )
                s.flush()
                if v == 0 and k == 0:
                    s.add(schema.Audit(id=stable_id("a", rid), review_id=rid, auditor="ann", human_verdict=True))
                mode = "multi" if (v + k) % 2 else "single"
                ann = [records.region(frame_masks, 3, mode)]
                s.add(
                    schema.Sample(
                        id=stable_id("s", "detailed", oid),
                        data_type="detailed",
                        video_id=vid,
                        object_ids=[oid],
                        mode=mode,
                        annotation=ann,
                        lineage=LINEAGE["detailed_samples"],
                        conversations=records.conversation(
                            records.single_object_turn(records.DETAILED_PROMPTS[0]), f"About {noun}."
                        ),
                    )
                )
                s.add(
                    schema.Sample(
                        id=stable_id("s", "short", oid),
                        data_type="short",
                        video_id=vid,
                        lineage=lineage_of("short", "short_samples"),
                        object_ids=[oid],
                        mode="single",
                        annotation=[records.region(frame_masks, 3, "single")],
                        conversations=records.conversation(
                            records.single_object_turn(records.SHORT_PROMPTS[0]), "A caption."
                        ),
                    )
                )
            qa_ann = [records.region(expected_masks[o], 3, "single") for o in oids]
            s.add(
                schema.Sample(
                    id=stable_id("s", "qa", vid),
                    data_type="qa",
                    qa_type="basic",
                    video_id=vid,
                    object_ids=oids,
                    mode="single",
                    annotation=qa_ann,
                    lineage=lineage_of("qa", "qa"),
                    conversations=records.conversation(
                        records.multi_object_turn(2, "Is <object0> left of <object1>?"), "Yes."
                    ),
                )
            )
    return store, src, expected_masks


def _load(path):
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    return json.loads(path.read_text())


def test_videorefer_export_round_trips_masks_and_splits_by_video(filled, tmp_path):
    store, src, expected = filled
    out = tmp_path / "out"
    result = export(store, out, CURRENT, "videorefer", Filters(val_fraction=0.5, seed=3))
    assert sum(result.counts.values()) == 6 * 2 * 2 + 6
    videos_in = {"train": set(), "val": set()}
    for path in result.files:
        recs = _load(path)
        assert validate_file(path, video_root=src).ok
        for rec in recs:
            assert set(rec) == {"id", "video", "conversations", "annotation"}
            videos_in[path.stem.split("_")[1]].add(rec["video"])
        prov = [json.loads(x) for x in path.with_name(path.stem + ".provenance.jsonl").read_text().splitlines()]
        assert [p["id"] for p in prov] == [r["id"] for r in recs]
        with store.session() as s:
            for rec, p in zip(recs, prov):
                smp = s.get(schema.Sample, rec["id"])
                assert rec["annotation"] == smp.annotation and rec["conversations"] == smp.conversations
                for oid, entry in zip(smp.object_ids, rec["annotation"]):
                    for frame, value in entry.items():  # every mask decodes to what the store holds
                        if expected[oid][frame] is None:
                            assert value == {"segmentation": None}  # an empty frame, as VideoRefer reads it
                            continue
                        assert np.array_equal(masks.decode(value["segmentation"]), masks.decode(expected[oid][frame]))
                assert p["video_sha256_128"] == smp.video_id and p["objects"][0]["segmentor"] == "t@1"
    assert videos_in["train"] and videos_in["val"] and not videos_in["train"] & videos_in["val"]  # no leak
    again = export(store, tmp_path / "again", CURRENT, "videorefer", Filters(val_fraction=0.5, seed=3))
    assert again.counts == result.counts  # deterministic for a seed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["filters"]["seed"] == 3 and sum(manifest["counts"].values()) == 30


def test_split_is_stable_and_near_the_fraction():
    ids = [stable_id("v", i) for i in range(2000)]
    val = [i for i in ids if split_of(i, 0.1, 7) == "val"]
    assert 150 < len(val) < 250 and val == [i for i in ids if split_of(i, 0.1, 7) == "val"]
    assert {split_of(i, 0.0, 7) for i in ids} == {"train"}


def _by_reason(result):
    out = {}
    for (_, reason), n in result.skipped.items():
        out[reason] = out.get(reason, 0) + n
    return out


def test_filters(filled, tmp_path):
    store, _, _ = filled
    # kept: the first object of each video; every qa record also holds a discarded object
    accepted = export(store, tmp_path / "a", CURRENT, filters=Filters(accepted_only=True))
    assert +accepted.counts == {("detailed", "train"): 6, ("short", "train"): 6}
    assert accepted.counts[("qa", "train")] == 0 and accepted.skipped[("qa", "not_accepted")] == 6
    qa_file = tmp_path / "a" / "qa_train.json"  # a requested type with no record still gets its file
    assert json.loads(qa_file.read_text()) == [] and validate_file(qa_file).ok
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["file_counts"]["qa_train.json"] == 0 and manifest["skipped"]["qa"] == {"not_accepted": 6}
    audited = export(store, tmp_path / "b", CURRENT, filters=Filters(audited_only=True))
    assert +audited.counts == {("detailed", "train"): 1, ("short", "train"): 1}
    assert _by_reason(audited) == {"not_audited": 28}
    cov = export(store, tmp_path / "c", CURRENT, filters=Filters(min_coverage=0.5))
    assert sum(cov.counts.values()) == 12 and _by_reason(cov) == {"min_coverage": 18}
    one = export(store, tmp_path / "d", CURRENT, filters=Filters(types=("qa", "short"), max_objects=1))
    assert +one.counts == {("short", "train"): 12} and one.skipped == {("qa", "max_objects"): 6}


def test_empty_frames_kept_as_null_segmentation_or_dropped(filled, tmp_path):
    store, src, expected = filled
    keep = export(store, tmp_path / "keep", CURRENT, "videorefer", Filters(types=("detailed",)))
    recs = _load(keep.files[0])
    nulls = [r["id"] for r in recs if any(v == {"segmentation": None} for e in r["annotation"] for v in e.values())]
    assert len(nulls) == 3  # the multi-frame records of the second objects
    assert validate_file(keep.files[0], video_root=src).ok
    drop = export(store, tmp_path / "drop", CURRENT, "videorefer", Filters(types=("detailed",), empty_frames="drop"))
    dropped = {r["id"]: r for r in _load(drop.files[0])}
    assert len(dropped) == 12 and all(
        v["segmentation"] for r in dropped.values() for e in r["annotation"] for v in e.values()
    )
    assert all(len(dropped[i]["annotation"][0]) == 3 for i in nulls)  # frame 6 gone, 0, 3 and 9 left
    assert validate_file(drop.files[0], video_root=src).ok
    # a sample from before records@2 (bare null) and one whose only frame is empty
    with store.session() as s:
        smp = s.get(schema.Sample, recs[0]["id"])
        oid, vid, lineage = smp.object_ids[0], smp.video_id, smp.lineage
        legacy = {"3": {"segmentation": expected[oid]["3"]}, "6": None}
        for name, ann in (("legacy", [legacy]), ("hollow", [{"6": {"segmentation": None}}])):
            s.add(
                schema.Sample(
                    id=stable_id("s", name),
                    data_type="detailed",
                    video_id=vid,
                    object_ids=[oid],
                    mode="multi",
                    annotation=ann,
                    lineage=lineage,
                    conversations=smp.conversations,
                )
            )
    keep = export(store, tmp_path / "keep2", CURRENT, "videorefer", Filters(types=("detailed",)))
    by_id = {r["id"]: r for r in _load(keep.files[0])}
    assert by_id[stable_id("s", "legacy")]["annotation"][0]["6"] == {"segmentation": None}
    assert validate_file(keep.files[0], video_root=src).defects == {"no_mask": 1}  # the hollow one, kept as asked
    drop = export(store, tmp_path / "drop2", CURRENT, "videorefer", Filters(types=("detailed",), empty_frames="drop"))
    assert drop.skipped == {("detailed", "object_without_mask"): 1} and validate_file(drop.files[0], src).ok


def test_jsonl_and_videollama3_formats(filled, tmp_path):
    store, src, expected = filled
    jl = export(store, tmp_path / "jl", CURRENT, "jsonl", Filters(types=("qa",)))
    (path,) = jl.files
    assert path.suffix == ".jsonl" and len(path.read_text().splitlines()) == 6 and validate_file(path, src).ok
    vl = export(store, tmp_path / "vl", CURRENT, "videollama3", Filters(types=("qa", "detailed")))
    for path in vl.files:
        assert validate_file(path, video_root=src).ok
        for rec in _load(path):
            assert set(rec) == {"id", "video", "conversations", "masks", "height", "width"}
            assert rec["video"] == [rec["video"][0]] and rec["video"][0].endswith(".mp4")  # its own shape
            assert (rec["height"], rec["width"]) == (48, 64)
            assert all(len(m) == 1 and m[k] and m[k]["size"] == [48, 64] for m in rec["masks"] for k in m)
            assert rec["conversations"][0]["value"].count("<region>") == len(rec["masks"])
    # the anchor frame (3) is the one mask of each object: it is never empty here
    assert {k for path in vl.files for rec in _load(path) for m in rec["masks"] for k in m} == {"3"}


def test_reload_with_the_datasets_library(filled, tmp_path):
    import datasets

    store, _, _ = filled
    result = export(store, tmp_path / "out", CURRENT, "videorefer", Filters(types=("detailed",)))
    (path,) = result.files
    ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf"))
    assert len(ds) == 12 and set(ds["id"]) == {r["id"] for r in _load(path)}
    assert all(turns[0]["from"] == "human" for turns in ds["conversations"])


def test_cli_export_writes_card_and_charts(filled, tmp_path):
    store, _, _ = filled
    out = tmp_path / "out"
    r = CliRunner().invoke(
        app,
        ["export", "--out", str(out), "--database-url", store.url, "--val-fraction", "0.3"],
        env={"COLUMNS": "200"},
    )
    assert r.exit_code == 0, r.output
    card = (out / "README.md").read_text()
    assert "| detailed |" in card and "Reviewer keep rate: 50.0%" in card and "TP 1" in card
    for chart in ("categories", "lengths", "modes"):
        assert (out / "charts" / f"{chart}.png").stat().st_size > 1000 and f"charts/{chart}.png" in card
    bad = CliRunner().invoke(app, ["export", "--out", str(out), "--database-url", store.url, "--format", "csv"])
    assert bad.exit_code == 2 and "videorefer" in bad.output
    bad = CliRunner().invoke(app, ["export", "--out", str(out), "--database-url", store.url, "--empty-frames", "x"])
    assert bad.exit_code == 2 and "keep or drop" in bad.output
    drop = CliRunner().invoke(
        app,
        ["export", "--out", str(tmp_path / "d"), "--database-url", store.url, "--empty-frames", "drop"],
        env={"COLUMNS": "200"},
    )
    assert drop.exit_code == 0, drop.output
    assert json.loads((tmp_path / "d" / "manifest.json").read_text())["empty_frames"] == "drop"


def test_a_clip_whose_source_cannot_be_read_is_left_out_of_an_export_with_clips(tmp_path):
    from types import SimpleNamespace

    import pytest

    from engine.dataset.export import _Skip, _Videos

    source = SimpleNamespace(
        id="s", parent_id=None, path="gone.mp4", source_root=str(tmp_path), num_frames=100, height=10, width=10
    )
    clip = SimpleNamespace(
        id="c",
        parent_id="s",
        path="gone.mp4",
        source_root=str(tmp_path),
        first_frame=10,
        num_frames=50,
        fps=25.0,
        height=10,
        width=10,
    )
    with pytest.raises(_Skip, match="video_unreadable"):
        _Videos(tmp_path / "out", clips=True).ref(clip, {"s": source, "c": clip})
    assert not list((tmp_path / "out").rglob("*.part"))
