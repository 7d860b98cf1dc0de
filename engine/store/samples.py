"""What `engine export` and its dataset card read: samples in chunks with what their records need, and counts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import sqlalchemy as sa

from engine.store import schema
from engine.store.chunks import CHUNK, scalars_in
from engine.store.current import Current, ObjectView, object_views, samples_query
from engine.store.db import Store


def samples_for_export(
    store: Store, current: Current | None, types: Sequence[str], size: int = CHUNK
) -> Iterator[list[schema.Sample]]:
    """The samples of these data types, in id order, `size` at a time, each chunk read in a session of its own
    (memory does not grow with the store): the current lineage of each type, or every version when current is
    None."""
    smp = schema.Sample
    last = ""
    while True:
        with store.session() as s:
            rows = list(
                s.scalars(samples_query(current, types).where(smp.id > last).order_by(smp.id).limit(size)).all()
            )
        if not rows:
            return
        yield rows
        last = rows[-1].id


@dataclass
class ExportContext:
    """What a chunk of samples' records need from other tables."""

    videos: dict[str, schema.Video] = field(default_factory=dict)  # the samples' videos and clips' sources, by id
    views: dict[str, ObjectView] = field(default_factory=dict)  # the samples' objects with their current results
    audits: dict[str, list[schema.Audit]] = field(default_factory=dict)  # review id -> decisions on it


def export_context(store: Store, current: Current, samples: Sequence[schema.Sample]) -> ExportContext:
    """The videos (clips' sources too), current object views and audits of these samples, in a few queries."""
    object_ids = {o for smp in samples for o in smp.object_ids}
    video_ids = sorted({smp.video_id for smp in samples})
    v = schema.Video
    with store.session() as s:
        videos = {x.id: x for x in scalars_in(s, sa.select(v), v.id, video_ids)}
        parents = sorted({x.parent_id for x in videos.values() if x.parent_id} - set(videos))
        videos.update({x.id: x for x in scalars_in(s, sa.select(v), v.id, parents)})
        views = object_views(s, current, sorted(object_ids))
        audits: dict[str, list[schema.Audit]] = defaultdict(list)
        review_ids = [view.review["id"] for view in views.values() if view.review]
        for a in scalars_in(s, sa.select(schema.Audit), schema.Audit.review_id, review_ids):
            audits[a.review_id].append(a)
    return ExportContext(videos, views, audits)


def source_roots(store: Store) -> list[str]:
    """Every video's source folder, sorted, once each."""
    with store.session() as s:
        return sorted(set(s.scalars(sa.select(schema.Video.source_root).distinct())))


def stored_sample_count(store: Store, types: Sequence[str]) -> int:
    """Samples of these data types, of any version."""
    smp = schema.Sample
    with store.session() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(smp).where(smp.data_type.in_(list(types)))) or 0


class ClipCount(NamedTuple):
    """Clips of one outcome (kept, or dropped for one reason)."""

    kept: bool
    reason: str | None  # why a clip was dropped (None for kept clips)
    clips: int
    sources: int  # source videos with such clips


def split_clip_counts(store: Store, lineage: str) -> tuple[list[ClipCount], int]:
    """The clips the split made at this lineage, counted by (kept, reason), and the source videos it split."""
    c = schema.Clip
    with store.session() as s:
        rows = [
            ClipCount(bool(kept), reason, int(n), int(sources))
            for kept, reason, n, sources in s.execute(
                sa.select(c.kept, c.reason, sa.func.count(), sa.func.count(sa.distinct(c.source_id)))
                .where(c.lineage == lineage)
                .group_by(c.kept, c.reason)
            )
        ]
        total = s.scalar(sa.select(sa.func.count(sa.distinct(c.source_id))).where(c.lineage == lineage)) or 0
    return rows, total
