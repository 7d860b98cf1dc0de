"""Annotated datasets the paper took QA from (MeViS, Ref-YouTube-VOS, A2D-Sentences) and DAVIS-2017 with its
referring expressions (the paper's Bench-Q source), each read in its released layout by one adapter
(engine/sources/datasets/base.py says what an adapter gives)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from engine.sources.datasets.a2d import A2DSentences
from engine.sources.datasets.base import Adapter, DatasetObject, DatasetVideo, SplitSummary
from engine.sources.datasets.davis import DAVIS17
from engine.sources.datasets.mevis import MeViS
from engine.sources.datasets.ytvos import RefYouTubeVOS

ADAPTERS = (RefYouTubeVOS, MeViS, DAVIS17, A2DSentences)

__all__ = ["ADAPTERS", "Adapter", "DatasetObject", "DatasetVideo", "SplitSummary", "dataset_of", "find_split"]


def find_split(path: Path) -> Adapter | None:
    """The adapter of the dataset split that holds path (a video of it, or a folder inside it)."""
    for cls in ADAPTERS:
        found = cls.find(Path(path))
        if found is not None:
            return found
    return None


@lru_cache(maxsize=100_000)
def dataset_of(path: str) -> tuple[Adapter, DatasetVideo] | None:
    """(adapter, video) when the video at path (absolute) belongs to an annotated dataset, else None."""
    adapter = find_split(Path(path))
    if adapter is None:
        return None
    video = adapter.video(Path(path))
    return (adapter, video) if video is not None else None


def near_misses(paths: list[Path]) -> list[str]:
    """Warnings for folders laid out like a dataset that no adapter recognises, naming the file that is missing
    (their videos are then taken as plain videos)."""
    out: dict[str, str] = {}
    for path in paths:
        if find_split(path) is not None:
            continue
        parent = path.parent
        if parent.name == "480p" and parent.parent.name == "JPEGImages" and parent.parent.parent.name == "DAVIS":
            root = parent.parent.parent.parent
            out[str(parent)] = (
                f"{parent} looks like DAVIS-2017, but {root / 'davis_text_annotations'} (the referring "
                "expressions) is missing"
            )
        elif parent.name == "JPEGImages" and _dataset_like(parent.parent):
            split, root = parent.parent, parent.parent.parent
            out[str(parent)] = (
                f"{parent} looks like a Ref-YouTube-VOS or MeViS split, but neither "
                f"{root / 'meta_expressions' / split.name / 'meta_expressions.json'} nor "
                f"{split / 'meta_expressions.json'} exists"
            )
        elif parent.name == "clips320H" and parent.parent.name == "Release":
            out[str(parent)] = (
                f"{parent} looks like A2D-Sentences, but "
                f"{parent.parent.parent / 'text_annotations' / 'a2d_annotation.txt'} is missing"
            )
    return [f"{text}: its videos are taken as plain videos" for text in out.values()]


def _dataset_like(split: Path) -> bool:
    """A JPEGImages folder with a dataset's other parts beside it: masks, a meta file, an expressions folder. A bare
    <dir>/JPEGImages/<video>/ is the frame-folder layout plain inputs may use (examples/videos/frames)."""
    return (
        (split / "Annotations").is_dir()
        or (split / "meta.json").is_file()
        or (split / "mask_dict.json").is_file()
        or (split.parent / "meta_expressions").is_dir()
    )
