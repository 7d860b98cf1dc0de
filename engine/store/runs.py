"""The runs table: a run's row from open to close, and what `engine status` lists of runs and failures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from engine.store import schema
from engine.store.db import Store

RUNNING = "running"  # a run's status from open_run until its row is closed


@dataclass(frozen=True)
class RunRow:
    """A run as `engine status` shows it."""

    id: str
    command: str
    status: str
    started_at: datetime
    summary: dict[str, Any]
    reason: str | None


@dataclass(frozen=True)
class FailureRow:
    unit_id: str
    stage: str
    error_code: str
    attempts: int
    quarantined: bool
    message: str


def open_run(
    store: Store,
    run_id: str,
    command: str,
    engine_version: str,
    config: dict[str, Any],
    source: str,
    requests: Sequence[dict[str, Any]] = (),
    provenance: dict[str, Any] | None = None,
) -> None:
    """The run's row, with the requests made before it (preflight's probes count in the run they served), and
    what made its results beside its settings (engine/store/views.py)."""
    with store.session() as s:
        s.add(
            schema.Run(
                id=run_id,
                command=command,
                engine_version=engine_version,
                config=config,
                provenance=provenance,
                source=source,
                heartbeat_at=schema.utcnow(),
            )
        )
        s.flush()
        if requests:
            store.insert_many(s, schema.Request, [{**row, "run_id": run_id} for row in requests])


def save_summary(store: Store, run_id: str, summary: dict[str, Any]) -> None:
    """What a running run knows so far (its plan), before the summary close_run writes."""
    with store.session() as s:
        s.execute(sa.update(schema.Run).where(schema.Run.id == run_id).values(summary=summary))


def close_run(store: Store, run_id: str, state: str, reason: str, summary: dict[str, Any]) -> None:
    """Record how a run ended: its state, the sentence that says why, its summary and when."""
    with store.session() as s:
        s.execute(
            sa.update(schema.Run)
            .where(schema.Run.id == run_id)
            .values(status=state, finished_at=schema.utcnow(), summary=summary, reason=reason)
        )


def _run_row(r: schema.Run) -> RunRow:
    return RunRow(r.id, r.command, r.status, r.started_at, r.summary or {}, r.reason)


def run_row(store: Store, run_id: str) -> RunRow | None:
    with store.session() as s:
        r = s.get(schema.Run, run_id)
        return _run_row(r) if r is not None else None


def recent_runs(store: Store, limit: int = 5) -> list[RunRow]:
    """The newest runs first."""
    with store.session() as s:
        runs = s.scalars(sa.select(schema.Run).order_by(schema.Run.started_at.desc()).limit(limit)).all()
        return [_run_row(r) for r in runs]


def recent_failures(store: Store, limit: int = 50) -> tuple[list[FailureRow], int]:
    """The newest failures first, and how many there are in all."""
    f = schema.Failure
    with store.session() as s:
        rows = s.scalars(sa.select(f).order_by(f.updated_at.desc()).limit(limit)).all()
        total = s.scalar(sa.select(sa.func.count()).select_from(f)) or 0
        return [
            FailureRow(x.unit_id, x.stage, x.error_code, x.attempts, bool(x.quarantined), x.message) for x in rows
        ], total


def close_ended_runs(store: Store, ended: Callable[[str, datetime], tuple[str, str] | None]) -> list[tuple[str, str]]:
    """Close the runs still marked running whose process has ended without closing them (killed, or a store that
    refused the last write). `ended(run id, its last heartbeat, else its start)` says (state, reason) for a run
    that has ended, None for one still alive. One transaction; returns (id, state) of each run closed."""
    r = schema.Run
    ended_runs: list[tuple[str, str]] = []
    with store.session() as s:
        # SQLite returns naive datetimes: `ended` compares them, over the few runs still marked running
        running = s.execute(sa.select(r.id, r.heartbeat_at, r.started_at).where(r.status == RUNNING)).all()
        for rid, beat, started in running:
            verdict = ended(rid, beat or started)
            if verdict is None:
                continue
            state, reason = verdict
            s.execute(sa.update(r).where(r.id == rid).values(status=state, reason=reason))
            ended_runs.append((rid, state))
    return ended_runs


@dataclass(frozen=True)
class LiveRun:
    """A run as `engine status --follow` draws it: its row, the live snapshot its heartbeat writes, its failures."""

    id: str
    command: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    reason: str | None  # how it ended, once it has
    live: dict[str, Any]  # {"at", "stages": {stage: [done, total]}, "units_per_minute"}; {} before the first beat
    failures: dict[str, int]  # this run's failed units by error code


def live_run(store: Store, prefix: str | None = None) -> LiveRun | None:
    """The run whose id starts with `prefix`, else the newest one still running, else the newest; None if none.
    Raises LookupError when `prefix` matches several runs."""
    r, f = schema.Run, schema.Failure
    with store.session() as s:
        if prefix:
            found = s.scalars(sa.select(r).where(r.id.like(f"{prefix}%")).limit(2)).all()
            if len(found) > 1:
                raise LookupError(f"{prefix}: several runs have ids starting so; give more characters")
        else:
            newest = sa.select(r).order_by(r.started_at.desc()).limit(1)
            found = s.scalars(newest.where(r.status == RUNNING)).all() or s.scalars(newest).all()
        if not found:
            return None
        run = found[0]
        failures = dict(
            s.execute(sa.select(f.error_code, sa.func.count()).where(f.run_id == run.id).group_by(f.error_code)).all()
        )
        return LiveRun(
            run.id, run.command, run.status, run.started_at, run.finished_at, run.reason, run.live or {}, failures
        )
