"""Pluggable backends, loaded by import path 'package.module:Class' and checked against their interface.

Names ("grounded_sam2") map to import paths in the composition root (engine/registry.py); the
runtime sees only import paths, so engine/ never imports agents/ or pipelines/.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any, cast, get_type_hints

from engine.runtime.segmentation import Segmentor


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


def origin(path: str) -> dict[str, str] | None:
    """Where the plug-in at 'package.module:Attr' was imported from: its module's file and the folder that has to
    be on PYTHONPATH for it (recorded with each run, named in the hint when a later command cannot import it)."""
    module = sys.modules.get(path.partition(":")[0])
    file = getattr(module, "__file__", None)
    if module is None or file is None:
        return None
    parts = module.__name__.split(".")
    up = len(parts) - (0 if Path(file).name == "__init__.py" else 1)
    return {"file": str(Path(file).resolve()), "root": str(Path(file).resolve().parents[up])}


def load_segmentor(path: str) -> type[Segmentor]:
    """The segmentor class at `path`, checked against the Segmentor protocol (engine/runtime/segmentation.py): a
    class with its methods, taking at least their arguments, and its attributes, as class attributes of their type
    or given by a `<name>_for(cfg)` classmethod (a `version` that depends on the config)."""
    cls = resolve(path, "segmentor backend")
    if not inspect.isclass(cls):
        raise PluginError(f"segmentor backend {path!r} is not a class")
    problems = _lacks(cls, Segmentor)
    if problems:
        raise PluginError(f"segmentor backend {path!r} lacks " + "; ".join(problems))
    return cast("type[Segmentor]", cls)  # what _lacks checked


def backend_version(cls: type[Segmentor], cfg: Any) -> str:
    """A segmentor's version for a config, without building it (which loads models)."""
    version_for = getattr(cls, "version_for", None)
    return version_for(cfg) if callable(version_for) else cls.version


_TYPE_WORDS = {str: "string"}
_NUMBER_WORDS = ("no", "one", "two", "three", "four")


def _lacks(cls: type, protocol: type) -> list[str]:
    """What `cls` lacks of `protocol`'s members, a phrase each. Checked on the class, before it is built (which
    loads models), so the protocol's attributes may come from classmethods; its own __init__ is not checked."""
    problems = []
    for name, member in vars(protocol).items():  # methods
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        wanted = [p for p in inspect.signature(member).parameters if p != "self"]
        shown = f"{name}({', '.join(wanted)})"
        method = getattr(cls, name, None)
        if not callable(method):
            problems.append(f"a {shown} method")
            continue
        takes = [p for p in inspect.signature(method).parameters if p != "self"]
        if len(takes) < len(wanted):
            problems.append(f"{shown} taking {_NUMBER_WORDS[len(wanted)]} arguments (it takes {len(takes)})")
    for name, kind in get_type_hints(protocol).items():  # attributes
        if not isinstance(getattr(cls, name, None), kind) and not callable(getattr(cls, f"{name}_for", None)):
            problems.append(
                f"a `{name}` {_TYPE_WORDS.get(kind, kind.__name__)} class attribute or a {name}_for(cfg) classmethod"
            )
    return problems
