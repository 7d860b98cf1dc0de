"""The Ray runtime: actor pools, the driver's services for stages, and the executor.

The driver runs one asyncio loop. A fixed number of video workers (bounded in-flight videos, so
memory stays flat on any source size) take videos from the list and run each pipeline's stages;
many videos are in different stages at once, so the stages of different videos overlap. Stages
send work to actor pools and get results back; the driver alone writes to the store, right after
each unit of work, so a crash loses only what was in flight.

The model-call cache is the driver's: it computes a request's key (images by digest, without
holding the images), answers from the store when it can, and only otherwise sends the request
to a ModelWorker.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Protocol, Sequence

import ray
from sqlalchemy.orm import Session

from engine.store import schema
from engine.llm.request_log import StoreLedger
from engine.config import Config
from engine.store.ids import stable_id
from engine.llm.client import CallResult, EndpointError, ModelClient
from engine.store import Store
from engine.runtime.actors import MediaWorker, ModelWorker, SegmentorWorker

log = logging.getLogger(__name__)


class UnitFailure(Exception):
    """One unit (a video's stage, an object's description, ...) failed; recorded, the run goes on."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class RunAborted(RuntimeError):
    """Every further call would fail the same way (bad key, unknown model): stop the run."""


@dataclass(frozen=True)
class VideoTask:
    id: str
    path: str  # absolute
    rel: str
    kind: str
    num_frames: int
    fps: float
    width: int
    height: int


class Stage(Protocol):
    name: str

    async def run(self, video: VideoTask, s: "Services") -> None: ...


def _every_video(video: VideoTask) -> bool:
    return True


@dataclass
class Pipeline:
    name: str
    stages: list[Stage]
    description: str = ""
    accepts: Callable[[VideoTask], bool] = _every_video  # which videos this pipeline is for


@dataclass(frozen=True)
class ImageSet:
    """Images produced by a MediaWorker: digests in the driver, the data URLs left in Ray's object store."""

    digests: tuple[str, ...]
    urls: Any  # ray.ObjectRef to list[str]


class Pool:
    """Round-robin over actors, picking the one with the fewest calls in flight."""

    def __init__(self, actors: list):
        self.actors = actors
        self.busy = [0] * len(actors)

    async def call(self, method: str, *args, num_returns: int = 1):
        i = min(range(len(self.actors)), key=self.busy.__getitem__)
        self.busy[i] += 1
        try:
            refs = getattr(self.actors[i], method).options(num_returns=num_returns).remote(*args)
            if num_returns == 1:
                return await refs
            return refs  # the caller awaits the parts it needs
        finally:
            self.busy[i] -= 1


@dataclass
class Counters:
    stages: dict[str, list[int]] = field(default_factory=dict)  # stage -> [done, total]
    cache_hits: int = 0


