"""The dry run plans what a real run would do now: nothing for current results, nothing for dataset videos that
will be dropped, objects counted from a dataset's annotations; and an empty source is an error."""

from __future__ import annotations

import dataset_layouts as layouts
import sqlalchemy as sa
from engine_runs import RUN_FLAGS, open_store, run_engine

from engine.api import Engine, RunObserver
from engine.sources.datasets import dataset_of
from engine.sources.ingest import scan
from engine.store import schema


def _dry_run_summary(data):
    """The newest dry run's summary, as its run row recorded it."""
    with open_store(data).session() as s:
        run = s.scalars(
            sa.select(schema.Run).where(schema.Run.command == "run --dry-run").order_by(schema.Run.started_at.desc())
        ).first()
        return dict(run.summary)


def test_a_finished_store_plans_no_call(endpoint, source, tmp_path):
    data = tmp_path / "data"
    first = run_engine(endpoint, data, "--source", str(source), "--pipelines", "detailed,qa", "--dry-run")
    assert first.exit_code == 0, first.output
    assert _dry_run_summary(data)["planned_calls"] > 0
    r = run_engine(endpoint, data, "--source", str(source), "--pipelines", "detailed,qa")
    assert r.exit_code == 0, r.output
    sent = len(endpoint.work_requests())
    again = run_engine(endpoint, data, "--source", str(source), "--pipelines", "detailed,qa", "--dry-run")
    assert again.exit_code == 0, again.output
    plan = _dry_run_summary(data)
    assert plan["planned_calls"] == 0 and plan["planned_cost_usd"] == 0, plan
    assert plan["planned_videos_with_work"] == 0 and plan["planned_objects_estimated"] is False
    rerun = run_engine(endpoint, data, "--source", str(source), "--pipelines", "detailed,qa")
    assert rerun.exit_code == 0 and len(endpoint.work_requests()) == sent  # the real rerun sends none either
    assert "nothing was left to do" in " ".join(rerun.output.split())


def test_dataset_videos_without_masks_plan_nothing(endpoint, tmp_path):
    root = tmp_path / "ytvos"
    layouts.make_ytvos(root, videos=("vid1",))
    data = tmp_path / "data"
    r = run_engine(endpoint, data, "--source", str(root / "valid"), "--pipelines", "qa", "--dry-run")
    assert r.exit_code == 0, r.output
    plan = _dry_run_summary(data)
    assert plan["planned_calls"] == 0 and plan["planned_objects"] == 0 and plan["planned_videos_with_work"] == 0


def test_a_dataset_split_plans_its_annotated_objects(endpoint, tmp_path):
    root = tmp_path / "a2d"
    layouts.make_a2d(root, videos=("a2dclip1", "a2dclip2", "a2dclip3"))
    annotated = sum(
        len(found[0].objects(found[1], [])) for c in scan(root)[0] if (found := dataset_of(str(c.path))) is not None
    )
    assert annotated >= 6  # the annotation file's objects, whatever the default estimate per video
    data = tmp_path / "data"
    r = run_engine(endpoint, data, "--source", str(root), "--pipelines", "qa", "--dry-run")
    assert r.exit_code == 0, r.output
    plan = _dry_run_summary(data)
    assert plan["planned_objects"] == annotated and plan["planned_objects_estimated"] is False, plan
    assert plan["planned_calls"] > 0  # each annotated object is described and asked about


def test_an_empty_source_is_an_error_dry_run_or_not(endpoint, tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("not a video")
    for extra in ((), ("--dry-run",)):
        r = run_engine(endpoint, tmp_path / "data", "--source", str(empty), *extra)
        assert r.exit_code == 2, r.output
        assert f"no videos found under {empty}" in " ".join(r.output.split())
    assert not (tmp_path / "data" / "engine.sqlite").exists()  # nothing recorded


def test_progress_totals_are_known_before_the_first_unit_and_every_bar_ends_full(
    endpoint, source, tmp_path, monkeypatch
):
    class Progress(RunObserver):
        def __init__(self):
            self.seen: dict[str, list[tuple[int, int]]] = {}

        def stage_progress(self, stage, done, total):
            self.seen.setdefault(stage, []).append((done, total))

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    overrides = dict(item.split("=", 1) for item in RUN_FLAGS[1::2])
    overrides = {k: (float(v) if v[0].isdigit() else v) for k, v in overrides.items()}
    seen = Progress()
    eng = Engine.from_settings(
        data_dir=tmp_path / "data",
        overrides=overrides,
        observer=seen,
        environ={"OPENAI_BASE_URL": endpoint.base_url, "OPENAI_API_KEY": "sk-test"},
    )
    result = eng.run(source, ["detailed"])
    assert result.ok, result.sentence
    assert {"caption", "analyze", "segment", "annotate", "review"} <= set(seen.seen)
    for stage, reports in seen.seen.items():
        totals = {total for _, total in reports}
        assert len(totals) == 1, (stage, reports)  # one denominator from the first report on: never "0/1 ... 2/2"
        assert reports[-1][0] == reports[-1][1]  # every bar ends full
        assert reports[0][0] == 0  # announced before any unit of it ended
