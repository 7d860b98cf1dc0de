"""QA from annotated datasets in their released layouts: recognised from any folder a user may pass, the
Annotator on the masked frames with the expressions as context, the Refiner, then QA; masks exported equal to
the dataset's pixel for pixel, and every expression reached a prompt."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import dataset_layouts as layouts
import numpy as np
import pytest
from engine_runs import RUN_FLAGS, open_store, run_engine
from fake_endpoint import last_user_text
from typer.testing import CliRunner

from engine.cli import app
from engine.media import masks
from engine.store import schema

# layout -> (maker, the folder passed as --source, dataset name, split, video key of a record's path)
CASES = {
    "ytvos": (layouts.make_ytvos, lambda r: r, "ref-youtube-vos", "train", lambda p: Path(p).name),
    "mevis": (layouts.make_mevis, lambda r: r / "train", "mevis", "train", lambda p: Path(p).name),
    "a2d": (layouts.make_a2d, lambda r: r, "a2d-sentences", "train", lambda p: Path(p).stem),
    "davis": (layouts.make_davis, lambda r: r / "DAVIS" / "JPEGImages", "ref-davis17", "val", lambda p: Path(p).name),
}


def _obj_key(layout: str, noun: str, vid: str) -> str:
    """The dataset's object id behind a stored object (its noun is its first expression)."""
    k = next(i for i, s in enumerate(layouts.SHAPES) if noun.startswith(layouts.EXPRESSIONS[s]))
    if layout == "mevis":
        return str(100 * (int(vid[1:])) + k)
    return str(k) if layout == "a2d" else str(k + 1)


@pytest.mark.parametrize("layout", list(CASES))
def test_qa_from_a_dataset_in_its_released_layout(endpoint, tmp_path, layout, bikes_mp4):
    maker, source_of, name, split, key_of = CASES[layout]
    root = tmp_path / layout
    gt = maker(root)
    source = source_of(root)
    if layout == "ytvos":  # a plain video beside the dataset still goes through the plain QA pipeline
        shutil.copy(bikes_mp4, source / "bikes.mp4")
        (source / "bikes.txt").write_text("A cyclist rides a bike past a car.")
    data = tmp_path / "data"
    r = run_engine(
        endpoint,
        data,
        "--source",
        str(source),
        "--pipelines",
        "qa",
        env={"VIDEOREFER_CACHE_DIR": str(tmp_path / "cache")},
    )
    print(r.output)
    assert r.exit_code == 0, r.output
    flat = " ".join(r.output.split())
    assert f"Dataset {name}, split {split}" in flat and "referring expressions" in flat

    # every expression of the dataset's videos in this source reached an Annotator prompt
    prompts = [
        last_user_text(q.body)
        for q in endpoint.work_requests()
        if q.body["messages"][0]["content"].startswith("You describe one object")
    ]
    store = open_store(data)
    with store.session() as s:
        videos = {v.id: v for v in s.query(schema.Video)}
        dataset_videos = [v for v in videos.values() if v.path != "bikes.mp4" and key_of(v.path) in gt]
        objects = s.query(schema.VideoObject).filter(schema.VideoObject.video_id.in_([v.id for v in dataset_videos]))
        expressions = [t for d in s.query(schema.Description).filter_by(kind="short") for t in d.text.splitlines()]
        for o in objects:
            assert o.noun in expressions
        samples = s.query(schema.Sample).filter_by(data_type="qa").all()
        by_type = {t: sum(x.qa_type == t for x in samples) for t in ("basic", "reasoning", "future")}
    assert expressions and all(any(e in p for p in prompts) for e in expressions), (
        "an expression never reached a prompt"
    )
    with_context = [p for p in prompts if "described the marked object" in p]
    assert with_context and all("filled with a coloured mask" in p for p in with_context)
    assert sum(by_type.values()) > 0, by_type
    print(f"{layout}: QA samples by type {by_type}")

    out = tmp_path / "export"
    r = CliRunner().invoke(
        app,
        ["export", "--out", str(out), "--data-dir", str(data), "--types", "qa", *RUN_FLAGS[:2]],
        env={"COLUMNS": "200"},
    )
    assert r.exit_code == 0, r.output
    compared = 0
    with store.session() as s:
        nouns = {o.id: o.noun for o in s.query(schema.VideoObject)}
        for rec, prov in zip(
            json.loads((out / "qa_train.json").read_text()),
            map(json.loads, (out / "qa_train.provenance.jsonl").read_text().splitlines()),
        ):
            vid = key_of(rec["video"])
            if vid not in gt:
                continue
            for entry, obj in zip(rec["annotation"], prov["objects"]):
                truth = gt[vid][_obj_key(layout, nouns[obj["object_id"]], vid)]
                for frame, value in entry.items():
                    seg = value["segmentation"]
                    got = masks.decode(seg) if seg is not None else np.zeros_like(truth[int(frame)])
                    assert np.array_equal(got, truth[int(frame)]), (vid, frame)
                    compared += 1
    assert compared > 0
    print(f"{layout}: {compared} exported masks equal the dataset's")


def test_a_split_without_masks_and_a_near_miss_are_reported_never_taken_as_plain(endpoint, tmp_path):
    root = tmp_path / "ytvos"
    layouts.make_ytvos(root, videos=("vid1",))
    # a folder laid out like a split whose expressions file is missing: its videos are plain, with a warning
    (tmp_path / "ytvos" / "test" / "JPEGImages").mkdir(parents=True)
    shutil.copytree(root / "valid" / "JPEGImages" / "vval", root / "test" / "JPEGImages" / "vtest")
    data = tmp_path / "data"
    r = run_engine(endpoint, data, "--source", str(root / "valid"), "--pipelines", "qa")
    flat = " ".join(r.output.split())
    assert "Dataset ref-youtube-vos, split valid" in flat and "no masks:" in flat and "Annotations is missing" in flat
    assert r.exit_code == 4, r.output  # nothing to ask about: no sample, and it says so
    assert re.search(r"left out: dataset videos without masks in their split\s*│\s*1 │", flat)
    assert not [q for q in endpoint.work_requests()]  # no caption, analysis or segmentation of the valid video
    r = run_engine(endpoint, tmp_path / "d2", "--source", str(root / "test"), "--pipelines", "qa", "--dry-run")
    flat = " ".join(r.output.split())
    assert (
        "looks like a Ref-YouTube-VOS or MeViS split" in flat and "meta_expressions/test/meta_expressions.json" in flat
    )


def test_the_dataset_pipeline_without_a_dataset_video_stops_before_any_call(endpoint, tmp_path, bikes_mp4):
    src = tmp_path / "videos"
    src.mkdir()
    shutil.copy(bikes_mp4, src / "bikes.mp4")
    r = run_engine(endpoint, tmp_path / "d", "--source", str(src), "--pipelines", "qa-dataset")
    assert r.exit_code == 2 and "holds no video of an annotated dataset" in " ".join(r.output.split())
    assert not endpoint.chat_requests()  # not even preflight's probes


def test_dataset_text_is_neutralised_and_masks_of_another_size_never_stored(endpoint, tmp_path):
    from PIL import Image

    root = tmp_path / "ytvos"
    layouts.make_ytvos(root, videos=("vid1",))
    meta_file = root / "meta_expressions" / "train" / "meta_expressions.json"
    meta = json.loads(meta_file.read_text())
    meta["videos"]["vid1"]["expressions"]["0"]["exp"] = "the <region> red square <video> moving right"
    meta_file.write_text(json.dumps(meta))
    r = run_engine(endpoint, tmp_path / "data", "--source", str(root / "train"), "--pipelines", "qa")
    assert r.exit_code == 0, r.output
    with open_store(tmp_path / "data").session() as s:
        assert "the region red square video moving right" in {o.noun for o in s.query(schema.VideoObject)}
        for smp in s.query(schema.Sample):
            human, answer = (t["value"] for t in smp.conversations)
            assert human.count("<video>") == 1 and human.count("<region>") == len(smp.annotation)
            assert "<video>" not in answer and "<region>" not in answer
    # the same dataset with its palette masks at half the frames' size: the video fails, nothing is stored
    for png in sorted((root / "train" / "Annotations" / "vid1").glob("*.png")):
        im = Image.open(png)
        im.resize((im.width // 2, im.height // 2), Image.NEAREST).save(png)
    r = run_engine(endpoint, tmp_path / "data2", "--source", str(root / "train"), "--pipelines", "qa")
    assert r.exit_code == 1, r.output
    with open_store(tmp_path / "data2").session() as s:
        (f,) = s.query(schema.Failure).all()
        assert f.error_code == "segmentor_output" and "(24, 32)" in f.message and "(48, 64)" in f.message
        assert s.query(schema.Masklet).count() == 0 and s.query(schema.Sample).count() == 0


def test_the_qa_writer_sees_the_marked_frames_when_configured(endpoint, tmp_path):
    from fake_endpoint import image_urls

    root = tmp_path / "davis"
    layouts.make_davis(root)
    data = tmp_path / "data"
    r = run_engine(
        endpoint,
        data,
        "--source",
        str(root),
        "--pipelines",
        "qa-dataset",
        "--set",
        "qa.frames=true",
        "--set",
        "qa.pairs_per_set=2",
    )
    assert r.exit_code == 0, r.output
    assert "agent refiner: sees images" in r.output  # preflight proved the refiner's model sees images
    qa = [q for q in endpoint.work_requests() if q.body["messages"][0]["content"].startswith("You write question")]
    assert qa and all(len(image_urls(q.body)) > 0 for q in qa)
    pairs = [q for q in qa if "Object 2 (" in last_user_text(q.body)]
    assert pairs and all(
        "Object 1 in colour 1, Object 2 in colour 2" in q.body["messages"][0]["content"] for q in pairs
    )
    out = tmp_path / "export"
    r = CliRunner().invoke(
        app,
        [
            "export",
            "--out",
            str(out),
            "--data-dir",
            str(data),
            "--types",
            "qa",
            "--set",
            "qa.frames=true",
            "--set",
            "qa.pairs_per_set=2",
            *RUN_FLAGS[:2],
        ],
        env={"COLUMNS": "200"},
    )
    assert r.exit_code == 0, r.output
    assert "QA types: " in (out / "README.md").read_text()  # the card shows the type mix
