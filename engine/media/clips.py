"""From shots to clips: the rules that decide which frame ranges of a raw video become clips, and why the others
were dropped.

Cheap scores come from the same 48x27 stream the shot detector reads (engine/media/shots.py): brightness
(mean), uniformity (standard deviation within a frame) and motion (mean absolute difference to the previous
frame). Near-duplicates are found with a perceptual hash (imagehash's pHash) of a few frames per clip,
compared with every clip already kept, in this video and in the store. Defaults follow Panda-70M, whose clips
(the paper's inputs) are about 2 to 20 s.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.media.shots import Boundaries, small_frames


@dataclass(frozen=True)
class ClipRules:
    min_seconds: float = 2.0  # Panda-70M's shortest clips
    max_seconds: float = 20.0  # longer shots are cut into windows of at most this
    # mean |frame - previous| on 0..255 at 48x27: below it the clip is static. A held frame, re-encoded, scores about
    # 0.02; a 60-pixel shape moving 3 px a frame across a 640x272 wall 0.2; real footage 2 to 8 (tests/pipelines)
    min_motion: float = 0.1
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


class _Stats:
    """Per-frame scores and pHashes, accumulated chunk by chunk as the stream goes by."""

    def __init__(self) -> None:
        self.bright: list[np.ndarray] = []
        self.contrast: list[np.ndarray] = []
        self.motion: list[np.ndarray] = []
        self.hashes: list[np.ndarray] = []
        self.prev: np.ndarray | None = None

    def add(self, chunk: np.ndarray, hashes: bool = False) -> None:
        gray = chunk.astype(np.float32).mean(axis=3)
        self.bright.append(gray.mean(axis=(1, 2)))
        self.contrast.append(gray.std(axis=(1, 2)))
        diffs = np.abs(np.diff(gray, axis=0)).mean(axis=(1, 2))
        first = np.abs(gray[0] - self.prev).mean() if self.prev is not None else 0.0
        self.motion.append(np.concatenate([[first], diffs]))
        self.prev = gray[-1]
        if hashes:
            self.hashes.append(frame_hashes(chunk))

    def result(self) -> FrameStats:
        if not self.bright:
            return FrameStats(np.zeros(0), np.zeros(0), np.zeros(0))
        return FrameStats(np.concatenate(self.bright), np.concatenate(self.contrast), np.concatenate(self.motion))


def frame_stats(chunks: Iterable[np.ndarray]) -> FrameStats:
    """Per-frame scores from (n, h, w, 3) uint8 chunks, in one pass."""
    acc = _Stats()
    for chunk in chunks:
        acc.add(chunk)
    return acc.result()


def frame_hashes(frames: Iterable[np.ndarray]) -> np.ndarray:
    """pHash of each frame (of a list, or of an (N, H, W, 3) array) as a uint64 (8 bytes a frame: a long
    video's hashes stay small)."""
    import imagehash
    from PIL import Image

    return np.array([int(str(imagehash.phash(Image.fromarray(f))), 16) for f in frames], dtype=np.uint64)


@dataclass
class Scan:
    """What one decoding pass of a source gives: its shots, per-frame scores and per-frame pHashes."""

    bounds: Boundaries
    stats: FrameStats
    hashes: np.ndarray  # uint64 per frame
    detector: str  # the detector's version


def scan(path: str | Path, detector) -> Scan:
    """Decode the video once at 48x27 (engine/media/shots.py): the detector reads the stream, and the scores and
    hashes the clip rules need are taken from the same frames as they go by."""
    acc = _Stats()

    def stream() -> Iterator[np.ndarray]:
        for chunk in small_frames(path):
            acc.add(chunk, hashes=True)
            yield chunk

    bounds = detector.detect_stream(stream(), path)
    stats = acc.result()
    hashes = np.concatenate(acc.hashes) if acc.hashes else np.zeros(0, np.uint64)
    return Scan(bounds, stats, hashes, detector.version)


def hashes_of(hashes: np.ndarray, start: int, end: int) -> list[str]:
    """A clip's hashes: its frames at 1/4, 1/2 and 3/4, as 16 hex digits each (how the store keeps them)."""
    picks = sorted({min(end - 1, start + (end - start) * k // 4) for k in (1, 2, 3)})
    return [f"{int(hashes[i]):016x}" for i in picks]


def _windows(start: int, end: int, longest: int) -> Iterator[tuple[int, int]]:
    """[start, end) in equal windows of at most `longest` frames."""
    n = max(1, -(-(end - start) // longest))
    edges = np.linspace(start, end, n + 1).round().astype(int)
    yield from zip(edges[:-1], edges[1:])


def plan_clips(
    bounds: Boundaries, stats: FrameStats, width: int, height: int, rules: ClipRules = ClipRules()
) -> list[Clip]:
    """Every shot as one clip or several windows, each kept or dropped with its reason and scores."""
    fps = bounds.fps or 25.0
    shortest, longest = int(round(rules.min_seconds * fps)), max(1, int(round(rules.max_seconds * fps)))
    clips = []
    for shot in bounds.shots:
        for a, b in _windows(shot.start, shot.end, longest):
            c = Clip(int(a), int(b))
            c.scores = {
                "seconds": float((b - a) / fps),
                "brightness": float(stats.brightness[a:b].mean()),
                "contrast": float(stats.contrast[a:b].mean()),
                "motion": float(stats.motion[a + 1 : b].mean()) if b - a > 1 else 0.0,
            }
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


def _as_array(hashes: Sequence[Sequence[str]]) -> np.ndarray:
    """Clips' hex hashes -> (clips, 3) uint64 (a clip with fewer frames repeats its last hash)."""
    rows = [[int(h, 16) for h in hs] + [int(hs[-1], 16)] * (3 - len(hs)) for hs in hashes]
    return np.array(rows, dtype=np.uint64).reshape(len(rows), 3)


def _popcount(x: np.ndarray) -> np.ndarray:
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(axis=-1)


class HashIndex:
    """Kept clips' hashes (the store's, then those kept in this run), to find near-duplicates among all of them."""

    def __init__(self, hashes: Sequence[Sequence[str]] = ()):
        self._parts = [_as_array(hashes)] if len(hashes) else []
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts)

    def nearest(self, hashes: Sequence[str]) -> float | None:
        """The mean Hamming distance (0..64), frame by frame, to the nearest known clip; None when none is known."""
        if self._array is None:
            self._array = np.concatenate(self._parts) if self._parts else np.zeros((0, 3), np.uint64)
            self._parts = [self._array] if len(self._array) else []
        if not len(self._array):
            return None
        return float(_popcount(self._array ^ _as_array([hashes])).mean(axis=1).min())

    def add(self, hashes: Sequence[str]) -> None:
        self._parts.append(_as_array([hashes]))
        self._array = None


def drop_duplicates(
    candidates: list[tuple[Clip, list[str]]], index: HashIndex, rules: ClipRules = ClipRules()
) -> None:
    """Mark each kept candidate whose hashes are within the distance of a known clip's (the store's, and those
    kept before it) as a near-duplicate, with the distance to the nearest in its scores; survivors join the index."""
    for clip, hashes in candidates:
        if not clip.kept or not hashes:
            continue
        nearest = index.nearest(hashes)
        if nearest is not None:
            clip.scores["duplicate_distance"] = nearest
        if nearest is not None and nearest <= rules.duplicate_distance:
            clip.kept, clip.reason = False, "near_duplicate"
        else:
            index.add(hashes)
