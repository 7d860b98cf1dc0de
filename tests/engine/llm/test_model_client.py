"""The model client against the local fake endpoint: typed outputs, faults, cache, request log, limits."""

import asyncio
import base64
import gc
import io
import json
import logging
import time
from contextlib import asynccontextmanager

import numpy as np
import pytest
from fake_endpoint import FakeEndpoint, image_urls, last_user_text
from PIL import Image
from pydantic import BaseModel, Field

from engine.config import load_config
from engine.llm.client import EndpointError, ModelClient, canonical_request, request_hash
from engine.llm.request_log import MemoryCache, MemoryLog, StoreCache, StoreRequestLog, request_totals
from engine.media.images import to_data_url, user_message
from engine.store import schema
from engine.store.io import StoreIO

KEY = "sk-test-DO-NOT-LEAK-1234567890"


class Nouns(BaseModel):
    subject: str
    others: list[str]
    confidence: float = Field(ge=0, le=1)


def make_client(fe, cache=None, log=None, use_cache=True, environ=None, **endpoint):
    env = {
        "ENGINE_AGENTS__ANALYZER__BASE_URL": fe.base_url,
        "ENGINE_AGENTS__ANALYZER__MODEL": "fake-model",
        "ENGINE_AGENTS__ANALYZER__BACKOFF_MAX_S": "2",
    }
    env.update({f"ENGINE_AGENTS__ANALYZER__{k.upper()}": str(v) for k, v in endpoint.items()})
    cfg = load_config(environ=env)
    return ModelClient(
        cfg,
        cache if cache is not None else MemoryCache(),
        log if log is not None else MemoryLog(),
        run_id=None,
        use_cache=use_cache,
        environ={"OPENAI_API_KEY": KEY, **(environ or {})},
    )


def run(coro):
    return asyncio.run(coro)


async def ask(client, text, images=(), schema_=Nouns):
    """One call; images (data URLs) go through the messages as they are."""
    try:
        return await client.query("analyzer", [user_message(text, list(images))], schema_)
    finally:
        await client.aclose()


@asynccontextmanager
async def store_client(fe, store, **kw):
    """A client whose cache and request log are the store's, through a StoreIO thread."""
    io = StoreIO(store)
    client = make_client(fe, StoreCache(io), StoreRequestLog(io), **kw)
    try:
        yield client
    finally:
        await client.aclose()
        await io.aclose()


def test_typed_answer_derived_from_the_request_with_schema_and_images_sent(fake):
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    url = to_data_url(frame, 320, 60)  # as the media actors encode an agent's frames (image_max_side 320)
    r = run(ask(make_client(fake), "Caption: a man on a boat", [url]))
    assert r.ok and isinstance(r.value, Nouns) and (r.value.subject, r.value.others) == ("man", ["boat"])
    assert r.attempts == 1 and r.tokens_in > 0 and r.tokens_out > 0 and r.cost_usd > 0
    (req,) = fake.chat_requests()
    rf = req.body["response_format"]
    assert rf["type"] == "json_schema" and set(rf["json_schema"]["schema"]["properties"]) == {
        "subject",
        "others",
        "confidence",
    }
    assert last_user_text(req.body) == "Caption: a man on a boat"
    (sent,) = image_urls(req.body)
    image = Image.open(io.BytesIO(base64.b64decode(sent.split(",", 1)[1])))
    assert image.format == "JPEG" and image.size == (320, 240)
    assert req.authorization == f"Bearer {KEY}"


def test_429_is_retried_after_retry_after(fake):
    fake.enqueue_faults("429")
    r = run(ask(make_client(fake), "x"))
    assert r.ok and r.attempts == 2
    first, second = fake.chat_requests()
    assert second.t_start - first.t_end >= 0.9  # Retry-After: 1


@pytest.mark.parametrize("fault", ["500", "503", "malformed", "drop"])
def test_transient_faults_are_retried_and_succeed(fake, fault):
    fake.enqueue_faults(fault)
    r = run(ask(make_client(fake), f"fault {fault}"))
    assert r.ok and r.attempts == 2 and [q.fault for q in fake.chat_requests()] == [fault, None]


def test_a_hang_past_the_timeout_is_retried(fake):
    fake.hang_s = 3
    fake.enqueue_faults("hang")
    r = run(ask(make_client(fake, timeout_s=0.5), "slow"))
    assert r.ok and r.attempts == 2


