"""Which results the reading commands show: by default, those of the runs that made them.

A run records, beside its resolved settings, the lineages its pipelines made current (runs.provenance, with the
--set overrides, the ENGINE_ variables and the plug-ins' origins). `status`, `export`, `audit` and `review` then
read, for each data type, the results of the latest finished run that made that type (finished with or without
failures; dry runs make nothing), with no need for that run's flags, config file or PYTHONPATH. `--run ID` picks
one run; `--config` or `--set` the configuration's own versions instead (engine/registry.py configured_current).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from engine.store import schema
from engine.store.current import Current
from engine.store.db import Store

FINISHED_STATES = ("finished", "finished_with_failures")


class RunNotFound(LookupError):
    """--run names no run of the store, or one that made no results; the message says which."""


@dataclass(frozen=True)
class StoredRun:
    id: str
    command: str
    status: str
    started_at: datetime
    config: dict[str, Any]
    provenance: dict[str, Any] | None

    @property
    def pipelines(self) -> list[str]:
        """The pipeline names it ran ("run --pipelines detailed,qa")."""
        if self.provenance and "pipelines" in self.provenance:
            return list(self.provenance["pipelines"])
        _, _, names = self.command.partition("run --pipelines ")
        return [n for n in names.split(",") if n]

    @property
    def label(self) -> str:
        return f"run {self.id[:12]} ({self.started_at:%Y-%m-%d %H:%M})"


@dataclass(frozen=True)
class ResultView:
    """The lineages the reading commands use, and the line that says where they come from."""

    current: Current
    sentence: str
    runs: dict[str, str] = field(default_factory=dict)  # data type -> the run whose results of it are shown


def current_to_json(c: Current) -> dict[str, Any]:
    return {
        "objects": sorted(c.objects),
        "kept_as_is": sorted(c.kept_as_is),
        "masklets": sorted(c.masklets),
        "descriptions": {k: sorted(v) for k, v in c.descriptions.items()},
        "reviews": sorted(c.reviews),
        "samples": {k: sorted(v) for k, v in c.samples.items()},
        "stages": sorted(c.stages),
        "gates": sorted(c.gates),
    }


def current_from_json(d: dict[str, Any]) -> Current:
    return Current(
        frozenset(d.get("objects", ())),
        frozenset(d.get("kept_as_is", ())),
        frozenset(d.get("masklets", ())),
        {k: frozenset(v) for k, v in d.get("descriptions", {}).items()},
        frozenset(d.get("reviews", ())),
        {k: frozenset(v) for k, v in d.get("samples", {}).items()},
        frozenset(d.get("stages", ())),
        frozenset(d.get("gates", ())),  # runs from before the gates: none
    )


def merged(parts: list[Current]) -> Current:
    """The union of several runs' lineages; each data type's samples come from the one run that is its source."""
    descriptions: dict[str, frozenset[str]] = {}
    samples: dict[str, frozenset[str]] = {}
    for c in parts:
        for k, v in c.descriptions.items():
            descriptions[k] = descriptions.get(k, frozenset()) | v
        for k, v in c.samples.items():
            samples.setdefault(k, v)  # the caller gives each type's source run first
    return Current(
        frozenset().union(*(c.objects for c in parts)),
        frozenset().union(*(c.kept_as_is for c in parts)),
        frozenset().union(*(c.masklets for c in parts)),
        descriptions,
        frozenset().union(*(c.reviews for c in parts)),
        samples,
        frozenset().union(*(c.stages for c in parts)),
        frozenset().union(*(c.gates for c in parts)),
    )


def stored_runs(store: Store, prefix: str | None = None) -> list[StoredRun]:
    """Runs that made results (not dry runs), newest first: those that finished, or the ones whose id starts
    with `prefix` whatever their state."""
    r = schema.Run
    q = sa.select(r).where(r.command.like("run --pipelines%")).order_by(r.started_at.desc())
    q = q.where(r.id.like(f"{prefix}%")) if prefix else q.where(r.status.in_(FINISHED_STATES))
    with store.session() as s:
        return [StoredRun(x.id, x.command, x.status, x.started_at, x.config or {}, x.provenance) for x in s.scalars(q)]


def run_current(run: StoredRun, rebuild: Callable[[StoredRun], Current | None]) -> Current | None:
    """The lineages a run made current: recorded with it, or rebuilt from its settings (runs before 0007)."""
    if run.provenance and "current" in run.provenance:
        return current_from_json(run.provenance["current"])
    return rebuild(run)


def latest_view(store: Store, rebuild: Callable[[StoredRun], Current | None]) -> ResultView | None:
    """For each data type, the results of the latest finished run that made it; None when no run has finished."""
    sources: dict[str, tuple[StoredRun, Current]] = {}
    for run in stored_runs(store):
        current = run_current(run, rebuild)
        if current is None:
            continue
        for data_type in current.samples:
            sources.setdefault(data_type, (run, current))
    if not sources:
        return None
    by_run: dict[str, list[str]] = {}
    for data_type, (run, _) in sources.items():
        by_run.setdefault(run.id, []).append(data_type)
    runs = {run.id: (run, current) for run, current in sources.values()}
    order = sorted(runs.values(), key=lambda rc: rc[0].started_at, reverse=True)
    # each type's own run gives its samples: a per-type Current first, then every run's other lineages
    parts = [Current(samples={t: c.samples[t]}) for t, (_, c) in sources.items()] + [c for _, c in order]
    if len(order) == 1:
        sentence = f"using the configuration of {order[0][0].label}"
    else:
        sentence = "using the configuration of " + "; ".join(
            f"{run.label} for {', '.join(sorted(by_run[run.id]))}" for run, _ in order
        )
    return ResultView(merged(parts), sentence, {t: run.id for t, (run, _) in sources.items()})


def one_run_view(store: Store, prefix: str, rebuild: Callable[[StoredRun], Current | None]) -> ResultView:
    """The results of the run whose id starts with `prefix`. Raises RunNotFound."""
    found = stored_runs(store, prefix)
    if not found:
        raise RunNotFound(f"--run {prefix}: no run of this store that made results has an id starting so")
    if len(found) > 1:
        raise RunNotFound(f"--run {prefix}: {len(found)} runs have ids starting so; give more characters")
    run = found[0]
    current = run_current(run, rebuild)
    if current is None:
        raise RunNotFound(f"--run {prefix}: its versions cannot be known (its segmentor plug-in cannot be imported)")
    return ResultView(current, f"using the configuration of {run.label}", {t: run.id for t in current.samples})


def plugin_roots(store: Store, path: str) -> list[str]:
    """The folders earlier runs imported the plug-in `path` from, newest first (for the PYTHONPATH hint)."""
    roots: list[str] = []
    r = schema.Run
    with store.session() as s:
        for prov in s.scalars(sa.select(r.provenance).where(r.provenance.is_not(None)).order_by(r.started_at.desc())):
            root = ((prov or {}).get("plugins") or {}).get(path, {}).get("root")
            if root and root not in roots:
                roots.append(root)
    return roots
