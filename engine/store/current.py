"""One query layer for "current": which of the store's results the configured versions select.

Each stage's results carry a lineage (engine/store/ids.py `lineage_key`): its own version (prompt
tag and model, or backend version) chained to the stage before it. The pipelines, built from the
configuration, say which lineages are current (`Current`); every reader (the stages, export, the
summary, the review UI and the audit) goes through this module, so "current" and "kept" mean one
thing everywhere. For one object there is at most one current row per kind of result.

Every query here is bounded by the videos or objects it is asked about and runs on an index, so the
rows read per video do not grow with the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.store import schema
from engine.store.db import Store
from engine.store.records import (
    DescriptionRecord,
    FailureRecord,
    GateRecord,
    MaskletRecord,
    ObjectRecord,
    ReviewRecord,
)

Row = dict[str, Any]  # a row as a dict of its columns: what the readers outside the runtime get (object_views)


@dataclass(frozen=True)
class Current:
    """The lineages the configuration names, per kind of result.

    `objects` holds the Analyzer's stage versions (objects.stage_version); `kept_as_is` the stage
    versions whose objects count as kept without a review (objects people annotated in a dataset).
    """

    objects: frozenset[str] = frozenset()
    kept_as_is: frozenset[str] = frozenset()
    masklets: frozenset[str] = frozenset()
    descriptions: Mapping[str, frozenset[str]] = field(default_factory=dict)  # kind -> lineages
    reviews: frozenset[str] = frozenset()
    samples: Mapping[str, frozenset[str]] = field(default_factory=dict)  # data type -> lineages
    stages: frozenset[str] = frozenset()  # every stage's lineage: completion markers and failures
    gates: frozenset[str] = frozenset()  # the quality gates' lineages (none when gates are off)

    @property
    def sample_lineages(self) -> list[str]:
        return sorted(set().union(*self.samples.values())) if self.samples else []

    def kept(self, stage_version: str, verdict: bool | None) -> bool:
        """The one definition of kept, for an object of this stage version whose current review gave this verdict
        (None: it has no current review): the review says keep, or people annotated the object."""
        if verdict is not None:
            return bool(verdict)
        return stage_version in self.kept_as_is


def _rows(s: Session, stmt) -> list[Row]:
    return [dict(r._mapping) for r in s.execute(stmt)]


def _cols(model: type[schema.Base], *, without: Sequence[str] = ()) -> list:
    return [c for c in model.__table__.c if c.name not in without]


# --- the runtime: every in-flight video's current rows, one query per table ------------------------


@dataclass
class VideoRows:
    """One video's current results, as typed records keyed for the stages."""

    video_id: str
    captions: dict[str, str] = field(default_factory=dict)  # source -> text
    objects: dict[str, ObjectRecord] = field(default_factory=dict)  # id -> object
    masklets: dict[str, MaskletRecord] = field(default_factory=dict)  # object id -> masklet
    descriptions: dict[tuple[str, str], DescriptionRecord] = field(default_factory=dict)  # by (object id, kind)
    reviews: dict[str, ReviewRecord] = field(default_factory=dict)  # object id -> review
    gates: dict[str, GateRecord] = field(default_factory=dict)  # object id -> its quality-gate verdict
    samples: set[str] = field(default_factory=set)  # ids
    done: set[tuple[str, str, str]] = field(default_factory=set)  # (unit id, stage, lineage)
    failures: dict[tuple[str, str, str], FailureRecord] = field(default_factory=dict)  # by (unit, stage, lineage)
    answers: dict[str, Any] = field(default_factory=dict)  # request hash -> cached response, of this video's calls


def current_rows(store: Store, current: Current, video_ids: Sequence[str]) -> dict[str, VideoRows]:
    """These videos' current rows, without their cached answers: what the dry-run plan checks for work left."""
    with store.session() as s:
        return load_videos(s, current, video_ids, answers=False)


