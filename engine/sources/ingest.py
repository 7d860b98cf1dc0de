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

Every input it skips (unreadable, empty, not a video, a folder named like one, a broken link or a link loop,
permission denied) is reported with its reason and the scan goes on. A skipped input is recorded as a failure
row of stage "ingest", never quarantined: the run summary counts it apart, as skipped_inputs, and it does not
make a run finish with failures.
"""

from __future__ import annotations

import csv
import errno
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from engine.media.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, MediaError, Video, VideoInfo, frame_files
from engine.store import Store
from engine.store.ids import file_content_id, folder_content_id
from engine.store.sources import record_skipped_inputs, record_video, save_captions, source_videos, video_captions

# Extensions that look like video but that we do not decode: reported, not silently ignored.
OTHER_VIDEO_EXTENSIONS = frozenset({".flv", ".wmv", ".mpg", ".mpeg", ".m4v", ".3gp", ".ts", ".vob", ".ogv"})
SKIPPED_DIR_NAMES = frozenset({"annotations", "__pycache__"})
STAGE = "ingest"  # the stage of the failure rows that record skipped inputs
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
    """Find video files and frame folders under source, in a deterministic (sorted) order, and every input it skips
    with the reason. Links to folders are followed, each real folder once, so a link loop cannot make it go round."""
    source = source.resolve()
    if not source.is_dir():
        raise NotADirectoryError(f"source is not a folder: {source}")
    found: list[Candidate] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}  # real path of each folder walked -> the rel it was walked as
    stack: list[tuple[Path, frozenset[str]]] = [(source, frozenset())]  # (folder, real paths of those above it)
    links: list[tuple[Path, frozenset[str]]] = []  # links to folders: walked last, so a real folder keeps its own path
    while stack or links:
        here, above = stack.pop() if stack else links.pop(0)
        rel = here.relative_to(source).as_posix()
        real = os.path.realpath(here)
        if real in seen:  # only a link makes a folder come round again
            first = "the source folder" if seen[real] == "." else seen[real]
            problems.append(
                Problem(rel, "symlink_loop", f"a link back to {first}, which holds it: not followed")
                if real in above
                else Problem(rel, "duplicate_folder", f"the same folder as {first}, through a link: scanned once")
            )
            continue
        seen[real] = rel
        try:
            with os.scandir(here) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            problems.append(Problem(rel, *_unreadable(err, "cannot list this folder")))
            continue
        dirs: list[os.DirEntry[str]] = []
        files: list[os.DirEntry[str]] = []
        for e in entries:
            (dirs if _is_dir(e) else files).append(e)
        suffixes = {Path(e.name).suffix.lower() for e in files}
        frames = here != source and bool(suffixes & IMAGE_EXTENSIONS)
        if frames:
            found.append(Candidate(here, rel, "frames"))
        elif here != source and here.suffix.lower() in VIDEO_EXTENSIONS and not suffixes & VIDEO_EXTENSIONS:
            problems.append(Problem(rel, "not_a_video", "a folder named like a video, holding no frames"))
        for e in files:
            p, suffix = here / e.name, Path(e.name).suffix.lower()
            rel_p = p.relative_to(source).as_posix()
            if e.is_symlink() and (bad := _bad_link(p, rel_p)) is not None:
                if not e.name.startswith("."):  # a hidden dangling link is an editor's lock file, not an input
                    problems.append(bad)
                continue
            if suffix in VIDEO_EXTENSIONS:
                if os.access(p, os.R_OK):
                    found.append(Candidate(p, rel_p, "file"))
                else:
                    problems.append(Problem(rel_p, "permission_denied", "cannot read it: permission denied"))
            elif suffix in OTHER_VIDEO_EXTENSIONS:
                problems.append(Problem(rel_p, "unsupported_format", f"{suffix} is not supported; convert to .mp4"))
        subdirs = [e for e in dirs if not e.name.startswith(".") and e.name.lower() not in SKIPPED_DIR_NAMES]
        stack += [(here / e.name, above | {real}) for e in reversed(subdirs) if not e.is_symlink()]
        links += [(here / e.name, above | {real}) for e in subdirs if e.is_symlink()]
    found.sort(key=lambda c: c.rel)
    return found, problems


def _is_dir(e: os.DirEntry[str]) -> bool:
    try:
        return e.is_dir()  # follows links; a link loop raises
    except OSError:
        return False


def _bad_link(p: Path, rel: str) -> Problem | None:
    """A link that leads nowhere, or round in a loop; None for a link to a file."""
    try:
        os.stat(p)
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            return Problem(rel, "symlink_loop", "a link that leads back to itself: not followed")
        try:
            target = os.readlink(p)
        except OSError:
            target = "?"
        return Problem(rel, "broken_symlink", f"a link to {target}, which does not exist")


def _unreadable(e: OSError, what: str) -> tuple[str, str]:
    """(code, reason) of an OSError met reading an input."""
    if isinstance(e, PermissionError):
        return "permission_denied", f"{what}: permission denied"
    return "unreadable", f"{what}: {e.strerror or e}"


def _sidecar(c: Candidate) -> Path:
    return c.path.with_name(c.path.name + ".txt") if c.kind == "frames" else c.path.with_suffix(".txt")


def _seconds(value: object) -> float:
    """12.5, "12.5" or "0:00:12.500" -> 12.5."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        parts = value.strip().split(":")
        if 1 <= len(parts) <= 3:
            return sum(float(p) * 60**k for k, p in enumerate(reversed(parts)))
    raise TypeError(f"not a time: {value!r}")


