"""End-of-run figures, read back from the store (so they are true after a crash and resume too)."""

from __future__ import annotations

from typing import Any, Sequence

import sqlalchemy as sa

from engine.store import schema
from engine.llm.request_log import call_totals
from engine.store import Store


def run_summary(store: Store, run_id: str, video_ids: Sequence[str]) -> dict[str, Any]:
    ids = list(video_ids)
    o, r, smp, f = schema.VideoObject, schema.Review, schema.Sample, schema.Failure
    with store.session() as s:
        objects = s.scalar(sa.select(sa.func.count()).where(o.video_id.in_(ids))) or 0
        grounded = s.scalar(sa.select(sa.func.count()).where(o.video_id.in_(ids), o.status == "grounded")) or 0
        reviews = s.execute(sa.select(r.verdict, sa.func.count()).join(o, o.id == r.object_id)
                            .where(o.video_id.in_(ids)).group_by(r.verdict)).all()
        samples = dict(s.execute(sa.select(smp.data_type, sa.func.count()).where(smp.video_id.in_(ids))
                                 .group_by(smp.data_type)).all())
        failures = s.scalar(sa.select(sa.func.count()).select_from(f).where(f.run_id == run_id)) or 0
        quarantined = s.scalar(sa.select(sa.func.count()).select_from(f).where(f.run_id == run_id, f.quarantined)) or 0
    calls = call_totals(store, run_id)
    by_verdict = {bool(v): n for v, n in reviews}
    return {
        "videos": len(ids), "objects": objects, "grounded": grounded,
        "reviewed": sum(by_verdict.values()), "kept": by_verdict.get(True, 0), "samples": samples,
        "calls": sum(c.calls for c in calls), "tokens_in": sum(c.tokens_in for c in calls),
        "tokens_out": sum(c.tokens_out for c in calls), "cost_usd": sum(c.cost_usd for c in calls),
        "failures": failures, "quarantined": quarantined,
    }
