"""Sample records in the VideoRefer-700K format (docs/record-format.md): one single-turn conversation plus
one `annotation` dict per `<region>` placeholder, keyed by absolute frame index (as a string).

The format's tokens (`<video>`, `<region>`, `<image>`, `<objectN>`) are placed only by the templates here:
any text from elsewhere (captions, model answers, dataset expressions) goes through `neutralise` first,
because a stray token shifts every region feature in VideoRefer's trainer.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

Mode = Literal["single", "multi"]

SHORT_PROMPTS = (
    "What is the object <region> in the video? Answer briefly.",
    "Give a short description of the object <region> in the video.",
    "Briefly describe <region> in the video.",
)
DETAILED_PROMPTS = (
    "Please describe in detail the object <region> in the video.",
    "Describe the object <region> in the video in detail: its appearance and what it does.",
    "What does <region> look like, and what does it do in the video? Describe it in detail.",
)

# Tokens the loaders act on (VideoRefer's MODAL_INDEX_MAP has <image>, <video>, <audio>; <region> and
# <objectN> are the format's own). Matched loosely (case, inner spaces) so near-misses go too.
FORMAT_TOKEN = re.compile(r"<\s*(video|image|audio|region|object\s*\d+)\s*>", re.I)
OBJECT_TAG = re.compile(r"<object(\d+)>")
# The files export writes and validate reads: VideoRefer's JSON arrays, the same records one per line, and
# VideoLLaMA3's conversation format.
Format = Literal["videorefer", "jsonl", "videollama3"]


def neutralise(text: str) -> str:
    """Text with the format's tokens turned into plain words ('<region>' -> 'region')."""
    return FORMAT_TOKEN.sub(lambda m: re.sub(r"\s+", "", m.group(1)), text)


def pick(options: Sequence[str], key: str) -> str:
    """A deterministic choice among phrasings, so reruns give identical records."""
    return options[int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % len(options)]


def frame_mode(key: str, multi_ratio: float) -> Mode:
    """Single- or multi-frame, deterministic per key, multi with probability multi_ratio."""
    bucket = int(hashlib.sha256(("mode:" + key).encode()).hexdigest()[:8], 16) % 10_000
    return "multi" if bucket < multi_ratio * 10_000 else "single"


def region(frames: Mapping[Any, Any], anchor_frame: int, mode: Mode) -> dict[str, Any]:
    """One annotation entry: {"<frame>": {"segmentation": RLE or None}}.

    single: the anchor frame only; multi: every sampled frame, `{"segmentation": null}` where the mask is
    empty (VideoRefer's loader reads that as zeros; a bare null crashes it).
    """
    by_int = {int(k): v for k, v in frames.items()}
    keys = [anchor_frame] if mode == "single" else sorted(by_int)
    return {str(f): {"segmentation": by_int.get(f)} for f in keys}


def conversation(human: str, answer: str) -> list[dict[str, str]]:
    return [{"from": "human", "value": human}, {"from": "gpt", "value": answer}]


def single_object_turn(question: str) -> str:
    return "<video>\n" + question


def multi_object_turn(n_objects: int, question: str) -> str:
    """'<video>\\nThere are 2 objects in the video: <object0><region>, <object1><region>.\\n' + question.

    The intro line starts with "There" and lists `<objectN><region>` pairs, as UniPixel's VideoRefer
    loader asserts; the question refers to the objects by their `<objectN>` tags only.
    """
    tags = ", ".join(f"<object{i}><region>" for i in range(n_objects))
    intro = "There is 1 object" if n_objects == 1 else f"There are {n_objects} objects"
    return f"<video>\n{intro} in the video: {tags}.\n{question}"


def check(conversations: list[dict[str, str]], annotation: list[dict[str, Any]]) -> None:
    """Raise ValueError unless the record keeps the format's invariants."""
    human, answer = conversations[0]["value"], conversations[1]["value"]
    if len(conversations) != 2 or human.count("<video>") != 1 or not human.startswith("<video>\n"):
        raise ValueError("a record is one human turn starting with one <video>, and one answer")
    if human.count("<region>") != len(annotation):
        raise ValueError(f"{human.count('<region>')} <region> placeholders but {len(annotation)} annotations")
    if any(int(n) >= len(annotation) for n in OBJECT_TAG.findall(human + answer)):
        raise ValueError("an <objectN> tag without its region")
    stray = FORMAT_TOKEN.search(OBJECT_TAG.sub("", answer)) or FORMAT_TOKEN.search(
        OBJECT_TAG.sub("", human).replace("<video>", "").replace("<region>", "")
    )
    if stray:
        raise ValueError(f"a format token out of place: {stray.group(0)}")
    for entry in annotation:
        if not entry or all(v["segmentation"] is None for v in entry.values()):
            raise ValueError("an annotation without any mask")
