"""The executor: Ray actors for media and the GPU, the driver's event loop for everything else.

The driver runs one asyncio loop. A loader reads the current rows of the next videos (one query per
table for a batch of videos, in the StoreIO thread) and hands each video with its state to one of a
fixed number of video workers (bounded in-flight videos, so memory stays flat on any source size).
Workers run each pipeline's stages; many videos are in different stages at once, so the stages of
different videos overlap. Model calls are HTTP from this loop; media and segmentation go to actor
pools; writes go to the StoreIO thread. Everything runs in one TaskGroup: an abort (a fatal endpoint
error, a store that refuses writes) cancels everything in flight, while a unit's own failure stays
that unit's (retried, then quarantined).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial

import ray

from engine.config import Config
from engine.llm.client import ModelClient
from engine.llm.request_log import StoreCache, StoreRequestLog
from engine.runtime.actors import MediaWorker, SegmentorWorker
from engine.runtime.pipeline import Pipeline, RunAborted, Stage, UnitFailure, VersionContext, VideoTask, current_of
from engine.runtime.pool import Pool
from engine.runtime.run_state import HEARTBEAT_S
from engine.runtime.services import Services, StageContext, StageProgress
from engine.runtime.state import VideoState
from engine.runtime.tally import RunTally
from engine.runtime.units import video_tasks
from engine.store import schema
from engine.store.current import Current, load_videos
from engine.store.db import Store
from engine.store.faults import one_line
from engine.store.io import StoreError, StoreIO, Update

log = logging.getLogger(__name__)


def ray_error_line(e: BaseException) -> str:
    """The last line of what an actor raised, without Ray's traceback and colour codes: what a person needs."""
    import re

    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        text = f"{type(cause).__name__}: {cause}"
    else:
        text = str(e)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith((" ", "File "))]
    errors = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception)\b", ln)]
    found = errors[-1] if errors else lines[-1] if lines else ""
    return re.sub(r"^(?:\w+\.)+(?=\w+(?:Error|Exception)\b)", "", one_line(found))[:500]  # no module path


def start_ray(cfg: Config) -> None:
    if ray.is_initialized():
        return
    ray.init(
        address=cfg.ray.address or None,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        configure_logging=False,
    )


def roles_of(pipelines: Sequence[Pipeline]) -> list[str]:
    """The actor roles the pipelines' stages use (model calls run in the driver, not on actors)."""
    used = set().union(*(p.uses for p in pipelines)) if pipelines else set()
    return [r for r in ("media", "segmentor") if r in used]


def check_resources(cfg: Config, roles: Sequence[str]) -> None:
    """Refuse to start actors the cluster cannot place (a GPU actor on a CPU machine waits forever)."""
    have = ray.cluster_resources()
    res = cfg.ray.resources
    need_cpu = sum(res[r].num_cpus * res[r].replicas for r in roles)
    need_gpu = sum(res[r].num_gpus * res[r].replicas for r in roles)
    if need_gpu > have.get("GPU", 0):
        raise RunAborted(
            f"the actors ask for {need_gpu:g} GPU(s) but the Ray cluster has {have.get('GPU', 0):g}. On a machine "
            "without a GPU set ray.resources.segmentor.num_gpus = 0 (e.g. --set ray.resources.segmentor.num_gpus=0)."
        )
    if need_cpu > have.get("CPU", 0):
        raise RunAborted(
            f"the actors ask for {need_cpu:g} CPUs but the Ray cluster has {have.get('CPU', 0):g}; "
            "lower ray.resources.<role>.num_cpus or replicas"
        )


def make_pools(cfg: Config, roles: Sequence[str], segmentor_path: str) -> dict[str, Pool]:
    """Create the actors. Actors that die are restarted and their calls retried (max_restarts)."""
    res = cfg.ray.resources
    opts = {"max_restarts": -1, "max_task_retries": 3}
    pools = {}
    if "media" in roles:
        r = res["media"]
        media = ray.remote(MediaWorker).options(
            num_cpus=r.num_cpus, num_gpus=r.num_gpus, max_concurrency=r.max_concurrency, **opts
        )
        pools["media"] = Pool([media.remote() for _ in range(r.replicas)])
    if "segmentor" in roles:
        r = res["segmentor"]
        seg = ray.remote(SegmentorWorker).options(
            num_cpus=r.num_cpus, num_gpus=r.num_gpus, max_concurrency=r.max_concurrency, **opts
        )
        pools["segmentor"] = Pool(
            [seg.remote(segmentor_path, cfg.segmentor.model_dump_json()) for _ in range(r.replicas)]
        )
    return pools


