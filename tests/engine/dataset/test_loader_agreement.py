"""The validator's verdict against what the released loaders do, per condition.

`videorefer_loader`, `unipixel_loader` and `videollama3_loader` below re-trace, step by step, VideoRefer's
`videorefer/train.py` (`LazySupervisedDataset.__getitem__`, `preprocess_multimodal`, `preprocess`),
`videorefer/mm_utils.py` (`annToMask`, `process_video`), UniPixel's VideoRefer loader asserts, and VideoLLaMA3's
`videorefer_videollama3/train.py` (`_convert_normal`) with `mm_utils.resize_image_mask`. They return what
happens to a record: "ok", "crash" (an exception outside the loader's try: training stops), "replaced"
(an exception inside it: another random record is used instead, this one is lost) or "misread" (no error,
wrong data reaches the model). Each case writes one record with one condition; the validator must call it a
defect exactly when the loader does not read it as written, and name the condition.
"""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
from pycocotools import mask as coco

from engine.dataset.validate import DEFECTS, check_record, validate_file
from engine.media import masks

VIDEOS = {"a.mp4": (10, 8, 12)}  # frames, height, width of the decoded video
sizes_of = VIDEOS.get


def _mask(h=8, w=12, on=True):
    m = np.zeros((h, w), bool)
    if on:
        m[2:5, 3:7] = True
    return masks.encode(m)


# --- the loaders, re-traced -----------------------------------------------------------------------------


def videorefer_loader(rec: dict) -> str:
    """VideoRefer's LazySupervisedDataset.__getitem__ for a video record, with preprocess_multimodal and preprocess."""
    try:  # lines 312-334: frame keys and the video, inside try/except -> a random other record
        if rec["video"] not in VIDEOS:
            raise FileNotFoundError(rec["video"])
        all_frames = list({k for ann in rec["annotation"] for k in ann})
        n, height, width = VIDEOS[rec["video"]]
        frames = [int(f) for f in all_frames]  # ValueError on a non-integer key
        if any(f >= n for f in frames):
            raise IndexError("get_batch / frame_files[idx]")  # decord and the folder listing both raise
    except Exception:
        return "replaced"
    misread = any(f < 0 for f in frames)  # a negative index wraps around in decord and in Python lists
    conv = copy.deepcopy(rec["conversations"])
    for turn in conv:  # preprocess_multimodal: <video> moved to the head of ANY turn
        if "<video>" in turn["value"]:
            turn["value"] = "<video>\n" + turn["value"].replace("<video>", "").strip()
    roles = {"human": "user", "gpt": "assistant"}
    if any(t["from"] not in roles for t in conv):
        return "crash"  # preprocess: roles[...] KeyError
    if roles[conv[0]["from"]] != "user":
        conv = conv[1:]  # preprocess skips a leading non-human turn
    if len(conv) % 2:
        return "crash"  # preprocess: assert len(source) % 2 == 0
    if any(t["from"] != ("human", "gpt")[i % 2] for i, t in enumerate(conv)):
        misread = True  # the pairs are taken as (instruction, answer) whatever their roles
    human = [t["value"] for t in conv if t["from"] == "human"]
    answers = [t["value"] for t in conv if t["from"] == "gpt"]
    if any("<video>" in a for a in answers) or sum("<video>" in h for h in human) != 1:
        misread = True  # video features spliced into an answer, twice, or never inserted
    if any(tok in t["value"] for t in conv for tok in ("<image>", "<audio>")):
        misread = True  # tokenizer_multimodal_token maps them to -200 / -202: a modality the record lacks
    # lines 346-365: masks, OUTSIDE the try: errors here stop training
    h, w = rec.get("height"), rec.get("width")
    arrays = []
    try:
        for anns in rec["annotation"]:
            pixels = 0
            for k in anns.keys():  # noqa: SIM118  (VideoRefer's own line, as it reads)
                if anns[k]["segmentation"] is None:  # TypeError on a bare null, KeyError without the key
                    m = np.zeros((height, width))
                else:
                    seg = anns[k]["segmentation"]
                    if isinstance(seg, list):  # annToMask: polygon
                        m = coco.decode(coco.merge(coco.frPyObjects(seg, h, w)))
                    elif isinstance(seg["counts"], list):  # uncompressed RLE
                        m = coco.decode(coco.frPyObjects(seg, h, w))
                    else:
                        m = coco.decode({"size": seg["size"], "counts": seg["counts"].encode()})
                pixels += int(m.sum())
                arrays.append(m)
            if pixels == 0:
                misread = True  # the object's region feature is pooled from no pixel
        stacked = np.array(arrays)  # ragged shapes: ValueError
        if stacked.ndim != 3:
            raise ValueError("inhomogeneous shape")
    except Exception:
        return "crash"
    if stacked.shape[1:] != (height, width):
        misread = True  # MaskExtractor resizes masks to the frame: a wrong-size mask lands elsewhere
    tags = [int(t) for turn in conv for t in re.findall(r"<object(\d+)>", turn["value"])]
    if any(t >= len(rec["annotation"]) for t in tags):
        misread = True  # refers to an object the record does not mark
    regions = sum(t["value"].count("<region>") for t in conv)
    if regions != len(rec["annotation"]) or any("<region>" in a for a in answers):
        misread = True  # region features are consumed in order by every <region> in the token stream
    return "misread" if misread else "ok"


