"""What a run has done so far, counted in the driver as it happens.

Plain counters, cheap enough to update on every unit and request (a dict increment); the heartbeat's live
snapshot (`engine status --follow`, the Runs page) and the Prometheus endpoint (engine/runtime/metrics.py) both
read them, so the two never disagree. Nothing here knows Prometheus.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# A unit is a stage's work on one video (or clip): done (it stored its results), skipped (its results were current:
# nothing to do); or a failure of a stage's work on a video or on one of its objects: failed (an attempt failed; it
# is tried again while runtime.max_unit_attempts lasts), quarantined (its last attempt failed, or it was quarantined
# before: given up until --retry-failed)
UNIT_OUTCOMES = ("done", "failed", "quarantined", "skipped")
REQUEST_OUTCOMES = ("ok", "error", "cache_hit")  # ok/error: a request-log row; cache_hit: answered with none
OBJECT_STATES = ("found", "grounded", "gated", "reviewed", "kept")  # gated: a masklet quality gate stopped it
# wall time of a unit (seconds): a cached caption takes milliseconds, a segmentation of a long clip minutes
STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0, 120.0)
HISTORY_POINTS = 240  # the throughput history keeps at most this many points: every other one goes when full


@dataclass
class Histogram:
    """Counts per bucket (not cumulative: the exporter adds them up), their sum and number."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = self.counts or [0] * (len(self.bounds) + 1)  # the last one is +Inf

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.n += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """[(upper bound, observations at most that)], ending with +Inf: Prometheus's buckets."""
        out, acc = [], 0
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts):
            acc += count
            out.append((bound, acc))
        return out


@dataclass
class RunTally:
    units: Counter[tuple[str, str]] = field(default_factory=Counter)  # (stage, outcome)
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)  # (role, outcome)
    tokens: Counter[tuple[str, str]] = field(default_factory=Counter)  # (role, "in" | "out")
    cost_usd: Counter[str] = field(default_factory=Counter)  # role -> dollars (a float counter)
    samples: Counter[str] = field(default_factory=Counter)  # data type -> samples written by this run
    objects: Counter[str] = field(default_factory=Counter)  # OBJECT_STATES -> objects this run took there
    failures: Counter[str] = field(default_factory=Counter)  # error code -> failed attempts (retried or given up)
    stage_seconds: dict[str, Histogram] = field(default_factory=dict)
    request_seconds: dict[str, Histogram] = field(default_factory=dict)
    videos_in_flight: int = 0
    history: list[tuple[float, int, int]] = field(default_factory=list)  # (seconds since start, units, objects)

    # --- what happened -------------------------------------------------------------------------------
    def unit(self, stage: str, outcome: str) -> None:
        self.units[stage, outcome] += 1

    def failed(self, stage: str, code: str, quarantined: bool) -> None:
        """A unit's attempt failed with this error code (the last one: quarantined)."""
        self.unit(stage, "quarantined" if quarantined else "failed")
        self.failures[code] += 1

    def stage_seconds_of(self, stage: str, seconds: float) -> None:
        """The wall time of a stage on one video (or clip), however it ended."""
        h = self.stage_seconds.get(stage)
        if h is None:
            h = self.stage_seconds[stage] = Histogram(STAGE_BUCKETS)
        h.observe(seconds)

    def request(self, row: Mapping[str, Any]) -> None:
        """A request-log row, once its answer (or error) is known."""
        role = row["role"]
        self.requests[role, "ok" if row.get("status") == "ok" else "error"] += 1
        if row.get("tokens_in") is not None:
            self.tokens[role, "in"] += row["tokens_in"]
            self.tokens[role, "out"] += row["tokens_out"] or 0
        if row.get("cost_usd"):
            self.cost_usd[role] += row["cost_usd"]
        if row.get("latency_s") is not None:
            h = self.request_seconds.get(role)
            if h is None:
                h = self.request_seconds[role] = Histogram(REQUEST_BUCKETS)
            h.observe(row["latency_s"])

    def cache_hit(self, role: str) -> None:
        self.requests[role, "cache_hit"] += 1

    def saved(self, table: str, records: Iterable[Any]) -> None:
        """Records a unit saved: objects found, masklets (grounded), reviews (reviewed, kept), samples."""
        if table == "objects":
            self.objects["found"] += sum(1 for _ in records)
        elif table == "masklets":
            self.objects["grounded"] += sum(1 for _ in records)
        elif table == "gates":
            self.objects["gated"] += sum(not r.passed for r in records)
        elif table == "reviews":
            for r in records:
                self.objects["reviewed"] += 1
                self.objects["kept"] += bool(r.verdict)
        elif table == "samples":
            for r in records:
                self.samples[r.data_type] += 1

    def beat(self, seconds: float, units_done: int) -> None:
        """One point of the throughput history (each heartbeat)."""
        self.history.append((round(seconds, 1), units_done, self.objects["found"]))
        if len(self.history) > HISTORY_POINTS:
            self.history = [*self.history[:-1:2], self.history[-1]]  # the newest point stays

    # --- what it adds up to --------------------------------------------------------------------------
    def roles(self) -> dict[str, dict[str, Any]]:
        names = sorted({r for r, _ in self.requests} | {r for r, _ in self.tokens} | set(self.cost_usd))
        return {
            r: {
                "requests": self.requests[r, "ok"] + self.requests[r, "error"],
                "ok": self.requests[r, "ok"],
                "errors": self.requests[r, "error"],
                "cache_hits": self.requests[r, "cache_hit"],
                "tokens_in": self.tokens[r, "in"],
                "tokens_out": self.tokens[r, "out"],
                "cost_usd": round(self.cost_usd[r], 6),
            }
            for r in names
        }

    def snapshot(self) -> dict[str, Any]:
        """The tally's part of the live snapshot (the executor adds the stages' done/total and the pace)."""
        return {
            "objects": {s: self.objects[s] for s in OBJECT_STATES},
            "samples": dict(self.samples),
            "failures": dict(self.failures),
            "roles": self.roles(),
            "stage_seconds": {s: [h.n, round(h.total, 3)] for s, h in self.stage_seconds.items()},
            "videos_in_flight": self.videos_in_flight,
            "history": [list(p) for p in self.history],
        }
