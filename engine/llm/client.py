"""One client for every language and vision-language agent: any OpenAI-compatible chat endpoint.

`await client.query(agent, messages, Schema)` returns a CallResult whose `value` is a validated
`Schema` instance. Around that one call the client does, so agents never do:
- the cache: a call is keyed by the hash of its canonical request (model, messages with images
  replaced by their hashes, parameters, schema); a stored success answers without any HTTP request;
- typed output: JSON-schema structured outputs (`chat.completions.parse`), degrading to JSON mode
  and then plain text for servers that refuse `json_schema`, with one repair request that shows
  the model its validation error;
- retries with tenacity on 408/409/429, 5xx, timeouts, dropped connections and unparseable
  bodies: exponential backoff with jitter, `Retry-After` honoured, bounded attempts (the openai
  package's own retries are off, so each attempt is counted once);
- limits per endpoint (concurrent requests, requests and tokens per minute);
- accounting: tokens, latency and cost of every call, recorded in the ledger.

Per-item outcomes (refused, invalid output, retries exhausted, a 400) come back as a CallResult
with a status and an error code. Misconfiguration that would fail every call (401, 403, 404, a
missing API key) raises EndpointError, naming the agent, endpoint and model, never the key.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Mapping, Sequence, TypeVar

import openai
import pydantic
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from engine.llm.request_log import CallLedger
from engine.config import AGENT_NAMES, Config, EndpointConfig
from engine.media.images import to_data_url, url_digest
from engine.llm.limits import EndpointLimiter

log = logging.getLogger(__name__)

T = TypeVar("T", bound=pydantic.BaseModel)
Status = Literal["ok", "refused", "invalid", "error"]
MODES = ("json_schema", "json_object", "text")
FATAL_STATUS = {401: "unauthorized", 403: "forbidden", 404: "not_found"}
NO_KEY = "no-key"  # what is sent when api_key_env = "" (local servers that check nothing)


class EndpointError(RuntimeError):
    """A setting or endpoint that makes every call fail; the run should stop."""


class _MalformedResponse(Exception):
    """A 2xx answer whose body is not a chat completion: treated like a transient server fault."""


@dataclass
class CallResult(Generic[T]):
    agent: str
    model: str
    request_hash: str
    status: Status
    value: T | None = None
    error_code: str | None = None
    error: str | None = None
    cached: bool = False
    attempts: int = 0  # HTTP requests made (0 when answered from the cache)
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    record: dict[str, Any] | None = None  # the model_calls row this call produced (None when cached)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class AgentTotals:
    calls: int = 0
    cached: int = 0
    ok: int = 0
    failed: int = 0
    http_requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


def canonical_request(model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
                      schema: type[pydantic.BaseModel]) -> dict[str, Any]:
    """The request as the cache sees it: images replaced by their hashes, keys in a fixed order."""

    def digest(url: str) -> str:
        return url if url.startswith("sha256:") else url_digest(url)  # a placeholder already is the digest

    def strip(content: Any) -> Any:
        if isinstance(content, list):
            return [
                {"type": "image_url", "image_url": digest(p["image_url"]["url"])} if p.get("type") == "image_url" else p
                for p in content
            ]
        return content

    return {
        "model": model,
        "messages": [{**m, "content": strip(m.get("content"))} for m in messages],
        "params": dict(params),
        "schema": {"name": schema.__name__, "json": schema.model_json_schema()},
    }


def request_hash(canonical: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _status_code(e: BaseException) -> int | None:
    return getattr(e, "status_code", None)


def _transient(e: BaseException) -> bool:
    if isinstance(e, (openai.APITimeoutError, openai.APIConnectionError, _MalformedResponse)):
        return True
    code = _status_code(e)
    return code is not None and (code in (408, 409, 429) or code >= 500)


def _retry_after(e: BaseException | None) -> float | None:
    """Seconds from a Retry-After (or retry-after-ms) header, if the error carries one."""
    response = getattr(e, "response", None)
    if response is None:
        return None
    headers = response.headers
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class _WaitRetryAfterOrBackoff:
    def __init__(self, max_s: float):
        self.max_s = max_s
        self.backoff = wait_exponential_jitter(multiplier=0.5, max=max_s, jitter=0.5)

    def __call__(self, state) -> float:
        hinted = _retry_after(state.outcome.exception() if state.outcome else None)
        return min(hinted, self.max_s) if hinted is not None else self.backoff(state)


def _schema_prompt(schema: type[pydantic.BaseModel]) -> dict[str, str]:
    return {
        "role": "system",
        "content": "Answer with one JSON object, and nothing else, that matches this JSON schema:\n"
        f"<schema>{json.dumps(schema.model_json_schema())}</schema>",
    }


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


@dataclass
class _Endpoint:
    agent: str
    cfg: EndpointConfig
    base_url: str  # resolved; "" means the openai default
    client: openai.AsyncOpenAI
    limiter: EndpointLimiter


class ModelClient:
    """Model access for all agents of one process. Create it inside the event loop that uses it."""

    def __init__(
        self,
        cfg: Config,
        ledger: CallLedger | None = None,
        run_id: str | None = None,
        use_cache: bool = True,
        environ: Mapping[str, str] | None = None,
    ):
        self.cfg = cfg
        self.ledger = ledger
        self.run_id = run_id
        self.use_cache = use_cache
        self.environ = os.environ if environ is None else environ
        self.totals: dict[str, AgentTotals] = {}
        self._endpoints: dict[str, _Endpoint] = {}
        self._limiters: dict[tuple[str, str], EndpointLimiter] = {}
        self._modes: dict[tuple[str, str], str] = {}

    # --- endpoints ---------------------------------------------------------------------------------
    def endpoint(self, agent: str) -> _Endpoint:
        if agent in self._endpoints:
            return self._endpoints[agent]
        if agent not in AGENT_NAMES:
            raise EndpointError(f"unknown agent {agent!r}; agents: {', '.join(AGENT_NAMES)}")
        ep: EndpointConfig = getattr(self.cfg.agents, agent)
        base_url = ep.base_url or self.environ.get("OPENAI_BASE_URL", "")
        if ep.api_key_env:
            key = self.environ.get(ep.api_key_env)
            if not key:
                raise EndpointError(
                    f"agent {agent}: the environment variable {ep.api_key_env} (agents.{agent}.api_key_env) is not "
                    f"set. Export the API key under that name, or set agents.{agent}.api_key_env = \"\" for a "
                    "server that needs no key."
                )
        else:
            key = NO_KEY
        client = openai.AsyncOpenAI(base_url=base_url or None, api_key=key, max_retries=0, timeout=ep.timeout_s)
        lim_key = (base_url, ep.model)
        if lim_key not in self._limiters:
            # Agents on the same base URL and model share one limiter, with the strictest of their limits.
            peers = [p for p in (getattr(self.cfg.agents, a) for a in AGENT_NAMES)
                     if (p.base_url or self.environ.get("OPENAI_BASE_URL", ""), p.model) == lim_key]
            strictest = lambda vals: min([v for v in vals if v], default=0)  # noqa: E731 (0 = unlimited)
            self._limiters[lim_key] = EndpointLimiter(
                min(p.max_concurrent for p in peers), strictest(p.rpm for p in peers), strictest(p.tpm for p in peers)
            )
        self._endpoints[agent] = _Endpoint(agent, ep, str(client.base_url), client, self._limiters[lim_key])
        return self._endpoints[agent]

    @staticmethod
    def _params(ep: EndpointConfig) -> dict[str, Any]:
        return {"temperature": ep.temperature, "max_tokens": ep.max_tokens}

    def request_key(self, agent: str, messages: Sequence[Mapping[str, Any]], response_format: type) -> str:
        """The cache key of a call, computable without sending it (images may be 'sha256:' placeholders)."""
        ep: EndpointConfig = getattr(self.cfg.agents, agent)
        return request_hash(canonical_request(ep.model, messages, self._params(ep), response_format))

    def image_urls(self, agent: str, frames: Sequence[Any]) -> list[str]:
        """Frames ((H, W, 3) uint8 RGB) as JPEG data URLs at this agent's image_max_side and image_quality."""
        ep: EndpointConfig = getattr(self.cfg.agents, agent)
        return [to_data_url(f, ep.image_max_side, ep.image_quality) for f in frames]

    def check(self, agents: Sequence[str] = AGENT_NAMES) -> None:
        """Raise EndpointError now if any agent's endpoint settings are missing (before spending)."""
        for agent in agents:
            self.endpoint(agent)

    async def ping(self, agent: str) -> None:
        """Raise EndpointError unless the agent's endpoint answers (any HTTP answer but 401/403 counts)."""
        ep = self.endpoint(agent)
        where = f"agent {agent}: {ep.base_url} (model {ep.cfg.model})"
        try:
            await ep.client.models.list(timeout=min(10.0, ep.cfg.timeout_s))
        except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
            raise EndpointError(f"{where} refused the key in ${ep.cfg.api_key_env}: HTTP {e.status_code}") from None
        except (openai.APIConnectionError, openai.APITimeoutError) as e:
            raise EndpointError(f"{where} cannot be reached: {type(e).__name__}. Check agents.{agent}.base_url "
                                "or OPENAI_BASE_URL.") from None
        except openai.APIStatusError:
            pass  # it answered; some servers have no /models

    async def aclose(self) -> None:
        for ep in self._endpoints.values():
            await ep.client.close()

    # --- the call ----------------------------------------------------------------------------------
    async def query(
        self, agent: str, messages: Sequence[Mapping[str, Any]], response_format: type[T]
    ) -> CallResult[T]:
        ep = self.endpoint(agent)
        params = self._params(ep.cfg)
        rhash = self.request_key(agent, messages, response_format)
        totals = self.totals.setdefault(agent, AgentTotals())
        totals.calls += 1
        if self.use_cache and self.ledger is not None:
            stored = await asyncio.to_thread(self.ledger.lookup, rhash)
            if stored is not None:
                try:
                    value = response_format.model_validate(stored["parsed"])
                except (pydantic.ValidationError, KeyError, TypeError):
                    value = None  # the schema changed under the same hash: ask again
                if value is not None:
                    totals.cached += 1
                    totals.ok += 1
                    return CallResult(agent, ep.cfg.model, rhash, "ok", value, cached=True)

        result = CallResult(agent, ep.cfg.model, rhash, "error")
        started = time.monotonic()
        content: str | None = None
        mode = ""
        try:
            result.value, content, mode = await self._ask(ep, list(messages), params, response_format, result)
            result.status = "ok"
        except _Outcome as o:
            result.status, result.error_code, result.error = o.status, o.code, o.message
        result.latency_s = time.monotonic() - started
        result.cost_usd = (result.tokens_in * ep.cfg.price_in_per_mtok + result.tokens_out * ep.cfg.price_out_per_mtok) / 1e6
        self._account(totals, result)
        result.record = self._row(ep, result, content, mode)
        if self.ledger is not None:
            await asyncio.to_thread(self.ledger.record, result.record)
        if result.error_code in FATAL_STATUS.values():
            raise EndpointError(result.error)
        return result

    def _account(self, totals: AgentTotals, r: CallResult) -> None:
        totals.http_requests += r.attempts
        totals.tokens_in += r.tokens_in
        totals.tokens_out += r.tokens_out
        totals.cost_usd += r.cost_usd
        totals.latency_s += r.latency_s
        if r.ok:
            totals.ok += 1
        else:
            totals.failed += 1
            totals.errors[r.error_code or r.status] = totals.errors.get(r.error_code or r.status, 0) + 1

    def _row(self, ep: _Endpoint, r: CallResult, content: str | None, mode: str) -> dict[str, Any]:
        response = {"parsed": r.value.model_dump(mode="json"), "content": content, "mode": mode} if r.ok else (
            {"content": content, "mode": mode} if content is not None else None)
        return dict(
            request_hash=r.request_hash, agent=r.agent, model=r.model, endpoint=ep.base_url, status=r.status,
            tokens_in=r.tokens_in, tokens_out=r.tokens_out, cost_usd=r.cost_usd, latency_s=r.latency_s,
            response=response, error=None if r.ok else f"{r.error_code}: {r.error}", run_id=self.run_id,
        )

    async def _ask(self, ep, messages, params, schema, result) -> tuple[Any, str | None, str]:
        """Ask, degrade the output mode if the server refuses it, repair once if the output is invalid."""
        mode_key = (ep.base_url, ep.cfg.model)  # learnt once per server and model
        while True:
            mode = self._modes.get(mode_key) or (ep.cfg.structured_output if ep.cfg.structured_output != "auto" else MODES[0])
            try:
                content, refusal = await self._send(ep, messages, params, schema, mode, result)
            except _Unsupported:
                if ep.cfg.structured_output != "auto" or mode == MODES[-1]:
                    raise _Outcome("error", "unsupported_output_mode",
                                   f"{ep.base_url} model {ep.cfg.model} rejected response_format {mode}") from None
                self._modes[mode_key] = MODES[MODES.index(mode) + 1]
                log.warning("%s (%s) rejects %s output; using %s", ep.base_url, ep.cfg.model, mode, self._modes[mode_key])
                continue
            break
        if refusal:
            raise _Outcome("refused", "refusal", refusal[:500])
        problem = self._validate(content, schema)
        if isinstance(problem, pydantic.BaseModel):
            return problem, content, mode
        # One repair request that shows the model what was wrong with its answer.
        repair = [*messages, {"role": "assistant", "content": content or ""},
                  {"role": "user", "content": f"Your answer does not match the required JSON schema: {problem}\n"
                                              "Reply again with only the corrected JSON object."}]
        content2, refusal = await self._send(ep, repair, params, schema, mode, result)
        if refusal:
            raise _Outcome("refused", "refusal", refusal[:500])
        fixed = self._validate(content2, schema)
        if isinstance(fixed, pydantic.BaseModel):
            return fixed, content2, mode
        raise _Outcome("invalid", "schema_violation", f"after one repair: {fixed}"[:1000])

    @staticmethod
    def _validate(content: str | None, schema: type[T]) -> T | str:
        if content is None:
            return "the answer was empty"
        try:
            return schema.model_validate(_extract_json(content))
        except ValueError as e:  # json and pydantic errors are ValueErrors
            return str(e)[:800]

    async def _send(self, ep, messages, params, schema, mode, result) -> tuple[str | None, str | None]:
        """One logical request with retries. Returns (content, refusal) and adds usage to result."""
        body_messages = list(messages) if mode == "json_schema" else [_schema_prompt(schema), *messages]
        kwargs: dict[str, Any] = {"model": ep.cfg.model, "messages": body_messages, **params}
        if mode == "json_object":
            kwargs["response_format"] = {"type": "json_object"}
        est = sum(len(json.dumps(m.get("content"))) for m in body_messages) // 4 + ep.cfg.max_tokens
        retrying = AsyncRetrying(
            stop=stop_after_attempt(ep.cfg.max_attempts),
            wait=_WaitRetryAfterOrBackoff(ep.cfg.backoff_max_s),
            retry=retry_if_exception(_transient),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    async with ep.limiter.slot(est) as slot:
                        result.attempts += 1
                        completion = await self._post(ep, kwargs, schema, mode)
                        usage = completion.usage
                        tin, tout = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
                        slot.settle(tin + tout)
        except openai.APIStatusError as e:
            raise self._status_outcome(ep, e) from None
        except (openai.APITimeoutError, openai.APIConnectionError, _MalformedResponse) as e:
            code = {openai.APITimeoutError: "timeout", _MalformedResponse: "malformed_response"}.get(type(e), "connection")
            raise _Outcome("error", code, f"{ep.base_url} model {ep.cfg.model}: {type(e).__name__}: {e} "
                                          f"(after {result.attempts} attempts)") from None
        result.tokens_in += tin
        result.tokens_out += tout
        message = completion.choices[0].message
        return message.content, getattr(message, "refusal", None)

    async def _post(self, ep, kwargs, schema, mode):
        if mode == "json_schema":
            raw = await ep.client.chat.completions.with_raw_response.parse(response_format=schema, **kwargs)
        else:
            raw = await ep.client.chat.completions.with_raw_response.create(**kwargs)
        try:
            json.loads(raw.http_response.text)
        except ValueError:
            raise _MalformedResponse(f"HTTP {raw.http_response.status_code} body is not JSON") from None
        try:
            return raw.parse() if mode != "json_schema" else _parse_lenient(raw)
        except (KeyError, TypeError, AttributeError, IndexError) as e:
            raise _MalformedResponse(f"not a chat completion: {e}") from None

    def _status_outcome(self, ep: _Endpoint, e: openai.APIStatusError) -> Exception:
        code = e.status_code
        text = str(getattr(e, "message", e))[:300]
        where = f"agent {ep.agent}: {ep.base_url} model {ep.cfg.model}"
        if code == 400 and any(w in text.lower() for w in ("response_format", "json_schema", "json_object")):
            return _Unsupported()
        if code in FATAL_STATUS:
            hint = {401: f"check the key in ${ep.cfg.api_key_env}", 403: "the key may lack access to this model",
                    404: "check base_url and model"}[code]
            return _Outcome("error", FATAL_STATUS[code], f"{where} answered HTTP {code}: {text} ({hint})")
        kind = "retries exhausted" if _transient(e) else "not retried"
        return _Outcome("error", f"http_{code}", f"{where} answered HTTP {code} ({kind}): {text}")


def _parse_lenient(raw):
    """Parse a json_schema answer, but leave content validation to us (so a bad answer gets a repair)."""
    try:
        return raw.parse()
    except (pydantic.ValidationError, ValueError, openai.LengthFinishReasonError, openai.ContentFilterFinishReasonError):
        # The SDK validates content against the schema while parsing; on failure read the plain body.
        return openai.types.chat.ChatCompletion.model_validate(raw.http_response.json())


class _Outcome(Exception):
    def __init__(self, status: Status, code: str, message: str):
        self.status, self.code, self.message = status, code, message


class _Unsupported(Exception):
    pass
