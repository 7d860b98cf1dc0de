"""mark_interrupted: runs left running are closed as their run log says, else once their heartbeat stopped."""

from __future__ import annotations

from datetime import timedelta

from engine.runtime.run_state import (
    ABORTED,
    HEARTBEAT_STALE_S,
    INTERRUPTED,
    RUN_END_MARK,
    RUNNING,
    mark_interrupted,
)
from engine.store import schema
from engine.store.runs import open_run, run_row


def test_a_run_is_closed_as_its_log_says_else_when_its_heartbeat_stopped(sqlite_store, tmp_path):
    logged, silent, alive = "l" * 32, "s" * 32, "a" * 32
    for rid in (logged, silent, alive):
        open_run(sqlite_store, rid, "run", "0", {}, "src")  # each beats once, now
    later = schema.utcnow() + timedelta(seconds=HEARTBEAT_STALE_S + 1)
    with sqlite_store.session() as s:
        s.get(schema.Run, alive).heartbeat_at = later  # still beating then
    logs = tmp_path / "logs"
    logs.mkdir()
    said = "aborted: the store refused writes: database or disk is full"
    (logs / f"run-{logged}.log").write_text(f"started\n12:00:00 {RUN_END_MARK}{said}\n")

    ended = mark_interrupted(sqlite_store, logs, now=later)

    assert sorted(ended) == sorted([(logged, ABORTED), (silent, INTERRUPTED)])
    rows = {rid: run_row(sqlite_store, rid) for rid in (logged, silent, alive)}
    assert (rows[logged].status, rows[logged].reason) == (ABORTED, said)
    assert rows[silent].status == INTERRUPTED and (rows[silent].reason or "").startswith("no heartbeat")
    assert rows[alive].status == RUNNING
    assert mark_interrupted(sqlite_store, logs, now=later) == []  # closed runs are not looked at again
