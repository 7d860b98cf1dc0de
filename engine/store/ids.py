"""Stable ids derived from content, so that repeating any insert is harmless.

A video's id is a hash of its bytes (a frame folder: of its file names and bytes); every other
unit's id hashes its parents' ids with the values that define it (noun, stage version, ...).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

ID_HEX = 32  # 128 bits: collisions are not a practical concern at 10^8 units
_CHUNK = 1 << 20


def _hash_files(files: Iterable[Path], root: Path | None) -> str:
    h = hashlib.sha256()
    for f in files:
        if root is not None:  # a frame folder: names matter (frame order), not the folder's location
            h.update(f.relative_to(root).as_posix().encode() + b"\0")
        with f.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()[:ID_HEX]


def file_content_id(path: Path) -> str:
    """Id of a video file: sha256 of its bytes (truncated)."""
    return _hash_files([path], None)


def folder_content_id(folder: Path, frames: list[Path]) -> str:
    """Id of a folder of frames: sha256 over each frame's relative name and bytes, in frame order."""
    return _hash_files(frames, folder)


def stable_id(kind: str, *parts: object) -> str:
    """Id of a derived unit, e.g. stable_id("object", video_id, "man", 0, "analyzer@1")."""
    payload = json.dumps([kind, *parts], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:ID_HEX]


def lineage_key(parent: str | None, own_version: str) -> str:
    """The lineage of a stage's results: its own version chained to the lineage of the stage before it.

    Two runs give the same key exactly when every stage up to this one has the same version, so a new
    prompt, model or backend version gives new keys to its stage and every stage after it.
    """
    return stable_id("lineage", parent, own_version)
