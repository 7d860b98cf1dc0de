"""The `engine` command line. Commands only parse flags, build objects and print; the work lives elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import engine
from engine.cli.audit import audit_app, review
from engine.cli.common import ConfigOpt, DataDirOpt, DbOpt, SetOpt, _config, _safe_url, _store, console, err
from engine.cli.data import export, validate
from engine.cli.registry import PIPELINES, build_pipelines, configured_current, version_context
from engine.config import DEFAULT_CONFIG_NAME, Config, default_config_text
from engine.llm.request_log import RoleTotals, add_totals, request_totals
from engine.runtime.pipeline import Pipeline, VersionContext, agents_of, current_of
from engine.runtime.plan import Plan, make_plan, measured_tokens
from engine.runtime.plugins import PluginError
from engine.runtime.run_state import (
    ABORTED,
    EXIT_CODES,
    FINISHED,
    PREFLIGHT_EXIT,
    RUN_END_MARK,
    Outcome,
    mark_interrupted,
    outcome,
)
from engine.runtime.summary import run_summary
from engine.runtime.units import uncaptioned, video_tasks
from engine.sources.ingest import IngestReport, ingest
from engine.store import schema
from engine.store.current import stage_counts
from engine.store.db import Store
from engine.store.faults import cause, is_store_fault, one_line, store_error

log = logging.getLogger(__name__)

# "\b" keeps click from re-wrapping the block.
EXAMPLES = """\b
Examples:
  engine init                                      write a commented engine.toml
  engine run --source examples/videos --dry-run    scan, probe, record, print the plan
  engine run --source videos/ --limit 100 --dry-run
  engine status                                    store contents, versions, runs, requests, failures
  engine export --out out/ --val-fraction 0.05     training files, validated, with a card
  engine validate out/detailed_train.json          count the defects of any VideoRefer file
  engine audit sample --kept 100 --discarded 100   draw Reviewer decisions for people to audit
  engine review                                    the audit web UI on http://127.0.0.1:8765/
"""

app = typer.Typer(
    help="Turn a folder of raw videos into reviewed, exportable object-level training data.",
    epilog=EXAMPLES,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


@app.command(short_help="Write a commented default config file.  e.g. engine init engine.toml")
def init(
    path: Annotated[Path, typer.Argument(help="where to write it")] = Path(DEFAULT_CONFIG_NAME),
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write a commented default config file (example: engine init engine.toml)."""
    if path.exists() and not force:
        err.print(f"error: {path} exists; pass --force to overwrite it", highlight=False)
        raise typer.Exit(1)
    path.write_text(default_config_text())
    console.print(f"wrote {path}")


