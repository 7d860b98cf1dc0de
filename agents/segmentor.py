"""Segmentor: the interface every backend implements, and a backend that reads dataset masks.

A backend is built once per actor from the config's `segmentor` section, then called once per
video with all of that video's nouns (they share one inference state in SAM 2):

    seg = Backend(cfg.segmentor)
    tracks = seg.segment(request, frames)   # frames: (T, H, W, 3) uint8 RGB at request.frame_indices

Each noun yields zero tracks (not grounded), one, or several (distinct instances, never merged).
Backends are chosen by name (engine/plugins.py) or by an import path 'package.module:Class'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from engine.media import masks


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
    version: str  # part of every masklet's id: a new version re-segments

    def segment(self, request: SegmentRequest, frames: np.ndarray) -> list[Track]: ...


def _words(text: str) -> set[str]:
    return set(text.lower().replace(",", " ").replace(".", " ").split())


class DatasetMasksSegmentor:
    """Masks shipped with an annotated dataset (engine/sources/datasets) instead of a model.

    A noun is matched to the objects whose referring expressions contain all its words; masks are the
    dataset's at the requested frames that have them (None at the others).
    """

    version = "dataset_masks@2"

    def __init__(self, cfg: Any = None):
        self.cfg = cfg

    def segment(self, request: SegmentRequest, frames: np.ndarray) -> list[Track]:
        from engine.sources.datasets import dataset_of

        found = dataset_of(str(request.video_path))
        if found is None:
            raise ValueError(
                f"{request.video_path} is not a video of an annotated dataset (MeViS, Ref-YouTube-VOS, "
                "A2D-Sentences, Ref-DAVIS17) in its released layout"
            )
        adapter, video = found
        have = set(adapter.mask_frames(video))
        objects = adapter.objects(video, [f for f in request.frame_indices if f in have])
        tracks: list[Track] = []
        for noun in request.nouns:
            matching = [o for o in objects if set(noun.split()) <= set().union(*map(_words, o.expressions))]
            for instance, obj in enumerate(matching):
                tracks.append(_track_from_masks(noun, instance, obj.masks, request.frame_indices))
        return tracks


def _track_from_masks(noun: str, instance: int, frame_masks: dict[int, Any], frame_indices) -> Track:
    areas = {f: masks.area(frame_masks.get(f)) for f in frame_indices}
    anchor = max(frame_indices, key=lambda f: areas[f])  # the frame where the object is largest
    box = masks.bbox_xyxy(frame_masks[anchor]) if areas[anchor] else (0.0, 0.0, 0.0, 0.0)
    return Track(
        noun,
        instance,
        anchor,
        box,
        grounding_score=1.0,
        mask_score=1.0,
        masks={f: frame_masks.get(f) for f in frame_indices},
    )
