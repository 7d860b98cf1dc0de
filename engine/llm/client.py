"""One client for every language and vision-language agent: any OpenAI-compatible chat endpoint.

`await client.query(endpoint_key, messages, Schema, role=..., images=...)` returns a CallResult whose
`value` is a validated `Schema` instance. Around that one call the client does, so agents never do:
- the cache: a call is keyed by the hash of its canonical request (model, messages with images
  replaced by their hashes, parameters, schema); a stored success answers without any HTTP request,
  and identical calls in flight at once share one request;
- typed output: JSON-schema structured outputs, degrading (json_schema, then llama.cpp's
  json_object with a schema, then JSON mode, then plain text) for servers that refuse a format;
  in JSON and text modes the schema instructions join the agent's own system message (servers with
  one-system-message templates drop any other); an invalid answer gets one repair request;
- retries on 408/409/429, 5xx, timeouts, dropped connections and unparseable bodies: exponential backoff
  with jitter, `Retry-After` honoured, bounded attempts (engine/llm/backoff.py);
- limits per endpoint (concurrent requests, requests and tokens per minute);
- the request log: one row per HTTP request, durable before the request leaves.

Transport: plain aiohttp rather than the openai package's client. Measured here against the local
test endpoint, openai 3.57 spends 2.3 ms of CPU per request (1.0 ms with its aiohttp transport and its
low-level `post`); aiohttp alone 0.4 ms. The engine sends about five requests per object from the
driver, whose budget is 5 ms per object. The strict JSON schema that json_schema mode sends is ours too
(engine/llm/strict_schema.py): the openai package is not needed at run time.

Per-item outcomes (refused, invalid output, retries exhausted, a 400) come back as a CallResult with a
status and an error code. Misconfiguration that would fail every call (401, 403, 404, a missing API
key) raises EndpointError, naming the agent, endpoint and model, never the key.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, Literal, TypeVar

import aiohttp
import orjson
import pydantic

from engine.config import Config, EndpointConfig
from engine.llm import backoff
from engine.llm.breaker import Breaker, EndpointDown
from engine.llm.limits import EndpointLimiter
from engine.llm.request_log import Cache, Meter, RequestLog, request_columns
from engine.llm.strict_schema import strict_json_schema
from engine.media.images import to_data_url, url_digest
from engine.store.faults import one_line
from engine.store.schema import utcnow

log = logging.getLogger(__name__)

T = TypeVar("T", bound=pydantic.BaseModel)
Status = Literal["ok", "refused", "invalid", "error"]
MODES = ("json_schema", "json_object_schema", "json_object", "text")
FATAL_STATUS = {401: "unauthorized", 403: "forbidden", 404: "not_found"}
NO_KEY = "no-key"  # what is sent when api_key_env = "" (local servers that check nothing)
ANSWER_CHARS = 2000  # of a failed request's raw answer kept in the request log
KIND_HEADER = "X-Engine-Request-Kind"  # call | repair | probe: servers ignore it; test endpoints count by it
# Bytes of an answer read at most: a chat completion is kilobytes (max_tokens bounds it); a server that streams more is
# broken, and parsing or scanning megabytes of it for JSON would stall the event loop every agent shares.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
# Tries of one preflight probe in one output mode: one invalid answer or one transient fault must not decide
# which mode a whole run uses (or stop it).
PROBE_TRIES = 3
SNIPPET_CHARS = 500  # of an invalid answer quoted in its unit's failure message
MESSAGE_CHARS = 800  # a failure message's length at most (`engine status` shows it on one line)
# Alternatives asked for at each answer token when a caller wants log-probabilities: OpenAI's most. llama.cpp's server
# reports probabilities before its grammar: at the decision token of a JSON answer, tokens that are no answer ("[",
# '{"') come first, and with 5 alternatives "false" was missing, with 10 it was 9th (tests/realserver).
TOP_LOGPROBS = 20
# Words in an error body that mean "this response_format is not supported", whatever the status code.
FORMAT_WORDS = ("response_format", "json_schema", "json_object", "grammar", "guided")


class EndpointError(RuntimeError):
    """A setting or endpoint that makes every call fail; the run should stop."""


@dataclass
class CallResult(Generic[T]):
    role: str
    model: str
    request_hash: str
    status: Status
    value: T | None = None
    error_code: str | None = None
    error: str | None = None
    cached: bool = False
    attempts: int = 0  # HTTP requests made (0 when answered from the cache)
    tokens_in: int = 0  # over the requests whose usage was reported
    tokens_out: int = 0
    tokens_unknown: int = 0  # requests without usage
    cost_usd: float = 0.0
    latency_s: float = 0.0
    mode: str = ""
    logprobs: list[dict[str, Any]] | None = None  # the answer tokens with their top alternatives (asked and given)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@cache
def _schema_json(schema: type[pydantic.BaseModel]) -> dict[str, Any]:
    return schema.model_json_schema()


@cache
def _strict_schema(schema: type[pydantic.BaseModel]) -> dict[str, Any]:
    return strict_json_schema(schema)


def canonical_request(
    model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any], schema: type[pydantic.BaseModel]
) -> dict[str, Any]:
    """The request as the cache sees it: images replaced by their hashes, keys in a fixed order."""

    def digest(url: str) -> str:
        return url if url.startswith("sha256:") else url_digest(url)  # a placeholder already is the digest

    def strip(content: Any) -> Any:
        if isinstance(content, list):
            return [
                {"type": "image_url", "image_url": digest(p["image_url"]["url"])}
                if p.get("type") == "image_url"
                else p
                for p in content
            ]
        return content

    return {
        "model": model,
        "messages": [{**m, "content": strip(m.get("content"))} for m in messages],
        "params": dict(params),
        "schema": {"name": schema.__name__, "json": _schema_json(schema)},
    }


def request_hash(canonical: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical_json(canonical).encode()).hexdigest()


def _canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


@cache
def _schema_part(schema: type[pydantic.BaseModel]) -> str:
    return _canonical_json({"name": schema.__name__, "json": _schema_json(schema)})


def _request_hash(model: str, messages: list, params: Mapping[str, Any], schema: type[pydantic.BaseModel]) -> str:
    """request_hash(canonical_request(...)), with the schema's part serialised once per schema: the same bytes
    (keys in sorted order: messages, model, params, schema)."""
    c = canonical_request(model, messages, params, schema)
    text = (
        f'{{"messages":{_canonical_json(c["messages"])},"model":{_canonical_json(model)},'
        f'"params":{_canonical_json(c["params"])},"schema":{_schema_part(schema)}}}'
    )
    return hashlib.sha256(text.encode()).hexdigest()


# --- transport errors -------------------------------------------------------------------------------


class _HTTPError(Exception):
    def __init__(self, status: int, headers: Mapping[str, str], body: str):
        super().__init__(f"HTTP {status}")
        self.status, self.headers, self.body = status, headers, body


class _MalformedResponse(Exception):
    """A 2xx answer whose body is not a chat completion: treated like a transient server fault."""


class _AnswerTooLarge(Exception):
    """A 2xx answer longer than MAX_ANSWER_BYTES: not retried (it would come back as long), the unit fails."""


class _ImagesIgnored(Exception):
    """An answer whose prompt tokens cannot include the images the request carried."""


def _unsupported_format(e: BaseException) -> bool:
    """A refusal of the response format, told by the error's body, whatever its status (400, 422, 500...)."""
    if not isinstance(e, _HTTPError) or e.status < 400 or e.status in FATAL_STATUS or e.status == 429:
        return False
    body = e.body.lower()
    return any(w in body for w in FORMAT_WORDS)


