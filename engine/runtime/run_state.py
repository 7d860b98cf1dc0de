"""How a run ends: the state recorded on its row, the sentence that says so, and the process's exit code.

| state                    | exit code | when                                                                   |
|--------------------------|-----------|------------------------------------------------------------------------|
| finished                 | 0         | every unit done; or nothing was left to do (the run says so)           |
| finished_with_failures   | 1         | units failed in this run and are quarantined (`engine status` lists them) |
| (preflight)              | 2         | a setting, key, endpoint or backend is wrong: nothing was run           |
| aborted                  | 3         | a run-level error stopped it (endpoint down, key revoked, store refused writes, an actor failed) |
| finished_empty           | 4         | there was work to do and the run produced nothing                      |
| interrupted              | 130       | stopped by Ctrl-C or a signal; a run killed outright is found interrupted by the next `engine run` or `engine status` (no heartbeat for HEARTBEAT_STALE_S) |

A rerun goes on from where any of these stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa

from engine.store import schema
from engine.store.db import Store

RUNNING, FINISHED, FINISHED_WITH_FAILURES, FINISHED_EMPTY = "running", "finished", "finished_with_failures", "finished_empty"
ABORTED, INTERRUPTED = "aborted", "interrupted"
EXIT_CODES = {FINISHED: 0, FINISHED_WITH_FAILURES: 1, ABORTED: 3, FINISHED_EMPTY: 4, INTERRUPTED: 130}
PREFLIGHT_EXIT = 2
HEARTBEAT_S = 10.0  # a running run writes its heartbeat this often
HEARTBEAT_STALE_S = 120.0  # a "running" run silent this long was killed


@dataclass(frozen=True)
class Outcome:
    state: str
    exit_code: int
    sentence: str


def outcome(summary: dict, reason: str | None = None, interrupted: bool = False) -> Outcome:
    """The state of a run from its summary (run_summary's) and how it stopped."""
    if interrupted:
        return Outcome(INTERRUPTED, EXIT_CODES[INTERRUPTED], "interrupted: a rerun goes on from where it stopped")
    if reason is not None:
        return Outcome(ABORTED, EXIT_CODES[ABORTED], f"aborted: {reason}")
    failed = summary.get("quarantined", 0)
    if failed:
        return Outcome(FINISHED_WITH_FAILURES, EXIT_CODES[FINISHED_WITH_FAILURES],
                       f"finished with failures: {failed:,} unit(s) quarantined in this run (engine status lists "
                       "them; --retry-failed tries them again)")
    made = summary.get("new_results", 0)
    worked = summary.get("work_requests", 0) + summary.get("units_run", 0)
    if not worked and not made:
        return Outcome(FINISHED, EXIT_CODES[FINISHED], "finished: nothing was left to do")
    if not made:
        return Outcome(FINISHED_EMPTY, EXIT_CODES[FINISHED_EMPTY],
                       "finished, but produced nothing: there was work to do and no result came of it")
    return Outcome(FINISHED, EXIT_CODES[FINISHED], "finished")


def mark_interrupted(store: Store, now=None) -> list[str]:
    """Runs still 'running' whose heartbeat stopped: they were killed. Returns their ids."""
    now = now or schema.utcnow()
    stale = now - timedelta(seconds=HEARTBEAT_STALE_S)
    r = schema.Run
    with store.session() as s:
        # SQLite returns naive datetimes: compare in Python, over the few runs still marked running
        rows = s.execute(sa.select(r.id, r.heartbeat_at, r.started_at).where(r.status == RUNNING)).all()
        dead = [rid for rid, beat, started in rows if _aware(beat or started) < stale]
        if dead:
            s.execute(sa.update(r).where(r.id.in_(dead)).values(
                status=INTERRUPTED, reason="no heartbeat: the process was killed or the machine stopped"))
    return dead


def _aware(t):
    from datetime import timezone

    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)
