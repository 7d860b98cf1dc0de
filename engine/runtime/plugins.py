"""Pluggable backends, loaded by import path 'package.module:Class' and checked against their interface.

Names ("grounded_sam2") map to import paths in the composition root (engine/registry.py); the
runtime sees only import paths, so engine/ never imports agents/ or pipelines/.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any


class PluginError(LookupError):
    pass


def resolve(path: str, kind: str = "backend") -> Any:
    """Return the object that 'package.module:Attr' names."""
    if ":" not in path:
        raise PluginError(f"{kind} {path!r} is not an import path 'package.module:Class'")
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise PluginError(f"{kind} {path!r}: cannot import module {module_name!r}: {e}") from None
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise PluginError(f"{kind} {path!r}: module {module_name!r} has no attribute {attr!r}") from None
    return obj


def load_segmentor(path: str) -> type:
    """The segmentor class at `path`, checked against the interface in agents/segmentor.py:

    a class, built with the `segmentor` config section; `segment(request, frames)`; and `version`, a
    string class attribute or a `version_for(cfg)` classmethod (a version that depends on the config).
    """
    cls = resolve(path, "segmentor backend")
    problems = []
    if not inspect.isclass(cls):
        raise PluginError(f"segmentor backend {path!r} is not a class")
    segment = getattr(cls, "segment", None)
    if not callable(segment):
        problems.append("a segment(request, frames) method")
    else:
        params = [p for p in inspect.signature(segment).parameters.values() if p.name != "self"]
        if len(params) < 2:
            problems.append(f"segment(request, frames) taking two arguments (it takes {len(params)})")
    if not callable(getattr(cls, "version_for", None)) and not isinstance(getattr(cls, "version", None), str):
        problems.append("a `version` string class attribute or a version_for(cfg) classmethod")
    if problems:
        raise PluginError(f"segmentor backend {path!r} lacks " + "; ".join(problems))
    return cls


def backend_version(cls: type, cfg: Any) -> str:
    """A segmentor's version for a config, without building it (which loads models)."""
    version_for = getattr(cls, "version_for", None)
    return version_for(cfg) if callable(version_for) else cls.version