def unipixel_loader(rec: dict) -> str:
    """UniPixel's VideoRefer loader: its asserts on the conversation (training stops on one)."""
    raw = rec["conversations"]
    q = raw[0]["value"] if len(raw) == 2 else ""
    if (
        len(raw) != 2
        or not (q.startswith("<video>\n") or q.endswith("\n<video>"))
        or q.count("<video>") != 1
        or q.count("<region>") != len(rec["annotation"])
    ):
        return "crash"
    q = q.replace("<video>\n", "").replace("\n<video>", "")
    if q.count("\n") == 1:
        if not (q.startswith("There") and "<object" in q):
            return "crash"
    elif q.count("\n") == 0:
        if q.count("<region>") != 1 or "<object" in q:
            return "crash"
    else:
        return "crash"
    return "ok"


def videollama3_loader(rec: dict) -> str:
    """VideoLLaMA3's _convert_normal for a video record with masks; everything runs inside __getitem__'s try."""
    try:
        conv = copy.deepcopy(rec["conversations"])
        while conv and conv[0]["from"] not in ("human", "system"):
            conv = conv[1:]
        assert len(conv) > 1
        if all("<video>" not in t["value"] for t in conv):
            conv[0]["value"] = "<video>" + conv[0]["value"]
        h, w = rec.get("height"), rec.get("width")
        frame_ids, mask_ids, arrays = [], [], []
        for ann in rec["masks"]:
            for k in ann.keys():  # noqa: SIM118  (VideoRefer's own line, as it reads)
                if int(k) not in frame_ids:
                    frame_ids.append(int(k))
                mask_ids.append(frame_ids.index(int(k)))
                seg = ann[k]
                if isinstance(seg, list):
                    m = coco.decode(coco.merge(coco.frPyObjects(seg, h, w)))
                elif isinstance(seg["counts"], list):  # TypeError on None
                    m = coco.decode(coco.frPyObjects(seg, h, w))
                else:
                    m = coco.decode({"size": seg["size"], "counts": seg["counts"].encode()})
                arrays.append(m)
        stacked = np.stack(arrays, axis=0)
        video = rec["video"]
        if not (isinstance(video, list) and len(video) == 1):
            raise ValueError(f"Unsupported video format: {video}")
        if video[0] not in VIDEOS:
            raise FileNotFoundError(video[0])
        n, height, width = VIDEOS[video[0]]
        if any(f >= n for f in frame_ids):
            raise IndexError("load_video frame_ids")
        misread = any(f < 0 for f in frame_ids)
        misread |= stacked.shape[1:] != (height, width)  # resize_image_mask crops the frame by the mask's box
        misread |= any(m.sum() == 0 for m in arrays)  # resize_image_mask: an empty mask becomes all ones
        misread |= any(len(ann) != 1 for ann in rec["masks"])  # "only support single mask per object"
        for _ in arrays:  # each frame mask replaces the next <region>; none left: IndexError
            i = next(i for i, t in enumerate(conv) if "<region>" in t["value"])
            conv[i]["value"] = conv[i]["value"].replace("<region>", "[R]", 1)
        misread |= any("<region>" in t["value"] for t in conv)  # a <region> left as text
        misread |= any("[R]" in t["value"] for t in conv if t["from"] == "gpt")
        misread |= sum(t["value"].count("<video>") for t in conv if t["from"] == "human") != 1
        misread |= any("<video>" in t["value"] or "<image>" in t["value"] for t in conv if t["from"] == "gpt")
        tags = [int(t) for turn in conv for t in re.findall(r"<object(\d+)>", turn["value"])]
        misread |= any(t >= len(rec["masks"]) for t in tags)
    except Exception:
        return "replaced"
    return "misread" if misread else "ok"


