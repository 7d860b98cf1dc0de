"""Annotator: two descriptions per object, as the paper: dynamic (motion over time) and static (appearance)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from agents.base import TemplateAgent, one_paragraph

OVERLAY_NOTE = " The {noun} meant here is the one filled with a coloured mask and outlined."
CONTEXT_NOTE = " People who annotated this video described the marked object as: "
KIND_OF = {"dynamic": "motion", "static": "appearance"}  # the descriptions table's kinds


class ObjectDescription(BaseModel):
    description: str


@dataclass(frozen=True)
class AnnotateItem:
    noun: str
    images: tuple[str, ...]
    overlay: bool = False  # True when the frames show this instance's mask (the noun names several, or a dataset's)
    context: tuple[str, ...] = ()  # what people wrote about this object (a dataset's referring expressions)


class AnnotatorAgent(TemplateAgent):
    endpoint = "annotator"
    sees_images = True
    response_format = ObjectDescription

    def __init__(self, query: Literal["dynamic", "static"]):
        self.query = query
        self.kind = KIND_OF[query]
        self.prompt_name = f"annotator_{query}"
        self.role = f"annotator.{query}"
        super().__init__()

    def prompt(self, item: AnnotateItem) -> list[dict]:
        note = OVERLAY_NOTE.format(noun=item.noun) if item.overlay else ""
        if item.context:
            note += CONTEXT_NOTE + " ".join(f'"{c}"' for c in item.context)
        return self.template.messages(item.images, n_frames=len(item.images), noun=item.noun, overlay_note=note)

    def parse(self, item: AnnotateItem, response: ObjectDescription) -> str:
        return one_paragraph(response.description, "description")
