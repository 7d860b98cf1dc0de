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
    context: str | None = None  # a clip's source's caption: it describes the whole video, not this shot


CONTEXT_NOTE = (
    ' The clip is one shot of a longer video, which was described as a whole as: "{context}". That '
    "description may name things this shot does not show: caption only what these frames show."
)


class CaptionerAgent(TemplateAgent):
    role = "captioner"
    endpoint = "captioner"
    sees_images = True
    response_format = Caption
    prompt_name = "captioner"

    def prompt(self, item: CaptionItem) -> list[dict]:
        note = CONTEXT_NOTE.format(context=item.context) if item.context else ""
        return self.template.messages(item.images, n_frames=len(item.images), context_note=note)

    def parse(self, item: CaptionItem, response: Caption) -> str:
        return one_paragraph(response.caption, "caption")
