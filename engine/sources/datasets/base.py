"""What every annotated-dataset adapter gives the engine, whatever the dataset's own layout.

An adapter recognises its layout from any folder inside it (a video of it, its JPEGImages, a split, the
root) and answers for one split: its videos, each video's objects with their referring expressions, and
their masks at the frames that have them (as COCO RLE at the decoded video's size, keyed by the frame's
position in the decoded video or frame folder). Annotations are read per video, never all of them per
video: a big file is indexed once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from engine.media import masks
from engine.media.video import frame_files


@dataclass(frozen=True)
class DatasetVideo:
    dataset: str  # e.g. "ref-youtube-vos"
    split: str
    root: Path  # the dataset's root folder
    key: str  # the dataset's own video id


@dataclass
class DatasetObject:
    obj_id: str  # the dataset's object id, as text ("1"): the stored object's identity (its row's instance)
    expressions: list[str]
    masks: dict[int, Any] = field(default_factory=dict)  # frame position -> RLE, or None where it is absent


@dataclass
class SplitSummary:
    """What ingest prints for a recognised split."""

    dataset: str
    split: str
    root: Path
    videos: int = 0
    objects: int = 0
    expressions: int = 0
    frames_with_masks: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> expressions or objects left out
    warnings: list[str] = field(default_factory=list)  # a part of the layout that is missing, by file


class Adapter(Protocol):
    name: str

    def video(self, path: Path) -> DatasetVideo | None:
        """The dataset video at path (a frame folder or a clip), or None when it is not one of this split's."""

    def mask_frames(self, video: DatasetVideo) -> list[int]:
        """Frame positions that have masks (empty for a split released without masks)."""

    def objects(self, video: DatasetVideo, frames: Sequence[int]) -> list[DatasetObject]:
        """The video's objects with their expressions and their masks at `frames`."""

    def summary(self) -> SplitSummary:
        """Counts over the whole split (for ingest's report)."""


def nonempty_rle(mask: np.ndarray):
    """The mask as COCO RLE, or None when no pixel is set (an object absent from that frame)."""
    return masks.encode(mask) if mask.any() else None


def palette_mask_frames(frames_dir: Path, annotations: Path) -> list[int]:
    """Positions of the frames in frames_dir that have a palette PNG of the same name in annotations."""
    if not annotations.is_dir():
        return []
    have = {p.stem for p in annotations.glob("*.png")}
    return [i for i, f in enumerate(frame_files(frames_dir)) if f.stem in have]


def palette_masks(
    frames_dir: Path, annotations: Path, frames: Sequence[int], obj_ids: Sequence[str]
) -> dict[str, dict[int, Any]]:
    """{object id: {frame: RLE or None}} from palette PNGs whose pixel value is the object id (DAVIS, YouTube-VOS)."""
    from PIL import Image

    names = [f.stem for f in frame_files(frames_dir)]
    labels = {f: np.asarray(Image.open(annotations / f"{names[f]}.png")) for f in frames}
    return {o: {f: nonempty_rle(labels[f] == int(o)) for f in frames} for o in obj_ids}


@lru_cache(maxsize=16)
def read_videos(meta_file: Path) -> dict:
    """The "videos" table of a meta_expressions.json (Ref-YouTube-VOS, MeViS), read once."""
    return json.loads(meta_file.read_text())["videos"]


class MetaExpressionsSplit:
    """What Ref-YouTube-VOS and MeViS share: a split whose videos are the frame folders
    <root>/<split>/JPEGImages/<vid>, listed in a meta_expressions file's "videos" table (`meta_file`)."""

    name: str
    root: Path
    split: str
    meta_file: Path

    @property
    def meta(self) -> dict:
        return read_videos(self.meta_file)

    def video(self, path: Path) -> DatasetVideo | None:
        if path.parent != self.root / self.split / "JPEGImages":  # in the layout: a dataset video, listed or not
            return None
        return DatasetVideo(self.name, self.split, self.root, path.name)
