"""From shots to clips: the rules that decide which frame ranges of a raw video become clips, and why the others
were dropped.

Cheap scores come from the same 48x27 stream the shot detector reads (engine/media/shots.py): brightness
(mean), uniformity (standard deviation within a frame) and motion (mean absolute difference to the previous
frame). Near-duplicates are found with a perceptual hash (imagehash's pHash) of a few frames per clip,
compared with every clip already kept, in this video and in the store. Defaults follow Panda-70M, whose clips
(the paper's inputs) are about 2 to 20 s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np

from engine.media.shots import Boundaries


@dataclass(frozen=True)
class ClipRules:
    min_seconds: float = 2.0  # Panda-70M's shortest clips
    max_seconds: float = 20.0  # longer shots are cut into windows of at most this
    min_motion: float = 0.6  # mean |frame - previous| on 0..255 at 48x27: below it the clip is static
    min_brightness: float = 18.0  # mean on 0..255: below it the clip is black
    min_contrast: float = 6.0  # mean per-frame standard deviation: below it blank or near-uniform
    min_side: int = 240  # shorter side in pixels
    duplicate_distance: int = 8  # mean pHash Hamming distance (0..64) at or below which a clip is a duplicate


@dataclass
class Clip:
    start: int
    end: int  # exclusive
    kept: bool = True
    reason: str | None = None  # why it was dropped
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class FrameStats:
    brightness: np.ndarray
    contrast: np.ndarray
    motion: np.ndarray  # motion[0] = 0


def frame_stats(chunks: Iterable[np.ndarray]) -> FrameStats:
    """Per-frame scores from (n, h, w, 3) uint8 chunks, in one pass."""
    bright, contrast, motion = [], [], []
    prev = None
    for chunk in chunks:
        gray = chunk.astype(np.float32).mean(axis=3)
        bright.append(gray.mean(axis=(1, 2)))
        contrast.append(gray.std(axis=(1, 2)))
        diffs = np.abs(np.diff(gray, axis=0)).mean(axis=(1, 2))
        first = np.abs(gray[0] - prev).mean() if prev is not None else 0.0
        motion.append(np.concatenate([[first], diffs]))
        prev = gray[-1]
    if not bright:
        return FrameStats(np.zeros(0), np.zeros(0), np.zeros(0))
    return FrameStats(np.concatenate(bright), np.concatenate(contrast), np.concatenate(motion))


def _windows(start: int, end: int, longest: int) -> Iterator[tuple[int, int]]:
    """[start, end) in equal windows of at most `longest` frames."""
    n = max(1, -(-(end - start) // longest))
    edges = np.linspace(start, end, n + 1).round().astype(int)
    yield from zip(edges[:-1], edges[1:])


def plan_clips(bounds: Boundaries, stats: FrameStats, width: int, height: int,
               rules: ClipRules = ClipRules()) -> list[Clip]:
    """Every shot as one clip or several windows, each kept or dropped with its reason and scores."""
    fps = bounds.fps or 25.0
    shortest, longest = int(round(rules.min_seconds * fps)), max(1, int(round(rules.max_seconds * fps)))
    clips = []
    for shot in bounds.shots:
        for a, b in _windows(shot.start, shot.end, longest):
            c = Clip(int(a), int(b))
            c.scores = {"seconds": float((b - a) / fps), "brightness": float(stats.brightness[a:b].mean()),
                        "contrast": float(stats.contrast[a:b].mean()),
                        "motion": float(stats.motion[a + 1:b].mean()) if b - a > 1 else 0.0}
            if min(width, height) < rules.min_side:
                c.kept, c.reason = False, "low_resolution"
            elif b - a < shortest:
                c.kept, c.reason = False, "too_short"
            elif c.scores["brightness"] < rules.min_brightness:
                c.kept, c.reason = False, "black"
            elif c.scores["contrast"] < rules.min_contrast:
                c.kept, c.reason = False, "uniform"
            elif c.scores["motion"] < rules.min_motion:
                c.kept, c.reason = False, "static"
            clips.append(c)
    return clips


def clip_hashes(frames: Sequence[np.ndarray]) -> list:
    """pHash of each given frame (a few per clip, e.g. at 1/4, 1/2 and 3/4 of it)."""
    import imagehash
    from PIL import Image

    return [imagehash.phash(Image.fromarray(f)) for f in frames]


def hash_distance(a: Sequence, b: Sequence) -> float:
    """Mean Hamming distance between two clips' hashes, frame by frame."""
    return float(np.mean([x - y for x, y in zip(a, b)]))


def drop_duplicates(candidates: list[tuple[Clip, list]], known: list[list], rules: ClipRules = ClipRules()) -> None:
    """Mark each kept candidate whose hashes are within the distance of a known clip's (the store's, and those
    kept before it here) as a near-duplicate; the survivors join `known`."""
    for clip, hashes in candidates:
        if not clip.kept:
            continue
        nearest = min((hash_distance(hashes, k) for k in known), default=None)
        if nearest is not None:
            clip.scores["duplicate_distance"] = nearest
        if nearest is not None and nearest <= rules.duplicate_distance:
            clip.kept, clip.reason = False, "near_duplicate"
        else:
            known.append(hashes)