@app.command(short_help="Run the engine over a folder of videos.  e.g. engine run --source videos/ --dry-run")
def run(
    source: Annotated[Path, typer.Option("--source", "-s", help="folder of videos (searched recursively)")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="scan, probe, split into clips and record; print the plan; call no model")
    ] = False,
    pipelines: Annotated[
        str, typer.Option("--pipelines", "-p", help=f"comma-separated: {','.join(PIPELINES)}")
    ] = "detailed",
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="process at most N videos")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="send every model call, even ones stored")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="try quarantined units again")] = False,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="join a Ray cluster ('auto', ray://...)")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
    set_: SetOpt = None,
) -> None:
    """Run the engine over a folder of videos (example: engine run --source videos/ --dry-run)."""
    cfg = _config(config, set_, data_dir=data_dir, database_url=database_url, **{"ray.address": ray_address})
    if not source.is_dir():
        err.print(f"error: --source {source} is not a folder", highlight=False)
        raise typer.Exit(2)
    names = [n.strip() for n in pipelines.split(",") if n.strip()]
    try:
        built = build_pipelines(names)
        vc, seg_path = version_context(cfg)
    except (ValueError, PluginError) as e:
        err.print(f"error: {e}\nNothing was run.", highlight=False)
        raise typer.Exit(2) from None
    if "qa-dataset" in names and not _has_dataset_video(source):
        err.print(
            f"error: --pipelines qa-dataset, but {source} holds no video of an annotated dataset (MeViS, "
            "Ref-YouTube-VOS, A2D-Sentences, Ref-DAVIS17) in its released layout.\nNothing was run.",
            highlight=False,
        )
        raise typer.Exit(2)
    os.environ.setdefault("VIDEOREFER_CACHE_DIR", str(cfg.data_path / "cache"))  # e.g. MeViS's mask index
    # Everything that can be known before the run is checked now: before any request and before the run row.
    probed = _preflight(cfg, built, seg_path, dry_run)
    store = _store(cfg)
    run_id = uuid.uuid4().hex
    command = "run --dry-run" if dry_run else f"run --pipelines {','.join(names)}"
    try:
        for stale, state in mark_interrupted(store, cfg.data_path / "logs"):
            err.print(f"note: {_stale_sentence(stale, state)}", highlight=False)
        with store.session() as s:
            s.add(
                schema.Run(
                    id=run_id,
                    command=command,
                    engine_version=engine.__version__,
                    config=cfg.model_dump(mode="json"),
                    source=str(source.resolve()),
                    heartbeat_at=schema.utcnow(),
                )
            )
            s.flush()
            if probed.get("requests"):  # preflight's probes are requests too: they count in this run
                store.insert_many(s, schema.Request, [{**row, "run_id": run_id} for row in probed["requests"]])
    except Exception as e:  # noqa: BLE001  (a store that refuses the run row: one line, nothing was run)
        _stop_ray(cfg)
        if not is_store_fault(e):
            raise
        err.print(f"aborted: {store_error(e, store.url)}\nNothing was run.   (exit code 3)", highlight=False)
        raise typer.Exit(3) from None
    with _run_log(cfg, run_id) as run_log:
        try:
            out, summary = _phases(
                cfg,
                store,
                source,
                run_id,
                names,
                built,
                vc,
                seg_path,
                dry_run,
                limit,
                not no_cache,
                retry_failed,
                probed,
                run_log,
            )
        finally:
            _stop_ray(cfg)
        _close_run(store, run_id, out, summary)


def _stale_sentence(run_id: str, state: str) -> str:
    if state == "interrupted":
        return f"run {run_id[:12]} stopped without a word (killed?): marked interrupted"
    return f"run {run_id[:12]} could not close its row when it ended: closed as {state}, as its run log says"


def _phases(
    cfg: Config,
    store: Store,
    source: Path,
    run_id: str,
    names: list[str],
    built: list[Pipeline],
    vc: VersionContext,
    seg_path: str,
    dry_run: bool,
    limit: int | None,
    use_cache: bool,
    retry_failed: bool,
    probed: dict,
    run_log: _RunLog,
) -> tuple[Outcome, dict]:
    """Ingest, split, plan, then execute (or print the plan): how the run ended, and its summary. Every way it
    can stop ends here with a reason, so the caller always closes the run row."""
    summary: dict = {}
    try:
        report = _ingest_with_progress(store, source, cfg, limit, run_id)
        _print_problems(report)
        _print_summary(report)
        _print_datasets(report)
        summary.update(
            videos=len(report.videos),
            new_videos=report.new_videos,
            problems=len(report.problems),
            duplicates=len(report.duplicates),
        )
        split = _split_with_progress(cfg, store, report, run_id, retry_failed)
        _print_split(split, cfg)
        summary["split"] = split.as_summary()
        tasks = video_tasks(store, split.units)
        plan = make_plan(cfg, built, vc, tasks, uncaptioned(store, [t.id for t in tasks]), measured_tokens(store))
        summary.update(
            planned_calls=plan.calls,
            planned_cost_usd=plan.cost_usd,
            plan={
                a.role: {
                    "calls": a.calls,
                    "tokens_in": a.tokens_in,
                    "tokens_out": a.tokens_out,
                    "cost_usd": a.cost_usd,
                }
                for a in plan.roles
            },
        )
        if dry_run:
            _stop_ray(cfg)
            _print_plan(plan, cfg, built, names)
            return Outcome(FINISHED, 0, "dry run: nothing was sent"), summary
        reason, interrupted, execution = None, False, None
        try:
            execution = _execute(cfg, store, run_id, split.units, built, seg_path, vc, use_cache, retry_failed, probed)
        except KeyboardInterrupt:
            interrupted = True
        except Exception as e:  # noqa: BLE001  (every way a run can stop ends with its row closed and a reason)
            reason = _abort_reason(e, store, run_log)
        result = run_summary(store, run_id, [*split.units, *(v.id for v in report.videos)], current_of(built, vc))
        result["videos"] = len(split.units)  # the units: whole videos and clips
        if execution is not None:
            result["cache_hits"] = dict(execution.cache_hits)
        _print_run_summary(result)
        summary.update(result)
        return outcome(summary, reason, interrupted), summary
    except KeyboardInterrupt:
        return outcome(summary, interrupted=True), summary
    except Exception as e:  # noqa: BLE001  (ingest, split or the summary: the run row is closed with the reason)
        return outcome(summary, _abort_reason(e, store, run_log)), summary


