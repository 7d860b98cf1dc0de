"""`engine export` and `engine validate`: training files out of the store, and checks of any such file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast

import typer
from rich.table import Table

from engine.cli.common import ConfigOpt, DataDirOpt, DbOpt, SetOpt, _config, _store, console, err
from engine.registry import configured_current
from engine.runtime.plugins import PluginError
from engine.store import schema


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
) -> None:
    """Export samples to training files, validated, with a dataset card (example: engine export --out out/)."""
    from engine.dataset.card import write_card
    from engine.dataset.export import EmptyFrames, Filters, Format
    from engine.dataset.export import export as run_export
    from engine.dataset.validate import RecordFormat, validate_file

    if fmt not in ("videorefer", "jsonl", "videollama3"):
        err.print(f"error: --format {fmt!r}: choose videorefer, jsonl or videollama3", highlight=False)
        raise typer.Exit(2)
    if empty_frames not in ("keep", "drop"):
        err.print(f"error: --empty-frames {empty_frames!r}: choose keep or drop", highlight=False)
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
    calibration = None
    if calibrated:
        from engine.audit.sampling import latest_calibration

        cal = latest_calibration(store)
        if cal is None or cal.threshold is None:
            err.print(
                "error: --calibrated, but no calibration with a threshold: run `engine audit calibrate` first",
                highlight=False,
            )
            raise typer.Exit(2)
        calibration = {
            "threshold": cal.threshold,
            "target_precision": cal.target,
            "rule": cal.rule,
            "estimated_precision": cal.estimates["precision"],
            "created_at": cal.created_at.isoformat(),
        }
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
    )
    result = run_export(
        store,
        out,
        current,
        cast(Format, fmt),  # checked above
        filters,
        cfg.model_dump(mode="json"),
        all_versions=all_versions,
        clips=clips,
        calibration=calibration,
    )
    # every file checked against the loader its format is for (and UniPixel's layout, which our records keep),
    # with the sizes and lengths of the videos the records name (a clip's file, or its source)
    sizes_of = result.sizes.get
    record_format: RecordFormat = "videollama3" if fmt == "videollama3" else "videorefer"
    reports = [validate_file(p, fmt=record_format, sizes_of=sizes_of, unipixel=True) for p in result.files]
    from engine.runtime.split import split_lineage

    card = write_card(store, result, reports, fmt, None if cfg.split.detector == "none" else split_lineage(cfg))
    t = Table(title=f"Export {out}", title_justify="left")
    for col in ("file", "records", "left out", "validation"):
        t.add_column(col)
    for path, r in zip(result.files, reports):
        data_type = path.name.split("_")[0]
        left = (
            ", ".join(
                f"{reason} {n:,}"
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
    console.print(f"card: {card}", highlight=False)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)
    if not sum(result.counts.values()):  # an empty export says why, and is not a success
        from engine.store.samples import stored_sample_count

        stored = stored_sample_count(store, names)
        hint = (
            (
                f"the store holds {stored:,} samples of these types from other versions (prompts, models or "
                "segmentor): export with the run's configuration, or --all-versions"
            )
            if stored and not all_versions
            else "every sample was left out (see the table)"
            if stored
            else "the store holds no sample of these types"
        )
        err.print(f"no records exported: {hint}", highlight=False)
        raise typer.Exit(4)


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
    from engine.dataset.validate import DEFECTS, RecordFormat, validate_file

    if not file.is_file():
        err.print(f"error: {file} is not a file", highlight=False)
        raise typer.Exit(2)
    if video_root is not None and not video_root.is_dir():
        err.print(f"error: --video-root {video_root} is not a folder", highlight=False)
        raise typer.Exit(2)
    if fmt not in (None, "videorefer", "jsonl", "videollama3"):
        err.print(f"error: --format {fmt!r}: choose videorefer, jsonl or videollama3", highlight=False)
        raise typer.Exit(2)
    # jsonl holds videorefer records, one a line
    record_format: RecordFormat | None = (
        None if fmt is None else "videollama3" if fmt == "videollama3" else "videorefer"
    )
    report = validate_file(file, video_root=video_root, fmt=record_format, unipixel=unipixel)
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
