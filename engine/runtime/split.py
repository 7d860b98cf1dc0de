"""The split phase: raw sources are cut into clips at shot boundaries before any pipeline runs (docs/clips.md).

For each source video file (not a frame folder, not an annotated dataset's video), a SplitWorker actor decodes it
once at 48x27 and returns its shots, per-frame scores and hashes (engine/media/clips.py scan). The driver applies
the clip rules, drops near-duplicates of clips kept anywhere in the store, and writes, in one transaction per
source: every clip (kept, or dropped with its reason and scores), a Video row per kept clip (a frame range of the
source: nothing is re-encoded), the clips' timed captions, and the source's `split` completion at the split's
lineage (detector version and clip rules). A source with that completion is never scanned again: a resumed or
repeated run reads its clips from the store.

A kept clip that is the whole source is the source itself (same id, same results as before splitting existed).
The actors are gone before the pipelines' actors start: the phase holds no CPU or GPU they need.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.config import Config
from engine.media.clips import Clip, HashIndex, Scan, drop_duplicates, hashes_of, plan_clips
from engine.media.shots import DETECTOR_VERSIONS
from engine.sources.datasets import dataset_of
from engine.sources.ingest import IngestedVideo, TimedCaption
from engine.store.db import Store
from engine.store.ids import lineage_key, stable_id
from engine.store.sources import (
    completed,
    kept_clip_hashes,
    quarantine_source,
    quarantined,
    record_clips,
    stored_clips,
)

log = logging.getLogger(__name__)

STAGE = "split"


def split_lineage(cfg: Config) -> str:
    """The split's version: its detector's and its rules'. A change re-splits every source (and only that)."""
    rules = json.dumps(asdict(cfg.split.rules()), sort_keys=True)
    return lineage_key(None, f"{DETECTOR_VERSIONS[cfg.split.detector]}|{rules}")


def splittable(v: IngestedVideo, source: Path) -> bool:
    return v.info.kind == "file" and dataset_of(str(source / v.rel)) is None


@dataclass
class SplitReport:
    units: list[str] = field(default_factory=list)  # the ids the pipelines run on, in source order
    scanned: int = 0  # sources decoded in this run
    resumed: int = 0  # sources split before at this lineage: read from the store, not decoded
    whole: int = 0  # sources not split: frame folders, datasets' videos, or split.detector = "none"
    clips: int = 0  # clips of the split sources (this run's and resumed ones)
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> clips
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source rel, reason)

    def as_summary(self) -> dict:
        return {
            "sources_scanned": self.scanned,
            "sources_resumed": self.resumed,
            "sources_whole": self.whole,
            "clips": self.clips,
            "clips_kept": self.kept,
            "clips_dropped": dict(sorted(self.dropped.items())),
            "sources_failed": len(self.failed),
        }


