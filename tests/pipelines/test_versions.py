"""Versions drive reruns: a new prompt version reruns its stage and those after it, nothing before it."""

from __future__ import annotations

import json
import shutil

import sqlalchemy as sa
from engine_runs import open_store, run_engine
from typer.testing import CliRunner

import agents.prompt
from engine.cli import app
from engine.store import schema

SEG = ("--set", "segmentor.backend=fake_segmentor:HashSegmentor")  # the runs' segmentor: part of every lineage


def _export(data, out, *flags) -> list[dict]:
    r = CliRunner().invoke(
        app,
        ["export", "--out", str(out), "--data-dir", str(data), "--types", "detailed", *SEG, *flags],
        env={"COLUMNS": "160"},
    )
    assert r.exit_code == 0, r.output
    return json.loads((out / "detailed_train.json").read_text())


def _requests_by_role(store, run_id) -> dict[str, int]:
    r = schema.Request
    with store.session() as s:
        return dict(
            s.execute(
                sa.select(r.role, sa.func.count()).where(r.run_id == run_id, r.kind != "probe").group_by(r.role)
            ).all()
        )


def _last_run(store) -> str:
    with store.session() as s:
        return s.query(schema.Run).order_by(schema.Run.started_at.desc()).first().id


def test_bumping_the_detailed_prompt_reruns_only_refine_and_the_samples(endpoint, source, tmp_path, monkeypatch):
    data = tmp_path / "d"
    args = ("--source", str(source), "--pipelines", "detailed")
    assert run_engine(endpoint, data, *args).exit_code == 0
    store = open_store(data)
    first = _requests_by_role(store, _last_run(store))
    with store.session() as s:
        kept = s.query(schema.Review).filter_by(verdict=True).count()
        # objects whose refine requests are identical share one request (the stand-in model echoes its prompt)
        texts = {
            (o.noun, d.kind, d.text)
            for o, d in s.query(schema.VideoObject, schema.Description)
            .join(schema.Description, schema.Description.object_id == schema.VideoObject.id)
            .where(schema.Description.kind == "detailed")
        }
    distinct = len(texts)
    assert first["refiner.detailed"] == distinct
    old = _export(data, tmp_path / "old")
    assert kept > 0 and len(old) == kept

    # a new version of the detailed-description prompt, its wording changed
    prompts = tmp_path / "prompts"
    shutil.copytree(agents.prompt.PROMPTS, prompts)
    text = (prompts / "refiner_detailed.txt").read_text()
    (prompts / "refiner_detailed.txt").write_text(
        text.replace("version: 1", "version: 2").replace("Object: {noun}", "Thing: {noun}")
    )
    monkeypatch.setattr(agents.prompt, "PROMPTS", prompts)
    agents.prompt.load.cache_clear()

    status = CliRunner().invoke(app, ["status", "--data-dir", str(data), *SEG], env={"COLUMNS": "200"})
    cells = {
        x.split("│")[1].strip(): [c.strip() for c in x.split("│")[2:4]]
        for x in status.output.splitlines()
        if x.count("│") == 4
    }
    assert cells["descriptions:detailed"] == ["0", str(kept)]  # none current, all outdated
    assert cells["reviews"][1] == "0" and cells["descriptions:appearance"][1] == "0"  # upstream: all current

    before = len(endpoint.work_requests())
    r = run_engine(endpoint, data, *args)
    assert r.exit_code == 0, r.output
    roles = _requests_by_role(store, _last_run(store))
    # no Analyzer, Annotator or Reviewer request; one per kept object to write its description
    assert roles == {"refiner.detailed": distinct}, roles
    assert len(endpoint.work_requests()) - before == distinct

    new = _export(data, tmp_path / "new")
    assert len(new) == kept
    assert all("Thing:" in rec["conversations"][1]["value"] for rec in new)  # the new descriptions replaced the old
    assert not any("Thing:" in rec["conversations"][1]["value"] for rec in old)
    assert {rec["id"] for rec in new}.isdisjoint(rec["id"] for rec in old)
    with store.session() as s:  # the old results stay in the store, addressable
        assert s.query(schema.Description).filter_by(kind="detailed").count() == 2 * kept
        versions = {d.prompt_version for d in s.query(schema.Description).filter_by(kind="detailed")}
    assert versions == {"refiner_detailed@1", "refiner_detailed@2"}
    assert len(_export(data, tmp_path / "all", "--all-versions")) == 2 * kept
