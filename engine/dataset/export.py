"""`engine export`: samples from the store to instruction-tuning files, with provenance and splits.

Formats: `videorefer` (one JSON array per data type and split, the record format of docs/record-format.md),
`jsonl` (the same records, one per line) and `videollama3` (the variant VideoLLaMA3's region loader reads:
`video` as a one-element list, one non-empty mask per object under `masks`, `height` and `width`).
Empty frames are written as `{"segmentation": null}`, which VideoRefer's loader reads as zeros, or dropped
with `empty_frames="drop"` (always for videollama3, whose loader takes no null mask); a record with an
object left without any mask is then left out, counted by reason. Every requested (type, split) file is
written, empty ones too. Records stream to disk in chunks, so memory does not grow with the number of
records. Splits are by source video (no video, nor two clips of one video, in two splits), deterministic for a
seed. Every record gets a provenance line in a sidecar, and the export a manifest.

Clips (docs/clips.md): by default a clip's record names its source video, with frame keys counted in the
source (the clip's first frame added). With `clips=True`, `<out>/videos/` holds what the records name: each clip
as a file of its own (engine/media/video.py write_clip), frame keys counted in it, and each whole video as a
link to its source; the records' video root is then `<out>/videos`. The samples, reviews and masks are the current
ones of the configured versions (engine/store/current.py), unless every version is asked for.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import engine
from engine.dataset.records import Format
from engine.media import masks
from engine.store import schema
from engine.store.current import Current, ObjectView
from engine.store.db import Store
from engine.store.records import verbal_p_same
from engine.store.samples import ExportContext, export_context, samples_for_export, source_roots

EmptyFrames = Literal["keep", "drop"]


@dataclass(frozen=True)
class Filters:
    types: tuple[str, ...] = ("short", "detailed", "qa")
    accepted_only: bool = False  # every object kept by the Reviewer (short samples are never reviewed)
    audited_only: bool = False  # every object's review confirmed correct by a person
    min_coverage: float = 0.0
    max_objects: int | None = None
    val_fraction: float = 0.0
    seed: int = 0
    empty_frames: EmptyFrames = "keep"  # "drop": only frames with a mask (videollama3 always drops)
    # the newest calibrated keep threshold on the Reviewer's same-object score (engine/audit/calibrate.py): records
    # with an object below it are left out; objects it would re-admit have no samples to export
    calibrated_threshold: float | None = None
    calibrated_score: str = "verbal"  # the score the threshold is on: tokens | verbal


@dataclass
class ExportResult:
    out: Path
    video_root: Path | None = None  # where the records' videos are, when the export wrote them (clips=True)
    sizes: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # a record's video -> (frames, h, w)
    clip_files: int = 0
    files: list[Path] = field(default_factory=list)
    file_counts: dict[str, int] = field(default_factory=dict)  # file name -> records
    counts: Counter = field(default_factory=Counter)  # (type, split) -> records
    skipped: Counter = field(default_factory=Counter)  # (type, reason) -> samples left out
    stats: dict[str, Any] = field(default_factory=dict)  # for the dataset card
    warnings: list[str] = field(default_factory=list)  # e.g. a val split far from the fraction asked


# What each reason a sample is left out for means (result.skipped's reasons), for the CLI's table and the card.
SKIP_REASONS = {
    "max_objects": "more objects than --max-objects",
    "min_coverage": "an object's mask coverage below --min-coverage",
    "not_accepted": "an object the Reviewer did not keep (--accepted-only)",
    "below_calibrated_threshold": "an object below the calibrated keep threshold (--calibrated)",
    "not_audited": "an object no person confirmed (--audited-only)",
    "object_without_mask": "an object without any mask once empty frames are dropped",
    "video_unreadable": "its video could not be read to write the clip",
}


def skip_reason_text(reason: str) -> str:
    return SKIP_REASONS.get(reason, reason.replace("_", " "))


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """'1 record', '2 records': a count with its noun in agreement."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def split_of(video_id: str, val_fraction: float, seed: int) -> str:
    """'val' for about val_fraction of the videos, the same for a given seed, whatever else is exported."""
    if val_fraction <= 0:
        return "train"
    bucket = int(hashlib.sha256(f"{seed}:{video_id}".encode()).hexdigest()[:12], 16) % 1_000_000
    return "val" if bucket < val_fraction * 1_000_000 else "train"


