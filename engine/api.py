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
from typing import Any, cast

from engine.audit.calibrate import Calibration
from engine.audit.cascade import CascadeCalibration
from engine.audit.gates import GatesSuggestion
from engine.audit.sampling import AuditStats, label_rule, verdict_populations
from engine.config import Config, load_config
from engine.dataset.export import ExportResult
from engine.dataset.validate import NotARecordFile
from engine.dataset.validate import Report as ValidationReport
from engine.llm.request_log import RoleTotals, request_totals
from engine.registry import build_pipelines, configured_current, current_of_names, segmentor_path, version_context
from engine.runtime.observer import RunObserver
from engine.runtime.plugins import PluginError
from engine.runtime.run import RunRefused, RunRequest, RunResult, run, stale_sentence
from engine.runtime.run_state import EXIT_CODES, mark_interrupted
from engine.sources.datasets import dataset_of
from engine.sources.ingest import scan
from engine.store.current import Current, StageCount, stage_counts
from engine.store.db import Store, safe_url
from engine.store.runs import RUNNING, FailureRow, LiveRun, RunRow, live_run, recent_failures, recent_runs
from engine.store.summaries import gated_counts, gates_in_force, judging, left_out
from engine.store.views import ResultView, RunNotFound, StoredRun, latest_view, one_run_view, plugin_roots

__all__ = [
    "Engine",
    "ExportRefused",
    "ExportReport",
    "LiveStatus",
    "NotARecordFile",
    "RunObserver",
    "RunRefused",
    "RunResult",
    "StoreStatus",
    "ResultView",
    "StoreUnavailable",
    "TooFewAudits",
    "ViewUnavailable",
]


class StoreUnavailable(Exception):
    """The store cannot be opened (a server that does not answer, a bad URL); the message names it."""


class ViewUnavailable(LookupError):
    """The results asked for cannot be found: --run names no run, or the configuration's segmentor plug-in cannot
    be imported (the message names it, with the folder earlier runs imported it from)."""


class TooFewAudits(ValueError):
    """Calibration needs at least 20 audited items, labelled both ways."""


class ExportRefused(ValueError):
    """An export asked for something that cannot be: a format, a data type, a calibration that is not there."""


@dataclass
class ExportReport:
    """What `export` wrote, each file's validation, the card, and how it ended: exit code 0, 1 (a file failed
    validation) or 4 (no record written; `empty_reason` says why)."""

    result: ExportResult
    reports: list[ValidationReport]
    card: Path
    exit_code: int
    empty_reason: str | None = None


@dataclass
class StoreStatus:
    """What `engine status` shows: the store's contents, which results are current, runs, requests, failures."""

    store_url: str  # with any password hidden
    view: str = ""  # whose results the stage counts are: "using the configuration of run 3f2a... (...)"
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
    left_out: dict[str, int] = field(default_factory=dict)  # what the current results left out, by reason
    gated: dict[str, int] = field(default_factory=dict)  # current objects a masklet quality gate stopped, by gate
    judging: dict[str, Any] = field(default_factory=dict)  # who decided the current reviews (summaries.judging)


@dataclass
class LiveStatus:
    """A run as it goes, for `engine status --follow`: its row and live snapshot, and its requests so far (from
    the request log, so as current as the store)."""

    run: LiveRun
    requests: list[RoleTotals]

    @property
    def ended(self) -> bool:
        return self.run.status != RUNNING

    @property
    def exit_code(self) -> int | None:
        """The process's exit code for how the run ended (engine/runtime/run_state.py); None while it runs."""
        return None if not self.ended else EXIT_CODES.get(self.run.status, 3)