def split_sources(
    cfg: Config,
    store: Store,
    videos: Sequence[IngestedVideo],
    source: Path,
    run_id: str,
    timed: dict[str, list[TimedCaption]] | None = None,
    on_progress: Callable[[str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    retry_failed: bool = False,
) -> SplitReport:
    """Split what needs splitting; returns the units to run and what the split found. A source that failed to
    decode is quarantined: later runs skip it, unless retry_failed."""
    report = SplitReport()
    if cfg.split.detector == "none":
        report.units, report.whole = [v.id for v in videos], len(videos)
        return report
    lineage = split_lineage(cfg)
    split = [v for v in videos if splittable(v, source)]
    done = completed(store, STAGE, lineage, [v.id for v in split])
    stored = stored_clips(store, [v.id for v in split if v.id in done], lineage)
    todo = [v for v in split if v.id not in done]
    if not retry_failed:
        bad = quarantined(store, STAGE, lineage, [v.id for v in todo])
        report.failed += [
            (v.rel, "quarantined by an earlier run (--retry-failed tries it again)") for v in todo if v.id in bad
        ]
        todo = [v for v in todo if v.id not in bad]
    units: dict[str, list[str]] = {}
    for vid, found in stored.items():
        units[vid] = [c.video_id for c in found if c.kept and c.video_id is not None]  # a kept clip has its unit
        _count(report, [(c.kept, c.reason) for c in found])
    report.resumed = len(stored)
    if on_start:
        on_start(len(todo))
    if todo:
        index = HashIndex(kept_clip_hashes(store, lineage, exclude={v.id for v in todo}))
        for v, scanned in _scans(cfg, [str(source / v.rel) for v in todo], todo):
            if isinstance(scanned, BaseException):
                reason = f"{type(scanned).__name__}: {str(scanned).splitlines()[0] if str(scanned) else ''}"
                report.failed.append((v.rel, reason))
                quarantine_source(store, v.id, STAGE, lineage, "split_failed", reason, run_id)
            else:
                planned = _plan(cfg, v, scanned, index)
                units[v.id] = _save(cfg, store, v, source, planned, lineage, run_id, (timed or {}).get(v.rel, []))
                _count(report, [(c.kept, c.reason) for c, _ in planned])
                report.scanned += 1
            if on_progress:
                on_progress(v.rel)
    split_ids = {v.id for v in split}
    for v in videos:
        if v.id in units:
            report.units += units[v.id]
        elif v.id not in split_ids:
            report.units.append(v.id)
            report.whole += 1
    return report


def _count(report: SplitReport, clips: list[tuple[bool, str | None]]) -> None:
    report.clips += len(clips)
    report.kept += sum(k for k, _ in clips)
    report.dropped.update(r for k, r in clips if not k)


def _scans(
    cfg: Config, paths: list[str], videos: list[IngestedVideo]
) -> Iterator[tuple[IngestedVideo, Scan | BaseException]]:
    """(video, Scan or the exception it raised), in source order, from SplitWorker actors working ahead."""
    import ray

    from engine.runtime.actors import SplitWorker
    from engine.runtime.executor import start_ray

    start_ray(cfg)
    res = cfg.ray.resources["split"]
    gpus = res.num_gpus
    if cfg.split.device == "auto" and not gpus and cfg.split.detector == "transnetv2":
        gpus = 0.25 if ray.cluster_resources().get("GPU", 0) else 0.0
    elif cfg.split.device == "cpu":
        gpus = 0.0
    device = "cpu" if not gpus else "cuda"
    # MALLOC_ARENA_MAX: glibc's per-thread arenas otherwise keep the decoder's freed buffers
    # (benchmarks/split_speed.py)
    worker = ray.remote(SplitWorker).options(
        num_cpus=res.num_cpus, num_gpus=gpus, max_restarts=1, runtime_env={"env_vars": {"MALLOC_ARENA_MAX": "2"}}
    )
    # Any: Ray's stubs type an actor handle's methods as the class's own, which have no .remote
    actors: list[Any] = [worker.remote(cfg.split.detector, device) for _ in range(res.replicas)]
    try:
        ray.get([a.ready.remote() for a in actors])
        ahead = 2 * len(actors)
        pending = [actors[i % len(actors)].scan.remote(p) for i, p in enumerate(paths[:ahead])]
        for i, v in enumerate(videos):
            try:
                result = ray.get(pending[i])
            except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as e:
                result = getattr(e, "cause", None) or e
            if i + ahead < len(paths):
                pending.append(actors[(i + ahead) % len(actors)].scan.remote(paths[i + ahead]))
            yield v, result
    finally:
        for a in actors:
            ray.kill(a)


def _plan(cfg: Config, v: IngestedVideo, scanned: Scan, index: HashIndex) -> list[tuple[Clip, list[str]]]:
    rules = cfg.split.rules()
    # PyAV (the scan) and decord (the probe, and the stages' decoder) may count a frame more or less at the end:
    # no clip reaches past either
    n = min(scanned.bounds.num_frames, v.info.num_frames)
    scanned.bounds.shots = [replace(s, end=min(s.end, n)) for s in scanned.bounds.shots if s.start < n]
    clips = plan_clips(scanned.bounds, scanned.stats, v.info.width, v.info.height, rules)
    with_hashes = [(c, hashes_of(scanned.hashes, c.start, c.end)) for c in clips]
    drop_duplicates(with_hashes, index, rules)
    return with_hashes


def _unit_id(v: IngestedVideo, clip: Clip, detector: str) -> str:
    """A kept clip's unit: the source itself when the clip is all of it; else an id from the source's content hash,
    the range and the detector's version (not the rules: a new threshold keeps the results of the clips it keeps)."""
    if clip.start == 0 and clip.end >= v.info.num_frames:
        return v.id
    return stable_id("clip", v.id, clip.start, clip.end, detector)


def _save(
    cfg: Config,
    store: Store,
    v: IngestedVideo,
    source: Path,
    clips: list[tuple[Clip, list[str]]],
    lineage: str,
    run_id: str,
    timed: list[TimedCaption],
) -> list[str]:
    """Write a scanned source's clips, clip units, their timed captions and its completion, together."""
    detector = DETECTOR_VERSIONS[cfg.split.detector]
    clip_rows: list[dict[str, Any]] = []
    video_rows: list[dict[str, Any]] = []
    captions: list[tuple[str, str, str]] = []  # (unit id, source, text)
    units: list[str] = []
    fps = v.info.fps or 25.0
    for c, hashes in clips:
        cid = stable_id("clip", v.id, c.start, c.end, lineage)  # a row per split version: each keeps its verdicts
        unit = _unit_id(v, c, detector) if c.kept else None
        clip_rows.append(
            dict(
                id=cid,
                source_id=v.id,
                lineage=lineage,
                start=c.start,
                end=c.end,
                kept=c.kept,
                reason=c.reason,
                scores={k: round(x, 3) for k, x in c.scores.items()},
                hashes=hashes,
                video_id=unit,
                run_id=run_id,
            )
        )
        if unit is None:
            continue
        units.append(unit)
        if unit != v.id:
            video_rows.append(
                dict(
                    id=unit,
                    path=v.rel,
                    source_root=str(source),
                    kind="file",
                    num_frames=c.end - c.start,
                    fps=v.info.fps,
                    width=v.info.width,
                    height=v.info.height,
                    size_bytes=0,
                    mtime_ns=None,
                    parent_id=v.id,
                    first_frame=c.start,
                )
            )
        middle = (c.start + c.end) / 2 / fps
        text = next((t.text for t in timed if t.start <= middle < t.end), None)
        if text is not None:
            captions.append((unit, "captions.jsonl", text))
    # by reason (every dropped clip has one)
    dropped = dict(Counter(c.reason for c, _ in clips if not c.kept and c.reason is not None)) or None
    record_clips(store, v.id, STAGE, lineage, run_id, clip_rows, video_rows, captions, dropped)
    return units
