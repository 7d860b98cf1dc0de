"""Captioner: writes the one-line scene caption when a video comes without one."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from agents.prompt import load


class Caption(BaseModel):
    caption: str = Field(description="one sentence, at most 30 words")


@dataclass(frozen=True)
class CaptionItem:
    images: tuple[str, ...]  # the annotator frames of the video


class CaptionerAgent:
    name = "captioner"
    response_format = Caption

    def __init__(self) -> None:
        self.template = load("captioner")
        self.version = self.template.tag

    def prompt(self, item: CaptionItem) -> list[dict]:
        return self.template.messages(item.images, n_frames=len(item.images))

    def parse(self, item: CaptionItem, response: Caption) -> str:
        text = " ".join(response.caption.split())
        if not text:
            raise ValueError("empty caption")
        return text
