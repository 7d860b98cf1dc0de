"""Reviewer: does the description match the mask? Two modes.

- paper: a vision-language model describes the masked region on the anchor frame (RegionDescriber),
  then a language model judges whether that and the Annotator's descriptions refer to the same
  object (Judge), as the paper's Osprey + Qwen2 pair.
- direct: one vision-language call on overlay frames plus the descriptions (DirectReviewer).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from agents.base import TemplateAgent, one_paragraph


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


class Judge(TemplateAgent):
    role = "reviewer.judge"
    endpoint = "reviewer"
    response_format = Verdict
    prompt_name = "reviewer_judge"
    mode = "paper"

    def prompt(self, item: JudgeItem) -> list[dict]:
        return self.template.messages(noun=item.noun, region=item.region, static=item.static, dynamic=item.dynamic)

    def parse(self, item: JudgeItem, response: Verdict) -> Verdict:
        return response.model_copy(update={"rationale": _one_line(response.rationale)})


class DirectReviewer(Judge):
    role = "reviewer.direct"
    sees_images = True
    prompt_name = "reviewer_direct"
    mode = "direct"

    def prompt(self, item: JudgeItem) -> list[dict]:
        return self.template.messages(
            item.images, noun=item.noun, static=item.static, dynamic=item.dynamic, n_frames=len(item.images)
        )
