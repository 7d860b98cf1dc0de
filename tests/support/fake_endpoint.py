"""A local OpenAI-compatible endpoint for tests and benchmarks: real HTTP on 127.0.0.1.

- ``POST /v1/chat/completions``: answers that satisfy the JSON schema in the request, deterministic
  for a given request and derived from it (string fields echo the last user text, so a test can
  see which noun or description reached the model), with ``usage`` counts.
- ``GET /v1/models``.
- A latency distribution (``latency_s`` fixed or ``(low, high)`` uniform, seeded).
- Scripted faults, by request order (``enqueue_faults``) or at a seeded rate (``fault_rates``):
  ``429`` (with Retry-After), ``500``, ``503``, ``400``, ``401``, ``hang`` (past the client's timeout),
  ``malformed`` (a body that is not JSON), ``schema`` (content violating the schema), ``refusal``,
  ``drop`` (the connection closes without an answer), ``no_json_schema`` (the status in
  ``unsupported_status``, 400 by default, for json_schema), ``no_usage`` (an answer without ``usage``).
- Token log-probabilities when a request asks for them (``logprobs``: OpenAI's ``choices[0].logprobs.content``),
  the answer cut into word and punctuation tokens; a yes/no decision token (the value of ``same_object``) carries
  its alternatives with P(true) from ``p_same(body)`` (a judge's score, e.g. per model), else 0.8 or 0.2.
- A log of received requests (time, body, auth seen) and the peak number in flight.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = (
    "429",
    "500",
    "503",
    "400",
    "401",
    "hang",
    "malformed",
    "schema",
    "refusal",
    "drop",
    "no_json_schema",
    "no_usage",
    "list_content",
    "truncated",
    "empty",
    "refusal_text",
    "wrong_types",
    "huge",
    "bad_utf8",
)
HUGE_BYTES = 5 << 20  # the "huge" fault's answer: 5 MB


@dataclass
class FaultRule:
    """A fault aimed at some requests: those for one agent's schema (`schema`: the response_format's name) whose
    messages contain `text`, or whose first image is mostly `color` (an RGB; for agents that see only frames).
    `times`: how many matching requests get it (None: all, until the rule is removed)."""

    fault: str
    schema: str | None = None
    text: str | None = None
    color: tuple[int, int, int] | None = None
    times: int | None = None
    fired: int = 0

    def matches(self, body: dict[str, Any]) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        if self.schema is not None and _schema_name(body) != self.schema:
            return False
        if self.text is not None and self.text not in " ".join(t for m in body.get("messages", []) for t in _texts(m)):
            return False
        if self.color is not None:
            urls = image_urls(body)
            if not urls or not _mostly(urls[0], self.color):
                return False
        return True


@dataclass
class Received:
    t_start: float
    t_end: float | None  # None while the answer is being written
    path: str
    body: dict[str, Any]
    authorization: str | None
    fault: str | None
    usage: dict[str, int] | None = None  # what the answer reported (None: no answer, or no usage in it)
    kind: str = "call"  # call | repair | probe, as the engine's client marks its requests


@dataclass
class FakeEndpoint:
    latency_s: float | tuple[float, float] = 0.0
    fault_rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    retry_after_s: str = "1"
    hang_s: float = 5.0
    supports_json_schema: bool = True
    sees_images: bool = True  # False: a text-only model, whose server drops image parts unread
    unsupported_status: int = 400  # what a server that rejects json_schema answers (llama.cpp's: 500)
    port: int = 0  # 0: any free port
    # What llama-cpp-python's server (0.3.36) does with what it cannot take, measured against the real one
    # (tests/realserver): list-valued message content, "error" (its GGUF templates: HTTP 500 "can only
    # concatenate str (not \"list\") to str") or "drop" (its chatml format: the whole content silently
    # ignored); system messages after the first, "keep" (GGUF templates) or "drop" (chatml).
    list_content: str = "ok"
    extra_systems: str = "keep"
    model_ids: tuple[str, ...] = ("fake-model",)
    fail_matching: dict[str, str] = field(default_factory=dict)  # substring of the last user text -> fault
    rules: list[FaultRule] = field(default_factory=list)  # aimed faults (FaultRule), checked first
    answers: dict[str, Any] = field(default_factory=dict)  # field name -> the value every answer gives it
    logprobs: bool = True  # return token log-probabilities when asked (False: a server that ignores the request)
    # llama-cpp-python's server: probabilities before its grammar (at the decision token, tokens that are no answer
    # lead: "[" .41, '{"' .12 ...; true and false share what is left), given only with top_logprobs, and the choice's
    # "logprobs" key always there (null unless asked)
    logprobs_before_grammar: bool = False
    logprobs_refused: int | None = None  # the status a server that rejects the logprobs parameters answers
    # A judge's P(same object) for a request (None: the generated answer's): sets same_object, confidence and, when
    # log-probabilities are asked, the decision token's alternatives.
    p_same: Callable[[dict[str, Any]], float | None] | None = None

    def __post_init__(self) -> None:
        self.received: list[Received] = []
        self._connections: set = set()
        self._queue: list[str | None] = []
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)
        self.in_flight = 0
        self.peak_in_flight = 0
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FakeEndpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def setup(self):
                super().setup()
                with endpoint._lock:
                    endpoint._connections.add(self.connection)

            def finish(self):
                with endpoint._lock:
                    endpoint._connections.discard(self.connection)
                super().finish()

            def do_GET(self):
                if self.path.rstrip("/") == "/v1/models":
                    data = {
                        "object": "list",
                        "data": [{"id": m, "object": "model", "owned_by": "fake"} for m in endpoint.model_ids],
                    }
                    self._send(200, data)
                else:
                    self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": "not found"}})
                    return
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:  # a client killed mid-request leaves half a body: still a request
                    t = time.monotonic()
                    with endpoint._lock:
                        endpoint.received.append(
                            Received(t, t, self.path, {}, self.headers.get("Authorization"), "truncated")
                        )
                    self._send(
                        400, {"error": {"message": "request body is not JSON", "type": "invalid_request_error"}}
                    )
                    return
                endpoint._handle(self, body)

            def _send(self, status: int, data: Any, headers: dict[str, str] | None = None, raw: bytes | None = None):
                body = raw if raw is not None else json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

            def handle_error(self, request, client_address):
                # A client that gave up (timeout, scripted hang) leaves a broken pipe: expected, not news.
                if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                    super().handle_error(request, client_address)

        Server.allow_reuse_address = True  # a restarted endpoint takes its old port back at once
        self._server = Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection, as a server that dies does (keep-alive ones too)."""
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            with self._lock:
                for conn in list(self._connections):
                    try:
                        conn.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def __enter__(self) -> FakeEndpoint:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @classmethod
    def llama_cpp(cls, chat_format: str = "gguf", **kw) -> FakeEndpoint:
        """llama-cpp-python's server serving a small text model, as measured: json_schema refused with a 500
        whose body names response_format, json_object with a schema honoured, image parts refused (its GGUF
        template) or dropped (chatml), extra system messages kept (GGUF) or dropped (chatml)."""
        return cls(
            supports_json_schema=False,
            unsupported_status=500,
            sees_images=False,
            list_content="error" if chat_format == "gguf" else "drop",
            extra_systems="keep" if chat_format == "gguf" else "drop",
            logprobs_before_grammar=True,
            **kw,
        )

    @property
    def base_url(self) -> str:
        assert self._server, "start() the endpoint first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    # --- scripting -------------------------------------------------------------------------------
    def enqueue_faults(self, *faults: str | None) -> None:
        """The next requests, in arrival order, get these faults (None = answer normally)."""
        unknown = [f for f in faults if f is not None and f not in FAULTS]
        assert not unknown, f"unknown faults {unknown}; known: {FAULTS}"
        with self._lock:
            self._queue.extend(faults)

    def chat_requests(self) -> list[Received]:
        return [r for r in self.received if r.path.endswith("chat/completions")]

    def work_requests(self) -> list[Received]:
        """Chat requests that do the work (calls and repairs), without preflight's probes."""
        return [r for r in self.chat_requests() if r.kind != "probe"]

    # --- behaviour -------------------------------------------------------------------------------
    def _pick_fault(self, body: dict[str, Any]) -> tuple[str | None, float]:
        """(fault or None, latency before a normal answer)."""
        with self._lock:
            if not self.supports_json_schema and (body.get("response_format") or {}).get("type") == "json_schema":
                return "no_json_schema", 0.0
            if self.list_content == "error" and any(
                isinstance(m.get("content"), list) for m in body.get("messages", [])
            ):
                return "list_content", 0.0
            for rule in self.rules:
                if rule.matches(body):
                    rule.fired += 1
                    return rule.fault, 0.0
            text = last_user_text(body)
            for needle, fault in self.fail_matching.items():
                if needle in text:
                    return fault, 0.0
            if self._queue:
                fault = self._queue.pop(0)
                if fault is not None:
                    return fault, 0.0
            else:
                roll = self._rng.random()
                for name, rate in self.fault_rates.items():
                    if roll < rate:
                        return name, 0.0
                    roll -= rate
            lat = self.latency_s
            return None, float(lat) if isinstance(lat, (int, float)) else self._rng.uniform(*lat)

    def _as_read(self, body: dict[str, Any]) -> dict[str, Any]:
        """The request as this server's template reads it (what it drops does not count)."""
        messages, systems = [], 0
        for m in body.get("messages", []):
            if m.get("role") == "system":
                systems += 1
                if systems > 1 and self.extra_systems == "drop":
                    continue
            if self.list_content == "drop" and isinstance(m.get("content"), list):
                m = {**m, "content": ""}
            messages.append(m)
        return {**body, "messages": messages}

    def _handle(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        t0 = time.monotonic()
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        fault, delay = self._pick_fault(body)
        # Logged on arrival, so a client that has its answer always finds its request here.
        entry = Received(
            t0,
            None,
            h.path,
            body,
            h.headers.get("Authorization"),
            fault,
            kind=h.headers.get("X-Engine-Request-Kind", "call"),
        )
        with self._lock:
            self.received.append(entry)
        try:
            entry.usage = self._answer(h, body, fault, delay, entry)
        finally:
            with self._lock:
                self.in_flight -= 1
                entry.t_end = entry.t_end or time.monotonic()

    def _answer(self, h, body, fault, delay, entry: Received) -> dict | None:
        def err(status: int, msg: str, typ: str = "server_error", **hd: str) -> None:
            entry.t_end = time.monotonic()
            h._send(status, {"error": {"message": msg, "type": typ}}, hd)

        if fault == "429":
            return err(429, "rate limited", "rate_limit_error", **{"Retry-After": self.retry_after_s})
        if fault in ("500", "503"):
            return err(int(fault), f"scripted {fault}")
        if fault == "400":
            return err(400, "scripted bad request", "invalid_request_error")
        if fault == "401":
            return err(401, "invalid api key", "authentication_error")
        if fault == "no_json_schema":
            if self.unsupported_status == 500:  # llama-cpp-python's validation error, served as a 500
                return err(
                    500,
                    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', "
                    "'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}",
                    "internal_server_error",
                )
            return err(
                self.unsupported_status,
                "response_format json_schema is not supported by this server",
                "invalid_request_error",
            )
        if fault == "list_content":
            return err(500, 'can only concatenate str (not "list") to str', "internal_server_error")
        if fault == "hang":
            time.sleep(self.hang_s)
            return err(504, "hung")
        if fault == "drop":
            h.connection.shutdown(socket.SHUT_RDWR)
            h.close_connection = True
            return None
        if self.logprobs_refused and ("logprobs" in body or "top_logprobs" in body):
            return err(self.logprobs_refused, "logprobs is not supported by this model", "invalid_request_error")
        if fault == "malformed":
            return h._send(200, None, raw=b'{"id": "x", "choices": [ {"message": ')
        time.sleep(delay)
        content: str | None
        refusal = None
        answer_value = answer_for(body)
        if isinstance(answer_value, dict):
            answer_value = {**answer_value, **{k: v for k, v in self.answers.items() if k in answer_value}}
        p_yes = None
        if isinstance(answer_value, dict) and isinstance(answer_value.get("same_object"), bool):
            p_yes = self.p_same(body) if self.p_same is not None else None
            if p_yes is not None:
                answer_value.update(same_object=p_yes >= 0.5, confidence=round(max(p_yes, 1 - p_yes), 3))
            else:
                p_yes = 0.8 if answer_value["same_object"] else 0.2
        if fault == "refusal":
            content, refusal = None, "I can't help with that."
        elif fault == "schema":
            content = json.dumps({"unexpected": True})
        elif fault == "truncated":  # cut off mid-answer, as at max_tokens
            whole = json.dumps(answer_value)
            content = whole[: len(whole) // 2]
        elif fault == "empty":
            content = ""
        elif fault == "refusal_text":  # a refusal written as the answer itself, not in the refusal field
            content = "I'm sorry, but I can't help with that request."
        elif fault == "wrong_types":
            content = json.dumps(_wrong_types(answer_value))
        elif fault == "huge":
            content = json.dumps({**answer_value, "padding": "x" * HUGE_BYTES})
        else:
            content = json.dumps(answer_value)
        prompt_tokens = _count_tokens(self._as_read(body), self.sees_images)
        completion_tokens = max(1, len(content or refusal or "") // 4)
        answer = {
            "id": "chatcmpl-" + _digest(body)[:12],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake-model"),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": content, "refusal": refusal},
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        if self.logprobs_before_grammar:
            answer["choices"][0]["logprobs"] = None
            if body.get("logprobs") and body.get("top_logprobs") is not None and content:
                answer["choices"][0]["logprobs"] = {
                    "content": token_logprobs(content, p_yes, body["top_logprobs"], before_grammar=True),
                    "refusal": None,
                }
        elif body.get("logprobs") and self.logprobs and content:
            answer["choices"][0]["logprobs"] = {"content": token_logprobs(content, p_yes, body.get("top_logprobs"))}
        if fault == "no_usage":
            del answer["usage"]
        entry.usage = answer.get("usage")  # before the answer leaves: the client may look right after
        entry.t_end = time.monotonic()
        if fault == "bad_utf8":  # bytes that are no UTF-8 inside the answer's content
            raw = json.dumps(answer).encode()
            at = raw.index(b'"content": "') + len(b'"content": "')
            h._send(200, None, raw=raw[:at] + b"\xff\xfe\xfa" + raw[at:])
            return answer.get("usage")
        h._send(200, answer)
        return answer.get("usage")


# --- deterministic answers derived from the request ------------------------------------------------


def token_logprobs(
    content: str, p_yes: float | None, top: int | None, before_grammar: bool = False
) -> list[dict[str, Any]]:
    """OpenAI's logprobs.content for an answer: word and punctuation tokens (a leading space kept, as BPE does),
    each certain but the value of "same_object", whose alternatives carry P(true) = p_yes (before_grammar: after
    tokens that are no answer, as llama.cpp's server reports them, the chosen one appended when not in the top)."""
    tokens = re.findall(r"\s*[A-Za-z]+|\s*\d+|\s*[^\sA-Za-z\d]", content)
    out, text = [], ""
    for tok in tokens:
        entry: dict[str, Any] = {
            "token": tok,
            "logprob": -0.0001,
            "top_logprobs": [{"token": tok, "logprob": -0.0001}],
        }
        if p_yes is not None and re.search(r'"same_object"\s*:\s*$', text) and tok.strip() in ("true", "false"):
            p = min(max(p_yes, 1e-6), 1 - 1e-6)
            alternatives = [(" true", p * 0.9), ("true", p * 0.1), (" false", (1 - p) * 0.9), (" null", 1e-4)]
            alternatives.append(("false", (1 - p) * 0.1))
            if before_grammar:  # measured: "[" .41, '{"' .12, "{" .09, '"' .07, ' "' .065; true + false about .07
                alternatives = [("[", 0.41), ('{"', 0.12), ("{", 0.086), ('"', 0.072), (' "', 0.065)]
                alternatives += [("true", 0.07 * p), ("false", 0.07 * (1 - p)), ("null", 0.003), (" true", 0.004 * p)]
            ranked = sorted(alternatives, key=lambda a: -a[1])[: top or 1]
            if before_grammar and tok not in dict(ranked):
                ranked.append((tok, dict(alternatives).get(tok, 1e-6)))
            entry = {
                "token": tok,
                "logprob": math.log(dict(alternatives).get(tok, 1e-6)),
                "top_logprobs": [{"token": t, "logprob": math.log(q)} for t, q in ranked],
            }
        out.append(entry)
        text += tok
    return out


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _texts(message: dict[str, Any]) -> list[str]:
    content = message.get("content")
    if isinstance(content, str):
        return [content]
    return [p.get("text", "") for p in content or [] if p.get("type") == "text"]


def last_user_text(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    return " ".join(_texts(users[-1])) if users else ""


def image_urls(body: dict[str, Any]) -> list[str]:
    return [
        p["image_url"]["url"]
        for m in body.get("messages", [])
        if isinstance(m.get("content"), list)
        for p in m["content"]
        if p.get("type") == "image_url"
    ]


def _count_tokens(body: dict[str, Any], sees_images: bool = True) -> int:
    text = " ".join(t for m in body.get("messages", []) for t in _texts(m))
    return max(1, len(text) // 4) + (85 * len(image_urls(body)) if sees_images else 0)


def _schema_name(body: dict[str, Any]) -> str | None:
    rf = body.get("response_format") or {}
    return rf.get("json_schema", {}).get("name") if rf.get("type") == "json_schema" else None


def _mostly(url: str, rgb: tuple[int, int, int], tolerance: float = 40.0) -> bool:
    """Whether a data-URL image's mean colour is near rgb."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    data = base64.b64decode(url.split(",", 1)[1])
    mean = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=float).reshape(-1, 3).mean(axis=0)
    return float(np.abs(mean - np.asarray(rgb, float)).max()) < tolerance


def _wrong_types(value: Any) -> Any:
    """The same answer with every field of the wrong JSON type (strings as numbers, numbers as strings, ...)."""
    if isinstance(value, dict):
        return {k: _wrong_types(v) for k, v in value.items()}
    if isinstance(value, list):
        return {"items": value}
    if isinstance(value, bool):
        return "maybe"
    if isinstance(value, (int, float)):
        return "a lot"
    if isinstance(value, str):
        return 42
    return value


def _schema_of(body: dict[str, Any]) -> dict[str, Any] | None:
    rf = body.get("response_format") or {}
    if rf.get("type") == "json_schema":
        return rf["json_schema"]["schema"]
    if rf.get("type") == "json_object" and isinstance(rf.get("schema"), dict):  # llama.cpp's extension
        return rf["schema"]
    # JSON mode / text fallback: the client puts the schema in the prompt between <schema> tags
    for m in body.get("messages", []):
        for t in _texts(m):
            found = re.search(r"<schema>(.*?)</schema>", t, re.S)
            if found:
                return json.loads(found.group(1))
    return None


def answer_for(body: dict[str, Any]) -> Any:
    schema = _schema_of(body)
    echo = last_user_text(body)
    seed = int(_digest(body)[:8], 16)
    if schema is None:
        return {"text": echo[:200]}
    return _generate(schema, schema.get("$defs", {}), echo, random.Random(seed), "value")


ADJECTIVES = {"red", "blue", "green", "big", "small", "large", "white", "black", "grey", "gray", "young", "old"}


def article_nouns(text: str) -> list[str]:
    """'A man on a red boat' -> ['man', 'red boat']: a stand-in for an Analyzer that reads the caption."""
    tokens = re.findall(r"\w+", text.lower())
    found = []
    for k, tok in enumerate(tokens):
        if tok not in ("a", "an", "the"):
            continue
        words = []
        for w in tokens[k + 1 : k + 4]:
            if w in ("a", "an", "the"):
                break
            words.append(w)
        i = next((j for j, w in enumerate(words) if w not in ADJECTIVES), None)
        if i is None:
            continue
        phrase = f"{words[i - 1]} {words[i]}" if i else words[i]
        if phrase not in found:
            found.append(phrase)
    return found


def _generate(schema: dict[str, Any], defs: dict[str, Any], echo: str, rng: random.Random, name: str) -> Any:
    if "$ref" in schema:
        return _generate(defs[schema["$ref"].split("/")[-1]], defs, echo, rng, name)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return _generate(options[0], defs, echo, rng, name)
    if "enum" in schema:
        return schema["enum"][rng.randrange(len(schema["enum"]))]
    if "const" in schema:
        return schema["const"]
    typ = schema.get("type", "object")
    nouns = article_nouns(echo)
    if name == "subject" and typ == "string" and nouns:
        return nouns[0]
    if name == "others" and typ == "array":
        return nouns[1:]
    if typ == "object":
        props = schema.get("properties", {})
        return {k: _generate(v, defs, echo, rng, k) for k, v in props.items()}
    if typ == "array":
        n = max(schema.get("minItems", 1), min(2, schema.get("maxItems", 2)))
        return [_generate(schema.get("items", {"type": "string"}), defs, echo, rng, name) for _ in range(n)]
    if typ == "string":  # object names such as "Object 2" first (never tags), so they survive the truncation
        names = " and ".join(dict.fromkeys(re.findall(r"Object \d+", echo)))
        return f"{name}: {names + ' ' if names else ''}{echo[:400]}"
    if typ == "integer":
        lo, hi = schema.get("minimum", 0), schema.get("maximum", 100)
        return rng.randint(int(lo), int(hi))
    if typ == "number":
        lo, hi = schema.get("minimum", 0.0), schema.get("maximum", 1.0)
        return round(rng.uniform(lo, hi), 3)
    if typ == "boolean":
        return rng.random() < 0.5
    return None


def main() -> None:
    """Serve until interrupted: `python tests/support/fake_endpoint.py --latency 0.2` prints the base URL."""
    import argparse

    p = argparse.ArgumentParser(description="local OpenAI-compatible fake endpoint")
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--fault-rate", type=float, default=0.0, help="split evenly between 429, 503 and hang")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rates = {f: args.fault_rate / 3 for f in ("429", "503", "hang")} if args.fault_rate else {}
    fe = FakeEndpoint(latency_s=args.latency, fault_rates=rates, seed=args.seed).start()
    print(fe.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fe.stop()


if __name__ == "__main__":
    main()
