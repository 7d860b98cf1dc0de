"""Segmentor: the interface every backend implements, and a backend that reads dataset masks.

A backend is built once per actor from the config's `segmentor` section, then called once per
video with all of that video's nouns (they share one inference state in SAM 2):

    seg = Backend(cfg.segmentor)
    tracks = seg.segment(request, frames)   # frames: (T, H, W, 3) uint8 RGB at request.frame_indices

Each noun yields zero tracks (not grounded), one, or several (distinct instances, never merged).
Backends are chosen by name (engine/plugins.py) or by an import path 'package.module:Class'.
"""

from __future__ import annotations

import json
from functools import lru_cache
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from engine.media import masks
from engine.media.video import frame_files


@dataclass(frozen=True)
class SegmentRequest:
    video_id: str
    video_path: str  # absolute: a file or a frame folder
    frame_indices: tuple[int, ...]  # the sampled mask frames, absolute indices
    nouns: tuple[str, ...]
    height: int
    width: int


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
    """Masks shipped with a dataset (Ref-YouTube-VOS or MeViS layout) instead of a model.

    The video must be a frame folder `<root>/JPEGImages/<video>/`; `<root>/meta_expressions.json`
    gives each object's referring expressions, and masks come from `<root>/Annotations/<video>/*.png`
    (palette PNGs, pixel value = object id: Ref-YouTube-VOS) or `<root>/mask_dict.json` (RLE per
    frame per annotation id: MeViS). A noun is matched to the objects whose expressions contain it.
    """

    version = "dataset_masks@1"

    def __init__(self, cfg: Any = None):
        self.cfg = cfg

    def segment(self, request: SegmentRequest, frames: np.ndarray) -> list[Track]:
        found = dataset_root(request.video_path)
        if found is None:
            raise ValueError(f"{request.video_path} is not a frame folder of a MeViS / Ref-YouTube-VOS dataset")
        root, meta = found
        objects = dataset_objects(root, Path(request.video_path).name, meta, request.frame_indices)
        tracks: list[Track] = []
        for noun in request.nouns:
            found = [o for o in objects if set(noun.split()) <= set().union(*map(_words, o["expressions"]))]
            for instance, obj in enumerate(found):
                tracks.append(_track_from_masks(noun, instance, obj["masks"], request.frame_indices))
        return tracks


def dataset_root(video_path: str | Path) -> tuple[Path, dict] | None:
    """(dataset root, this video's meta) when video_path is `<root>/JPEGImages/<video>` of an annotated dataset."""
    folder = Path(video_path)
    meta_file = folder.parent.parent / "meta_expressions.json"
    if folder.parent.name != "JPEGImages" or not meta_file.is_file():
        return None
    meta = _read_meta(meta_file).get(folder.name)
    return (folder.parent.parent, meta) if meta else None


@lru_cache(maxsize=8)
def _read_meta(meta_file: Path) -> dict:
    return json.loads(meta_file.read_text())["videos"]


def dataset_objects(root: Path, name: str, meta: dict, frame_indices: tuple[int, ...]) -> list[dict]:
    """[{"obj_id", "expressions": [...], "masks": {frame: RLE or None}}] for one dataset video."""
    by_obj: dict[str, dict] = {}
    for exp in meta["expressions"].values():
        ids = exp.get("anno_id", exp.get("obj_id"))
        key = json.dumps(ids if isinstance(ids, list) else [ids])
        by_obj.setdefault(key, {"ids": json.loads(key), "expressions": []})["expressions"].append(exp["exp"])
    if (root / "mask_dict.json").is_file():  # MeViS: anno_id -> [RLE or None per frame]
        mask_dict = json.loads((root / "mask_dict.json").read_text())
        for obj in by_obj.values():
            obj["masks"] = {f: _union([mask_dict[str(a)][f] for a in obj["ids"]]) for f in frame_indices}
    else:  # Ref-YouTube-VOS: palette PNGs, one per frame, pixel value = object id
        from PIL import Image

        pngs = frame_files(root / "Annotations" / name)
        labels = {f: np.asarray(Image.open(pngs[f])) for f in frame_indices if f < len(pngs)}
        for obj in by_obj.values():
            obj["masks"] = {f: _encode_nonempty(np.isin(labels[f], [int(i) for i in obj["ids"]])) if f in labels else None
                            for f in frame_indices}
    return [{"obj_id": o["ids"], "expressions": o["expressions"], "masks": o["masks"]} for o in by_obj.values()]


def _union(rles: list[Any]) -> Any:
    present = [masks.decode(r) for r in rles if r is not None]
    return _encode_nonempty(np.logical_or.reduce(present)) if present else None


def _encode_nonempty(mask: np.ndarray) -> Any:
    return masks.encode(mask) if mask.any() else None


def _track_from_masks(noun: str, instance: int, frame_masks: dict[int, Any], frame_indices) -> Track:
    areas = {f: masks.area(frame_masks.get(f)) for f in frame_indices}
    anchor = max(frame_indices, key=lambda f: areas[f])  # the frame where the object is largest
    box = masks.bbox_xyxy(frame_masks[anchor]) if areas[anchor] else (0.0, 0.0, 0.0, 0.0)
    return Track(noun, instance, anchor, box, grounding_score=1.0, mask_score=1.0,
                 masks={f: frame_masks.get(f) for f in frame_indices})
