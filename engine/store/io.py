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
class Delete:
    model: type[schema.Base]
    where: dict[str, Any]  # column == value, all of them


Op = Insert | Upsert | Delete


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

    def __init__(self, store: Store, max_rows: int = 5000):
        self.store = store
        self.max_rows = max_rows
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self.batches = 0  # transactions committed (for tests and benchmarks)
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
        stop = False
        while not stop:
            batch = _Batch()
            item = self._queue.get()
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
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._run(batch)

    def _run(self, batch: _Batch) -> None:
        if batch.groups and self._error is None:
            try:
                with self.store.session() as s:
                    self._write(s, batch.groups)
                self.batches += 1
            except Exception as e:  # noqa: BLE001  (kept, raised to the event loop on its next call)
                log.exception("store batch failed")
                self._error = e
        for b in batch.barriers:
            self._resolve(b.future, None)
        lookups = [r for r in batch.reads if isinstance(r, _Lookup)]
        if lookups:
            self._lookup(lookups)
        for r in batch.reads:
            if isinstance(r, _Read):
                try:
                    with self.store.session() as s:
                        value = r.fn(s)
                except Exception as e:  # noqa: BLE001  (the reader gets its own error)
                    self._resolve(r.future, error=e)
                else:
                    self._resolve(r.future, value)

    def _write(self, s: Session, groups: list[list[Op]]) -> None:
        inserts: dict[type, list[dict]] = defaultdict(list)
        rest: list[Op] = []
        for group in groups:
            for op in group:
                if isinstance(op, Insert):
                    inserts[op.model].extend(op.rows)
                else:
                    rest.append(op)
        for model in sorted(inserts, key=lambda m: _TABLE_ORDER[m.__tablename__]):
            self.store.insert_many(s, model, inserts[model])
        for op in rest:
            if isinstance(op, Upsert):
                self.store.upsert(s, op.model, op.rows, op.conflict, op.update)
            else:
                cols = op.model.__table__.c
                s.execute(sa.delete(op.model).where(*(cols[k] == v for k, v in op.where.items())))

    def _lookup(self, lookups: list[_Lookup]) -> None:
        keys = sorted({x.key for x in lookups})
        mc = schema.ModelCall
        try:
            with self.store.session() as s:
                found = dict(s.execute(sa.select(mc.request_hash, mc.response)
                                       .where(mc.request_hash.in_(keys), mc.status == "ok")).all())
        except Exception as e:  # noqa: BLE001
            for x in lookups:
                self._resolve(x.future, error=e)
            return
        for x in lookups:
            self._resolve(x.future, found.get(x.key))

    def _resolve(self, fut: asyncio.Future, value: Any = None, error: BaseException | None = None) -> None:
        def done() -> None:
            if not fut.done():
                fut.set_exception(error) if error is not None else fut.set_result(value)

        try:
            self._loop.call_soon_threadsafe(done)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass
