"""The `engine` command line. Commands parse flags, call the library (engine/api.py) and print what it returns;
the work lives there."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.live import Live

from engine.api import Engine, RunRefused
from engine.cli.audit import audit_app, review
from engine.cli.common import (
    ConfigOpt,
    DataDirOpt,
    DbOpt,
    RunOpt,
    SetOpt,
    _config,
    _engine,
    _existing,
    _results,
    console,
    err,
)
from engine.cli.data import export, validate
from engine.cli.views import ConsoleObserver, live_screen, print_status
from engine.config import DEFAULT_CONFIG_NAME, default_config_text
from engine.registry import PIPELINES
from engine.store.db import safe_url
from engine.store.faults import one_line

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
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", min=0, max=65535, help="serve Prometheus metrics on 127.0.0.1:PORT/metrics"),
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
    set_: SetOpt = None,
) -> None:
    """Run the engine over a folder of videos (example: engine run --source videos/ --dry-run)."""
    overrides = {"ray.address": ray_address, "metrics.port": metrics_port}
    cfg = _config(config, set_, data_dir=data_dir, database_url=database_url, **overrides)
    eng = Engine(cfg, observer=ConsoleObserver())
    names = [n.strip() for n in pipelines.split(",") if n.strip()]
    with _one_line_warnings():
        try:
            result = eng.run(
                source, names, dry_run=dry_run, limit=limit, use_cache=not no_cache, retry_failed=retry_failed
            )
        except RunRefused as e:
            if e.exit_code == 2:
                err.print(f"error: {e}\nNothing was run.", highlight=False)
            else:
                err.print(f"{e}\nNothing was run.   (exit code {e.exit_code})", highlight=False)
            raise typer.Exit(e.exit_code) from None
    (console if result.ok else err).print(f"{result.sentence}   (exit code {result.exit_code})", highlight=False)
    console.print(f"store: {safe_url(result.store_url)}   run id: {result.run_id}", highlight=False)
    if not result.ok:
        raise typer.Exit(result.exit_code)


class _OneLine(logging.Formatter):
    """The console's warnings: one line each; tracebacks go to the run log only."""

    def format(self, record: logging.LogRecord) -> str:
        return "warning: " + one_line(record.getMessage())[:500]


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """During a run, warnings (the driver's, and those the actors send back) reach the console one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(_OneLine())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


@app.command(short_help="Show what the store holds, which results are current, runs and failures.  e.g. engine status")
def status(
    run_id: Annotated[
        str | None,
        typer.Argument(help="with --follow: the run (its id or first characters); default: the running one"),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", help="redraw a run as it goes (stages, requests, failures) until it ends; exits as it did"
        ),
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.2, help="with --follow: seconds between redraws")
    ] = 2.0,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
    set_: SetOpt = None,
    run: RunOpt = None,
) -> None:
    """Show what the store holds, which results are current, recent runs, requests and failures
    (example: engine status; engine status --follow)."""
    if follow or run_id is not None:
        eng = _engine(_existing(_config(config, set_, data_dir=data_dir, database_url=database_url)))
        raise typer.Exit(_follow(eng, run_id, interval))
    results = _results(config, set_, run)
    eng = _engine(_existing(_config(config, set_, data_dir=data_dir, database_url=database_url)))
    eng.results = results
    st = eng.status()
    if st.view:
        err.print(st.view, highlight=False, style="dim")
    print_status(st)


def _follow(eng: Engine, run_id: str | None, interval: float) -> int:
    """Redraw the run until it ends (from any shell that reaches the store); its exit code."""
    try:
        st = eng.live(run_id)
    except LookupError as e:
        err.print(f"error: {e}", highlight=False)
        return 2
    if st is None:
        err.print("error: " + (f"no run's id starts with {run_id}" if run_id else "the store holds no run"))
        return 2
    with Live(live_screen(st), console=console, refresh_per_second=4) as screen:
        while not st.ended:
            time.sleep(interval)
            try:
                st = eng.live(st.run.id) or st
            except Exception as e:  # a store that stops answering: one line, never a traceback
                err.print(f"error: the store stopped answering: {one_line(str(e))[:300]}", highlight=False)
                return 3
            screen.update(live_screen(st))
    return st.exit_code or 0


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
