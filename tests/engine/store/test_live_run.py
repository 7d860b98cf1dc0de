"""The live snapshot a run's heartbeat writes, read back as `engine status --follow` reads it, on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.store import schema
from engine.store.runs import RUNNING, close_run, live_run, open_run


def _failure(run_id: str, unit: str, code: str) -> schema.Failure:
    return schema.Failure(
        id=f"f{unit}".ljust(32, "0"),
        unit_kind="video",
        unit_id=unit,
        video_id=unit,
        stage="annotate",
        lineage="l",
        error_code=code,
        message="m",
        attempts=3,
        quarantined=True,
        run_id=run_id,
    )


def test_the_running_run_its_snapshot_and_its_failures_by_reason(store):
    open_run(store, "a" * 32, "run --pipelines detailed", "0", {}, "/src")
    open_run(store, "b" * 32, "run --dry-run", "0", {}, "/src")
    with store.session() as s:  # the dry run is newer, but a run in flight is the one followed
        s.get(schema.Run, "b" * 32).status = "finished"
        s.get(schema.Run, "b" * 32).started_at = schema.utcnow() + timedelta(seconds=5)
        s.get(schema.Run, "a" * 32).live = {"stages": {"caption": [1, 4]}, "units_per_minute": 12.0}
        s.add_all([_failure("a" * 32, "u1", "bad_json"), _failure("a" * 32, "u2", "bad_json")])
        s.add(_failure("a" * 32, "u3", "timeout"))
    got = live_run(store)
    assert got is not None and got.id == "a" * 32 and got.status == RUNNING
    assert got.live["stages"] == {"caption": [1, 4]} and got.failures == {"bad_json": 2, "timeout": 1}
    close_run(store, "a" * 32, "finished_with_failures", "finished with failures: 3 unit(s) quarantined", {})
    assert live_run(store).id == "b" * 32  # nothing running: the newest
    ended = live_run(store, "aaa")
    assert ended.status == "finished_with_failures" and ended.reason.startswith("finished with failures")
    assert live_run(store, "c") is None
    open_run(store, "a" * 31 + "c", "run --pipelines qa", "0", {}, "/src")
    with pytest.raises(LookupError, match="several runs"):
        live_run(store, "aaa")