# --- the cases --------------------------------------------------------------------------------------------


def _vr(**over) -> dict:
    rec = {
        "id": "r",
        "video": "a.mp4",
        "conversations": [
            {"from": "human", "value": "<video>\nPlease describe in detail the object <region>."},
            {"from": "gpt", "value": "A red box."},
        ],
        "annotation": [{"2": {"segmentation": _mask()}, "5": {"segmentation": None}}],
    }
    rec.update(over)
    return rec


def _turns(human: str, answer: str = "A red box.") -> list:
    return [{"from": "human", "value": human}, {"from": "gpt", "value": answer}]


TWO = (
    "<video>\nThere are 2 objects in the video: <object0><region>, <object1><region>.\nIs <object0> left of <object1>?"
)
POLY = [[3.0, 2.0, 7.0, 2.0, 7.0, 5.0, 3.0, 5.0]]
RAW = {"size": [8, 12], "counts": [30, 5, 10, 5, 46]}

VR_GOOD = {
    "empty frame as {segmentation: null}": _vr(),
    "two objects, UniPixel's intro line": _vr(
        conversations=_turns(TWO, "Yes, <object0> is."),
        annotation=[{"2": {"segmentation": _mask()}}, {"2": {"segmentation": _mask()}}],
    ),
    "one object with an intro line (our single-object QA)": _vr(
        conversations=_turns("<video>\nThere is 1 object in the video: <object0><region>.\nWhat is <object0> doing?")
    ),
    "polygon with height and width": _vr(annotation=[{"2": {"segmentation": POLY}}], height=8, width=12),
    "uncompressed RLE with height and width": _vr(annotation=[{"2": {"segmentation": RAW}}], height=8, width=12),
    "<video> at the end": _vr(conversations=_turns("Please describe in detail the object <region>.\n<video>")),
    "<video> mid-sentence (moved to the head)": _vr(conversations=_turns("Describe <region> <video> now.")),
    "the README's own example: two turns of pairs, two regions": _vr(
        conversations=[
            *_turns("<video>\nWhat is the relationship of <region> and <region>?", "Friends."),
            *_turns("And what does <region> hold?", "A ball."),
        ],
        annotation=[
            {"2": {"segmentation": _mask()}},
            {"2": {"segmentation": _mask()}},
            {"5": {"segmentation": _mask()}},
        ],
    ),
}
UNIPIXEL_ONLY = {  # VideoRefer reads these; UniPixel's asserts stop on them
    "two regions, no intro line": _vr(
        conversations=_turns("<video>\nIs <region> left of <region>?"),
        annotation=[{"2": {"segmentation": _mask()}}, {"2": {"segmentation": _mask()}}],
    ),
    "<video> mid-sentence": _vr(conversations=_turns("Describe <region> <video> now.")),
}
VR_BAD = {  # defect -> a record with that condition only
    "null_frame": _vr(annotation=[{"2": {"segmentation": _mask()}, "5": None}]),
    "missing_segmentation": _vr(annotation=[{"2": {"segmentation": _mask()}, "5": {"rle": _mask()}}]),
    "polygon_without_size": _vr(annotation=[{"2": {"segmentation": POLY}}]),
    "bad_rle": _vr(annotation=[{"2": {"segmentation": {"size": [8, 12], "counts": "!!not-rle"}}}]),
    "mask_size": _vr(annotation=[{"2": {"segmentation": _mask(4, 6)}}]),
    "mask_sizes_differ": _vr(annotation=[{"2": {"segmentation": _mask()}, "5": {"segmentation": _mask(4, 6)}}]),
    "frame_key": _vr(annotation=[{"2.5": {"segmentation": _mask()}}]),
    "frame_out_of_range": _vr(annotation=[{"10": {"segmentation": _mask()}}]),
    "video_not_found": _vr(video="missing.mp4"),
    "no_mask": _vr(annotation=[{"2": {"segmentation": None}, "5": {"segmentation": _mask(on=False)}}]),
    "empty_annotation": _vr(annotation=[{}]),
    "region_count": _vr(annotation=[{"2": {"segmentation": _mask()}}, {"2": {"segmentation": _mask()}}]),
    "token_in_answer": _vr(conversations=_turns("<video>\nDescribe <region>.", "It sits by <region> in <video>.")),
    "stray_token": _vr(conversations=_turns("<video>\nDescribe <region> in <image>.")),
    "video_placeholder": _vr(conversations=_turns("Describe the object <region>.")),  # no <video> at all
    "object_tag": _vr(
        conversations=_turns(
            "<video>\nThere is 1 object in the video: <object0><region>.\nIs <object0> near <object1>?"
        )
    ),
    "bad_conversations": _vr(
        conversations=[{"from": "user", "value": "<video>\nDescribe <region>."}, {"from": "gpt", "value": "A box."}]
    ),
}


