"""What the review UI's Runs pages show of each run: its row, its summary, its live snapshot and its failures.

The figures come from `runs.summary` (written when a run closes; `planned_cost_usd` as soon as it is planned) and
`runs.live` (rewritten by the driver's heartbeat: engine/runtime/executor.py). Both are JSON that older engines
wrote with fewer keys, or not at all: every key is read as optional and every value checked, so a run from before a
key existed shows "—" for it rather than an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.store import schema
from engine.store.db import Store

RUNNING = "running"
LIST_LIMIT = 200  # runs on the list page, newest first
FAILED_UNITS_LIMIT = 500  # units on a failure group's page
EXAMPLE_CHARS = 300  # of a failure group's example message
FUNNEL = ("clips", "objects", "grounded", "reviewed", "kept", "samples")


@dataclass(frozen=True)
class RunListRow:
    id: str
    status: str
    started_at: datetime
    duration_s: float | None  # so far, for a run in flight
    pipelines: list[str]
    units: int | None
    samples: int | None
    samples_by_type: dict[str, int]
    cost_usd: float | None
    reason: str | None


@dataclass(frozen=True)
class StageCount:
    name: str
    done: int
    total: int


@dataclass(frozen=True)
class SlowStage:
    name: str
    units: int
    seconds: float
    mean_s: float | None  # per unit; None before any unit ended


@dataclass(frozen=True)
class FailureGroup:
    code: str
    count: int
    quarantined: int
    example: str


@dataclass(frozen=True)
class FailedUnit:
    unit_kind: str
    unit_id: str
    path: str | None  # the unit's video, when it has one
    stage: str
    attempts: int
    quarantined: bool
    message: str


@dataclass(frozen=True)
class RunReport:
    id: str
    command: str
    status: str
    reason: str | None
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    pipelines: list[str]
    live_at: str | None  # when the live snapshot was written; None without one
    funnel: list[tuple[str, int | None]]  # FUNNEL's steps in order
    funnel_from: str | None  # "summary" | "live" | None
    stages: list[StageCount]
    throughput: list[tuple[float, float]]  # (minutes since the start, objects per minute)
    cost_usd: float | None  # so far, or in all once ended
    planned_cost_usd: float | None  # the plan's projection
    fraction_done: float | None  # of the stages' units
    projected_cost_usd: float | None  # cost so far / fraction done
    units_per_minute: float | None
    remaining_units: int | None
    eta_s: float | None  # only while running
    slowest: SlowStage | None
    videos_in_flight: int | None
    failures: list[FailureGroup]

    @property
    def running(self) -> bool:
        return self.status == RUNNING


# --- queries ----------------------------------------------------------------------------------------------


_LIST_COLUMNS = (
    schema.Run.id,
    schema.Run.command,
    schema.Run.status,
    schema.Run.provenance,
    schema.Run.summary,
    schema.Run.live,
    schema.Run.reason,
    schema.Run.started_at,
    schema.Run.heartbeat_at,
    schema.Run.finished_at,
)


def list_runs(store: Store, limit: int = LIST_LIMIT, now: datetime | None = None) -> tuple[list[RunListRow], int]:
    """The newest `limit` runs, and how many runs the store holds."""
    r = schema.Run
    now = now or datetime.now(UTC)
    with store.session() as s:
        rows = s.execute(sa.select(*_LIST_COLUMNS).order_by(r.started_at.desc(), r.id).limit(limit)).all()
        total = s.scalar(sa.select(sa.func.count()).select_from(r)) or 0
    return [_list_row(row, now) for row in rows], total


def run_report(store: Store, run_id: str, now: datetime | None = None) -> RunReport | None:
    """Everything the run page shows; None when the store has no such run."""
    now = now or datetime.now(UTC)
    with store.session() as s:
        row = s.execute(sa.select(*_LIST_COLUMNS).where(schema.Run.id == run_id)).one_or_none()
        if row is None:
            return None
        groups = _failure_groups(s, run_id)
    return _report(row, groups, now)


def failed_units(
    store: Store, run_id: str, code: str, limit: int = FAILED_UNITS_LIMIT
) -> tuple[list[FailedUnit], int]:
    """The run's failed units with this error code, newest first, and how many there are in all."""
    f, v = schema.Failure, schema.Video
    mine = (f.run_id == run_id, f.error_code == code)
    with store.session() as s:
        rows = s.execute(
            sa.select(f.unit_kind, f.unit_id, v.path, f.stage, f.attempts, f.quarantined, f.message)
            .outerjoin(v, v.id == f.video_id)  # ingest failures have no video
            .where(*mine)
            .order_by(f.updated_at.desc(), f.id)
            .limit(limit)
        ).all()
        total = s.scalar(sa.select(sa.func.count()).where(*mine)) or 0
    return [FailedUnit(k, u, p, st, a, bool(q), m) for k, u, p, st, a, q, m in rows], total