class Engine:
    """A configured engine: runs, the store's status, and (through their modules) export, validate and audit."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        observer: RunObserver | None = None,
        environ: Mapping[str, str] | None = None,
        results: str = "latest",
    ):
        """`environ`: where model calls read their keys and base URLs (default: this process's environment).
        `results`: whose results status, export, audit and review read: "latest" (each data type's from the latest
        finished run that made it, with that run's versions), "config" (this configuration's versions), or a run
        id or its first characters (engine/store/views.py)."""
        self.config = config if config is not None else load_config()
        self.observer = observer or RunObserver()
        self.environ = environ
        self.results = results
        self._store: Store | None = None
        self._view: ResultView | None = None

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
        except ValueError as e:
            raise RunRefused(str(e)) from None
        except PluginError as e:
            raise RunRefused(self._plugin_hint(e)) from None
        candidates, skipped = scan(src)
        if not candidates:  # nothing to run on is a mistake worth one line, dry run or not
            first = skipped[0] if skipped else None
            also = f" ({len(skipped):,} input(s) skipped, e.g. {first.rel}: {first.reason})" if first else ""
            raise RunRefused(
                f"no videos found under {src} (video files: .mp4 .mkv .webm .avi .mov, or folders of frames){also}"
            )
        if "qa-dataset" in names and not any(dataset_of(str(c.path)) is not None for c in candidates):
            raise RunRefused(
                f"--pipelines qa-dataset, but {src} holds no video of an annotated dataset (MeViS, "
                "Ref-YouTube-VOS, A2D-Sentences, Ref-DAVIS17) in its released layout"
            )
        request = RunRequest(src, built, names, versions, seg_path, dry_run, limit, use_cache, retry_failed)
        return run(self.config, self._open_for_run, request, self.observer, self.environ)

    def view(self) -> ResultView:
        """Whose results the reading commands use (see `results`), resolved once. Raises ViewUnavailable."""
        if self._view is None:
            if self.results == "config":
                self._view = ResultView(self._configured(), f"using the versions of {self._config_source()}")
            elif self.results != "latest":
                try:
                    self._view = one_run_view(self.store, self.results, self._rebuild)
                except RunNotFound as e:
                    raise ViewUnavailable(str(e)) from None
            else:
                self._view = latest_view(self.store, self._rebuild) or ResultView(
                    self._configured(), f"no run has finished yet: using the versions of {self._config_source()}"
                )
        return self._view

    def _configured(self) -> Current:
        try:
            return configured_current(self.config)
        except PluginError as e:
            raise ViewUnavailable(self._plugin_hint(e)) from None

    def _config_source(self) -> str:
        file = self.config.origin.get("config_file")
        sets = self.config.origin.get("overrides") or {}
        shown = [k for k in sets if k not in ("data_dir", "database_url")]
        return (f"config file {file}" if file else "the built-in defaults") + (
            f" with --set {', '.join(shown)}" if shown else ""
        )

    @staticmethod
    def _rebuild(run: StoredRun) -> Current | None:
        """A run's versions from its recorded settings (runs from before their lineages were recorded)."""
        try:
            cfg = Config.model_validate(run.config)
            return current_of_names(run.pipelines, version_context(cfg)[0])
        except (ValueError, PluginError):  # settings of an older engine, or a plug-in that is not here
            return None

    def _plugin_hint(self, e: PluginError) -> str:
        """The error, with the folder this store's runs imported the plug-in from, to put on PYTHONPATH."""
        # only a store that exists is asked: a refused run creates none (nor migrates a server's)
        cfg, roots = self.config, []
        if self._store is not None or (not cfg.database_url and (cfg.data_path / "engine.sqlite").exists()):
            try:
                roots = plugin_roots(self.store, segmentor_path(cfg))
            except Exception:  # an unreadable store, or an unknown name: the error alone
                roots = []
        if roots:
            return f"{e}; runs of this store imported it from {roots[0]}: add that folder to PYTHONPATH"
        return f"{e}; is the folder that holds it on PYTHONPATH?"

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
            view = self.view()
        except ViewUnavailable as e:
            out.stages_error = str(e)
        else:
            out.view = view.sentence
            with store.session() as s:
                out.stages = stage_counts(s, view.current)
            out.left_out = left_out(store, view.current)
            out.gated = gated_counts(store, view.current)
            out.judging = judging(store, view.current)
        out.runs = recent_runs(store, runs)
        out.failures, out.failure_count = recent_failures(store, failures)
        out.requests = request_totals(store)
        real = [r for r in out.runs if r.command.startswith("run --pipelines")]
        if out.requests and real:
            out.last_run = real[0]
            out.last_run_requests = request_totals(store, real[0].id)
        return out

    def live(self, run: str | None = None) -> LiveStatus | None:
        """The run whose id starts with `run` (default: the one running, else the newest) as it goes; None when
        the store has no run. A run whose process stopped beating is closed as interrupted first, so a follower
        of a killed run sees it end. Raises LookupError when `run` matches several runs."""
        store = self.store
        mark_interrupted(store, self.config.data_path / "logs")
        found = live_run(store, run)
        return None if found is None else LiveStatus(found, request_totals(store, found.id))

    def export(
        self,
        out: str | os.PathLike[str],
        types: Sequence[str] = ("short", "detailed", "qa"),
        fmt: str = "videorefer",
        *,
        accepted_only: bool = False,
        audited_only: bool = False,
        min_coverage: float = 0.0,
        max_objects: int | None = None,
        val_fraction: float = 0.0,
        seed: int = 0,
        empty_frames: str = "keep",
        all_versions: bool = False,
        calibrated: bool = False,
        clips: bool = False,
    ) -> ExportReport:
        """Write the store's current samples as training files under `out`, each validated against the loader
        its format is for, with a dataset card. Raises ExportRefused for an impossible request."""
        from engine.dataset.card import write_card
        from engine.dataset.export import EmptyFrames, Filters, Format
        from engine.dataset.export import export as write_files
        from engine.dataset.validate import RecordFormat, validate_file
        from engine.runtime.split import split_lineage
        from engine.store import schema
        from engine.store.samples import stored_sample_count

        if fmt not in ("videorefer", "jsonl", "videollama3"):
            raise ExportRefused(f"--format {fmt!r}: choose videorefer, jsonl or videollama3")
        if empty_frames not in ("keep", "drop"):
            raise ExportRefused(f"--empty-frames {empty_frames!r}: choose keep or drop")
        names = tuple(t.strip() for t in types if t.strip())
        if bad := [t for t in names if t not in schema.DATA_TYPES]:
            raise ExportRefused(f"--types {','.join(bad)}: choose from {', '.join(schema.DATA_TYPES)}")
        try:
            current = self.view().current
        except ViewUnavailable as e:
            raise ExportRefused(str(e)) from None
        store = self.store
        calibration = self._calibration() if calibrated else None
        filters = Filters(
            names,
            accepted_only,
            audited_only,
            min_coverage,
            max_objects,
            val_fraction,
            seed,
            cast(EmptyFrames, empty_frames),  # checked above
            calibration["threshold"] if calibration else None,
            calibration["score"] if calibration else "verbal",
        )
        cfg = self.config
        result = write_files(
            store,
            Path(out),
            current,
            cast(Format, fmt),  # checked above
            filters,
            cfg.model_dump(mode="json"),
            all_versions=all_versions,
            clips=clips,
            calibration=calibration,
            gates=gates_in_force(store, current),
        )
        # every file checked against the loader its format is for (and UniPixel's layout, which our records
        # keep), with the sizes and lengths of the videos the records name (a clip's file, or its source)
        record_format: RecordFormat = "videollama3" if fmt == "videollama3" else "videorefer"
        reports = [validate_file(p, fmt=record_format, sizes_of=result.sizes.get, unipixel=True) for p in result.files]
        lineage = None if cfg.split.detector == "none" else split_lineage(cfg)
        card = write_card(
            store,
            result,
            reports,
            fmt,
            lineage,
            left_out=left_out(store, current),
            gated=gated_counts(store, current),
            judging=judging(store, current),
        )
        report = ExportReport(result, reports, card, 0 if all(r.ok for r in reports) else 1)
        if report.exit_code == 0 and not sum(result.counts.values()):  # an empty export says why
            stored = stored_sample_count(store, names)
            if stored and not all_versions:
                report.empty_reason = (
                    f"the store holds {stored:,} samples of these types, none from the versions used ("
                    f"{self.view().sentence}): --run ID picks another run's, --all-versions every version"
                )
            elif stored:
                report.empty_reason = "every sample was left out (see the table)"
            else:
                report.empty_reason = "the store holds no sample of these types"
            report.exit_code = 4
        return report

    def _calibration(self) -> dict[str, Any]:
        from engine.audit.sampling import latest_calibration

        cal = latest_calibration(self.store)
        if cal is None or cal.threshold is None:
            raise ExportRefused(
                "--calibrated, but no calibration with a threshold: run `engine audit calibrate` first"
            )
        return {
            "threshold": cal.threshold,
            "target_precision": cal.target,
            "rule": cal.rule,
            "score": cal.estimates.get("score", "verbal"),  # calibrations before token scores were verbal
            "estimated_precision": cal.estimates["precision"],
            "created_at": cal.created_at.isoformat(),
        }

    @staticmethod
    def validate(
        file: str | os.PathLike[str],
        video_root: str | os.PathLike[str] | None = None,
        fmt: str | None = None,
        unipixel: bool = False,
    ) -> ValidationReport:
        """Count the defects of a VideoRefer- or VideoLLaMA3-format file, record by record (needs no store).
        Raises ExportRefused for a bad argument, NotARecordFile for a file that holds no records."""
        from engine.dataset.validate import RecordFormat, validate_file

        path, root = Path(file), Path(video_root) if video_root is not None else None
        if not path.is_file():
            raise ExportRefused(f"{path} is not a file")
        if root is not None and not root.is_dir():
            raise ExportRefused(f"--video-root {root} is not a folder")
        if fmt not in (None, "videorefer", "jsonl", "videollama3"):
            raise ExportRefused(f"--format {fmt!r}: choose videorefer, jsonl or videollama3")
        # jsonl holds videorefer records, one a line
        record_format: RecordFormat | None = (
            None if fmt is None else "videollama3" if fmt == "videollama3" else "videorefer"
        )
        return validate_file(path, video_root=root, fmt=record_format, unipixel=unipixel)

    # --- people's audits of the Reviewer (engine/audit/) ----------------------------------------------------

    def audit_sample(
        self, kept: int = 100, discarded: int = 100, seed: int = 0, by: str | None = None
    ) -> dict[str, tuple[int, int]]:
        """Draw audit items stratified by the Reviewer's verdict (and `by`: category or size); returns each
        stratum's (population, newly drawn)."""
        from engine.audit.sampling import draw_sample

        if by not in (None, "category", "size"):
            raise ValueError("--by takes category or size")
        return draw_sample(self.store, self.view().current, kept, discarded, seed, by)

    def audit_near_threshold(self, n: int, seed: int = 0) -> dict[str, tuple[int, int]]:
        """Draw `n` items where the decision is most uncertain, around the newest calibration's threshold."""
        from engine.audit.sampling import draw_near_threshold

        return draw_near_threshold(self.store, self.view().current, n, seed)

    def calibrate(self, target: float = 0.95, rule: str = "majority", score: str = "auto") -> Calibration:
        """The Reviewer's keep threshold reaching `target` precision on the audited items, on `score` (tokens, verbal,
        or auto: tokens where every current review has one), recorded for `export(calibrated=True)`. Raises
        ValueError for an unknown rule or score, or too few audits of both kinds."""
        from engine.audit.calibrate import calibrate
        from engine.audit.sampling import calibration_pool, save_calibration

        pool, _, source = calibration_pool(self.store, self.view().current, rule, score)
        if len(pool.audited) < 20 or pool.labels.all() or not pool.labels.any():
            raise TooFewAudits(
                f"{len(pool.audited)} audited items, with labels of one kind only or too few: audit more "
                "(engine audit sample, then engine review)"
            )
        cal = calibrate(pool, target)
        cal.score = source
        save_calibration(self.store, cal, rule)
        return cal

    def calibrate_cascade(
        self, target: float = 0.95, rule: str = "majority", seed: int = 0, min_yield: float = 0.0
    ) -> CascadeCalibration:
        """Bands for the configured cascade ([[review.cascade]]) that reach `target` precision on the audited items
        at the least expected cost per kept object, keeping at least `min_yield` of the reviewed objects
        (engine/audit/cascade.py). Raises ValueError without a cascade or for an unknown rule, TooFewAudits with too
        few audits of both kinds."""
        from engine.audit.cascade import calibrate_cascade
        from engine.audit.sampling import cascade_pool

        pool = cascade_pool(self.store, self.view().current, self.config, rule)
        if len(pool.audited) < 20 or pool.labels.all() or not pool.labels.any():
            raise TooFewAudits(
                f"{len(pool.audited)} audited items of the verdict strata, with labels of one kind only or too few: "
                "audit more (engine audit sample, then engine review)"
            )
        return calibrate_cascade(pool, target, seed=seed, min_yield=min_yield)

    def apply_bands(self, bands: Sequence[tuple[float, float]]) -> Path:
        """Write a band per cascade judge into the configuration file's [[review.cascade]] tables, in order (the
        last judge's as [t, t]); returns the file. Raises ValueError where the configuration came from no file or
        its cascade is not the configured one."""
        import tomlkit

        path = self._config_file()
        doc = tomlkit.parse(Path(path).read_text(encoding="utf-8"))
        judges = doc.get("review", {}).get("cascade", [])
        if [j.get("name") for j in judges] != [j.name for j in self.config.review.cascade]:
            raise ValueError(f"{path} does not list the cascade in force: set its bands by hand")
        for table, (lo, hi) in zip(judges, bands):
            table["band"] = [round(float(lo), 6), round(float(hi), 6)]
        Path(path).write_text(tomlkit.dumps(doc), encoding="utf-8")
        return Path(path)

    def _config_file(self) -> str:
        path = self.config.origin.get("config_file")
        if not path:
            raise ValueError(
                "the configuration comes from no file: write one with `engine init`, then pass --config or run "
                "where its engine.toml is"
            )
        return path

    def audit_gates(
        self, min_removal: float = 0.5, max_loss: float = 0.05, rule: str = "majority", seed: int = 0
    ) -> GatesSuggestion:
        """Masklet quality-gate thresholds fitted on the audited items (reason mask_wrong against items judged
        correct), weighted by stratum, with intervals; how many current reviewed objects they would stop."""
        from engine.audit.gates import items_from, suggest
        from engine.media.gates import gate_metrics
        from engine.store.audits import gate_fit_inputs, verdict_strata_decisions

        label_rule(rule)  # an unknown rule is a ValueError before any work
        decisions, pool = gate_fit_inputs(self.store, self.view().current)
        items, labelled = items_from(decisions, rule)
        n_kept, n_disc = verdict_populations(verdict_strata_decisions(self.store))
        populations = {"kept": n_kept, "discarded": n_disc}
        metrics = [gate_metrics(p.frames, p.mean_consecutive_iou, p.border_contact) for p in pool]
        return suggest(items, populations, min_removal, max_loss, labelled, metrics, seed=seed)

    def apply_gates(self, thresholds: Mapping[str, float]) -> Path:
        """Write these thresholds into the configuration file's [gates] table (its comments and the rest kept);
        returns the file. Raises ValueError where the configuration came from no file."""
        import tomlkit

        path = self._config_file()
        doc = tomlkit.parse(Path(path).read_text(encoding="utf-8"))
        gates = doc.setdefault("gates", tomlkit.table())
        for key, value in sorted(thresholds.items()):
            gates[key] = round(float(value), 6)
        Path(path).write_text(tomlkit.dumps(doc), encoding="utf-8")
        return Path(path)

    def audit_stats(self, rule: str = "majority") -> AuditStats:
        """The confusion matrix over audited items, the paper's metrics with intervals, kappa per pair."""
        from engine.audit.sampling import audit_stats

        return audit_stats(self.store, rule=rule)
