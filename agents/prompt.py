"""Prompt templates: text files in agents/prompts/ with a version, a system part and a user part.

File format::

    version: 3
    --- system
    You are ...
    --- user
    Caption: {caption}

Bump the version whenever the wording changes: the version is part of every stored row's
stage version, so changed prompts re-run that agent (and what depends on it), nothing upstream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from engine.media.images import user_message

PROMPTS = Path(__file__).with_name("prompts")


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    system: str
    user: str

    @property
    def tag(self) -> str:
        """'<name>@<version>', the value stored as prompt_version."""
        return f"{self.name}@{self.version}"

    def messages(self, images: list[str] | tuple[str, ...] = (), **values: object) -> list[dict]:
        """System and user turns; images (data URLs, or 'sha256:' placeholders the runtime fills) follow the text."""
        return [
            {"role": "system", "content": self.system.format(**values)},
            user_message(self.user.format(**values), list(images)),
        ]


@cache
def load(name: str) -> Prompt:
    text = (PROMPTS / f"{name}.txt").read_text(encoding="utf-8")
    head, _, rest = text.partition("\n")
    version = re.fullmatch(r"version:\s*(\S+)", head.strip())
    if not version:
        raise ValueError(f"{name}.txt must start with 'version: N'")
    parts = dict(re.findall(r"^--- (system|user)\n(.*?)(?=^--- |\Z)", rest, re.S | re.M))
    if set(parts) != {"system", "user"}:
        raise ValueError(f"{name}.txt needs a '--- system' and a '--- user' part")
    return Prompt(name, version.group(1), parts["system"].strip(), parts["user"].strip())
