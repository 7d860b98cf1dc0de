"""The driver's one door to the store: a thread that batches writes into few transactions and serves reads.

The driver's event loop never runs SQL. Work is queued here and done in this thread:
- `submit(ops)`: one unit's writes (its results, its completion marker, its cache entries) as one group.
  A group is never split across transactions; every group waiting when a batch starts goes into it
  (up to `max_rows`), so a crash loses at most the batch being written and a resume redoes its units.
- `flush()`: waits until everything queued before it is committed (the request log writes a
  request's row before the request leaves).
- `read(fn)`: runs `fn(session)` here, after the writes queued before it, so it sees them.
- `cached(key)`: the stored answer for a request hash; lookups waiting together share one query.

Within a batch, insert-ignores run first, table by table in foreign-key order, one executemany each;
upserts and deletes follow in the order they were queued. Insert-ignore commutes with them for every
use here (a row is only ever upserted or deleted after it was first inserted).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.store import schema
from engine.store.db import Store

log = logging.getLogger(__name__)
_TABLE_ORDER = {t.name: i for i, t in enumerate(schema.Base.metadata.sorted_tables)}


@dataclass(frozen=True)
class Insert:
    """Insert rows, skipping those whose key or unique constraint already exists."""

    model: type[schema.Base]
    rows: Sequence[dict[str, Any]]


@dataclass(frozen=True)
class Upsert:
    model: type[schema.Base]
    rows: Sequence[dict[str, Any]]
    conflict: tuple[str, ...]
    update: tuple[str, ...]


@dataclass(frozen=True)
class Update:
    model: type[schema.Base]
    where: dict[str, Any]  # column == value, all of them
    values: dict[str, Any]


@dataclass(frozen=True)
class Delete:
    model: type[schema.Base]
    where: dict[str, Any]  # column == value, all of them


Op = Insert | Upsert | Update | Delete


class StoreError(RuntimeError):
    """A batch could not be written: the run must stop (the store refused what the engine wrote)."""


@dataclass
class _Read:
    fn: Callable[[Session], Any]
    future: asyncio.Future


@dataclass
class _Lookup:
    key: str
    future: asyncio.Future


@dataclass
class _Barrier:
    future: asyncio.Future


@dataclass
class _Batch:
    groups: list[list[Op]] = field(default_factory=list)
    rows: int = 0
    barriers: list[_Barrier] = field(default_factory=list)
    reads: list[_Read | _Lookup] = field(default_factory=list)


_STOP = object()


class StoreIO:
    """Create it inside the event loop that uses it; `await aclose()` commits what is queued and stops."""

    def __init__(self, store: Store, max_rows: int = 5000, linger_s: float = 0.025):
        self.store = store
        self.max_rows, self.linger_s = max_rows, linger_s
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self.batches = 0  # transactions committed (for tests and benchmarks)
        self.cpu_s = 0.0  # CPU time this thread has used (benchmarks)
        self._thread = threading.Thread(target=self._serve, name="store-io", daemon=True)
        self._thread.start()

    # --- the event loop's side -----------------------------------------------------------------------
    def submit(self, ops: Sequence[Op]) -> None:
        self._check()
        if ops:
            self._queue.put(list(ops))

    def insert(self, model: type[schema.Base], rows: Sequence[dict[str, Any]]) -> None:
        self.submit([Insert(model, rows)])

    async def flush(self) -> None:
        """Wait until every write queued so far is committed."""
        self._check()
        fut = self._loop.create_future()
        self._queue.put(_Barrier(fut))
        await fut

    async def read(self, fn: Callable[[Session], Any]) -> Any:
        self._check()
        fut = self._loop.create_future()
        self._queue.put(_Read(fn, fut))
        return await fut

    async def cached(self, request_hash: str) -> dict[str, Any] | None:
        """The stored response of a successful call with this hash, or None."""
        self._check()
        fut = self._loop.create_future()
        self._queue.put(_Lookup(request_hash, fut))
        return await fut

    async def aclose(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join)
        self._check()

    def _check(self) -> None:
        if self._error is not None:
            raise StoreError(f"writing to the store failed: {type(self._error).__name__}: {self._error}") from self._error

    # --- the thread's side ---------------------------------------------------------------------------
    def _serve(self) -> None:
        # One connection for the thread's life: no pool checkout or session set-up per batch.
        with self.store.engine.connect() as conn:
            self._conn = conn
            self._loop_batches()

    def _loop_batches(self) -> None:
        stop = False
        while not stop:
            batch = _Batch()
            item = self._queue.get()
            # Group commit: the batch stays open for linger_s after its first item, so many units' rows and
            # many requests' log rows share one transaction (a waiter waits at most that long).
            deadline = time.monotonic() + self.linger_s
            while True:
                if item is _STOP:
                    stop = True
                elif isinstance(item, list):
                    batch.groups.append(item)
                    batch.rows += sum(len(getattr(op, "rows", ())) or 1 for op in item)
                elif isinstance(item, _Barrier):
                    batch.barriers.append(item)
                else:
                    batch.reads.append(item)
                if stop or batch.rows >= self.max_rows:
                    break
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
            t0 = time.thread_time()
            self._run(batch)
            self.cpu_s += time.thread_time() - t0

    def _run(self, batch: _Batch) -> None:
        outcomes: list[tuple[asyncio.Future, Any, BaseException | None]] = []
        conn = self._conn
        if batch.groups and self._error is None:
            try:
                with conn.begin():
                    self._write(conn, batch.groups)
                self.batches += 1
            except Exception as e:  # noqa: BLE001  (kept, raised to the event loop on its next call)
                log.exception("store batch failed")
                self._error = e
        outcomes += [(b.future, None, None) for b in batch.barriers]
        if batch.reads:
            with conn.begin(), Session(bind=conn) as s:
                lookups = [r for r in batch.reads if isinstance(r, _Lookup)]
                if lookups:
                    outcomes += self._lookup(s, lookups)
                for r in batch.reads:
                    if isinstance(r, _Read):
                        try:
                            with s.begin_nested():  # a failing read rolls back alone
                                outcomes.append((r.future, r.fn(s), None))
                        except Exception as e:  # noqa: BLE001  (the reader gets its own error)
                            outcomes.append((r.future, None, e))
        self._resolve(outcomes)

    def _write(self, s: sa.Connection, groups: list[list[Op]]) -> None:
        inserts: dict[type, list[dict]] = defaultdict(list)
        rest: dict[type, list[Op]] = defaultdict(list)  # per table, in queue order
        for group in groups:
            for op in group:
                if isinstance(op, Insert):
                    inserts[op.model].extend(op.rows)
                else:
                    rest[op.model].append(op)
        for model in sorted(inserts, key=lambda m: _TABLE_ORDER[m.__tablename__]):
            self.store.insert_many(s, model, inserts[model])
        # Upserts and deletes of one table keep their order; a run of upserts with one rule is one executemany.
        for model, ops in rest.items():
            run: list[dict] = []
            for i, op in enumerate(ops):
                if isinstance(op, Upsert):
                    run.extend(op.rows)
                    following = ops[i + 1] if i + 1 < len(ops) else None
                    if not (isinstance(following, Upsert) and (following.conflict, following.update) ==
                            (op.conflict, op.update)):
                        self.store.upsert(s, model, run, op.conflict, op.update)
                        run = []
                else:
                    cols = model.__table__.c
                    where = [cols[k] == v for k, v in op.where.items()]
                    if isinstance(op, Update):
                        s.execute(sa.update(model.__table__).where(*where).values(**op.values))
                    else:
                        s.execute(sa.delete(model.__table__).where(*where))

    def _lookup(self, s: Session, lookups: list[_Lookup]) -> list[tuple[asyncio.Future, Any, BaseException | None]]:
        keys = sorted({x.key for x in lookups})
        mc = schema.ModelCall
        try:
            with s.begin_nested():
                found = dict(s.execute(sa.select(mc.request_hash, mc.response)
                                       .where(mc.request_hash.in_(keys), mc.status == "ok")).all())
        except Exception as e:  # noqa: BLE001
            return [(x.future, None, e) for x in lookups]
        return [(x.future, found.get(x.key), None) for x in lookups]

    def _resolve(self, outcomes: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
        """Settle a batch's futures with one wake-up of the event loop."""
        if not outcomes:
            return

        def settle() -> None:
            for fut, value, error in outcomes:
                if not fut.done():
                    fut.set_exception(error) if error is not None else fut.set_result(value)

        try:
            self._loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass
