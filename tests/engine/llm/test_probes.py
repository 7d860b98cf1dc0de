"""Preflight probes that one bad answer or one transient fault cannot mislead, and failure messages that keep the
answer (invalid, empty, not JSON, not UTF-8, too large) without ever raising out of query()."""

import asyncio
import json
import logging

import pytest
from aiohttp import web
from pydantic import BaseModel, Field

from engine.config import load_config
from engine.llm import client as client_module
from engine.llm.client import EndpointError, ModelClient
from engine.llm.request_log import MemoryCache, MemoryLog
from engine.media.images import user_message


class Nouns(BaseModel):
    subject: str
    others: list[str]
    confidence: float = Field(ge=0, le=1)


def make_client(base_url, log=None, **endpoint):
    env = {
        "ENGINE_AGENTS__ANALYZER__BASE_URL": base_url,
        "ENGINE_AGENTS__ANALYZER__MODEL": "fake-model",
        "ENGINE_AGENTS__ANALYZER__BACKOFF_MAX_S": "2",
    }
    env.update({f"ENGINE_AGENTS__ANALYZER__{k.upper()}": str(v) for k, v in endpoint.items()})
    return ModelClient(
        load_config(environ=env),
        MemoryCache(),
        log if log is not None else MemoryLog(),
        environ={"OPENAI_API_KEY": "sk-test"},
    )


async def closing(client, coro):
    try:
        return await coro
    finally:
        await client.aclose()


def learn(fake, log=None, **endpoint):
    client = make_client(fake.base_url, log, **endpoint)
    return asyncio.run(closing(client, client.learn_mode("analyzer"))), client


def probe_modes(fake):
    return [(q.body.get("response_format") or {}).get("type") for q in fake.chat_requests()]


# --- A: probes that are sure ---------------------------------------------------------------------------------


def test_one_invalid_probe_answer_is_tried_again_in_the_same_mode(fake, caplog):
    fake.enqueue_faults("schema")
    log = MemoryLog()
    with caplog.at_level(logging.WARNING, logger="engine.llm.client"):
        mode, client = learn(fake, log)
    assert mode == "json_schema" and client.probed()["modes"] == {(fake.base_url, "fake-model"): "json_schema"}
    assert [q.fault for q in fake.chat_requests()] == ["schema", None]
    assert probe_modes(fake) == ["json_schema", "json_schema"]
    rows = sorted(log.rows.values(), key=lambda x: x["attempt"])
    assert [(x["kind"], x["attempt"], x["output_mode"]) for x in rows] == [
        ("probe", 1, "json_schema"),
        ("probe", 2, "json_schema"),
    ]
    assert "try 1 of 3 of the json_schema probe: invalid answer; trying again" in caplog.text


@pytest.mark.parametrize("fault", ["500", "503", "drop"])
def test_one_transient_fault_is_tried_again_in_the_same_mode(fake, fault):
    fake.enqueue_faults(fault)
    mode, _ = learn(fake, max_attempts=6)
    assert mode == "json_schema" and [q.fault for q in fake.chat_requests()] == [fault, None]


def test_a_hang_is_tried_again_in_the_same_mode(fake):
    fake.hang_s = 2
    fake.enqueue_faults("hang")
    mode, _ = learn(fake, timeout_s=0.5)
    assert mode == "json_schema" and len(fake.chat_requests()) == 2


def test_three_invalid_answers_in_a_row_choose_the_next_mode(fake):
    fake.enqueue_faults("schema", "schema", "schema")
    mode, _ = learn(fake)
    assert mode == "json_object_schema"
    assert probe_modes(fake) == ["json_schema"] * 3 + ["json_object"]


def test_a_refusal_moves_to_the_next_mode_at_once(fake):
    fake.enqueue_faults("no_json_schema")
    mode, _ = learn(fake)
    assert mode == "json_object_schema" and probe_modes(fake) == ["json_schema", "json_object"]


def test_a_fault_that_persists_stops_preflight_after_three_requests_whatever_max_attempts(fake):
    fake.enqueue_faults("503", "503", "503")
    with pytest.raises(EndpointError, match="probe of output mode json_schema failed.*3 tries: http_503"):
        learn(fake, max_attempts=6)
    assert len(fake.chat_requests()) == 3  # 3 tries, one HTTP request each: _send's own retries are off


def test_faults_between_invalid_answers_neither_degrade_nor_pass(fake):
    fake.enqueue_faults("schema", "500", "schema")
    with pytest.raises(EndpointError, match="invalid answer, http_500, invalid answer"):
        learn(fake)
    assert probe_modes(fake) == ["json_schema"] * 3


def test_vision_check_survives_one_fault_and_one_invalid_answer(fake):
    # the mode probe, then the text request (invalid once), then the image request (a 500 once)
    fake.enqueue_faults(None, "schema", None, "500", None)
    client = make_client(fake.base_url)
    assert asyncio.run(closing(client, client.check_vision("analyzer"))) == 85
    assert [q.fault for q in fake.chat_requests()] == [None, "schema", None, "500", None]


