"""The `engine` command line. Commands only parse flags, build objects and print; the work lives elsewhere."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import engine
from engine.store import schema
from engine.llm.request_log import call_totals
from engine.config import DEFAULT_CONFIG_NAME, Config, default_config_text
from engine.sources.ingest import IngestReport, ingest
from engine.runtime.plan import Plan, make_plan, measured_tokens
from engine.cli.audit import audit_app, review
from engine.cli.common import ConfigOpt, DataDirOpt, DbOpt, SetOpt, _config, _safe_url, _store, console, err
from engine.store import Store
from engine.runtime.summary import run_summary

# "\b" keeps click from re-wrapping the block.
EXAMPLES = """\b
Examples:
  engine init                                      write a commented engine.toml
  engine run --source examples/videos --dry-run    scan, probe, record, print the plan
  engine run --source videos/ --limit 100 --dry-run
  engine status                                    store contents, runs, failures
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
    dry_run: Annotated[bool, typer.Option("--dry-run", help="scan, probe and record; print the plan; call no model")] = False,
    pipelines: Annotated[str, typer.Option("--pipelines", "-p", help="comma-separated: short,detailed,qa")] = "detailed",
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="process at most N videos")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="send every model call, even ones stored")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="try quarantined units again")] = False,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="join a Ray cluster ('auto', ray://...)")] = None,
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
    if not dry_run:
        _preflight(cfg, names)  # stops here, before anything is spent, when a setting is missing
    store = _store(cfg)
    run_id = uuid.uuid4().hex
    command = "run --dry-run" if dry_run else f"run --pipelines {','.join(names)}"
    with store.session() as s:
        s.add(schema.Run(id=run_id, command=command, engine_version=engine.__version__,
                         config=cfg.model_dump(mode="json"), source=str(source.resolve())))
    report = _ingest_with_progress(store, source, cfg, limit, run_id)
    _print_problems(report)
    _print_summary(report)
    summary: dict = {"videos": len(report.videos), "new_videos": report.new_videos,
                     "problems": len(report.problems), "duplicates": len(report.duplicates)}
    status = "finished"
    if dry_run:
        plan = make_plan(
            cfg, [v.info.num_frames for v in report.videos], sum(v.caption is None for v in report.videos),
            measured_tokens(store),
        )
        _print_plan(plan, cfg)
        summary.update(planned_calls=plan.calls, planned_cost_usd=plan.cost_usd)
    else:
        from engine.runtime.executor import RunAborted  # Ray loads only when a real run needs it

        try:
            services = _execute(cfg, store, run_id, [v.id for v in report.videos], names, not no_cache, retry_failed)
        except RunAborted as e:
            err.print(f"error: run stopped: {e}", highlight=False)
            status = "failed"
            services = None
        result = run_summary(store, run_id, [v.id for v in report.videos])
        if services is not None:
            result["cache_hits"] = services.counters.cache_hits
        _print_run_summary(result)
        summary.update(result)
    with store.session() as s:
        r = s.get(schema.Run, run_id)
        r.status, r.finished_at, r.summary = status, schema.utcnow(), summary
    console.print(f"store: {_safe_url(cfg.resolved_database_url)}   run id: {run_id}", highlight=False)
    if status != "finished":
        raise typer.Exit(1)


def _preflight(cfg: Config, names: list[str]) -> None:
    """Every missing or unreachable setting, named, before any video is touched."""
    from engine.llm.client import EndpointError, ModelClient
    from engine.runtime.plugins import PluginError, resolve
    from engine.runtime.executor import build_pipelines

    try:
        build_pipelines(names)
        resolve("segmentor", cfg.segmentor.backend)
        client = ModelClient(cfg, None)
        agents = [a for a in ("captioner", "analyzer", "annotator", "reviewer", "refiner")
                  if names != ["short"] or a in ("captioner", "analyzer")]
        client.check(agents)

        async def ping_all() -> None:
            try:
                for agent in agents:
                    await client.ping(agent)
            finally:
                await client.aclose()

        asyncio.run(ping_all())
    except (ValueError, PluginError, EndpointError) as e:
        err.print(f"error: {e}\nNothing was run.", highlight=False)
        raise typer.Exit(2) from None