async def start_actors(pools: dict[str, Pool], expected_version: str) -> dict[str, list[int]]:
    """Wait until every actor is up (a missing checkpoint or a bad backend fails here, before any call);
    returns each role's actor process ids."""
    try:
        pids = {role: list(await asyncio.gather(*(a.ready.remote() for a in p.actors))) for role, p in pools.items()}
        if "segmentor" in pools:
            versions = await asyncio.gather(*(a.version.remote() for a in pools["segmentor"].actors))
            if set(versions) != {expected_version}:
                raise RunAborted(
                    f"the segmentor built reports version {versions[0]!r}, but its class declares "
                    f"{expected_version!r}: version_for(cfg) and the built backend must agree"
                )
    except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as e:
        log.info("an actor could not start", exc_info=True)  # Ray's traceback: the run log only
        raise RunAborted(f"an actor could not start: {ray_error_line(e)}") from None
    return pids


@dataclass
class VersionedPipeline:
    """A pipeline's stages with their lineages and versions, computed once per run."""

    pipeline: Pipeline
    lineages: list[str | None]
    versions: list[str | None]

    @property
    def objects_version(self) -> str | None:
        """The stage_version of the objects this pipeline works on (its Analyzer's, or its dataset's)."""
        return next((v for st, v in zip(self.pipeline.stages, self.versions) if "objects" in st.outputs), None)


async def run_videos(
    s: Services, pipelines: Sequence[VersionedPipeline], current: Current, videos: Iterable[VideoTask]
) -> None:
    """Run every pipeline's stages on every video, at most cfg.runtime.videos_in_flight at once."""
    videos = list(videos)
    # every total known before the first unit starts: "caption 0/2", never a count of the units taken up so far
    totals: dict[str, int] = {}
    for video in videos:
        for name in _stages_of(pipelines, video).values():
            totals[name] = totals.get(name, 0) + 1
    for name, total in totals.items():
        s.progress.add(name, total=total)
    n = s.cfg.runtime.videos_in_flight
    queue: asyncio.Queue = asyncio.Queue(maxsize=n)

    async def load() -> None:
        batch: list[VideoTask] = []
        for video in [*videos, None]:
            if video is not None:
                batch.append(video)
            if batch and (video is None or len(batch) == n):
                rows = await s.io.read(partial(load_videos, current=current, video_ids=[v.id for v in batch]))
                for v in batch:
                    preload(v.id, rows[v.id].answers)
                    await queue.put((v, VideoState(rows[v.id], current)))
                batch = []
        for _ in range(n):
            await queue.put(None)

    preload = getattr(s.client.cache, "preload", lambda scope, answers: None)
    release = getattr(s.client.cache, "release", lambda scope: None)

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            s.tally.videos_in_flight += 1
            try:
                await run_video(s, pipelines, *item)
            finally:
                s.tally.videos_in_flight -= 1
                release(item[0].id)

    pace: deque[tuple[float, int]] = deque()  # (time, units done), over the last minute
    started = time.monotonic()

    def beat_now() -> None:
        """The heartbeat, with the live snapshot that `engine status --follow` and the Runs page draw."""
        now = time.monotonic()
        done = sum(d for d, _ in s.progress.stages.values())
        pace.append((now, done))
        while now - pace[0][0] > 60:
            pace.popleft()
        span = now - pace[0][0]
        s.tally.beat(now - started, done)
        live = {
            "at": schema.utcnow().isoformat(),
            "stages": {name: list(c) for name, c in s.progress.stages.items()},
            "units_per_minute": round((done - pace[0][1]) * 60 / span, 1) if span >= 1 else None,
            **s.tally.snapshot(),
        }
        s.io.submit([Update(schema.Run, {"id": s.run_id}, {"heartbeat_at": schema.utcnow(), "live": live})])

    async def heartbeat() -> None:  # a run that stops beating was killed: the next run or status says so
        while True:
            beat_now()
            await asyncio.sleep(HEARTBEAT_S)

    beat = asyncio.create_task(heartbeat())
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(load())
            for _ in range(n):
                tg.create_task(worker())
    except* RunAborted as group:
        raise group.exceptions[0] from None
    except* StoreError as group:
        raise RunAborted(str(group.exceptions[0])) from None
    finally:
        beat.cancel()
        with contextlib.suppress(Exception):  # the last snapshot: every bar as it ended (a failing store refuses it)
            beat_now()


def _stages_of(pipelines: Sequence[VersionedPipeline], video: VideoTask) -> dict[tuple[str, str | None], str]:
    """The stages a video passes through, each once by (name, lineage): a stage pipelines share runs (and counts)
    once."""
    seen: dict[tuple[str, str | None], str] = {}
    for vp in (p for p in pipelines if p.pipeline.accepts(video)):
        for stage, lineage in zip(vp.pipeline.stages, vp.lineages):
            seen.setdefault((stage.name, lineage), stage.name)
    return seen