def _close_run(store: Store, run_id: str, out: Outcome, summary: dict) -> None:
    log.info("%s%s", RUN_END_MARK, out.sentence)  # the run log says how it ended, even if the row cannot
    try:
        with store.session() as s:
            r = s.get(schema.Run, run_id)
            r.status, r.finished_at, r.summary, r.reason = out.state, schema.utcnow(), summary, out.sentence
    except Exception as e:  # noqa: BLE001  (the store is what failed: the next run or status closes the row)
        if not is_store_fault(e):
            raise
        err.print(
            f"note: the run's row could not be closed ({cause(e)}); the next engine run or engine status closes it",
            highlight=False,
        )
        if out.exit_code == 0:  # the results are stored, but the store refused a write: not a clean finish
            out = Outcome(ABORTED, EXIT_CODES[ABORTED], f"aborted: {store_error(e, store.url)}")
    (console if out.exit_code == 0 else err).print(f"{out.sentence}   (exit code {out.exit_code})", highlight=False)
    console.print(f"store: {_safe_url(store.url)}   run id: {run_id}", highlight=False)
    if out.exit_code:
        raise typer.Exit(out.exit_code)


class _RunLog(logging.FileHandler):
    """<data_dir>/logs/run-<id>.log. A line that cannot be written (a full disk) is dropped, never a traceback on
    the console; `failed` remembers it, so nobody is sent to a log that is not there."""

    def __init__(self, path: Path):
        # Opened now, while there may still be room: its first block then takes the lines of the end too.
        super().__init__(path, delay=True)
        self.path, self.failed = path, False
        try:
            self.stream = self._open()
        except OSError:
            self.failed = True

    def handleError(self, record: logging.LogRecord) -> None:
        self.failed = True


class _OneLine(logging.Formatter):
    """The console's warnings: one line each; tracebacks go to the run log only."""

    def format(self, record: logging.LogRecord) -> str:
        return "warning: " + one_line(record.getMessage())[:500]


@contextlib.contextmanager
def _run_log(cfg: Config, run_id: str):
    """During a run: warnings (the driver's, and those the actors send back) on the console, one line each, and
    everything from INFO up, tracebacks included, in <data_dir>/logs/run-<id>.log."""
    logs = cfg.data_path / "logs"
    with contextlib.suppress(OSError):
        logs.mkdir(parents=True, exist_ok=True)
    to_file = _RunLog(logs / f"run-{run_id}.log")
    to_file.setLevel(logging.INFO)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    to_console = logging.StreamHandler(sys.stderr)
    to_console.setLevel(logging.WARNING)
    to_console.setFormatter(_OneLine())
    root = logging.getLogger()
    level = root.level
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    root.addHandler(to_file)
    root.addHandler(to_console)
    try:
        yield to_file
    finally:
        root.removeHandler(to_file)
        root.removeHandler(to_console)
        root.setLevel(level)
        with contextlib.suppress(OSError):
            to_file.close()


