"""`engine status --follow`: another process follows a run through the store's live snapshot and ends with it."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from engine_runs import RUN_FLAGS, open_store
from fake_endpoint import FakeEndpoint

from engine.store import schema

REPO = Path(__file__).resolve().parents[2]
ENGINE = str(Path(sys.executable).with_name("engine"))


def _running(db: Path) -> str | None:
    """The id of the run in flight, read without opening a Store (which would migrate the file the run is
    creating at the same moment)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as con:
            row = con.execute(
                "SELECT id FROM runs WHERE status = 'running' AND command LIKE 'run --pipelines%'"
            ).fetchone()
    except sqlite3.OperationalError:  # no file yet, or no runs table yet, or a write in progress
        return None
    return row[0] if row else None


def test_status_follow_draws_a_run_from_another_process_and_ends_as_it_ended(source, tmp_path):
    data = tmp_path / "data"
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "PYTHONPATH": str(REPO / "tests" / "support"),
        "OPENAI_API_KEY": "sk-test",
        "COLUMNS": "120",
    }
    with FakeEndpoint(latency_s=0.3) as fe:  # slow enough answers that the run is still going when followed
        env["OPENAI_BASE_URL"] = fe.base_url
        run = subprocess.Popen(
            [ENGINE, "run", "--source", str(source), "--pipelines", "detailed", "--data-dir", str(data), *RUN_FLAGS],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 180
            running = None
            while running is None and time.monotonic() < deadline and run.poll() is None:
                time.sleep(0.5)
                running = _running(data / "engine.sqlite")
            assert running is not None, "the run never showed as running"
            follow = subprocess.run(
                [ENGINE, "status", "--follow", "--interval", "0.5", "--data-dir", str(data)],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert run.wait(timeout=600) == 0
        finally:
            if run.poll() is None:
                run.terminate()  # ours, by its pid
                run.wait(timeout=60)
    out = follow.stdout
    assert follow.returncode == 0, out + follow.stderr
    assert f"run {running[:12]}" in out and "finished" in out and "(exit code 0)" in out
    with open_store(data).session() as s:
        live = s.scalar(sa.select(schema.Run.live).where(schema.Run.id == running))
    # the last snapshot is every stage as it ended, and the final screen drew it
    assert live["stages"] and all(done == total for done, total in live["stages"].values()), live
    assert all(stage in out for stage in live["stages"])
    assert out.count("100%") == len(live["stages"])
    assert "Requests so far" in out and "annotator.dynamic" in out
    # the snapshot's funnel and slowest stage, as the run's tally counted them
    objects = live["objects"]
    assert f"objects: found {objects['found']:,}, grounded {objects['grounded']:,}" in out
    assert objects["kept"] <= objects["reviewed"] <= objects["grounded"] <= objects["found"] and objects["found"] > 0
    slowest = max(live["stage_seconds"], key=lambda st: live["stage_seconds"][st][1])
    assert f"slowest stage: {slowest} (" in out
    print(f"run {running[:12]}" + out.rsplit(f"run {running[:12]}", 1)[-1])  # the last screen, for -s
