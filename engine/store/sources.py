"""Videos, clips and captions: what ingest and the split write, and what they and the units read back.

Ingest records each input video (a row keyed by its content), its captions and the inputs it skipped; the split
records each source's clips, its clip units and their timed captions, together with the source's completion.
Every read here is bounded by the ids or the source root it is asked about.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.store import schema
from engine.store.chunks import rows_in, scalars_in
from engine.store.db import Store
from engine.store.ids import stable_id

VideoKind = Literal["file", "frames"]


@dataclass(frozen=True)
class StoredVideo:
    """A videos row: an input video (parent_id None) or a clip of one (a frame range of its parent)."""

    id: str
    path: str  # relative to source_root
    source_root: str
    kind: VideoKind
    num_frames: int
    fps: float
    width: int
    height: int
    size_bytes: int
    mtime_ns: int | None
    parent_id: str | None
    first_frame: int


@dataclass(frozen=True)
class RecordedVideo:
    new: bool  # the row was inserted now (not stored before)
    duplicate_of: str | None  # the path the same bytes were recorded under first, when that is not this one


@dataclass(frozen=True)
class StoredClip:
    """A clip the split found in a source, as a resumed split counts it."""

    source_id: str
    start: int
    kept: bool
    reason: str | None  # why it was dropped
    video_id: str | None  # the unit of a kept clip


def _stored(r: schema.Video) -> StoredVideo:
    return StoredVideo(
        r.id,
        r.path,
        r.source_root,
        cast(VideoKind, r.kind),  # the column's CHECK constraint holds it to these values
        r.num_frames,
        r.fps,
        r.width,
        r.height,
        r.size_bytes,
        r.mtime_ns,
        r.parent_id,
        r.first_frame or 0,
    )


# --- reads -----------------------------------------------------------------------------------------


def source_videos(store: Store, source_root: str) -> list[StoredVideo]:
    """The input videos recorded under this source root (not their clips, which share their source's path)."""
    v = schema.Video
    with store.session() as s:
        rows = s.scalars(sa.select(v).where(v.source_root == source_root, v.parent_id.is_(None))).all()
        return [_stored(r) for r in rows]


def videos_by_id(store: Store, video_ids: Sequence[str]) -> list[StoredVideo]:
    """The videos rows with these ids (any that are not stored are left out), in no particular order."""
    v = schema.Video
    with store.session() as s:
        return [_stored(r) for r in scalars_in(s, sa.select(v), v.id, list(video_ids))]


def video_captions(store: Store, video_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """{video id: {caption source: text}} of these videos; a video without captions is left out."""
    c = schema.Caption
    out: dict[str, dict[str, str]] = {}
    with store.session() as s:
        for vid, src, text in rows_in(s, sa.select(c.video_id, c.source, c.text), c.video_id, list(video_ids)):
            out.setdefault(vid, {})[src] = text
    return out


def captioned(store: Store, video_ids: Sequence[str], sources: Iterable[str]) -> set[str]:
    """The videos among these that hold a caption from one of `sources`."""
    c = schema.Caption
    with store.session() as s:
        stmt = sa.select(c.video_id).where(c.source.in_(list(sources)))
        return set(scalars_in(s, stmt, c.video_id, list(video_ids)))


def completed(store: Store, stage: str, lineage: str, video_ids: Sequence[str]) -> set[str]:
    """The videos among these that completed `stage` at this lineage as units of their own (a source's split)."""
    cp = schema.Completion
    with store.session() as s:
        stmt = sa.select(cp.video_id).where(cp.unit_id == cp.video_id, cp.stage == stage, cp.lineage == lineage)
        return set(scalars_in(s, stmt, cp.video_id, list(video_ids)))


def quarantined(store: Store, stage: str, lineage: str, unit_ids: Sequence[str]) -> set[str]:
    """The units among these that `stage` quarantined at this lineage (later runs skip them)."""
    f = schema.Failure
    with store.session() as s:
        stmt = sa.select(f.unit_id).where(f.stage == stage, f.lineage == lineage, f.quarantined)
        return set(scalars_in(s, stmt, f.unit_id, list(unit_ids)))


def stored_clips(store: Store, source_ids: Sequence[str], lineage: str) -> dict[str, list[StoredClip]]:
    """{source id: its clips at this split lineage, by first frame}, for every id asked (none stored: [])."""
    c = schema.Clip
    out: dict[str, list[StoredClip]] = {i: [] for i in source_ids}
    stmt = (
        sa.select(c.source_id, c.start, c.kept, c.reason, c.video_id)
        .where(c.lineage == lineage)
        .order_by(c.source_id, c.start)
    )
    with store.session() as s:
        for row in rows_in(s, stmt, c.source_id, list(source_ids)):
            out[row.source_id].append(StoredClip(row.source_id, row.start, row.kept, row.reason, row.video_id))
    return out


def kept_clip_hashes(store: Store, lineage: str, exclude: set[str]) -> list[list[str]]:
    """The frame hashes of every clip kept at this split lineage, but those of the sources in `exclude` (the
    ones about to be split again): what a new clip is compared with to drop near-duplicates."""
    c = schema.Clip
    with store.session() as s:
        rows = s.execute(sa.select(c.source_id, c.hashes).where(c.lineage == lineage, c.kept)).all()
    return [r.hashes for r in rows if r.source_id not in exclude and r.hashes]


# --- writes ----------------------------------------------------------------------------------------


def _caption_rows(captions: Iterable[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """Caption rows from (video id, source, text): one row per video and source, its id derived from both."""
    return [
        dict(id=stable_id("caption", vid, src), video_id=vid, source=src, text=text) for vid, src, text in captions
    ]


def _upsert_captions(store: Store, s: Session, captions: Iterable[tuple[str, str, str]]) -> None:
    rows = _caption_rows(captions)
    if rows:  # a new text for a video and source replaces the old one
        store.upsert(s, schema.Caption, rows, conflict=("video_id", "source"), update=("text",))


def save_captions(store: Store, video_id: str, captions: dict[str, str]) -> None:
    """Store a video's captions ({source: text}), replacing the texts it held from those sources."""
    with store.session() as s:
        _upsert_captions(store, s, [(video_id, src, text) for src, text in captions.items()])


def record_video(
    store: Store, row: dict[str, Any], captions: dict[str, str], input_id: str, skip_stage: str
) -> RecordedVideo:
    """Record an ingested video (a videos row) with its captions, in one transaction.

    Its bytes decide its id: a row already stored at this path takes the new size and mtime; the same bytes
    stored under another path keep that path, and these captions are not saved. An earlier skip of the input
    (its failure row of `skip_stage`, keyed by `input_id`) is cleared either way: it reads now.
    """
    v, f = schema.Video, schema.Failure
    with store.session() as s:
        new = store.insert_ignore(s, v, [row]) == 1
        s.execute(sa.delete(f).where(f.unit_id == input_id, f.stage == skip_stage))
        stored = s.get(v, row["id"])
        assert stored is not None, "a row inserted, or ignored as stored, in this transaction"
        if (stored.source_root, stored.path) != (row["source_root"], row["path"]):
            return RecordedVideo(new, stored.path)
        if not new:
            stored.size_bytes, stored.mtime_ns = row["size_bytes"], row["mtime_ns"]
        _upsert_captions(store, s, [(stored.id, src, text) for src, text in captions.items()])
    return RecordedVideo(new, None)


def record_skipped_inputs(
    store: Store, stage: str, skipped: Sequence[tuple[str, str, str]], run_id: str | None
) -> None:
    """Record inputs that ingest skipped, (input id, code, reason) each, as failure rows of `stage` that are never
    quarantined: a skip is the input's state, not a failed unit. A later skip of the same input overwrites its row
    (quarantined too: stores written before kept skips quarantined)."""
    rows = [
        dict(
            id=stable_id("failure", unit_id, stage),
            unit_kind="file",
            unit_id=unit_id,
            stage=stage,
            lineage="",
            attempts=1,
            error_code=code,
            message=reason,
            quarantined=False,
            run_id=run_id,
        )
        for unit_id, code, reason in skipped
    ]
    if rows:
        with store.session() as s:
            store.upsert(
                s,
                schema.Failure,
                rows,
                conflict=("unit_id", "stage", "lineage"),
                update=("error_code", "message", "quarantined", "run_id"),
            )


def record_clips(
    store: Store,
    source_id: str,
    stage: str,
    lineage: str,
    run_id: str,
    clips: Sequence[dict[str, Any]],
    units: Sequence[dict[str, Any]],
    captions: Sequence[tuple[str, str, str]],
    dropped: dict[str, int] | None,
) -> None:
    """Record a split source, in one transaction so that a source is split entirely or not at all: its clips
    (clips rows, kept and dropped), the videos rows of its clip units, their captions ((unit id, source, text)),
    and the source's completion of `stage` at this lineage, with what it dropped by reason; an earlier failure of
    the source at this stage and lineage is cleared."""
    f = schema.Failure
    with store.session() as s:
        store.insert_ignore(s, schema.Video, units)
        store.insert_ignore(s, schema.Clip, clips)
        _upsert_captions(store, s, captions)
        store.insert_ignore(
            s,
            schema.Completion,
            [
                dict(
                    video_id=source_id,
                    unit_id=source_id,
                    stage=stage,
                    lineage=lineage,
                    run_id=run_id,
                    dropped=dropped,
                )
            ],
        )
        s.execute(sa.delete(f).where(f.unit_id == source_id, f.stage == stage, f.lineage == lineage))


def quarantine_source(
    store: Store, source_id: str, stage: str, lineage: str, code: str, message: str, run_id: str
) -> None:
    """Record that `stage` failed on a source video, quarantined at this lineage (later runs skip it unless told
    to retry it); a failure recorded before is overwritten (its message, run and attempts)."""
    with store.session() as s:
        store.upsert(
            s,
            schema.Failure,
            [
                dict(
                    id=stable_id("failure", source_id, stage, lineage),
                    unit_kind="video",
                    unit_id=source_id,
                    video_id=source_id,
                    lineage=lineage,
                    stage=stage,
                    attempts=1,
                    error_code=code,
                    message=message[:2000],
                    quarantined=True,
                    run_id=run_id,
                )
            ],
            conflict=("unit_id", "stage", "lineage"),
            update=("message", "run_id", "attempts"),
        )