def _execute(cfg: Config, store: Store, run_id: str, video_ids: list[str], names: list[str], use_cache: bool,
             retry_failed: bool):
    import ray

    from engine.runtime.executor import execute

    columns = (TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        tasks: dict[str, int] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        try:
            return asyncio.run(execute(cfg, store, run_id, video_ids, names, use_cache, retry_failed, on_progress))
        finally:
            if not cfg.ray.address:
                ray.shutdown()


def _print_run_summary(r: dict) -> None:
    t = Table(title="Run summary", title_justify="left", show_header=False)
    t.add_column()
    t.add_column(justify="right")
    keep = f"{r['kept'] / r['reviewed']:.0%}" if r["reviewed"] else "-"
    rows = [
        ("videos", f"{r['videos']:,}"), ("objects", f"{r['objects']:,}"), ("  grounded", f"{r['grounded']:,}"),
        ("  reviewed", f"{r['reviewed']:,}"), ("  kept (reviewer keep rate)", f"{r['kept']:,} ({keep})"),
        *((f"samples: {k}", f"{v:,}") for k, v in sorted(r["samples"].items())),
        ("model calls sent", f"{r['calls']:,}"), ("  answered from the cache", f"{r.get('cache_hits', 0):,}"),
        ("tokens in / out", f"{r['tokens_in']:,} / {r['tokens_out']:,}"), ("cost USD", f"{r['cost_usd']:,.4f}"),
        ("failures (quarantined)", f"{r['failures']:,} ({r['quarantined']:,})"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)


def _ingest_with_progress(store: Store, source: Path, cfg: Config, limit: int | None, run_id: str) -> IngestReport:
    columns = (TextColumn("probing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("", total=None)
        return ingest(
            store, source, frame_folder_fps=cfg.sampling.frame_folder_fps, limit=limit, run_id=run_id,
            on_start=lambda n: progress.update(task, total=n),
            on_progress=lambda rel: progress.update(task, advance=1, description=rel[-60:]),
        )


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
        ("  with a caption", captioned),
        ("  without (the Captioner writes one)", len(report.videos) - captioned),
        ("duplicates of another input (same bytes)", len(report.duplicates)),
        ("skipped (see above)", len(report.problems)),
        ("frames in readable videos", sum(v.info.num_frames for v in report.videos)),
    ]
    for k, v in rows:
        t.add_row(k, f"{v:,}")
    console.print(t)


def _print_plan(plan: Plan, cfg: Config) -> None:
    t = Table(title="Plan for a detailed-pipeline run (estimate)", title_justify="left")
    for col, just in (("agent", "left"), ("model", "left"), ("calls", "right"), ("tokens in", "right"),
                      ("tokens out", "right"), ("cost USD", "right"), ("basis", "left")):
        t.add_column(col, justify=just)
    for a in plan.agents:
        t.add_row(a.agent, getattr(cfg.agents, a.agent).model, f"{a.calls:,.0f}", f"{a.tokens_in:,.0f}",
                  f"{a.tokens_out:,.0f}", f"{a.cost_usd:,.4f}", "measured" if a.measured else "estimate")
    t.add_row("segmentor", cfg.segmentor.sam2_model, "-", "-", "-", "-", f"{plan.mask_frames:,} object-frames on GPU")
    t.add_section()
    t.add_row("total", "", f"{plan.calls:,.0f}", f"{sum(a.tokens_in for a in plan.agents):,.0f}",
              f"{sum(a.tokens_out for a in plan.agents):,.0f}", f"{plan.cost_usd:,.4f}", "")
    console.print(t)
    console.print(
        f"videos {plan.videos:,}   frames to decode {plan.frames:,}   objects (est. "
        f"{cfg.plan.objects_per_video:g}/video) {plan.objects:,.0f}",
        highlight=False,
    )


@app.command(short_help="Show what the store holds, recent runs and quarantined failures.  e.g. engine status")
def status(
    config: ConfigOpt = None, data_dir: DataDirOpt = None, database_url: DbOpt = None, set_: SetOpt = None
) -> None:
    """Show what the store holds, recent runs and quarantined failures (example: engine status)."""
    cfg = _config(config, set_, data_dir=data_dir, database_url=database_url)
    store = _store(cfg)
    counts = store.counts()
    t = Table(title=f"Store {_safe_url(cfg.resolved_database_url)}", title_justify="left")
    t.add_column("table")
    t.add_column("rows", justify="right")
    for name, n in counts.items():
        t.add_row(name, f"{n:,}")
    console.print(t)
    with store.session() as s:
        runs = s.query(schema.Run).order_by(schema.Run.started_at.desc()).limit(5).all()
        failures = s.query(schema.Failure).order_by(schema.Failure.updated_at.desc()).limit(50).all()
        n_failures = s.query(schema.Failure).count()
    if runs:
        rt = Table(title="Recent runs", title_justify="left")
        for col in ("run id", "command", "status", "started", "videos", "new"):
            rt.add_column(col)
        for r in runs:
            rt.add_row(r.id[:12], r.command, r.status, f"{r.started_at:%Y-%m-%d %H:%M:%S}",
                       str(r.summary.get("videos", "")), str(r.summary.get("new_videos", "")))
        console.print(rt)
    _print_call_totals(store, runs)
    if failures:
        ft = Table(title=f"Failures ({n_failures}, newest first)", title_justify="left")
        for col in ("unit", "stage", "code", "attempts", "message"):
            ft.add_column(col, overflow="fold")
        for f in failures:
            ft.add_row(f.unit_id, f.stage, f.error_code, str(f.attempts), f.message)
        console.print(ft)
    else:
        console.print("no failures")


@app.command(short_help="Export samples to training files, validated, with a card.  e.g. engine export --out out/")
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="folder to write")],
    types: Annotated[str, typer.Option("--types", help="comma-separated data types")] = "short,detailed,qa",
    fmt: Annotated[str, typer.Option("--format", help="videorefer | jsonl | videollama3")] = "videorefer",
    accepted_only: Annotated[bool, typer.Option("--accepted-only", help="only objects the Reviewer kept")] = False,
    audited_only: Annotated[bool, typer.Option("--audited-only", help="only objects a person confirmed")] = False,
    min_coverage: Annotated[float, typer.Option("--min-coverage", min=0, max=1, help="mask coverage floor")] = 0.0,
    max_objects: Annotated[Optional[int], typer.Option("--max-objects", min=1, help="objects per record")] = None,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0, max=1, help="videos held out")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="split seed")] = 0,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
    set_: SetOpt = None,
) -> None:
    """Export samples to training files, validated, with a dataset card (example: engine export --out out/)."""
    from engine.dataset.card import write_card
    from engine.dataset.export import Filters, export as run_export, frame_counter
    from engine.dataset.validate import validate_file

    if fmt not in ("videorefer", "jsonl", "videollama3"):
        err.print(f"error: --format {fmt!r}: choose videorefer, jsonl or videollama3", highlight=False)
        raise typer.Exit(2)
    names = tuple(t.strip() for t in types.split(",") if t.strip())
    if bad := [t for t in names if t not in schema.DATA_TYPES]:
        err.print(f"error: --types {','.join(bad)}: choose from {', '.join(schema.DATA_TYPES)}", highlight=False)
        raise typer.Exit(2)
    cfg = _config(config, set_, data_dir=data_dir, database_url=database_url)
    store = _store(cfg)
    filters = Filters(names, accepted_only, audited_only, min_coverage, max_objects, val_fraction, seed)
    result = run_export(store, out, fmt, filters, cfg.model_dump(mode="json"))
    frames_of = frame_counter(store)
    reports = [validate_file(p, frames_of=frames_of) for p in result.files if fmt != "videollama3"]
    card = write_card(store, result, reports, fmt)
    t = Table(title=f"Export {out}", title_justify="left")
    for col in ("file", "records", "validation"):
        t.add_column(col)
    by_name = {r.path.name: r for r in reports}
    for path in result.files:
        r = by_name.get(path.name)
        verdict = "-" if r is None else ("ok" if r.ok else ", ".join(f"{k} {v}" for k, v in sorted(r.defects.items())))
        t.add_row(path.name, f"{result.file_counts[path.name]:,}", verdict)
    console.print(t)
    if result.skipped:
        console.print("left out: " + ", ".join(f"{k} {v:,}" for k, v in sorted(result.skipped.items())), highlight=False)
    console.print(f"card: {card}", highlight=False)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


