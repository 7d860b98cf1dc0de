"""Pluggable backends: chosen by a registered name or by an import path 'package.module:Class'.

Registering by import path (a string) rather than by importing the class keeps heavy backends
(torch, SAM 2) out of the import graph until one is actually chosen.
"""

from __future__ import annotations

import importlib
from typing import Any

# kind -> name -> import path. Backends that later issues add register here.
REGISTRY: dict[str, dict[str, str]] = {
    "segmentor": {
        "dataset_masks": "agents.segmentor:DatasetMasksSegmentor",
        "grounded_sam2": "agents.grounded_sam2:GroundedSam2Segmentor",
    },
    # engine/ never imports pipelines/ (imports run pipelines -> agents -> engine): it names them.
    "pipeline": {
        "detailed": "pipelines.detailed:build_pipeline",
        "short": "pipelines.short:build_pipeline",
        "qa": "pipelines.qa:build_pipeline",
    },
}


class PluginError(LookupError):
    pass


def register(kind: str, name: str, import_path: str) -> None:
    REGISTRY.setdefault(kind, {})[name] = import_path


def resolve(kind: str, spec: str) -> Any:
    """Return the object that `spec` (a registered name or 'package.module:Attr') names."""
    names = REGISTRY.get(kind, {})
    path = names.get(spec, spec)
    if ":" not in path:
        known = ", ".join(sorted(names)) or "(none registered)"
        raise PluginError(f"unknown {kind} backend {spec!r}: use one of {known} or an import path 'package.module:Class'")
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise PluginError(f"{kind} backend {spec!r}: cannot import module {module_name!r}: {e}") from None
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise PluginError(f"{kind} backend {spec!r}: module {module_name!r} has no attribute {attr!r}") from None
    return obj
