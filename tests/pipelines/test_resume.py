"""Crash and resume: SIGKILL the driver mid-run under scripted faults, kill a media actor mid-run; compare with
an uninterrupted run, and check the request log against the endpoint's own count."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time

import psutil
import pytest
from engine_runs import RUN_FLAGS, open_store, run_engine
from processes import end_family
from synthetic import render, write_mp4

from engine.store import schema

COMPARED = ("videos", "captions", "objects", "masklets", "descriptions", "reviews", "samples", "completions")
FAULTS = {"429": 0.04, "500": 0.04, "503": 0.04, "drop": 0.03, "malformed": 0.03, "no_usage": 0.02}  # 20% in all
FAST_RETRIES = {
    f"ENGINE_AGENTS__{a.upper()}__BACKOFF_MAX_S": "0.5"
    for a in ("captioner", "analyzer", "annotator", "reviewer", "refiner")
}


@pytest.fixture
def more_source(source):
    """The standard source plus four more clips, so a run lasts long enough to be interrupted."""
    for i in range(4):
        frames, _ = render(20 + i, 96, 72)
        write_mp4(source / f"extra_{i}.mp4", frames)
        (source / f"extra_{i}.txt").write_text(f"A red square number {i} passes a blue circle near a green box.")
    return source


def _answered(data) -> int:
    """Requests whose answer the killed run logged (read while it runs)."""
    try:
        with sqlite3.connect(f"file:{data / 'engine.sqlite'}?mode=ro", uri=True, timeout=1) as c:
            return c.execute("SELECT count(*) FROM requests WHERE status != 'sent'").fetchone()[0]
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


def test_sigkill_under_faults_then_resume_matches_an_uninterrupted_run_and_the_endpoints_count(
    endpoint, more_source, tmp_path, monkeypatch
):
    endpoint.latency_s = 0.25
    endpoint.fault_rates = FAULTS
    args = ("--source", str(more_source), "--pipelines", "short,detailed,qa")

    # an uninterrupted run: its requests (faults make some), row counts and sample ids
    assert run_engine(endpoint, tmp_path / "ref", *args, env=FAST_RETRIES).exit_code == 0
    reference_requests = len(endpoint.chat_requests())
    ref_counts, ref_ids = _snapshot(tmp_path / "ref")
    ref_store = open_store(tmp_path / "ref")
    with ref_store.session() as s:
        assert s.query(schema.Request).count() == reference_requests  # the log holds every request, faults too
    ref_store.dispose()

    # the same run in a process of its own, killed once a third of its requests are answered
    data = tmp_path / "killed"
    env = {
        **os.environ,
        **FAST_RETRIES,
        "OPENAI_BASE_URL": endpoint.base_url,
        "OPENAI_API_KEY": "sk-test",
        "RAY_AUTH_MODE": "disabled",
    }
    before = len(endpoint.chat_requests())
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "run", "--data-dir", str(data), *RUN_FLAGS, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while _answered(data) < reference_requests // 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    end_family(proc)
    _quiet(endpoint)
    killed_requests = endpoint.chat_requests()[before:]
    with sqlite3.connect(data / "engine.sqlite") as c:
        cached_at_kill = {h for (h,) in c.execute("SELECT request_hash FROM model_calls")}

    mid = len(endpoint.chat_requests())
    import engine.runtime.run_state as run_state

    monkeypatch.setattr(run_state, "HEARTBEAT_STALE_S", 1.0)  # the killed run's heartbeat is older than that now
    r = run_engine(endpoint, data, *args, env=FAST_RETRIES)
    assert r.exit_code == 0, r.output
    assert "stopped without a word (killed?): marked interrupted" in r.output
    resumed_requests = endpoint.chat_requests()[mid:]

    counts, ids = _snapshot(data)
    assert ids == ref_ids  # the same samples
    assert counts == ref_counts  # and no duplicate rows anywhere

    # the request log equals the endpoint's own count, exactly, over the killed run and the resumed one
    store = open_store(data)
    with store.session() as s:
        rows = s.query(schema.Request).all()
        resumed_run = s.query(schema.Run).order_by(schema.Run.started_at.desc()).first().id
        states = {x.id: x.status for x in s.query(schema.Run)}
    assert sorted(states.values()) == ["finished", "interrupted"]  # the killed run, found by the next one
    store.dispose()
    served = killed_requests + resumed_requests
    assert len(rows) == len(served), (len(rows), len(served))
    killed_rows = [x for x in rows if x.run_id != resumed_run]
    resumed_rows = [x for x in rows if x.run_id == resumed_run]
    assert (len(killed_rows), len(resumed_rows)) == (len(killed_requests), len(resumed_requests))
    # a request whose answer never reached the engine is counted as sent, its tokens unknown (not zero)
    unanswered = [x for x in rows if x.status == "sent"]
    assert all(x.tokens_in is None and x.tokens_out is None and x.cost_usd is None for x in unanswered)
    # the resumed run's tokens equal the endpoint's, request for request (unknown where no usage came back)
    with_usage = [q.usage for q in resumed_requests if q.usage]
    known = [x for x in resumed_rows if x.tokens_in is not None]
    assert len(known) == len(with_usage)
    assert sum(x.tokens_in for x in known) == sum(u["prompt_tokens"] for u in with_usage)
    assert sum(x.tokens_out for x in known) == sum(u["completion_tokens"] for u in with_usage)
    # the killed run logged no tokens it was not sent
    assert sum(x.tokens_in for x in killed_rows if x.tokens_in is not None) <= sum(
        q.usage["prompt_tokens"] for q in killed_requests if q.usage
    )
    # the resume re-sent only calls whose answers the kill lost (not in the cache when it died); preflight's
    # probes are sent by every run, and are not calls
    repeated = {x.request_hash for x in killed_rows if x.kind != "probe"} & {x.request_hash for x in resumed_rows}
    lost = {x.request_hash for x in killed_rows if x.kind != "probe"} - cached_at_kill
    print(
        f"\nkill-and-resume under 20% faults: reference {reference_requests} requests; killed run "
        f"{len(killed_requests)} sent ({len(unanswered)} unanswered in the log); resumed run {len(resumed_requests)};"
        f" calls sent by both {len(repeated)}, all among the {len(lost)} whose answers never reached the cache; "
        f"log rows {len(rows)} = endpoint {len(served)}"
    )
    assert repeated <= lost


def test_a_media_actor_killed_mid_run_is_replaced_and_the_run_completes(endpoint, more_source, tmp_path):
    endpoint.latency_s = 0.25
    args = ("--source", str(more_source), "--pipelines", "detailed")
    assert run_engine(endpoint, tmp_path / "ref", *args).exit_code == 0
    reference_requests = len(endpoint.chat_requests())
    ref_counts, ref_ids = _snapshot(tmp_path / "ref")

    killed = []

    def kill_media_worker():
        start = len(endpoint.chat_requests())
        deadline = time.monotonic() + 120
        while len(endpoint.chat_requests()) - start < reference_requests // 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Ray's workers for this run descend from this test process (the local instance it started)
        mine = [p for p in psutil.Process().children(recursive=True) if "MediaWorker" in " ".join(_cmdline(p))]
        for p in mine:
            p.kill()
        killed.append(len(mine))

    t = threading.Thread(target=kill_media_worker)
    t.start()
    r = run_engine(endpoint, tmp_path / "run", *args)
    t.join()
    assert killed and killed[0] >= 1, "no MediaWorker process was found to kill"
    assert r.exit_code == 0, r.output
    counts, ids = _snapshot(tmp_path / "run")
    assert ids == ref_ids and counts == ref_counts


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []
