"""The counts a run's summary reports, read back from the store (so they are true after a crash and resume too).

Every query is bounded by the run's videos or the run's id, so the summary costs the same in a store of any size.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from engine.store import schema
from engine.store.chunks import chunks
from engine.store.current import Current
from engine.store.db import Store
from engine.store.requests import request_totals

# What each reason a run's units left something out for means (the `dropped` counts: "<what>:<reason>", as the
# stages in pipelines/stages.py save them), so the summary reads as sentences rather than codes.
LEFT_OUT = {
    "qa_pairs:empty_pair": "QA pairs with an empty question or answer",
    "qa_pairs:names_no_object": "QA pairs whose question names none of the objects",
    "qa_pairs:type_not_asked": "QA pairs of a type not asked for (or more than asked)",
    "qa_pairs:no_pairs": "QA answers that held no pair at all",
    "dataset_videos:no_masks": "dataset videos without masks in their split",
    "dataset_objects:no_mask_on_sampled_frames": "dataset objects with no mask on any sampled frame",
    # short records: the caption describes one object, the clip's singular subject (pipelines/stages.py short_subject)
    "short_records:subject_not_found": "clips without a short record: subject not found",
    "short_records:plural_subject": "clips without a short record: the caption's subject is plural",
    "short_records:no_subject": "clips without a short record: the Analyzer named no subject",
    "short_records:no_caption": "clips without a short record: no caption",
    "short_records:subject_mask_empty": "clips without a short record: the subject's mask is empty on its frames",
    "short_records:subject_gated": "clips without a short record: the subject's masklet failed a quality gate",
}


def left_out_text(reason: str) -> str:
    """The sentence for a `dropped` reason; one not in LEFT_OUT (a plugin's own) reads "<what>: <reason>"."""
    if reason in LEFT_OUT:
        return LEFT_OUT[reason]
    if seen := re.fullmatch(r"short_records:subject_seen_(\d+)_times", reason):
        return f"clips without a short record: subject seen {seen.group(1)} times (ambiguous)"
    what, _, why = reason.partition(":")
    return f"{what.replace('_', ' ')}: {why.replace('_', ' ')}" if why else what.replace("_", " ")


@dataclass
class RunCounts:
    """What a run's videos hold at the current lineages, and what the run itself did."""

    objects: int = 0  # current objects of the run's videos
    grounded: int = 0  # of those, with a current masklet
    gated: dict[str, int] = field(default_factory=dict)  # of those, stopped by a quality gate: by gate
    verdicts: dict[bool, int] = field(default_factory=dict)  # current reviews by verdict (True: keep)
    judges: dict[str, dict[str, int]] = field(default_factory=dict)  # judge -> {"kept": n, "discarded": n}
    score_sources: dict[str, int] = field(default_factory=dict)  # tokens | verbal | unknown (rows before 0011)
    samples: dict[str, int] = field(default_factory=dict)  # current samples by data type
    new_samples: int = 0  # samples this run wrote
    units_run: int = 0  # completions this run wrote
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> what this run's units left out
    failures: int = 0  # failure rows of this run, skipped inputs apart
    quarantined: int = 0  # of those, quarantined
    skipped_inputs: int = 0  # inputs this run's ingest skipped (failure rows of the ingest stage)
    quarantined_in_store: int = 0  # quarantined units among the run's videos, earlier runs' too


def run_counts(store: Store, run_id: str, video_ids: Sequence[str], current: Current, ingest_stage: str) -> RunCounts:
    """Count a run's results, completions and failures over its videos (units and sources; `video_ids` without
    repeats). The failure rows of `ingest_stage` are the inputs its ingest skipped: counted apart, not failures."""
    ids = list(video_ids)
    o, m, r, smp, f = schema.VideoObject, schema.Masklet, schema.Review, schema.Sample, schema.Failure
    cp = schema.Completion
    out = RunCounts()
    with store.session() as s:
        for part in chunks(ids):
            mine = sa.select(o.id).where(o.video_id.in_(part), o.stage_version.in_(sorted(current.objects) or [""]))
            out.objects += s.scalar(sa.select(sa.func.count()).select_from(mine.subquery())) or 0
            out.grounded += (
                s.scalar(
                    sa.select(sa.func.count()).where(
                        m.object_id.in_(mine), m.lineage.in_(sorted(current.masklets) or [""])
                    )
                )
                or 0
            )
            if current.gates:
                g = schema.Gate
                for gate, n in s.execute(
                    sa.select(g.gate, sa.func.count())
                    .where(g.object_id.in_(mine), g.lineage.in_(sorted(current.gates)), g.passed.is_(False))
                    .group_by(g.gate)
                ):
                    out.gated[gate or "?"] = out.gated.get(gate or "?", 0) + n
            _count_reviews(s, out, r.object_id.in_(mine), r.lineage.in_(sorted(current.reviews) or [""]))
            # by video alone (engine/store/current.py load_videos says why), the lineage counted here
            wanted = set(current.sample_lineages)
            for data_type, lineage, n in s.execute(
                sa.select(smp.data_type, smp.lineage, sa.func.count())
                .where(smp.video_id.in_(part))
                .group_by(smp.data_type, smp.lineage)
            ):
                if lineage in wanted:
                    out.samples[data_type] = out.samples.get(data_type, 0) + n
            out.new_samples += (
                s.scalar(sa.select(sa.func.count()).where(smp.video_id.in_(part), smp.run_id == run_id)) or 0
            )
            out.units_run += (
                s.scalar(sa.select(sa.func.count()).where(cp.video_id.in_(part), cp.run_id == run_id)) or 0
            )
            for (counts,) in s.execute(
                sa.select(cp.dropped).where(cp.video_id.in_(part), cp.run_id == run_id, cp.dropped.is_not(None))
            ):
                for reason, n in (counts or {}).items():  # JSON null is not SQL NULL
                    out.dropped[reason] = out.dropped.get(reason, 0) + n
        in_run = sa.select(sa.func.count()).select_from(f).where(f.run_id == run_id)
        out.failures = s.scalar(in_run.where(f.stage != ingest_stage)) or 0
        out.quarantined = s.scalar(in_run.where(f.stage != ingest_stage, f.quarantined)) or 0
        out.skipped_inputs = s.scalar(in_run.where(f.stage == ingest_stage)) or 0
        for part in chunks(ids):
            out.quarantined_in_store += (
                s.scalar(sa.select(sa.func.count()).select_from(f).where(f.video_id.in_(part), f.quarantined)) or 0
            )
    return out


def _count_reviews(s: Any, out: RunCounts, *where: Any) -> None:
    """Reviews by verdict, by the judge that decided and by the source of its score, added to `out`."""
    r = schema.Review
    for verdict, judge, source, n in s.execute(
        sa.select(r.verdict, r.judge, r.score_source, sa.func.count())
        .where(*where)
        .group_by(r.verdict, r.judge, r.score_source)
    ):
        out.verdicts[bool(verdict)] = out.verdicts.get(bool(verdict), 0) + n
        by = out.judges.setdefault(judge or "reviewer", {"kept": 0, "discarded": 0})
        by["kept" if verdict else "discarded"] += n
        out.score_sources[source or "unknown"] = out.score_sources.get(source or "unknown", 0) + n


def review_counts(store: Store, current: Current) -> RunCounts:
    """The current reviews, store-wide, by verdict, deciding judge and score source (engine status, the card)."""
    out = RunCounts()
    with store.session() as s:
        _count_reviews(s, out, schema.Review.lineage.in_(sorted(current.reviews) or [""]))
    return out


def judge_shares(counts: RunCounts, cost_by_role: dict[str, float] | None = None) -> dict[str, dict[str, Any]]:
    """Per judge: objects it decided, kept and discarded, its share of the reviewed, and (given the cost of each
    request role) its requests' cost. A cascade judge's roles end in its name (reviewer.judge.<name>); the reviewer
    alone has reviewer.judge or reviewer.direct."""
    reviewed = sum(counts.verdicts.values())
    out: dict[str, dict[str, Any]] = {}
    for judge, by in sorted(counts.judges.items()):
        decided = by["kept"] + by["discarded"]
        out[judge] = {**by, "decided": decided, "share": decided / reviewed if reviewed else 0.0}
    for role, cost in (cost_by_role or {}).items():
        if role in ("reviewer.judge", "reviewer.direct"):
            judge = "reviewer"
        elif role.startswith(("reviewer.judge.", "reviewer.direct.")):
            judge = role.split(".", 2)[2]
        else:
            continue
        entry = out.setdefault(judge, {"kept": 0, "discarded": 0, "decided": 0, "share": 0.0})
        entry["cost_usd"] = entry.get("cost_usd", 0.0) + cost
    return out


def judging(store: Store, current: Current) -> dict[str, Any]:
    """Who decided the current reviews, from what scores, and the store's request cost per kept object (the card)."""
    counts = review_counts(store, current)
    roles = request_totals(store)
    return {
        "judges": judge_shares(counts, {t.role: t.cost_usd for t in roles}),
        "score_sources": counts.score_sources,
        "kept": counts.verdicts.get(True, 0),
        "cost_usd": sum(t.cost_usd for t in roles),
    }


def kept_from_dataset(store: Store, video_ids: Sequence[str], current: Current) -> int:
    """Objects of these videos that people annotated in a dataset and that have no current review: kept without
    one (Current.kept), so the reviewer's keep rate does not apply to them."""
    versions = sorted(current.kept_as_is & current.objects)
    if not versions:
        return 0
    o, r = schema.VideoObject, schema.Review
    reviewed = sa.exists().where(r.object_id == o.id, r.lineage.in_(sorted(current.reviews) or [""]))
    n = 0
    with store.session() as s:
        for part in chunks(list(video_ids)):
            where = (o.video_id.in_(part), o.stage_version.in_(versions), ~reviewed)
            n += s.scalar(sa.select(sa.func.count()).select_from(o).where(*where)) or 0
    return n


def left_out(store: Store, current: Current) -> dict[str, int]:
    """What the current results' units left out, by reason, store-wide: the clips without a short record by why
    (pipelines/stages.py short_subject), QA pairs dropped, and so on (`engine status`, the dataset card). Each
    unit's completion marker carries its counts; only markers at a current lineage count."""
    cp = schema.Completion
    out: dict[str, int] = {}
    with store.session() as s:
        for part in chunks(sorted(current.stages)):
            for (counts,) in s.execute(sa.select(cp.dropped).where(cp.lineage.in_(part), cp.dropped.is_not(None))):
                for reason, n in (counts or {}).items():  # JSON null is not SQL NULL
                    out[reason] = out.get(reason, 0) + n
    return out


def gated_counts(store: Store, current: Current) -> dict[str, int]:
    """Objects of the current results that a quality gate stopped, by gate, store-wide (engine status, the card)."""
    if not current.gates:
        return {}
    g = schema.Gate
    with store.session() as s:
        rows = s.execute(
            sa.select(g.gate, sa.func.count())
            .where(g.lineage.in_(sorted(current.gates)), g.passed.is_(False))
            .group_by(g.gate)
        ).all()
    return {gate or "?": n for gate, n in rows}  # a failed verdict always names its gate


def gates_in_force(store: Store, current: Current) -> list[dict[str, float]]:
    """The quality gates' thresholds of the current gate lineages, as their verdicts recorded them (the export's
    manifest): one per lineage that has verdicts; [] when gates are off."""
    g = schema.Gate
    out: list[dict[str, float]] = []
    with store.session() as s:
        for lineage in sorted(current.gates):
            row = s.scalar(sa.select(g.thresholds).where(g.lineage == lineage).limit(1))
            if row is not None and row not in out:
                out.append(row)
    return out