@app.command(short_help="Check a VideoRefer-format file and count defects.  e.g. engine validate out/detailed_train.json")
def validate(
    file: Annotated[Path, typer.Argument(help="a .json array or .jsonl file")],
    video_root: Annotated[Optional[Path], typer.Option("--video-root", help="where the records' videos are")] = None,
    allow_empty: Annotated[bool, typer.Option("--allow-empty", help="accept null or empty masks")] = False,
) -> None:
    """Check a VideoRefer-format file and count records per defect (example: engine validate out/detailed_train.json)."""
    from engine.dataset.validate import DEFECTS, validate_file

    if not file.is_file():
        err.print(f"error: {file} is not a file", highlight=False)
        raise typer.Exit(2)
    report = validate_file(file, video_root=video_root, allow_empty=allow_empty)
    t = Table(title=f"{file}: {report.records:,} records", title_justify="left")
    for col in ("defect", "records", "first record", "meaning"):
        t.add_column(col)
    for name, meaning in DEFECTS.items():
        if report.defects[name]:
            t.add_row(name, f"{report.defects[name]:,}", report.examples[name], meaning)
    if report.ok:
        console.print(f"{file}: {report.records:,} records, no defects", highlight=False)
    else:
        console.print(t)
        raise typer.Exit(1)


