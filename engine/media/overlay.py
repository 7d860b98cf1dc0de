"""Overlays for reviewers, the review UI and mask-aware prompts: mask fill and contour, box and label.

Each object gets a distinct colour, as in Set-of-Mark prompting, so a model or a person can tell
instances of the same noun apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Well-separated hues (Glasbey-like) that stay readable on natural images.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (255, 225, 25),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 250, 200),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
    (255, 215, 180),
    (0, 0, 128),
    (128, 128, 128),
)


def color_for(index: int) -> tuple[int, int, int]:
    return PALETTE[index % len(PALETTE)]


@dataclass
class OverlayObject:
    """One object to draw. mask: (H, W) bool; box: (x0, y0, x1, y1) pixels; label: e.g. "0: man"."""

    mask: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None
    label: str | None = None
    color_index: int = 0


def mask_edge(mask: np.ndarray, thickness: int = 2) -> np.ndarray:
    """Pixels of mask within `thickness` of its border (4-neighbour erosion)."""
    inner = mask.astype(bool)
    for _ in range(thickness):
        shrunk = inner.copy()
        shrunk[1:, :] &= inner[:-1, :]
        shrunk[:-1, :] &= inner[1:, :]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        inner = shrunk
    return mask.astype(bool) & ~inner


def draw_overlay(
    frame: np.ndarray,
    objects: Sequence[OverlayObject],
    alpha: float = 0.45,
    contour: int = 2,
    font_size: int | None = None,
) -> np.ndarray:
    """Draw objects on an (H, W, 3) uint8 RGB frame; returns a new array of the same shape."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be (H, W, 3) RGB, got {frame.shape}")
    out = frame.astype(np.float32)
    h, w = frame.shape[:2]
    for obj in objects:
        if obj.mask is None:
            continue
        if obj.mask.shape != (h, w):
            raise ValueError(f"mask shape {obj.mask.shape} does not match frame {(h, w)}")
        tint = np.array(color_for(obj.color_index), dtype=np.float32)
        m = obj.mask.astype(bool)
        out[m] = out[m] * (1 - alpha) + tint * alpha
        if contour > 0:
            out[mask_edge(m, contour)] = tint
    image = Image.fromarray(out.round().clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_size or max(10, min(h, w) // 30))
    for obj in objects:
        color = color_for(obj.color_index)
        box = obj.box
        if box is None and obj.mask is not None and obj.mask.any():
            ys, xs = np.nonzero(obj.mask)
            box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        if obj.box is not None:
            draw.rectangle(
                [obj.box[0], obj.box[1], obj.box[2] - 1, obj.box[3] - 1], outline=color, width=max(1, contour)
            )
        if obj.label and box is not None:
            x0, y0 = max(0, box[0]), max(0, box[1])
            tb = draw.textbbox((x0, y0), obj.label, font=font)
            th = tb[3] - tb[1]
            y = y0 - th - 4 if y0 - th - 4 >= 0 else y0  # above the object when there is room
            tb = draw.textbbox((x0 + 2, y + 2), obj.label, font=font)
            draw.rectangle([tb[0] - 2, tb[1] - 2, tb[2] + 2, tb[3] + 2], fill=color)
            text_color = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
            draw.text((x0 + 2, y + 2), obj.label, fill=text_color, font=font)
    return np.asarray(image)
