"""MeViS, in its released layout (train, valid_u and valid):

    <root>/<split>/JPEGImages/<vid>/*.jpg
    <root>/<split>/meta_expressions.json   (meta_expressions_v2.json in MeViS v2)
        {"videos": {vid: {"expressions": {"0": {"exp", "obj_id": [..], "anno_id": [..]}}, "frames": [..]}}}
    <root>/<split>/mask_dict.json          {anno_id: [RLE or null, one per frame]}   (train and valid_u only)

mask_dict.json is several hundred MB for train. It is streamed once (ijson) into an index, a SQLite file
in the engine's cache keyed by the file's path, size and mtime; a video's masks are then a lookup by
anno_id. Expressions without a target (an empty anno_id, as in later releases) are skipped and counted;
an expression naming several objects describes them together, not any one of them: skipped and counted.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from engine.media import masks
from engine.sources.datasets.base import DatasetObject, DatasetVideo, MetaExpressionsSplit, SplitSummary

NAME = "mevis"


def cache_dir() -> Path:
    return Path(
        os.environ.get("VIDEOREFER_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "videorefer-engine"
    )


class MeViS(MetaExpressionsSplit):
    name = NAME

    def __init__(self, root: Path, split: str):
        self.root, self.split = root, split
        self.meta_file = _meta_file(root / split)
        self.mask_file = root / split / "mask_dict.json"

    @classmethod
    def find(cls, path: Path) -> MeViS | None:
        for folder in (path, *path.parents):
            if folder.name == "JPEGImages" and _meta_file(folder.parent).is_file():
                return _adapter(folder.parent.parent, folder.parent.name)
        return None

    def mask_frames(self, video: DatasetVideo) -> list[int]:
        listed = self.meta.get(video.key)
        return list(range(len(listed["frames"]))) if listed and self.mask_file.is_file() else []

    def _targets(self, exp: dict) -> list:
        return exp.get("anno_id", exp.get("obj_id")) or []

    def objects(self, video: DatasetVideo, frames: Sequence[int]) -> list[DatasetObject]:
        by_obj: dict[str, DatasetObject] = {}
        for exp in self.meta.get(video.key, {}).get("expressions", {}).values():
            ids = self._targets(exp)
            if len(ids) == 1:
                by_obj.setdefault(str(ids[0]), DatasetObject(str(ids[0]), [])).expressions.append(exp["exp"])
        per_frame = _index(self.mask_file).get(list(by_obj)) if by_obj else {}
        for anno_id, obj in by_obj.items():
            rles = per_frame[anno_id]
            obj.masks = {f: (_nonempty(rles[f]) if f < len(rles) else None) for f in frames}
        return list(by_obj.values())

    def summary(self) -> SplitSummary:
        s = SplitSummary(NAME, self.split, self.root)
        for v in self.meta.values():
            s.videos += 1
            ids = set()
            for exp in v["expressions"].values():
                targets = self._targets(exp)
                if not targets:
                    s.skipped["expressions without a target"] = s.skipped.get("expressions without a target", 0) + 1
                elif len(targets) > 1:
                    s.skipped["expressions naming several objects"] = (
                        s.skipped.get("expressions naming several objects", 0) + 1
                    )
                else:
                    s.expressions += 1
                    ids.add(str(targets[0]))
            s.objects += len(ids)
            if self.mask_file.is_file():
                s.frames_with_masks += len(v["frames"])
        if not self.mask_file.is_file():
            s.warnings.append(f"no masks: {self.mask_file} is missing (expressions only)")
        return s


def _meta_file(split: Path) -> Path:
    """v1's meta_expressions.json, or MeViS v2's meta_expressions_v2.json (its Hugging Face release)."""
    v1 = split / "meta_expressions.json"
    return v1 if v1.is_file() else split / "meta_expressions_v2.json"


def _nonempty(rle: Any):
    if rle is None:
        return None
    rle = {"size": list(rle["size"]), "counts": rle["counts"]}
    return rle if masks.area(rle) else None


class _MaskIndex:
    """anno_id -> its per-frame RLE list, from a SQLite index built by one streaming pass over mask_dict.json."""

    def __init__(self, mask_file: Path):
        st = mask_file.stat()
        tag = hashlib.sha256(f"{mask_file.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:24]
        self.path = cache_dir() / "datasets" / f"mevis-{tag}.sqlite"
        if not self.path.is_file():
            self._build(mask_file)
        self.db = sqlite3.connect(self.path, check_same_thread=False)

    def _build(self, mask_file: Path) -> None:
        import ijson

        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.unlink(missing_ok=True)
        db = sqlite3.connect(tmp)
        db.execute("CREATE TABLE masks (anno_id TEXT PRIMARY KEY, rles BLOB)")
        with mask_file.open("rb") as fh:  # one top-level item at a time: memory stays at one object's masks
            batch = []
            for anno_id, rles in ijson.kvitems(fh, "", use_float=True):
                batch.append((anno_id, orjson.dumps(rles)))
                if len(batch) >= 256:
                    db.executemany("INSERT INTO masks VALUES (?, ?)", batch)
                    batch.clear()
            db.executemany("INSERT INTO masks VALUES (?, ?)", batch)
        db.commit()
        db.close()
        os.replace(tmp, self.path)  # whole or absent: a crash mid-build leaves no half index

    def get(self, anno_ids: list[str]) -> dict[str, list]:
        marks = ",".join("?" * len(anno_ids))
        rows = dict(self.db.execute(f"SELECT anno_id, rles FROM masks WHERE anno_id IN ({marks})", anno_ids))
        missing = [a for a in anno_ids if a not in rows]
        if missing:
            raise KeyError(f"anno_id {missing[:5]} not in the dataset's mask_dict.json")
        return {a: orjson.loads(rows[a]) for a in anno_ids}


_BUILDING = threading.Lock()  # videos of one split load concurrently: the index is built by one of them


def _index(mask_file: Path) -> _MaskIndex:
    with _BUILDING:
        return _open_index(mask_file)


@lru_cache(maxsize=4)
def _open_index(mask_file: Path) -> _MaskIndex:
    return _MaskIndex(mask_file)


@lru_cache(maxsize=16)
def _adapter(root: Path, split: str) -> MeViS:
    return MeViS(root, split)
