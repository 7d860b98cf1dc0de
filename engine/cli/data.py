"""`engine export` and `engine validate`: training files out of the store, and checks of any such file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from engine.api import Engine, ExportRefused, StoreUnavailable
from engine.cli.common import ConfigOpt, DataDirOpt, DbOpt, RunOpt, SetOpt, _reader, console, err


def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="folder to write")],
    types: Annotated[str, typer.Option("--types", help="comma-separated data types")] = "short,detailed,qa",
    fmt: Annotated[str, typer.Option("--format", help="videorefer | jsonl | videollama3")] = "videorefer",
    accepted_only: Annotated[bool, typer.Option("--accepted-only", help="only objects the Reviewer kept")] = False,
    audited_only: Annotated[bool, typer.Option("--audited-only", help="only objects a person confirmed")] = False,
    min_coverage: Annotated[float, typer.Option("--min-coverage", min=0, max=1, help="mask coverage floor")] = 0.0,
    max_objects: Annotated[int | None, typer.Option("--max-objects", min=1, help="objects per record")] = None,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0, max=1, help="videos held out")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="split seed")] = 0,
    empty_frames: Annotated[
        str,
        typer.Option(
            "--empty-frames",
            help='keep: write an empty frame as {"segmentation": null}; drop: only frames with a '
            "mask (videollama3 always drops)",
        ),
    ] = "keep",
    all_versions: Annotated[
        bool,
        typer.Option(
            "--all-versions", help="samples of every prompt/model/segmentor version, not only the configured ones"
        ),
    ] = False,
    calibrated: Annotated[
        bool,
        typer.Option(
            "--calibrated",
            help="apply the newest `engine audit calibrate` threshold: records with an object below it are "
            "left out (objects it re-admits have no samples yet); the manifest records it",
        ),
    ] = False,
    clips: Annotated[
        bool,
        typer.Option(
            "--clips",
            help="write each clip as a video file of its own under <out>/videos/ (frame keys counted in it) "
            "and link whole videos there; default: a clip's records name its source",
        ),
    ] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
    set_: SetOpt = None,
    run: RunOpt = None,
) -> None:
    """Export samples to training files, validated, with a dataset card (example: engine export --out out/)."""
    eng = _reader(config, set_, run, data_dir, database_url)
    try:
        done = eng.export(
            out,
            types.split(","),
            fmt,
            accepted_only=accepted_only,
            audited_only=audited_only,
            min_coverage=min_coverage,
            max_objects=max_objects,
            val_fraction=val_fraction,
            seed=seed,
            empty_frames=empty_frames,
            all_versions=all_versions,
            calibrated=calibrated,
            clips=clips,
        )
    except (ExportRefused, StoreUnavailable) as e:
        err.print(f"error: {e}", highlight=False)
        raise typer.Exit(2) from None
    from engine.dataset.export import skip_reason_text

    result = done.result
    t = Table(title=f"Export {out}", title_justify="left")
    for col in ("file", "records", "left out", "validation"):
        t.add_column(col, overflow="fold")
    for path, r in zip(result.files, done.reports):
        data_type = path.name.split("_")[0]
        left = (
            "; ".join(
                f"{n:,}: {skip_reason_text(reason)}"
                for (dt, reason), n in sorted(result.skipped.items())
                if dt == data_type and path.name.startswith(f"{dt}_train")
            )
            or "-"
        )
        verdict = "ok" if r.ok else ", ".join(f"{k} {v}" for k, v in sorted(r.defects.items()))
        t.add_row(path.name, f"{result.file_counts[path.name]:,}", left, verdict)
    console.print(t)
    if result.video_root is not None:
        console.print(
            f"videos: {result.video_root} ({result.clip_files:,} clip files written; whole videos linked)"
            f"; train with it as the video folder",
            highlight=False,
        )
    console.print(f"card: {done.card}", highlight=False)
    for w in result.warnings:
        err.print(f"warning: {w}", highlight=False)
    if done.empty_reason:
        err.print(f"no records exported: {done.empty_reason}", highlight=False)
    if done.exit_code:
        raise typer.Exit(done.exit_code)


def validate(
    file: Annotated[Path, typer.Argument(help="a .json array or .jsonl file")],
    video_root: Annotated[
        Path | None,
        typer.Option(
            "--video-root", help="where the records' videos are: mask sizes and frame ranges are checked against them"
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="videorefer | jsonl | videollama3 (default: detected from the first record)"),
    ] = None,
    unipixel: Annotated[
        bool,
        typer.Option(
            "--unipixel",
            help="also the layout UniPixel's VideoRefer loader asserts (two turns, '<video>\\n' first, "
            "an intro line for several regions)",
        ),
    ] = False,
) -> None:
    """Check a training file against what VideoRefer's and VideoLLaMA3's loaders do with it, counting records per
    defect (example: engine validate out/detailed_train.json --video-root videos/)."""
    from engine.dataset.validate import DEFECTS, NotARecordFile

    try:
        report = Engine.validate(file, video_root, fmt, unipixel)
    except (ExportRefused, NotARecordFile) as e:  # e.g. the export's manifest.json named by mistake
        err.print(f"error: {e}", highlight=False, soft_wrap=True)  # one line, however long the path
        raise typer.Exit(2) from None
    t = Table(title=f"{file}: {report.records:,} {report.format} records", title_justify="left")
    for col in ("defect", "records", "first record", "meaning"):
        t.add_column(col)
    for name, meaning in DEFECTS.items():
        if report.defects[name]:
            t.add_row(name, f"{report.defects[name]:,}", report.examples[name], meaning)
    if not report.sizes_checked:
        console.print("mask sizes and frame ranges not checked: give --video-root", highlight=False)
    if report.ok:
        console.print(f"{file}: {report.records:,} {report.format} records, no defects", highlight=False)
    else:
        console.print(t)
        raise typer.Exit(1)
