"""End-of-run figures, read back from the store (so they are true after a crash and resume too).

Every query is bounded by the run's videos or the run's id, so the summary costs the same in a
store of any size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.llm.request_log import add_totals, request_totals
from engine.sources.ingest import STAGE as INGEST
from engine.store.current import Current
from engine.store.db import Store
from engine.store.summaries import LEFT_OUT as LEFT_OUT  # re-exported: the summary's readers import it here
from engine.store.summaries import judge_shares, kept_from_dataset, run_counts
from engine.store.summaries import left_out_text as left_out_text


def run_summary(store: Store, run_id: str, video_ids: Sequence[str], current: Current) -> dict[str, Any]:
    """video_ids: the run's units (whole videos and clips) and its sources (the split's completions and failures
    are theirs)."""
    ids = list(dict.fromkeys(video_ids))
    # the run's failure rows: its units', and (stage "ingest") the inputs its ingest skipped, which are not failures;
    # quarantined_in_store: what stays quarantined among this run's videos (earlier runs' too), for --retry-failed
    counts = run_counts(store, run_id, ids, current, INGEST)
    roles = request_totals(store, run_id)
    total = add_totals(roles)
    return {
        "videos": len(ids),
        "objects": counts.objects,
        "grounded": counts.grounded,
        "gated": counts.gated,  # by gate: objects a masklet quality gate stopped before any further call
        "reviewed": sum(counts.verdicts.values()),
        "kept": counts.verdicts.get(True, 0),
        # who decided (the reviewer alone, or each judge of a cascade), with what score, at what cost
        "judges": judge_shares(counts, {t.role: t.cost_usd for t in roles}),
        "score_sources": counts.score_sources,
        "cost_per_kept_usd": total.cost_usd / counts.verdicts[True] if counts.verdicts.get(True) else None,
        "kept_from_dataset": kept_from_dataset(store, ids, current),  # kept without a review
        "samples": counts.samples,
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
        "failures": counts.failures,
        "quarantined": counts.quarantined,
        "quarantined_in_store": counts.quarantined_in_store,
        "skipped_inputs": counts.skipped_inputs,
        "new_results": counts.new_samples,
        "units_run": counts.units_run,
        "dropped": counts.dropped,
    }