def _failure_groups(s: Session, run_id: str) -> list[FailureGroup]:
    f = schema.Failure
    n = sa.func.count()
    rows = s.execute(
        sa.select(f.error_code, n, sa.func.sum(sa.case((f.quarantined, 1), else_=0)), sa.func.min(f.message))
        .where(f.run_id == run_id)
        .group_by(f.error_code)
        .order_by(n.desc(), f.error_code)
    ).all()
    return [FailureGroup(code, count, int(q or 0), (msg or "")[:EXAMPLE_CHARS]) for code, count, q, msg in rows]


# --- figures from the row -------------------------------------------------------------------------------------


def _list_row(row: Any, now: datetime) -> RunListRow:
    summary, live = _dict(row.summary), _dict(row.live)
    # in flight, the snapshot is newer than anything the summary holds yet; once closed, the summary is the truth
    in_live = (_units(_stages(live)), live.get("samples"))
    in_summary = (_int(summary.get("videos")), summary.get("samples"))
    first, then = (in_live, in_summary) if row.status == RUNNING else (in_summary, in_live)
    units, samples = (a if a is not None else b for a, b in zip(first, then))
    return RunListRow(
        id=row.id,
        status=row.status,
        started_at=_aware(row.started_at),
        duration_s=_duration(row, now),
        pipelines=_pipelines(row.command, row.provenance),
        units=units,
        samples=_count(samples),
        samples_by_type={k: v for k, v in _dict(samples).items() if isinstance(v, int)},
        cost_usd=_cost(row.status, summary, live),
        reason=row.reason,
    )


def _report(row: Any, groups: list[FailureGroup], now: datetime) -> RunReport:
    summary, live = _dict(row.summary), _dict(row.live)
    stages = _stages(live)
    running = row.status == RUNNING
    fraction = _fraction(stages)
    cost = _cost(row.status, summary, live)
    upm = _num(live.get("units_per_minute"))
    remaining = sum(max(st.total - st.done, 0) for st in stages) if stages else None
    funnel_from = "summary" if not running and any(k in summary for k in FUNNEL[1:]) else "live" if live else None
    return RunReport(
        id=row.id,
        command=row.command,
        status=row.status,
        reason=row.reason,
        started_at=_aware(row.started_at),
        finished_at=_aware(row.finished_at) if row.finished_at else None,
        duration_s=_duration(row, now),
        pipelines=_pipelines(row.command, row.provenance),
        live_at=live.get("at") if isinstance(live.get("at"), str) else None,
        funnel=_funnel_of_summary(summary) if funnel_from == "summary" else _funnel_of_live(live, stages),
        funnel_from=funnel_from,
        stages=stages,
        throughput=_throughput(live.get("history")),
        cost_usd=cost,
        planned_cost_usd=_num(summary.get("planned_cost_usd")),
        fraction_done=fraction,
        projected_cost_usd=cost / fraction if cost is not None and fraction else None,
        units_per_minute=upm,
        remaining_units=remaining,
        eta_s=_eta(remaining, upm) if running else None,
        slowest=_slowest(live.get("stage_seconds")),
        videos_in_flight=_int(live.get("videos_in_flight")),
        failures=groups,
    )


