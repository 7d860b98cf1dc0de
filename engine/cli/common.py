"""What every `engine` command shares: the consoles, the common options, loading the config and the store."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from engine.api import Engine, StoreUnavailable, ViewUnavailable
from engine.config import Config, ConfigError, load_config
from engine.store import Store

# Pipes and CI logs get 120 columns rather than rich's 80, so the plan table is not truncated.
console = Console(width=None if Console().is_terminal else 120)
err = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 120)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="config file (default: ./engine.toml)")]
DataDirOpt = Annotated[str | None, typer.Option("--data-dir", help="overrides data_dir")]
DbOpt = Annotated[str | None, typer.Option("--database-url", help="overrides database_url")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="KEY=VALUE", help="override any config key, e.g. --set sampling.mask_frames=16"),
]


RunOpt = Annotated[
    str | None,
    typer.Option(
        "--run",
        metavar="ID",
        help="read the results of this run (its id or first characters); default: for each data type, the "
        "latest finished run that made it; --config or --set: the configuration's own versions",
    ),
]


def _parse_sets(items: list[str] | None) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set sampling.mask_frames=16")
        try:  # a TOML literal (16, 0.5, true, "text", [1, 2]); anything else is taken as a plain string
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def _config(path: Path | None, sets: list[str] | None = None, **overrides) -> Config:
    try:
        return load_config(path, overrides={**_parse_sets(sets), **overrides})
    except ConfigError as e:
        err.print(f"[red]error:[/red] {e}", markup=True, highlight=False)
        raise typer.Exit(2) from None


def _engine(cfg: Config) -> Engine:
    """The library over this configuration, its store opened now: one line and exit 2 if it cannot be (an
    unreachable server or a bad URL), never a traceback."""
    eng = Engine(cfg)
    try:
        eng.store  # noqa: B018  (opened here, so a store that cannot be reached is named before any work)
    except StoreUnavailable as e:
        err.print(f"error: {e}", highlight=False)
        raise typer.Exit(2) from None
    return eng


def _existing(cfg: Config) -> Config:
    """A command that reads results never creates a store: an SQLite file that is not there is one line, exit 2."""
    path = cfg.data_path / "engine.sqlite"
    if not cfg.database_url and not path.exists():
        err.print(
            f"error: no store at {path}: `engine run` makes one there (`make demo` writes its own under "
            "demo-data/: --data-dir demo-data)",
            highlight=False,
        )
        raise typer.Exit(2)
    return cfg


def _results(config: Path | None, sets: list[str] | None, run: str | None) -> str:
    """Engine's `results` for these flags: a run's, the configuration's when --config or --set says what to
    read, else "latest" (an ./engine.toml found by default does not: it may postdate the store's runs)."""
    if run is not None and (config is not None or sets):
        err.print("error: --run reads that run's results with its own settings: give it without --config/--set")
        raise typer.Exit(2)
    return run or ("config" if config is not None or sets else "latest")


def _reader(
    config: Path | None, sets: list[str] | None, run: str | None, data_dir: str | None, database_url: str | None
) -> Engine:
    """The library for a command that reads results: whose results (`--run`, else the configuration's when
    --config or --set is given, else each type's latest finished run) is said in one line on stderr, before any
    output; a run or plug-in that cannot be found is one line and exit 2."""
    results = _results(config, sets, run)
    eng = _engine(_existing(_config(config, sets, data_dir=data_dir, database_url=database_url)))
    eng.results = results
    try:
        err.print(eng.view().sentence, highlight=False, style="dim")
    except ViewUnavailable as e:
        err.print(f"error: {e}", highlight=False)
        raise typer.Exit(2) from None
    return eng


def _store(cfg: Config) -> Store:
    return _engine(cfg).store
