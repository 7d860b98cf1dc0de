"""Ref-YouTube-VOS (the 2021 RVOS release), in its released layout:

    <root>/train/JPEGImages/<vid>/00000.jpg ...       frames (every 5th of the source video)
    <root>/train/Annotations/<vid>/00000.png ...      palette PNGs, pixel value = object id
    <root>/train/meta.json                            objects and their categories
    <root>/meta_expressions/train/meta_expressions.json
    <root>/valid/JPEGImages/<vid>/...                 no Annotations: expressions only
    <root>/meta_expressions/valid/meta_expressions.json

meta_expressions: {"videos": {vid: {"expressions": {"0": {"exp": "...", "obj_id": "1"}}, "frames": [...]}}}
(valid has no obj_id). The same video id is in both splits' files; the split comes from the folder.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.media import masks
from engine.media.video import frame_files
from engine.sources.datasets.base import DatasetObject, DatasetVideo, SplitSummary

NAME = "ref-youtube-vos"


class RefYouTubeVOS:
    name = NAME

    def __init__(self, root: Path, split: str):
        self.root, self.split = root, split
        self.meta_file = root / "meta_expressions" / split / "meta_expressions.json"
        self.annotations = root / split / "Annotations"

    @classmethod
    def find(cls, path: Path) -> "RefYouTubeVOS | None":
        """The split holding path, for a frame folder <root>/<split>/JPEGImages/<vid> (or any folder above it)."""
        for folder in (path, *path.parents):
            if folder.name == "JPEGImages" and (folder.parent.parent / "meta_expressions" / folder.parent.name
                                                / "meta_expressions.json").is_file():
                return _adapter(folder.parent.parent, folder.parent.name)
        return None

    @property
    def meta(self) -> dict:
        return _read(self.meta_file)

    def video(self, path: Path) -> DatasetVideo | None:
        if path.parent != self.root / self.split / "JPEGImages":  # in the layout: a dataset video, listed or not
            return None
        return DatasetVideo(NAME, self.split, self.root, path.name)

    def mask_frames(self, video: DatasetVideo) -> list[int]:
        folder = self.annotations / video.key
        if not folder.is_dir():
            return []
        have = {p.stem for p in folder.glob("*.png")}
        frames = frame_files(self.root / self.split / "JPEGImages" / video.key)
        return [i for i, f in enumerate(frames) if f.stem in have]

    def objects(self, video: DatasetVideo, frames: Sequence[int]) -> list[DatasetObject]:
        from PIL import Image

        by_obj: dict[str, DatasetObject] = {}
        for exp in self.meta.get(video.key, {}).get("expressions", {}).values():
            if "obj_id" in exp:
                obj = by_obj.setdefault(str(exp["obj_id"]), DatasetObject(str(exp["obj_id"]), []))
                obj.expressions.append(exp["exp"])
        names = [f.stem for f in frame_files(self.root / self.split / "JPEGImages" / video.key)]
        labels = {f: np.asarray(Image.open(self.annotations / video.key / f"{names[f]}.png")) for f in frames}
        for obj in by_obj.values():
            obj.masks = {f: _nonempty(labels[f] == int(obj.obj_id)) for f in frames}
        return list(by_obj.values())

    def summary(self) -> SplitSummary:
        s = SplitSummary(NAME, self.split, self.root)
        for vid, v in self.meta.items():
            s.videos += 1
            s.expressions += len(v["expressions"])
            s.objects += len({str(e["obj_id"]) for e in v["expressions"].values() if "obj_id" in e})
        if self.annotations.is_dir():
            s.frames_with_masks = sum(1 for _ in self.annotations.glob("*/*.png"))
        else:
            s.warnings.append(f"no masks: {self.annotations} is missing (expressions only)")
        if not (self.root / self.split / "meta.json").is_file() and self.split == "train":
            s.warnings.append(f"{self.root / self.split / 'meta.json'} is missing")
        return s


def _nonempty(mask: np.ndarray):
    return masks.encode(mask) if mask.any() else None


@lru_cache(maxsize=16)
def _adapter(root: Path, split: str) -> RefYouTubeVOS:
    return RefYouTubeVOS(root, split)


@lru_cache(maxsize=16)
def _read(meta_file: Path) -> dict:
    return json.loads(meta_file.read_text())["videos"]
