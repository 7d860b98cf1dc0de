"""The JSON schema of a pydantic model in the form OpenAI's strict structured outputs take.

Strict mode ("strict": true) accepts a schema only if every object is closed (`additionalProperties: false`)
and lists all its properties as required, and a `$ref` stands alone (a `$ref` with siblings, such as a
description, is inlined). This gives the same schema, key order included, as openai's own `parse()` sends
(its private `openai.lib._pydantic.to_strict_json_schema`, openai 3.63); tests/engine/llm/test_strict_schema.py
pins the output for every agent's schema.
"""

from __future__ import annotations

from typing import Any

import pydantic


def strict_json_schema(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema made strict."""
    schema = model.model_json_schema()  # a new dict on every call: made strict in place
    return _strict(schema, schema)


def _strict(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    for defs_key in ("$defs", "definitions"):
        defs = node.get(defs_key)
        if isinstance(defs, dict):
            for sub in defs.values():
                _strict(sub, root)
    if node.get("type") == "object" and "additionalProperties" not in node:
        node["additionalProperties"] = False
    properties = node.get("properties")
    if isinstance(properties, dict):
        node["required"] = list(properties)
        node["properties"] = {k: _strict(v, root) for k, v in properties.items()}
    items = node.get("items")
    if isinstance(items, dict):
        node["items"] = _strict(items, root)
    any_of = node.get("anyOf")
    if isinstance(any_of, list):
        node["anyOf"] = [_strict(v, root) for v in any_of]
    all_of = node.get("allOf")
    if isinstance(all_of, list):
        if len(all_of) == 1:
            node.update(_strict(all_of[0], root))
            node.pop("allOf")
        else:
            node["allOf"] = [_strict(v, root) for v in all_of]
    if "default" in node and node["default"] is None:
        node.pop("default")  # every property is required: a None default says nothing
    ref = node.get("$ref")
    if ref and len(node) > 1:
        # A $ref with siblings: inline its target (the siblings win), then make the result strict too.
        node.update({**_resolve(root, ref), **node})
        node.pop("$ref")
        return _strict(node, root)
    return node


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"unexpected $ref {ref!r}: only local references ('#/...') are resolved")
    target: Any = root
    for key in ref[2:].split("/"):
        target = target[key]
    if not isinstance(target, dict):
        raise ValueError(f"$ref {ref!r} does not name a schema")
    return target
