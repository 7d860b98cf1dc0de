"""The driver's one door to the store: a thread that batches writes into few transactions and serves reads.

The driver's event loop never runs SQL. Work is queued here and done in this thread:
- `submit(ops, unit)`: one unit's writes (its results, its completion marker, its cache entries) as one group.
  A group is never split across transactions; every group waiting when a batch starts goes into it
  (up to `max_rows`), so a crash loses at most the batch being written and a resume redoes its units.
- A group the database refuses (an integrity error, a value too long) costs its unit only: the batch is
  committed again group by group, the refused unit is quarantined with the database's message, and
  `on_rejected` tells the event loop. Only store-wide faults (engine/store/faults.py) stop the writer;
  a connection that dropped is tried once more on a fresh one first.
- `flush()`: waits until everything queued before it is committed (the request log writes a
  request's row before the request leaves).
- `read(fn)`: runs `fn(session)` here, after the writes queued before it, so it sees them.
- `cached(hash, video)`: the stored answer of a video's request; lookups waiting together share one query.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.store import schema
from engine.store.db import Store
from engine.store.faults import (
    StoreError,  # noqa: F401  (re-exported: the runtime catches it from here)
    cause,
    disconnected,
    store_error,
    unit_fault,
)

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


@dataclass(frozen=True)
class UnitRef:
    """Whose rows a group holds: what is quarantined if the database refuses them."""

    unit_kind: str
    unit_id: str
    video_id: str | None
    stage: str
    lineage: str
    run_id: str | None


def failure_upsert(unit: UnitRef, code: str, message: str, attempts: int, quarantined: bool) -> Upsert:
    """A unit's failure row (one per unit, stage and lineage; a later attempt overwrites it)."""
    from engine.store.ids import stable_id

    row = dict(
        id=stable_id("failure", unit.unit_id, unit.stage, unit.lineage),
        unit_kind=unit.unit_kind,
        unit_id=unit.unit_id,
        video_id=unit.video_id,
        lineage=unit.lineage,
        stage=unit.stage,
        attempts=attempts,
        error_code=code,
        message=message[:2000],
        quarantined=quarantined,
        run_id=unit.run_id,
        updated_at=schema.utcnow(),
    )
    return Upsert(
        schema.Failure,
        [row],
        ("unit_id", "stage", "lineage"),
        ("attempts", "error_code", "message", "quarantined", "run_id", "updated_at"),
    )


@dataclass
class _Group:
    ops: list[Op]
    unit: UnitRef | None


@dataclass
class _Read:
    fn: Callable[[Session], Any]
    future: asyncio.Future


@dataclass
class _Lookup:
    key: tuple[str, str]  # (video_id, request_hash)
    future: asyncio.Future


@dataclass
class _Barrier:
    future: asyncio.Future


@dataclass
class _Batch:
    groups: list[_Group] = field(default_factory=list)
    rows: int = 0
    barriers: list[_Barrier] = field(default_factory=list)
    reads: list[_Read | _Lookup] = field(default_factory=list)


_STOP = object()


class StoreIO:
    """Create it inside the event loop that uses it; `await aclose()` commits what is queued and stops."""

    def __init__(
        self,
        store: Store,
        max_rows: int = 5000,
        linger_s: float = 0.025,
        on_rejected: Callable[[UnitRef | None, str], None] | None = None,
    ):
        self.store = store
        self.on_rejected = on_rejected  # called in the event loop: (the unit, the database's message)
        self.max_rows, self.linger_s = max_rows, linger_s
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._conn: sa.Connection | None = None  # the thread's; None while the store cannot be reached
        self.batches = 0  # transactions committed (for tests and benchmarks)
        self.cpu_s = 0.0  # CPU time this thread has used (benchmarks)
        self._thread = threading.Thread(target=self._serve, name="store-io", daemon=True)
        self._thread.start()

    # --- the event loop's side -----------------------------------------------------------------------
    def submit(self, ops: Sequence[Op], unit: UnitRef | None = None) -> None:
        self._check()
        if ops:
            self._queue.put(_Group(list(ops), unit))

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

    async def cached(self, request_hash: str, video_id: str) -> dict[str, Any] | None:
        """The stored response of a successful call with this hash from this video (schema.ModelCall), or None."""
        self._check()
        fut = self._loop.create_future()
        self._queue.put(_Lookup((video_id, request_hash), fut))
        return await fut

    async def aclose(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join)
        self._check()

    def _check(self) -> None:
        if self._error is not None:
            raise store_error(self._error, self.store.url) from self._error

    # --- the thread's side ---------------------------------------------------------------------------
    def _serve(self) -> None:
        # One connection for the thread's life: no pool checkout or session set-up per batch.
        try:
            self._conn = self.store.engine.connect()
        except Exception as e:  # noqa: BLE001  (a store that cannot be reached: raised on the loop's next call)
            log.info("the store cannot be reached", exc_info=True)
            self._error = e
        try:
            self._loop_batches()
        finally:
            if self._conn is not None:
                self._checkpoint(self._conn)
                self._conn.close()

    def _checkpoint(self, conn: sa.Connection) -> None:
        if self._error is None:
            try:
                self.store.checkpoint(conn)
            except Exception:  # noqa: BLE001  (the writes are committed; the next connection checkpoints them)
                log.info("the closing checkpoint did not run", exc_info=True)

    def _reconnect(self, old: sa.Connection) -> sa.Connection:
        log.warning("the store's connection was lost: trying once more on a fresh one")
        try:
            old.close()
        except Exception:  # noqa: BLE001  (the old connection is gone either way)
            pass
        self._conn = self.store.engine.connect()
        return self._conn

    def _retrying(self, fn: Callable[[sa.Connection], Any]) -> Any:
        """fn(conn) in a transaction; a dropped connection (a restarted server) is tried once more."""
        conn = self._conn
        if conn is None:  # the store could not be reached when the thread started: that error, to the caller
            assert self._error is not None
            raise self._error
        try:
            with conn.begin():
                return fn(conn)
        except sa.exc.DBAPIError as e:
            if not disconnected(e):
                raise
        conn = self._reconnect(conn)
        with conn.begin():
            return fn(conn)

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
                elif isinstance(item, _Group):
                    batch.groups.append(item)
                    batch.rows += sum(len(getattr(op, "rows", ())) or 1 for op in item.ops)
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
        if batch.groups and self._error is None:
            try:
                self._commit(batch.groups)
                self.batches += 1
            except Exception as e:  # noqa: BLE001  (store-wide: raised to the event loop on its next call)
                log.info("the store refused a batch", exc_info=True)  # the run log only: the console gets one line
                self._error = e
        outcomes += [(b.future, None, None) for b in batch.barriers]
        if batch.reads:
            try:
                outcomes += self._retrying(lambda conn: self._reads(conn, batch.reads))
            except Exception as e:  # noqa: BLE001  (every reader gets the store's error, as one line)
                log.info("the store refused a read", exc_info=True)
                outcomes += [(r.future, None, store_error(e, self.store.url)) for r in batch.reads]
        self._resolve(outcomes)

    def _reads(self, conn: sa.Connection, reads: list[_Read | _Lookup]) -> list:
        outcomes: list[tuple[asyncio.Future, Any, BaseException | None]] = []
        with Session(bind=conn) as s:
            lookups = [r for r in reads if isinstance(r, _Lookup)]
            if lookups:
                outcomes += self._lookup(s, lookups)
            for r in reads:
                if isinstance(r, _Read):
                    try:
                        with s.begin_nested():  # a failing read rolls back alone
                            outcomes.append((r.future, r.fn(s), None))
                    except sa.exc.DBAPIError as e:
                        if disconnected(e):
                            raise  # the whole batch of reads is tried again on a fresh connection
                        outcomes.append((r.future, None, e if unit_fault(e) else store_error(e, self.store.url)))
                    except Exception as e:  # noqa: BLE001  (the reader gets its own error)
                        outcomes.append((r.future, None, e))
        return outcomes

    def _commit(self, groups: list[_Group]) -> None:
        """The batch in one transaction; if the database refuses a row, group by group, quarantining the refused."""
        try:
            self._retrying(lambda conn: self._write(conn, groups))
            return
        except sa.exc.DBAPIError as e:
            if not unit_fault(e):
                raise
        for group in groups:
            try:
                self._retrying(partial(self._write, groups=[group]))
            except sa.exc.DBAPIError as e:
                if not unit_fault(e):
                    raise
                self._reject(group, cause(e))

    def _reject(self, group: _Group, message: str) -> None:
        """A group the database refused: its unit is quarantined with the database's message; the run goes on."""
        unit = group.unit
        tables = sorted({op.model.__tablename__ for op in group.ops})
        log.info("the store refused the rows of %s (%s): %s", unit or "no unit", ", ".join(tables), message)
        if unit is not None:
            op = failure_upsert(unit, "store_rejected", f"the store refused its rows: {message}", 1, True)
            try:
                self._retrying(lambda conn: self.store.upsert(conn, op.model, op.rows, op.conflict, op.update))
            except sa.exc.DBAPIError as e:
                if not unit_fault(e):
                    raise
                log.info("the failure row of %s was refused too: %s", unit, cause(e))  # the unit's, never the run's
        if self.on_rejected is not None:
            try:
                self._loop.call_soon_threadsafe(self.on_rejected, unit, f"{message} ({', '.join(tables)})")
            except RuntimeError:  # the loop is closed
                pass

    def _write(self, s: sa.Connection, groups: list[_Group]) -> None:
        inserts: dict[type[schema.Base], list[dict]] = defaultdict(list)
        rest: dict[type[schema.Base], list[Upsert | Update | Delete]] = defaultdict(list)  # per table, in queue order
        for group in groups:
            for op in group.ops:
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
                    if not (
                        isinstance(following, Upsert)
                        and (following.conflict, following.update) == (op.conflict, op.update)
                    ):
                        self.store.upsert(s, model, run, op.conflict, op.update)
                        run = []
                else:
                    table = model.__table__
                    assert isinstance(table, sa.Table)  # every model maps one table (typed as any FromClause)
                    where = [table.c[k] == v for k, v in op.where.items()]
                    if isinstance(op, Update):
                        s.execute(sa.update(table).where(*where).values(**op.values))
                    else:
                        s.execute(sa.delete(table).where(*where))

    def _lookup(self, s: Session, lookups: list[_Lookup]) -> list[tuple[asyncio.Future, Any, BaseException | None]]:
        keys = sorted({x.key for x in lookups})
        mc = schema.ModelCall
        try:
            with s.begin_nested():
                found: dict[tuple[str, str], Any] = {
                    (video, rhash): response
                    for video, rhash, response in s.execute(
                        sa.select(mc.video_id, mc.request_hash, mc.response).where(
                            sa.tuple_(mc.video_id, mc.request_hash).in_(keys), mc.status == "ok"
                        )
                    )
                }
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