class Services:
    """What stages use: model calls with the cache, media and segmentation pools, and the store."""

    def __init__(self, cfg: Config, store: Store, run_id: str, pools: dict[str, Pool], use_cache: bool = True,
                 retry_failed: bool = False, on_progress: Callable[[str, int, int], None] | None = None):
        self.cfg, self.store, self.run_id, self.pools = cfg, store, run_id, pools
        self.use_cache, self.retry_failed = use_cache, retry_failed
        self.keys = ModelClient(cfg, None, environ={})  # computes cache keys only; never sends
        self.ledger = StoreLedger(store)
        self.counters = Counters()
        self.segmentor_version = ""  # set once the segmentor actors have started
        self._inflight: dict[str, asyncio.Future] = {}
        self._on_progress = on_progress

    # --- progress ------------------------------------------------------------------------------------
    def progress(self, stage: str, done: int = 0, total: int = 0) -> None:
        c = self.counters.stages.setdefault(stage, [0, 0])
        c[0] += done
        c[1] += total
        if self._on_progress:
            self._on_progress(stage, c[0], c[1])

    # --- the store (driver only) ---------------------------------------------------------------------
    def read(self, fn: Callable[[Session], Any]) -> Any:
        with self.store.session() as s:
            return fn(s)

    write = read  # a session commits on success: the same call, named for what the caller does

    # --- model calls ---------------------------------------------------------------------------------
    def model(self, agent_name: str) -> str:
        return getattr(self.cfg.agents, agent_name).model

    async def ask(self, agent: Any, item: Any, images: ImageSet | None = None) -> Any:
        """prompt() -> cached or remote call -> parse(). Raises UnitFailure; RunAborted for fatal errors."""
        messages = agent.prompt(item)
        key = self.keys.request_key(agent.name, messages, agent.response_format)
        if key not in self._inflight:  # identical requests in flight at once share one call
            self._inflight[key] = asyncio.ensure_future(self._answer(agent, key, messages, images))
        try:
            value = await asyncio.shield(self._inflight[key])
        finally:
            if self._inflight.get(key) is not None and self._inflight[key].done():
                self._inflight.pop(key, None)
        try:
            return agent.parse(item, value)
        except ValueError as e:
            # valid JSON the agent cannot use: drop it from the cache, so a retry asks the model again
            self.ledger.invalidate(key, f"unusable_output: {e}")
            raise UnitFailure("unusable_output", f"{agent.name}: {e}") from None

    async def _answer(self, agent: Any, key: str, messages: list, images: ImageSet | None) -> Any:
        stored = self.ledger.lookup(key) if self.use_cache else None
        if stored is not None:
            try:
                value = agent.response_format.model_validate(stored["parsed"])
                self.counters.cache_hits += 1
                return value
            except (ValueError, KeyError, TypeError):
                pass  # stored under an older schema: ask again
        return await self._remote(agent, messages, images)

    async def _remote(self, agent: Any, messages: list, images: ImageSet | None) -> Any:
        args = (agent.name, messages, agent.response_format) + ((images.urls,) if images else ())
        try:
            result: CallResult = await self.pools["model"].call("query", *args)
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, EndpointError):
                raise RunAborted(str(e.cause)) from None
            raise UnitFailure("worker_error", f"{agent.name}: {type(e.cause).__name__}: {e.cause}") from None
        self.ledger.record({**result.record, "run_id": self.run_id})
        if not result.ok:
            raise UnitFailure(result.error_code or result.status, result.error or result.status)
        return result.value

    # --- media and segmentation ----------------------------------------------------------------------
    async def encode(self, video: VideoTask, indices: Sequence[int], agent: str) -> ImageSet:
        ep = getattr(self.cfg.agents, agent)
        digests_ref, urls_ref = await self.pools["media"].call(
            "encode", video.path, list(indices), ep.image_max_side, ep.image_quality, self.cfg.sampling.frame_folder_fps,
            num_returns=2)
        return ImageSet(tuple(await digests_ref), urls_ref)

    async def overlays(self, video: VideoTask, indices: Sequence[int], frame_masks: dict[str, Any], agent: str,
                       label: str | None = None) -> ImageSet:
        ep = getattr(self.cfg.agents, agent)
        digests_ref, urls_ref = await self.pools["media"].call(
            "overlays", video.path, list(indices), frame_masks, ep.image_max_side, ep.image_quality, label,
            self.cfg.sampling.frame_folder_fps, num_returns=2)
        return ImageSet(tuple(await digests_ref), urls_ref)

    async def segment(self, request: Any) -> list:
        # The frames go from a MediaWorker to the SegmentorWorker through Ray's object store: the
        # driver passes the reference and never holds the pixels.
        media = self.pools["media"]
        frames = media.actors[0].frames.remote(request.video_path, list(request.frame_indices),
                                               self.cfg.sampling.frame_folder_fps)
        try:
            return await self.pools["segmentor"].call("segment", request, frames)
        except ray.exceptions.RayTaskError as e:
            raise UnitFailure("segmentor_error", f"{type(e.cause).__name__}: {e.cause}") from None

    # --- failures and quarantine ---------------------------------------------------------------------
    async def attempt(self, unit_kind: str, unit_id: str, stage: str, work: Callable[[], Awaitable[Any]]) -> Any:
        """Run one unit's work with bounded retries; on the last failure, quarantine it. None if it failed."""
        failure = self.read(lambda s: s.query(schema.Failure).filter_by(unit_id=unit_id, stage=stage).one_or_none())
        if failure is not None and failure.quarantined and not self.retry_failed:
            return None
        failed = failure is not None
        # Attempts made before a crash count: a resumed run finishes the unit's budget, it does not restart it.
        start = failure.attempts if failed and not self.retry_failed else 0
        for n in range(min(start, self.cfg.runtime.max_unit_attempts - 1), self.cfg.runtime.max_unit_attempts):
            try:
                result = await work()
            except UnitFailure as e:
                failed = True
                self._record_failure(unit_kind, unit_id, stage, e, quarantine=n == self.cfg.runtime.max_unit_attempts - 1)
                continue
            if failed:  # it works now: it is no longer a failure
                self.write(lambda s: s.query(schema.Failure).filter_by(unit_id=unit_id, stage=stage).delete())
            return result
        return None

    def _record_failure(self, unit_kind: str, unit_id: str, stage: str, e: UnitFailure, quarantine: bool) -> None:
        def upsert(s: Session) -> None:
            row = s.query(schema.Failure).filter_by(unit_id=unit_id, stage=stage).one_or_none()
            if row is None:
                s.add(schema.Failure(id=stable_id("failure", unit_id, stage), unit_kind=unit_kind, unit_id=unit_id,
                                     stage=stage, attempts=1, error_code=e.code, message=e.message[:2000],
                                     quarantined=quarantine, run_id=self.run_id))
            else:
                row.attempts += 1
                row.error_code, row.message, row.run_id = e.code, e.message[:2000], self.run_id
                row.quarantined = quarantine

        self.write(upsert)


