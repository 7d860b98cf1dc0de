"""`engine validate`: check a VideoRefer-format file (ours or anyone's) and count records per defect.

Checks: the JSON shape of each record; `<video>` exactly once in the human turn; as many
`<region>` placeholders as `annotation` entries; every annotation value holds a `segmentation`
that decodes to its declared size; frame keys are integers, within the video's frame count when
the video can be found; no null or empty masks unless allowed. Reads JSON arrays and JSONL; our
own exports (one record per line) are read a line at a time, so memory does not grow with the file.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from engine.media import masks

DEFECTS = {
    "not_json": "a record that is not valid JSON",
    "not_a_record": "not an object with id, video, conversations and annotation",
    "bad_conversations": "conversations is not one human turn and one answer",
    "video_placeholder": "<video> missing from the human turn, or there more than once",
    "region_count": "count of <region> differs from the number of annotation entries",
    "empty_annotation": "an annotation entry with no frames",
    "frame_key": "a frame key that is not an integer",
    "frame_out_of_range": "a frame index outside the video",
    "missing_segmentation": "an annotation value without a segmentation",
    "bad_rle": "a segmentation that does not decode to its declared size",
    "null_mask": "a null or empty mask (allowed with --allow-empty)",
}


@dataclass
class Report:
    path: Path
    records: int = 0
    defects: Counter = field(default_factory=Counter)  # defect -> records having it
    examples: dict[str, str] = field(default_factory=dict)  # defect -> first record id

    @property
    def ok(self) -> bool:
        return not self.defects


def _records(path: Path) -> Iterator[tuple[str, Any]]:
    """(raw line or '', parsed record or None when that line is not JSON)."""
    with path.open(encoding="utf-8") as fh:
        first = fh.readline()
        rest_is_array = first.strip() == "["
    if not rest_is_array and first.lstrip().startswith("["):  # an array not written one record per line
        for rec in json.loads(path.read_text(encoding="utf-8")):
            yield "", rec
        return
    with path.open(encoding="utf-8") as fh:
        if rest_is_array:
            fh.readline()
        for line in fh:
            text = line.strip().rstrip(",")
            if not text or text == "]":
                continue
            try:
                yield text, json.loads(text)
            except json.JSONDecodeError:
                yield text, None


def check_record(rec: Any, allow_empty: bool, frames_of: Callable[[str], int | None]) -> set[str]:
    """The defects of one record (empty set: a valid record)."""
    if not isinstance(rec, dict) or not {"id", "video", "conversations", "annotation"} <= set(rec) \
            or not isinstance(rec.get("annotation"), list):
        return {"not_a_record"}
    found: set[str] = set()
    conv = rec["conversations"]
    if not (isinstance(conv, list) and len(conv) == 2 and all(isinstance(t, dict) and "value" in t for t in conv)):
        return {"bad_conversations"}
    human = str(conv[0]["value"])
    if human.count("<video>") != 1:
        found.add("video_placeholder")
    if human.count("<region>") != len(rec["annotation"]):
        found.add("region_count")
    n_frames = frames_of(str(rec["video"]))
    for entry in rec["annotation"]:
        if not isinstance(entry, dict) or not entry:
            found.add("empty_annotation")
            continue
        for key, value in entry.items():
            try:
                frame = int(key)
                if n_frames is not None and not 0 <= frame < n_frames:
                    found.add("frame_out_of_range")
            except (TypeError, ValueError):
                found.add("frame_key")
            if value is None:
                if not allow_empty:
                    found.add("null_mask")
                continue
            if not isinstance(value, dict) or "segmentation" not in value:
                found.add("missing_segmentation")
                continue
            seg = value["segmentation"]
            try:
                decoded = masks.decode(seg)
                if list(decoded.shape) != list(seg["size"]):
                    raise ValueError("size")
                if not allow_empty and not decoded.any():
                    found.add("null_mask")
            except Exception:  # pycocotools raises several types on malformed input
                found.add("bad_rle")
    return found


def validate_file(path: Path, video_root: Path | None = None, allow_empty: bool = False,
                  frames_of: Callable[[str], int | None] | None = None) -> Report:
    """Validate one file. Frame ranges are checked for videos found by frames_of or under video_root."""
    if frames_of is None:
        frames_of = _prober(video_root)
    report = Report(Path(path))
    for _, rec in _records(Path(path)):
        report.records += 1
        problems = {"not_json"} if rec is None else check_record(rec, allow_empty, frames_of)
        for p in problems:
            report.defects[p] += 1
            report.examples.setdefault(p, str(rec.get("id", "?")) if isinstance(rec, dict) else "?")
    return report


def _prober(video_root: Path | None) -> Callable[[str], int | None]:
    from engine.media.video import MediaError, probe

    cache: dict[str, int | None] = {}

    def frames_of(rel: str) -> int | None:
        if video_root is None:
            return None
        if rel not in cache:
            try:
                cache[rel] = probe(video_root / rel).num_frames
            except (MediaError, OSError):
                cache[rel] = None  # not found: the frame-range check is skipped for it
        return cache[rel]

    return frames_of
