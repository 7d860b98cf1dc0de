"""What `engine run` and `engine status` print, in an 80-column terminal: every table fits without a cut cell, each
agent role shows in full; and the run summary's words for dataset objects and for what was left out."""

from datetime import datetime
from types import SimpleNamespace

import pytest
from rich.console import Console

from engine.api import StoreStatus
from engine.cli import views
from engine.config import Config
from engine.registry import build_pipelines
from engine.runtime.summary import LEFT_OUT, left_out_text, run_summary
from engine.store import schema
from engine.store.current import Current
from engine.store.ids import stable_id
from engine.store.requests import RoleTotals
from engine.store.runs import FailureRow, RunRow

ROLES = [
    "analyzer",
    "annotator.dynamic",
    "annotator.static",
    "captioner",
    "probe",
    "refiner.detailed",
    "refiner.qa",
    "reviewer.direct",
    "reviewer.judge",
    "reviewer.region",
]
URL = "postgresql+psycopg://engine:***@db.internal.example.org:5432/videorefer_engine_production"


@pytest.fixture
def screen(monkeypatch):
    """The consoles views.py prints to, as an 80-column terminal that records what it shows."""
    con = Console(width=80, record=True, force_terminal=False)
    monkeypatch.setattr(views, "console", con)
    monkeypatch.setattr(views, "err", con)
    return con


def _lines(con: Console) -> list[str]:
    return con.export_text(clear=False).splitlines()


def _status() -> StoreStatus:
    big = [
        RoleTotals(r, 1_234_567, 1_234_000, 567, 0, 12, 9_876_543_210, 123_456_789, 12_345.6789, 1.2) for r in ROLES
    ]
    run = RunRow(
        "3f2a9c0d1e2b4a5c",
        "run --source videos/",
        "failed",
        datetime(2024, 1, 2, 3, 4, 5),
        {
            "videos": 12,
            "cache_hits": {"annotator.static": 12_345},
            "plan": {r: {"calls": 120_000, "tokens_in": 9.9e7, "cost_usd": 1200.1} for r in ROLES},
        },
        "the endpoint stayed down for 60 s",
    )
    return StoreStatus(
        store_url=URL,
        tables={"videos": 12_345, "objects": 99_999},
        stages=[],
        runs=[run],
        requests=big,
        last_run=run,
        last_run_requests=big,
        failures=[FailureRow("u" * 40, "annotate", "unusable_output", 3, True, "a long message " * 10)],
        failure_count=1,
    )


def test_status_fits_80_columns_with_every_role_in_full_and_the_store_url_on_its_own_line(screen):
    views.print_status(_status())
    lines = _lines(screen)
    assert f"store: {URL}" in lines  # one line, never wrapped by rich (the terminal wraps it, copying keeps it whole)
    too_wide = [line for line in lines if len(line) > 80 and line != f"store: {URL}"]
    assert not too_wide, "\n".join(too_wide)
    text = "\n".join(lines)
    assert "…" not in text  # no cell cut
    for role in ROLES:  # in full, in the first column of every part of every table that lists roles
        assert any(line.startswith(f"│ {role} ") for line in lines), role
    # the request totals split in parts that each fit, all numbers whole
    assert "9,876,543,210" in text and "12,345.6789" in text and "98,765,432,100" in text
    assert "Requests by agent role, all runs (continued)" in text
    assert "│ 3f2a9c0d1e2b │" in text  # a run's id whole, as --run takes it


def test_a_table_that_fits_stays_one_table(monkeypatch):
    wide = Console(width=120, record=True, force_terminal=False)  # the width of a pipe or a CI log
    monkeypatch.setattr(views, "console", wide)
    small = [RoleTotals(r, 2, 1, 1, 0, 1, 100, 10, 0.25, 1.0) for r in ROLES]
    views._print_role_table("Requests by agent role, this run", small, {})
    text = wide.export_text()
    assert "(continued)" not in text and all(len(line) <= 120 for line in text.splitlines())
    assert "│ annotator.dynamic │        2 │  1 │      1 │          0 │       100 │" in text


def test_plan_shows_each_agents_endpoint_url_and_fits_80_columns(screen):
    cfg = Config()
    roles = [
        SimpleNamespace(
            role=r,
            endpoint=r.split(".")[0] if r.split(".")[0] in ("analyzer", "annotator", "captioner") else "annotator",
            url=f"http://gpu-node-{i}.cluster.internal:8000/v1/with/a/long/path",
            calls=1234.0,
            tokens_in=9_876_543.0,
            tokens_out=123_456.0,
            cost_usd=12.3456,
            measured=i % 2 == 0,
        )
        for i, r in enumerate(ROLES)
        if r != "probe"
    ]
    plan = SimpleNamespace(
        roles=roles,
        calls=sum(a.calls for a in roles),
        cost_usd=99.0,
        mask_frames=1234,
        videos=3,
        frames=99,
        objects=6.0,
        videos_with_work=3,
        objects_estimated=True,
        dropped=0,
    )
    views._print_plan(plan, cfg, build_pipelines(["detailed"]), ["detailed"])
    lines = _lines(screen)
    assert all(len(line) <= 80 for line in lines), "\n".join(line for line in lines if len(line) > 80)
    flat = "".join(line.replace("│", "").replace(" ", "") for line in lines)  # a URL may fold over lines
    for r in roles:
        assert r.url in flat and any(line.startswith(f"│ {r.role} ") for line in lines)
    text = screen.export_text()
    assert "endpoint" in text and "segmentor" in text and "object-frames on GPU" in " ".join(text.split())


