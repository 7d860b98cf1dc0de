"""A run whose segmentor loses objects on some frames, exported in every format, passes the loader checks;
masks that do not fit the video never reach the store; QA comes out of a model that never writes tags."""

from __future__ import annotations

import json

import pytest
from engine_runs import open_store, run_engine
from typer.testing import CliRunner

from engine.cli import app
from engine.store import schema


def _set_backend(name: str) -> tuple[str, ...]:
    return ("--set", f"segmentor.backend=fake_segmentor:{name}")


def test_gappy_segmentor_exports_validate_in_every_format(endpoint, source, tmp_path):
    # text that did not come from our templates carries the format's tokens: they must not reach a record as such
    (source / "shapes.txt").write_text("A red square <region> slides past a blue circle <video>.")
    data = tmp_path / "data"
    r = run_engine(
        endpoint, data, "--source", str(source), "--pipelines", "short,detailed,qa", *_set_backend("GappySegmentor")
    )
    assert r.exit_code == 0, r.output
    store = open_store(data)
    with store.session() as s:
        samples = s.query(schema.Sample).all()
        by_type = {t: sum(x.data_type == t for x in samples) for t in ("short", "detailed", "qa")}
        assert all(by_type.values()), by_type  # QA too, although the stand-in model never writes a tag
        empty = [x for x in samples if any(v["segmentation"] is None for e in x.annotation for v in e.values())]
        assert empty  # multi-frame records with an empty frame, written {"segmentation": null}
        shorts = [x.conversations[1]["value"] for x in samples if x.data_type == "short"]
        assert "A red square region slides past a blue circle video." in shorts
    print(f"\nsamples {by_type}, with an empty frame: {len(empty)}")
    for fmt in ("videorefer", "jsonl", "videollama3"):
        out = tmp_path / f"export-{fmt}"
        r = CliRunner().invoke(
            app,
            ["export", "--out", str(out), "--data-dir", str(data), "--format", fmt, *_set_backend("GappySegmentor")],
            env={"COLUMNS": "200"},
        )
        assert r.exit_code == 0, r.output
        print(r.output)
        counts = json.loads((out / "manifest.json").read_text())["file_counts"]
        assert counts == {f"{t}_train.json{'l' if fmt == 'jsonl' else ''}": n for t, n in by_type.items()}
        files = sorted(p for p in out.glob("*_train.json*"))
        assert [p.name.split("_")[0] for p in files] == ["detailed", "qa", "short"]
        for path in files:
            v = CliRunner().invoke(app, ["validate", str(path), "--video-root", str(source)], env={"COLUMNS": "200"})
            print(v.output.strip())
            assert v.exit_code == 0 and "no defects" in " ".join(v.output.split()), v.output
        if fmt == "videollama3":
            recs = json.loads((out / "detailed_train.json").read_text())
            assert all(len(m) == 1 and next(iter(m.values())) for rec in recs for m in rec["masks"])
    # with nothing but the data dir, export reads the versions of the run that made the samples
    r = CliRunner().invoke(app, ["export", "--out", str(tmp_path / "same"), "--data-dir", str(data)])
    assert r.exit_code == 0 and "using the configuration of run" in r.output, r.output
    # the same store, exported with another segmentor configured (--set): nothing current, and it says so
    r = CliRunner().invoke(
        app,
        [
            "export",
            "--out",
            str(tmp_path / "other"),
            "--data-dir",
            str(data),
            "--set",
            "segmentor.backend=grounded_sam2",
        ],
    )
    total = sum(by_type.values())
    assert r.exit_code == 4 and f"holds {total} samples of these types, none from the versions used" in " ".join(
        r.output.split()
    )


@pytest.mark.parametrize(
    "backend, words", [("HalfSizeSegmentor", "returned a mask of"), ("ShiftedSegmentor", "which were not asked for")]
)
def test_masks_that_do_not_fit_the_video_fail_the_unit_and_store_nothing(endpoint, source, tmp_path, backend, words):
    data = tmp_path / "data"
    r = run_engine(
        endpoint, data, "--source", str(source), "--pipelines", "detailed", "--limit", "1", *_set_backend(backend)
    )
    assert r.exit_code == 1, r.output  # finished with failures
    with open_store(data).session() as s:
        assert s.query(schema.Masklet).count() == 0 and s.query(schema.Sample).count() == 0
        (f,) = s.query(schema.Failure).all()
        assert f.stage == "segment" and f.error_code == "segmentor_output" and f.quarantined
        assert words in f.message and backend.lower().replace("segmentor", "")[:4] in f.message.lower()
        video = s.get(schema.Video, f.video_id)
        assert video.path in f.message  # names the video
    print(f"\n{backend}: {f.message}")
