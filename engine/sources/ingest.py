"""Ingest: scan a source folder for videos and captions, probe each video, record them in the store.

Layout accepted under the source root (recursively):
- video files: .mp4 .mkv .webm .avi .mov;
- frame folders: a folder holding .jpg/.jpeg/.png frames directly (MeViS / DAVIS ``JPEGImages/<video>/``);
  folders named ``Annotations`` (masks in those layouts) are not videos and are skipped;
- captions: a sidecar ``clip.txt`` beside ``clip.mp4`` (or ``clip.txt`` beside a frame folder ``clip/``),
  or ``captions.jsonl`` (``{"video": "rel/path.mp4", "caption": "..."}`` per line) or ``captions.csv``
  (columns ``video,caption``) in the source root. A sidecar wins over the tables. A ``captions.jsonl`` line with
  ``"start"`` and ``"end"`` (seconds, or "H:MM:SS.mmm" as Panda-70M's timestamps) captions a time range of its
  video: the clip whose middle falls in it takes it (engine/runtime/split.py), the video as a whole does not.

An unreadable input is reported with its reason, recorded as a failure, and the scan goes on.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import sqlalchemy as sa

from engine.store import schema
from engine.store.ids import file_content_id, folder_content_id, stable_id
from engine.media.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, MediaError, Video, VideoInfo, frame_files
from engine.store import Store

# Extensions that look like video but that we do not decode: reported, not silently ignored.
OTHER_VIDEO_EXTENSIONS = frozenset({".flv", ".wmv", ".mpg", ".mpeg", ".m4v", ".3gp", ".ts", ".vob", ".ogv"})
SKIPPED_DIR_NAMES = frozenset({"annotations", "__pycache__"})
CAPTION_TABLES = ("captions.jsonl", "captions.csv")
CAPTION_SOURCE_ORDER = ("sidecar", "captions.jsonl", "captions.csv", "captioner")


def caption_of(captions: dict[str, str]) -> str | None:
    """A video's caption among those of its sources ({source: text}): the first in CAPTION_SOURCE_ORDER."""
    return next((captions[s] for s in CAPTION_SOURCE_ORDER if s in captions), None)


@dataclass(frozen=True)
class Candidate:
    path: Path  # absolute
    rel: str  # relative to the source root, POSIX separators
    kind: Literal["file", "frames"]


@dataclass(frozen=True)
class Problem:
    rel: str
    code: str
    reason: str


@dataclass
class IngestedVideo:
    id: str
    rel: str
    info: VideoInfo
    captions: dict[str, str]  # source -> text
    new: bool

    @property
    def caption(self) -> str | None:
        return caption_of(self.captions)


@dataclass(frozen=True)
class TimedCaption:
    start: float  # seconds
    end: float
    text: str


@dataclass
class IngestReport:
    source: Path
    videos: list[IngestedVideo] = field(default_factory=list)
    timed_captions: dict[str, list[TimedCaption]] = field(default_factory=dict)  # rel path -> captions of its ranges
    problems: list[Problem] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (rel, stored path of the same bytes)
    unchanged: int = 0  # videos whose path, size and mtime matched the store: not probed or hashed again

    @property
    def new_videos(self) -> int:
        return sum(v.new for v in self.videos)


def scan(source: Path) -> tuple[list[Candidate], list[Problem]]:
    """Find video files and frame folders under source, in a deterministic (sorted) order."""
    source = source.resolve()
    if not source.is_dir():
        raise NotADirectoryError(f"source is not a folder: {source}")
    found: list[Candidate] = []
    problems: list[Problem] = []
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d.lower() not in SKIPPED_DIR_NAMES)
        here = Path(dirpath)
        if here != source and any(Path(f).suffix.lower() in IMAGE_EXTENSIONS for f in filenames):
            found.append(Candidate(here, here.relative_to(source).as_posix(), "frames"))
        for name in sorted(filenames):
            p = here / name
            suffix = p.suffix.lower()
            rel = p.relative_to(source).as_posix()
            if suffix in VIDEO_EXTENSIONS:
                found.append(Candidate(p, rel, "file"))
            elif suffix in OTHER_VIDEO_EXTENSIONS:
                problems.append(Problem(rel, "unsupported_format", f"{suffix} is not supported; convert to .mp4"))
    found.sort(key=lambda c: c.rel)
    return found, problems


