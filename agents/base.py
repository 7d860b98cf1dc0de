"""What every model-calling agent shares: its prompt template, its version, and text clean-up.

An agent subclass sets `role` (its name in accounting: "reviewer.judge", "refiner.qa" ...),
`endpoint` (the [agents.<key>] table whose endpoint and model it uses; agents may share one),
`response_format` (a pydantic model) and `prompt_name` (a file in agents/prompts/), and writes
`prompt(item)` and `parse(item, response)`. Transport, retries, caching and accounting are the engine's.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from agents.prompt import Prompt, load


class TemplateAgent:
    role: str  # a class attribute, or set per instance before __init__ (AnnotatorAgent: one per query)
    endpoint: str  # a class attribute; a cascade judge sets its own per instance
    sees_images: ClassVar[bool] = False  # its requests carry frames: preflight proves the model sees them
    response_format: ClassVar[type[BaseModel]]
    prompt_name: str  # as role

    def __init__(self) -> None:
        self.template: Prompt = load(self.prompt_name)
        self.version = self.template.tag  # stored with every row this agent produces


def one_paragraph(text: str, what: str) -> str:
    """Collapse whitespace; an empty answer is unusable (ValueError)."""
    cleaned = " ".join(text.split())
    if not cleaned:
        raise ValueError(f"empty {what}")
    return cleaned