# --- Ray ---------------------------------------------------------------------------------------------

def start_ray(cfg: Config) -> None:
    if ray.is_initialized():
        return
    ray.init(address=cfg.ray.address or None, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING, configure_logging=False)


def check_resources(cfg: Config) -> None:
    """Refuse to start actors the cluster cannot place (a GPU actor on a CPU machine waits forever)."""
    have = ray.cluster_resources()
    need_cpu = sum(r.num_cpus * r.replicas for role, r in _roles(cfg))
    need_gpu = sum(r.num_gpus * r.replicas for role, r in _roles(cfg))
    if need_gpu > have.get("GPU", 0):
        raise RunAborted(
            f"the actors ask for {need_gpu:g} GPU(s) but the Ray cluster has {have.get('GPU', 0):g}. On a machine "
            "without a GPU set ray.resources.segmentor.num_gpus = 0 (e.g. --set ray.resources.segmentor.num_gpus=0)."
        )
    if need_cpu > have.get("CPU", 0):
        raise RunAborted(f"the actors ask for {need_cpu:g} CPUs but the Ray cluster has {have.get('CPU', 0):g}; "
                         "lower ray.resources.<role>.num_cpus or replicas")


def _roles(cfg: Config):
    res = cfg.ray.resources
    return [("media", res["media"]), ("segmentor", res["segmentor"]), ("model", res["model"])]


def make_pools(cfg: Config, segmentor: bool = True) -> dict[str, Pool]:
    """Create the actors. Actors that die are restarted and their calls retried (max_restarts)."""
    res = cfg.ray.resources
    opts = {"max_restarts": -1, "max_task_retries": 3}
    media = ray.remote(MediaWorker).options(num_cpus=res["media"].num_cpus, num_gpus=res["media"].num_gpus,
                                            max_concurrency=res["media"].max_concurrency, **opts)
    model = ray.remote(ModelWorker).options(num_cpus=res["model"].num_cpus, max_concurrency=res["model"].max_concurrency,
                                            **opts)
    pools = {
        "media": Pool([media.remote() for _ in range(res["media"].replicas)]),
        "model": Pool([model.remote(_split_limits(cfg, res["model"].replicas)) for _ in range(res["model"].replicas)]),
    }
    if segmentor:
        seg = ray.remote(SegmentorWorker).options(num_cpus=res["segmentor"].num_cpus, num_gpus=res["segmentor"].num_gpus,
                                                  max_concurrency=res["segmentor"].max_concurrency, **opts)
        pools["segmentor"] = Pool([seg.remote(cfg.segmentor.backend, cfg.segmentor.model_dump_json())
                                   for _ in range(res["segmentor"].replicas)])
    return pools