def split_warnings(val_fraction: float, source_splits: dict[str, str], counts: Counter) -> list[str]:
    """Why the val split may not be what was asked: split_of puts whole source videos in val, each with the
    chance asked, so with few sources val can be empty, everything, or far from the fraction in records."""
    if val_fraction <= 0 or not source_splits:
        return []
    n, n_val = len(source_splits), sum(sp == "val" for sp in source_splits.values())
    records = sum(counts.values())
    val_records = sum(v for (_, sp), v in counts.items() if sp == "val")
    share = val_records / records if records else 0.0
    asked = f"--val-fraction {val_fraction:g}"
    got = (
        f"{asked} put {n_val:,} of {counted(n, 'source video')} in val, {val_records:,} of "
        f"{counted(records, 'record')} ({share:.0%})"
    )
    why = "the split goes by source video (none is in both), so with few sources"
    if n_val == 0:
        return [f"{got}: the val files are empty; {why} val may get none: export more videos or ask for more"]
    if n_val == n:
        return [f"{got}: the train files are empty; {why} every one may go to val: ask for a smaller fraction"]
    # half the smaller of the two shares: 0.25 asked warns outside 12.5%-37.5%, 0.1 outside 5%-15%
    if abs(share - val_fraction) > min(val_fraction, 1 - val_fraction) / 2:
        return [f"{got}, far from {val_fraction:.0%}: {why} the share is coarse: export more videos"]
    return []


class _Writer:
    """One output file per (type, split), all opened up front (an empty type still gets its file), written
    incrementally; JSON arrays get one record per line."""

    def __init__(self, out: Path, fmt: Format, keys: list[tuple[str, str]]):
        self.out, self.fmt = out, fmt
        self.files: dict[tuple[str, str], Any] = {}
        self.sidecars: dict[tuple[str, str], Any] = {}
        self.first: dict[tuple[str, str], bool] = {}
        for key in keys:
            self.files[key] = self.path(key).open("w", encoding="utf-8")
            self.sidecars[key] = (self.out / f"{key[0]}_{key[1]}.provenance.jsonl").open("w", encoding="utf-8")
            self.first[key] = True
            if self.fmt != "jsonl":
                self.files[key].write("[")

    def path(self, key: tuple[str, str]) -> Path:
        ext = "jsonl" if self.fmt == "jsonl" else "json"
        return self.out / f"{key[0]}_{key[1]}.{ext}"

    def write(self, key: tuple[str, str], record: dict, provenance: dict) -> None:
        fh = self.files[key]
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        if self.fmt == "jsonl":
            fh.write(line + "\n")
        else:
            fh.write(("\n" if self.first[key] else ",\n") + line)
        self.first[key] = False
        self.sidecars[key].write(json.dumps(provenance, ensure_ascii=False, sort_keys=True) + "\n")

    def close(self) -> list[Path]:
        for key, fh in self.files.items():
            if self.fmt != "jsonl":
                fh.write("]\n" if self.first[key] else "\n]\n")
            fh.close()
        for fh in self.sidecars.values():
            fh.close()
        return [self.path(k) for k in self.files]


def same_object_score(review: Mapping[str, Any], source: str) -> float | None:
    """A review's P(same object) on the calibration's score: its token probability (None where it has none), or the
    deciding judge's verbalised confidence in its own same_object answer (the last judge asked said it)."""
    if source == "tokens":
        return review.get("token_p_same")
    return verbal_p_same(review["verdict"], review["confidence"], review.get("judges"))


def _skip_reason(smp: schema.Sample, ctx: ExportContext, f: Filters) -> str | None:
    if f.max_objects is not None and len(smp.object_ids) > f.max_objects:
        return "max_objects"
    for oid in smp.object_ids:
        view = ctx.views.get(oid)
        m = view.masklet if view else None
        if m is not None and m["coverage"] < f.min_coverage:
            return "min_coverage"
        if f.accepted_only and (view is None or view.review is None or not view.kept):
            return "not_accepted"
        if f.calibrated_threshold is not None and view is not None and view.review is not None:
            score = same_object_score(view.review, f.calibrated_score)
            if score is None or score < f.calibrated_threshold:
                return "below_calibrated_threshold"
        if f.audited_only:
            audits = ctx.audits.get(view.review["id"], []) if view and view.review else []
            if not audits or not all(a.human_verdict for a in audits):
                return "not_audited"
    return None


class _Skip(Exception):
    """A sample that cannot become a record of this export; the message is the reason."""