app.add_typer(audit_app, name="audit", short_help="Audit the Reviewer.  e.g. engine audit sample --kept 100 --discarded 100")
app.command(short_help="Serve the audit web UI.  e.g. engine review --port 8765")(review)


def _print_call_totals(store: Store, runs: list[schema.Run]) -> None:
    totals = call_totals(store)
    if not totals:
        console.print("no model calls yet")
        return
    scopes = [("all runs", totals)] + ([(f"run {runs[0].id[:12]}", call_totals(store, runs[0].id))] if runs else [])
    for title, rows in scopes:
        t = Table(title=f"Model calls, {title}", title_justify="left")
        for col in ("agent", "calls", "ok", "failed", "tokens in", "tokens out", "cost USD", "mean latency s"):
            t.add_column(col, justify="left" if col == "agent" else "right")
        for r in rows:
            t.add_row(r.agent, f"{r.calls:,}", f"{r.ok:,}", f"{r.failed:,}", f"{r.tokens_in:,}", f"{r.tokens_out:,}",
                      f"{r.cost_usd:,.4f}", f"{r.mean_latency_s:.2f}")
        t.add_section()
        t.add_row("total", f"{sum(r.calls for r in rows):,}", f"{sum(r.ok for r in rows):,}",
                  f"{sum(r.failed for r in rows):,}", f"{sum(r.tokens_in for r in rows):,}",
                  f"{sum(r.tokens_out for r in rows):,}", f"{sum(r.cost_usd for r in rows):,.4f}", "")
        console.print(t)


if __name__ == "__main__":
    app()
