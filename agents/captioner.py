"""Captioner: writes the one-line scene caption when a video comes without one."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from agents.base import TemplateAgent, one_paragraph


class Caption(BaseModel):
    caption: str = Field(description="one sentence, at most 30 words")


@dataclass(frozen=True)
class CaptionItem:
    images: tuple[str, ...]  # the annotator frames of the video


class CaptionerAgent(TemplateAgent):
    role = "captioner"
    endpoint = "captioner"
    sees_images = True
    response_format = Caption
    prompt_name = "captioner"

    def prompt(self, item: CaptionItem) -> list[dict]:
        return self.template.messages(item.images, n_frames=len(item.images))

    def parse(self, item: CaptionItem, response: Caption) -> str:
        return one_paragraph(response.caption, "caption")
