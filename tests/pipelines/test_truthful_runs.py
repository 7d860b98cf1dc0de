"""Runs that tell the truth: the output mode a server takes, a model that cannot see, an endpoint that dies, and
the state and exit code every run ends with."""

from __future__ import annotations

import re
import threading
import time

import pytest
from engine_runs import open_store, run_engine
from fake_endpoint import FakeEndpoint
from typer.testing import CliRunner

from engine.cli import app
from engine.store import schema

AGENTS = ("captioner", "analyzer", "annotator", "reviewer", "refiner")


def _agents_env(**settings) -> dict[str, str]:
    return {f"ENGINE_AGENTS__{a.upper()}__{k.upper()}": str(v) for a in AGENTS for k, v in settings.items()}


def test_a_server_refusing_json_schema_with_a_500_is_probed_and_answered_in_its_own_mode(endpoint, source, tmp_path):
    endpoint.supports_json_schema = False
    endpoint.unsupported_status = 500  # as llama.cpp's server does, naming response_format in the body
    data = tmp_path / "d"
    r = run_engine(endpoint, data, "--source", str(source), "--pipelines", "detailed", "--limit", "1")
    assert r.exit_code in (0, 4), r.output
    assert "output mode json_object_schema" in r.output
    work = endpoint.work_requests()
    assert work and all(
        q.body["response_format"]["type"] == "json_object" and "schema" in q.body["response_format"] for q in work
    )  # no request of the run was sent in a mode the server refuses
    for q in work:  # the schema instructions joined the agent's own system message: one system message
        systems = [m for m in q.body["messages"] if m["role"] == "system"]
        assert len(systems) == 1 and "<schema>" in systems[0]["content"] and len(systems[0]["content"]) > 200
    with open_store(data).session() as s:
        modes = {x.output_mode for x in s.query(schema.Request).filter(schema.Request.kind != "probe")}
    assert modes == {"json_object_schema"}


def test_a_text_only_model_on_a_vision_agent_is_refused_before_anything(source, tmp_path):
    with FakeEndpoint(sees_images=False) as text_only:
        data = tmp_path / "d"
        r = run_engine(text_only, data, "--source", str(source), "--pipelines", "detailed")
        assert r.exit_code == 2, r.output
        flat = " ".join(r.output.split())
        assert "agent annotator" in flat and text_only.base_url in flat and "gpt-4o-mini" in flat
        assert "does not see images" in flat and "Nothing was run" in flat
        assert not text_only.work_requests() and not (data / "engine.sqlite").exists()


def test_a_segmentor_class_without_segment_is_refused_naming_what_is_missing(endpoint, source, tmp_path):
    r = run_engine(
        endpoint, tmp_path / "d", "--source", str(source), "--set", "segmentor.backend=test_truthful_runs:NoSegment"
    )
    assert r.exit_code == 2 and "lacks a segment(request, frames) method" in " ".join(r.output.split())
    assert not endpoint.chat_requests()


class NoSegment:
    version = "nosegment@1"


@pytest.mark.timeout(300)
def test_an_endpoint_that_dies_mid_run_aborts_it_quarantining_nothing_and_a_rerun_completes(source, tmp_path):
    data = tmp_path / "d"
    env = _agents_env(breaker_failures=5, breaker_down_s=5, backoff_max_s=0.5)
    first = FakeEndpoint(latency_s=0.2).start()
    port = first.port
    stopped = {}

    def kill_after(n: int) -> None:
        while len(first.work_requests()) < n:
            time.sleep(0.02)
        first.stop()  # the server goes away with requests in flight
        stopped["t"] = time.monotonic()

    killer = threading.Thread(target=kill_after, args=(12,))
    killer.start()
    r = run_engine(first, data, "--source", str(source), "--pipelines", "detailed", env=env)
    took = time.monotonic() - stopped["t"]
    killer.join()
    flat = " ".join(r.output.split())
    assert r.exit_code == 3, r.output
    assert f"http://127.0.0.1:{port}/v1 has not answered for 5 s" in flat and "aborted" in flat
    assert took < 60
    store = open_store(data)
    with store.session() as s:
        run = s.query(schema.Run).filter(schema.Run.command.like("run --pipelines%")).one()
        assert run.status == "aborted" and "has not answered" in run.reason
        assert s.query(schema.Failure).count() == 0  # the units that were waiting are not failures

    with FakeEndpoint(port=port) as again:  # the endpoint is back: the rerun goes on from where it stopped
        r2 = run_engine(again, data, "--source", str(source), "--pipelines", "detailed", env=env)
        assert r2.exit_code == 0, r2.output
    with store.session() as s:
        assert s.query(schema.Sample).filter_by(data_type="detailed").count() > 0
        assert s.query(schema.Failure).count() == 0
    print(
        f"\nendpoint killed after 12 requests: run aborted {took:.1f} s later (exit 3), nothing quarantined; "
        f"the rerun finished (exit 0)"
    )


