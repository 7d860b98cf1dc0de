"""The audit tables: auditors, audit items (the drawn sample), people's decisions and their history, calibrations.

engine/audit/ (sampling, statistics, calibration, export) and the review UI read and write them only through
this module.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.store import schema
from engine.store.chunks import rows_in
from engine.store.current import Current, current_reviews, judged
from engine.store.db import Store
from engine.store.ids import hash_part, stable_id
from engine.store.records import verbal_p_same

# --- auditors ------------------------------------------------------------------------------------


def put_auditor(store: Store, name: str, token_sha256: str) -> None:
    """Create the auditor, or give an existing one this token hash (which ends their sessions)."""
    with store.session() as s:
        store.upsert(
            s,
            schema.Auditor,
            [dict(name=name, token_sha256=token_sha256)],
            conflict=("name",),
            update=("token_sha256",),
        )


def delete_auditor(store: Store, name: str) -> bool:
    """Remove the auditor (their audits stay); False if there was none."""
    with store.session() as s:
        row = s.get(schema.Auditor, name)
        if row is None:
            return False
        s.delete(row)
    return True


def auditor_token_sha256(store: Store, name: str) -> str | None:
    """The auditor's token hash; None when there is no such auditor."""
    with store.session() as s:
        row = s.get(schema.Auditor, name)
        return None if row is None else row.token_sha256


def auditor_names_in_use(store: Store) -> set[str]:
    """Every auditor's name, and the names of removed auditors whose audits stay."""
    with store.session() as s:
        names = set(s.scalars(sa.select(schema.Auditor.name)))
        names |= set(s.scalars(sa.select(schema.Audit.auditor).distinct()))
    return names


# --- the sample ----------------------------------------------------------------------------------


class CurrentReview(NamedTuple):
    """A current review with its object's noun and its current masklet's frames and size (None without one)."""

    review_id: str
    verdict: bool
    confidence: float
    noun: str
    frames: dict[str, Any] | None
    height: int | None
    width: int | None
    token_p_same: float | None = None
    judge: str | None = None  # the judge that decided (None: before the cascade's columns, 0011)
    judges: list[dict[str, Any]] | None = None


class NewAuditItem(NamedTuple):
    """A review drawn for audit, in its stratum (whose population it records) by a draw with this seed."""

    review_id: str
    stratum: str
    population: int
    seed: int


def current_review_rows(store: Store, current: Current) -> list[CurrentReview]:
    """Every current review (the audit population), in review id order."""
    with store.session() as s:
        return [CurrentReview(*row) for row in s.execute(current_reviews(current))]


def audit_item_strata(store: Store) -> dict[str, str]:
    """Review id -> stratum of every audit item drawn so far."""
    it = schema.AuditItem
    with store.session() as s:
        return {rid: stratum for rid, stratum in s.execute(sa.select(it.review_id, it.stratum))}


def add_audit_items(store: Store, items: Sequence[NewAuditItem], populations: Mapping[str, int] | None = None) -> None:
    """Add drawn items (an item drawn before stays as it was); then give every item of each stratum in
    `populations` that population. One transaction."""
    it = schema.AuditItem
    with store.session() as s:
        store.insert_ignore(s, it, [item._asdict() for item in items])
        for stratum, population in (populations or {}).items():
            s.execute(sa.update(it).where(it.stratum == stratum).values(population=population))


# --- decisions -----------------------------------------------------------------------------------


class Label(NamedTuple):
    """One auditor's current decision on an item: is it the same object."""

    review_id: str
    auditor: str
    same_object: bool
    decided_at: datetime


class Decision(NamedTuple):
    """A decision with the Reviewer's verdict on its item."""

    review_id: str
    reviewer_keep: bool
    auditor: str
    same_object: bool
    decided_at: datetime


@dataclass(frozen=True)
class StrataDecisions:
    """What the audit statistics count."""

    decisions: list[Decision]  # on the items of the verdict strata (near-threshold draws are not uniform in them)
    populations: dict[str, int]  # stratum -> its recorded population
    verdict_counts: dict[bool, int]  # reviews (any version) per Reviewer verdict


def _verdict_counts(s: Session) -> dict[bool, int]:
    r = schema.Review
    return {bool(v): n for v, n in s.execute(sa.select(r.verdict, sa.func.count()).group_by(r.verdict))}


def reviewer_verdict_counts(store: Store) -> dict[bool, int]:
    """Reviews (any version) per Reviewer verdict: True kept, False discarded."""
    with store.session() as s:
        return _verdict_counts(s)


