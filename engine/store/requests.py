"""Reads of the request log (`requests`, one row per HTTP request to a model endpoint): totals per agent role, for
a run's summary and `engine status`, and the measured tokens per call that the dry-run plan prefers to estimates."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from engine.store import schema
from engine.store.db import Store

REQUEST_COLUMNS: tuple[str, ...] = tuple(c.name for c in schema.Request.__table__.c)  # a request row's keys


@dataclass
class RoleTotals:
    """Requests of one agent role (or of all, role "total"), from the request log."""

    role: str
    requests: int  # HTTP requests sent
    ok: int  # answered 2xx
    failed: int  # every other outcome, the unanswered included
    unanswered: int  # sent, no answer recorded (the process died, or the run stopped, with it in flight)
    tokens_unknown: int  # requests whose tokens are unknown (no usage, or no answer)
    tokens_in: int  # over the requests whose tokens are known
    tokens_out: int
    cost_usd: float
    mean_latency_s: float


def request_totals(store: Store, run_id: str | None = None) -> list[RoleTotals]:
    """Per-role totals over the request log, by role, optionally for one run."""
    r = schema.Request
    query = (
        sa.select(
            r.role,
            sa.func.count(),
            sa.func.sum(sa.case((r.status == "ok", 1), else_=0)),
            sa.func.sum(sa.case((r.status.in_(("sent", "cancelled")), 1), else_=0)),
            sa.func.sum(sa.case((r.tokens_in.is_(None), 1), else_=0)),
            sa.func.sum(r.tokens_in),
            sa.func.sum(r.tokens_out),
            sa.func.sum(r.cost_usd),
            sa.func.avg(r.latency_s),
        )
        .group_by(r.role)
        .order_by(r.role)
    )
    if run_id is not None:
        query = query.where(r.run_id == run_id)
    with store.session() as s:
        rows = s.execute(query).all()
    return [
        RoleTotals(
            role,
            n,
            int(ok or 0),
            n - int(ok or 0),
            int(sent or 0),
            int(unknown or 0),
            int(tin or 0),
            int(tout or 0),
            float(cost or 0),
            float(lat or 0),
        )
        for role, n, ok, sent, unknown, tin, tout, cost, lat in rows
    ]


NEWEST_MEASURED = 1000  # requests per role the plan's measured tokens look at: the newest, a bounded read


def measured_call_tokens(
    store: Store, roles: Iterable[str], newest: int = NEWEST_MEASURED
) -> dict[str, tuple[float, float, int]]:
    """{role: (mean tokens in, mean tokens out, number of requests)} over the answered requests of kind call whose
    tokens are known (repairs and probes are not what a planned call costs), among each role's `newest` newest
    requests: what the endpoint and prompts cost lately, read in the same few pages however large the store
    (ix_requests_role_sent_at). Roles with no such request are left out."""
    r = schema.Request
    out: dict[str, tuple[float, float, int]] = {}
    with store.session() as s:
        for role in sorted(set(roles)):
            last = (
                sa.select(r.status, r.kind, r.tokens_in, r.tokens_out)
                .where(r.role == role)
                .order_by(r.sent_at.desc())
                .limit(newest)
                .subquery()
            )
            tin, tout, n = s.execute(
                sa.select(sa.func.avg(last.c.tokens_in), sa.func.avg(last.c.tokens_out), sa.func.count()).where(
                    last.c.status == "ok", last.c.kind == "call", last.c.tokens_in.is_not(None)
                )
            ).one()
            if n:
                out[role] = (float(tin), float(tout), int(n))
    return out
