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

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from engine.sources.datasets.base import (
    DatasetObject,
    DatasetVideo,
    MetaExpressionsSplit,
    SplitSummary,
    palette_mask_frames,
    palette_masks,
)

NAME = "ref-youtube-vos"


class RefYouTubeVOS(MetaExpressionsSplit):
    name = NAME

    def __init__(self, root: Path, split: str):
        self.root, self.split = root, split
        self.meta_file = root / "meta_expressions" / split / "meta_expressions.json"
        self.annotations = root / split / "Annotations"

    @classmethod
    def find(cls, path: Path) -> RefYouTubeVOS | None:
        """The split holding path, for a frame folder <root>/<split>/JPEGImages/<vid> (or any folder above it)."""
        for folder in (path, *path.parents):
            if (
                folder.name == "JPEGImages"
                and (
                    folder.parent.parent / "meta_expressions" / folder.parent.name / "meta_expressions.json"
                ).is_file()
            ):
                return _adapter(folder.parent.parent, folder.parent.name)
        return None

    def mask_frames(self, video: DatasetVideo) -> list[int]:
        return palette_mask_frames(self.root / self.split / "JPEGImages" / video.key, self.annotations / video.key)

    def objects(self, video: DatasetVideo, frames: Sequence[int]) -> list[DatasetObject]:
        by_obj: dict[str, DatasetObject] = {}
        for exp in self.meta.get(video.key, {}).get("expressions", {}).values():
            if "obj_id" in exp:
                obj = by_obj.setdefault(str(exp["obj_id"]), DatasetObject(str(exp["obj_id"]), []))
                obj.expressions.append(exp["exp"])
        found = palette_masks(
            self.root / self.split / "JPEGImages" / video.key, self.annotations / video.key, frames, list(by_obj)
        )
        for obj in by_obj.values():
            obj.masks = found[obj.obj_id]
        return list(by_obj.values())

    def summary(self) -> SplitSummary:
        s = SplitSummary(NAME, self.split, self.root)
        for v in self.meta.values():
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


@lru_cache(maxsize=16)
def _adapter(root: Path, split: str) -> RefYouTubeVOS:
    return RefYouTubeVOS(root, split)
