"""Refiner: one detailed description from the two annotations, and question-answer pairs.

QA refers to objects by tags (<object0>, <object1>, ...) as VideoRefer-700K does; the pipeline
puts the matching <region> placeholders in the human turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from agents.base import TemplateAgent, one_paragraph

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

    @property
    def tags(self) -> list[str]:
        return [f"<object{i}>" for i in range(len(self.objects))]


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
        objects = "\n".join(f"{tag} ({o.noun}): {o.description}" for tag, o in zip(item.tags, item.objects))
        return self.template.messages(tags=", ".join(item.tags), objects=objects)

    def parse(self, item: QAItem, response: QASet) -> list[QAPair]:
        """One pair per type, in QA_TYPES order; each question must name every object by its tag."""
        kept: dict[str, QAPair] = {}
        for pair in response.pairs:
            question = " ".join(pair.question.split())
            answer = " ".join(pair.answer.split())
            names_all = all(tag in question for tag in item.tags)
            untagged = re.search(r"<(?!object\d+>)[^>]*>", question + answer)  # stray markup, e.g. <region>
            if pair.type not in kept and question and answer and names_all and not untagged:
                kept[pair.type] = QAPair(type=pair.type, question=question, answer=answer)
        if not kept:
            raise ValueError(f"no usable QA pair: each question must contain {', '.join(item.tags)}")
        return [kept[t] for t in QA_TYPES if t in kept]
