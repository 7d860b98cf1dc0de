"""Masklet quality gates (engine/media/gates.py, pipelines/stages.py GateStage): each gate stops the labelled
masklets it is for, right after segmentation, so a gated object costs no Annotator or Reviewer request; a new
threshold re-gates from the stored masklets without a segmentor call."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from engine_runs import open_store, run_engine
from fake_segmentor import LabelledSegmentor
from synthetic import render, write_mp4
from typer.testing import CliRunner

from engine.cli import app
from engine.config import GatesConfig, load_config
from engine.media.gates import GATES, failed_gate
from engine.registry import build_pipelines, version_context
from engine.runtime.pipeline import current_of
from engine.store import schema

LABELLED = ("--pipelines", "short,detailed", "--set", "segmentor.backend=fake_segmentor:LabelledSegmentor")
NOUNS = ("ball", "drift", "flicker", "sparse")


@pytest.fixture
def labelled_source(tmp_path):
    """One clip whose caption names a good object and one of each bad kind the labelled segmentor draws."""
    src = tmp_path / "videos"
    src.mkdir()
    write_mp4(src / "labels.mp4", render(24, 96, 72)[0])
    (src / "labels.txt").write_text("A ball rolls past a drift, a flicker and a sparse.")
    return src


def test_the_config_and_the_gates_name_the_same_thresholds():
    assert set(GatesConfig().thresholds()) == set(GATES)


@pytest.mark.parametrize(
    ("metrics", "want"),
    [
        ({"empty_share": 0.0, "mean_consecutive_iou": 0.9, "area_share": 0.06, "border_contact": 0.0}, None),
        (
            {"empty_share": 0.75, "mean_consecutive_iou": 0.0, "area_share": 0.9, "border_contact": 1.0},
            "max_empty_share",
        ),
        ({"empty_share": 0.0, "mean_consecutive_iou": 0.05, "area_share": 0.9, "border_contact": 0.0}, "min_mean_iou"),
        (
            {"empty_share": 0.0, "mean_consecutive_iou": 0.9, "area_share": 0.7, "border_contact": 0.0},
            "max_area_share",
        ),
        ({"empty_share": 0.5, "mean_consecutive_iou": 0.1, "area_share": 0.6, "border_contact": 1.0}, None),  # limits
        (
            {"empty_share": 0.0, "mean_consecutive_iou": float("nan"), "area_share": 0.1, "border_contact": 0.0},
            "min_mean_iou",
        ),
    ],
)
def test_the_first_gate_a_masklet_fails_is_the_one_named(metrics, want):
    found = failed_gate(metrics, GatesConfig().thresholds())
    assert (found[0] if found else None) == want


def test_a_border_gate_and_a_min_area_gate_stop_what_they_say_when_set():
    t = GatesConfig(max_border_contact=0.5, min_area_share=0.01).thresholds()
    cut_off = {"empty_share": 0.0, "mean_consecutive_iou": 0.9, "area_share": 0.1, "border_contact": 0.8}
    speck = {"empty_share": 0.0, "mean_consecutive_iou": 0.9, "area_share": 0.001, "border_contact": 0.0}
    assert failed_gate(cut_off, t)[:2] == ("max_border_contact", 0.8)
    assert failed_gate(speck, t)[:2] == ("min_area_share", 0.001)


def test_dataset_masks_are_not_gated_unless_the_setting_says_so(tmp_path):
    def gate_lineages(**gates) -> frozenset[str]:
        cfg = load_config(
            environ={}, overrides={"data_dir": str(tmp_path), **{f"gates.{k}": v for k, v in gates.items()}}
        )
        vc, _ = version_context(cfg)
        return current_of(build_pipelines(["qa"]), vc).gates

    plain = gate_lineages()
    assert len(plain) == 1  # the qa pipeline's gate; the dataset pipeline's gate writes nothing
    assert len(gate_lineages(dataset_masks=True)) == 2
    assert gate_lineages(enabled=False) == frozenset()


def _requests_by_role(data, run_id: str) -> dict[str, int]:
    with open_store(data).session() as s:
        r = schema.Request
        rows = s.execute(
            sa.select(r.role, sa.func.count()).where(r.run_id == run_id, r.kind != "probe").group_by(r.role)
        ).all()
    return dict(rows)


def _newest_run(data) -> str:
    with open_store(data).session() as s:
        return s.scalar(sa.select(schema.Run.id).order_by(schema.Run.started_at.desc()).limit(1))


def _described(data) -> set[str]:
    with open_store(data).session() as s:
        rows = s.execute(
            sa.select(schema.VideoObject.noun)
            .join(schema.Description, schema.Description.object_id == schema.VideoObject.id)
            .where(schema.Description.kind.in_(("motion", "appearance")))
        ).all()
    return {noun for (noun,) in rows}


def test_gated_objects_send_no_annotator_or_reviewer_request_and_a_new_threshold_regates_without_segmenting(
    labelled_source, endpoint, tmp_path
):
    data = tmp_path / "on"
    r = run_engine(endpoint, data, "--source", str(labelled_source), *LABELLED)
    assert r.exit_code == 0, r.output
    assert {LabelledSegmentor.label_of(n) for n in NOUNS} == {"good", "drift", "flicker", "sparse"}
    with open_store(data).session() as s:
        verdicts = {
            noun: (passed, gate, value)
            for noun, passed, gate, value in s.execute(
                sa.select(schema.VideoObject.noun, schema.Gate.passed, schema.Gate.gate, schema.Gate.value).join(
                    schema.VideoObject, schema.VideoObject.id == schema.Gate.object_id
                )
            )
        }
    assert {n: v[:2] for n, v in verdicts.items()} == {
        "ball": (True, None),
        "drift": (False, "max_area_share"),
        "flicker": (False, "min_mean_iou"),
        "sparse": (False, "max_empty_share"),
    }
    assert verdicts["drift"][2] > 0.6 and verdicts["flicker"][2] < 0.1 and verdicts["sparse"][2] == 0.75
    first = _newest_run(data)
    on = _requests_by_role(data, first)
    # one admitted object: two Annotator calls, two Reviewer calls (paper mode), at most one Refiner call
    assert on["annotator.dynamic"] == on["annotator.static"] == 1, on
    assert on["reviewer.region"] == on["reviewer.judge"] == 1, on
    assert _described(data) == {"ball"}
    assert "gated (mask quality: no further call)" in r.output and "by max_area_share" in r.output
    # engine status, the dataset card and the export's manifest say so too
    status = CliRunner().invoke(app, ["status", "--data-dir", str(data)], env={"COLUMNS": "200"})
    assert "Gated by mask quality" in status.output and "max_empty_share" in status.output, status.output
    out = tmp_path / "export"
    export = CliRunner().invoke(app, ["export", "--data-dir", str(data), "--out", str(out)], env={"COLUMNS": "200"})
    assert export.exit_code == 0, export.output
    assert "- min_mean_iou: 1" in (out / "README.md").read_text()
    assert json.loads((out / "manifest.json").read_text())["gates"] == [GatesConfig().thresholds()]

    # a looser area gate: the drifting masklet is admitted from what is stored; no segment unit runs again
    r = run_engine(endpoint, data, "--source", str(labelled_source), *LABELLED, "--set", "gates.max_area_share=1.0")
    assert r.exit_code == 0, r.output
    second = _newest_run(data)
    with open_store(data).session() as s:
        segmented = s.scalar(
            sa.select(sa.func.count())
            .select_from(schema.Completion)
            .where(schema.Completion.run_id == second, schema.Completion.stage == "segment")
        )
        regated = dict(
            s.execute(
                sa.select(schema.VideoObject.noun, schema.Gate.passed)
                .join(schema.VideoObject, schema.VideoObject.id == schema.Gate.object_id)
                .where(schema.Gate.run_id == second)
            ).all()
        )
    assert segmented == 0
    assert regated == {"ball": True, "drift": True, "flicker": False, "sparse": False}
    again = _requests_by_role(data, second)
    assert again["annotator.dynamic"] == again["annotator.static"] == 1, again  # the drift only: ball's are cached
    assert _described(data) == {"ball", "drift"}

    # gates off: every object costs its calls
    off_data = tmp_path / "off"
    r = run_engine(endpoint, off_data, "--source", str(labelled_source), *LABELLED, "--set", "gates.enabled=false")
    assert r.exit_code == 0, r.output
    off = _requests_by_role(off_data, _newest_run(off_data))
    assert off["annotator.dynamic"] == off["annotator.static"] == 4, off
    assert off["reviewer.judge"] == 4 and off.get("reviewer.region", 0) >= 1, off
    with open_store(off_data).session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(schema.Gate)) == 0
    print(f"\nrequests with gates on {dict(sorted(on.items()))}\nrequests with gates off {dict(sorted(off.items()))}")