async def run_video(s: Services, pipelines: Sequence[VersionedPipeline], video: VideoTask, state: VideoState) -> None:
    seen: set[tuple[str, str | None]] = set()  # a stage that pipelines share runs (and counts) once
    for vp in (p for p in pipelines if p.pipeline.accepts(video)):
        for stage, lineage, version in zip(vp.pipeline.stages, vp.lineages, vp.versions):
            ctx = StageContext(s, video, state, stage.name, lineage, version, vp.objects_version)
            first = (stage.name, lineage) not in seen
            seen.add((stage.name, lineage))
            t0 = time.monotonic()
            ok, _ = await ctx.attempt("video", video.id, partial(_run_stage, stage, video, ctx))
            if first:
                s.progress.add(stage.name, done=1)
                s.tally.stage_seconds_of(stage.name, time.monotonic() - t0)
                if ok:  # a failure was counted as it was recorded (Services._record_failure)
                    s.tally.unit(stage.name, "done" if ctx.saved else "skipped")
            if not ok:  # this video's later stages depend on the failed one: given up, they count as done
                for key, name in _stages_of(pipelines, video).items():
                    if key not in seen:
                        s.progress.add(name, done=1)
                return


async def _run_stage(stage: Stage, video: VideoTask, ctx: StageContext) -> None:
    try:
        await stage.run(video, ctx)
    except (UnitFailure, RunAborted, StoreError, asyncio.CancelledError):
        raise
    except Exception as e:  # a bug or a decoder failure must not stop the other videos
        log.info("stage %s failed on %s", stage.name, video.rel, exc_info=True)  # the run log; the unit's row says why
        raise UnitFailure(type(e).__name__, one_line(str(e))[:500]) from None


@dataclass
class Execution:
    """What a run leaves besides the store: per-stage unit counts and the versions it ran under."""

    progress: StageProgress
    current: Current
    cache_hits: dict[str, int]  # per agent role: calls answered from the cache, with no request
    pool_calls: dict[str, list[int]]  # per actor role: calls sent to each replica


async def execute(
    cfg: Config,
    store: Store,
    run_id: str,
    video_ids: Sequence[str],
    pipelines: Sequence[Pipeline],
    segmentor_path: str,
    segmentor_version: str,
    use_cache: bool = True,
    retry_failed: bool = False,
    on_progress: Callable[[str, int, int], None] | None = None,
    environ: dict[str, str] | None = None,
    on_ready: Callable[[dict[str, list[int]]], None] | None = None,
    probed: dict | None = None,
    tally: RunTally | None = None,
) -> Execution:
    """Run the pipelines over the given (ingested) videos; model calls use this process's settings and keys.
    `tally` counts what happens (the live snapshot and the metrics read it)."""
    tally = tally or RunTally()
    roles = roles_of(pipelines)
    if roles:
        start_ray(cfg)
        check_resources(cfg, roles)
    pools = make_pools(cfg, roles, segmentor_path) if roles else {}
    for p in pipelines:  # while the actors start
        for stage in p.stages:
            stage.setup(cfg)
    vc = VersionContext(cfg, segmentor_version)
    current = current_of(list(pipelines), vc)
    versioned = [VersionedPipeline(p, p.lineages(vc), [st.version(vc) for st in p.stages]) for p in pipelines]
    io = StoreIO(store)
    client = ModelClient(
        cfg, StoreCache(io), StoreRequestLog(io), run_id=run_id, use_cache=use_cache, environ=environ, meter=tally
    )
    client.adopt(probed or {})  # output modes and image token counts that preflight learnt
    progress = StageProgress(on_change=on_progress)
    gc_settings = _quiet_gc()
    try:
        pids = await start_actors(pools, segmentor_version)
        if on_ready:  # benchmarks start their clocks here, with every actor up
            on_ready(pids)
        s = Services(cfg, io, client, pools, run_id, retry_failed=retry_failed, progress=progress, tally=tally)
        await run_videos(s, versioned, current, video_tasks(store, video_ids))
    finally:
        _restore_gc(gc_settings)
        await client.aclose()
        await io.aclose()
    return Execution(progress, current, dict(client.cache_hits), {role: list(p.calls) for role, p in pools.items()})


def _quiet_gc() -> tuple[int, int, int]:
    """Collect cycles less often during a run. The driver allocates thousands of short-lived objects per
    request (coroutines, dicts, responses); at the default threshold every 700 allocations start a collection
    that scans the long-lived heap (pydantic, SQLAlchemy, Ray): a quarter of the event loop's CPU, measured
    with benchmarks/pipeline_throughput.py --cpu. What is alive now lives all run: frozen, never scanned."""
    old = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    return old


def _restore_gc(old: tuple[int, int, int]) -> None:
    gc.set_threshold(*old)
    gc.unfreeze()