def verdict_strata_decisions(store: Store) -> StrataDecisions:
    """The decisions on items of the verdict strata, each stratum's population, and the reviews per verdict."""
    r, a, it = schema.Review, schema.Audit, schema.AuditItem
    with store.session() as s:
        near = sa.select(it.review_id).where(it.stratum.like("near:%"))
        decisions = [
            Decision(rid, bool(keep), who, bool(human), at)
            for rid, keep, who, human, at in s.execute(
                sa.select(r.id, r.verdict, a.auditor, a.human_verdict, a.created_at)
                .join(a, a.review_id == r.id)
                .where(r.id.not_in(near))
            )
        ]
        populations = {
            stratum: int(n)
            for stratum, n in s.execute(sa.select(it.stratum, sa.func.max(it.population)).group_by(it.stratum))
        }
        return StrataDecisions(decisions, populations, _verdict_counts(s))


class ScoredReview(NamedTuple):
    """A current review's verdict, the deciding judge's verbalised P(same object) and its token P(same object)
    (None where its server gave no log-probabilities), which judge decided and every judge's answer."""

    review_id: str
    verdict: bool
    verbal_p_same: float
    token_p_same: float | None = None
    judge: str | None = None
    judges: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class CalibrationInputs:
    """What a calibration is computed from (engine/audit/calibrate.py)."""

    reviews: list[ScoredReview]  # every current review
    labels: list[Label]  # every current decision, on any item


def calibration_inputs(store: Store, current: Current) -> CalibrationInputs:
    """Every current review's verdict and confidence, and every decision (read together)."""
    a = schema.Audit
    with store.session() as s:
        reviews = [
            ScoredReview(rid, bool(keep), verbal_p_same(bool(keep), c, judges), token_p, judge, judges)
            for rid, keep, c, _, _, _, _, token_p, judge, judges in s.execute(current_reviews(current))
        ]
        labels = [
            Label(rid, who, bool(human), at)
            for rid, who, human, at in s.execute(sa.select(a.review_id, a.auditor, a.human_verdict, a.created_at))
        ]
    return CalibrationInputs(reviews, labels)


def decide_audit(store: Store, review_id: str, auditor: str, same_object: bool, note: str, reason: str | None) -> None:
    """Record the auditor's decision on an item (replacing theirs, if any) and add it to the history."""
    audit_id = stable_id("audit", hash_part(review_id), auditor)  # one row per (item, auditor)
    with store.session() as s:
        store.upsert(
            s,
            schema.Audit,
            [
                dict(
                    id=audit_id,
                    review_id=review_id,
                    auditor=auditor,
                    human_verdict=same_object,
                    note=note,
                    reason=reason,
                )
            ],
            conflict=("review_id", "auditor"),
            update=("human_verdict", "note", "reason"),
        )
        s.add(
            schema.AuditEvent(
                id=uuid.uuid4().hex,
                review_id=review_id,
                auditor=auditor,
                action="decide",
                human_verdict=same_object,
                reason=reason,
                note=note,
            )
        )


def undo_audit(store: Store, review_id: str, auditor: str) -> None:
    """Delete the auditor's decision on an item and add the undo to the history."""
    a = schema.Audit
    with store.session() as s:
        s.execute(sa.delete(a).where(a.review_id == review_id, a.auditor == auditor))
        s.add(schema.AuditEvent(id=uuid.uuid4().hex, review_id=review_id, auditor=auditor, action="undo"))


class AuditorDecision(NamedTuple):
    """An auditor's current decision on one item, as the item page shows it."""

    same_object: bool
    reason: str | None
    note: str


def auditor_decision(store: Store, review_id: str, auditor: str) -> AuditorDecision | None:
    """The auditor's current decision on an item; None when they have not decided it."""
    a = schema.Audit
    with store.session() as s:
        row = s.execute(
            sa.select(a.human_verdict, a.reason, a.note).where(a.review_id == review_id, a.auditor == auditor)
        ).one_or_none()
    return None if row is None else AuditorDecision(bool(row[0]), row[1], row[2])


def decided_review_ids(store: Store, auditor: str) -> set[str]:
    """The items the auditor has a current decision on."""
    a = schema.Audit
    with store.session() as s:
        return set(s.scalars(sa.select(a.review_id).where(a.auditor == auditor)))


# --- the review UI's views of items ----------------------------------------------------------------


def audit_item_ids(store: Store) -> list[str]:
    """The review ids of every audit item (in no particular order)."""
    with store.session() as s:
        return list(s.scalars(sa.select(schema.AuditItem.review_id)))


