"""What can be known before a run is refused before a run: exit 2, one sentence naming the setting, no request
sent and no run recorded."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app

SEGMENTOR = ("--set", "segmentor.backend=fake_segmentor:HashSegmentor", "--set", "split.detector=none")


def _run(endpoint, data, source, *args: str):
    env = {
        "OPENAI_BASE_URL": endpoint.base_url,
        "OPENAI_API_KEY": "sk-test",
        "RAY_AUTH_MODE": "disabled",
        "COLUMNS": "200",
        "HF_HUB_OFFLINE": "1",
    }
    return CliRunner().invoke(app, ["run", "--data-dir", str(data), "--source", str(source), *args], env=env)


def _refused_before_anything(r, endpoint, data) -> str:
    assert r.exit_code == 2, r.output
    assert "Nothing was run." in r.output
    assert not endpoint.chat_requests(), "preflight must refuse before any request"
    assert not (data / "engine.sqlite").exists(), "no run row: not even a store"
    assert "Traceback" not in r.output and "\x1b[" not in r.output
    return " ".join(r.output.split())


def test_the_default_config_on_a_machine_without_a_gpu_is_refused_at_preflight(endpoint, source, tmp_path):
    data = tmp_path / "d"
    r = _run(endpoint, data, source, *SEGMENTOR, "--pipelines", "detailed")
    flat = _refused_before_anything(r, endpoint, data)
    assert "ask for 1 GPU(s) but the Ray cluster has 0" in flat and "ray.resources.segmentor.num_gpus" in flat


@pytest.mark.timeout(240)
def test_a_segmentor_whose_checkpoint_is_not_reachable_is_refused_in_one_line(endpoint, source, tmp_path):
    data = tmp_path / "d"
    r = _run(
        endpoint,
        data,
        source,
        "--set",
        "split.detector=none",
        "--set",
        "ray.resources.segmentor.num_gpus=0",
        "--set",
        f"segmentor.cache_dir={tmp_path / 'empty-cache'}",
        "--pipelines",
        "detailed",
    )
    flat = _refused_before_anything(r, endpoint, data)
    assert "the segmentor (grounded_sam2) could not be built" in flat
    assert "is not cached in" in flat and "segmentor.sam2_checkpoint" in flat
    error_lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(error_lines) == 1  # one sentence (rich may wrap it), then "Nothing was run."
    assert "agents.grounded_sam2" not in flat  # the error's own words, not Ray's wrapping
    log = flat.split("the whole error is in ")[1].split()[0]
    assert "CheckpointError" in Path(log).read_text()  # the traceback went to the log it names


def test_a_ray_address_that_does_not_answer_is_refused_within_seconds(endpoint, source, tmp_path):
    data = tmp_path / "d"
    t0 = time.monotonic()
    r = _run(endpoint, data, source, *SEGMENTOR, "--ray-address", "127.0.0.1:9", "--pipelines", "detailed")
    assert time.monotonic() - t0 < 30
    flat = _refused_before_anything(r, endpoint, data)
    assert "--ray-address 127.0.0.1:9: nothing answers at 127.0.0.1:9" in flat


def test_a_read_only_store_is_refused_naming_the_setting(endpoint, source, tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    import subprocess

    try:  # a read-only bind mount: root writes through file modes, not through a read-only mount
        subprocess.run(["mount", "--bind", str(data), str(data)], check=True, capture_output=True)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(data)], check=True, capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        pytest.skip(f"cannot make a read-only mount here: {getattr(e, 'stderr', b'').decode().strip() or e}")
    try:
        r = _run(
            endpoint,
            data,
            source,
            *SEGMENTOR,
            "--set",
            "ray.resources.segmentor.num_gpus=0",
            "--pipelines",
            "detailed",
        )
        flat = _refused_before_anything(r, endpoint, data)
        assert "cannot be written" in flat and "--data-dir" in flat
    finally:
        subprocess.run(["umount", "-l", str(data)], capture_output=True)
