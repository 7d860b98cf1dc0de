"""A newcomer's path, as README gives it: `make demo`, then `engine status`, `export`, `audit sample` and `review`
with nothing but --data-dir: no --set, no PYTHONPATH, no ENGINE_ variable, no engine.toml. The store remembers
the configuration (and the plug-in) its runs used."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
from engine_runs import open_store

from engine.store import schema

REPO = Path(__file__).resolve().parents[2]
ENGINE = str(Path(sys.executable).with_name("engine"))
DEMO_SETS = (  # examples/demo.py's
    "--set",
    "segmentor.backend=fake_segmentor:HashSegmentor",
    "--set",
    "ray.resources.segmentor.num_gpus=0",
    "--set",
    "ray.resources.segmentor.num_cpus=0.5",
    "--set",
    "ray.resources.media.num_cpus=0.5",
)


def _newcomer_env() -> dict[str, str]:
    """A shell with none of the demo's settings: what a person has after `make demo` returns."""
    drop = ("PYTHONPATH", "OPENAI_BASE_URL", "OPENAI_API_KEY", "ENGINE_CONFIG")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_") and k not in drop}
    return {**env, "COLUMNS": "120", "RAY_AUTH_MODE": "disabled"}


def _engine(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ENGINE, *args], cwd=cwd, env=_newcomer_env(), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    """The demo's store, made by examples/demo.py exactly as `make demo` runs it (to another folder)."""
    data = tmp_path_factory.mktemp("newcomer") / "demo-data"
    r = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py"), "--data-dir", str(data)],
        cwd=REPO,
        env=_newcomer_env(),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return data, r.stdout + r.stderr


def test_the_demo_warns_of_nothing_in_its_own_inputs(demo):
    _, out = demo
    flat = " ".join(out.split())
    assert "looks like" not in flat and "warning:" not in flat, flat[-3000:]
    # it drops one of its three inputs on purpose, and the README says why
    assert re.search(r"dropped: low resolution\W+1\b", flat)
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "demo-data/" in readme and "shapes.mp4" in readme and "low resolution" in readme


def test_status_export_audit_and_review_need_only_the_data_dir(demo, tmp_path):
    data, _ = demo
    cwd = tmp_path / "elsewhere"  # no engine.toml here, and no store: the demo's is named by --data-dir alone
    cwd.mkdir()
    with open_store(data).session() as s:
        run_id = s.scalars(sa.select(schema.Run.id).where(schema.Run.command.like("run --pipelines%"))).one()
    said = f"using the configuration of run {run_id[:12]}"

    st = _engine(cwd, "status", "--data-dir", str(data))
    assert st.returncode == 0, st.stdout + st.stderr
    assert said in st.stderr
    flat = " ".join(st.stdout.split())
    for data_type in ("short", "detailed", "qa"):  # every type current, none "outdated only"
        found = re.search(rf"samples:{data_type}\W+([0-9,]+)\W+([0-9,]+)", flat)
        assert found and int(found[1]) > 0 and int(found[2]) == 0, flat

    ex = _engine(cwd, "export", "--data-dir", str(data), "--out", str(tmp_path / "x"))
    assert ex.returncode == 0, ex.stdout + ex.stderr
    assert said in ex.stderr
    for data_type in ("short", "detailed", "qa"):
        assert json.loads((tmp_path / "x" / f"{data_type}_train.json").read_text())

    au = _engine(cwd, "audit", "sample", "--data-dir", str(data), "--kept", "100", "--discarded", "100")
    assert au.returncode == 0, au.stdout + au.stderr
    assert said in au.stderr and re.search(r"kept\W+\d+\W+\d+", au.stdout)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [ENGINE, "review", "--data-dir", str(data), "--port", str(port)],
        cwd=cwd,
        env=_newcomer_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, status = time.monotonic() + 60, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as resp:
                    status = resp.status
                break
            except OSError:
                time.sleep(0.3)
        assert status == 200, server.poll()
    finally:
        server.terminate()  # ours, by its pid
        out, _ = server.communicate(timeout=30)
    assert said in out
    assert not (cwd / "engine-data").exists()  # no empty store appeared where the commands ran


def test_other_views_and_a_missing_plugin_are_named(demo, tmp_path):
    data, _ = demo
    with open_store(data).session() as s:
        run_id = s.scalars(sa.select(schema.Run.id).where(schema.Run.command.like("run --pipelines%"))).one()
    # --run selects a run by the first characters of its id; one that matches none is one line and exit 2
    r = _engine(tmp_path, "status", "--data-dir", str(data), "--run", run_id[:6])
    assert r.returncode == 0 and f"run {run_id[:12]}" in r.stderr, r.stderr
    r = _engine(tmp_path, "export", "--data-dir", str(data), "--out", str(tmp_path / "y"), "--run", "zz")
    assert r.returncode == 2 and "--run zz" in r.stderr and "Traceback" not in r.stderr
    # --set reads the configuration's own versions: other versions export nothing, and it says how to get them
    r = _engine(
        tmp_path, "export", "--data-dir", str(data), "--out", str(tmp_path / "z"), "--set", "agents.refiner.model=m2"
    )
    assert r.returncode == 4, r.stdout + r.stderr
    assert "--run ID" in " ".join(r.stderr.split())
    # a plug-in the shell cannot import: named, with the folder the demo's run imported it from
    r = _engine(tmp_path, "export", "--data-dir", str(data), "--out", str(tmp_path / "w"), "--set", DEMO_SETS[1])
    flat = " ".join(r.stderr.split())
    assert r.returncode == 2 and "fake_segmentor" in flat, flat
    assert f"{REPO / 'tests' / 'support'}: add that folder to PYTHONPATH" in flat


def test_the_dry_run_over_the_finished_demo_plans_no_call(demo):
    data, _ = demo
    env = {**_newcomer_env(), "PYTHONPATH": str(REPO / "tests" / "support")}
    r = subprocess.run(
        [
            ENGINE,
            "run",
            "--source",
            str(REPO / "examples" / "videos"),
            "--pipelines",
            "short,detailed,qa",
            "--data-dir",
            str(data),
            *DEMO_SETS,
            "--dry-run",
        ],  # fmt: skip
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    with open_store(data).session() as s:
        summary = s.scalars(
            sa.select(schema.Run.summary).where(schema.Run.command == "run --dry-run").order_by(schema.Run.started_at)
        ).all()[-1]
    assert summary["planned_calls"] == 0 and summary["planned_videos_with_work"] == 0, summary