def _abort_reason(e: BaseException, store: Store, run_log: _RunLog) -> str:
    """One line for the run row and the console; the traceback goes to the run log."""
    from engine.runtime.pipeline import RunAborted

    log.info("the run stopped", exc_info=e)
    if isinstance(e, RunAborted):
        return str(e)
    if is_store_fault(e):
        return str(store_error(e, store.url))
    first = one_line(str(e))[:300]
    where = "" if run_log.failed else f" (traceback in {run_log.path})"
    return f"{type(e).__name__}: {first}{where}"


def _preflight(cfg: Config, pipelines: list[Pipeline], seg_path: str, dry_run: bool) -> dict:
    """What can be known before the run, checked before any request and before the run row (exit 2 and one
    sentence naming the setting): the cluster's address, the store, the actors' resources, the segmentor's
    checkpoints; then every endpoint the pipelines' agents use, each server's output mode learnt and each vision
    agent's model proven to see images. Returns what was learnt, with the probe requests for the request log."""
    from engine.llm.client import EndpointError, ModelClient
    from engine.llm.request_log import MemoryLog
    from engine.runtime.executor import roles_of
    from engine.runtime.preflight import PreflightError, check_cluster, check_ray_address, check_store

    try:
        check_ray_address(cfg)
        if dry_run:
            return {}
        for warning in check_store(cfg):
            err.print(f"warning: {warning}", highlight=False)
        check_cluster(cfg, roles_of(pipelines), seg_path)
    except PreflightError as e:
        _stop_ray(cfg)
        err.print(f"error: {e}\nNothing was run.", highlight=False)
        raise typer.Exit(PREFLIGHT_EXIT) from None
    agents = agents_of(pipelines, cfg)
    keys = sorted({a.endpoint for a in agents})
    vision = sorted({a.endpoint for a in agents if getattr(a, "sees_images", False)})
    probes = MemoryLog()
    try:
        client = ModelClient(cfg, log=probes)
        client.check(keys)

        async def probe_all() -> None:
            try:
                for key in keys:
                    await client.ping(key)
                for key in keys:
                    mode = await client.learn_mode(key)
                    ep = client.endpoint(key)
                    console.print(
                        f"agent {key}: {ep.base_url} (model {ep.cfg.model}): output mode {mode}", highlight=False
                    )
                for key in vision:
                    tokens = await client.check_vision(key)
                    console.print(
                        f"agent {key}: sees images" + (f" (a 64x64 image: {tokens} prompt tokens)" if tokens else ""),
                        highlight=False,
                    )
            finally:
                await client.aclose()

        asyncio.run(probe_all())
    except EndpointError as e:
        _stop_ray(cfg)
        err.print(f"error: {e}\nNothing was run.", highlight=False)
        raise typer.Exit(PREFLIGHT_EXIT) from None
    return {**client.probed(), "requests": list(probes.rows.values())}


