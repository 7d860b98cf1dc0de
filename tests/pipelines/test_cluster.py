"""A Ray cluster started apart from the driver (`ray start --head`), with a wrong OPENAI_BASE_URL and no key in its
environment: the run still uses the driver's endpoint settings and key, because model calls are made by the driver."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from engine_runs import open_store, run_engine
from processes import end_family

from engine.store import schema

SUPPORT = str(Path(__file__).resolve().parents[1] / "support")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    """A head node in a process group of its own, ended (by pid and group) when the test ends."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env.update(
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        RAY_AUTH_MODE="disabled",  # a wrong endpoint, no key
        PYTHONPATH=os.pathsep.join(filter(None, [SUPPORT, env.get("PYTHONPATH")])),
    )
    ray_bin = Path(sys.executable).with_name("ray")
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 characters
    proc = subprocess.Popen(
        [
            str(ray_bin),
            "start",
            "--head",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            "--num-gpus=0",
            "--include-dashboard=false",
            f"--temp-dir={temp}",
            "--block",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.5)
    else:
        pytest.fail("the Ray head did not come up")
    time.sleep(3)  # the raylet registers after the GCS port opens
    try:
        yield address
    finally:
        import ray

        ray.shutdown()
        end_family(proc, signal.SIGTERM)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.timeout(300)
def test_a_run_on_a_cluster_started_apart_uses_the_drivers_endpoint_and_key(endpoint, source, tmp_path, cluster):
    data = tmp_path / "d"
    r = run_engine(endpoint, data, "--source", str(source), "--pipelines", "detailed", "--ray-address", cluster)
    assert r.exit_code == 0, r.output
    requests = endpoint.chat_requests()
    assert requests and all(q.authorization == "Bearer sk-test" for q in requests)  # the driver's key
    with open_store(data).session() as s:
        assert s.query(schema.Sample).filter_by(data_type="detailed").count() > 0
        assert s.query(schema.Request).count() == len(requests)
        assert {x.endpoint for x in s.query(schema.Request)} == {endpoint.base_url}


@pytest.mark.timeout(300)
def test_the_split_phase_runs_on_a_cluster_started_apart(endpoint, tmp_path, cluster, bikes_mp4):
    """The shot detector's actor on the cluster, TransNetV2's real weights: a montage with known cuts becomes its
    five clips of 2 s or more (tests/pipelines/test_clips.py has the rest)."""
    from montage import make_montage

    src = tmp_path / "raw"
    src.mkdir()
    make_montage(src / "montage.mp4", bikes_mp4.parent)
    r = run_engine(
        endpoint,
        tmp_path / "d",
        "--source",
        str(src),
        "--dry-run",
        "--ray-address",
        cluster,
        "--set",
        "split.detector=transnetv2",
    )
    assert r.exit_code == 0, r.output
    with open_store(tmp_path / "d").session() as s:
        kept = sorted((c.start, c.end) for c in s.query(schema.Clip).filter_by(kept=True))
    assert kept == [(76, 137), (137, 187), (187, 242), (250, 350), (428, 488)], kept
