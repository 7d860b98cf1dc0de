"""Crash and resume: SIGKILL the driver mid-run, kill an actor mid-run; compare with an uninterrupted run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import psutil
import pytest

from engine.store import schema
from engine_runs import RUN_FLAGS, open_store, run_engine
from synthetic import render, write_mp4

COMPARED = ("videos", "captions", "objects", "masklets", "descriptions", "reviews", "samples", "model_calls")


@pytest.fixture
def more_source(source):
    """The standard source plus four more clips, so a run lasts long enough to be interrupted."""
    for i in range(4):
        frames, _ = render(20 + i, 96, 72)
        write_mp4(source / f"extra_{i}.mp4", frames)
        (source / f"extra_{i}.txt").write_text(f"A red square number {i} passes a blue circle near a green box.")
    return source


def _rows(data) -> int:
    try:
        with sqlite3.connect(f"file:{data / 'engine.sqlite'}?mode=ro", uri=True, timeout=1) as c:
            return c.execute("SELECT count(*) FROM model_calls").fetchone()[0]
    except sqlite3.Error:
        return 0


def _quiet(endpoint, seconds: float = 1.5) -> None:
    """Wait until the endpoint has received nothing new for `seconds`."""
    n, since = len(endpoint.chat_requests()), time.monotonic()
    while time.monotonic() - since < seconds:
        time.sleep(0.1)
        if len(endpoint.chat_requests()) != n:
            n, since = len(endpoint.chat_requests()), time.monotonic()


def _snapshot(data) -> tuple[dict[str, int], set[str]]:
    store = open_store(data)
    counts = {k: v for k, v in store.counts().items() if k in COMPARED}
    with store.session() as s:
        ids = {x.id for x in s.query(schema.Sample)}
    store.dispose()
    return counts, ids


def _reference(endpoint, tmp_path, args) -> tuple[int, dict[str, int], set[str]]:
    """An uninterrupted run: its calls, row counts and sample ids."""
    assert run_engine(endpoint, tmp_path / "ref", *args).exit_code == 0
    return (len(endpoint.chat_requests()), *_snapshot(tmp_path / "ref"))


def test_sigkill_of_the_driver_then_resume_matches_an_uninterrupted_run(endpoint, more_source, tmp_path):
    endpoint.latency_s = 0.25
    args = ("--source", str(more_source), "--pipelines", "short,detailed,qa")
    reference_calls, ref_counts, ref_ids = _reference(endpoint, tmp_path, args)

    # the same run, killed once a third of its calls are stored
    data = tmp_path / "killed"
    env = {**os.environ, "OPENAI_BASE_URL": endpoint.base_url, "OPENAI_API_KEY": "sk-test", "RAY_AUTH_MODE": "disabled"}
    before = len(endpoint.chat_requests())
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", "--data-dir", str(data), *RUN_FLAGS, *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    while _rows(data) < reference_calls // 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    # The driver and everything it started, Ray's workers included (some leave the process group):
    # otherwise a worker that outlives the driver for a moment sends requests counted as the rerun's.
    family = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGKILL)
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait()
    _quiet(endpoint)
    first_calls = len(endpoint.chat_requests()) - before
    stored_at_kill = _rows(data)
    in_flight = first_calls - stored_at_kill  # sent, but their answers never reached the store
    assert 0 < stored_at_kill < reference_calls

    mid = len(endpoint.chat_requests())
    r = run_engine(endpoint, data, *args)
    assert r.exit_code == 0, r.output
    second_calls = len(endpoint.chat_requests()) - mid

    counts, ids = _snapshot(data)
    assert ids == ref_ids  # the same samples
    assert counts == ref_counts  # and no duplicate rows anywhere
    repeated = first_calls + second_calls - reference_calls
    assert repeated <= in_flight, (first_calls, second_calls, reference_calls, in_flight)
    print(f"\nkill-and-resume: reference {reference_calls} calls; killed run {first_calls} sent, {stored_at_kill} "
          f"stored, {in_flight} in flight; resumed run {second_calls}; repeated {repeated}")


def test_an_actor_killed_mid_run_is_replaced_and_the_run_completes(endpoint, more_source, tmp_path):
    endpoint.latency_s = 0.25
    args = ("--source", str(more_source), "--pipelines", "detailed")
    reference_calls, ref_counts, ref_ids = _reference(endpoint, tmp_path, args)

    killed = []

    def kill_model_worker():
        start = len(endpoint.chat_requests())
        deadline = time.monotonic() + 120
        while len(endpoint.chat_requests()) - start < reference_calls // 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        out = subprocess.run(["pkill", "-9", "-f", "ray::ModelWorker"], capture_output=True)
        killed.append(out.returncode == 0)

    t = threading.Thread(target=kill_model_worker)
    t.start()
    r = run_engine(endpoint, tmp_path / "run", *args)
    t.join()
    assert killed == [True], "no ModelWorker process was found to kill"
    assert r.exit_code == 0, r.output
    counts, ids = _snapshot(tmp_path / "run")
    assert ids == ref_ids and counts == ref_counts