def _execute(
    cfg: Config,
    store: Store,
    run_id: str,
    video_ids: list[str],
    pipelines: list[Pipeline],
    seg_path: str,
    vc: VersionContext,
    use_cache: bool,
    retry_failed: bool,
    probed: dict,
):
    from engine.runtime.executor import execute

    def run(on_progress) -> Any:
        previous = signal.signal(signal.SIGTERM, _interrupt)  # a polite kill ends like Ctrl-C: row closed
        try:
            return asyncio.run(
                execute(
                    cfg,
                    store,
                    run_id,
                    video_ids,
                    pipelines,
                    seg_path,
                    vc.segmentor_version,
                    use_cache,
                    retry_failed,
                    on_progress,
                    probed=probed,
                )
            )
        finally:
            signal.signal(signal.SIGTERM, previous)
            _stop_ray(cfg)

    if not console.is_terminal:  # a log file or a pipe: a plain line per stage every few seconds
        lines = _ProgressLines(PROGRESS_EVERY_S)
        try:
            return run(lines.update)
        finally:
            lines.flush()
    columns = (TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        tasks: dict[str, int] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        return run(on_progress)


PROGRESS_EVERY_S = 5.0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


class _ProgressLines:
    """Progress for output that is not a terminal: one line, every stage's units done of taken up, every few s."""

    def __init__(self, every_s: float):
        self.every_s, self.stages, self.last, self.t0 = every_s, {}, 0.0, time.monotonic()

    def update(self, stage: str, done: int, total: int) -> None:
        self.stages[stage] = (done, total)
        if time.monotonic() - self.last >= self.every_s:
            self.flush()

    def flush(self) -> None:
        if self.stages:
            self.last = time.monotonic()
            parts = "  ".join(f"{s} {d:,}/{t:,}" for s, (d, t) in self.stages.items())
            console.print(f"[{self.last - self.t0:6.0f} s] {parts}", highlight=False, markup=False)


def _print_run_summary(r: dict) -> None:
    t = Table(title="Run summary", title_justify="left", show_header=False)
    t.add_column()
    t.add_column(justify="right")
    keep = f"{r['kept'] / r['reviewed']:.0%}" if r["reviewed"] else "-"
    rows = [
        ("videos and clips (units)", f"{r['videos']:,}"),
        ("objects", f"{r['objects']:,}"),
        ("  grounded", f"{r['grounded']:,}"),
        ("  reviewed", f"{r['reviewed']:,}"),
        ("  kept (reviewer keep rate)", f"{r['kept']:,} ({keep})"),
        *((f"samples: {k}", f"{v:,}") for k, v in sorted(r["samples"].items())),
        ("requests sent", f"{r['requests']:,}"),
        ("  answered from the cache (no request)", f"{sum(r.get('cache_hits', {}).values()):,}"),
        (
            "tokens in / out",
            f"{r['tokens_in']:,} / {r['tokens_out']:,}"
            + (f" (+{r['tokens_unknown']:,} requests unknown)" if r["tokens_unknown"] else ""),
        ),
        ("cost USD", f"{r['cost_usd']:,.4f}"),
        ("new samples (this run)", f"{r['new_results']:,}"),
        *(
            (f"  left out: {k.replace(':', ' ').replace('_', ' ')}", f"{v:,}")
            for k, v in sorted(r.get("dropped", {}).items())
        ),
        *(
            (("skipped inputs (not failures: see Skipped inputs)", f"{r['skipped_inputs']:,}"),)
            if r.get("skipped_inputs")
            else ()
        ),
        ("failures in this run (quarantined)", f"{r['failures']:,} ({r['quarantined']:,})"),
        ("  quarantined among these videos, all runs", f"{r['quarantined_in_store']:,}"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    if r["roles"]:
        hits = r.get("cache_hits", {})
        _print_role_table(
            "Requests by agent role, this run",
            [
                RoleTotals(
                    role,
                    x["requests"],
                    x["ok"],
                    x["requests"] - x["ok"],
                    0,
                    x["tokens_unknown"],
                    x["tokens_in"],
                    x["tokens_out"],
                    x["cost_usd"],
                    0.0,
                )
                for role, x in sorted(r["roles"].items())
            ],
            hits,
        )


def _print_plan_against_actual(run: schema.Run, actual: list[RoleTotals]) -> None:
    """The dry-run estimate of this run's calls and tokens beside what it really sent, per agent role."""
    plan = run.summary.get("plan") or {}
    if not plan:
        return
    by_role = {t.role: t for t in actual}
    t = Table(
        title=f"Plan against actual, run {run.id[:12]} (calls: estimated / requests sent, cache hits "
        "and retries included)",
        title_justify="left",
    )
    for col in ("role", "planned calls", "requests", "planned tokens in", "tokens in", "planned cost USD", "cost USD"):
        t.add_column(col, justify="left" if col == "role" else "right")
    hits = run.summary.get("cache_hits", {})
    for role in sorted(set(plan) | {r for r in by_role if r != "probe"}):
        p, a = plan.get(role, {}), by_role.get(role)
        t.add_row(
            role,
            f"{p.get('calls', 0):,.0f}",
            f"{a.requests if a else 0:,}" + (f" (+{hits[role]:,} cached)" if hits.get(role) else ""),
            f"{p.get('tokens_in', 0):,.0f}",
            f"{a.tokens_in if a else 0:,}",
            f"{p.get('cost_usd', 0):,.4f}",
            f"{a.cost_usd if a else 0:,.4f}",
        )
    console.print(t)


def _print_role_table(title: str, rows: list[RoleTotals], hits: dict[str, int] | None = None) -> None:
    t = Table(title=title, title_justify="left")
    cols = ["role", "requests", "ok", "failed", "cache hits", "tokens in", "tokens out", "tokens unknown", "cost USD"]
    for col in cols:
        t.add_column(col, justify="left" if col == "role" else "right")
    for x in [*rows, add_totals(rows)]:
        if x.role == "total":
            t.add_section()
        hit = sum((hits or {}).values()) if x.role == "total" else (hits or {}).get(x.role, 0)
        t.add_row(
            x.role,
            f"{x.requests:,}",
            f"{x.ok:,}",
            f"{x.failed:,}",
            f"{hit:,}" if hits is not None else "-",
            f"{x.tokens_in:,}",
            f"{x.tokens_out:,}",
            f"{x.tokens_unknown:,}",
            f"{x.cost_usd:,.4f}",
        )
    console.print(t)


def _ingest_with_progress(store: Store, source: Path, cfg: Config, limit: int | None, run_id: str) -> IngestReport:
    columns = (
        TextColumn("probing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("", total=None)
        return ingest(
            store,
            source,
            frame_folder_fps=cfg.sampling.frame_folder_fps,
            limit=limit,
            run_id=run_id,
            on_start=lambda n: progress.update(task, total=n),
            on_progress=lambda rel: progress.update(task, advance=1, description=rel[-60:]),
        )


def _split_with_progress(cfg: Config, store: Store, report: IngestReport, run_id: str, retry_failed: bool):
    from engine.runtime.split import split_sources

    columns = (
        TextColumn("splitting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("", total=None)
            return split_sources(
                cfg,
                store,
                report.videos,
                report.source,
                run_id,
                report.timed_captions,
                on_start=lambda n: progress.update(task, total=n),
                on_progress=lambda rel: progress.update(task, advance=1, description=rel[-60:]),
                retry_failed=retry_failed,
            )
    except BaseException:
        _stop_ray(cfg)
        raise


def _stop_ray(cfg: Config) -> None:
    """The run's local Ray instance, started by the split phase or the pipelines, ends with the run (one instance
    for both: a process that starts Ray again after shutting it down is slower, and racier)."""
    ray = sys.modules.get("ray")  # loaded only when something used it
    if ray is not None and not cfg.ray.address and ray.is_initialized():
        ray.shutdown()


def _print_split(split, cfg: Config) -> None:
    if cfg.split.detector == "none" or split.scanned + split.resumed + len(split.failed) == 0:
        return
    t = Table(title=f"Clips (split.detector = {cfg.split.detector})", title_justify="left", show_header=False)
    t.add_column(justify="left")
    t.add_column(justify="right")
    rows = [
        ("sources split in this run", split.scanned),
        ("sources split before (not decoded again)", split.resumed),
        ("sources not split (frame folders, datasets)", split.whole),
        ("clips found", split.clips),
        ("  kept", split.kept),
        *((f"  dropped: {reason.replace('_', ' ')}", n) for reason, n in sorted(split.dropped.items())),
        ("sources that could not be split", len(split.failed)),
    ]
    for k, v in rows:
        t.add_row(k, f"{v:,}")
    console.print(t)
    for rel, why in split.failed:
        err.print(f"warning: {rel}: not split: {why}", highlight=False)


def _print_problems(report: IngestReport) -> None:
    if not report.problems:
        return
    t = Table(title="Skipped inputs", title_justify="left")
    for col in ("input", "reason", "code"):
        t.add_column(col, overflow="fold")
    for p in report.problems:
        t.add_row(p.rel, p.reason, p.code)
    console.print(t)


def _print_summary(report: IngestReport) -> None:
    t = Table(title=f"Source {report.source}", title_justify="left", show_header=False)
    t.add_column(justify="left")
    t.add_column(justify="right")
    captioned = sum(v.caption is not None for v in report.videos)
    rows = [
        ("videos readable", len(report.videos)),
        ("  new in the store", report.new_videos),
        ("  already in the store", len(report.videos) - report.new_videos),
        ("  unchanged since stored (not probed again)", report.unchanged),
        ("  with a caption", captioned),
        ("  without (the Captioner writes one)", len(report.videos) - captioned),
        ("duplicates of another input (same bytes)", len(report.duplicates)),
        ("skipped (see above)", len(report.problems)),
        ("frames in readable videos", sum(v.info.num_frames for v in report.videos)),
    ]
    for k, v in rows:
        t.add_row(k, f"{v:,}")
    console.print(t)


def _has_dataset_video(source: Path) -> bool:
    from engine.sources.datasets import dataset_of
    from engine.sources.ingest import scan

    return any(dataset_of(str(c.path)) is not None for c in scan(source)[0])


def _print_datasets(report: IngestReport) -> None:
    """Each annotated dataset split the source holds videos of, as the adapter found it, and folders laid out like
    one that no adapter recognises."""
    from engine.sources.datasets import dataset_of, near_misses

    splits: dict[Any, int] = {}
    plain: list[Path] = []
    for v in report.videos:
        found = dataset_of(str(report.source / v.rel))
        if found is None:
            plain.append(report.source / v.rel)
        else:
            splits[found[0]] = splits.get(found[0], 0) + 1
    for adapter, here in splits.items():
        s = adapter.summary()
        t = Table(title=f"Dataset {s.dataset}, split {s.split} ({s.root})", title_justify="left", show_header=False)
        t.add_column(justify="left")
        t.add_column(justify="right")
        for k, v in (
            ("videos in the split", s.videos),
            ("  in this source", here),
            ("objects", s.objects),
            ("referring expressions", s.expressions),
            ("frames with masks", s.frames_with_masks),
            *((f"left out: {reason}", n) for reason, n in sorted(s.skipped.items())),
        ):
            t.add_row(k, f"{v:,}")
        console.print(t)
        for w in s.warnings:
            err.print(f"warning: {s.dataset} {s.split}: {w}", highlight=False)
    for w in near_misses(plain):
        err.print(f"warning: {w}", highlight=False)


def _print_plan(plan: Plan, cfg: Config, pipelines: list[Pipeline], names: list[str]) -> None:
    t = Table(title=f"Plan for a run of {', '.join(names)} (estimate)", title_justify="left")
    for col, just in (
        ("agent role", "left"),
        ("endpoint", "left"),
        ("model", "left"),
        ("calls", "right"),
        ("tokens in", "right"),
        ("tokens out", "right"),
        ("cost USD", "right"),
        ("basis", "left"),
    ):
        t.add_column(col, justify=just)
    for a in plan.roles:
        t.add_row(
            a.role,
            a.endpoint,
            getattr(cfg.agents, a.endpoint).model,
            f"{a.calls:,.0f}",
            f"{a.tokens_in:,.0f}",
            f"{a.tokens_out:,.0f}",
            f"{a.cost_usd:,.4f}",
            "measured" if a.measured else "estimate",
        )
    if any("segmentor" in st.uses for p in pipelines for st in p.stages):
        seg = cfg.segmentor
        where = "GPU" if cfg.ray.resources["segmentor"].num_gpus > 0 else "CPU"
        t.add_row(
            "segmentor",
            seg.backend,
            seg.sam2_model if seg.backend == "grounded_sam2" else "-",
            "-",
            "-",
            "-",
            "-",
            f"{plan.mask_frames:,} object-frames on {where}",
        )
    t.add_section()
    t.add_row(
        "total",
        "",
        "",
        f"{plan.calls:,.0f}",
        f"{sum(a.tokens_in for a in plan.roles):,.0f}",
        f"{sum(a.tokens_out for a in plan.roles):,.0f}",
        f"{plan.cost_usd:,.4f}",
        "",
    )
    console.print(t)
    console.print(
        f"videos {plan.videos:,}   frames to decode {plan.frames:,}   objects (est. "
        f"{cfg.plan.objects_per_video:g}/video) {plan.objects:,.0f}",
        highlight=False,
    )


@app.command(short_help="Show what the store holds, which results are current, runs and failures.  e.g. engine status")
def status(
    config: ConfigOpt = None, data_dir: DataDirOpt = None, database_url: DbOpt = None, set_: SetOpt = None
) -> None:
    """Show what the store holds, which results are current, recent runs, requests and failures
    (example: engine status)."""
    cfg = _config(config, set_, data_dir=data_dir, database_url=database_url)
    store = _store(cfg)
    for stale, state in mark_interrupted(store, cfg.data_path / "logs"):
        console.print(_stale_sentence(stale, state), highlight=False)
    counts = store.counts()
    t = Table(title=f"Store {_safe_url(cfg.resolved_database_url)}", title_justify="left")
    t.add_column("table")
    t.add_column("rows", justify="right")
    for name, n in counts.items():
        t.add_row(name, f"{n:,}")
    console.print(t)
    try:
        current = configured_current(cfg)
    except PluginError as e:
        err.print(f"warning: {e}; current versions not shown", highlight=False)
    else:
        with store.session() as s:
            stages = stage_counts(s, current)
        vt = Table(
            title="Results by version (current = what this configuration's versions select)", title_justify="left"
        )
        for col in ("result", "current", "outdated only"):
            vt.add_column(col, justify="left" if col == "result" else "right")
        for c in stages:
            vt.add_row(c.result, f"{c.current:,}", f"{c.outdated:,}")
        console.print(vt)
    with store.session() as s:
        runs = s.query(schema.Run).order_by(schema.Run.started_at.desc()).limit(5).all()
        failures = s.query(schema.Failure).order_by(schema.Failure.updated_at.desc()).limit(50).all()
        n_failures = s.query(schema.Failure).count()
    if runs:
        rt = Table(title="Recent runs", title_justify="left")
        for col in ("run id", "command", "state", "started", "videos", "new", "reason"):
            rt.add_column(col, overflow="fold")
        for r in runs:
            rt.add_row(
                r.id[:12],
                r.command,
                r.status,
                f"{r.started_at:%Y-%m-%d %H:%M:%S}",
                str(r.summary.get("videos", "")),
                str(r.summary.get("new_videos", "")),
                "" if r.status == "finished" else (r.reason or ""),
            )
        console.print(rt)
    totals = request_totals(store)
    if totals:
        _print_role_table("Requests by agent role, all runs", totals)
        real = [r for r in runs if r.command.startswith("run --pipelines")]
        if real:
            actual = request_totals(store, real[0].id)
            _print_role_table(
                f"Requests by agent role, run {real[0].id[:12]}", actual, real[0].summary.get("cache_hits", {})
            )
            _print_plan_against_actual(real[0], actual)
    else:
        console.print("no model requests yet")
    if failures:
        ft = Table(title=f"Failures ({n_failures}, newest first)", title_justify="left")
        for col in ("unit", "stage", "code", "attempts", "quarantined", "message"):
            ft.add_column(col, overflow="fold")
        for f in failures:
            ft.add_row(f.unit_id, f.stage, f.error_code, str(f.attempts), "yes" if f.quarantined else "no", f.message)
        console.print(ft)
    else:
        console.print("no failures")


app.command(short_help="Export samples to training files, validated, with a card.  e.g. engine export --out out/")(
    export
)
app.command(
    short_help="Check a VideoRefer-format file and count defects.  e.g. engine validate out/detailed_train.json"
)(validate)
app.add_typer(
    audit_app, name="audit", short_help="Audit the Reviewer.  e.g. engine audit sample --kept 100 --discarded 100"
)
app.command(short_help="Serve the audit web UI.  e.g. engine review --port 8765")(review)


if __name__ == "__main__":
    app()