def _frame_segmentations(entry: dict[str, Any], drop_empty: bool) -> dict[str, Any]:
    """{frame: {"segmentation": RLE or None}}; a bare null (samples before records@2) becomes the latter."""
    out = {k: v if isinstance(v, dict) else {"segmentation": None} for k, v in entry.items()}
    if drop_empty:
        out = {k: v for k, v in out.items() if v["segmentation"] is not None and masks.area(v["segmentation"])}
        if not out:
            raise _Skip("object_without_mask")
    return out


class _Videos:
    """What a record's `video` is and how its frame keys count: see the module's docstring."""

    def __init__(self, out: Path, clips: bool):
        self.root = out / "videos" if clips else None
        self.names: dict[str, str] = {}  # unit id -> name in the records
        self.sizes: dict[str, tuple[int, int, int]] = {}
        self.clip_files = 0

    def ref(self, video: schema.Video, videos: dict[str, schema.Video]) -> tuple[str, int]:
        """(the record's video, what to add to its frame keys)"""
        source = videos[video.parent_id] if video.parent_id else video
        if self.root is None:
            self.sizes[source.path] = (source.num_frames, source.height, source.width)
            return source.path, video.first_frame or 0
        if video.id not in self.names:
            from engine.media.video import MediaError

            try:
                self.names[video.id] = name = self._write(self.root, video, source)
            except (MediaError, OSError, IndexError) as e:  # a source moved, cut or damaged since the run: left out
                raise _Skip("video_unreadable") from e
            self.sizes[name] = (video.num_frames, video.height, video.width)
        return self.names[video.id], 0

    def _write(self, root: Path, video: schema.Video, source: schema.Video) -> str:
        """Write the clip's file under `root` (or link the whole video there); its name there."""
        from engine.media.video import write_clip

        src = Path(source.source_root) / source.path
        rel = Path(source.path)
        if not video.parent_id:  # a whole video: linked, not copied
            link = root / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(src.resolve())
            return rel.as_posix()
        end = video.first_frame + video.num_frames
        written = write_clip(
            src,
            video.first_frame,
            video.num_frames,
            root / rel.parent / f"{rel.stem}_{video.first_frame}-{end}",
            video.fps,
        )
        self.clip_files += 1
        return written.relative_to(root).as_posix()


def _shift(entry: dict[str, Any], by: int) -> dict[str, Any]:
    return {str(int(k) + by): v for k, v in entry.items()} if by else entry


def _record(
    smp: schema.Sample, name: str, offset: int, video: schema.Video, fmt: Format, f: Filters, ctx: ExportContext
) -> dict[str, Any]:
    annotation = [
        _shift(_frame_segmentations(entry, f.empty_frames == "drop" or fmt == "videollama3"), offset)
        for entry in smp.annotation
    ]
    if fmt != "videollama3":
        return {"id": smp.id, "video": name, "conversations": smp.conversations, "annotation": annotation}
    # VideoLLaMA3's loader turns each <region> into one frame's mask: one mask per object, the anchor frame
    # (where the segmentor was prompted) when it is among them, else the largest.
    one = []
    for oid, entry in zip(smp.object_ids, annotation):
        view = ctx.views.get(oid)
        anchor = str(view.masklet["anchor_frame"] + offset) if view and view.masklet else None
        key = anchor if anchor in entry else max(entry, key=lambda k: masks.area(entry[k]["segmentation"]))
        one.append({key: entry[key]["segmentation"]})
    return {
        "id": smp.id,
        "video": [name],
        "conversations": smp.conversations,
        "masks": one,
        "height": video.height,
        "width": video.width,
    }


def _provenance(smp: schema.Sample, ctx: ExportContext) -> dict[str, Any]:
    objects = []
    for oid in smp.object_ids:
        view: ObjectView | None = ctx.views.get(oid)
        o, m, r = (view.object, view.masklet, view.review) if view else (None, None, None)
        objects.append(
            {
                "object_id": oid,
                "noun": o["noun"] if o else None,
                "analyzer": o["stage_version"] if o else None,
                "segmentor": m["backend_version"] if m else None,
                "coverage": m["coverage"] if m else None,
                "descriptions": sorted(
                    f"{d['kind']}:{d['model']}:{d['prompt_version']}"
                    for d in (view.descriptions.values() if view else ())
                ),
                "review": None
                if r is None
                else {
                    "mode": r["mode"],
                    "model": r["model"],
                    "prompt": r["prompt_version"],
                    "keep": r["verdict"],
                    "confidence": r["confidence"],
                    "p_same": r.get("p_same"),
                    "score_source": r.get("score_source"),
                    "judge": r.get("judge"),
                    "audits": [
                        {"auditor": a.auditor, "correct": a.human_verdict} for a in ctx.audits.get(r["id"], [])
                    ],
                },
                "kept": view.kept if view else None,
            }
        )
    return {
        "id": smp.id,
        "data_type": smp.data_type,
        "qa_type": smp.qa_type,
        "mode": smp.mode,
        "lineage": smp.lineage,
        "video_sha256_128": smp.video_id,
        "engine_version": engine.__version__,
        "objects": objects,
    }


