"""The engine from Python: the one entry point, which the `engine` command line only calls.

    from engine.api import Engine

    eng = Engine.from_settings(data_dir="engine-data")
    result = eng.run("videos/", pipelines=["detailed"], dry_run=True)
    print(result.sentence, result.plan.calls)

Nothing here prints. Progress and tables reach whoever watches through a RunObserver
(engine/runtime/observer.py); the CLI's draws them with rich. A run that cannot start raises RunRefused
(nothing sent, nothing recorded); once it has started, every ending is a RunResult with a state and an exit
code. This module is also the composition root's user: it names pipelines and segmentors through
engine/registry.py, so the runtime imports no agent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import Config, load_config
from engine.llm.request_log import RoleTotals, request_totals
from engine.registry import build_pipelines, configured_current, version_context
from engine.runtime.observer import RunObserver
from engine.runtime.plugins import PluginError
from engine.runtime.run import RunRefused, RunRequest, RunResult, run, stale_sentence
from engine.runtime.run_state import mark_interrupted
from engine.store.current import StageCount, stage_counts
from engine.store.db import Store, safe_url
from engine.store.runs import FailureRow, RunRow, recent_failures, recent_runs

__all__ = ["Engine", "RunObserver", "RunRefused", "RunResult", "StoreStatus", "StoreUnavailable"]


class StoreUnavailable(Exception):
    """The store cannot be opened (a server that does not answer, a bad URL); the message names it."""


@dataclass
class StoreStatus:
    """What `engine status` shows: the store's contents, which results are current, runs, requests, failures."""

    store_url: str  # with any password hidden
    closed_runs: list[str] = field(default_factory=list)  # runs found ended and closed now, one sentence each
    tables: dict[str, int] = field(default_factory=dict)
    stages: list[StageCount] | None = None  # None: the configured versions could not be known (stages_error)
    stages_error: str | None = None
    runs: list[RunRow] = field(default_factory=list)  # the newest first
    requests: list[RoleTotals] = field(default_factory=list)  # all runs, by agent role
    last_run: RunRow | None = None  # the newest run that sent requests (not a dry run)
    last_run_requests: list[RoleTotals] = field(default_factory=list)
    failures: list[FailureRow] = field(default_factory=list)  # the newest first
    failure_count: int = 0


class Engine:
    """A configured engine: runs, the store's status, and (through their modules) export, validate and audit."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        observer: RunObserver | None = None,
        environ: Mapping[str, str] | None = None,
    ):
        """`environ`: where model calls read their keys and base URLs (default: this process's environment)."""
        self.config = config if config is not None else load_config()
        self.observer = observer or RunObserver()
        self.environ = environ
        self._store: Store | None = None

    @classmethod
    def from_settings(
        cls,
        config_file: str | os.PathLike[str] | None = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        database_url: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        observer: RunObserver | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Engine:
        """The configuration as the CLI builds it: a file (default ./engine.toml, else the defaults), ENGINE_*
        variables, then `overrides` (dotted keys: {"sampling.mask_frames": 8}). Raises ConfigError."""
        given = {"data_dir": str(data_dir) if data_dir is not None else None, "database_url": database_url}
        cfg = load_config(config_file, overrides={**(overrides or {}), **given}, environ=environ)
        return cls(cfg, observer=observer, environ=environ)

    @property
    def store(self) -> Store:
        """The store, opened (and migrated) on first use. Raises StoreUnavailable."""
        if self._store is None:
            url = self.config.resolved_database_url
            try:
                self._store = Store(url)
            except Exception as e:  # an unreachable server or a bad URL: say which
                raise StoreUnavailable(f"cannot open the store at {safe_url(url)}: {e}") from None
        return self._store

    def run(
        self,
        source: str | os.PathLike[str],
        pipelines: Sequence[str] = ("detailed",),
        *,
        dry_run: bool = False,
        limit: int | None = None,
        use_cache: bool = True,
        retry_failed: bool = False,
    ) -> RunResult:
        """Run the pipelines over a folder of videos (searched recursively); `dry_run` scans, probes, splits and
        records, then returns the plan without calling a model. Raises RunRefused when the run cannot start."""
        src = Path(source)
        if not src.is_dir():
            raise RunRefused(f"--source {src} is not a folder")
        names = [n.strip() for n in pipelines if n.strip()]
        try:
            built = build_pipelines(names)
            versions, seg_path = version_context(self.config)
        except (ValueError, PluginError) as e:
            raise RunRefused(str(e)) from None
        if "qa-dataset" in names and not _has_dataset_video(src):
            raise RunRefused(
                f"--pipelines qa-dataset, but {src} holds no video of an annotated dataset (MeViS, "
                "Ref-YouTube-VOS, A2D-Sentences, Ref-DAVIS17) in its released layout"
            )
        request = RunRequest(src, built, names, versions, seg_path, dry_run, limit, use_cache, retry_failed)
        return run(self.config, self._open_for_run, request, self.observer, self.environ)

    def _open_for_run(self) -> Store:
        try:
            return self.store
        except StoreUnavailable as e:
            raise RunRefused(str(e)) from None

    def status(self, runs: int = 5, failures: int = 50) -> StoreStatus:
        """The store's contents, current results, recent runs, requests and failures. Runs that ended without
        closing their row (killed, or a full disk) are closed first, as the run log or the heartbeat says."""
        store = self.store
        out = StoreStatus(safe_url(store.url))
        out.closed_runs = [stale_sentence(i, st) for i, st in mark_interrupted(store, self.config.data_path / "logs")]
        out.tables = store.counts()
        try:
            current = configured_current(self.config)
        except PluginError as e:
            out.stages_error = str(e)
        else:
            with store.session() as s:
                out.stages = stage_counts(s, current)
        out.runs = recent_runs(store, runs)
        out.failures, out.failure_count = recent_failures(store, failures)
        out.requests = request_totals(store)
        real = [r for r in out.runs if r.command.startswith("run --pipelines")]
        if out.requests and real:
            out.last_run = real[0]
            out.last_run_requests = request_totals(store, real[0].id)
        return out


def _has_dataset_video(source: Path) -> bool:
    from engine.sources.datasets import dataset_of
    from engine.sources.ingest import scan

    return any(dataset_of(str(c.path)) is not None for c in scan(source)[0])
