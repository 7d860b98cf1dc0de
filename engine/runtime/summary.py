"""End-of-run figures, read back from the store (so they are true after a crash and resume too).

Every query is bounded by the run's videos or the run's id, so the summary costs the same in a
store of any size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from engine.llm.request_log import add_totals, request_totals
from engine.sources.ingest import STAGE as INGEST
from engine.store import schema
from engine.store.current import Current
from engine.store.db import Store

CHUNK = 500


def run_summary(store: Store, run_id: str, video_ids: Sequence[str], current: Current) -> dict[str, Any]:
    """video_ids: the run's units (whole videos and clips) and its sources (the split's completions and failures
    are theirs)."""
    ids = list(dict.fromkeys(video_ids))
    o, m, r, smp, f = schema.VideoObject, schema.Masklet, schema.Review, schema.Sample, schema.Failure
    objects = grounded = new_samples = units_run = 0
    verdicts: dict[bool, int] = {}
    samples: dict[str, int] = {}
    dropped: dict[str, int] = {}  # reason -> what this run's units left out (e.g. QA pairs naming no object)
    cp = schema.Completion
    with store.session() as s:
        for i in range(0, len(ids), CHUNK):
            part = ids[i : i + CHUNK]
            mine = sa.select(o.id).where(o.video_id.in_(part), o.stage_version.in_(sorted(current.objects) or [""]))
            objects += s.scalar(sa.select(sa.func.count()).select_from(mine.subquery())) or 0
            grounded += (
                s.scalar(
                    sa.select(sa.func.count()).where(
                        m.object_id.in_(mine), m.lineage.in_(sorted(current.masklets) or [""])
                    )
                )
                or 0
            )
            for verdict, n in s.execute(
                sa.select(r.verdict, sa.func.count())
                .where(r.object_id.in_(mine), r.lineage.in_(sorted(current.reviews) or [""]))
                .group_by(r.verdict)
            ):
                verdicts[bool(verdict)] = verdicts.get(bool(verdict), 0) + n
            for data_type, n in s.execute(
                sa.select(smp.data_type, sa.func.count())
                .where(smp.video_id.in_(part), smp.lineage.in_(current.sample_lineages or [""]))
                .group_by(smp.data_type)
            ):
                samples[data_type] = samples.get(data_type, 0) + n
            new_samples += (
                s.scalar(sa.select(sa.func.count()).where(smp.video_id.in_(part), smp.run_id == run_id)) or 0
            )
            units_run += s.scalar(sa.select(sa.func.count()).where(cp.video_id.in_(part), cp.run_id == run_id)) or 0
            for (counts,) in s.execute(
                sa.select(cp.dropped).where(cp.video_id.in_(part), cp.run_id == run_id, cp.dropped.is_not(None))
            ):
                for reason, n in (counts or {}).items():  # JSON null is not SQL NULL
                    dropped[reason] = dropped.get(reason, 0) + n
        # the run's failure rows: its units', and (stage "ingest") the inputs its ingest skipped: not failures
        in_run = sa.select(sa.func.count()).select_from(f).where(f.run_id == run_id)
        failures = s.scalar(in_run.where(f.stage != INGEST)) or 0
        quarantined = s.scalar(in_run.where(f.stage != INGEST, f.quarantined)) or 0
        skipped = s.scalar(in_run.where(f.stage == INGEST)) or 0
        # what stays quarantined among this run's videos (earlier runs' too): --retry-failed tries them again
        still = 0
        for i in range(0, len(ids), CHUNK):
            still += (
                s.scalar(
                    sa.select(sa.func.count()).select_from(f).where(f.video_id.in_(ids[i : i + CHUNK]), f.quarantined)
                )
                or 0
            )
    roles = request_totals(store, run_id)
    total = add_totals(roles)
    return {
        "videos": len(ids),
        "objects": objects,
        "grounded": grounded,
        "reviewed": sum(verdicts.values()),
        "kept": verdicts.get(True, 0),
        "samples": samples,
        "requests": total.requests,
        "unanswered": total.unanswered,
        "tokens_unknown": total.tokens_unknown,
        "tokens_in": total.tokens_in,
        "tokens_out": total.tokens_out,
        "cost_usd": total.cost_usd,
        "roles": {
            t.role: {
                "requests": t.requests,
                "ok": t.ok,
                "tokens_in": t.tokens_in,
                "tokens_out": t.tokens_out,
                "tokens_unknown": t.tokens_unknown,
                "cost_usd": t.cost_usd,
            }
            for t in roles
        },
        "work_requests": sum(t.requests for t in roles if t.role != "probe"),  # preflight's probes are not work
        "failures": failures,
        "quarantined": quarantined,
        "quarantined_in_store": still,
        "skipped_inputs": skipped,
        "new_results": new_samples,
        "units_run": units_run,
        "dropped": dropped,
    }
