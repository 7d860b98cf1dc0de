"""Reviewer: does the description match the mask? Two modes.

- paper: a vision-language model describes the masked region on the anchor frame (RegionDescriber),
  then a language model judges whether that and the Annotator's descriptions refer to the same
  object (Judge), as the paper's Osprey + Qwen2 pair.
- direct: one vision-language call on overlay frames plus the descriptions (DirectReviewer).

The judging step may be a cascade of judges, cheap to strong ([[review.cascade]]; pipelines/stages.py ReviewStage):
one Judge (or DirectReviewer) per judge, each on its own endpoint. A judge's score is P(same object): the
probability of its answer token where the server returns log-probabilities (engine/llm/logprobs.py), else its
verbalised confidence turned into P(same).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from agents.base import TemplateAgent, one_paragraph
from engine.llm.logprobs import yes_probability


class RegionDescription(BaseModel):
    description: str


class Verdict(BaseModel):
    same_object: bool
    confidence: float = Field(ge=0, le=1)
    rationale: str = Field(description="one short line")


@dataclass(frozen=True)
class RegionItem:
    image: str  # the anchor frame with the object highlighted


@dataclass(frozen=True)
class JudgeItem:
    noun: str
    region: str
    static: str
    dynamic: str
    images: tuple[str, ...] = ()  # direct mode: overlay frames


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(text.split())[:limit]


class RegionDescriber(TemplateAgent):
    role = "reviewer.region"
    endpoint = "reviewer"
    sees_images = True
    response_format = RegionDescription
    prompt_name = "reviewer_region"

    def prompt(self, item: RegionItem) -> list[dict]:
        return self.template.messages([item.image])

    def parse(self, item: RegionItem, response: RegionDescription) -> str:
        return one_paragraph(response.description, "region description")


@dataclass(frozen=True)
class Scored:
    """A judge's verdict and its score, P(same object), with the score's source."""

    verdict: Verdict
    p_same: float
    source: Literal["tokens", "verbal"]
    token_p_same: float | None  # the answer token's P(same object), where the server gave log-probabilities

    def as_row(self, judge: str, model: str) -> dict[str, Any]:
        """This judge's answer as one entry of a review's `judges`."""
        return {
            "judge": judge,
            "model": model,
            "p_same": self.p_same,
            "source": self.source,
            "token_p_same": self.token_p_same,
            "same_object": self.verdict.same_object,
            "confidence": self.verdict.confidence,
        }


class Judge(TemplateAgent):
    """Judges the paper's way; `name` and `endpoint` make it one judge of a cascade (role reviewer.judge.<name>)."""

    role = "reviewer.judge"
    endpoint = "reviewer"
    response_format = Verdict
    prompt_name = "reviewer_judge"
    mode = "paper"
    reads_logprobs = True  # Services.ask asks for the answer tokens' log-probabilities (review.logprobs = "auto")

    def __init__(self, endpoint: str | None = None, name: str | None = None) -> None:
        super().__init__()
        self.name = name or "reviewer"
        if endpoint is not None:
            self.endpoint = endpoint
        if name is not None:
            self.role = f"{type(self).role}.{name}"

    def prompt(self, item: JudgeItem) -> list[dict]:
        return self.template.messages(noun=item.noun, region=item.region, static=item.static, dynamic=item.dynamic)

    def parse(self, item: JudgeItem, response: Verdict, logprobs: list[dict[str, Any]] | None = None) -> Scored:
        verdict = response.model_copy(update={"rationale": _one_line(response.rationale)})
        token_p = yes_probability(logprobs, "same_object")
        if token_p is not None:
            return Scored(verdict, token_p, "tokens", token_p)
        # the verbalised confidence is the probability that the answer is right: as P(same), c or 1 - c
        c = verdict.confidence
        return Scored(verdict, c if verdict.same_object else 1.0 - c, "verbal", None)


class DirectReviewer(Judge):
    role = "reviewer.direct"
    sees_images = True
    prompt_name = "reviewer_direct"
    mode = "direct"

    def prompt(self, item: JudgeItem) -> list[dict]:
        return self.template.messages(
            item.images, noun=item.noun, static=item.static, dynamic=item.dynamic, n_frames=len(item.images)
        )
