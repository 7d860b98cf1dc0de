"""Refiner: one detailed description from the two annotations, and question-answer pairs.

QA refers to objects by tags (<object0>, <object1>, ...) as VideoRefer-700K does. The model never has
to write them: the prompt names the objects "Object 1", "Object 2" with their nouns, and `tag_objects`
maps whatever reference the model used ("object 2", "[2]", "the red ball" when the noun is unique in the
group, or a tag) to the tag, deterministically. A question about a single object may also refer to it in
its own words ("he", "the man"): the intro line tags the one object. A pair whose question names no object
is dropped and counted, not retried: asking again would cost the same and likely fail the same way.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from agents.base import TemplateAgent, one_paragraph
from engine.dataset.records import OBJECT_TAG, neutralise

QA_TYPES = ("basic", "reasoning", "future")


class DetailedDescription(BaseModel):
    description: str


class QAPair(BaseModel):
    type: Literal["basic", "reasoning", "future"]
    question: str
    answer: str


class QASet(BaseModel):
    pairs: list[QAPair]


@dataclass(frozen=True)
class RefineItem:
    noun: str
    static: str
    dynamic: str


@dataclass(frozen=True)
class QAObject:
    noun: str
    description: str


@dataclass(frozen=True)
class QAItem:
    objects: tuple[QAObject, ...]  # object i is <object{i}>
    types: tuple[str, ...] = QA_TYPES  # the pairs asked for, by type, in order (see qa_types)
    images: tuple[str, ...] = ()  # frames with the objects marked, when the QA writer sees them

    @property
    def names(self) -> list[str]:
        return [f"Object {i + 1}" for i in range(len(self.objects))]


@dataclass
class QAResult:
    pairs: list[QAPair]  # those asked for, in QA_TYPES order, questions tagged
    dropped: Counter = field(default_factory=Counter)  # reason -> pairs left out


def qa_types(unit: str, mix: dict[str, float], n: int) -> tuple[str, ...]:
    """n QA types drawn from the shares in mix, deterministically per unit (reruns ask for the same ones)."""
    import hashlib

    names = [t for t in QA_TYPES if mix.get(t, 0) > 0]
    total = sum(mix[t] for t in names)
    out = []
    for k in range(n):
        u = int(hashlib.sha256(f"{unit}:{k}".encode()).hexdigest()[:12], 16) / 16**12 * total
        for t in names:
            u -= mix[t]
            if u < 0:
                break
        out.append(t)
    return tuple(sorted(out, key=QA_TYPES.index))


_STOP = {
    "a",
    "an",
    "the",
    "this",
    "that",
    "is",
    "are",
    "was",
    "were",
    "and",
    "or",
    "of",
    "to",
    "in",
    "on",
    "at",
    "with",
    "by",
    "for",
    "from",
    "it",
    "its",
    "as",
    "does",
    "do",
    "did",
    "has",
    "have",
    "will",
    "what",
    "who",
}
# With one object in the group, "he", "the man" or "its" can only mean it (the intro line tags it), so such a
# question is kept as written; with several, only a tagged reference says which one.
_REFERRING = re.compile(r"\b(he|she|it|they|him|her|his|its|their|them|this|that|these|those|the)\b", re.I)
_INDEX_REF = re.compile(r"(?:\bthe\s+)?\bobject\s*#?\s*(\d+)\b(?:\s*\([^()]{0,60}\))?|\[(\d+)\]", re.I)


def tag_objects(text: str, nouns: list[str]) -> str:
    """Text with references to the group's objects replaced by <object0>, <object1>, ...

    Recognised, in this order: tags the model wrote itself (kept when in range), "Object K" / "object K (noun)"
    / "[K]" (1-based, as the prompt numbers them), and "the [up to two words] noun" for a noun, or the noun's
    last word, that only one object of the group has. Every other format token is neutralised.
    """
    n = len(nouns)
    hold = lambda k: f"\x00{k}\x00"  # noqa: E731 - placeholders survive neutralise and later passes
    text = OBJECT_TAG.sub(lambda m: hold(int(m.group(1))) if int(m.group(1)) < n else m.group(0), text)
    text = neutralise(text)

    def by_index(m: re.Match) -> str:
        k = int(m.group(1) or m.group(2))
        return hold(k - 1) if 1 <= k <= n else m.group(0)

    text = _INDEX_REF.sub(by_index, text)
    lowered = [" ".join(x.lower().split()) for x in nouns]
    heads = [x.split()[-1] if x else "" for x in lowered]
    # each object's full noun, then its head word ('ball' of 'red ball'), longest first
    candidates = sorted(
        {(noun, i) for i, noun in enumerate(lowered)} | {(h, i) for i, h in enumerate(heads)}, key=lambda c: -len(c[0])
    )
    for noun, i in candidates:
        if not noun or any(noun in other for j, other in enumerate(lowered) if j != i):
            continue  # ambiguous: it is (part of) another object's noun too
        words = r"\s+".join(map(re.escape, noun.split()))
        pattern = re.compile(rf"\b(?:the|this|that)\s+((?:[\w-]+\s+){{0,2}}?){words}s?\b", re.I)

        def by_noun(m: re.Match, i: int = i) -> str:
            between = m.group(1).split()
            return hold(i) if not any(w.lower() in _STOP for w in between) else m.group(0)

        text = pattern.sub(by_noun, text)
    return re.sub("\x00(\\d+)\x00", lambda m: f"<object{m.group(1)}>", text)


class RefinerAgent(TemplateAgent):
    role = "refiner.detailed"
    endpoint = "refiner"
    response_format = DetailedDescription
    prompt_name = "refiner_detailed"

    def prompt(self, item: RefineItem) -> list[dict]:
        return self.template.messages(noun=item.noun, static=item.static, dynamic=item.dynamic)

    def parse(self, item: RefineItem, response: DetailedDescription) -> str:
        return one_paragraph(response.description, "detailed description")


class QAWriter(TemplateAgent):
    role = "refiner.qa"
    endpoint = "refiner"
    response_format = QASet
    prompt_name = "refiner_qa"

    def prompt(self, item: QAItem) -> list[dict]:
        objects = "\n".join(f"{name} ({o.noun}): {o.description}" for name, o in zip(item.names, item.objects))
        frames = (
            (
                f" The {len(item.images)} frames show the objects marked in order: "
                + ", ".join(f"{name} in colour {i + 1}" for i, name in enumerate(item.names))
                + "."
            )
            if item.images
            else ""
        )
        return self.template.messages(
            item.images,
            names=", ".join(item.names),
            objects=objects,
            n=len(item.types),
            types=", ".join(item.types),
            frames=frames,
        )

    def parse(self, item: QAItem, response: QASet) -> QAResult:
        """The pairs asked for (by type, as many of each as asked), with the object references tagged; the rest
        counted by reason."""
        nouns = [o.noun for o in item.objects]
        wanted = Counter(item.types)
        kept: list[QAPair] = []
        dropped: Counter = Counter()
        for pair in response.pairs:
            question = tag_objects(" ".join(pair.question.split()), nouns)
            answer = tag_objects(" ".join(pair.answer.split()), nouns)
            if not question or not answer:
                dropped["empty_pair"] += 1
            elif not OBJECT_TAG.search(question) and not (len(nouns) == 1 and _REFERRING.search(question)):
                dropped["names_no_object"] += 1
            elif wanted[pair.type] <= 0:
                dropped["type_not_asked"] += 1
            else:
                wanted[pair.type] -= 1
                kept.append(QAPair(type=pair.type, question=question, answer=answer))
        if not response.pairs:
            dropped["no_pairs"] += 1
        return QAResult(sorted(kept, key=lambda p: QA_TYPES.index(p.type)), dropped)


class QAWriterSeeingFrames(QAWriter):
    """The QA writer shown frames with the objects marked too (qa.frames): its model must see images."""

    sees_images = True