def test_vision_check_without_usage_asks_the_colour_again_after_an_invalid_answer(fake):
    # no usage anywhere: the colour decides; the image request's first answer is not valid JSON
    fake.enqueue_faults(*["no_usage"] * 2 + ["schema"] + ["no_usage"] * 20)
    client = make_client(fake.base_url)
    with pytest.raises(EndpointError, match="does not see images"):  # the fake echoes the question, never 'red'
        asyncio.run(closing(client, client.check_vision("analyzer")))
    faults = [q.fault for q in fake.chat_requests()]
    assert faults[:4] == ["no_usage", "no_usage", "schema", "no_usage"]  # the invalid answer was asked again


# --- B: failure messages that keep the answer; bodies that must not crash the client --------------------------


class Stub:
    """A tiny OpenAI-compatible server whose chat answers are scripted raw bodies (the last one repeats)."""

    def __init__(self, *bodies: bytes | str):
        self.bodies = [b.encode() if isinstance(b, str) else b for b in bodies]
        self.requests = 0

    async def __aenter__(self) -> str:
        async def chat(request: web.Request) -> web.Response:
            await request.read()
            body = self.bodies[min(self.requests, len(self.bodies) - 1)]
            self.requests += 1
            return web.Response(body=body, content_type="application/json")

        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self.runner.addresses[0][1]}/v1"

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()


def completion(content) -> str:
    return json.dumps(
        {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5},
        }
    )


def ask_stub(*bodies, log=None, **endpoint):
    """One query against a Stub serving `bodies`: (result, HTTP requests the stub got)."""

    async def go():
        stub = Stub(*bodies)
        async with stub as base_url:
            client = make_client(base_url, log, max_attempts=2, backoff_max_s=0.1, **endpoint)
            result = await closing(client, client.query("analyzer", [user_message("x")], Nouns))
        return result, stub.requests

    return asyncio.run(go())


def test_a_schema_violation_after_the_repair_keeps_the_answer_on_one_line(fake):
    client = make_client(fake.base_url)
    fake.enqueue_faults("schema", "schema")
    r = asyncio.run(closing(client, client.query("analyzer", [user_message("hopeless")], Nouns)))
    assert (r.status, r.error_code) == ("invalid", "schema_violation")
    assert r.error.startswith("schema_violation after one repair: subject: Field required; others: Field required")
    assert r.error.endswith("""answer: '{"unexpected": true}'""") and "\n" not in r.error


def test_a_long_multiline_answer_is_quoted_short_on_one_line():
    answer = "Here you go:\n" + "\n".join(f"line {i} " + "x" * 50 for i in range(100))
    r, requests = ask_stub(completion(answer))
    assert (r.status, r.error_code, requests) == ("invalid", "schema_violation", 2)
    assert "no JSON object in the answer" in r.error and "'Here you go:\\nline 0 xxx" in r.error
    assert "\n" not in r.error and len(r.error) <= client_module.MESSAGE_CHARS


def test_an_empty_repair_shows_the_first_answer_and_an_empty_one_says_so():
    r, _ = ask_stub(completion("not json at all"), completion(""))
    assert r.error_code == "schema_violation" and "the answer was empty" in r.error
    assert r.error.endswith("answer: 'not json at all'")
    r, _ = ask_stub(completion(None))
    assert r.error_code == "schema_violation" and "the answer was empty" in r.error and r.error.endswith("''")


def test_a_body_that_is_not_utf8_is_a_malformed_answer_retried_not_a_crash():
    body = completion("@@").encode().replace(b"@@", b"\xff\xfe")
    log = MemoryLog()
    r, requests = ask_stub(body, log=log)
    assert (r.status, r.error_code, r.attempts, requests) == ("error", "malformed_response", 2, 2)
    assert "not a chat completion" in r.error
    assert all(x["status"] == "malformed_response" and x["answer"] for x in log.rows.values())


def test_a_completion_of_the_wrong_shape_is_malformed_not_a_crash():
    for body in ('{"choices": ["text"]}', "[1, 2]", completion([{"type": "text", "text": "{}"}]), '"str"'):
        r, _ = ask_stub(body)
        assert (r.status, r.error_code) == ("error", "malformed_response"), body


def test_a_huge_answer_is_cut_at_the_limit_and_fails_the_unit_without_retry():
    log = MemoryLog()
    r, requests = ask_stub(completion("{" * (5 * 1024 * 1024)), log=log)
    assert (r.status, r.error_code, requests) == ("error", "answer_too_large", 1)
    assert str(client_module.MAX_ANSWER_BYTES) in r.error
    (row,) = log.rows.values()
    assert row["status"] == "answer_too_large" and len(row["answer"]) == client_module.ANSWER_CHARS


def test_json_nested_too_deep_is_a_schema_violation_not_a_crash():
    r, _ = ask_stub(completion('{"subject": ' + "[" * 100_000))
    assert r.error_code == "schema_violation" and "\n" not in r.error
