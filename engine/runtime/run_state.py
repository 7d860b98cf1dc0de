"""How a run ends: the state recorded on its row, the sentence that says so, and the process's exit code.

| state                    | exit code | when                                                                   |
|--------------------------|-----------|------------------------------------------------------------------------|
| finished                 | 0         | every unit done; or nothing was left to do (the run says so)           |
| finished_with_failures   | 1         | units failed in this run and are quarantined (`engine status` lists them) |
| (preflight)              | 2         | a setting, key, endpoint or backend is wrong: nothing was run           |
| aborted                  | 3         | a run-level error stopped it (endpoint down, key revoked, store      |
|                          |           | refused writes, an actor failed)                                       |
| finished_empty           | 4         | there was work to do and the run produced nothing                      |
| interrupted              | 130       | stopped by Ctrl-C or a signal; a run killed outright is found          |
|                          |           | interrupted by the next `engine run` or `engine status` (no heartbeat  |
|                          |           | for HEARTBEAT_STALE_S)                                                 |

A rerun goes on from where any of these stopped. Inputs that ingest skips (unreadable, empty, not a video: the
"Skipped inputs" table) are not failed units: they change no state or exit code, and a finished run's sentence
counts them ("finished: nothing was left to do (3 inputs skipped: see Skipped inputs)").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.store import schema
from engine.store.db import Store
from engine.store.runs import RUNNING as RUNNING  # re-exported: every state of a run is named here
from engine.store.runs import close_ended_runs

FINISHED, FINISHED_WITH_FAILURES, FINISHED_EMPTY = "finished", "finished_with_failures", "finished_empty"
ABORTED, INTERRUPTED = "aborted", "interrupted"
EXIT_CODES = {FINISHED: 0, FINISHED_WITH_FAILURES: 1, ABORTED: 3, FINISHED_EMPTY: 4, INTERRUPTED: 130}
PREFLIGHT_EXIT = 2
HEARTBEAT_S = 10.0  # a running run writes its heartbeat this often
HEARTBEAT_STALE_S = 120.0  # a "running" run silent this long was killed
RUN_END_MARK = "run ended: "  # the run log's last line: how the run ended, for when its row could not be closed


@dataclass(frozen=True)
class Outcome:
    state: str
    exit_code: int
    sentence: str


def outcome(summary: dict[str, Any], reason: str | None = None, interrupted: bool = False) -> Outcome:
    """The state of a run from its summary (run_summary's) and how it stopped."""
    if interrupted:
        return Outcome(INTERRUPTED, EXIT_CODES[INTERRUPTED], "interrupted: a rerun goes on from where it stopped")
    if reason is not None:
        return Outcome(ABORTED, EXIT_CODES[ABORTED], f"aborted: {reason}")
    # inputs ingest skipped (unreadable, not a video) are listed and counted, never failures: they change no exit code
    skipped = summary.get("skipped_inputs", 0)
    also = f" ({skipped:,} input{'s' if skipped != 1 else ''} skipped: see Skipped inputs)" if skipped else ""
    failed = summary.get("quarantined", 0)
    if failed:
        return Outcome(
            FINISHED_WITH_FAILURES,
            EXIT_CODES[FINISHED_WITH_FAILURES],
            f"finished with failures: {failed:,} unit(s) quarantined in this run (engine status lists "
            f"them; --retry-failed tries them again){also}",
        )
    made = summary.get("new_results", 0)
    worked = summary.get("work_requests", 0) + summary.get("units_run", 0)
    if not worked and not made:
        return Outcome(FINISHED, EXIT_CODES[FINISHED], f"finished: nothing was left to do{also}")
    if not made:
        return Outcome(
            FINISHED_EMPTY,
            EXIT_CODES[FINISHED_EMPTY],
            f"finished, but produced nothing: there was work to do and no result came of it{also}",
        )
    return Outcome(FINISHED, EXIT_CODES[FINISHED], f"finished{also}")


def mark_interrupted(store: Store, logs: Path | None = None, now: datetime | None = None) -> list[tuple[str, str]]:
    """Runs still 'running' that have ended: those whose run log says how (a store that refused to close the
    row, e.g. a full disk), and those whose heartbeat stopped (killed). Returns (id, state closed as) of each."""
    stale = (now or schema.utcnow()) - timedelta(seconds=HEARTBEAT_STALE_S)

    def ended(run_id: str, last_beat: datetime) -> tuple[str, str] | None:
        said = _logged_end(logs / f"run-{run_id}.log") if logs is not None else None
        if said is not None:
            return _state_of(said), said
        if aware(last_beat) < stale:
            return INTERRUPTED, "no heartbeat: the process was killed or the machine stopped"
        return None

    return close_ended_runs(store, ended)


def _state_of(sentence: str) -> str:
    """The state outcome() gave the sentence it wrote."""
    for start, state in (
        ("aborted", ABORTED),
        ("interrupted", INTERRUPTED),
        ("finished with failures", FINISHED_WITH_FAILURES),
        ("finished, but", FINISHED_EMPTY),
    ):
        if sentence.startswith(start):
            return state
    return FINISHED


def _logged_end(path: Path) -> str | None:
    """The sentence a run log ends with, if the run wrote one (the file's last few kB are enough)."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - 4096))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    lines = [ln for ln in tail.splitlines() if RUN_END_MARK in ln]
    return lines[-1].split(RUN_END_MARK, 1)[1].strip() if lines else None


def aware(t: datetime) -> datetime:
    """A stored time as UTC (SQLite returns naive datetimes)."""
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
