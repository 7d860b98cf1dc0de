"""Our strict JSON schemas equal what openai's private to_strict_json_schema gave (openai 3.63), key order included.

EXPECTED was computed with openai.lib._pydantic.to_strict_json_schema before engine/llm/strict_schema.py replaced
it: the schema of every agent and of the preflight probe, and two with what the agents' schemas do not use yet (a
$ref beside a description, optional fields with None defaults, unions, enums, dicts, tuples, recursion).
"""

import json
from enum import StrEnum
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from agents.analyzer import Nouns
from agents.annotator import ObjectDescription
from agents.captioner import Caption
from agents.refiner import DetailedDescription, QASet
from agents.reviewer import RegionDescription, Verdict
from engine.llm.client import _Probe
from engine.llm.strict_schema import strict_json_schema


class Color(StrEnum):
    red = "red"
    blue = "blue"


class Inner(BaseModel):
    a: int
    b: str | None = None


class Outer(BaseModel):
    inner: Inner = Field(description="described ref")
    maybe: Inner | None = None
    many: list[Inner]
    color: Color
    col2: Color = Field(description="x")
    lit: Literal["a", "b"] = "a"
    u: int | str | Inner
    d: dict[str, int]
    t: tuple[int, str]


class Node(BaseModel):
    name: str
    children: list["Node"] = []
    parent: "Node | None" = Field(None, description="up")


MODELS = [
    Nouns,
    QASet,
    Verdict,
    Caption,
    DetailedDescription,
    ObjectDescription,
    RegionDescription,
    _Probe,
    Outer,
    Node,
]

EXPECTED = {
    "Nouns": {
        "properties": {
            "subject": {"description": "the main actor, a singular noun", "title": "Subject", "type": "string"},
            "others": {
                "description": "other object nouns, singular, no duplicates",
                "items": {"type": "string"},
                "title": "Others",
                "type": "array",
            },
        },
        "required": ["subject", "others"],
        "title": "Nouns",
        "type": "object",
        "additionalProperties": False,
    },
    "QASet": {
        "$defs": {
            "QAPair": {
                "properties": {
                    "type": {"enum": ["basic", "reasoning", "future"], "title": "Type", "type": "string"},
                    "question": {"title": "Question", "type": "string"},
                    "answer": {"title": "Answer", "type": "string"},
                },
                "required": ["type", "question", "answer"],
                "title": "QAPair",
                "type": "object",
                "additionalProperties": False,
            }
        },
        "properties": {"pairs": {"items": {"$ref": "#/$defs/QAPair"}, "title": "Pairs", "type": "array"}},
        "required": ["pairs"],
        "title": "QASet",
        "type": "object",
        "additionalProperties": False,
    },
    "Verdict": {
        "properties": {
            "same_object": {"title": "Same Object", "type": "boolean"},
            "confidence": {"maximum": 1, "minimum": 0, "title": "Confidence", "type": "number"},
            "rationale": {"description": "one short line", "title": "Rationale", "type": "string"},
        },
        "required": ["same_object", "confidence", "rationale"],
        "title": "Verdict",
        "type": "object",
        "additionalProperties": False,
    },
    "Caption": {
        "properties": {
            "caption": {"description": "one sentence, at most 30 words", "title": "Caption", "type": "string"}
        },
        "required": ["caption"],
        "title": "Caption",
        "type": "object",
        "additionalProperties": False,
    },
    "DetailedDescription": {
        "properties": {"description": {"title": "Description", "type": "string"}},
        "required": ["description"],
        "title": "DetailedDescription",
        "type": "object",
        "additionalProperties": False,
    },
    "ObjectDescription": {
        "properties": {"description": {"title": "Description", "type": "string"}},
        "required": ["description"],
        "title": "ObjectDescription",
        "type": "object",
        "additionalProperties": False,
    },
    "RegionDescription": {
        "properties": {"description": {"title": "Description", "type": "string"}},
        "required": ["description"],
        "title": "RegionDescription",
        "type": "object",
        "additionalProperties": False,
    },
    "_Probe": {
        "properties": {"answer": {"title": "Answer", "type": "string"}},
        "required": ["answer"],
        "title": "_Probe",
        "type": "object",
        "additionalProperties": False,
    },
    "Outer": {
        "$defs": {
            "Color": {"enum": ["red", "blue"], "title": "Color", "type": "string"},
            "Inner": {
                "properties": {
                    "a": {"title": "A", "type": "integer"},
                    "b": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "B"},
                },
                "required": ["a", "b"],
                "title": "Inner",
                "type": "object",
                "additionalProperties": False,
            },
        },
        "properties": {
            "inner": {
                "description": "described ref",
                "properties": {
                    "a": {"title": "A", "type": "integer"},
                    "b": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "B"},
                },
                "required": ["a", "b"],
                "title": "Inner",
                "type": "object",
                "additionalProperties": False,
            },
            "maybe": {"anyOf": [{"$ref": "#/$defs/Inner"}, {"type": "null"}]},
            "many": {"items": {"$ref": "#/$defs/Inner"}, "title": "Many", "type": "array"},
            "color": {"$ref": "#/$defs/Color"},
            "col2": {"description": "x", "enum": ["red", "blue"], "title": "Color", "type": "string"},
            "lit": {"default": "a", "enum": ["a", "b"], "title": "Lit", "type": "string"},
            "u": {"anyOf": [{"type": "integer"}, {"type": "string"}, {"$ref": "#/$defs/Inner"}], "title": "U"},
            "d": {"additionalProperties": {"type": "integer"}, "title": "D", "type": "object"},
            "t": {
                "maxItems": 2,
                "minItems": 2,
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "title": "T",
                "type": "array",
            },
        },
        "required": ["inner", "maybe", "many", "color", "col2", "lit", "u", "d", "t"],
        "title": "Outer",
        "type": "object",
        "additionalProperties": False,
    },
    "Node": {
        "$defs": {
            "Node": {
                "properties": {
                    "name": {"title": "Name", "type": "string"},
                    "children": {
                        "default": [],
                        "items": {"$ref": "#/$defs/Node"},
                        "title": "Children",
                        "type": "array",
                    },
                    "parent": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}], "description": "up"},
                },
                "required": ["name", "children", "parent"],
                "title": "Node",
                "type": "object",
                "additionalProperties": False,
            }
        },
        "properties": {
            "name": {"title": "Name", "type": "string"},
            "children": {"default": [], "items": {"$ref": "#/$defs/Node"}, "title": "Children", "type": "array"},
            "parent": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}], "description": "up"},
        },
        "required": ["name", "children", "parent"],
        "title": "Node",
        "type": "object",
        "additionalProperties": False,
    },
}


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_strict_schema_is_what_openai_built(model):
    ours = strict_json_schema(model)
    assert ours == EXPECTED[model.__name__]
    assert json.dumps(ours) == json.dumps(EXPECTED[model.__name__])  # the same bytes on the wire: key order too


def test_every_object_is_closed_and_fully_required():
    def objects(node):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                yield node
            for v in node.values():
                yield from objects(v)
        elif isinstance(node, list):
            for v in node:
                yield from objects(v)

    found = [o for m in MODELS for o in objects(strict_json_schema(m))]
    assert found and all(o["additionalProperties"] is False and o["required"] == list(o["properties"]) for o in found)
