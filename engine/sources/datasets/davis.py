"""DAVIS-2017 with the referring expressions of Khoreva et al. (Ref-DAVIS17, the paper's Bench-Q source), in the
layout of its two downloads unzipped side by side:

    <root>/DAVIS/JPEGImages/480p/<vid>/00000.jpg ...
    <root>/DAVIS/Annotations_unsupervised/480p/<vid>/00000.png   (or Annotations/480p: see below)
    <root>/DAVIS/ImageSets/2017/train.txt, val.txt
    <root>/davis_text_annotations/Davis17_annot1.txt, Davis17_annot1_full_video.txt   (UTF-8)
                                 Davis17_annot2.txt, Davis17_annot2_full_video.txt   (Latin-1)

Expression lines are `<video> <obj_id> "<expression>"`; obj_id is 1-based and equals the palette value of
the masks. ReferFormer reads the masks from Annotations_unsupervised (its converter and evaluation), so
that set is used when present, else the semi-supervised Annotations; the summary says which. Three video
names are misspelled in the text files and are mapped as ReferFormer maps them. (ReferFormer's converted,
YouTube-VOS-style tree is read by the Ref-YouTube-VOS adapter.)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from engine.sources.datasets.base import DatasetObject, DatasetVideo, SplitSummary, palette_mask_frames, palette_masks

NAME = "ref-davis17"
TEXT_FILES = {
    "Davis17_annot1.txt": "utf-8",
    "Davis17_annot1_full_video.txt": "utf-8",
    "Davis17_annot2.txt": "latin-1",
    "Davis17_annot2_full_video.txt": "latin-1",
}
TYPOS = {"clasic-car": "classic-car", "dog-scale": "dogs-scale", "motor-bike": "motorbike"}


class DAVIS17:
    name = NAME

    def __init__(self, root: Path, split: str):
        self.root, self.split = root, split
        self.frames_dir = root / "DAVIS" / "JPEGImages" / "480p"
        unsup = root / "DAVIS" / "Annotations_unsupervised" / "480p"
        self.annotations = unsup if unsup.is_dir() else root / "DAVIS" / "Annotations" / "480p"

    @classmethod
    def find(cls, path: Path) -> DAVIS17 | None:
        for folder in (path, *path.parents):
            if folder.name == "480p" and folder.parent.name == "JPEGImages" and folder.parent.parent.name == "DAVIS":
                root = folder.parent.parent.parent
                if (root / "davis_text_annotations").is_dir():
                    name = path.name if path.parent == folder else ""
                    return _adapter(root, _splits(root).get(name, "trainval"))
        return None

    def video(self, path: Path) -> DatasetVideo | None:
        if path.parent != self.frames_dir or _splits(self.root).get(path.name, "trainval") != self.split:
            return None
        return DatasetVideo(NAME, self.split, self.root, path.name)

    def mask_frames(self, video: DatasetVideo) -> list[int]:
        return palette_mask_frames(self.frames_dir / video.key, self.annotations / video.key)

    def objects(self, video: DatasetVideo, frames: Sequence[int]) -> list[DatasetObject]:
        found = _expressions(self.root).get(video.key, {})
        ids = sorted(found, key=int)
        masks_of = palette_masks(self.frames_dir / video.key, self.annotations / video.key, frames, ids)
        return [DatasetObject(obj_id, found[obj_id], masks_of[obj_id]) for obj_id in ids]

    def summary(self) -> SplitSummary:
        s = SplitSummary(NAME, self.split, self.root)
        exps = _expressions(self.root)
        vids = [v for v, sp in _splits(self.root).items() if sp == self.split] or [
            p.name for p in self.frames_dir.iterdir() if p.is_dir()
        ]
        for vid in vids:
            s.videos += 1
            s.objects += len(exps.get(vid, {}))
            s.expressions += sum(len(t) for t in exps.get(vid, {}).values())
            if (self.annotations / vid).is_dir():
                s.frames_with_masks += sum(1 for _ in (self.annotations / vid).glob("*.png"))
        s.warnings += [
            f"{self.root / 'davis_text_annotations' / f} is missing"
            for f in TEXT_FILES
            if not (self.root / "davis_text_annotations" / f).is_file()
        ]
        if not self.annotations.is_dir():
            s.warnings.append(f"no masks: {self.annotations} is missing")
        else:
            s.warnings.append(f"masks from {self.annotations.parent.name} (as ReferFormer)")
        return s


@lru_cache(maxsize=4)
def _splits(root: Path) -> dict[str, str]:
    out = {}
    for split in ("train", "val"):
        f = root / "DAVIS" / "ImageSets" / "2017" / f"{split}.txt"
        if f.is_file():
            out.update({line.strip(): split for line in f.read_text().splitlines() if line.strip()})
    return out


@lru_cache(maxsize=4)
def _expressions(root: Path) -> dict[str, dict[str, list[str]]]:
    """video -> obj_id -> expressions, from every text file present, in file order."""
    out: dict[str, dict[str, list[str]]] = {}
    for name, encoding in TEXT_FILES.items():
        f = root / "davis_text_annotations" / name
        if not f.is_file():
            continue
        for line in f.read_text(encoding=encoding).splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue
            video, obj_id = TYPOS.get(parts[0], parts[0]), parts[1]
            text = " ".join(parts[2:])[1:-1].strip()  # the expression is quoted
            if text:
                out.setdefault(video, {}).setdefault(obj_id, []).append(text)
    return out


@lru_cache(maxsize=16)
def _adapter(root: Path, split: str) -> DAVIS17:
    return DAVIS17(root, split)