def test_exit_codes_nothing_left_to_do_and_nothing_produced(endpoint, source, tmp_path):
    data = tmp_path / "d"
    args = ("--source", str(source), "--pipelines", "short", "--limit", "2")
    assert run_engine(endpoint, data, *args).exit_code in (0, 4)
    again = run_engine(endpoint, data, *args)
    assert again.exit_code == 0 and "finished: nothing was left to do" in again.output

    empty = tmp_path / "empty"
    empty.mkdir()
    from synthetic import render, write_mp4

    write_mp4(empty / "still.mp4", render(8, 64, 48)[0])
    (empty / "still.txt").write_text("Nothing at all happens here.")
    # the stand-in Analyzer still names an object; the Reviewer discards it, so no sample comes of the work (the
    # verdict was the stand-in's seeded coin, which any change to the judging request turned over)
    endpoint.answers["same_object"] = False
    r = run_engine(endpoint, tmp_path / "d2", "--source", str(empty), "--pipelines", "detailed")
    assert r.exit_code == 4 and "produced nothing" in r.output
    assert re.search(r"reviewed[\s│]+1\b", r.output) and re.search(r"kept \(reviewer keep rate\)[\s│]+0 ", r.output)


def test_progress_lines_when_output_is_not_a_terminal_and_plan_against_actual(endpoint, source, tmp_path):
    endpoint.enqueue_faults("503", "503", None, "500")  # retries must not inflate the totals
    r = run_engine(endpoint, tmp_path / "d", "--source", str(source), "--pipelines", "detailed")
    lines = [x for x in r.output.splitlines() if re.match(r"\[\s*\d+ s\] ", x)]
    assert lines, r.output  # at least the last one
    last = lines[-1]
    assert re.search(r"analyze (\d+)/\1", last) and re.search(r"segment (\d+)/\1", last)  # units, not attempts
    assert "analyze 4/4" in last  # four videos: a total counts units once, retries and all

    status = CliRunner().invoke(app, ["status", "--data-dir", str(tmp_path / "d")], env={"COLUMNS": "220"})
    table = status.output[status.output.index("Plan against actual") :]
    rows = {
        x.split("│")[1].strip(): [c.strip() for c in x.split("│")[2:-1]]
        for x in table.splitlines()
        if x.count("│") == 8
    }
    assert rows["analyzer"][0] == "4" and rows["analyzer"][1].startswith("4")  # planned 4 calls, sent 4
    assert {"annotator.dynamic", "reviewer.judge", "refiner.detailed"} <= set(rows)


def test_a_run_killed_outright_is_found_interrupted(tmp_path):
    from datetime import timedelta

    from engine.store import Store

    store = Store(f"sqlite:///{tmp_path / 'engine.sqlite'}")
    long_ago = schema.utcnow() - timedelta(hours=1)
    with store.session() as s:
        s.add(
            schema.Run(
                id="k" * 32,
                command="run --pipelines detailed",
                engine_version="0",
                config={},
                status="running",
                started_at=long_ago,
                heartbeat_at=long_ago,
            )
        )
        s.add(
            schema.Run(
                id="a" * 32,
                command="run --pipelines detailed",
                engine_version="0",
                config={},
                status="running",
                heartbeat_at=schema.utcnow(),
            )
        )  # alive: beating
    r = CliRunner().invoke(app, ["status", "--data-dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    with store.session() as s:
        assert s.get(schema.Run, "k" * 32).status == "interrupted"
        assert s.get(schema.Run, "a" * 32).status == "running"
    assert "interrupted" in r.output


def test_warnings_raised_in_a_worker_reach_the_console_and_the_run_log(endpoint, source, tmp_path):
    data = tmp_path / "d"
    r = run_engine(
        endpoint,
        data,
        "--source",
        str(source),
        "--pipelines",
        "short",
        "--limit",
        "2",
        "--set",
        "segmentor.backend=fake_segmentor:WarningSegmentor",
    )
    assert r.exit_code in (0, 4), r.output
    out = r.output
    assert "warning: segmentor: UserWarning: this backend's fallback path was taken" in out
    assert out.count("checkpoint has unused keys: 3") == 1  # once per run, not once per video
    (log,) = (data / "logs").glob("run-*.log")
    assert "checkpoint has unused keys: 3" in log.read_text()