def load_caption_tables(
    source: Path,
    timed: dict[str, list[TimedCaption]] | None = None,
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
    rows = source_videos(store, str(source))  # sources only: a clip's row shares its source's path
    captions = video_captions(store, [r.id for r in rows])
    return {
        r.path: _Stored(
            r.id,
            r.size_bytes,
            r.mtime_ns,
            VideoInfo(source / r.path, r.kind, r.num_frames, r.fps, r.width, r.height),
            captions.get(r.id, {}),
        )
        for r in rows
    }


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
    _record_skipped(store, source, problems, run_id)  # the inputs, not the caption tables' lines
    stored = _stored_videos(store, source)
    for c in candidates:
        try:
            _ingest_one(store, source, c, tables, frame_folder_fps, report, stored.get(c.rel))
        except (MediaError, OSError) as e:  # OSError: permissions, or a file vanished mid-scan
            p = (
                Problem(c.rel, e.code, e.reason)
                if isinstance(e, MediaError)
                else Problem(c.rel, *_unreadable(e, "cannot read it"))
            )
            report.problems.append(p)
            _record_skipped(store, source, [p], run_id)
        if on_progress:
            on_progress(c.rel)
    return report


def _captions_of(c: Candidate, tables: dict[str, dict[str, str]]) -> dict[str, str]:
    captions = dict(tables.get(c.rel, {}))
    sidecar = _sidecar(c)
    if sidecar.is_file():
        captions["sidecar"] = sidecar.read_text(encoding="utf-8").strip()
    return {k: v for k, v in captions.items() if v}


def _ingest_one(
    store: Store,
    source: Path,
    c: Candidate,
    tables: dict[str, dict[str, str]],
    fps: float,
    report: IngestReport,
    known: _Stored | None,
) -> None:
    size, mtime_ns = _file_stamp(c)
    captions = _captions_of(c, tables)
    if known is not None and (known.size_bytes, known.mtime_ns) == (size, mtime_ns):
        report.unchanged += 1  # the same file as stored: no probe, no hash
        changed = {k: v for k, v in captions.items() if known.captions.get(k) != v}
        if changed:
            save_captions(store, known.id, changed)
        report.videos.append(IngestedVideo(known.id, c.rel, known.info, captions, False))
        return
    info = Video(c.path, frame_folder_fps=fps).check()
    vid = _content_id(c)
    row = dict(
        id=vid,
        path=c.rel,
        source_root=str(source),
        kind=c.kind,
        num_frames=info.num_frames,
        fps=info.fps,
        width=info.width,
        height=info.height,
        size_bytes=size,
        mtime_ns=mtime_ns,
    )
    # A file that failed before and reads now is no longer a failure; stored before at this path and touched since,
    # it takes the new stamp.
    recorded = record_video(store, row, captions, input_id=str(c.path), skip_stage=STAGE)
    if recorded.duplicate_of is not None:  # the same bytes under another path: the path recorded first stays
        report.duplicates.append((c.rel, recorded.duplicate_of))
        return
    report.videos.append(IngestedVideo(vid, c.rel, info, captions, recorded.new))


def _record_skipped(store: Store, source: Path, problems: list[Problem], run_id: str | None) -> None:
    """Skipped inputs are listed by `engine status` and counted in their run's summary, but not quarantined: a skip
    is the input's state, not a failed unit, and every ingest looks at the input again anyway."""
    record_skipped_inputs(store, STAGE, [(str(source / p.rel), p.code, p.reason) for p in problems], run_id)
