"""Stable ids derived from content, so that repeating any insert is harmless.

A video's id is a hash of its bytes (a frame folder: of its file names and bytes); every other
unit's id hashes its parents' ids with the values that define it (noun, stage version, ...).
The units derived from a video (objects, masklets, descriptions, reviews, samples) begin with the
video's prefix (`derived_id`), so that a video's rows sit together in every index keyed by them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

ID_HEX = 32  # 128 bits: collisions are not a practical concern at 10^8 units
VIDEO_PREFIX = 8  # hex digits of a video's id that begin the ids of the units derived from it
DERIVED_ID_LEN = VIDEO_PREFIX + ID_HEX
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


def derived_id(within: str, kind: str, *parts: object) -> str:
    """Id of a unit derived from a video: the video's prefix, then stable_id(kind, *parts).

    `within` is the video's id or the id of any unit derived from it (both begin with the prefix). The
    prefix keeps a video's objects, masklets, descriptions, reviews and samples side by side in every index
    keyed by their ids: a run writes an index page per video, where hashed ids put each row on a page of its
    own at a random place (in a store of a million objects, the writer's main cost; migration 0014).
    Parts name other derived units by their `hash_part`, so the hash is the id that engines before 0014 gave
    the unit, e.g. derived_id(object_id, "masklet", hash_part(object_id), lineage).
    """
    return within[:VIDEO_PREFIX] + stable_id(kind, *parts)


def hash_part(unit_id: str) -> str:
    """A unit's id without its video prefix: what ids hash, and what deterministic choices are keyed by."""
    return unit_id[-ID_HEX:]


def lineage_key(parent: str | None, own_version: str) -> str:
    """The lineage of a stage's results: its own version chained to the lineage of the stage before it.

    Two runs give the same key exactly when every stage up to this one has the same version, so a new
    prompt, model or backend version gives new keys to its stage and every stage after it.
    """
    return stable_id("lineage", parent, own_version)