def load_videos(s: Session, current: Current, video_ids: Sequence[str], answers: bool = True) -> dict[str, VideoRows]:
    """The current rows of these videos: a few queries for all of them, each on an index; `answers`: with their
    cached model answers (a run's; the dry-run plan needs none)."""
    ids = list(video_ids)
    out = {v: VideoRows(v) for v in ids}
    if not ids:
        return out
    c = schema.Caption
    for cap in s.execute(sa.select(c.video_id, c.source, c.text).where(c.video_id.in_(ids))):
        out[cap.video_id].captions[cap.source] = cap.text
    o = schema.VideoObject
    objects = [
        ObjectRecord.from_row(r)
        for r in _rows(
            s, sa.select(*_cols(o)).where(o.video_id.in_(ids), o.stage_version.in_(sorted(current.objects)))
        )
    ]
    for obj in objects:
        out[obj.video_id].objects[obj.id] = obj
    video_of = {obj.id: obj.video_id for obj in objects}
    for kind, row in _object_rows(s, current, list(video_of)):
        rows = out[video_of[row["object_id"]]]
        if kind == "masklet":
            m = MaskletRecord.from_row(row)
            rows.masklets[m.object_id] = m
        elif kind == "review":
            r = ReviewRecord.from_row(row)
            rows.reviews[r.object_id] = r
        elif kind == "gate":
            g = GateRecord.from_row(row)
            rows.gates[g.object_id] = g
        else:
            d = DescriptionRecord.from_row(row)
            rows.descriptions[(d.object_id, d.kind)] = d
    smp = schema.Sample
    if current.samples:
        # By video alone, lineage checked here: without ANALYZE's statistics SQLite takes the lineage index, which
        # every sample of a version shares, and reads all of them (0.55 s a run in a store of a million objects).
        wanted = set(current.sample_lineages)
        for sample in s.execute(sa.select(smp.id, smp.video_id, smp.lineage).where(smp.video_id.in_(ids))):
            if sample.lineage in wanted:
                out[sample.video_id].samples.add(sample.id)
    stages = sorted(current.stages)
    cp = schema.Completion
    for done in s.execute(
        sa.select(cp.video_id, cp.unit_id, cp.stage, cp.lineage).where(cp.video_id.in_(ids), cp.lineage.in_(stages))
    ):
        out[done.video_id].done.add((done.unit_id, done.stage, done.lineage))
    f = schema.Failure
    for row in _rows(s, sa.select(*_cols(f)).where(f.video_id.in_(ids), f.lineage.in_(stages))):
        failure = FailureRecord.from_row(row)
        out[row["video_id"]].failures[(failure.unit_id, failure.stage, failure.lineage)] = failure
    if not answers:
        return out
    mc = schema.ModelCall
    for call in s.execute(
        sa.select(mc.video_id, mc.request_hash, mc.response).where(mc.video_id.in_(ids), mc.status == "ok")
    ):
        out[call.video_id].answers[call.request_hash] = call.response
    return out


def _object_rows(s: Session, current: Current, object_ids: list[str]) -> Iterable[tuple[str, Row]]:
    """Current masklets, gate verdicts, descriptions and reviews of these objects (one query each, on (object_id,
    lineage); descriptions on object_id alone, as load_videos reads samples)."""
    if not object_ids:
        return
    m, d, r, g = schema.Masklet, schema.Description, schema.Review, schema.Gate
    if current.masklets:
        for row in _rows(
            s, sa.select(*_cols(m)).where(m.object_id.in_(object_ids), m.lineage.in_(sorted(current.masklets)))
        ):
            yield "masklet", row
    if current.gates:
        for row in _rows(
            s, sa.select(*_cols(g)).where(g.object_id.in_(object_ids), g.lineage.in_(sorted(current.gates)))
        ):
            yield "gate", row
    if current.descriptions:
        for row in _rows(s, sa.select(*_cols(d)).where(d.object_id.in_(object_ids))):
            if row["lineage"] in current.descriptions.get(row["kind"], ()):
                yield "description", row
    if current.reviews:
        for row in _rows(
            s, sa.select(*_cols(r)).where(r.object_id.in_(object_ids), r.lineage.in_(sorted(current.reviews)))
        ):
            yield "review", row


# --- readers outside the runtime: export, the review UI, the audit ---------------------------------


@dataclass
class ObjectView:
    """One object with its current results."""

    object: Row
    masklet: Row | None
    descriptions: dict[str, Row]  # kind -> row
    review: Row | None
    kept: bool
    gate: Row | None = None  # its quality-gate verdict, where gates are on


def object_views(s: Session, current: Current, object_ids: Sequence[str]) -> dict[str, ObjectView]:
    """Current results of these objects (any version of the object itself: samples name their objects)."""
    ids = list(dict.fromkeys(object_ids))
    if not ids:
        return {}
    o = schema.VideoObject
    objects = {r["id"]: r for r in _rows(s, sa.select(*_cols(o)).where(o.id.in_(ids)))}
    views = {i: ObjectView(obj, None, {}, None, False) for i, obj in objects.items()}
    for kind, row in _object_rows(s, current, list(objects)):
        v = views[row["object_id"]]
        if kind == "masklet":
            v.masklet = row
        elif kind == "review":
            v.review = row
        elif kind == "gate":
            v.gate = row
        else:
            v.descriptions[row["kind"]] = row
    for v in views.values():
        v.kept = current.kept(v.object["stage_version"], v.review["verdict"] if v.review is not None else None)
    return views


