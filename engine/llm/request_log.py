"""Where model calls are remembered: the cache of answers and the request log, kept apart.

- The cache (`model_calls`): one row per canonical request hash holding a successful answer, so a
  repeated call is answered without any HTTP request.
- The request log (`requests`): one row per HTTP request, written before the request leaves and
  completed when its answer arrives: attempts, retries, repairs, probes and re-sends after a crash
  all count, with the tokens the answer's `usage` reported (unknown, never zero, when it reported
  none or never arrived).

The client talks to both through small protocols, so the same client runs against the store (through
the driver's StoreIO thread) or in memory (tests, benchmarks).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol

from engine.store import schema
from engine.store.io import Delete, Insert, StoreIO, Upsert
from engine.store.requests import REQUEST_COLUMNS
from engine.store.requests import RoleTotals as RoleTotals  # re-exported: callers import the totals from here
from engine.store.requests import request_totals as request_totals


def _video(scope: str | None) -> str:
    """The model_calls.video_id of a call from `scope` (None: outside any video)."""
    return scope or schema.NO_VIDEO


class Cache(Protocol):
    async def get(self, request_hash: str, scope: str | None = None) -> dict[str, Any] | None:
        """The stored response of a successful call with this hash from this scope (a video id; None: a call
        outside any video), or None."""

    def put(self, row: dict[str, Any]) -> None:
        """Keep a successful call's answer (a model_calls row; its video_id is the scope)."""

    def invalidate(self, request_hash: str, scope: str | None = None) -> None:
        """An answer the agent could not use: never serve it again."""


class RequestLog(Protocol):
    async def sent(self, row: dict[str, Any]) -> None:
        """Record a request before it leaves; returns once the record is durable."""

    def answered(self, row: dict[str, Any]) -> None:
        """Complete a request's record (status, tokens, latency, the raw answer on failure)."""

    def withdraw(self, request_id: str) -> None:
        """Remove the record of a request that never left (the run was stopped just before it)."""


class Meter(Protocol):
    """Who counts the calls as they happen (the run's tally: engine/runtime/tally.py)."""

    def request(self, row: dict[str, Any]) -> None:
        """A request-log row, complete: its status, tokens, cost and latency."""

    def cache_hit(self, role: str) -> None:
        """A call answered from the cache, with no request."""


class StoreCache:
    """The store's cache through the StoreIO thread.

    The runtime preloads each in-flight video's answers with the video's state (`preload`): answers are kept per
    video (schema.ModelCall), so a call from a preloaded video is answered, or known to be new, without a query.
    Answers stored in this run are kept too, for a while: an identical call from another video is answered from
    them and stored under that video as well, so its own answers stay complete. Calls from elsewhere are looked up.
    """

    RECENT = 20_000  # answers of this run kept in memory (model_calls rows), newest last

    def __init__(self, io: StoreIO):
        self.io = io
        self._preloaded: dict[str, dict[str, Any]] = {}
        self._recent: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def preload(self, scope: str, answers: dict[str, Any]) -> None:
        self._preloaded[scope] = answers

    def release(self, scope: str) -> None:
        self._preloaded.pop(scope, None)

    async def get(self, request_hash: str, scope: str | None = None) -> dict[str, Any] | None:
        video = _video(scope)
        answers = self._preloaded.get(video)
        if answers is not None and request_hash in answers:
            return answers[request_hash]
        row = self._recent.get(request_hash)
        if row is not None:
            if row["video_id"] != video:  # another video asked first: this video keeps its own copy
                self.put({**row, "video_id": video})
            return row["response"]
        if answers is not None:  # the video's answers are all here: a new call
            return None
        return await self.io.cached(request_hash, video)

    def put(self, row: dict[str, Any]) -> None:
        video = _video(row.get("video_id"))
        row = {**row, "video_id": video}
        self._recent[row["request_hash"]] = row
        self._recent.move_to_end(row["request_hash"])
        while len(self._recent) > self.RECENT:
            self._recent.popitem(last=False)
        if video in self._preloaded:
            self._preloaded[video][row["request_hash"]] = row["response"]
        self.io.submit([Insert(schema.ModelCall, [row])])  # an answer already stored stays

    def invalidate(self, request_hash: str, scope: str | None = None) -> None:
        video = _video(scope)
        self._recent.pop(request_hash, None)
        self._preloaded.get(video, {}).pop(request_hash, None)
        self.io.submit([Delete(schema.ModelCall, {"video_id": video, "request_hash": request_hash})])


class StoreRequestLog:
    def __init__(self, io: StoreIO):
        self.io = io

    async def sent(self, row: dict[str, Any]) -> None:
        self.io.submit([Insert(schema.Request, [row])])
        await self.io.flush()

    def answered(self, row: dict[str, Any]) -> None:
        self.io.submit([Upsert(schema.Request, [row], ("id",), tuple(k for k in row if k != "id"))])

    def withdraw(self, request_id: str) -> None:
        self.io.submit([Delete(schema.Request, {"id": request_id})])


class MemoryCache:
    """Answers kept in memory, per scope as the store keeps them (tests, benchmarks)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}

    async def get(self, request_hash: str, scope: str | None = None) -> dict[str, Any] | None:
        row = self.rows.get((_video(scope), request_hash))
        return row["response"] if row else None

    def put(self, row: dict[str, Any]) -> None:
        self.rows[(_video(row.get("video_id")), row["request_hash"])] = dict(row)

    def invalidate(self, request_hash: str, scope: str | None = None) -> None:
        self.rows.pop((_video(scope), request_hash), None)


class MemoryLog:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    async def sent(self, row: dict[str, Any]) -> None:
        self.rows[row["id"]] = dict(row)

    def answered(self, row: dict[str, Any]) -> None:
        self.rows[row["id"]] = {**self.rows.get(row["id"], {}), **row}

    def withdraw(self, request_id: str) -> None:
        self.rows.pop(request_id, None)


# --- totals ----------------------------------------------------------------------------------------


def add_totals(rows: list[RoleTotals], role: str = "total") -> RoleTotals:
    n = sum(t.requests for t in rows)
    return RoleTotals(
        role,
        n,
        sum(t.ok for t in rows),
        sum(t.failed for t in rows),
        sum(t.unanswered for t in rows),
        sum(t.tokens_unknown for t in rows),
        sum(t.tokens_in for t in rows),
        sum(t.tokens_out for t in rows),
        sum(t.cost_usd for t in rows),
        sum(t.mean_latency_s * t.requests for t in rows) / n if n else 0.0,
    )


def request_columns(row: dict[str, Any]) -> dict[str, Any]:
    """A request row with exactly the table's columns (the client may carry more)."""
    return {k: row[k] for k in REQUEST_COLUMNS if k in row}
