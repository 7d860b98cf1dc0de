"""The units the pipelines run on, as VideoTasks: whole videos and clips (a frame range of a source video).

A clip carries its source's caption as context: a caption given for a whole multi-shot source does not describe
each of its shots, so the Captioner writes the clip's own, told what the whole was said to show (docs/clips.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine.runtime.pipeline import VideoTask
from engine.sources.ingest import CAPTION_SOURCE_ORDER, caption_of
from engine.store.db import Store
from engine.store.sources import captioned, video_captions, videos_by_id


def video_tasks(store: Store, video_ids: Sequence[str]) -> list[VideoTask]:
    """The units with these ids, by path and then by first frame (a source's clips in order)."""
    rows = videos_by_id(store, list(dict.fromkeys(video_ids)))
    captions = video_captions(store, sorted({r.parent_id for r in rows if r.parent_id}))
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
            r.first_frame,
            caption_of(captions.get(r.parent_id, {})) if r.parent_id else None,
        )
        for r in rows
    ]
    return sorted(out, key=lambda t: (t.rel, t.first_frame))


def uncaptioned(store: Store, video_ids: Sequence[str]) -> set[str]:
    """The units with no caption of their own yet (the Captioner writes theirs)."""
    ids = list(video_ids)
    return set(ids) - captioned(store, ids, CAPTION_SOURCE_ORDER)
