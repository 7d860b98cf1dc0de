"""`engine export` and `engine validate`: training files out of the store, and checks of any such file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from engine.cli.common import ConfigOpt, DataDirOpt, DbOpt, SetOpt, _config, _store, console, err
from engine.cli.registry import configured_current
from engine.runtime.plugins import PluginError
from engine.store import schema


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
    all_versions: Annotated[bool, typer.Option(
        "--all-versions", help="samples of every prompt/model/segmentor version, not only the configured ones")] = False,
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
    try:
        current = configured_current(cfg)
    except PluginError as e:
        err.print(f"error: {e}", highlight=False)
        raise typer.Exit(2) from None
    store = _store(cfg)
    filters = Filters(names, accepted_only, audited_only, min_coverage, max_objects, val_fraction, seed)
    result = run_export(store, out, current, fmt, filters, cfg.model_dump(mode="json"), all_versions=all_versions)
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
