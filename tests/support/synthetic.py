"""Synthetic clips with known masks: moving shapes on a plain background.

Used by the examples script, the tests and the benchmarks, where real footage with ground-truth
masks cannot be downloaded. Videos are written with OpenCV's MPEG-4 Part 2 encoder ('mp4v'),
which every OpenCV wheel carries and decord reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Shape:
    name: str  # the noun a caption would use, e.g. "red square"
    kind: str  # "square" | "circle"
    color: tuple[int, int, int]  # RGB
    size: int  # side or diameter in pixels
    start: tuple[float, float]  # top-left at frame 0, as a fraction of (width, height)
    velocity: tuple[float, float]  # pixels per frame


DEFAULT_SHAPES = (
    Shape("red square", "square", (220, 40, 40), 28, (0.05, 0.2), (3.0, 0.5)),
    Shape("blue circle", "circle", (40, 80, 220), 30, (0.7, 0.55), (-2.0, -0.8)),
)


def render(num_frames: int, width: int, height: int, shapes=DEFAULT_SHAPES, background=(235, 235, 225)):
    """Frames (T, H, W, 3) uint8 RGB and masks {shape name: (T, H, W) bool}; later shapes occlude earlier."""
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    frames[:] = background
    masks = {s.name: np.zeros((num_frames, height, width), bool) for s in shapes}
    for t in range(num_frames):
        for s in shapes:
            x0 = s.start[0] * width + s.velocity[0] * t
            y0 = s.start[1] * height + s.velocity[1] * t
            if s.kind == "circle":
                r = s.size / 2
                m = (xx - (x0 + r)) ** 2 + (yy - (y0 + r)) ** 2 <= r * r
            else:
                m = (xx >= x0) & (xx < x0 + s.size) & (yy >= y0) & (yy < y0 + s.size)
            for other in masks.values():  # occlusion: what is drawn later hides what lies below
                other[t] &= ~m
            masks[s.name][t] = m
            frames[t][m] = s.color
    return frames, masks


def write_mp4(path: Path, frames: np.ndarray, fps: float = 12.0) -> Path:
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} with the mp4v codec")
    for f in frames:
        writer.write(np.ascontiguousarray(f[:, :, ::-1]))  # OpenCV wants BGR
    writer.release()
    return path


def write_frame_folder(folder: Path, frames: np.ndarray, ext: str = ".jpg") -> Path:
    """Write frames as 00000.jpg, 00001.jpg, ... (the DAVIS / MeViS layout)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}{ext}", quality=92)
    return folder