def _pipelines(command: str, provenance: dict[str, Any] | None) -> list[str]:
    """As engine/store/views.py reads them: the provenance's list, else the command's "run --pipelines a,b"."""
    named = _dict(provenance).get("pipelines")
    if isinstance(named, list):
        return [str(n) for n in named]
    _, _, names = command.partition("run --pipelines ")
    return [n for n in names.split(" ")[0].split(",") if n]


def _stages(live: dict[str, Any]) -> list[StageCount]:
    out = []
    for name, counts in _dict(live.get("stages")).items():
        if isinstance(counts, list) and len(counts) >= 2 and all(isinstance(c, int) for c in counts[:2]):
            out.append(StageCount(str(name), counts[0], counts[1]))
    return out


def _units(stages: list[StageCount]) -> int | None:
    """A run's units: every unit enters its first stage, so the largest stage total."""
    return max((st.total for st in stages), default=None)


def _fraction(stages: list[StageCount]) -> float | None:
    total = sum(st.total for st in stages)
    return min(sum(st.done for st in stages) / total, 1.0) if total else None


def _eta(remaining: int | None, per_minute: float | None) -> float | None:
    if remaining == 0:
        return 0.0
    if remaining is None or not per_minute or per_minute <= 0:
        return None
    return remaining / per_minute * 60


def _cost(status: str, summary: dict[str, Any], live: dict[str, Any]) -> float | None:
    """The summary's total once the run has closed; the live snapshot's roles' until then."""
    if status != RUNNING and _num(summary.get("cost_usd")) is not None:
        return _num(summary.get("cost_usd"))
    costs = [_num(_dict(role).get("cost_usd")) for role in _dict(live.get("roles")).values()]
    known = [c for c in costs if c is not None]
    return sum(known) if known else None


def _funnel_of_summary(summary: dict[str, Any]) -> list[tuple[str, int | None]]:
    keys = ("videos", "objects", "grounded", "reviewed", "kept")  # a finished run's units are its "videos"
    counts = [_int(summary.get(k)) for k in keys]
    return [*zip(FUNNEL, counts), ("samples", _count(summary.get("samples")))]


def _funnel_of_live(live: dict[str, Any], stages: list[StageCount]) -> list[tuple[str, int | None]]:
    objects = _dict(live.get("objects"))
    found = [_int(objects.get(k)) for k in ("found", "grounded", "reviewed", "kept")]
    return [*zip(FUNNEL, [_units(stages), *found]), ("samples", _count(live.get("samples")))]


def _throughput(history: Any) -> list[tuple[float, float]]:
    """Objects per minute between consecutive points of [[seconds since the start, units done, objects found]]."""
    points = sorted(
        (float(p[0]), float(p[2]))
        for p in (history if isinstance(history, list) else [])
        if isinstance(p, list) and len(p) >= 3 and _num(p[0]) is not None and _num(p[2]) is not None
    )
    return [
        (round(t1 / 60, 3), round((o1 - o0) / (t1 - t0) * 60, 2))
        for (t0, o0), (t1, o1) in zip(points, points[1:])
        if t1 > t0
    ]


def _slowest(stage_seconds: Any) -> SlowStage | None:
    """The stage whose units took the most time in all."""
    best: SlowStage | None = None
    for name, pair in _dict(stage_seconds).items():
        if not (isinstance(pair, list) and len(pair) >= 2) or _int(pair[0]) is None or _num(pair[1]) is None:
            continue
        units, seconds = int(pair[0]), float(pair[1])
        if best is None or seconds > best.seconds:
            best = SlowStage(str(name), units, seconds, seconds / units if units > 0 else None)
    return best


def _duration(row: Any, now: datetime) -> float | None:
    """Until it finished; so far while running; until its last heartbeat for a run that died without closing."""
    end = row.finished_at or (now if row.status == RUNNING else row.heartbeat_at)
    return max((_aware(end) - _aware(row.started_at)).total_seconds(), 0.0) if end else None


def _aware(t: datetime) -> datetime:
    """SQLite returns naive datetimes; the store writes UTC."""
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _count(v: Any) -> int | None:
    """A count, or the sum of a dict of counts (samples by data type)."""
    if isinstance(v, dict):
        return sum(n for n in v.values() if _int(n) is not None)
    return _int(v)
