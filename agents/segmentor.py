"""Segmentor backends that need no model: masks an annotated dataset ships.

The interface every backend implements (Segmentor), its request and its tracks are defined in
engine/runtime/segmentation.py (the runtime calls it; engine/ imports no agent) and re-exported here for the
backends and pipelines. A backend is built once per actor from the config's `segmentor` section, then called once
per video with all of that video's nouns (they share one inference state in SAM 2):

    seg = Backend(cfg.segmentor)
    tracks = seg.segment(request, frames)   # frames: (T, H, W, 3) uint8 RGB at request.frame_indices

Backends are chosen by name (the SEGMENTORS table in engine/registry.py) or by an import path
'package.module:Class'; engine/runtime/plugins.py checks each against Segmentor when it loads it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.media import masks
from engine.runtime.segmentation import Segmentor, SegmentRequest, Track

__all__ = ["DatasetMasksSegmentor", "SegmentRequest", "Segmentor", "Track"]


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
    box = (masks.bbox_xyxy(frame_masks[anchor]) if areas[anchor] else None) or (0.0, 0.0, 0.0, 0.0)
    return Track(
        noun,
        instance,
        anchor,
        box,
        grounding_score=1.0,
        mask_score=1.0,
        masks={f: frame_masks.get(f) for f in frame_indices},
    )