def _split_limits(cfg: Config, replicas: int) -> str:
    """Each of n model actors gets 1/n of every endpoint's limits, so together they keep them."""
    data = cfg.model_dump(mode="json")
    for ep in data["agents"].values():
        ep["max_concurrent"] = max(1, ep["max_concurrent"] // replicas)
        for key in ("rpm", "tpm"):
            ep[key] = -(-ep[key] // replicas) if ep[key] else 0
    return json.dumps(data)


async def start_actors(pools: dict[str, Pool]) -> str:
    """Wait until every actor is up (a missing checkpoint or a bad backend fails here, before any call);
    returns the segmentor's version."""
    try:
        await asyncio.gather(*(a.ready.remote() for name, p in pools.items() if name != "segmentor" for a in p.actors))
        versions = await asyncio.gather(*(a.version.remote() for a in pools["segmentor"].actors))
    except ray.exceptions.RayActorError as e:
        raise RunAborted(f"an actor could not start: {e}") from None
    return versions[0]


async def run_videos(s: Services, pipelines: Sequence[Pipeline], videos: Iterable[VideoTask]) -> None:
    """Run every pipeline's stages on every video, at most cfg.runtime.videos_in_flight at once."""
    queue = iter(videos)

    async def run_video(video: VideoTask) -> None:
        for pipeline in (p for p in pipelines if p.accepts(video)):
            for stage in pipeline.stages:
                unit_stage = f"{pipeline.name}.{stage.name}"
                if await s.attempt("video", video.id, unit_stage, lambda st=stage: _run_stage(st, video, s)) is None:
                    return  # this video's later stages depend on the failed one

    async def worker() -> None:
        for video in queue:  # one shared iterator: each video goes to exactly one worker
            await run_video(video)

    await asyncio.gather(*(worker() for _ in range(s.cfg.runtime.videos_in_flight)))


async def _run_stage(stage: Stage, video: VideoTask, s: Services) -> bool:
    try:
        await stage.run(video, s)
    except (UnitFailure, RunAborted):
        raise
    except Exception as e:  # a bug or a decoder failure must not stop the other videos
        log.exception("stage %s failed on %s", stage.name, video.rel)
        raise UnitFailure(type(e).__name__, str(e)[:500]) from None
    return True


def video_tasks(store: Store, video_ids: Sequence[str] | None = None) -> list[VideoTask]:
    with store.session() as sess:
        q = sess.query(schema.Video).order_by(schema.Video.path)
        if video_ids is not None:
            q = q.filter(schema.Video.id.in_(list(video_ids)))
        return [VideoTask(v.id, str(Path(v.source_root) / v.path), v.path, v.kind, v.num_frames, v.fps, v.width,
                          v.height) for v in q]


PIPELINE_ORDER = ("detailed", "short", "qa")  # detailed first: it segments every noun of a video at once


def build_pipelines(names: Sequence[str]) -> list[Pipeline]:
    from engine.runtime.plugins import REGISTRY, resolve

    unknown = [n for n in names if n not in REGISTRY["pipeline"]]
    if unknown:
        raise ValueError(f"unknown pipeline(s) {', '.join(unknown)}; choose from {', '.join(REGISTRY['pipeline'])}")
    built = [resolve("pipeline", n)() for n in PIPELINE_ORDER if n in names]
    return [p for b in built for p in (b if isinstance(b, list) else [b])]  # a name may stand for several


async def execute(cfg: Config, store: Store, run_id: str, video_ids: Sequence[str], pipeline_names: Sequence[str],
                  use_cache: bool = True, retry_failed: bool = False,
                  on_progress: Callable[[str, int, int], None] | None = None) -> Services:
    """Run the pipelines over the given (ingested) videos on Ray; returns the services with their counters."""
    pipelines = build_pipelines(pipeline_names)
    start_ray(cfg)
    check_resources(cfg)
    pools = make_pools(cfg)
    s = Services(cfg, store, run_id, pools, use_cache=use_cache, retry_failed=retry_failed, on_progress=on_progress)
    s.segmentor_version = await start_actors(pools)
    await run_videos(s, pipelines, video_tasks(store, video_ids))
    return s