def test_retries_are_bounded_and_every_request_is_logged(fake):
    log, cache = MemoryLog(), MemoryCache()
    fake.enqueue_faults("503", "503", "503")
    r = run(ask(make_client(fake, cache, log, max_attempts=3), "always down"))
    assert (r.status, r.error_code, r.attempts) == ("error", "http_503", 3)
    assert "retries exhausted" in r.error and "fake-model" in r.error
    rows = sorted(log.rows.values(), key=lambda x: x["attempt"])
    assert [(x["attempt"], x["status"], x["http_status"]) for x in rows] == [
        (1, "http_503", 503),
        (2, "http_503", 503),
        (3, "http_503", 503),
    ]
    assert all("scripted 503" in x["answer"] and x["tokens_in"] is None for x in rows)  # raw answer kept, no tokens
    assert not cache.rows  # a failure is never cached
    r2 = run(ask(make_client(fake, cache, log), "always down"))  # asked again, and now it works
    assert r2.ok and not r2.cached and len(fake.chat_requests()) == 4 and len(log.rows) == 4
    assert (schema.NO_VIDEO, r.request_hash) in cache.rows


def test_400_is_not_retried(fake):
    fake.enqueue_faults("400")
    r = run(ask(make_client(fake), "bad"))
    assert (r.status, r.error_code, r.attempts) == ("error", "http_400", 1)


def test_401_raises_naming_endpoint_and_model_but_not_the_key(fake, caplog):
    fake.enqueue_faults("401")
    with pytest.raises(EndpointError) as e:
        run(ask(make_client(fake), "who am i"))
    assert fake.base_url in str(e.value) and "fake-model" in str(e.value) and "OPENAI_API_KEY" in str(e.value)
    assert KEY not in str(e.value)
    assert len(fake.chat_requests()) == 1


def test_schema_violation_gets_one_repair_that_shows_the_error(fake):
    fake.enqueue_faults("schema")
    r = run(ask(make_client(fake), "repair me"))
    assert r.ok and r.attempts == 2
    repair = fake.chat_requests()[1].body["messages"]
    assert repair[-2]["role"] == "assistant" and "unexpected" in repair[-2]["content"]
    assert "does not match the required JSON schema" in repair[-1]["content"] and "subject" in repair[-1]["content"]


def test_invalid_twice_is_recorded_as_invalid_and_never_cached(fake):
    cache, log = MemoryCache(), MemoryLog()
    fake.enqueue_faults("schema", "schema")
    r = run(ask(make_client(fake, cache, log), "hopeless"))
    assert (r.status, r.error_code) == ("invalid", "schema_violation")
    assert not cache.rows
    assert sorted(x["kind"] for x in log.rows.values()) == ["call", "repair"]  # the repair is a request too


def test_refusal_is_recorded_not_retried_not_cached(fake):
    cache = MemoryCache()
    fake.enqueue_faults("refusal")
    r = run(ask(make_client(fake, cache), "something bad"))
    assert (r.status, r.error_code, r.attempts) == ("refused", "refusal", 1) and "can't help" in r.error
    assert not cache.rows
    assert run(ask(make_client(fake, cache), "something bad")).ok  # asked again, not served from the cache


@pytest.mark.parametrize("status", [400, 422, 500])
def test_degrades_when_the_format_is_refused_whatever_the_status_then_remembers(fake, status):
    fake.supports_json_schema = False
    fake.unsupported_status = status
    log = MemoryLog()
    client = make_client(fake, log=log)

    async def two():
        try:
            return [
                await client.query(
                    "analyzer", [{"role": "system", "content": "You list nouns."}, user_message(t)], Nouns
                )
                for t in ("first", "second")
            ]
        finally:
            await client.aclose()

    a, b = run(two())
    assert a.ok and b.ok and a.attempts == 2 and b.attempts == 1  # the rejection is learnt once, never retried
    last = fake.chat_requests()[-1].body
    assert last["response_format"]["type"] == "json_object" and "properties" in last["response_format"]["schema"]
    # the schema instructions join the agent's own system message: one system message, the agent's first
    systems = [m for m in last["messages"] if m["role"] == "system"]
    assert (
        len(systems) == 1
        and systems[0]["content"].startswith("You list nouns.")
        and "<schema>" in systems[0]["content"]
    )
    assert sorted(x["output_mode"] for x in log.rows.values()) == [
        "json_object_schema",
        "json_object_schema",
        "json_schema",
    ]


def test_text_mode_extracts_json_from_prose():
    from engine.llm.client import ModelClient as MC

    assert (
        MC._validate('Sure! ```json\n{"subject": "man", "others": [], "confidence": 0.5}\n```', Nouns).subject == "man"
    )
    assert "no JSON object" in str(MC._validate("no json here", Nouns))


def test_text_mode_end_to_end(fake):
    r = run(ask(make_client(fake, structured_output="text"), "plain text please"))
    body = fake.chat_requests()[0].body
    assert r.ok and "response_format" not in body and "<schema>" in body["messages"][0]["content"]


def test_an_answer_without_usage_has_unknown_tokens_not_zero(fake):
    log = MemoryLog()
    fake.enqueue_faults("no_usage")
    r = run(ask(make_client(fake, log=log), "how many tokens"))
    assert r.ok and r.tokens_unknown == 1 and r.tokens_in == 0
    (row,) = log.rows.values()
    assert row["status"] == "ok" and row["tokens_in"] is None and row["tokens_out"] is None and row["cost_usd"] is None


def test_cache_answers_without_http_and_no_cache_bypasses_it(fake, sqlite_store):
    img = to_data_url(np.zeros((32, 32, 3), np.uint8))

    async def once(text, image, **kw):
        async with store_client(fake, sqlite_store, **kw) as client:  # a new client each time, the same store
            return await client.query("analyzer", [user_message(text, [image])], Nouns)

    first = run(once("cache me", img))
    again = run(once("cache me", img))
    assert first.ok and again.cached and again.value == first.value and again.attempts == 0
    assert len(fake.chat_requests()) == 1
    other = to_data_url(np.full((32, 32, 3), 255, np.uint8))
    assert not run(once("cache me", other)).cached
    fresh = run(once("cache me", img, use_cache=False))
    assert not fresh.cached and len(fake.chat_requests()) == 3
    with sqlite_store.session() as s:
        rows = s.query(schema.ModelCall).all()
        requests = s.query(schema.Request).count()
    assert len(rows) == 2 and all(r.status == "ok" for r in rows) and requests == 3
    assert all(json.dumps(r.response).find("base64") == -1 for r in rows)  # images are not stored in responses


def test_answers_are_kept_per_video_and_shared_within_a_run(fake, sqlite_store):
    """schema.ModelCall: a video's answers are its own (a run preloads them and looks nothing up per call); an
    identical call from another video in the same run is answered from memory, in flight or after, and stored
    under that video too."""
    a, b, c, d = ("a" * 32, "b" * 32, "c" * 32, "d" * 32)
    msgs = [user_message("the same question")]

    def stored() -> set[tuple[str, str]]:
        with sqlite_store.session() as s:
            return {(r.video_id, r.request_hash) for r in s.query(schema.ModelCall)}

    async def first_run():
        async with store_client(fake, sqlite_store) as client:
            fake.latency_s = 0.2
            one, two = await asyncio.gather(  # in flight at once: one request
                client.query("analyzer", msgs, Nouns, scope=a), client.query("analyzer", msgs, Nouns, scope=b)
            )
            fake.latency_s = 0.0
            three = await client.query("analyzer", msgs, Nouns, scope=c)  # later: from the run's memory
            return one, two, three

    one, two, three = run(first_run())
    assert one.ok and two.ok and three.cached and len(fake.chat_requests()) == 1
    h = one.request_hash
    assert stored() == {(a, h), (b, h), (c, h)}

    async def second_run():
        async with store_client(fake, sqlite_store) as client:
            from_a = await client.query("analyzer", msgs, Nouns, scope=a)  # not preloaded: looked up, found
            from_d = await client.query("analyzer", msgs, Nouns, scope=d)  # another video's answer is not its own
            return from_a, from_d

    async def third_run():
        async with store_client(fake, sqlite_store) as client:
            client.cache.preload(b, {})  # b's answers as a run loads them, here none: no lookup, so asked again
            from_b = await client.query("analyzer", msgs, Nouns, scope=b)
            client.forget(h, c)  # c could not use it
            return from_b

    from_a, from_d = run(second_run())
    assert from_a.cached and not from_d.cached and len(fake.chat_requests()) == 2
    assert not run(third_run()).cached and len(fake.chat_requests()) == 3
    assert stored() == {(a, h), (b, h), (d, h)}  # c's answer forgotten, a's and b's kept


def test_identical_calls_in_flight_share_one_request(fake):
    fake.latency_s = 0.2
    client = make_client(fake)

    async def same():
        try:
            return await asyncio.gather(*(client.query("analyzer", [user_message("same")], Nouns) for _ in range(5)))
        finally:
            await client.aclose()

    results = run(same())
    assert all(r.ok for r in results) and len(fake.chat_requests()) == 1


def test_images_go_as_placeholders_filled_only_on_the_wire(fake):
    from engine.media.images import url_digest

    img = to_data_url(np.full((16, 16, 3), 90, np.uint8))
    placeholder = url_digest(img)
    client = make_client(fake)

    async def go():
        try:
            return await client.query(
                "analyzer", [user_message("a frame", [placeholder])], Nouns, images={placeholder: img}
            )
        finally:
            await client.aclose()

    r = run(go())
    assert r.ok and image_urls(fake.chat_requests()[0].body) == [img]
    assert r.request_hash == client.request_key("analyzer", [user_message("a frame", [img])], Nouns)


def test_request_hash_replaces_images_by_their_hash():
    img = to_data_url(np.zeros((8, 8, 3), np.uint8))
    c = canonical_request("m", [user_message("t", [img])], {"temperature": 0}, Nouns)
    assert "base64" not in json.dumps(c) and c["messages"][0]["content"][1]["image_url"].startswith("sha256:")
    assert request_hash(c) != request_hash(
        canonical_request("m", [user_message("t", [img])], {"temperature": 1}, Nouns)
    )
    # the client's fast key (the schema serialised once) is the same hash as the whole canonical request's
    client = ModelClient(load_config(environ={"ENGINE_AGENTS__ANALYZER__MODEL": "m"}), environ={"OPENAI_API_KEY": "k"})
    messages = [{"role": "system", "content": "Sé breve."}, user_message("t", [img])]
    ep = client.cfg.agents.analyzer
    expected = request_hash(
        canonical_request("m", messages, {"temperature": ep.temperature, "max_tokens": ep.max_tokens}, Nouns)
    )
    assert client.request_key("analyzer", messages, Nouns) == expected


def test_concurrency_limit_holds(fake):
    fake.latency_s = 0.15
    client = make_client(fake, max_concurrent=3)

    async def many():
        try:
            return await asyncio.gather(*(client.query("analyzer", [user_message(f"q{i}")], Nouns) for i in range(12)))
        finally:
            await client.aclose()

    results = run(many())
    assert all(r.ok for r in results) and fake.peak_in_flight == 3


def test_requests_per_minute_hold_from_the_servers_timestamps(fake):
    client = make_client(fake, rpm=600, max_concurrent=16)  # one request every 0.1 s

    async def many():
        try:
            return await asyncio.gather(*(client.query("analyzer", [user_message(f"r{i}")], Nouns) for i in range(10)))
        finally:
            await client.aclose()

    gc.collect()  # a full collection in the middle (0.1-0.2 s on a busy machine) would release queued slots at once
    run(many())
    starts = sorted(r.t_start for r in fake.chat_requests())
    gaps = np.diff(starts)
    assert gaps.min() >= 0.08 and starts[-1] - starts[0] >= 0.85


def test_tokens_per_minute_hold(fake):
    # each request is estimated at about max_tokens + prompt/4 tokens; 6000 tpm = 100 tokens/s
    client = make_client(fake, tpm=6000, max_tokens=40, max_concurrent=16)

    async def many():
        try:
            return await asyncio.gather(*(client.query("analyzer", [user_message(f"t{i}")], Nouns) for i in range(6)))
        finally:
            await client.aclose()

    results = run(many())
    starts = sorted(r.t_start for r in fake.chat_requests())
    used = sum(r.tokens_in + r.tokens_out for r in results[:-1])
    # the tokens of all but the last request were spent before the last could start
    assert starts[-1] - starts[0] >= 0.8 * used / 100