def export(
    store: Store,
    out: Path,
    current: Current,
    fmt: Format = "videorefer",
    filters: Filters = Filters(),
    config: dict | None = None,
    all_versions: bool = False,
    clips: bool = False,
    calibration: dict | None = None,
    gates: list[dict] | None = None,
) -> ExportResult:
    """Write the export folder: data files, provenance sidecars and manifest.json (`gates`: the masklet quality
    gates' thresholds in force, engine/store/summaries.py gates_in_force).

    Samples of the current versions only, unless `all_versions`; reviews and masks are always the current ones.
    """
    out.mkdir(parents=True, exist_ok=True)
    result = ExportResult(out)
    splits = ("train", "val") if filters.val_fraction > 0 else ("train",)
    keys = [(t, sp) for t in filters.types for sp in splits]
    writer = _Writer(out, fmt, keys)
    named = _Videos(out, clips)
    result.counts.update({k: 0 for k in keys})  # every requested file shows, with 0 when nothing went in
    source_splits: dict[str, str] = {}  # source video -> its split, for split_warnings
    stats: dict[str, Any] = {
        "nouns": Counter(),
        "answer_words": defaultdict(list),
        "modes": Counter(),
        "qa_types": Counter(),
    }
    try:
        for chunk in samples_for_export(store, None if all_versions else current, filters.types):
            ctx = export_context(store, current, chunk)
            for smp in chunk:
                reason = _skip_reason(smp, ctx, filters)
                try:
                    if reason:
                        raise _Skip(reason)
                    video = ctx.videos[smp.video_id]
                    record = _record(smp, *named.ref(video, ctx.videos), video, fmt, filters, ctx)
                except _Skip as e:
                    result.skipped[(smp.data_type, str(e))] += 1
                    continue
                source = video.parent_id or video.id
                split = source_splits[source] = split_of(source, filters.val_fraction, filters.seed)
                writer.write((smp.data_type, split), record, _provenance(smp, ctx))
                result.counts[(smp.data_type, split)] += 1
                stats["modes"][(smp.data_type, smp.mode)] += 1
                stats["answer_words"][smp.data_type].append(len(smp.conversations[1]["value"].split()))
                if smp.qa_type:
                    stats["qa_types"][smp.qa_type] += 1
                for oid in smp.object_ids:
                    if oid in ctx.views:
                        stats["nouns"][ctx.views[oid].object["noun"]] += 1
    finally:
        result.files = writer.close()
        result.file_counts = {writer.path(k).name: result.counts[k] for k in writer.files}
    result.stats = stats
    result.warnings = split_warnings(filters.val_fraction, source_splits, result.counts)
    result.sizes, result.video_root, result.clip_files = named.sizes, named.root, named.clip_files
    manifest = {
        "engine_version": engine.__version__,
        "created_at": schema.utcnow().isoformat(),
        "format": fmt,
        "filters": asdict(filters),
        "config": config or {},
        "versions": "all" if all_versions else "current",
        "counts": {f"{t}_{s}": n for (t, s), n in sorted(result.counts.items())},
        "empty_frames": "drop" if fmt == "videollama3" else filters.empty_frames,
        "skipped": {
            t: {r: n for (tt, r), n in sorted(result.skipped.items()) if tt == t}
            for t in sorted({t for t, _ in result.skipped})
        },
        "file_counts": result.file_counts,
        "files": [p.name for p in result.files],
        "source_roots": source_roots(store),
        "video_root": "videos" if clips else None,  # with --clips: the records' videos, under this folder
        "calibration": calibration,  # the keep threshold applied, with its estimated precision
        "gates": gates or [],  # the masklet quality gates the current results passed (thresholds by gate)
        "clip_files": named.clip_files,
        "warnings": result.warnings,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return result