def _vl3(**over) -> dict:
    rec = {
        "id": "r",
        "video": ["a.mp4"],
        "conversations": _turns("<video>\nPlease describe the object <region>."),
        "masks": [{"2": _mask()}],
        "height": 8,
        "width": 12,
    }
    rec.update(over)
    return rec


VL3_GOOD = {
    "one mask per object": _vl3(),
    "two objects": _vl3(conversations=_turns(TWO), masks=[{"2": _mask()}, {"5": _mask()}]),
    "polygon with height and width": _vl3(masks=[{"2": POLY}]),
}
VL3_BAD = {
    "video_shape": _vl3(video="a.mp4"),
    "null_mask": _vl3(masks=[{"2": None}]),
    "empty_mask": _vl3(masks=[{"2": _mask(on=False)}]),
    "mask_count": _vl3(
        masks=[{"2": _mask(), "5": _mask()}],
        conversations=_turns("<video>\nPlease describe the object <region> <region>."),
    ),
    "region_count": _vl3(masks=[{"2": _mask()}, {"5": _mask()}]),
    "mask_size": _vl3(masks=[{"2": _mask(4, 6)}]),
    "mask_sizes_differ": _vl3(masks=[{"2": _mask()}, {"5": _mask(4, 6)}], conversations=_turns(TWO)),
    "polygon_without_size": {k: v for k, v in _vl3(masks=[{"2": POLY}]).items() if k not in ("height", "width")},
    "frame_key": _vl3(masks=[{"two": _mask()}]),
    "frame_out_of_range": _vl3(masks=[{"12": _mask()}]),
    "video_not_found": _vl3(video=["missing.mp4"]),
    "token_in_answer": _vl3(conversations=_turns("<video>\nPlease describe the object <region>.", "See <region>.")),
    "object_tag": _vl3(conversations=_turns("<video>\nWhat is <object3> <region>?")),
}


