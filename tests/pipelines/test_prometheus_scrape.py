"""A real Prometheus (Debian's `prometheus`: `make test-tools`) scrapes `engine run --metrics-port` during a run;
what its HTTP API answers equals the run's request log and samples.

Where no prometheus is installed the test is skipped with that reason, except under REQUIRE_PROMETHEUS=1 (CI),
where it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from engine_runs import RUN_FLAGS
from fake_endpoint import FakeEndpoint

REPO = Path(__file__).resolve().parents[2]
ENGINE = str(Path(sys.executable).with_name("engine"))
DURING = 'sum(videorefer_engine_requests_total{role!="probe"})'


def _prometheus() -> str:
    found = shutil.which("prometheus")
    if found is None:
        if os.environ.get("REQUIRE_PROMETHEUS") == "1":
            pytest.fail("no prometheus on PATH: run `make test-tools` (apt-get install prometheus)")
        pytest.skip("no prometheus on PATH: run `make test-tools` (apt-get install prometheus)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _query(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def _by(result: list[dict], label: str) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in result}


def _sql(db: Path, query: str) -> list[tuple]:
    """The store read-only, without a Store (which would migrate the file the run is writing)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as con:
            return con.execute(query).fetchall()
    except sqlite3.OperationalError:  # no file or table yet
        return []


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """End a process this test started (its own group), and wait for it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_the_shipped_scrape_config_is_valid():
    _prometheus()
    promtool = shutil.which("promtool")
    assert promtool is not None, "Debian's prometheus package ships promtool"
    r = subprocess.run([promtool, "check", "config", str(REPO / "deploy" / "prometheus.yml")], capture_output=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_real_prometheus_scrapes_a_run_and_its_counters_equal_the_request_log_and_samples(source, tmp_path):
    binary = _prometheus()
    metrics_port, prom_port = _free_port(), _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: videorefer-engine\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    prom = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("w"),
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{prom_port}"
    data = tmp_path / "data"
    db = data / "engine.sqlite"
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "PYTHONPATH": str(REPO / "tests" / "support"),
        "OPENAI_API_KEY": "sk-test",
    }
    run = None
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{base}/-/ready", timeout=2) as r:
                if r.status == 200:
                    break
            assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()[-2000:]
            time.sleep(0.5)
        with FakeEndpoint(latency_s=0.2) as fe:  # answers slow enough that a scrape lands while the run works
            env["OPENAI_BASE_URL"] = fe.base_url
            run = subprocess.Popen(
                [
                    ENGINE,
                    "run",
                    "--source",
                    str(source),
                    "--pipelines",
                    "detailed,qa",
                    "--data-dir",
                    str(data),
                    "--metrics-port",
                    str(metrics_port),
                    "--set",
                    "metrics.linger_s=120",
                    *RUN_FLAGS,
                ],  # fmt: skip
                env=env,
                stdout=(tmp_path / "run.out").open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            # during the run: Prometheus has scraped work requests (not only preflight's probes) while the run's row
            # still says running
            during = None
            deadline = time.monotonic() + 240
            while during is None and time.monotonic() < deadline and run.poll() is None:
                time.sleep(1)
                answer = _query(base, DURING)
                running = _sql(db, "SELECT status FROM runs WHERE command LIKE 'run --pipelines%'")
                if answer and running == [("running",)]:
                    during = float(answer[0]["value"][1])
            assert during is not None and during > 0, (tmp_path / "run.out").read_text()[-3000:]
            print(f"\nduring the run: {DURING} = {during:g}")
            # the run has closed its row; its final values stay up (metrics.linger_s) until Prometheus has them
            deadline = time.monotonic() + 300
            while not _sql(db, "SELECT 1 FROM runs WHERE command LIKE 'run --pipelines%' AND status != 'running'"):
                assert run.poll() is None and time.monotonic() < deadline, (tmp_path / "run.out").read_text()[-3000:]
                time.sleep(1)
            ((run_id, status),) = _sql(db, "SELECT id, status FROM runs WHERE command LIKE 'run --pipelines%'")
            assert status == "finished", (tmp_path / "run.out").read_text()[-3000:]
            logged = dict(_sql(db, f"SELECT role, count(*) FROM requests WHERE run_id = '{run_id}' GROUP BY role"))
            samples = dict(
                _sql(db, f"SELECT data_type, count(*) FROM samples WHERE run_id = '{run_id}' GROUP BY data_type")
            )
            want_requests = {r: float(n) for r, n in logged.items()}
            want_samples = {t: float(n) for t, n in samples.items()}
            requests_q = 'sum by (role) (videorefer_engine_requests_total{outcome!="cache_hit"})'
            samples_q = "sum by (type) (videorefer_engine_samples_total)"
            got_requests: dict[str, float] = {}
            got_samples: dict[str, float] = {}
            deadline = time.monotonic() + 60
            while (got_requests, got_samples) != (want_requests, want_samples) and time.monotonic() < deadline:
                time.sleep(1)
                got_requests = _by(_query(base, requests_q), "role")
                got_samples = _by(_query(base, samples_q), "type")
            assert got_requests == want_requests
            assert got_samples == want_samples
            assert set(want_samples) == {"detailed", "qa"} and "probe" in want_requests
            info = _query(base, "videorefer_engine_run_info")
            assert [r["metric"]["run_id"] for r in info] == [run_id]
            # the shipped dashboard's every query is valid PromQL here, and answers with this run's data
            dashboard = json.loads((REPO / "deploy" / "grafana-dashboard.json").read_text())
            empty = []
            for panel in dashboard["panels"]:
                for target in panel["targets"]:
                    if not _query(base, target["expr"].replace("$__rate_interval", "1m")):
                        empty.append(panel["title"])
            assert empty == [], f"dashboard panels with no data: {empty}"
            print(f"after the run: {requests_q} = {got_requests}")
            print(f"after the run: {samples_q} = {got_samples}")
            _stop(run, signal.SIGINT)  # Ctrl-C ends the linger
            assert run.returncode == 0, (tmp_path / "run.out").read_text()[-3000:]
    finally:
        if run is not None:
            _stop(run)
        _stop(prom)
