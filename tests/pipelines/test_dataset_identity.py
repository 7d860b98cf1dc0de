"""Objects are told apart by identity, never by their text: two instances of a dataset video with one referring
expression are two objects (A2D-Sentences has 12 such videos), and model nouns that repeat, differ only in case,
run past the column's length or are empty never break the objects' unique key."""

from __future__ import annotations

import json
from pathlib import Path

import dataset_layouts as layouts
import numpy as np
from engine_runs import RUN_FLAGS, open_store, run_engine
from typer.testing import CliRunner

from agents.analyzer import Analysis, AnalyzeItem, AnalyzerAgent, Nouns
from engine.cli import app
from engine.media import masks
from engine.store import schema
from pipelines.stages import NOUN_CHARS, dataset_instances, object_nouns


def test_two_instances_with_one_query_are_two_objects_stored_and_exported(endpoint, tmp_path):
    root = tmp_path / "a2d"
    videos = ("dupclip", "a2dclip2", "a2dclip3")  # train, test, train (videoset.csv's last column)
    gt = layouts.make_a2d(root, videos=videos, shared_query=("dupclip",))
    data = tmp_path / "data"
    for _ in range(2):  # a rerun finds everything done and stores nothing twice
        r = run_engine(
            endpoint,
            data,
            "--source",
            str(root),
            "--pipelines",
            "qa",
            env={"VIDEOREFER_CACHE_DIR": str(tmp_path / "cache")},
        )
        assert r.exit_code == 0, r.output
    store = open_store(data)
    with store.session() as s:
        key = {v.id: Path(v.path).stem for v in s.query(schema.Video)}
        objects = {o.id: (key[o.video_id], o.instance, o.noun) for o in s.query(schema.VideoObject)}
        assert s.query(schema.Masklet).count() == len(objects) == 6
    dup = sorted((inst, noun) for vid, inst, noun in objects.values() if vid == "dupclip")
    assert dup == [(0, layouts.SHARED_QUERY), (1, layouts.SHARED_QUERY)]
    assert {(vid, inst) for vid, inst, _ in objects.values()} == {(v, k) for v in videos for k in (0, 1)}

    out = tmp_path / "export"
    r = CliRunner().invoke(
        app,
        ["export", "--out", str(out), "--data-dir", str(data), "--types", "qa", *RUN_FLAGS[:2]],
        env={"COLUMNS": "200"},
    )
    assert r.exit_code == 0, r.output
    exported, compared = set(), 0
    for rec, prov in zip(
        json.loads((out / "qa_train.json").read_text()),
        map(json.loads, (out / "qa_train.provenance.jsonl").read_text().splitlines()),
    ):
        for entry, obj in zip(rec["annotation"], prov["objects"]):
            vid, instance, _ = objects[obj["object_id"]]
            assert vid == Path(rec["video"]).stem
            exported.add((vid, instance))
            truth = gt[vid][str(instance)]  # the dataset's masks of that instance id
            for frame, value in entry.items():
                seg = value["segmentation"]
                got = masks.decode(seg) if seg is not None else np.zeros_like(truth[int(frame)])
                assert np.array_equal(got, truth[int(frame)]), (vid, instance, frame)
                compared += 1
    assert exported == {(v, k) for v in videos for k in (0, 1)} and compared > 0


def test_dataset_instances_come_from_the_dataset_ids():
    assert dataset_instances(["1", "0"]) == {"0": 0, "1": 1}  # A2D, palettes: the id itself
    assert dataset_instances(["201", "200"]) == {"200": 200, "201": 201}  # MeViS anno ids
    assert dataset_instances(["b", "10", "a"]) == {"a": 0, "b": 1, "10": 2}  # not all numbers: rank among the ids
    assert dataset_instances(["3", str(2**40)]) == {"3": 0, str(2**40): 1}  # past a 32-bit INTEGER: rank


def test_analyzer_nouns_cannot_break_the_objects_unique_key():
    long = "very " * 40 + "long noun"
    # the agent: singular, lower case, deduplicated, empty ones dropped, short
    out = AnalyzerAgent().parse(AnalyzeItem(""), Nouns(subject="Dog", others=["dog", "DOGS", "", "  ", "cat", long]))
    assert out.nouns[:2] == ["dog", "cat"] and len(out.nouns) == 3 and len(out.nouns[2]) <= NOUN_CHARS
    # the stage, whatever an Analysis holds: one row per noun as the column keeps it
    raw = Analysis("Dog", ["dog", " Dog ", "", "   ", "cat", long + " a", long + " b", "Cat"])
    nouns = object_nouns(raw)
    assert nouns == ["Dog", "cat", long[:NOUN_CHARS].strip()]
    assert all(0 < len(n) <= NOUN_CHARS for n in nouns)
    assert object_nouns(Analysis(None, ["", " "])) == [] and object_nouns(Analysis("", [])) == []


def test_a_new_mask_frames_gives_new_dataset_objects_that_are_exported(endpoint, tmp_path):
    root = tmp_path / "a2d"
    layouts.make_a2d(root, videos=("a2dclip1",))
    data = tmp_path / "data"
    for n in ("32", "2"):  # the second run's rows are a new stage_version: new objects, never skipped as the old
        r = run_engine(
            endpoint, data, "--source", str(root), "--pipelines", "qa-dataset", "--set", f"sampling.mask_frames={n}"
        )
        assert r.exit_code == 0, r.output
        out = tmp_path / f"export{n}"
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
                f"sampling.mask_frames={n}",
                *RUN_FLAGS[:2],
            ],
            env={"COLUMNS": "200"},
        )
        assert r.exit_code == 0, r.output
        records = json.loads((out / "qa_train.json").read_text())
        assert records and all(len(entry) <= int(n) for rec in records for entry in rec["annotation"])
    with open_store(data).session() as s:
        assert s.query(schema.VideoObject).count() == s.query(schema.Masklet).count() == 4
