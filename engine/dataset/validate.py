"""`engine validate`: check a training file (ours or anyone's) against what the released loaders do with it.

Two record formats, detected from the first record (`--format` overrides):
- `videorefer` (JSON array or JSONL, `annotation` per region), read by VideoRefer's
  `videorefer/train.py` (`LazySupervisedDataset.__getitem__`, `preprocess`, `annToMask`); with `unipixel`, the
  stricter layout UniPixel's VideoRefer loader asserts as well (our exports keep it);
- `videollama3` (`video` as a one-element list, `masks` per object, `height`, `width`), read by
  `videorefer_videollama3/train.py` (`_convert_normal`).
Each defect below is a condition under which one of those loaders crashes, silently replaces the record
with another one, or silently misreads it; the README's export section lists them with the loader's
lines. Sizes and frame ranges need the videos: `sizes_of(video)` gives (frames, height, width), or None
when the video is not there, which is a defect of that record, never a skipped check. Records are read a
line at a time when the file has one per line, so memory does not grow with the file.

A file that is not a record file at all (a JSON object such as an export's manifest.json, a list or lines of
which no item has a record's fields, text that is not JSON, a binary file) raises NotARecordFile: counting
its lines as broken records ("231 not_json") would hide the mistake of naming the wrong file. A file of
records of which some are broken is still validated record by record.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from engine.dataset.records import OBJECT_TAG
from engine.media import masks

# A training file's format as `engine export --format` writes it (export.py imports it) and `engine validate`
# takes it; a jsonl file holds videorefer records, one a line. The checks below go by the records' layout.
RecordFormat = Literal["videorefer", "videollama3"]
SizesOf = Callable[[str], "tuple[int, int, int] | None"]

DEFECTS = {
    "not_json": "not valid JSON: the file does not load",
    "not_a_record": "not an object with id, video, conversations and annotation (videollama3: masks)",
    "bad_conversations": "turns not human/gpt pairs (a leading gpt turn is skipped): an unknown role or an odd "
    "count stops VideoRefer's preprocess",
    "video_placeholder": "not exactly one human turn with <video> (VideoRefer moves it to that turn's head): "
    "the video's features are missing or spliced in twice",
    "token_in_answer": "<video>, <region>, <image> or <audio> in the answer: VideoRefer moves <video> to the "
    "head of any turn, and a <region> there takes a region's features",
    "stray_token": "<image> or <audio> in the human turn: the tokenizer inserts a modality the record lacks",
    "region_count": "count of <region> differs from the annotation entries (videollama3: from the frame masks): "
    "regions shift or the record is replaced",
    "object_tag": "<objectN> with N not below the number of regions",
    "unipixel_layout": "(--unipixel) not the layout UniPixel's VideoRefer loader asserts: two turns, the human one "
    "'<video>\\n' + one <region> and no <object> tag, or + an intro line starting 'There' with "
    "the <objectN><region> pairs, then the question",
    "empty_annotation": "an annotation entry (object) with no frames",
    "frame_key": "a frame key that is not an integer: int() fails and the record is replaced",
    "frame_out_of_range": "a frame index outside the decoded video: the record is replaced",
    "video_not_found": "the video is not under --video-root: the record is replaced",
    "null_frame": "a bare null frame value: VideoRefer crashes on value['segmentation'] (write "
    '{"segmentation": null} for an empty frame)',
    "missing_segmentation": "a frame value without 'segmentation': VideoRefer crashes (KeyError)",
    "no_mask": "an object none of whose frames has a mask: its region feature is read from nothing",
    "polygon_without_size": "a polygon or uncompressed RLE but no record height/width: annToMask crashes",
    "bad_rle": "a segmentation that does not decode to its declared size",
    "mask_size": "a mask whose size differs from the decoded video frame: regions misalign or the batch fails",
    "mask_sizes_differ": "masks of different sizes in one record: np.array/np.stack fails",
    "video_shape": "videollama3: `video` is not a list of one path ('Unsupported video format': replaced)",
    "mask_count": "videollama3: an object with other than one frame mask (its loader supports one per object)",
    "null_mask": "videollama3: a null mask: TypeError, the record is replaced",
    "empty_mask": "videollama3: an all-zero mask: its loader silently uses an all-ones mask instead",
}
LOADER_TOKENS = re.compile(r"<(video|region|image|audio)>")
# Fields only records have (`id` alone is too common to tell a record from any other object): a file none of
# whose items has one of them is not a record file.
RECORD_FIELDS = ("video", "conversations", "annotation", "masks")


class NotARecordFile(ValueError):
    """The file holds no records to validate (see the module's docstring); the message is one line."""


@dataclass
class Report:
    path: Path
    format: RecordFormat = "videorefer"
    records: int = 0
    defects: Counter = field(default_factory=Counter)  # defect -> records having it
    examples: dict[str, str] = field(default_factory=dict)  # defect -> first record id
    sizes_checked: bool = False  # False: no videos to compare masks and frame keys with

    @property
    def ok(self) -> bool:
        return not self.defects


def _records(path: Path) -> Iterator[Any]:
    """Each record, or None for a line that is not JSON."""
    with path.open(encoding="utf-8") as fh:
        first = fh.readline()
        rest_is_array = first.strip() == "["
        second = fh.readline().strip().rstrip(",") if rest_is_array else ""
    if first.lstrip().startswith("[") and not (rest_is_array and second not in ("", "]") and _is_json(second)):
        # an array not written one record per line (e.g. pretty-printed: its lines are no records)
        try:
            whole = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            whole = None
        if whole is not None or not rest_is_array:  # else: one record a line, some broken: read line by line
            yield from whole if isinstance(whole, list) else [None]
            return
    with path.open(encoding="utf-8") as fh:
        if rest_is_array:
            fh.readline()
        for line in fh:
            text = line.strip().rstrip(",")
            if not text or text == "]":
                continue
            try:
                yield json.loads(text)
            except json.JSONDecodeError:
                yield None


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def detect_format(path: Path) -> RecordFormat:
    for rec in _records(path):
        if isinstance(rec, dict):
            return "videollama3" if "masks" in rec and "annotation" not in rec else "videorefer"
    return "videorefer"


def _decode(seg: Any, rec: dict, found: set[str]) -> np.ndarray | None:
    """The mask as annToMask reads it, or None (with the defect noted)."""
    from pycocotools import mask as coco

    polygon_or_raw = isinstance(seg, list) or (isinstance(seg, dict) and isinstance(seg.get("counts"), list))
    try:
        if polygon_or_raw:
            h, w = rec.get("height"), rec.get("width")
            if not (isinstance(h, int) and isinstance(w, int)):
                found.add("polygon_without_size")
                return None
            rles = coco.frPyObjects(seg, h, w)
            return coco.decode(coco.merge(rles) if isinstance(rles, list) else rles).astype(bool)
        decoded = masks.decode(seg)
        if list(decoded.shape) != list(seg["size"]):
            raise ValueError("size")
        return decoded
    except Exception:  # pycocotools raises several types on malformed input
        found.add("bad_rle")
        return None


def _text_defects(rec: dict, fmt: RecordFormat, regions: int, unipixel: bool) -> set[str]:
    conv = rec["conversations"]
    if not (
        isinstance(conv, list)
        and conv
        and all(
            isinstance(t, dict) and isinstance(t.get("value"), str) and t.get("from") in ("human", "gpt") for t in conv
        )
    ):
        return {"bad_conversations"}
    turns = conv[1:] if conv[0]["from"] != "human" else conv  # both loaders drop a leading non-human turn
    if len(turns) < 2 or len(turns) % 2 or any(t["from"] != ("human", "gpt")[i % 2] for i, t in enumerate(turns)):
        return {"bad_conversations"}
    found: set[str] = set()
    human = [t["value"] for t in turns if t["from"] == "human"]
    answers = [t["value"] for t in turns if t["from"] == "gpt"]
    with_video = sum("<video>" in h for h in human)
    if with_video > 1 or (with_video == 0 and fmt == "videorefer"):  # VideoLLaMA3 adds a missing one itself
        found.add("video_placeholder")
    if any(LOADER_TOKENS.search(a) for a in answers):
        found.add("token_in_answer")
    if any("<image>" in h or "<audio>" in h for h in human):
        found.add("stray_token")
    if sum(h.count("<region>") for h in human) != regions:
        found.add("region_count")
    if any(int(n) >= regions for t in turns for n in OBJECT_TAG.findall(t["value"])):
        found.add("object_tag")
    if unipixel and fmt == "videorefer":
        q = conv[0]["value"]
        layout = (
            len(conv) == 2
            and conv[0]["from"] == "human"
            and q.count("<video>") == 1
            and (q.startswith("<video>\n") or q.endswith("\n<video>"))
        )
        q = q.replace("<video>\n", "", 1) if q.startswith("<video>\n") else q.removesuffix("\n<video>")
        lines = q.count("\n")
        if not (
            layout
            and (
                (lines == 1 and q.startswith("There") and "<object" in q)
                or (lines == 0 and q.count("<region>") == 1 and "<object" not in q)
            )
        ):
            found.add("unipixel_layout")
    return found


def check_record(rec: Any, fmt: RecordFormat, sizes_of: SizesOf | None, unipixel: bool = False) -> set[str]:
    """The defects of one record (empty set: a valid record). sizes_of None: sizes and ranges not checked;
    unipixel: UniPixel's layout asserts too (our own exports keep them)."""
    key = "masks" if fmt == "videollama3" else "annotation"
    if (
        not isinstance(rec, dict)
        or not {"id", "video", "conversations", key} <= set(rec)
        or not isinstance(rec[key], list)
    ):
        return {"not_a_record"}
    found: set[str] = set()
    video = rec["video"]
    if fmt == "videollama3":
        if not (isinstance(video, list) and len(video) == 1 and isinstance(video[0], str)):
            found.add("video_shape")
        video = video[0] if isinstance(video, list) and video else video
    entries = rec[key]
    regions = sum(len(e) for e in entries if isinstance(e, dict)) if fmt == "videollama3" else len(entries)
    found |= _text_defects(rec, fmt, regions, unipixel)
    size = None
    if sizes_of is not None:
        size = sizes_of(str(video))
        if size is None:
            found.add("video_not_found")
    shapes: set[tuple[int, ...]] = set()
    for entry in entries:
        if not isinstance(entry, dict) or not entry:
            found.add("empty_annotation")
            continue
        if fmt == "videollama3" and len(entry) != 1:
            found.add("mask_count")
        any_mask = False
        for frame_key, value in entry.items():
            try:
                frame = int(frame_key)
                if size is not None and not 0 <= frame < size[0]:
                    found.add("frame_out_of_range")
            except (TypeError, ValueError):
                found.add("frame_key")
            if fmt == "videollama3":
                seg = value
                if seg is None:
                    found.add("null_mask")
                    continue
            else:
                if value is None:
                    found.add("null_frame")
                    continue
                if not isinstance(value, dict) or "segmentation" not in value:
                    found.add("missing_segmentation")
                    continue
                seg = value["segmentation"]
                if seg is None:  # VideoRefer reads {"segmentation": null} as zeros of the frame's size
                    continue
            decoded = _decode(seg, rec, found)
            if decoded is None:
                continue
            shapes.add(decoded.shape)
            if size is not None and decoded.shape != tuple(size[1:]):
                found.add("mask_size")
            if decoded.any():
                any_mask = True
            elif fmt == "videollama3":
                found.add("empty_mask")
        if (
            not any_mask
            and fmt == "videorefer"
            and not found & {"null_frame", "missing_segmentation", "bad_rle", "polygon_without_size"}
        ):
            found.add("no_mask")
    if len(shapes) > 1:
        found.add("mask_sizes_differ")
    return found


def validate_file(
    path: Path,
    video_root: Path | None = None,
    fmt: RecordFormat | None = None,
    sizes_of: SizesOf | None = None,
    unipixel: bool = False,
) -> Report:
    """Validate one file. Sizes come from sizes_of (e.g. the store's videos), else from probing video_root."""
    path = Path(path)
    _refuse_non_record_text(path)
    if sizes_of is None and video_root is not None:
        sizes_of = prober(video_root)
    try:
        return _validate(path, fmt, sizes_of, unipixel)
    except UnicodeDecodeError as e:  # past the first 8 KB, which _refuse_non_record_text read
        raise NotARecordFile(f"{path} is not a record file: not UTF-8 text (byte {e.start})") from None


def _validate(path: Path, fmt: RecordFormat | None, sizes_of: SizesOf | None, unipixel: bool) -> Report:
    report = Report(path, fmt or detect_format(path), sizes_checked=sizes_of is not None)
    parsed = like_records = 0  # items that are JSON, and of those the ones with a record's field
    for rec in _records(path):
        report.records += 1
        parsed += rec is not None
        like_records += isinstance(rec, dict) and any(k in rec for k in RECORD_FIELDS)
        problems = {"not_json"} if rec is None else check_record(rec, report.format, sizes_of, unipixel)
        for p in problems:
            report.defects[p] += 1
            report.examples.setdefault(p, str(rec.get("id", "?")) if isinstance(rec, dict) else "?")
    if report.records and not like_records:  # an empty file or [] is an empty record file (an export writes them)
        what = "not JSON" if not parsed else f"no item has any of a record's fields ({', '.join(RECORD_FIELDS)})"
        raise NotARecordFile(f"{path} is not a record file: {what}")
    return report


def _refuse_non_record_text(path: Path) -> None:
    """Raise NotARecordFile for a binary file, or one JSON object (over one or several lines) rather than a list
    or lines of records. Reads the whole file only when its first line is `{` without being JSON itself."""
    with path.open("rb") as fh:
        head = fh.read(8192)
    if b"\x00" in head:
        raise NotARecordFile(f"{path} is not a record file: a binary file, not JSON text")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # not a character cut by the 8 KB boundary
            raise NotARecordFile(f"{path} is not a record file: not UTF-8 text (byte {e.start})") from None
        text = head[: e.start].decode("utf-8")
    first = text.lstrip().split("\n", 1)[0].strip()
    if not first.startswith("{"):
        return
    try:
        json.loads(first)
        return  # a JSON line: lines of records (JSONL), checked item by item
    except json.JSONDecodeError:
        pass
    try:
        whole = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return  # JSONL whose first record is broken: validated line by line
    if isinstance(whole, dict):
        hint = " (one record: put it in a list)" if any(k in whole for k in RECORD_FIELDS) else ""
        raise NotARecordFile(f"{path} is not a record file: a JSON object, not a list of records{hint}")


def prober(video_root: Path) -> SizesOf:
    """sizes_of for videos under video_root: each decoded once (frames, height, width); None when not there."""
    from engine.media.video import MediaError, probe

    cache: dict[str, tuple[int, int, int] | None] = {}

    def sizes_of(rel: str) -> tuple[int, int, int] | None:
        if rel not in cache:
            try:
                info = probe(video_root / rel)
                cache[rel] = (info.num_frames, info.height, info.width)
            except (MediaError, OSError):
                cache[rel] = None
        return cache[rel]

    return sizes_of
