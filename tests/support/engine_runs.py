"""Helpers for end-to-end runs: `engine run` in process against the fake endpoint and the fake segmentor."""

from __future__ import annotations

from pathlib import Path

from fake_endpoint import FakeEndpoint
from typer.testing import CliRunner

from engine.cli import app
from engine.store import Store

RUN_FLAGS = (
    "--set",
    "segmentor.backend=fake_segmentor:HashSegmentor",
    # These runs are about the pipelines, on small single-shot clips the default clip rules would drop (under 2 s
    # or 240 px): the split phase runs in tests/pipelines/test_clips.py.
    "--set",
    "split.detector=none",
    "--set",
    "ray.resources.segmentor.num_gpus=0",
    "--set",
    "ray.resources.segmentor.num_cpus=0.5",
    "--set",
    "ray.resources.media.num_cpus=0.5",
)


def run_engine(endpoint: FakeEndpoint, data: Path, *args: str, env: dict | None = None):
    """`engine run` in process, against the fake endpoint, with the fake segmentor."""
    environ = {
        "OPENAI_BASE_URL": endpoint.base_url,
        "OPENAI_API_KEY": "sk-test",
        "RAY_AUTH_MODE": "disabled",
        "COLUMNS": "160",
        **(env or {}),
    }
    return CliRunner().invoke(app, ["run", "--data-dir", str(data), *RUN_FLAGS, *args], env=environ)


def open_store(data: Path) -> Store:
    return Store(f"sqlite:///{data / 'engine.sqlite'}")