def _summary(**over) -> dict:
    s = {
        "videos": 2,
        "objects": 5,
        "grounded": 5,
        "reviewed": 0,
        "kept": 0,
        "kept_from_dataset": 5,
        "samples": {"qa": 3},
        "requests": 4,
        "unanswered": 0,
        "tokens_unknown": 0,
        "tokens_in": 10,
        "tokens_out": 5,
        "cost_usd": 0.0,
        "roles": {},
        "work_requests": 4,
        "failures": 0,
        "quarantined": 0,
        "quarantined_in_store": 0,
        "skipped_inputs": 0,
        "new_results": 3,
        "units_run": 3,
        "dropped": {"qa_pairs:type_not_asked": 3, "dataset_videos:no_masks": 1, "my_stage:too_blurry": 2},
    }
    return {**s, **over}


def test_run_summary_shows_dataset_objects_as_kept_from_the_dataset_and_left_out_as_sentences(screen):
    views._print_run_summary(_summary())
    text = " ".join(screen.export_text().split())
    assert "kept (from the dataset, not reviewed) │ 5" in text
    assert "reviewer keep rate" not in text and "0 (-)" not in text  # no keep rate of a review that never ran
    assert "left out: QA pairs of a type not asked for (or more than asked) │ 3" in text
    assert "left out: dataset videos without masks in their split │ 1" in text
    assert "left out: my stage: too blurry │ 2" in text  # a plugin's own reason still reads as words
    assert "type not asked 3" not in text
    # reviewed objects beside dataset ones: both rows
    screen.export_text(clear=True)
    views._print_run_summary(_summary(reviewed=4, kept=3, kept_from_dataset=2))
    text = " ".join(screen.export_text().split())
    assert "kept (reviewer keep rate) │ 3 (75%)" in text and "kept (from the dataset, not reviewed) │ 2" in text


def test_every_left_out_reason_the_stages_save_has_a_sentence():
    import re
    from pathlib import Path

    stages = Path(__file__).parents[2] / "pipelines" / "stages.py"
    src = stages.read_text()
    saved = set(re.findall(r'dropped=\{"([a-z_]+:[a-z_]+)"', src)) | set(
        re.findall(r'\{"([a-z_]+:[a-z_]+)": no_mask', src)
    )
    refiner = (Path(__file__).parents[2] / "agents" / "refiner.py").read_text()
    saved |= {f"qa_pairs:{k}" for k in re.findall(r'dropped\["([a-z_]+)"\]', refiner)}
    assert saved and saved <= set(LEFT_OUT), saved - set(LEFT_OUT)
    assert all(left_out_text(k)[0].isalpha() and "_" not in left_out_text(k) for k in saved)


def test_run_summary_counts_dataset_objects_without_a_review_as_kept_from_the_dataset(sqlite_store):
    store = sqlite_store
    vid = stable_id("video", "v")
    current = Current(
        objects=frozenset({"dataset@1", "analyzer@1"}), kept_as_is=frozenset({"dataset@1"}), reviews=frozenset({"r@1"})
    )
    with store.session() as s:
        s.add(
            schema.Video(
                id=vid,
                path="v.mp4",
                source_root="/",
                kind="file",
                num_frames=4,
                fps=1.0,
                width=8,
                height=8,
                size_bytes=1,
            )
        )
        s.flush()
        for i, version in enumerate(["dataset@1", "dataset@1", "dataset@1", "analyzer@1"]):
            s.add(schema.VideoObject(id=f"o{i}", video_id=vid, noun="cup", instance=i, stage_version=version))
        s.flush()
        # one dataset object reviewed (dropped), another with an outdated review only: the latter counts as kept
        for oid, lineage in (("o0", "r@1"), ("o1", "r@0")):
            s.add(
                schema.Review(
                    id=f"rev-{oid}",
                    object_id=oid,
                    mode="paper",
                    verdict=False,
                    confidence=0.9,
                    rationale="r",
                    model="m",
                    prompt_version="p",
                    lineage=lineage,
                )
            )
    summary = run_summary(store, "run-1", [vid], current)
    assert summary["kept_from_dataset"] == 2 and summary["reviewed"] == 1 and summary["kept"] == 0
    assert run_summary(store, "run-1", [vid], Current(objects=frozenset({"analyzer@1"})))["kept_from_dataset"] == 0
