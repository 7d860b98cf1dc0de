"""A2D-Sentences, in its released layout:

    <root>/Release/clips320H/<vid>.mp4
    <root>/Release/videoset.csv                     no header; 9 columns, the last 0 = train, 1 = test
    <root>/text_annotations/a2d_annotation.txt      header video_id,instance_id,query (instance ids 0-based)
    <root>/text_annotations/a2d_missed_videos.txt   videos with no annotation: left out
    <root>/text_annotations/a2d_annotation_with_instances/<vid>/<NNNNN>.h5

Each .h5 is one annotated frame (the name is the 1-based frame number, so the decoded index is NNNNN - 1)
holding `instance` (the ids present) and `reMask`, stored transposed: (N, W, H), or (W, H) for one instance.
Only a few frames per clip are annotated; those are the mask frames. One row of the released annotation
file has the instance id "1 (copy)": it is skipped and counted, as MTTR drops it.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine.sources.datasets.base import DatasetObject, DatasetVideo, SplitSummary, nonempty_rle

NAME = "a2d-sentences"
SPLITS = {"0": "train", "1": "test"}


class A2DSentences:
    name = NAME

    def __init__(self, root: Path, split: str):
        self.root, self.split = root, split
        self.clips = root / "Release" / "clips320H"
        self.h5_dir = root / "text_annotations" / "a2d_annotation_with_instances"

    @classmethod
    def find(cls, path: Path) -> A2DSentences | None:
        for folder in (path, *path.parents):
            if folder.name == "clips320H" and folder.parent.name == "Release":
                root = folder.parent.parent
                if (root / "text_annotations" / "a2d_annotation.txt").is_file():
                    return _adapter(root, _tables(root)[0].get(path.stem, "unlisted"))
        return None

    def video(self, path: Path) -> DatasetVideo | None:
        if path.parent != self.clips or _tables(self.root)[0].get(path.stem, "unlisted") != self.split:
            return None
        return DatasetVideo(NAME, self.split, self.root, path.stem)

    def mask_frames(self, video: DatasetVideo) -> list[int]:
        if video.key in _tables(self.root)[2]:
            return []
        return sorted(int(p.stem) - 1 for p in (self.h5_dir / video.key).glob("*.h5"))

    def objects(self, video: DatasetVideo, frames: Sequence[int]) -> list[DatasetObject]:
        import h5py

        queries = _tables(self.root)[1].get(video.key, {})
        objects = {i: DatasetObject(str(i), texts) for i, texts in sorted(queries.items())}
        for f in frames:
            h5 = self.h5_dir / video.key / f"{f + 1:05d}.h5"
            with h5py.File(h5, "r") as fh:
                ids = [int(x) for x in np.asarray(fh["instance"]).ravel()]
                stack = np.asarray(fh["reMask"])
            stack = stack[None] if stack.ndim == 2 else stack
            stack = stack.transpose(0, 2, 1)  # stored (N, W, H): (N, H, W)
            for i, obj in objects.items():
                obj.masks[f] = nonempty_rle(stack[ids.index(i)] > 0) if i in ids else None
        return list(objects.values())

    def summary(self) -> SplitSummary:
        s = SplitSummary(NAME, self.split, self.root)
        split_of, queries, missed, bad = _tables(self.root)
        for vid, sp in split_of.items():
            if sp != self.split:
                continue
            if vid in missed:
                s.skipped["videos listed in a2d_missed_videos.txt"] = (
                    s.skipped.get("videos listed in a2d_missed_videos.txt", 0) + 1
                )
                continue
            s.videos += 1
            s.objects += len(queries.get(vid, {}))
            s.expressions += sum(len(q) for q in queries.get(vid, {}).values())
            if (self.h5_dir / vid).is_dir():
                s.frames_with_masks += sum(1 for _ in (self.h5_dir / vid).glob("*.h5"))
        malformed = sum(n for vid, n in bad.items() if split_of.get(vid, "unlisted") == self.split)
        if malformed:
            s.skipped["annotation rows with a malformed instance id"] = malformed
        if not self.h5_dir.is_dir():
            s.warnings.append(f"no masks: {self.h5_dir} is missing")
        if not (self.root / "Release" / "videoset.csv").is_file():
            s.warnings.append(f"{self.root / 'Release' / 'videoset.csv'} is missing: splits unknown")
        return s


@lru_cache(maxsize=4)
def _tables(root: Path) -> tuple[dict[str, str], dict[str, dict[int, list[str]]], frozenset[str], dict[str, int]]:
    """(video -> split, video -> instance -> queries, missed videos, video -> malformed rows)."""
    split_of: dict[str, str] = {}
    videoset = root / "Release" / "videoset.csv"
    if videoset.is_file():
        with videoset.open(newline="") as fh:
            for row in csv.reader(fh):
                if row:
                    split_of[row[0]] = SPLITS.get(row[-1].strip(), "unlisted")
    queries: dict[str, dict[int, list[str]]] = {}
    bad: dict[str, int] = {}  # video -> rows whose instance id is not an integer
    with (root / "text_annotations" / "a2d_annotation.txt").open(newline="", encoding="utf-8") as fh:
        for line in csv.DictReader(fh):
            try:
                instance = int(line["instance_id"])
            except (TypeError, ValueError):
                bad[line["video_id"]] = bad.get(line["video_id"], 0) + 1
                continue
            queries.setdefault(line["video_id"], {}).setdefault(instance, []).append(line["query"].strip())
    missed_file = root / "text_annotations" / "a2d_missed_videos.txt"
    missed = frozenset(missed_file.read_text().split()) if missed_file.is_file() else frozenset()
    return split_of, queries, missed, bad


@lru_cache(maxsize=16)
def _adapter(root: Path, split: str) -> A2DSentences:
    return A2DSentences(root, split)
