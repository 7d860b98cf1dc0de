"""What a run can name: pipelines and segmentor backends.

The composition root: with engine/api.py (which uses it) and the CLI (which uses that), the one place that
imports pipelines/, so the runtime keeps no lists of pipeline names and imports no agent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pipelines.detailed
import pipelines.qa
import pipelines.short
from engine.config import Config
from engine.runtime.pipeline import Pipeline, VersionContext, current_of
from engine.runtime.plugins import PluginError, backend_version, load_segmentor
from engine.store.current import Current

# name -> builder; the order is the order of a run (detailed first: it segments every noun of a video at once)
PIPELINES: dict[str, Callable[[], Pipeline | list[Pipeline]]] = {
    "detailed": pipelines.detailed.build_pipeline,
    "short": pipelines.short.build_pipeline,
    "qa": pipelines.qa.build_pipeline,  # plain videos' QA, and an annotated dataset's
    "qa-dataset": pipelines.qa.build_dataset_pipeline,  # a dataset's only: an error when the source has none
}
SEGMENTORS = {
    "grounded_sam2": "agents.grounded_sam2:GroundedSam2Segmentor",
    "dataset_masks": "agents.segmentor:DatasetMasksSegmentor",
}


def build_pipelines(names: Sequence[str]) -> list[Pipeline]:
    unknown = [n for n in names if n not in PIPELINES]
    if unknown:
        raise ValueError(f"unknown pipeline(s) {', '.join(unknown)}; choose from {', '.join(PIPELINES)}")
    built = [PIPELINES[n]() for n in PIPELINES if n in names]
    flat: list[Pipeline] = [p for b in built for p in (b if isinstance(b, list) else [b])]  # a name may be several
    return list({p.name: p for p in flat}.values())  # qa and qa-dataset share one


def segmentor_path(cfg: Config) -> str:
    """The configured backend as an import path (a registered name, or already a path)."""
    spec = cfg.segmentor.backend
    if spec in SEGMENTORS:
        return SEGMENTORS[spec]
    if ":" not in spec:
        raise PluginError(
            f"unknown segmentor backend {spec!r}: use one of {', '.join(SEGMENTORS)} or an import path "
            "'package.module:Class'"
        )
    return spec


def version_context(cfg: Config) -> tuple[VersionContext, str]:
    """The versions the configuration names (the segmentor's from its class, without building it) and its path."""
    path = segmentor_path(cfg)
    return VersionContext(cfg, backend_version(load_segmentor(path), cfg.segmentor)), path


def configured_current(cfg: Config) -> Current:
    """What every pipeline's configured versions make current (the reading commands' view with --config/--set)."""
    vc, _ = version_context(cfg)
    return current_of(build_pipelines(list(PIPELINES)), vc)


def current_of_names(names: Sequence[str], vc: VersionContext) -> Current:
    """What the named pipelines make current under these versions (a run's own view)."""
    return current_of(build_pipelines([n for n in names if n in PIPELINES]), vc)
