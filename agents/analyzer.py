"""Analyzer: the nouns of physical, visible, countable objects in a caption, with the subject marked."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache, lru_cache

from pydantic import BaseModel, Field

from agents.base import TemplateAgent

MAX_NOUN_CHARS = 48


class Nouns(BaseModel):
    subject: str = Field(description="the main actor, a singular noun")
    others: list[str] = Field(description="other object nouns, singular, no duplicates")


@dataclass(frozen=True)
class AnalyzeItem:
    caption: str


@dataclass(frozen=True)
class Analysis:
    subject: str | None
    others: list[str] = field(default_factory=list)

    @property
    def nouns(self) -> list[str]:
        return ([self.subject] if self.subject else []) + self.others


@cache
def _inflector():
    import inflect

    return inflect.engine()


@lru_cache(maxsize=8192)  # inflect is slow, and captions repeat their nouns
def normalize_noun(text: str) -> str:
    """'The Boats.' -> 'boat'; keeps one leading adjective ('red car'); '' when nothing usable is left."""
    words = re.sub(r"[^a-z0-9\- ]", " ", text.lower()).split()
    words = [w for w in words if w not in ("a", "an", "the", "some", "two", "three", "several")]
    if not words:
        return ""
    last = words[-1]
    if not last.endswith(("ss", "us", "is")):  # inflect turns 'bus' into 'bu' and 'glass' into 'glas'
        last = _inflector().singular_noun(last) or last
    noun = " ".join(words[:-1][-1:] + [last])
    return noun[:MAX_NOUN_CHARS].strip()


def subject_is_plural(noun: str, caption: str) -> bool:
    """Whether the caption speaks of its subject in the plural ("Two dogs chase a ball" for "dog"): the noun's
    plural is among its words and the singular is not. The Analyzer's nouns are singular by then, so the caption is
    what tells; a noun whose plural is itself ("sheep") reads as singular."""
    last = noun.split()[-1] if noun.strip() else ""
    if not last:
        return False
    words = set(re.findall(r"[a-z0-9\-]+", caption.lower()))
    plural = _inflector().plural_noun(last)
    return bool(plural) and plural != last and plural in words and last not in words


class AnalyzerAgent(TemplateAgent):
    role = "analyzer"
    endpoint = "analyzer"
    response_format = Nouns
    prompt_name = "analyzer"

    def setup(self) -> None:
        """Load inflect now (about 2 s, with its type checks): a run calls this before its first video."""
        _inflector()

    def prompt(self, item: AnalyzeItem) -> list[dict]:
        return self.template.messages(caption=item.caption)

    def parse(self, item: AnalyzeItem, response: Nouns) -> Analysis:
        subject = normalize_noun(response.subject) or None
        seen = {subject} if subject else set()
        others = []
        for raw in response.others:
            noun = normalize_noun(raw)
            if noun and noun not in seen:
                seen.add(noun)
                others.append(noun)
        return Analysis(subject, others)
