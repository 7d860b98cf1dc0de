"""The units the pipelines run on, as VideoTasks: whole videos and clips (a frame range of a source video).

A clip carries its source's caption as context: a caption given for a whole multi-shot source does not describe
each of its shots, so the Captioner writes the clip's own, told what the whole was said to show (docs/clips.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa

from engine.runtime.pipeline import VideoTask
from engine.sources.ingest import CAPTION_SOURCE_ORDER, caption_of
from engine.store import schema
from engine.store.db import Store

CHUNK = 500


def video_tasks(store: Store, video_ids: Sequence[str]) -> list[VideoTask]:
    """The units with these ids, by path and then by first frame (a source's clips in order)."""
    ids = list(dict.fromkeys(video_ids))
    v, c = schema.Video, schema.Caption
    rows = []
    with store.session() as s:
        for i in range(0, len(ids), CHUNK):
            rows += s.execute(sa.select(v).where(v.id.in_(ids[i : i + CHUNK]))).scalars().all()
        parents = sorted({r.parent_id for r in rows if r.parent_id})
        captions: dict[str, dict[str, str]] = {}
        for i in range(0, len(parents), CHUNK):
            for vid, src, text in s.execute(
                sa.select(c.video_id, c.source, c.text).where(c.video_id.in_(parents[i : i + CHUNK]))
            ):
                captions.setdefault(vid, {})[src] = text
        out = [
            VideoTask(
                r.id,
                str(Path(r.source_root) / r.path),
                r.path,
                r.kind,
                r.num_frames,
                r.fps,
                r.width,
                r.height,
                r.first_frame or 0,
                caption_of(captions.get(r.parent_id, {})) if r.parent_id else None,
            )
            for r in rows
        ]
    return sorted(out, key=lambda t: (t.rel, t.first_frame))


def uncaptioned(store: Store, video_ids: Sequence[str]) -> set[str]:
    """The units with no caption of their own yet (the Captioner writes theirs)."""
    ids = list(video_ids)
    c = schema.Caption
    have: set[str] = set()
    with store.session() as s:
        for i in range(0, len(ids), CHUNK):
            have.update(
                s.scalars(
                    sa.select(c.video_id).where(c.video_id.in_(ids[i : i + CHUNK]), c.source.in_(CAPTION_SOURCE_ORDER))
                )
            )
    return set(ids) - have