def _transient(e: BaseException) -> bool:
    if isinstance(e, (asyncio.TimeoutError, aiohttp.ClientError, _MalformedResponse)):
        return True
    if isinstance(e, _HTTPError):
        return (e.status in (408, 409, 429) or e.status >= 500) and not _unsupported_format(e)
    return False


def _error_code(e: BaseException) -> str:
    if isinstance(e, _HTTPError):
        return f"http_{e.status}"
    if isinstance(e, asyncio.TimeoutError):
        return "timeout"
    if isinstance(e, _MalformedResponse):
        return "malformed_response"
    if isinstance(e, _AnswerTooLarge):
        return "answer_too_large"
    return "connection"


def _schema_instructions(schema: type[pydantic.BaseModel]) -> str:
    return (
        "Answer with one JSON object, and nothing else, that matches this JSON schema:\n"
        f"<schema>{json.dumps(_schema_json(schema))}</schema>"
    )


def _with_instructions(messages: list[dict], schema: type[pydantic.BaseModel]) -> list[dict]:
    """The schema instructions appended to the agent's own (first) system message, never a second one."""
    text = _schema_instructions(schema)
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def _extract_json(text: str) -> Any:
    """The first JSON object in text (models in text mode often wrap it in prose or code fences)."""
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch == "{":
            try:
                return decoder.raw_decode(text, i)[0]
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON object in the answer")


