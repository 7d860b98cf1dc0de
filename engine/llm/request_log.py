"""Where model calls are remembered: the cache of successful answers and the cost ledger.

The client talks to a ledger through two methods (`lookup`, `record`), so the same client works
in the driver against the SQL store, and in a Ray actor against a ledger that hands records back
to the driver (the driver is the store's single writer).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa

from engine.store import schema
from engine.store.ids import stable_id
from engine.store import Store


class CallLedger(Protocol):
    def lookup(self, request_hash: str) -> dict[str, Any] | None:
        """The stored response of a successful call with this hash, or None."""

    def record(self, row: dict[str, Any]) -> None:
        """Keep one call's outcome (a model_calls row without id)."""


def call_row_id(request_hash: str) -> str:
    return stable_id("model_call", request_hash)


class StoreLedger:
    """A ledger on the SQL store. A failed call's row is overwritten when the call later succeeds."""

    def __init__(self, store: Store):
        self.store = store

    def lookup(self, request_hash: str) -> dict[str, Any] | None:
        with self.store.session() as s:
            row = s.execute(
                sa.select(schema.ModelCall.response).where(
                    schema.ModelCall.request_hash == request_hash, schema.ModelCall.status == "ok"
                )
            ).first()
        return row[0] if row else None

    def invalidate(self, request_hash: str, error: str) -> None:
        """A stored answer the agent could not use: never serve it from the cache again."""
        with self.store.session() as s:
            s.execute(sa.update(schema.ModelCall).where(schema.ModelCall.request_hash == request_hash)
                      .values(status="invalid", error=error[:2000]))

    def record(self, row: dict[str, Any]) -> None:
        full = {"id": call_row_id(row["request_hash"]), **row}
        update = [k for k in full if k not in ("id", "request_hash")]
        with self.store.session() as s:
            self.store.upsert(s, schema.ModelCall, [full], conflict=("request_hash",), update=update)


class MemoryLedger:
    """A ledger in memory: for tests, and for actors that send their records to the driver."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def lookup(self, request_hash: str) -> dict[str, Any] | None:
        row = self.rows.get(request_hash)
        return row["response"] if row and row["status"] == "ok" else None

    def record(self, row: dict[str, Any]) -> None:
        with self._lock:
            self.rows[row["request_hash"]] = dict(row)


@dataclass
class CallTotals:
    agent: str
    calls: int
    ok: int
    failed: int
    tokens_in: int
    tokens_out: int
    cost_usd: float
    mean_latency_s: float


def call_totals(store: Store, run_id: str | None = None) -> list[CallTotals]:
    """Per-agent totals over the store's model calls, optionally for one run."""
    mc = schema.ModelCall
    query = sa.select(
        mc.agent, sa.func.count(), sa.func.sum(sa.case((mc.status == "ok", 1), else_=0)),
        sa.func.sum(mc.tokens_in), sa.func.sum(mc.tokens_out), sa.func.sum(mc.cost_usd), sa.func.avg(mc.latency_s),
    ).group_by(mc.agent).order_by(mc.agent)
    if run_id is not None:
        query = query.where(mc.run_id == run_id)
    with store.session() as s:
        rows = s.execute(query).all()
    return [
        CallTotals(agent, n, int(ok or 0), n - int(ok or 0), int(tin or 0), int(tout or 0), float(cost or 0),
                   float(lat or 0))
        for agent, n, ok, tin, tout, cost, lat in rows
    ]