def current_reviews(current: Current):
    """SELECT of every current review with its object's noun and its current masklet (at most one per object),
    for the audit population: (review id, verdict, confidence, noun, frames, height, width, token P(same), deciding
    judge, every judge's answer)."""
    r, o, m = schema.Review, schema.VideoObject, schema.Masklet
    masklet = sa.and_(m.object_id == o.id, m.lineage.in_(sorted(current.masklets) or [""]))
    return (
        sa.select(
            r.id, r.verdict, r.confidence, o.noun, m.frames, m.height, m.width, r.token_p_same, r.judge, r.judges
        )
        .join(o, o.id == r.object_id)
        .outerjoin(m, masklet)
        .where(r.lineage.in_(sorted(current.reviews) or [""]))
        .order_by(r.id)
    )


def samples_query(current: Current | None, types: Sequence[str]):
    """SELECT of the samples to export: the current lineage of each type (every version when current is None)."""
    smp = schema.Sample
    q = sa.select(smp).where(smp.data_type.in_(list(types)))
    if current is not None:
        wanted = sorted(set().union(*(current.samples.get(t, frozenset()) for t in types)))
        q = q.where(smp.lineage.in_(wanted or [""]))
    return q


# --- `engine status`: per stage, how many objects are current and how many only outdated -----------


@dataclass(frozen=True)
class StageCount:
    result: str  # masklets, descriptions:<kind>, reviews, samples:<type>
    current: int
    outdated: int  # objects (samples: records) that have this result only at other lineages


def stage_counts(s: Session, current: Current) -> list[StageCount]:
    m, d, r, smp = schema.Masklet, schema.Description, schema.Review, schema.Sample
    out = [_count(s, "masklets", m.object_id, m.lineage, current.masklets)]
    for kind in sorted(current.descriptions):
        out.append(
            _count(s, f"descriptions:{kind}", d.object_id, d.lineage, current.descriptions[kind], d.kind == kind)
        )
    out.append(_count(s, "reviews", r.object_id, r.lineage, current.reviews))
    for t in sorted(current.samples):
        cur = s.scalar(
            sa.select(sa.func.count()).where(smp.data_type == t, smp.lineage.in_(sorted(current.samples[t])))
        )
        other = s.scalar(
            sa.select(sa.func.count()).where(
                smp.data_type == t, sa.or_(smp.lineage.is_(None), smp.lineage.not_in(sorted(current.samples[t])))
            )
        )
        out.append(StageCount(f"samples:{t}", cur or 0, other or 0))
    return out


def _count(s: Session, name: str, key, lineage, wanted: frozenset[str], *extra) -> StageCount:
    wanted_list = sorted(wanted) or [""]
    table = key.table
    cur = sa.select(key).where(lineage.in_(wanted_list), *extra)
    n_cur = s.scalar(sa.select(sa.func.count(sa.distinct(key))).where(lineage.in_(wanted_list), *extra)) or 0
    n_old = (
        s.scalar(
            sa.select(sa.func.count(sa.distinct(key)))
            .select_from(table)
            .where(sa.or_(lineage.is_(None), lineage.not_in(wanted_list)), key.not_in(cur), *extra)
        )
        or 0
    )
    return StageCount(name, n_cur, n_old)


def judged(s: Session, review: schema.Review) -> tuple[schema.Masklet | None, dict[str, str]]:
    """What a review judged: its masklet and its descriptions' texts by kind (the review UI shows exactly these).

    Reviews from before lineages did not record their inputs: their object's oldest masklet and descriptions
    stand in.
    """
    m, d = schema.Masklet, schema.Description
    if review.masklet_id is not None:
        masklet = s.get(m, review.masklet_id)
        ids = [
            *(review.description_ids or []),
            *([review.region_description_id] if review.region_description_id else []),
        ]
        return masklet, {row.kind: row.text for row in s.execute(sa.select(d.kind, d.text).where(d.id.in_(ids)))}
    masklet = s.execute(
        sa.select(m).where(m.object_id == review.object_id).order_by(m.created_at, m.id).limit(1)
    ).scalar_one_or_none()
    texts: dict[str, str] = {}
    for row in s.execute(
        sa.select(d.kind, d.text).where(d.object_id == review.object_id).order_by(d.created_at.desc(), d.id)
    ):
        texts.setdefault(row.kind, row.text)
    return masklet, texts
