"""What every `engine` command shares: the consoles, the common options, loading the config and the store."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from engine.api import Engine, StoreUnavailable
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


def _store(cfg: Config) -> Store:
    return _engine(cfg).store