@pytest.mark.parametrize("name", VR_GOOD)
def test_videorefer_records_the_loader_reads_pass(name):
    assert videorefer_loader(VR_GOOD[name]) == "ok"
    assert check_record(VR_GOOD[name], "videorefer", sizes_of) == set()


@pytest.mark.parametrize("name", UNIPIXEL_ONLY)
def test_unipixel_layout_only_with_unipixel(name):
    rec = UNIPIXEL_ONLY[name]
    assert videorefer_loader(rec) == "ok" and unipixel_loader(rec) == "crash"
    assert check_record(rec, "videorefer", sizes_of) == set()
    assert check_record(rec, "videorefer", sizes_of, unipixel=True) == {"unipixel_layout"}
    print(f"unipixel    {'unipixel_layout':22s} loader: crash     validator (--unipixel): ['unipixel_layout']")


def test_our_record_shapes_pass_unipixel():
    for name in (
        "empty frame as {segmentation: null}",
        "two objects, UniPixel's intro line",
        "one object with an intro line (our single-object QA)",
    ):
        assert unipixel_loader(VR_GOOD[name]) == "ok"
        assert check_record(VR_GOOD[name], "videorefer", sizes_of, unipixel=True) == set()


@pytest.mark.parametrize("defect", VR_BAD)
def test_videorefer_defects_match_the_loader(defect):
    rec = VR_BAD[defect]
    outcome = videorefer_loader(rec)
    found = check_record(rec, "videorefer", sizes_of)
    assert outcome != "ok", f"the loader reads the {defect} record as written: not a defect"
    assert defect in found, (defect, found, outcome)
    print(f"videorefer {defect:22s} loader: {outcome:9s} validator: {sorted(found)}")


@pytest.mark.parametrize("name", VL3_GOOD)
def test_videollama3_records_the_loader_reads_pass(name):
    assert videollama3_loader(VL3_GOOD[name]) == "ok"
    assert check_record(VL3_GOOD[name], "videollama3", sizes_of) == set()


@pytest.mark.parametrize("defect", VL3_BAD)
def test_videollama3_defects_match_the_loader(defect):
    rec = VL3_BAD[defect]
    outcome = videollama3_loader(rec)
    found = check_record(rec, "videollama3", sizes_of)
    assert outcome != "ok", f"the loader reads the {defect} record as written: not a defect"
    assert defect in found, (defect, found, outcome)
    print(f"videollama3 {defect:22s} loader: {outcome:9s} validator: {sorted(found)}")


def test_every_defect_has_a_case():
    covered = set(VR_BAD) | set(VL3_BAD) | {"not_json", "not_a_record", "unipixel_layout"}
    assert covered == set(DEFECTS)


def test_files_in_every_layout_and_format_are_detected(tmp_path):
    bad = list(VR_BAD.values())
    for name, text in {
        "array.json": "[\n" + ",\n".join(json.dumps(r) for r in bad) + "\n]\n",
        "compact.json": json.dumps(bad),
        "lines.jsonl": "".join(json.dumps(r) + "\n" for r in bad) + "{not json\n",
    }.items():
        (tmp_path / name).write_text(text)
        report = validate_file(tmp_path / name, sizes_of=sizes_of)
        assert report.format == "videorefer" and report.records == len(bad) + name.endswith("jsonl")
        assert set(report.defects) >= set(VR_BAD)
    (tmp_path / "vl3.json").write_text(json.dumps(list(VL3_BAD.values())))
    report = validate_file(tmp_path / "vl3.json", sizes_of=sizes_of)
    assert report.format == "videollama3" and set(report.defects) >= set(VL3_BAD)
    # the same records read as the other format are not records of it
    assert validate_file(tmp_path / "vl3.json", fmt="videorefer", sizes_of=sizes_of).defects["not_a_record"] == 13