def _sidecar(c: Candidate) -> Path:
    return c.path.with_name(c.path.name + ".txt") if c.kind == "frames" else c.path.with_suffix(".txt")


def _seconds(value: object) -> float:
    """12.5, "12.5" or "0:00:12.500" -> 12.5."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        parts = value.strip().split(":")
        if 1 <= len(parts) <= 3:
            return sum(float(p) * 60 ** k for k, p in enumerate(reversed(parts)))
    raise TypeError(f"not a time: {value!r}")


def load_caption_tables(source: Path, timed: dict[str, list[TimedCaption]] | None = None,
                        ) -> tuple[dict[str, dict[str, str]], list[Problem]]:
    """captions.jsonl / captions.csv in the source root -> {rel path: {table name: caption}}; jsonl lines with a
    start and an end go to `timed` instead, when given, as {rel path: [TimedCaption]}."""
    table: dict[str, dict[str, str]] = {}
    problems: list[Problem] = []
    jsonl = source / "captions.jsonl"
    if jsonl.is_file():
        for n, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                rel, text = rec.get("video") or rec["path"], rec["caption"]
                if not isinstance(text, str) or not isinstance(rel, str):
                    raise TypeError("video and caption must be strings")
                span = (_seconds(rec["start"]), _seconds(rec["end"])) if "start" in rec or "end" in rec else None
                if span is not None and not span[0] < span[1]:
                    raise ValueError(f"start {span[0]} is not before end {span[1]}")
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as e:
                problems.append(Problem(f"captions.jsonl:{n}", "bad_caption_line", f"skipped line {n}: {e}"))
                continue
            if span is not None:
                if timed is not None and text.strip():
                    timed.setdefault(_norm_rel(rel), []).append(TimedCaption(*span, text.strip()))
                continue
            table.setdefault(_norm_rel(rel), {})["captions.jsonl"] = text.strip()
    csv_path = source / "captions.csv"
    if csv_path.is_file():
        with csv_path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            cols = {c.lower(): c for c in reader.fieldnames or []}
            key_col = cols.get("video") or cols.get("path")
            if key_col is None or "caption" not in cols:
                problems.append(Problem("captions.csv", "bad_caption_table", "needs a header with video,caption"))
            else:
                for n, row in enumerate(reader, 2):
                    rel, text = row.get(key_col), row.get(cols["caption"])
                    if not rel or text is None:
                        problems.append(Problem(f"captions.csv:{n}", "bad_caption_line", f"skipped line {n}"))
                        continue
                    table.setdefault(_norm_rel(rel), {})["captions.csv"] = text.strip()
    return table, problems


def _norm_rel(rel: str) -> str:
    return Path(rel.strip().lstrip("./")).as_posix().rstrip("/")


def _content_id(c: Candidate) -> str:
    return folder_content_id(c.path, frame_files(c.path)) if c.kind == "frames" else file_content_id(c.path)


def _file_stamp(c: Candidate) -> tuple[int, int]:
    """(size in bytes, newest mtime in ns): a frame folder's over its frames."""
    if c.kind == "frames":
        stats = [f.stat() for f in frame_files(c.path)]
        return sum(st.st_size for st in stats), max((st.st_mtime_ns for st in stats), default=0)
    st = c.path.stat()
    return st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class _Stored:
    id: str
    size_bytes: int
    mtime_ns: int | None
    info: VideoInfo
    captions: dict[str, str]


def _stored_videos(store: Store, source: Path) -> dict[str, _Stored]:
    """What the store holds for this source root, by relative path: two queries, whatever the store's size."""
    v, c = schema.Video, schema.Caption
    with store.session() as s:  # sources only: a clip's row shares its source's path
        rows = s.execute(sa.select(v).where(v.source_root == str(source), v.parent_id.is_(None))).scalars().all()
        captions: dict[str, dict[str, str]] = {}
        ids = [r.id for r in rows]
        for i in range(0, len(ids), 500):
            for vid, src, text in s.execute(sa.select(c.video_id, c.source, c.text).where(c.video_id.in_(ids[i:i + 500]))):
                captions.setdefault(vid, {})[src] = text
    return {r.path: _Stored(r.id, r.size_bytes, r.mtime_ns,
                            VideoInfo(source / r.path, r.kind, r.num_frames, r.fps, r.width, r.height),
                            captions.get(r.id, {})) for r in rows}


def ingest(
    store: Store,
    source: Path,
    frame_folder_fps: float = 30.0,
    limit: int | None = None,
    run_id: str | None = None,
    on_progress: Callable[[str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> IngestReport:
    """Scan, probe and record every video under source. Idempotent: a second call inserts nothing.

    A file whose path, size and modification time match what is stored is not probed or hashed again.
    """
    source = source.resolve()
    candidates, problems = scan(source)
    timed: dict[str, list[TimedCaption]] = {}
    tables, caption_problems = load_caption_tables(source, timed)
    report = IngestReport(source, problems=problems + caption_problems, timed_captions=timed)
    if limit is not None:
        candidates = candidates[:limit]
    if on_start:
        on_start(len(candidates))
    stored = _stored_videos(store, source)
    for c in candidates:
        try:
            _ingest_one(store, source, c, tables, frame_folder_fps, report, stored.get(c.rel))
        except MediaError as e:
            report.problems.append(Problem(c.rel, e.code, e.reason))
            _record_failure(store, c, e.code, e.reason, run_id)
        except OSError as e:  # unreadable file (permissions, vanished mid-scan)
            report.problems.append(Problem(c.rel, "unreadable", str(e)))
            _record_failure(store, c, "unreadable", str(e), run_id)
        if on_progress:
            on_progress(c.rel)
    return report


def _captions_of(c: Candidate, tables) -> dict[str, str]:
    captions = dict(tables.get(c.rel, {}))
    sidecar = _sidecar(c)
    if sidecar.is_file():
        captions["sidecar"] = sidecar.read_text(encoding="utf-8").strip()
    return {k: v for k, v in captions.items() if v}


def _ingest_one(store: Store, source: Path, c: Candidate, tables, fps: float, report: IngestReport,
                known: _Stored | None) -> None:
    size, mtime_ns = _file_stamp(c)
    captions = _captions_of(c, tables)
    if known is not None and (known.size_bytes, known.mtime_ns) == (size, mtime_ns):
        report.unchanged += 1  # the same file as stored: no probe, no hash
        changed = {k: v for k, v in captions.items() if known.captions.get(k) != v}
        if changed:
            with store.session() as s:
                _save_captions(store, s, known.id, changed)
        report.videos.append(IngestedVideo(known.id, c.rel, known.info, captions, False))
        return
    info = Video(c.path, frame_folder_fps=fps).check()
    vid = _content_id(c)
    row = dict(
        id=vid, path=c.rel, source_root=str(source), kind=c.kind, num_frames=info.num_frames, fps=info.fps,
        width=info.width, height=info.height, size_bytes=size, mtime_ns=mtime_ns,
    )
    with store.session() as s:
        new = store.insert_ignore(s, schema.Video, [row]) == 1
        # A file that failed before and reads now is no longer a failure.
        s.query(schema.Failure).filter_by(unit_id=str(c.path), stage="ingest").delete()
        stored = s.get(schema.Video, vid)
        # The same bytes under another path: the path recorded first stays the video's path.
        if (stored.source_root, stored.path) != (str(source), c.rel):
            report.duplicates.append((c.rel, stored.path))
            return
        if not new:  # stored before, at this path, and touched since: remember the new stamp
            stored.size_bytes, stored.mtime_ns = size, mtime_ns
        _save_captions(store, s, vid, captions)
    report.videos.append(IngestedVideo(vid, c.rel, info, captions, new))


def _save_captions(store: Store, s, vid: str, captions: dict[str, str]) -> None:
    store.upsert(
        s, schema.Caption,
        [dict(id=stable_id("caption", vid, src), video_id=vid, source=src, text=text) for src, text in captions.items()],
        conflict=("video_id", "source"), update=("text",),
    )


def _record_failure(store: Store, c: Candidate, code: str, message: str, run_id: str | None) -> None:
    with store.session() as s:
        store.upsert(
            s, schema.Failure,
            [dict(id=stable_id("failure", str(c.path), "ingest"), unit_kind="file", unit_id=str(c.path), stage="ingest",
                  lineage="", attempts=1, error_code=code, message=message, quarantined=True, run_id=run_id)],
            conflict=("unit_id", "stage", "lineage"), update=("error_code", "message", "run_id"),
        )
