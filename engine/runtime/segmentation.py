"""The segmentor interface: what the runtime asks of a backend (SegmentRequest), what it gets back (Track), and
the one definition of a backend (Segmentor), which engine/runtime/plugins.py checks every backend against at load.

It lives in engine/ because the runtime calls it and engine/ imports no agent; the backends (agents/segmentor.py,
agents/grounded_sam2.py, or any 'package.module:Class') implement it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class SegmentRequest:
    video_id: str
    video_path: str  # absolute: a file or a frame folder
    frame_indices: tuple[int, ...]  # the sampled mask frames, counted from the unit's first frame
    nouns: tuple[str, ...]
    height: int
    width: int
    first_frame: int = 0  # a clip's offset in its source file: where frame_indices[i] is decoded from


@dataclass
class Track:
    noun: str
    instance: int  # 0, 1, ... among the tracks of this noun
    anchor_frame: int  # one of request.frame_indices
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 pixels on the anchor frame
    grounding_score: float
    mask_score: float
    masks: dict[int, Any] = field(default_factory=dict)  # frame index -> RLE or None


class Segmentor(Protocol):
    """A segmentor backend, built once per actor from the config's `segmentor` section, then called once per video
    with all of that video's nouns. Each noun yields zero tracks (not grounded), one, or several (distinct
    instances, never merged).

    A backend whose `version` depends on its config (and so is known only once built) also has a classmethod
    `version_for(cfg)` that returns it without building: the driver reads versions without loading any model.
    """

    version: str  # part of every masklet's id: a new version re-segments

    def __init__(self, cfg: Any) -> None: ...

    def segment(self, request: SegmentRequest, frames: np.ndarray) -> list[Track]:
        """The tracks of request.nouns; `frames`: (T, H, W, 3) uint8 RGB at request.frame_indices."""
        ...
