"""What every `engine` command shares: the consoles, the common options, loading the config and the store."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from engine.config import Config, ConfigError, load_config
from engine.store import Store
from engine.store.db import safe_url

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


def _store(cfg: Config) -> Store:
    try:
        return Store(cfg.resolved_database_url)
    except Exception as e:  # an unreachable server or a bad URL: say which, never a traceback
        err.print(f"error: cannot open the store at {safe_url(cfg.resolved_database_url)}: {e}", highlight=False)
        raise typer.Exit(2) from None
