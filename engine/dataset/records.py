"""Sample records in the VideoRefer-700K format (docs/record-format.md): one single-turn conversation plus
one `annotation` dict per `<region>` placeholder, keyed by absolute frame index (as a string).
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal, Mapping, Sequence

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


def pick(options: Sequence[str], key: str) -> str:
    """A deterministic choice among phrasings, so reruns give identical records."""
    return options[int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % len(options)]


def frame_mode(key: str, multi_ratio: float) -> Mode:
    """Single- or multi-frame, deterministic per key, multi with probability multi_ratio."""
    bucket = int(hashlib.sha256(("mode:" + key).encode()).hexdigest()[:8], 16) % 10_000
    return "multi" if bucket < multi_ratio * 10_000 else "single"


def region(frames: Mapping[Any, Any], anchor_frame: int, mode: Mode) -> dict[str, Any]:
    """One annotation entry: {"<frame>": {"segmentation": RLE} or None}.

    single: the anchor frame only; multi: every sampled frame, None where the mask is empty.
    """
    by_int = {int(k): v for k, v in frames.items()}
    keys = [anchor_frame] if mode == "single" else sorted(by_int)
    return {str(f): ({"segmentation": by_int[f]} if by_int.get(f) is not None else None) for f in keys}


def conversation(human: str, answer: str) -> list[dict[str, str]]:
    return [{"from": "human", "value": human}, {"from": "gpt", "value": answer}]


def single_object_turn(question: str) -> str:
    return "<video>\n" + question


def multi_object_turn(n_objects: int, question: str) -> str:
    """'<video>\\nThere are 2 objects in the video: <object0><region>, <object1><region>.\\n' + question."""
    tags = ", ".join(f"<object{i}><region>" for i in range(n_objects))
    intro = "There is 1 object" if n_objects == 1 else f"There are {n_objects} objects"
    return f"<video>\n{intro} in the video: {tags}.\n{question}"


def check(conversations: list[dict[str, str]], annotation: list[dict[str, Any]]) -> None:
    """Raise ValueError unless the record keeps the format's invariants."""
    human = conversations[0]["value"]
    if len(conversations) != 2 or human.count("<video>") != 1:
        raise ValueError("a record is one human turn with one <video> and one answer")
    if human.count("<region>") != len(annotation):
        raise ValueError(f"{human.count('<region>')} <region> placeholders but {len(annotation)} annotations")
    for entry in annotation:
        if not entry or all(v is None for v in entry.values()):
            raise ValueError("an annotation without any mask")