def test_cost_totals_add_up(fake, sqlite_store):
    async def some():
        async with store_client(fake, sqlite_store, price_in_per_mtok=2.0, price_out_per_mtok=8.0) as client:
            return [await client.query("analyzer", [user_message(f"c{i}")], Nouns, role="analyzer") for i in range(5)]

    results = run(some())
    for r in results:
        assert r.cost_usd == pytest.approx((r.tokens_in * 2.0 + r.tokens_out * 8.0) / 1e6)
    (stored,) = request_totals(sqlite_store)
    assert (stored.role, stored.requests, stored.ok, stored.failed) == ("analyzer", 5, 5, 0)
    assert stored.tokens_in == sum(r.tokens_in for r in results)
    assert stored.cost_usd == pytest.approx(sum(r.cost_usd for r in results))
    served = sum(q.usage["prompt_tokens"] for q in fake.chat_requests())
    assert stored.tokens_in == served  # what the endpoint itself reported


def test_no_api_key_in_logs_or_rows(fake, sqlite_store, caplog):
    caplog.set_level(logging.DEBUG)
    fake.enqueue_faults("500", "schema", "400")

    async def some():
        async with store_client(fake, sqlite_store) as client:
            for t in ("a", "b"):
                await client.query("analyzer", [user_message(t)], Nouns)

    run(some())
    assert caplog.records  # debug logs were captured...
    assert KEY not in caplog.text  # ...and hold no key
    with sqlite_store.session() as s:
        dumped = json.dumps(
            [
                {c.name: str(getattr(r, c.name)) for c in table.__table__.columns}
                for table in (schema.ModelCall, schema.Request)
                for r in s.query(table)
            ]
        )
    assert KEY not in dumped and "http_400" in dumped


def test_missing_key_is_reported_before_any_call(fake):
    client = make_client(fake, environ={"OPENAI_API_KEY": ""})
    with pytest.raises(EndpointError, match=r"OPENAI_API_KEY \(agents.analyzer.api_key_env\) is not set"):
        client.check(["analyzer"])
    assert not fake.received
    keyless = make_client(fake, api_key_env="", environ={"OPENAI_API_KEY": ""})
    assert run(ask(keyless, "local server")).ok


def test_fake_endpoint_lists_models_and_answers_nested_schemas(fake):
    import openai

    class Box(BaseModel):
        label: str
        score: float = Field(ge=0, le=1)

    class Scene(BaseModel):
        boxes: list[Box]
        kind: str | None
        mode: bool

    async def go():
        oc = openai.AsyncOpenAI(base_url=fake.base_url, api_key="x", max_retries=0)
        try:
            models = await oc.models.list()
            parsed = await oc.chat.completions.parse(
                model="fake-model", response_format=Scene, messages=[{"role": "user", "content": "two cars"}]
            )
            return [m.id for m in models.data], parsed.choices[0].message.parsed
        finally:
            await oc.close()

    ids, scene = run(go())
    assert ids == ["fake-model"]
    assert isinstance(scene, Scene) and scene.boxes and "two cars" in scene.boxes[0].label


# --- what preflight learns, and what a run refuses --------------------------------------------------------


def test_preflight_learns_llama_cpps_mode_and_proves_nothing_about_images(tmp_path):
    """Against the measured behaviour of llama-cpp-python's server: json_schema refused (500), json_object with a
    schema taken; image parts refused with a 500 (its GGUF template) or silently dropped (its chatml format)."""
    for chat_format, why in (("gguf", "does not accept images"), ("chatml", "does not see images")):
        with FakeEndpoint.llama_cpp(chat_format) as server:
            client = make_client(server)

            async def probe(client=client, why=why):
                try:
                    mode = await client.learn_mode("analyzer")
                    with pytest.raises(EndpointError, match=why) as e:
                        await client.check_vision("analyzer")
                    return mode, str(e.value)
                finally:
                    await client.aclose()

            mode, message = run(probe())
            assert mode == "json_object_schema"
            assert server.base_url in message and "fake-model" in message and "agent analyzer" in message
            assert all(q.kind == "probe" for q in server.chat_requests())


