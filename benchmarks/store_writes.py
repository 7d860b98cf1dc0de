"""The store's own cost per object, apart from Ray and the event loop: a run's writes replayed into a store.

    .venv/bin/python benchmarks/store_writes.py record --out /tmp/writes [--videos 96]
    .venv/bin/python benchmarks/store_writes.py replay --writes /tmp/writes --prefill-dir /tmp/prefill1m [--repeat 3]
    .venv/bin/python benchmarks/store_writes.py pages --writes /tmp/writes --prefill-dir /tmp/prefill1m

`record` runs the detailed pipeline once (the stand-in endpoint and segmentor of pipeline_throughput.py) and
keeps what the driver's store thread wrote, transaction by transaction, with a snapshot of the store taken when
the workers were ready (the run row, the videos). `replay` applies those transactions, with the same boundaries,
to a copy of an empty store and to a copy of a pre-filled one (pipeline_throughput.py --prefill-dir makes it),
alternating, and prints the store thread's CPU, bytes written and WAL frames per object for both. The runs of
pipeline_throughput.py vary by a quarter with the machine; this isolates the part the store's size can change.
`pages` replays them once into each store with automatic checkpoints off, and maps every WAL frame to the table or
index whose page it holds (SQLite's dbstat): which b-trees the store's size makes the writes touch.
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from pipeline_throughput import AGENTS, copy_as_written, make_source, start_endpoint  # noqa: E402

from engine.api import Engine, RunObserver  # noqa: E402
from engine.config import load_config  # noqa: E402
from engine.store import Store, schema  # noqa: E402
from engine.store.io import StoreIO, _Group  # noqa: E402

OVERRIDES = {
    "segmentor.backend": "fake_segmentor:HashSegmentor",
    "ray.resources": {"segmentor": {"num_gpus": 0, "num_cpus": 0.5}, "media": {"num_cpus": 0.5, "max_concurrency": 4}},
    "runtime.videos_in_flight": 48,
    "split.detector": "none",
    **{f"agents.{a}.max_concurrent": 32 for a in AGENTS},
}


class _Snapshot(RunObserver):
    def __init__(self, db: Path, out: Path):
        self.db, self.out, self.taken = db, out, False

    def actors_ready(self, pids: dict[str, list[int]]) -> None:
        src, dst = sqlite3.connect(self.db), sqlite3.connect(self.out)
        src.backup(dst)
        src.close(), dst.close()
        self.taken = True


def record(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ["FAKE_SEGMENTOR_S_PER_FRAME"] = "0"
    endpoint, url = start_endpoint(0.001)
    batches: list[list] = []
    original = StoreIO._write

    def recording(self, s, groups):
        if snap.taken:
            batches.append([g.ops for g in groups])
        return original(self, s, groups)

    StoreIO._write = recording  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "videos"
            src.mkdir()
            make_source(src, args.videos)
            data = Path(tmp) / "data"
            cfg = load_config(environ={}, overrides={"data_dir": str(data), **OVERRIDES})
            snap = _Snapshot(data / "engine.sqlite", out / "before.sqlite")
            environ = {"OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": url}
            engine = Engine(cfg, observer=snap, environ=environ)
            result = engine.run(src, ["detailed"])
            if result.exit_code:
                raise SystemExit(f"the run did not finish cleanly: {result.sentence}")
            with engine.store.session() as q:
                objects = q.query(schema.Masklet).count()  # a fresh store: all of them are this run's
    finally:
        StoreIO._write = original  # type: ignore[method-assign]
        endpoint.terminate()
    (out / "writes.pickle").write_bytes(pickle.dumps({"objects": objects, "batches": batches}))
    rows = sum(len(getattr(op, "rows", ())) or 1 for b in batches for ops in b for op in ops)
    print(f"recorded {len(batches)} transactions, {rows} rows, for {objects} objects in {out}")


def _merge(target: Path, before: Path) -> None:
    """The snapshot's rows (the run, its videos) into the target store, as they were when the workers started."""
    con = sqlite3.connect(target)
    con.execute("ATTACH ? AS snap", (str(before),))
    for table in schema.Base.metadata.sorted_tables:
        if table.name != "alembic_version":
            con.execute(f"INSERT OR IGNORE INTO main.{table.name} SELECT * FROM snap.{table.name}")
    con.commit()
    con.execute("DETACH snap")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


class _Writer:
    """StoreIO's transaction body, on a connection of our own (its _write reads only .store)."""

    def __init__(self, store: Store):
        self.store = store

    write = StoreIO._write


def replay_once(db: Path, data: dict) -> dict[str, float]:
    store = Store(f"sqlite:///{db}")
    writer = _Writer(store)
    groups = [[_Group(ops, None) for ops in batch] for batch in data["batches"]]
    proc = psutil.Process()
    with store.engine.connect() as conn:
        w0, t0, c0 = proc.io_counters().write_bytes, time.perf_counter(), time.thread_time()
        k0 = resource.getrusage(resource.RUSAGE_THREAD).ru_stime
        for batch in groups:
            with conn.begin():
                writer.write(conn, batch)
        store.checkpoint(conn)  # as StoreIO does when a run ends
        cpu, wall, written = time.thread_time() - c0, time.perf_counter() - t0, proc.io_counters().write_bytes - w0
        kernel = resource.getrusage(resource.RUSAGE_THREAD).ru_stime - k0
    store.dispose()
    n = data["objects"]
    return dict(cpu_ms=cpu / n * 1000, kernel_ms=kernel / n * 1000, wall_ms=wall / n * 1000, kib=written / n / 1024)