def is_audit_item(store: Store, review_id: str) -> bool:
    """Whether the review was drawn for audit."""
    with store.session() as s:
        return s.get(schema.AuditItem, review_id) is not None


class ItemAudit(NamedTuple):
    """One auditor's decision on an item, as the item list shows it."""

    auditor: str
    same_object: bool
    reason: str | None


@dataclass(frozen=True)
class AuditItemList:
    """Every audit item's stratum, its object's noun and its decisions."""

    strata: dict[str, str]  # review id -> stratum
    nouns: dict[str, str]  # review id -> noun
    audits: dict[str, list[ItemAudit]]  # review id -> decisions


def audit_item_list(store: Store) -> AuditItemList:
    """Every audit item with its noun and decisions: one query per table, the ids in chunks."""
    it, r, o, a = schema.AuditItem, schema.Review, schema.VideoObject, schema.Audit
    with store.session() as s:
        strata = {rid: stratum for rid, stratum in s.execute(sa.select(it.review_id, it.stratum))}
        ids = list(strata)
        nouns = {
            rid: noun for rid, noun in rows_in(s, sa.select(r.id, o.noun).join(o, o.id == r.object_id), r.id, ids)
        }
        audits: dict[str, list[ItemAudit]] = {}
        decisions = sa.select(a.review_id, a.auditor, a.human_verdict, a.reason)
        for rid, who, human, reason in rows_in(s, decisions, a.review_id, ids):
            audits.setdefault(rid, []).append(ItemAudit(who, bool(human), reason))
    return AuditItemList(strata, nouns, audits)


@dataclass(frozen=True)
class AuditItemView:
    """What the review UI shows of an audit item: what the Reviewer judged, and (after a decision) its verdict."""

    review_id: str
    noun: str
    texts: dict[str, str]  # description kind -> text, as the review judged them
    keep: bool
    confidence: float
    rationale: str
    mode: str
    frame_indices: list[int]  # the judged masklet's frames, sorted
    captions: dict[str, str]  # the video's captions by source
    detailed: str | None  # the object's newest detailed description (kept objects only)
    judge: str | None = None  # which judge decided (None: a review from before 0011)
    p_same: float | None = None  # its score, P(same object) ...
    score_source: str | None = None  # ... from tokens or its verbalised confidence


def audit_item_view(store: Store, review_id: str) -> AuditItemView | None:
    """The audit item's view; None when the review is not an audit item."""
    d = schema.Description
    with store.session() as s:
        if s.get(schema.AuditItem, review_id) is None:
            return None
        review = s.get(schema.Review, review_id)
        obj = s.get(schema.VideoObject, review.object_id) if review is not None else None
        if review is None or obj is None:  # an audit item's review and object exist (foreign keys)
            return None
        masklet, texts = judged(s, review)
        captions = {c.source: c.text for c in s.scalars(sa.select(schema.Caption).filter_by(video_id=obj.video_id))}
        detailed = s.execute(
            sa.select(d.text).where(d.object_id == obj.id, d.kind == "detailed").order_by(d.created_at.desc()).limit(1)
        ).scalar_one_or_none()
        return AuditItemView(
            review_id,
            obj.noun,
            texts,
            review.verdict,
            review.confidence,
            review.rationale,
            review.mode,
            sorted(int(f) for f in (masklet.frames if masklet else {})),
            captions,
            detailed,
            review.judge,
            review.p_same,
            review.score_source,
        )


@dataclass(frozen=True)
class AuditItemMasks:
    """The judged masklet of an audit item, and where its frames are."""

    video_path: Path  # the source file (a clip's frames are decoded from its source)
    first_frame: int  # what to add to a frame key to find the frame in that file
    frame_keys: list[str]  # in frame order
    rles: list[Any]  # the mask of each frame (None for an empty frame)


def audit_item_masks(store: Store, review_id: str) -> AuditItemMasks | None:
    """The masks the audit item's review judged; None when it is not an audit item or judged no masklet."""
    with store.session() as s:
        if s.get(schema.AuditItem, review_id) is None:
            return None
        review = s.get(schema.Review, review_id)
        obj = s.get(schema.VideoObject, review.object_id) if review is not None else None
        video = s.get(schema.Video, obj.video_id) if obj is not None else None
        if review is None or video is None:
            return None
        masklet, _ = judged(s, review)
        if masklet is None:
            return None
        keys = sorted(masklet.frames, key=int)
        return AuditItemMasks(
            Path(video.source_root) / video.path, video.first_frame or 0, keys, [masklet.frames[k] for k in keys]
        )


# --- `engine audit export` -----------------------------------------------------------------------