def test_a_vision_model_is_proven_and_images_dropped_later_fail_the_call(fake):
    log = MemoryLog()
    client = make_client(fake, log=log)
    img = to_data_url(np.full((32, 32, 3), 200, np.uint8))

    async def go():
        try:
            per_image = await client.check_vision("analyzer")
            fake.sees_images = False  # the server starts dropping images (a model swapped behind the endpoint)
            r = await client.query("analyzer", [user_message("a frame", [img] * 4)], Nouns)
            return per_image, r
        finally:
            await client.aclose()

    per_image, r = run(go())
    assert per_image == 85
    assert (r.status, r.error_code) == ("error", "images_ignored") and "4 images" in r.error
    assert sum(1 for x in log.rows.values() if x["kind"] == "probe") == 3  # mode, then text and image


def test_the_breaker_stops_sending_to_a_dead_server_and_gives_up_naming_it():
    with FakeEndpoint() as server:
        url = server.base_url
        client = make_client(server, breaker_failures=3, breaker_down_s=1.5, backoff_max_s=0.2, max_attempts=6)
    # the server is gone: connections are refused
    log = MemoryLog()
    client.log = log

    async def many():
        try:
            return await asyncio.gather(
                *(client.query("analyzer", [user_message(f"q{i}")], Nouns) for i in range(5)), return_exceptions=True
            )
        finally:
            await client.aclose()

    t0 = time.monotonic()
    results = run(many())
    took = time.monotonic() - t0
    assert all(
        isinstance(r, EndpointError) and url in str(r) and "has not answered for 2 s" in str(r) for r in results
    ), results
    assert took < 10
    # once open, the breaker held the requests: far fewer than 5 calls x 6 attempts were sent
    assert len(log.rows) < 5 * 6


def test_the_breaker_closes_when_the_server_answers_again():
    with FakeEndpoint() as first:
        port = first.port
        client = make_client(first, breaker_failures=2, breaker_down_s=30, backoff_max_s=0.2, max_attempts=8)

    async def go():
        try:
            call = asyncio.ensure_future(client.query("analyzer", [user_message("wait for me")], Nouns))
            await asyncio.sleep(1.5)  # refused twice or more: the breaker is open, probing
            with FakeEndpoint(port=port) as again:
                result = await call
                return result, len(again.work_requests())
        finally:
            await client.aclose()

    result, served = run(go())
    assert result.ok and served == 1


# --- token log-probabilities (engine/llm/logprobs.py reads them; agents/reviewer.py's judges ask) ----------------


def test_logprobs_are_asked_with_their_own_cache_key_and_kept_with_the_cached_answer(fake, sqlite_store):
    async def once(logprobs: bool):
        async with store_client(fake, sqlite_store) as client:  # a new client each time, the same store
            return await client.query("analyzer", [user_message("a dog", [])], Nouns, logprobs=logprobs)

    plain, asked = run(once(False)), run(once(True))
    assert plain.logprobs is None and not asked.cached
    assert asked.request_hash != plain.request_hash  # another request: stored answers without are not mistaken
    sent = [r.body for r in fake.chat_requests()]
    assert "logprobs" not in sent[0] and (sent[1]["logprobs"], sent[1]["top_logprobs"]) == (True, 20)
    assert asked.logprobs and "".join(t["token"] for t in asked.logprobs) == json.dumps(asked.value.model_dump())
    again = run(once(True))
    assert again.cached and again.logprobs == asked.logprobs and len(fake.chat_requests()) == 2


@pytest.mark.parametrize("server", ["returns them", "ignores them", "refuses them"])
def test_preflight_learns_whether_a_server_returns_logprobs_and_later_calls_follow(server):
    kw = {"ignores them": {"logprobs": False}, "refuses them": {"logprobs_refused": 400}}.get(server, {})
    with FakeEndpoint(**kw) as fe:
        client = make_client(fe)

        async def go():
            try:
                given = await client.check_logprobs("analyzer")
                result = await client.query("analyzer", [user_message("a cat", [])], Nouns, logprobs=True)
                return given, result
            finally:
                await client.aclose()

        given, result = run(go())
        assert given is (server == "returns them")
        assert result.ok and (result.logprobs is not None) is given
        last = fe.work_requests()[-1].body
        assert ("logprobs" in last) is given  # not asked again of a server found without them
        assert client.probed()["logprobs"] == {(fe.base_url, "fake-model"): given}