def replay(args: argparse.Namespace) -> None:
    writes = Path(args.writes)
    data = pickle.loads((writes / "writes.pickle").read_bytes())
    prefilled = Path(args.prefill_dir) / "engine.sqlite"
    results: dict[str, list[dict[str, float]]] = {"empty": [], "full": []}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for r in range(args.repeat):
            for kind in ("empty", "full") if r % 2 == 0 else ("full", "empty"):
                db = Path(tmp) / f"{kind}{r}.sqlite"
                if kind == "full":
                    copy_as_written(str(prefilled), str(db))
                else:
                    Store(f"sqlite:///{db}").dispose()  # migrated, empty
                _merge(db, writes / "before.sqlite")
                os.sync()
                results[kind].append(replay_once(db, data))
                db.unlink()
                for extra in ("-wal", "-shm"):
                    Path(str(db) + extra).unlink(missing_ok=True)
    print(f"{len(data['batches'])} transactions for {data['objects']} objects, replayed {args.repeat} times each")
    for kind, rs in results.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        each = ", ".join(f"{r['cpu_ms']:.2f}" for r in rs)
        print(
            f"{kind:6} store thread CPU {med['cpu_ms']:.2f} ms/object (each: "
            f"{each}; in the kernel {med['kernel_ms']:.2f}), wall {med['wall_ms']:.2f} ms, "
            f"wrote {med['kib']:.0f} KiB/object"
        )
    ratios = [f["cpu_ms"] / e["cpu_ms"] for e, f in zip(results["empty"], results["full"])]
    print(
        f"store thread CPU, pre-filled / empty: {statistics.median(ratios):.3f} "
        f"(each: {', '.join(f'{x:.3f}' for x in ratios)})"
    )


def _wal_pages(wal: Path, page_size: int) -> list[int]:
    """The page number of each frame of a WAL file (a 32-byte header, then frames of a 24-byte header and a page)."""
    data, out = wal.read_bytes(), []
    for off in range(32, len(data) - 24 - page_size + 1, 24 + page_size):
        out.append(int.from_bytes(data[off : off + 4], "big"))
    return out


def pages_once(db: Path, data: dict) -> tuple[Counter[str], Counter[str]]:
    """Replay into `db` with the WAL kept whole; (frames, distinct pages) per b-tree."""
    store = Store(f"sqlite:///{db}")
    writer = _Writer(store)
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")  # every frame stays in the WAL
        conn.commit()
        for batch in data["batches"]:
            with conn.begin():
                writer.write(conn, [_Group(ops, None) for ops in batch])
        con = sqlite3.connect(db)  # a reader sees the WAL's pages; dbstat names each page's b-tree
        frames = _wal_pages(Path(f"{db}-wal"), con.execute("PRAGMA page_size").fetchone()[0])
        wanted = set(frames)
        owner = {pageno: name for name, pageno in con.execute("SELECT name, pageno FROM dbstat") if pageno in wanted}
        con.close()
    store.dispose()
    return Counter(owner.get(p, "?") for p in frames), Counter(owner.get(p, "?") for p in wanted)


def pages(args: argparse.Namespace) -> None:
    writes = Path(args.writes)
    data = pickle.loads((writes / "writes.pickle").read_bytes())
    n = data["objects"]
    counts = {}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for kind in ("empty", "full"):
            db = Path(tmp) / f"{kind}.sqlite"
            if kind == "full":
                copy_as_written(str(Path(args.prefill_dir) / "engine.sqlite"), str(db))
            else:
                Store(f"sqlite:///{db}").dispose()
            _merge(db, writes / "before.sqlite")
            counts[kind] = pages_once(db, data)
            for p in Path(tmp).glob(f"{kind}.sqlite*"):
                p.unlink()
    (ef, ep), (ff, fp) = counts["empty"], counts["full"]
    print(f"per object ({n} objects), in the empty and the pre-filled store:")
    print(f"{'b-tree':40}{'WAL frames':>16}{'distinct pages':>18}")
    print(f"{'all b-trees':40}{ef.total() / n:8.2f}{ff.total() / n:8.2f}{ep.total() / n:10.2f}{fp.total() / n:8.2f}")
    for name in sorted(set(fp) | set(ep), key=lambda k: ep[k] - fp[k]):
        print(f"{name:40}{ef[name] / n:8.2f}{ff[name] / n:8.2f}{ep[name] / n:10.2f}{fp[name] / n:8.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--out", required=True)
    r.add_argument("--videos", type=int, default=96)
    q = sub.add_parser("replay")
    q.add_argument("--writes", required=True)
    q.add_argument("--prefill-dir", required=True)
    q.add_argument("--repeat", type=int, default=3)
    q.add_argument("--tmp", default=None, help="where the stores' copies go (default: the system's temp folder)")
    g = sub.add_parser("pages")
    g.add_argument("--writes", required=True)
    g.add_argument("--prefill-dir", required=True)
    g.add_argument("--tmp", default=None, help="where the stores' copies go (default: the system's temp folder)")
    args = p.parse_args()
    {"record": record, "replay": replay, "pages": pages}[args.cmd](args)


if __name__ == "__main__":
    main()