class AuditExportRow(NamedTuple):
    """A current decision with its item's stratum, the Reviewer's verdict and the object."""

    review_id: str
    auditor: str
    same_object: bool
    reason: str | None
    note: str
    decided_at: datetime
    stratum: str | None  # None: the item was dropped from the sample
    reviewer_keep: bool
    reviewer_confidence: float
    noun: str
    object_id: str
    video_id: str


class AuditEventRow(NamedTuple):
    """One decision or undo, from the audit history."""

    review_id: str
    auditor: str
    action: str  # decide | undo
    same_object: bool | None
    reason: str | None
    note: str
    at: datetime


def audit_export_rows(store: Store) -> list[AuditExportRow]:
    """Every current decision, by review id and auditor."""
    a, r, o, it = schema.Audit, schema.Review, schema.VideoObject, schema.AuditItem
    q = (
        sa.select(a, r.verdict, r.confidence, o.noun, o.id, o.video_id, it.stratum)
        .join(r, r.id == a.review_id)
        .join(o, o.id == r.object_id)
        .outerjoin(it, it.review_id == a.review_id)
        .order_by(a.review_id, a.auditor)
    )
    with store.session() as s:
        return [
            AuditExportRow(
                x.review_id,
                x.auditor,
                x.human_verdict,
                x.reason,
                x.note,
                x.created_at,
                stratum,
                keep,
                conf,
                noun,
                oid,
                vid,
            )
            for x, keep, conf, noun, oid, vid, stratum in s.execute(q)
        ]


def audit_history(store: Store) -> list[AuditEventRow]:
    """Every decision and undo, oldest first."""
    e = schema.AuditEvent
    with store.session() as s:
        return [
            AuditEventRow(x.review_id, x.auditor, x.action, x.human_verdict, x.reason, x.note, x.created_at)
            for x in s.scalars(sa.select(e).order_by(e.created_at, e.id))
        ]


# --- calibrations --------------------------------------------------------------------------------


def add_calibration(store: Store, target: float, threshold: float | None, rule: str, estimates: dict[str, Any]) -> str:
    """Record a calibration; returns its id."""
    cid = uuid.uuid4().hex
    with store.session() as s:
        s.add(schema.Calibration(id=cid, target=target, threshold=threshold, rule=rule, estimates=estimates))
    return cid


def latest_calibration(store: Store) -> schema.Calibration | None:
    """The newest calibration (detached from its session), or None."""
    c = schema.Calibration
    with store.session() as s:
        row = s.execute(sa.select(c).order_by(c.created_at.desc()).limit(1)).scalar_one_or_none()
        if row is not None:
            s.expunge(row)
        return row


# --- masklet quality gates from audits (engine/audit/gates.py) ----------------------------------------


class GateDecision(NamedTuple):
    """A decision on an audited item of the verdict strata, with its masklet's stored quality."""

    review_id: str
    reviewer_keep: bool
    auditor: str
    same_object: bool
    reason: str | None
    decided_at: datetime
    frames: dict[str, Any] | None
    mean_consecutive_iou: float | None
    border_contact: float | None


class PoolMasklet(NamedTuple):
    """A current review's masklet, as the gates read it."""

    frames: dict[str, Any]
    mean_consecutive_iou: float
    border_contact: float


def gate_fit_inputs(store: Store, current: Current) -> tuple[list[GateDecision], list[PoolMasklet]]:
    """Every decision on the verdict strata's items with the masklet its Reviewer judged, and the masklets of every
    current review (what new gates would stop)."""
    r, a, it, m = schema.Review, schema.Audit, schema.AuditItem, schema.Masklet
    with store.session() as s:
        near = sa.select(it.review_id).where(it.stratum.like("near:%"))
        decisions = [
            GateDecision(rid, bool(keep), who, bool(human), reason, at, frames, iou, border)
            for rid, keep, who, human, reason, at, frames, iou, border in s.execute(
                sa.select(
                    r.id,
                    r.verdict,
                    a.auditor,
                    a.human_verdict,
                    a.reason,
                    a.created_at,
                    m.frames,
                    m.mean_consecutive_iou,
                    m.border_contact,
                )  # fmt: skip
                .join(a, a.review_id == r.id)
                .outerjoin(m, m.id == r.masklet_id)
                .where(r.id.not_in(near))
            )
        ]
        pool = [
            PoolMasklet(frames, iou, border)
            for frames, iou, border in s.execute(
                sa.select(m.frames, m.mean_consecutive_iou, m.border_contact)
                .join(r, r.masklet_id == m.id)
                .where(r.lineage.in_(sorted(current.reviews) or [""]))
            )
        ]
    return decisions, pool
