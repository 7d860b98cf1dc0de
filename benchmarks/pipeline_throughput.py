"""Throughput and CPU cost of the detailed pipeline against a stand-in endpoint and a stand-in segmentor.

    .venv/bin/python benchmarks/pipeline_throughput.py [--videos 96] [--latency 0.2] [--concurrency 32]
    .venv/bin/python benchmarks/pipeline_throughput.py --cpu [--prefill 100000]

Prints objects/s achieved by the engine beside the bound set by the slowest of:
- model calls: concurrency / latency requests per second, divided by the requests each object needs;
- the segmentor: its cost per frame x mask frames per video (one actor);
- the CPU: this machine's cores divided by the CPU each object costs the engine and the stand-in
  endpoint (both run here), measured in the same run.
It also prints the CPU per object of the driver and of the engine's own Ray workers (MediaWorker,
SegmentorWorker), not counting the stand-in endpoint or Ray's own daemons.

--cpu runs at 1 ms model latency with a 0 ms segmentor, where the engine's own CPU is the limit.
--prefill N runs the same videos twice, side by side: in an empty store, and in a store pre-filled with N
objects (straight into the tables), and prints both.
--repeat K repeats every run K times (fresh stores, alternating) and reports the medians: this machine
is noisy, and single runs of a few seconds vary by a quarter.
--database-url URL runs on a PostgreSQL server instead of SQLite files: URL names a database to connect to for
administration; every run gets a database of its own (a pre-filled one copied from a template database, kept
between invocations as bench_prefilled_N), and the server's CPU per object is printed beside the engine's.
A naive sequential loop over the same agents (no Ray, no overlap) runs on a few videos for comparison.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = ROOT / "tests" / "support"
sys.path.insert(0, str(SUPPORT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SUPPORT), os.environ.get("PYTHONPATH")]))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from prefill import prefill  # noqa: E402
from synthetic import Shape, render, write_mp4  # noqa: E402

from engine.api import Engine, RunObserver  # noqa: E402
from engine.config import load_config  # noqa: E402
from engine.registry import build_pipelines, version_context  # noqa: E402
from engine.store import Store, schema  # noqa: E402

COLORS = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 170, 60)}
AGENTS = ("captioner", "analyzer", "annotator", "reviewer", "refiner")


def make_source(folder: Path, n: int) -> None:
    for i in range(n):
        shapes = tuple(
            Shape(f"{c} {k}", k, rgb, 18, (0.1 + 0.25 * j, 0.2 + 0.2 * j), (1.0 + i / 8, 0.5))
            for j, ((c, rgb), k) in enumerate(zip(COLORS.items(), ("square", "circle", "square")))
        )
        write_mp4(folder / f"clip_{i:03d}.mp4", render(40 + i % 7, 96, 72, shapes=shapes)[0])
        (folder / f"clip_{i:03d}.txt").write_text(f"A red square {i} passes a blue circle and a green box.")


def start_endpoint(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(SUPPORT / "fake_endpoint.py"), "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, proc.stdout.readline().strip()


def copy_as_written(src: str, dst: str) -> None:
    """Copy a file a page at a time, so that it sits in the OS's cache as the store SQLite wrote page by page would.

    shutil's copy (copy_file_range) leaves the copy cached in large folios (Linux 6.x, ext4): then each 4 KiB page
    the run writes dirties, and has written back, a whole folio. At a million objects that wrote 2.5 times the
    bytes (497 against 195 KiB per object, benchmarks/store_writes.py's replay), and in one set of 12 repetitions
    slowed every process, the Ray workers by 5% too, though they never touch the store."""
    with open(src, "rb", buffering=0) as fin, open(dst, "wb", buffering=0) as fout:
        while chunk := fin.read(1 << 20):
            for at in range(0, len(chunk), 4096):
                fout.write(chunk[at : at + 4096])
    shutil.copystat(src, dst)


def cpu_of(pids) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


@dataclass
class Measure:
    objects: int
    requests: int
    samples: int
    wall: float
    driver_cpu: float
    worker_cpu: float
    endpoint_cpu: float
    role_cpu: dict[str, float]
    server_cpu: float = 0.0  # the database server's processes (PostgreSQL), not the engine's
    driver_written: float = 0.0  # bytes the driver caused to be written (its store's pages and WAL, with SQLite)
    driver_kernel: float = 0.0  # the driver's CPU in the kernel (system calls: the store's reads, writes, fsyncs)
    # The driver's read and write system calls, and its minor page faults: with SQLite, its page reads beyond the
    # mapped first 2 GiB of the file (each a pread) and its first touches of mapped pages
    driver_reads: float = 0.0
    driver_writes: float = 0.0
    driver_faults: float = 0.0

    def per_object_ms(self, seconds: float) -> float:
        return seconds / self.objects * 1000


SCRAPER = """
import sys, time, urllib.request
while True:
    time.sleep(1.0)
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        r.read()
    print(flush=True)
"""


class Clock(RunObserver):
    """Starts the clocks when every actor is up (before the first video) and stops them when the pipelines end,
    so neither preflight, ingest, nor the run summary counts."""

    def __init__(self, endpoint_pid: int):
        self.endpoint_pid, self.start, self.stop = endpoint_pid, {}, {}
        self.workers: list[int] = []
        self.roles: dict[str, list[int]] = {}
        self.scrapes = 0
        self._scraper: subprocess.Popen | None = None

    def note(self, message: str) -> None:
        if message.startswith("metrics: http://") and self._scraper is None:  # metrics on: scrape as Prometheus
            # Every second (Prometheus's default is 15 s), from another process as Prometheus is: the exporter's
            # work lands in the driver's CPU, the scraper's does not
            self._scraper = subprocess.Popen(
                [sys.executable, "-c", SCRAPER, message.split()[1]], stdout=subprocess.PIPE
            )

    def _read(self) -> dict[str, float]:
        io = psutil.Process().io_counters()
        return dict(
            t=time.perf_counter(),
            driver=cpu_of([os.getpid()]),
            driver_kernel=psutil.Process().cpu_times().system,
            written=float(io.write_bytes),
            reads=float(io.read_count),
            writes=float(io.write_count),
            faults=float(resource.getrusage(resource.RUSAGE_SELF).ru_minflt),
            workers=cpu_of(self.workers),
            endpoint=cpu_of([self.endpoint_pid]),
            server=cpu_of(
                p.pid for p in psutil.process_iter(["name"]) if p.info["name"] in ("postgres", "postmaster")
            ),
            **{f"role:{r}": cpu_of(p) for r, p in self.roles.items()},
        )

    def actors_ready(self, pids: dict[str, list[int]]) -> None:
        self.roles.update(pids)
        self.workers.extend(p for role in pids.values() for p in role)
        self.start = self._read()

    def phase_ended(self, phase: str) -> None:
        if phase == "executing":
            self.stop = self._read()
            if self._scraper is not None:
                self._scraper.terminate()
                out, _ = self._scraper.communicate()
                self.scrapes = out.count(b"\n")


def run_engine(cfg, src: Path, endpoint_pid: int) -> tuple[Measure, Store, list[str]]:
    """One run through the public API (engine/api.py), as a user's script would make it."""
    clock = Clock(endpoint_pid)
    environ = {"OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": os.environ["OPENAI_BASE_URL"]}
    engine = Engine(cfg, observer=clock, environ=environ)
    result = engine.run(src, ["detailed"])
    if result.exit_code:
        raise SystemExit(f"the benchmark's run did not finish cleanly: {result.sentence}")
    if clock.scrapes:
        print(f"  metrics on: /metrics scraped {clock.scrapes} times during the run")
    a, b = clock.start, clock.stop
    m = Measure(
        0,
        0,
        0,
        b["t"] - a["t"],
        b["driver"] - a["driver"],
        b["workers"] - a["workers"],
        b["endpoint"] - a["endpoint"],
        {r: b[f"role:{r}"] - a[f"role:{r}"] for r in clock.roles},
        b["server"] - a["server"],
        b["written"] - a["written"],
        b["driver_kernel"] - a["driver_kernel"],
        b["reads"] - a["reads"],
        b["writes"] - a["writes"],
        b["faults"] - a["faults"],
    )
    ids = list(result.split.units) if result.split else []
    with engine.store.session() as q:
        m.objects = (
            q.query(schema.Masklet)
            .join(schema.VideoObject, schema.VideoObject.id == schema.Masklet.object_id)
            .filter(schema.VideoObject.video_id.in_(ids))
            .count()
        )
        # preflight's probes belong to the run too, but they are not the pipelines' requests
        m.requests = (
            q.query(schema.Request).filter_by(run_id=result.run_id).filter(schema.Request.kind != "probe").count()
        )
        m.samples = q.query(schema.Sample).filter_by(run_id=result.run_id).count()
    return m, engine.store, ids


def naive_loop(cfg, store, video_ids, base_url) -> tuple[float, int]:
    """The same agents and segmentor, one call after another, no Ray, no overlap."""
    import openai
    from fake_segmentor import HashSegmentor

    from agents.analyzer import AnalyzeItem, AnalyzerAgent
    from agents.annotator import AnnotateItem, AnnotatorAgent
    from agents.refiner import RefineItem, RefinerAgent
    from agents.reviewer import Judge, JudgeItem, RegionDescriber, RegionItem
    from agents.segmentor import SegmentRequest
    from engine.media import masks
    from engine.media.images import to_data_url
    from engine.media.overlay import OverlayObject, draw_overlay
    from engine.media.video import Video, uniform_indices

    client = openai.OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    seg = HashSegmentor()

    def ask(agent, item):
        msgs = agent.prompt(item)
        r = client.chat.completions.parse(model="gpt-4o-mini", messages=msgs, response_format=agent.response_format)
        return agent.parse(item, r.choices[0].message.parsed)

    t0, objects = time.perf_counter(), 0
    with store.session() as s:
        videos = [s.get(schema.Video, v) for v in video_ids]
    for v in videos:
        path = str(Path(v.source_root) / v.path)
        video = Video(path)
        analysis = ask(AnalyzerAgent(), AnalyzeItem(f"A red square passes a blue circle and a green box {v.path}."))
        mask_idx = uniform_indices(v.num_frames, cfg.sampling.mask_frames)
        frames = video.frames(mask_idx)
        tracks = seg.segment(
            SegmentRequest(v.id, path, tuple(mask_idx), tuple(analysis.nouns), v.height, v.width), frames
        )
        plain = [to_data_url(f, 768, 85) for f in video.frames(uniform_indices(v.num_frames, 16))]
        for t in tracks:
            objects += 1
            texts = {q: ask(AnnotatorAgent(q), AnnotateItem(t.noun, tuple(plain))) for q in ("dynamic", "static")}
            anchor = frames[mask_idx.index(t.anchor_frame)]
            overlay = to_data_url(draw_overlay(anchor, [OverlayObject(mask=masks.decode(t.masks[t.anchor_frame]))]))
            region = ask(RegionDescriber(), RegionItem(overlay))
            judged = ask(Judge(), JudgeItem(t.noun, region, texts["static"], texts["dynamic"]))
            if judged.verdict.same_object:
                ask(RefinerAgent(), RefineItem(t.noun, texts["static"], texts["dynamic"]))
    return time.perf_counter() - t0, objects


def median_measure(ms: list[Measure]) -> Measure:
    """Each figure's median over repeated runs (per object where it is a cost)."""

    def med(values):
        return statistics.median(values)

    objects = ms[0].objects
    return Measure(
        objects,
        ms[0].requests,
        ms[0].samples,
        med([m.wall for m in ms]),
        med([m.driver_cpu / m.objects * objects for m in ms]),
        med([m.worker_cpu / m.objects * objects for m in ms]),
        med([m.endpoint_cpu / m.objects * objects for m in ms]),
        {r: med([m.role_cpu[r] / m.objects * objects for m in ms]) for r in ms[0].role_cpu},
        med([m.server_cpu / m.objects * objects for m in ms]),
        med([m.driver_written / m.objects * objects for m in ms]),
        med([m.driver_kernel / m.objects * objects for m in ms]),
        med([m.driver_reads / m.objects * objects for m in ms]),
        med([m.driver_writes / m.objects * objects for m in ms]),
        med([m.driver_faults / m.objects * objects for m in ms]),
    )


def report(label: str, m: Measure, args, cfg) -> None:
    cores = psutil.cpu_count()
    engine_cpu = m.driver_cpu + m.worker_cpu
    llm_bound = m.objects / (m.requests / (args.concurrency / args.latency))
    seg_time = args.seg_s_per_frame * cfg.sampling.mask_frames * args.videos
    seg_bound = m.objects / seg_time if seg_time else float("inf")
    cpu_bound = cores / ((engine_cpu + m.endpoint_cpu) / m.objects)
    bound = min(llm_bound, seg_bound, cpu_bound)
    achieved = m.objects / m.wall
    print(f"--- {label}")
    print(
        f"videos={args.videos} objects={m.objects} requests={m.requests} ({m.requests / m.objects:.2f}/object) "
        f"samples={m.samples}"
    )
    print(f"{'':34}{'objects/s':>10}{'vs bound':>10}")
    print(
        f"{'bound (slowest of the three)':34}{bound:10.2f}{1:10.0%}   (model calls {llm_bound:.1f}, segmentor "
        f"{seg_bound:.1f}, CPU {cpu_bound:.1f} = {cores} cores / "
        f"{m.per_object_ms(engine_cpu + m.endpoint_cpu):.1f} ms per object)"
    )
    print(f"{'engine':34}{achieved:10.2f}{achieved / bound:10.0%}   wall {m.wall:.1f} s")
    print(
        f"CPU per object: driver {m.per_object_ms(m.driver_cpu):.1f} ms, engine Ray workers "
        f"{m.per_object_ms(m.worker_cpu):.1f} ms ("
        + ", ".join(f"{r} {m.per_object_ms(c):.1f}" for r, c in sorted(m.role_cpu.items()))
        + f"), engine in all {m.per_object_ms(engine_cpu):.1f} ms "
        f"(stand-in endpoint {m.per_object_ms(m.endpoint_cpu):.1f} ms, not counted)"
        + (f"; PostgreSQL server {m.per_object_ms(m.server_cpu):.1f} ms (not counted)" if args.database_url else "")
    )
    print(
        f"the driver wrote {m.driver_written / m.objects / 1024:.0f} KiB per object (store pages and WAL); its CPU in "
        f"the kernel {m.per_object_ms(m.driver_kernel):.2f} ms per object; per object, its read system calls "
        f"{m.driver_reads / m.objects:.0f}, write system calls {m.driver_writes / m.objects:.0f}, minor page faults "
        f"{m.driver_faults / m.objects:.0f}"
    )


class Server:
    """A PostgreSQL server the benchmark makes databases on (CREATE DATABASE ... TEMPLATE copies a pre-filled one at
    the file level, in seconds)."""

    def __init__(self, url: str):
        import sqlalchemy as sa

        self.url = sa.engine.make_url(url)
        self.admin = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")

    def _run(self, sql: str) -> list:
        import sqlalchemy as sa

        with self.admin.connect() as c:
            result = c.execute(sa.text(sql))
            return list(result) if result.returns_rows else []

    def exists(self, name: str) -> bool:
        return bool(self._run(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"))

    def create(self, name: str, template: str | None = None) -> str:
        self._run(f'DROP DATABASE IF EXISTS "{name}"')
        self._run(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url.set(database=name).render_as_string(hide_password=False)

    def analyze(self, name: str) -> None:
        """VACUUM ANALYZE a database, as autovacuum does to a store as it grows. A template filled in one go and never
        analyzed (a server with autovacuum off) has no statistics: the planner then guesses, and the server spent
        5.5 ms per object in a copy of it against 1.7 ms once analyzed (1.2 in an empty store)."""
        import sqlalchemy as sa

        engine = sa.create_engine(self.url.set(database=name), isolation_level="AUTOCOMMIT")
        with engine.connect() as c:
            c.execute(sa.text("VACUUM ANALYZE"))
        engine.dispose()

    def drop(self, url: str) -> None:
        import sqlalchemy as sa

        self._run(f'DROP DATABASE IF EXISTS "{sa.engine.make_url(url).database}" WITH (FORCE)')

    def drop_mine(self, pid: int) -> None:
        for (name,) in self._run(f"SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_%\\_{pid}'"):
            self._run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=96)
    p.add_argument("--naive-videos", type=int, default=4)
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seg-s-per-frame", type=float, default=0.005)
    p.add_argument("--videos-in-flight", type=int, default=48)
    p.add_argument(
        "--cpu", action="store_true", help="1 ms model latency, 0 ms segmentor: the engine's CPU is the limit"
    )
    p.add_argument("--prefill", type=int, default=0, help="also run in a store pre-filled with this many objects")
    p.add_argument("--repeat", type=int, default=1, help="runs of each kind; medians are reported")
    p.add_argument(
        "--metrics",
        action="store_true",
        help="also run with Prometheus metrics served and scraped every second; compare the driver's CPU per object",
    )
    p.add_argument(
        "--database-url",
        help="a PostgreSQL server (a database to connect to for administration): each run gets its own database",
    )
    p.add_argument(
        "--prefill-dir",
        help="keep the pre-filled store here, and reuse it if it is there (a million objects take minutes to fill)",
    )
    args = p.parse_args()
    if args.cpu:
        args.latency, args.seg_s_per_frame = 0.001, 0.0
    os.environ["FAKE_SEGMENTOR_S_PER_FRAME"] = str(args.seg_s_per_frame)
    endpoint, url = start_endpoint(args.latency)
    os.environ["OPENAI_BASE_URL"] = url
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "videos"
            src.mkdir()
            make_source(src, args.videos)
            overrides = {
                "segmentor.backend": "fake_segmentor:HashSegmentor",
                "ray.resources": {
                    "segmentor": {"num_gpus": 0, "num_cpus": 0.5},
                    "media": {"num_cpus": 0.5, "max_concurrency": 4},
                },
                "runtime.videos_in_flight": args.videos_in_flight,
                "split.detector": "none",  # whole videos: the pipelines' cost, not shot detection's
                **{f"agents.{a}.max_concurrent": args.concurrency for a in AGENTS},
            }
            kinds = (
                [("empty store", "empty")]
                + ([(f"store pre-filled with {args.prefill:,} objects", "full")] if args.prefill else [])
                + ([("empty store, metrics served and scraped", "metrics")] if args.metrics else [])
            )
            template = Path(args.prefill_dir) if args.prefill_dir else Path(tmp) / "prefilled"
            server = Server(args.database_url) if args.database_url else None
            pg_template = f"bench_prefilled_{args.prefill}"
            if args.prefill and server is not None and server.exists(pg_template):
                print(f"store pre-filled before: database {pg_template}")
            elif args.prefill and server is None and (template / "engine.sqlite").exists():
                print(f"store pre-filled before: {template}")
            elif args.prefill:  # filled once, copied for each run
                db = server.create(pg_template) if server else ""
                cfg = load_config(environ={}, overrides={"data_dir": str(template), "database_url": db, **overrides})
                vc, _ = version_context(cfg)
                filled = Store(cfg.resolved_database_url)
                took = prefill(filled, build_pipelines(["detailed"]), vc, args.prefill)
                filled.dispose()
                print(f"pre-filled {args.prefill:,} objects in {took:.0f} s")
            if args.prefill and server is not None:  # a template filled before this was written, too
                server.analyze(pg_template)
            runs: dict[str, list[Measure]] = {label: [] for label, _ in kinds}
            previous: tuple[Store, str, Path] | None = None
            for r in range(args.repeat):
                # every other repetition in reverse order: the second run in a process costs more (a bigger heap,
                # warm Ray), and no kind should always take that place
                for label, kind in kinds if r % 2 == 0 else kinds[::-1]:
                    data = Path(tmp) / f"{kind}{r}"
                    db = ""
                    if server is not None:  # a database of its own, copied from the template when pre-filled
                        db = server.create(f"bench_{kind}{r}_{os.getpid()}", pg_template if kind == "full" else None)
                    elif kind == "full":
                        shutil.copytree(template, data, copy_function=copy_as_written)
                    # The copy's gigabytes are written out now, not by the kernel during the run (whose writeback
                    # and cache churn cost every process CPU, the Ray workers' too, though they never touch the store)
                    os.sync()
                    metrics = {"metrics.port": 0, "metrics.linger_s": 0} if kind == "metrics" else {}
                    cfg = load_config(
                        environ={}, overrides={"data_dir": str(data), "database_url": db, **overrides, **metrics}
                    )
                    if previous is not None:  # the last run's store stays for the naive loop; the others go
                        previous[0].dispose()  # (a million objects' copy is 7 GB: a dozen would fill the disk)
                        if server is not None:
                            server.drop(previous[1])
                        else:
                            shutil.rmtree(previous[2], ignore_errors=True)
                    m, store, ids = run_engine(cfg, src, endpoint.pid)
                    runs[label].append(m)
                    previous = (store, db, data)
            print(
                f"endpoint latency {args.latency * 1000:.0f} ms, {args.concurrency} concurrent; segmentor "
                f"{args.seg_s_per_frame * 1000:.1f} ms/frame x {cfg.sampling.mask_frames} frames/video"
                + (f"; medians of {args.repeat} runs each" if args.repeat > 1 else "")
            )
            results = [(label, median_measure(ms), cfg, store, ids) for label, ms in runs.items()]
            for label, m, cfg, _, _ in results:
                report(label, m, args, cfg)
            if args.metrics:
                e, on = results[0][1], results[-1][1]
                print(
                    f"--- driver CPU per object, metrics on / off: {on.per_object_ms(on.driver_cpu):.2f} / "
                    f"{e.per_object_ms(e.driver_cpu):.2f} ms = "
                    f"{on.per_object_ms(on.driver_cpu) / e.per_object_ms(e.driver_cpu):.3f}"
                )
                # each repetition's on/off pair ran back to back: their ratios, and the Ray workers' as a control
                # (metrics never touch the workers: a ratio away from 1 there is the machine's noise)
                pairs = list(zip(runs[kinds[0][0]], runs[kinds[-1][0]]))
                drv = [(b.driver_cpu / b.objects) / (a.driver_cpu / a.objects) for a, b in pairs]
                wrk = [(b.worker_cpu / b.objects) / (a.worker_cpu / a.objects) for a, b in pairs]
                print(
                    f"--- per repetition, on / off: driver {', '.join(f'{x:.3f}' for x in drv)} (median "
                    f"{statistics.median(drv):.3f}); Ray workers, the control: {', '.join(f'{x:.3f}' for x in wrk)} "
                    f"(median {statistics.median(wrk):.3f}); driver over control: median "
                    f"{statistics.median([d / w for d, w in zip(drv, wrk)]):.3f}"
                )
            if args.prefill:
                (_, e, *_), (_, f, *_) = results[:2]
                ratio = (f.driver_cpu + f.worker_cpu) / f.objects / ((e.driver_cpu + e.worker_cpu) / e.objects)
                print(
                    f"--- engine CPU per object, pre-filled / empty: {ratio:.3f} (driver "
                    f"{f.per_object_ms(f.driver_cpu) / e.per_object_ms(e.driver_cpu):.3f})"
                )
                # each repetition's pair ran back to back: their ratios, the Ray workers' as the machine's noise (they
                # never touch the store), and the database server's where there is one
                pairs = list(zip(runs[kinds[0][0]], runs[kinds[1][0]]))
                for name, cost in (
                    ("driver", lambda m: m.driver_cpu),
                    ("driver in the kernel", lambda m: m.driver_kernel),
                    ("Ray workers", lambda m: m.worker_cpu),
                    ("engine", lambda m: m.driver_cpu + m.worker_cpu),
                    *((("PostgreSQL server", lambda m: m.server_cpu),) if server is not None else ()),
                ):
                    each = [(cost(b) / b.objects) / (cost(a) / a.objects) for a, b in pairs]
                    # The second run in a process costs more, and repetitions alternate which kind goes second: with
                    # an odd count one order is the majority. Balanced: the geometric mean of each order's median.
                    orders = [statistics.median(each[0::2]), statistics.median(each[1::2])] if len(each) > 1 else []
                    balanced = f"; order-balanced {statistics.geometric_mean(orders):.3f}" if orders else ""
                    print(
                        f"    {name}, per repetition: {', '.join(f'{x:.3f}' for x in each)} "
                        f"(median {statistics.median(each):.3f}{balanced})"
                    )
            label, m, cfg, store, ids = results[0]
            naive_wall, naive_objects = naive_loop(cfg, store, ids[: args.naive_videos], url)
            naive = naive_objects / naive_wall
            print(
                f"naive sequential loop: {naive:.2f} objects/s ({naive_objects} objects in {naive_wall:.1f} s); "
                f"engine vs naive {m.objects / m.wall / naive:.1f}x"
            )
            if server is not None:
                store.dispose()
                server.drop_mine(os.getpid())
    finally:
        endpoint.terminate()


if __name__ == "__main__":
    main()
