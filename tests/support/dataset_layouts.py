"""Tiny annotated datasets in the Ref-YouTube-VOS and MeViS layouts, made from synthetic clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from engine.media import masks
from synthetic import render, write_frame_folder

EXPRESSIONS = {"red square": "a red square moving to the right", "blue circle": "the blue circle drifting left"}


def make_dataset(root: Path, layout: str, name: str = "vid1", num_frames: int = 10) -> dict[str, np.ndarray]:
    """Write <root>/JPEGImages/<name>/, masks and meta_expressions.json; returns the ground-truth masks."""
    frames, gt = render(num_frames, 64, 48)
    write_frame_folder(root / "JPEGImages" / name, frames)
    objects = list(gt)  # object i + 1 in Ref-YouTube-VOS palettes, annotation id i in MeViS
    meta = {"videos": {name: {"frames": [f"{i:05d}" for i in range(num_frames)], "expressions": {}}}}
    for i, noun in enumerate(objects):
        exp = {"exp": EXPRESSIONS[noun]}
        exp.update({"obj_id": str(i + 1)} if layout == "ytvos" else {"obj_id": [i], "anno_id": [i]})
        meta["videos"][name]["expressions"][str(i)] = exp
    if layout == "ytvos":
        (root / "Annotations" / name).mkdir(parents=True)
        for t in range(num_frames):
            label = np.zeros((48, 64), np.uint8)
            for i, noun in enumerate(objects):
                label[gt[noun][t]] = i + 1
            image = Image.fromarray(label, mode="P")
            image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759)
            image.save(root / "Annotations" / name / f"{t:05d}.png")
    else:
        mask_dict = {str(i): [masks.encode(gt[noun][t]) if gt[noun][t].any() else None for t in range(num_frames)]
                     for i, noun in enumerate(objects)}
        (root / "mask_dict.json").write_text(json.dumps(mask_dict))
    (root / "meta_expressions.json").write_text(json.dumps(meta))
    return gt