def _fill_images(messages: Sequence[Mapping[str, Any]], images: Mapping[str, str]) -> list[dict]:
    """Replace 'sha256:' image placeholders with their data URLs."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = [
                {"type": "image_url", "image_url": {"url": images[p["image_url"]["url"]]}}
                if p.get("type") == "image_url" and p["image_url"]["url"].startswith("sha256:")
                else p
                for p in content
            ]
        out.append({**m, "content": content})
    return out


@dataclass
class _Endpoint:
    key: str  # the [agents.<key>] table
    cfg: EndpointConfig
    base_url: str
    headers: dict[str, str]
    limiter: EndpointLimiter
    breaker: Breaker

    @property
    def mode_key(self) -> tuple[str, str]:
        return self.base_url, self.cfg.model

    @property
    def where(self) -> str:
        return f"agent {self.key}: {self.base_url} (model {self.cfg.model})"


class _Probe(pydantic.BaseModel):
    answer: str


class _Outcome(Exception):
    def __init__(self, status: Status, code: str, message: str, cause: BaseException | None = None):
        self.status, self.code, self.message, self.cause = status, code, message, cause

    @property
    def transient(self) -> bool:
        """Failed without an answer that says anything about the request: trying again may succeed."""
        return self.cause is not None and _transient(self.cause)


class _Unsupported(Exception):
    pass


class ModelClient:
    """Model access for all agents of one process. Create it inside the event loop that uses it."""

    def __init__(
        self,
        cfg: Config,
        cache: Cache | None = None,
        log: RequestLog | None = None,
        run_id: str | None = None,
        use_cache: bool = True,
        environ: Mapping[str, str] | None = None,
        meter: Meter | None = None,
    ):
        self.cfg = cfg
        self.cache = cache
        self.log = log
        self.meter = meter
        self.run_id = run_id
        self.use_cache = use_cache
        self.environ = os.environ if environ is None else environ
        self._endpoints: dict[str, _Endpoint] = {}
        self._limiters: dict[tuple[str, str], EndpointLimiter] = {}
        self._modes: dict[tuple[str, str], str] = {}
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._breakers: dict[str, Breaker] = {}
        self._image_tokens: dict[tuple[str, str], int] = {}  # per server and model: prompt tokens of the probe image
        self._logprobs: dict[tuple[str, str], bool] = {}  # per server and model: whether it returns log-probabilities
        self._inflight: dict[str, asyncio.Future] = {}
        self._id_prefix, self._ids = uuid.uuid4().hex[:16], itertools.count()  # request log ids, unique per client
        self.cache_hits: Counter[str] = Counter()  # per role: calls answered from the cache (no request)

    # --- endpoints ---------------------------------------------------------------------------------
    def _base_url(self, ep: EndpointConfig) -> str:
        return ep.url(self.environ)

    def endpoint(self, key: str) -> _Endpoint:
        if key in self._endpoints:
            return self._endpoints[key]
        try:
            ep: EndpointConfig = self.cfg.endpoint(key)
        except KeyError:
            raise EndpointError(f"unknown agent {key!r}; endpoints: {', '.join(self.cfg.endpoint_keys())}") from None
        base_url = self._base_url(ep)
        table = self.cfg.endpoint_table(key)
        if ep.api_key_env:
            secret = self.environ.get(ep.api_key_env)
            if not secret:
                raise EndpointError(
                    f"agent {key}: the environment variable {ep.api_key_env} ({table}.api_key_env) is not "
                    f'set. Export the API key under that name, or set {table}.api_key_env = "" for a '
                    "server that needs no key."
                )
        else:
            secret = NO_KEY
        lim_key = (base_url, ep.model)
        if lim_key not in self._limiters:
            # Agents on the same base URL and model share one limiter, with the strictest of their limits.
            peers = [
                p
                for p in (self.cfg.endpoint(k) for k in self.cfg.endpoint_keys())
                if (self._base_url(p), p.model) == lim_key
            ]
            strictest = lambda vals: min([v for v in vals if v], default=0)  # noqa: E731 (0 = unlimited)
            self._limiters[lim_key] = EndpointLimiter(
                min(p.max_concurrent for p in peers), strictest(p.rpm for p in peers), strictest(p.tpm for p in peers)
            )
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        if base_url not in self._breakers:  # one per server: when it is down, it is down for every agent
            self._breakers[base_url] = Breaker(
                f"{base_url}",
                ep.breaker_failures,
                ep.breaker_down_s,
                lambda: self._answers(base_url, headers, min(10.0, ep.timeout_s)),
            )
        self._endpoints[key] = _Endpoint(key, ep, base_url, headers, self._limiters[lim_key], self._breakers[base_url])
        return self._endpoints[key]

    def _session(self, ep: _Endpoint) -> aiohttp.ClientSession:
        return self._session_for(ep.base_url)

    def _session_for(self, base_url: str) -> aiohttp.ClientSession:
        if base_url not in self._sessions:
            # One connection pool per server; the limiter, not the pool, bounds requests in flight. The trace
            # tells a request that left from one stopped before it did (the request log keeps only the former).
            trace = aiohttp.TraceConfig()
            trace.on_request_headers_sent.append(_mark_sent)
            self._sessions[base_url] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), trace_configs=[trace]
            )
        return self._sessions[base_url]

    @staticmethod
    def _params(ep: EndpointConfig, logprobs: bool = False) -> dict[str, Any]:
        """The sampling parameters of a request; asking for log-probabilities makes another request (and cache key)."""
        params: dict[str, Any] = {"temperature": ep.temperature, "max_tokens": ep.max_tokens}
        if logprobs:
            params.update(logprobs=True, top_logprobs=TOP_LOGPROBS)
        return params

    def _asks_logprobs(self, key: str, wanted: bool) -> bool:
        """Whether a call that wants log-probabilities asks for them: not of a server preflight found without them."""
        if not wanted:
            return False
        ep = self.cfg.endpoint(key)
        return self._logprobs.get((self._base_url(ep), ep.model), True)

    def request_key(
        self, key: str, messages: Sequence[Mapping[str, Any]], response_format: type, logprobs: bool = False
    ) -> str:
        """The cache key of a call, computable without sending it (images may be 'sha256:' placeholders)."""
        ep = self.cfg.endpoint(key)
        return _request_hash(
            ep.model, list(messages), self._params(ep, self._asks_logprobs(key, logprobs)), response_format
        )

    def check(self, keys: Sequence[str] | None = None) -> None:
        """Raise EndpointError now if any endpoint's settings are missing (before spending)."""
        for key in keys if keys is not None else self.cfg.endpoint_keys():
            self.endpoint(key)

    async def _answers(self, base_url: str, headers: dict[str, str], timeout: float) -> bool:
        """Whether the server answers at all (any HTTP status): the breaker's probe."""
        try:
            async with self._session_for(base_url).get(
                f"{base_url}/models", headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
            ):
                return True
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def ping(self, key: str) -> None:
        """Raise EndpointError unless the agent's endpoint answers (any HTTP answer but 401/403 counts)."""
        ep = self.endpoint(key)
        try:
            async with self._session(ep).get(
                f"{ep.base_url}/models",
                headers=ep.headers,
                timeout=aiohttp.ClientTimeout(total=min(10.0, ep.cfg.timeout_s)),
            ) as r:
                status = r.status
        except (TimeoutError, aiohttp.ClientError) as e:
            raise EndpointError(
                f"{ep.where} cannot be reached: {type(e).__name__}. Check {self.cfg.endpoint_table(key)}.base_url "
                "or OPENAI_BASE_URL."
            ) from None
        if status in (401, 403):
            raise EndpointError(f"{ep.where} refused the key in ${ep.cfg.api_key_env}: HTTP {status}")

    async def aclose(self) -> None:
        """Close the connections (calls run in their callers' tasks, which an abort cancels)."""
        for breaker in self._breakers.values():
            await breaker.aclose()
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    # --- preflight probes ---------------------------------------------------------------------------
    async def _probe(
        self, ep: _Endpoint, key: str, messages: list, mode: str, logprobs: bool = False
    ) -> tuple[str | None, bool, CallResult]:
        """One preflight request in one output mode, tried up to PROBE_TRIES times while it fails without an answer
        (timeout, dropped connection, a 5xx that does not refuse the format) or answers what does not match its
        schema. Each try is one HTTP request (no retries inside _send), so PROBE_TRIES is what the server gets.
        Returns (the last answer, whether it is valid, the last try's counts); raises _Unsupported when the server
        refuses the mode, _Outcome when a try fails for good or the tries end in a failure without an answer."""
        rhash = self.request_key(key, messages, _Probe, logprobs)
        params = self._params(ep.cfg, logprobs)
        failures: list[str] = []
        for n in range(1, PROBE_TRIES + 1):
            result: CallResult[_Probe] = CallResult("probe", ep.cfg.model, rhash, "error")
            try:
                content, _, result.logprobs = await self._send(
                    ep, "probe", rhash, "probe", messages, _Probe, mode, result, tries=1, tried=n - 1, params=params
                )
            except EndpointDown as down:
                raise EndpointError(str(down)) from None
            except _Outcome as o:
                if not o.transient:
                    raise
                failures.append(o.code)
                last, delay = o, backoff.delay(n, o.cause, ep.cfg.backoff_max_s)
            else:
                if isinstance(self._validate(content, _Probe), pydantic.BaseModel):
                    return content, True, result
                failures.append("invalid answer")
                delay = 0.0
            if n < PROBE_TRIES:
                log.warning(
                    "%s: try %d of %d of the %s probe: %s; trying again", ep.where, n, PROBE_TRIES, mode, failures[-1]
                )
                await asyncio.sleep(delay)
        if failures.count("invalid answer") == PROBE_TRIES:  # invalid every time: the server's answer in this mode
            return content, False, result
        # A fault that persisted, or faults between invalid answers: neither tells that the mode does not work.
        raise _Outcome("error", last.code, f"{last.message}; {PROBE_TRIES} tries: {', '.join(failures)}", last.cause)

    async def learn_mode(self, key: str) -> str:
        """Which output mode this agent's server and model take, learnt with a tiny structured request (the
        first of json_schema, llama.cpp's json_object with a schema, json_object and text that the server
        accepts and answers with valid JSON); remembered for every later call to that server and model. A mode is
        given up only when the server refuses it or answers PROBE_TRIES probes in a row with invalid JSON."""
        ep = self.endpoint(key)
        if ep.mode_key in self._modes:
            return self._modes[ep.mode_key]
        modes = MODES if ep.cfg.structured_output == "auto" else (ep.cfg.structured_output,)
        messages = [
            {"role": "system", "content": "You answer in JSON."},
            {"role": "user", "content": 'Reply with the JSON object {"answer": "ok"}.'},
        ]
        accepted = None
        for mode in modes:
            try:
                _, valid, _ = await self._probe(ep, key, messages, mode)
            except _Unsupported:
                log.warning("%s refuses response_format %s", ep.where, mode)
                continue
            except _Outcome as o:
                raise EndpointError(f"{ep.where}: the probe of output mode {mode} failed: {o.message}") from None
            accepted = accepted or mode
            if valid:
                accepted = mode
                break
            log.warning("%s answered %d probes in %s mode with invalid JSON", ep.where, PROBE_TRIES, mode)
        if accepted is None:
            raise EndpointError(
                f"{ep.where} refuses every output mode ({', '.join(modes)}); set "
                f"{self.cfg.endpoint_table(key)}.structured_output to one it takes"
            )
        self._modes[ep.mode_key] = accepted
        return accepted

    async def check_vision(self, key: str) -> int | None:
        """Prove that this agent's model sees images: the same tiny request with and without a 64x64 image must
        differ in prompt tokens (where the server reports usage), else a question about the image's colour
        must be answered right. Each request is a probe (_probe: a transient fault or an invalid answer is tried
        again). Raises EndpointError naming the agent, endpoint and model; returns the prompt tokens the image
        took (None when the server reports no usage)."""
        import numpy as np

        ep = self.endpoint(key)
        mode = await self.learn_mode(key)
        red = np.zeros((64, 64, 3), np.uint8)
        red[..., 0] = 220
        image = to_data_url(red, 64, 90)
        question = "What single colour fills this image? Answer with the colour name only."
        seen: dict[str, tuple[int | None, str]] = {}
        for _ in range(3):  # an answer without usage (a flaky proxy) is asked again before the colour is trusted
            for name, content in (
                ("text", question),
                ("image", [{"type": "text", "text": question}, {"type": "image_url", "image_url": {"url": image}}]),
            ):
                messages = [{"role": "user", "content": content}]
                try:
                    answer, _, result = await self._probe(ep, key, messages, mode)
                except (_Outcome, _Unsupported) as o:
                    if name == "text":
                        raise EndpointError(
                            f"{ep.where}: the probe request failed: {getattr(o, 'message', o)}"
                        ) from None
                    raise EndpointError(
                        f"{ep.where} does not accept images: a request with one image part failed "
                        f"({getattr(o, 'message', 'format refused')}). Agent {key} needs a "
                        "vision-language model and a server that takes image parts."
                    ) from None
                seen[name] = (None if result.tokens_unknown else result.tokens_in, answer or "")
            if seen["text"][0] is not None and seen["image"][0] is not None:
                break
        (t_text, _), (t_image, answer) = seen["text"], seen["image"]
        if t_text is not None and t_image is not None:
            if t_image <= t_text:
                raise EndpointError(
                    f"{ep.where} does not see images: a request with a 64x64 image counted {t_image} prompt "
                    f"tokens, the same request without it {t_text}. Agent {key} needs a vision-language model."
                )
            self._image_tokens[ep.mode_key] = t_image - t_text
            return t_image - t_text
        if "red" not in answer.lower():
            raise EndpointError(
                f"{ep.where} reports no token usage, and asked the colour of a red image it "
                f"answered {answer[:80]!r}: it does not see images. Agent {key} needs a "
                "vision-language model."
            )
        return None

    async def check_logprobs(self, key: str) -> bool:
        """Whether this endpoint's server returns token log-probabilities with a chat completion in its output mode:
        a probe that asks for them, answered with them. A server that refuses the parameters (a 4xx) or answers
        without them is remembered, and later calls of this client do not ask it (they use the verbalised score)."""
        ep = self.endpoint(key)
        mode = await self.learn_mode(key)
        messages = [
            {"role": "system", "content": "You answer in JSON."},
            {"role": "user", "content": 'Reply with the JSON object {"answer": "yes"}.'},
        ]
        try:
            _, _, result = await self._probe(ep, key, messages, mode, logprobs=True)
            given = bool(result.logprobs)
        except (_Outcome, _Unsupported) as o:
            if isinstance(o, _Outcome) and o.transient:
                raise EndpointError(f"{ep.where}: the log-probabilities probe failed: {o.message}") from None
            given = False  # the parameters refused: asked again, every request would fail the same way
        self._logprobs[ep.mode_key] = given
        return given

    def probed(self) -> dict[str, Any]:
        """What the probes learnt, for the run's own client (adopt())."""
        return {"modes": dict(self._modes), "image_tokens": dict(self._image_tokens), "logprobs": dict(self._logprobs)}

    def adopt(self, probed: Mapping[str, Any]) -> None:
        self._modes.update(probed.get("modes", {}))
        self._image_tokens.update(probed.get("image_tokens", {}))
        self._logprobs.update(probed.get("logprobs", {}))

    # --- the call ----------------------------------------------------------------------------------
    async def query(
        self,
        key: str,
        messages: Sequence[Mapping[str, Any]],
        response_format: type[T],
        role: str | None = None,
        images: Mapping[str, str] | None = None,
        scope: str | None = None,
        logprobs: bool = False,
    ) -> CallResult[T]:
        """Ask agent endpoint `key`; `images` maps the messages' 'sha256:' placeholders to data URLs; `scope` is
        the video the call is for (its cached answers may be preloaded); `logprobs`: ask for the answer tokens'
        log-probabilities too (CallResult.logprobs; None where the server gives none)."""
        logprobs = self._asks_logprobs(key, logprobs)
        rhash = self.request_key(key, messages, response_format, logprobs)
        shared = self._inflight.get(rhash)
        if shared is not None:  # an identical call is in flight: share its answer
            result = await asyncio.shield(shared)
            if result.ok and self.use_cache and self.cache is not None:
                await self.cache.get(rhash, scope)  # asked from another video: the cache keeps this video's copy
            return result
        # The first caller makes the call in its own task (no task per call); later identical callers wait on it.
        shared = self._inflight[rhash] = asyncio.get_running_loop().create_future()
        try:
            try:
                result = await self._call(
                    key, role or key, rhash, list(messages), response_format, images or {}, scope, logprobs
                )
            except EndpointDown as down:
                raise EndpointError(str(down)) from None
        except BaseException as e:
            if not shared.done():
                shared.set_exception(e)
                shared.exception()  # retrieved here, so a call nobody shared logs no warning
            raise
        else:
            shared.set_result(result)
            return result
        finally:
            del self._inflight[rhash]

    async def _call(
        self,
        key: str,
        role: str,
        rhash: str,
        messages: list,
        schema: type[T],
        images: Mapping[str, str],
        scope: str | None,
        logprobs: bool = False,
    ) -> CallResult[T]:
        ep = self.endpoint(key)
        value: T | None = None
        if self.use_cache and self.cache is not None:
            stored = await self.cache.get(rhash, scope)
            if stored is not None:
                try:
                    value = schema.model_validate(stored["parsed"])
                except (pydantic.ValidationError, KeyError, TypeError):
                    value = None  # stored under an older schema: ask again
                if value is not None:
                    self.cache_hits[role] += 1
                    if self.meter is not None:
                        self.meter.cache_hit(role)
                    return CallResult(
                        role,
                        ep.cfg.model,
                        rhash,
                        "ok",
                        value,
                        cached=True,
                        mode=stored.get("mode", ""),
                        logprobs=stored.get("logprobs"),
                    )
        result: CallResult[T] = CallResult(role, ep.cfg.model, rhash, "error")
        started = time.monotonic()
        content: str | None = None
        try:
            value, content, result.mode = await self._ask(
                ep, role, rhash, _fill_images(messages, images), schema, result, self._params(ep.cfg, logprobs)
            )
            result.value, result.status = value, "ok"
        except _Outcome as o:
            result.status, result.error_code, result.error = o.status, o.code, o.message
        result.latency_s = time.monotonic() - started
        if value is not None and self.cache is not None:
            self.cache.put(
                dict(
                    request_hash=rhash,
                    agent=role,
                    model=ep.cfg.model,
                    endpoint=ep.base_url,
                    status="ok",
                    tokens_in=result.tokens_in,
                    tokens_out=result.tokens_out,
                    cost_usd=result.cost_usd,
                    latency_s=result.latency_s,
                    run_id=self.run_id,
                    video_id=scope,
                    response={
                        "parsed": value.model_dump(mode="json"),
                        "content": content,
                        "mode": result.mode,
                        **({"logprobs": result.logprobs} if result.logprobs is not None else {}),
                    },
                )
            )
        if result.error_code in FATAL_STATUS.values():
            raise EndpointError(result.error)
        return result

    def forget(self, rhash: str, scope: str | None = None) -> None:
        """A cached answer the agent could not use: the next identical call from this scope asks the model again."""
        if self.cache is not None:
            self.cache.invalidate(rhash, scope)

    async def _ask(
        self,
        ep: _Endpoint,
        role: str,
        rhash: str,
        messages: list,
        schema: type[T],
        result: CallResult,
        params: dict[str, Any] | None = None,
    ) -> tuple[T, str | None, str]:
        """Ask, degrade the output mode if the server refuses it, repair once if the output is invalid. The answer's
        log-probabilities (when asked and given) land in result.logprobs, the repaired answer's after a repair."""
        mode_key = (ep.base_url, ep.cfg.model)  # learnt once per server and model
        while True:
            mode = self._modes.get(mode_key) or (
                ep.cfg.structured_output if ep.cfg.structured_output != "auto" else MODES[0]
            )
            try:
                content, refusal, result.logprobs = await self._send(
                    ep, role, rhash, "call", messages, schema, mode, result, params=params
                )
                break
            except _Unsupported:
                if ep.cfg.structured_output != "auto" or mode == MODES[-1]:
                    raise _Outcome(
                        "error", "unsupported_output_mode", f"{ep.where} rejected response_format {mode}"
                    ) from None
                self._modes[mode_key] = MODES[MODES.index(mode) + 1]
                log.warning("%s rejects %s output; using %s", ep.where, mode, self._modes[mode_key])
        if refusal:
            raise _Outcome("refused", "refusal", refusal[:500])
        problem = self._validate(content, schema)
        if not isinstance(problem, ValueError):
            return problem, content, mode
        # One repair request that shows the model what was wrong with its answer.
        repair = [
            *messages,
            {"role": "assistant", "content": content or ""},
            {
                "role": "user",
                "content": f"Your answer does not match the required JSON schema: "
                f"{str(problem)[:800]}\n"
                "Reply again with only the corrected JSON object.",
            },
        ]
        try:
            content2, refusal, result.logprobs = await self._send(
                ep, role, rhash, "repair", repair, schema, mode, result, params=params
            )
        except _Unsupported:
            raise _Outcome("error", "unsupported_output_mode", f"{ep.where} rejected response_format {mode}") from None
        if refusal:
            raise _Outcome("refused", "refusal", refusal[:500])
        fixed = self._validate(content2, schema)
        if not isinstance(fixed, ValueError):
            return fixed, content2, mode
        # The unit's failure message (`engine status`) shows what the model said: the repaired answer, or the first
        # one when the repair came back empty.
        shown = content2 or content or ""
        raise _Outcome(
            "invalid",
            "schema_violation",
            one_line(f"schema_violation after one repair: {_reason(fixed)}; answer: {shown[:SNIPPET_CHARS]!r}")[
                :MESSAGE_CHARS
            ],
        )

    @staticmethod
    def _validate(content: str | None, schema: type[T]) -> T | ValueError:
        """The answer as a `schema` instance, or what is wrong with it."""
        if not content:
            return ValueError("the answer was empty")
        try:
            return schema.model_validate(_extract_json(content))
        except ValueError as e:  # json and pydantic errors are ValueErrors
            return e
        except RecursionError:  # JSON nested deeper than the parser goes
            return ValueError("the answer's JSON is nested too deep")

    @staticmethod
    def body(
        ep: _Endpoint, messages: list, schema, mode: str, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The request body for an output mode (params: the sampling parameters, ModelClient._params's by default)."""
        params = ModelClient._params(ep.cfg) if params is None else params
        body: dict[str, Any] = {"model": ep.cfg.model, "messages": messages, **params}
        if mode == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema.__name__, "schema": _strict_schema(schema), "strict": True},
            }
        else:
            body["messages"] = _with_instructions(messages, schema)
            if mode == "json_object_schema":  # llama.cpp's extension: JSON constrained by the schema
                body["response_format"] = {"type": "json_object", "schema": _schema_json(schema)}
            elif mode == "json_object":
                body["response_format"] = {"type": "json_object"}
        return body

    async def _send(
        self,
        ep,
        role,
        rhash,
        kind,
        messages,
        schema,
        mode,
        result,
        tries: int | None = None,
        tried: int = 0,
        params=None,
    ) -> tuple[str | None, str | None, list[dict[str, Any]] | None]:
        """One logical request with retries, each HTTP attempt logged. Returns (content, refusal, the answer tokens'
        log-probabilities or None). `tries`: HTTP requests at most (max_attempts by default); `tried`: requests
        already made for it (numbers the log's)."""
        max_attempts = tries or ep.cfg.max_attempts
        data = orjson.dumps(self.body(ep, messages, schema, mode, params))
        est = len(data) // 4 + ep.cfg.max_tokens
        images = _count_images(messages)
        attempt = tried
        try:
            while True:
                attempt += 1
                try:
                    async with ep.limiter.slot(est) as slot:
                        completion = await self._post(ep, role, rhash, kind, attempt, mode, data, result, images)
                        slot.settle(_known_tokens(completion))
                    break
                except Exception as e:
                    failed = attempt - tried  # requests made by this call
                    if not _transient(e) or failed >= max_attempts:
                        raise
                    await asyncio.sleep(backoff.delay(failed, e, ep.cfg.backoff_max_s))  # outside the slot
        except _HTTPError as e:
            raise self._status_outcome(ep, e, attempt) from None
        except (TimeoutError, aiohttp.ClientError, _MalformedResponse) as e:
            raise _Outcome(
                "error", _error_code(e), f"{ep.where}: {type(e).__name__}: {e} (after {attempt} attempts)", e
            ) from None
        except _AnswerTooLarge as e:
            raise _Outcome("error", "answer_too_large", f"{ep.where}: {e}", e) from None
        except _ImagesIgnored as e:
            raise _Outcome("error", "images_ignored", str(e)) from None
        choice = completion["choices"][0]
        message = choice.get("message") or {}
        return message.get("content"), message.get("refusal"), _token_logprobs(choice.get("logprobs"))

    async def _post(self, ep, role, rhash, kind, attempt, mode, data: bytes, result, images: int = 0) -> dict:
        """One HTTP request: logged before it leaves, completed with what came back."""
        await ep.breaker.admit()  # held while the server is down; raises when it is given up for down
        row = dict(
            id=f"{self._id_prefix}{next(self._ids):016x}",
            run_id=self.run_id,
            role=role,
            endpoint_key=ep.key,
            model=ep.cfg.model,
            endpoint=ep.base_url,
            request_hash=rhash,
            kind=kind,
            attempt=attempt,
            output_mode=mode,
            status="sent",
            sent_at=utcnow(),
        )
        if self.log is not None:
            try:
                await self.log.sent(request_columns(row))
            except asyncio.CancelledError:  # the run stopped before this request left: it was never sent
                self.log.withdraw(row["id"])
                raise
        result.attempts += 1
        t0 = time.monotonic()
        status, raw = None, b""
        left = _Left()
        try:
            async with self._session(ep).post(
                f"{ep.base_url}/chat/completions",
                data=data,
                headers={**ep.headers, KIND_HEADER: kind},
                timeout=aiohttp.ClientTimeout(total=ep.cfg.timeout_s),
                trace_request_ctx=left,
            ) as r:
                status = r.status
                raw, whole = await _read_capped(r)
                headers = r.headers
            if status >= 400:
                raise _HTTPError(status, headers, raw.decode(errors="replace"))
            ep.breaker.succeeded()
            if not whole:
                raise _AnswerTooLarge(f"HTTP {status} answer is longer than {MAX_ANSWER_BYTES} bytes (the limit)")
            try:
                completion = orjson.loads(raw)  # bytes: orjson rejects what is not UTF-8
                _check_completion(completion)
            except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
                raise _MalformedResponse(f"HTTP {status} body is not a chat completion ({str(e)[:120]})") from None
        except asyncio.CancelledError:  # the run stopped: sent with its answer unknown, or never sent at all
            if left.sent or self.log is None:
                row.update(status="cancelled")
                self._finish(row, t0, ep, None)
            else:
                self.log.withdraw(row["id"])
            raise
        except Exception as e:
            row.update(
                status=_error_code(e),
                http_status=status,
                answer=raw[: 4 * ANSWER_CHARS].decode(errors="replace")[:ANSWER_CHARS] or None,
            )
            self._finish(row, t0, ep, None)
            if _transient(e) and not (isinstance(e, _HTTPError) and e.status in (408, 409, 429)):
                ep.breaker.failed()  # no answer, or a 5xx that is not about the request: the server may be down
            elif isinstance(e, _HTTPError):
                ep.breaker.succeeded()  # it answered
            raise
        row.update(status="ok", http_status=status)
        self._finish(row, t0, ep, completion.get("usage"))
        expected = self._image_tokens.get(ep.mode_key)
        if images and expected and row["tokens_in"] is not None and row["tokens_in"] < images * expected // 2:
            # The server reported fewer prompt tokens than the images alone take: it dropped them.
            raise _ImagesIgnored(
                f"{ep.where} counted {row['tokens_in']} prompt tokens for a request with {images} "
                f"images (one image took {expected} at preflight): the images were not seen"
            )
        if row["tokens_in"] is None:
            result.tokens_unknown += 1
        else:
            result.tokens_in += row["tokens_in"]
            result.tokens_out += row["tokens_out"]
            result.cost_usd += row["cost_usd"]
        return completion

    def _finish(self, row: dict, t0: float, ep: _Endpoint, usage: Mapping[str, Any] | None) -> None:
        tin = usage.get("prompt_tokens") if isinstance(usage, Mapping) else None
        tout = usage.get("completion_tokens") if isinstance(usage, Mapping) else None
        cost: float | None = None
        if isinstance(tin, int) and isinstance(tout, int):
            cost = (tin * ep.cfg.price_in_per_mtok + tout * ep.cfg.price_out_per_mtok) / 1e6
        else:
            tin = tout = None  # both known, or neither
        row.update(
            latency_s=time.monotonic() - t0,
            finished_at=utcnow(),
            tokens_in=tin,
            tokens_out=tout,
            cost_usd=cost,
        )
        if self.log is not None:
            self.log.answered(request_columns(row))
        if self.meter is not None:
            self.meter.request(row)

    def _status_outcome(self, ep: _Endpoint, e: _HTTPError, attempts: int) -> Exception:
        code = e.status
        text = _error_message(e.body)[:300]
        if _unsupported_format(e):
            return _Unsupported()
        if code in FATAL_STATUS:
            hint = {
                401: f"check the key in ${ep.cfg.api_key_env}",
                403: "the key may lack access to this model",
                404: "check base_url and model",
            }[code]
            return _Outcome("error", FATAL_STATUS[code], f"{ep.where} answered HTTP {code}: {text} ({hint})", e)
        kind = f"retries exhausted after {attempts} attempts" if _transient(e) else "not retried"
        return _Outcome("error", f"http_{code}", f"{ep.where} answered HTTP {code} ({kind}): {text}", e)


class _Left:
    """Whether a request's headers went out (set by aiohttp's trace)."""

    sent = False


async def _mark_sent(session, ctx, params) -> None:
    if isinstance(ctx.trace_request_ctx, _Left):
        ctx.trace_request_ctx.sent = True


def _count_images(messages: Sequence[Mapping[str, Any]]) -> int:
    return sum(
        1 for m in messages if isinstance(m.get("content"), list) for p in m["content"] if p.get("type") == "image_url"
    )


def _token_logprobs(logprobs: Any) -> list[dict[str, Any]] | None:
    """A choice's `logprobs.content` (OpenAI's shape, which vLLM, SGLang and llama.cpp's servers follow): the answer's
    tokens, each {"token", "logprob", "top_logprobs": [{"token", "logprob"}]}, kept to those keys; None if absent
    or of another shape."""
    content = logprobs.get("content") if isinstance(logprobs, Mapping) else None
    if not isinstance(content, list) or not content:
        return None
    out = []
    for t in content:
        if not isinstance(t, Mapping) or not isinstance(t.get("token"), str):
            return None
        top = t.get("top_logprobs")
        top = top if isinstance(top, list) else []
        out.append(
            {
                "token": t["token"],
                "logprob": t.get("logprob"),
                "top_logprobs": [
                    {"token": a["token"], "logprob": a.get("logprob")}
                    for a in top
                    if isinstance(a, Mapping) and isinstance(a.get("token"), str)
                ],
            }
        )
    return out


