"""The engine's reads per video do not grow with the store: the same new clips in an empty store and in one
holding 100,000 objects read the same rows, run the same statements, and do the same work in SQLite.

Counting statements alone would not do: one statement can read every kept review of the store. So SQLite
itself is asked how many rows each statement returned (a row factory on every connection) and how many
virtual-machine steps it took (a progress handler): a scan of a big table shows as many more steps even
when it returns few rows.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter

import pytest
import sqlalchemy as sa
from engine_runs import open_store, run_engine
from prefill import prefill
from synthetic import Shape, render, write_mp4

from engine.config import load_config
from engine.registry import build_pipelines, version_context
from engine.store import Store
from engine.store.requests import NEWEST_MEASURED

STEP = 100  # SQLite VM instructions per progress-handler call
CACHE_READ = "SELECT model_calls"  # the cached answers of a batch of videos, read with their state
# The plan's measured tokens (once a run): an aggregate over each role's newest requests. Bounded, but the empty
# store has none to read, so its VM steps are checked against its bound, not against the empty store's.
PLAN_TOKENS = "SELECT (SELECT requests)"
OBJECTS = 100_000


class SqlCounter:
    """Statements, rows returned and SQLite VM steps over every SQLite connection this process opens.

    Reads are counted per kind of statement (its verb and first table). Writes are batched by the StoreIO thread
    as work happens to arrive, so their statement counts follow timing, not the store; the VM steps count their
    work whatever the batching.
    """

    def __init__(self) -> None:
        self.reads: Counter[str] = Counter()  # statement kind -> statements
        self.rows: Counter[str] = Counter()  # statement kind -> rows returned
        self.steps = 0
        self.step_kinds: Counter[str] = Counter()  # statement kind -> VM steps (reported when they differ)
        self._last = threading.local()

    def _row(self, cursor, row):
        self.rows[getattr(self._last, "kind", "?")] += 1
        return row

    def _step(self) -> int:
        self.steps += STEP
        self.step_kinds[getattr(self._last, "kind", "?")] += STEP
        return 0

    def on_connect(self, dbapi_conn, _record) -> None:
        if isinstance(dbapi_conn, sqlite3.Connection):
            dbapi_conn.row_factory = self._row
            dbapi_conn.set_progress_handler(self._step, STEP)

    def on_execute(self, conn, cursor, statement, *args) -> None:
        words = statement.split()
        froms = [i for i, w in enumerate(words) if w == "FROM"]
        table = words[froms[0] + 1] if froms else ""
        if table == "(SELECT" and len(froms) > 1:  # a subquery's: named by its table
            table = f"(SELECT {words[froms[1] + 1]})"
        self._last.kind = f"{words[0]} {table}".strip()
        if words[0] == "SELECT":
            self.reads[self._last.kind] += 1

    def deterministic(self, counter: Counter) -> Counter:
        return Counter({k: v for k, v in counter.items() if k.startswith("SELECT")})

    def __enter__(self) -> SqlCounter:
        sa.event.listen(sa.engine.Engine, "connect", self.on_connect)
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self.on_execute)
        return self

    def __exit__(self, *exc) -> None:
        sa.event.remove(sa.engine.Engine, "connect", self.on_connect)
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", self.on_execute)


def _clips(folder) -> None:
    for i, (color, rgb) in enumerate((("red", (220, 40, 40)), ("blue", (40, 80, 220)), ("green", (40, 170, 60)))):
        shapes = (
            Shape(f"{color} square", "square", rgb, 16, (0.2, 0.3), (1.5, 0.5)),
            Shape("white circle", "circle", (240, 240, 240), 12, (0.6, 0.6), (-1.0, 0.5)),
        )
        write_mp4(folder / f"clip{i}.mp4", render(20 + i, 96, 72, shapes=shapes)[0])
        (folder / f"clip{i}.txt").write_text(f"A {color} square passes a white circle and a grey box.")


@pytest.mark.timeout(600)
def test_reads_per_video_are_the_same_in_an_empty_and_a_100k_object_store(endpoint, tmp_path):
    src = tmp_path / "videos"
    src.mkdir()
    _clips(src)
    args = ("--source", str(src), "--pipelines", "short,detailed,qa")

    # the store to fill: the same configuration as the runs, so its rows are at the current lineages
    big = tmp_path / "big"
    cfg = load_config(
        environ={"ENGINE_DATA_DIR": str(big)}, overrides={"segmentor.backend": "fake_segmentor:HashSegmentor"}
    )
    vc, _ = version_context(cfg)
    store = Store(cfg.resolved_database_url)
    seconds = prefill(store, build_pipelines(["short", "detailed", "qa"]), vc, OBJECTS)
    with store.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(sa.text("objects"))) == OBJECTS
    store.dispose()
    Store(f"sqlite:///{tmp_path / 'empty' / 'engine.sqlite'}").dispose()  # migrated too, before counting

    measured = {}
    for name in ("empty", "big"):
        with SqlCounter() as counter:
            r = run_engine(endpoint, tmp_path / name, *args)
        assert r.exit_code == 0, r.output
        measured[name] = counter
    with open_store(tmp_path / "big").session() as s:
        samples = s.scalar(
            sa.select(sa.func.count())
            .select_from(sa.text("samples"))
            .where(sa.text("video_id IN (SELECT id FROM videos WHERE source_root != '/prefill')"))
        )
    e, b = measured["empty"], measured["big"]
    print(f"\nprefill {OBJECTS:,} objects: {seconds:.1f} s; samples made by the run {samples}")
    for name, c in (("empty store", e), (f"{OBJECTS:,}-object store", b)):
        print(
            f"{name}: {sum(c.deterministic(c.reads).values())} reads, {sum(c.deterministic(c.rows).values())} rows "
            f"({c.reads[CACHE_READ]} reads of cached answers, {c.rows[CACHE_READ]} rows), {c.steps:,} SQLite VM steps"
        )
    rest = (b.steps - b.step_kinds[PLAN_TOKENS]) / (e.steps - e.step_kinds[PLAN_TOKENS])
    print(f"VM steps but the plan's estimate, {OBJECTS:,}-object store / empty store: {rest:.3f}")
    grew = {k: (e.step_kinds[k], v) for k, v in b.step_kinds.items() if v > 1.15 * e.step_kinds[k] + 1000}
    print(f"statements whose VM steps grew: {grew}")
    with open_store(tmp_path / "big").session() as s:
        requests = s.scalar(sa.select(sa.func.count()).select_from(sa.text("requests")))
    roles = b.rows[PLAN_TOKENS]  # one row per role it read
    print(f"the plan's token estimate: {roles} roles, {b.step_kinds[PLAN_TOKENS]:,} VM steps, {requests:,} requests")
    assert samples > 0
    assert b.deterministic(b.reads) == e.deterministic(e.reads)  # the same statements, kind by kind
    assert b.deterministic(b.rows) == e.deterministic(e.rows)  # returning the same rows
    # no lookup call by call (answers are kept per video, 0015): the three videos' answers, read with their state
    assert b.reads[CACHE_READ] == 1 and b.rows[CACHE_READ] == 0
    # each role's newest requests, not the store's: a scan of its requests alone would take more than 10 steps each
    assert roles >= 5 and b.step_kinds[PLAN_TOKENS] <= 50 * NEWEST_MEASURED * roles < 10 * requests
    # a B-tree one level deeper costs a few steps per lookup; a scan of the filler would cost millions
    assert b.steps - b.step_kinds[PLAN_TOKENS] <= 1.15 * (e.steps - e.step_kinds[PLAN_TOKENS])
