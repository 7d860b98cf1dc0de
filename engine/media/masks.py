"""Binary masks as COCO RLE (pycocotools), JSON-safe, plus masklet quality metrics.

An RLE here is ``{"size": [h, w], "counts": "<compressed string>"}``: the record format of
VideoRefer-700K. ``None`` stands for an empty mask where the format allows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

import numpy as np
from pycocotools import mask as cocomask


class RLE(TypedDict):
    size: list[int]
    counts: str


def encode(mask: np.ndarray) -> RLE:
    """(H, W) bool/uint8 mask -> JSON-safe compressed RLE."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    rle = cocomask.encode(np.asfortranarray(mask.astype(np.uint8, copy=False)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def _coco(rle: Mapping) -> dict:
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE (some datasets ship it): compress first
        return cocomask.frPyObjects(dict(rle), *rle["size"])
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def decode(rle: Mapping) -> np.ndarray:
    """RLE -> (H, W) bool mask."""
    return cocomask.decode(_coco(rle)).astype(bool)


def area(rle: Mapping | None) -> int:
    return 0 if rle is None else int(cocomask.area(_coco(rle)))


def bbox_xyxy(rle: Mapping) -> tuple[float, float, float, float] | None:
    """Tight box in pixels (x0, y0, x1, y1), exclusive end; None for an empty mask."""
    if area(rle) == 0:
        return None
    x, y, w, h = cocomask.toBbox(_coco(rle)).tolist()
    return (x, y, x + w, y + h)


def iou(a: Mapping | None, b: Mapping | None) -> float:
    """IoU of two masks of the same size; two empty masks count as identical (1.0)."""
    if a is None or b is None:
        return 1.0 if area(a) == area(b) == 0 else 0.0
    if list(a["size"]) != list(b["size"]):
        raise ValueError(f"masks differ in size: {a['size']} vs {b['size']}")
    if area(a) == 0 and area(b) == 0:
        return 1.0
    return float(cocomask.iou([_coco(a)], [_coco(b)], [0])[0][0])


# --- masklet metrics: a masklet is {frame_index: RLE or None} over the sampled frames ---------------


def _ordered(masklet: Mapping[int, Mapping | None]) -> list[Mapping | None]:
    return [masklet[k] for k in sorted(masklet, key=int)]


def coverage(masklet: Mapping[int, Mapping | None]) -> float:
    """Fraction of sampled frames whose mask is non-empty."""
    rles = _ordered(masklet)
    return sum(area(r) > 0 for r in rles) / len(rles) if rles else 0.0


def consecutive_ious(masklet: Mapping[int, Mapping | None]) -> list[float]:
    """IoU between each pair of consecutive sampled frames (a track that jumps shows low values)."""
    rles = _ordered(masklet)
    return [iou(a, b) for a, b in zip(rles, rles[1:])]


def area_variation(masklet: Mapping[int, Mapping | None]) -> float:
    """Coefficient of variation (std / mean) of the non-empty masks' areas; 0 for fewer than two."""
    areas = np.array([a for a in (area(r) for r in _ordered(masklet)) if a > 0], dtype=float)
    if len(areas) < 2:
        return 0.0
    return float(areas.std() / areas.mean())


def border_contact(masklet: Mapping[int, Mapping | None]) -> float:
    """Fraction of non-empty masks that touch the image border (objects cut off by the frame)."""
    touching = total = 0
    for rle in _ordered(masklet):
        if rle is None or (box := bbox_xyxy(rle)) is None:
            continue
        h, w = rle["size"]
        total += 1
        touching += box[0] <= 0 or box[1] <= 0 or box[2] >= w or box[3] >= h
    return touching / total if total else 0.0


def quality(masklet: Mapping[int, Mapping | None]) -> dict[str, float | int]:
    """The masklet metrics the store keeps, in one dict (column name -> value)."""
    ious = consecutive_ious(masklet)
    return {
        "coverage": coverage(masklet),
        "area_variation": area_variation(masklet),
        "mean_consecutive_iou": float(np.mean(ious)) if ious else 1.0,
        "empty_frames": sum(area(r) == 0 for r in _ordered(masklet)),
        "border_contact": border_contact(masklet),
    }


class SegmentorOutputError(ValueError):
    """A backend's masks do not fit the request: a size other than the decoded frames', or a frame not asked for.

    Stored, such masks would pass every later step and misalign in the trainer, so the unit fails instead.
    """


def check_masks(frame_masks: dict, frame_indices, size: tuple[int, int], backend: str, video: str) -> None:
    """Raise SegmentorOutputError unless every mask is at a requested frame and of the frames' (height, width)."""
    extra = sorted(set(map(int, frame_masks)) - set(map(int, frame_indices)))
    if extra:
        raise SegmentorOutputError(
            f"segmentor {backend} returned masks for frames {extra[:5]} of {video}, "
            f"which were not asked for (asked: {list(frame_indices)[:5]}...)"
        )
    for f, rle in frame_masks.items():
        if rle is not None and tuple(rle["size"]) != tuple(size):
            raise SegmentorOutputError(
                f"segmentor {backend} returned a mask of {tuple(rle['size'])} for frame {f} "
                f"of {video}, whose frames are {tuple(size)}"
            )