def _known_tokens(completion: Mapping[str, Any]) -> int:
    usage = completion.get("usage") or {}
    return int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)


def _error_message(body: str) -> str:
    try:
        data = json.loads(body)
        err = data.get("error", data) if isinstance(data, dict) else data
        return str(err.get("message", err) if isinstance(err, dict) else err)
    except ValueError:
        return body


async def _read_capped(r: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """The body, at most MAX_ANSWER_BYTES of it, and whether that is all of it."""
    data = bytearray()
    while len(data) <= MAX_ANSWER_BYTES:
        chunk = await r.content.read(MAX_ANSWER_BYTES + 1 - len(data))
        if not chunk:
            return bytes(data), True
        data += chunk
    return bytes(data[:MAX_ANSWER_BYTES]), False


def _check_completion(completion: Any) -> None:
    """Raise (KeyError, TypeError...) unless `completion` has what _send reads, of the types it reads."""
    message = completion["choices"][0].get("message") or {}
    if not isinstance(message.get("content") or "", str) or not isinstance(message.get("refusal") or "", str):
        raise TypeError("its message's content or refusal is not a string")


def _reason(problem: ValueError) -> str:
    """What is wrong with an answer, short: pydantic's errors as `field: message`, else the error's first line."""
    if isinstance(problem, pydantic.ValidationError):
        errors = problem.errors()
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        return ("; ".join(f"{'.'.join(map(str, x['loc'])) or 'answer'}: {x['msg']}" for x in errors[:3]))[:240] + more
    return (str(problem).splitlines() or [type(problem).__name__])[0][:200]
