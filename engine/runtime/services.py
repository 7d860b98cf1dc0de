"""What stages use: model calls (one client, one cache), the media and segmentor pools, and the store writer.

The driver is the store's single writer: stages hand their typed records (engine/store/records.py) to
`StageContext.save`, which updates the video's in-memory state at once and queues their rows, with the unit's
completion marker, as one group for the StoreIO thread. No stage runs SQL.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from engine.config import Config
from engine.media import masks
from engine.runtime.pipeline import RunAborted, UnitFailure, VideoTask
from engine.runtime.pool import Pool
from engine.runtime.state import VideoState
from engine.runtime.tally import RunTally
from engine.store import schema
from engine.store.checks import RowError, check_group
from engine.store.db import with_defaults
from engine.store.io import Delete, Insert, StoreError, StoreIO, UnitRef, failure_upsert
from engine.store.records import FailureRecord, StageRecord, VersionedRecord

if TYPE_CHECKING:  # the client (aiohttp) loads only in a run, not with every command
    from engine.llm.client import ModelClient

log = logging.getLogger(__name__)
# The unit whose work is running in this task, (kind, id, stage): its rows carry it to the writer, which
# quarantines that unit if the database refuses them. Set by attempt(); child tasks inherit it.
_UNIT: contextvars.ContextVar[tuple[str, str, str] | None] = contextvars.ContextVar("unit", default=None)
UNVERSIONED = ""  # the lineage key of a stage that writes nothing versioned (the Captioner): never NULL


@dataclass(frozen=True)
class ImageSet:
    """Frames encoded by a MediaWorker: their digests (the messages' placeholders) and data URLs."""

    digests: tuple[str, ...]
    urls: tuple[str, ...]

    @property
    def by_digest(self) -> dict[str, str]:
        return dict(zip(self.digests, self.urls))


@dataclass
class StageProgress:
    """Units per stage: every total before work starts, done when a unit ends (succeeded or given up)."""

    stages: dict[str, list[int]] = field(default_factory=dict)  # stage -> [done, total]
    on_change: Callable[[str, int, int], None] | None = None

    def add(self, stage: str, done: int = 0, total: int = 0) -> None:
        c = self.stages.setdefault(stage, [0, 0])
        c[0] += done
        c[1] += total
        if self.on_change:
            self.on_change(stage, c[0], c[1])


class Services:
    def __init__(
        self,
        cfg: Config,
        io: StoreIO,
        client: ModelClient,
        pools: dict[str, Pool],
        run_id: str,
        retry_failed: bool = False,
        progress: StageProgress | None = None,
        tally: RunTally | None = None,
    ):
        self.cfg, self.io, self.client, self.pools, self.run_id = cfg, io, client, pools, run_id
        self.retry_failed = retry_failed
        self.progress = progress or StageProgress()
        self.tally = tally or RunTally()
        self._warned: set[str] = set()
        io.on_rejected = self._rejected

    def _rejected(self, unit: UnitRef | None, message: str) -> None:
        what = f"{unit.stage} of {unit.unit_kind} {unit.unit_id[:16]}" if unit else "rows of no unit"
        log.warning("the store refused the %s: %s; quarantined, the run goes on", what, message)

    # --- model calls ---------------------------------------------------------------------------------
    async def ask(self, agent: Any, item: Any, images: ImageSet | None = None, scope: str | None = None) -> Any:
        """prompt() -> the client (cache, or HTTP) -> parse(). Raises UnitFailure; RunAborted for fatal errors."""
        from engine.llm.client import EndpointError

        messages = agent.prompt(item)
        logprobs = getattr(agent, "reads_logprobs", False) and self.cfg.review.logprobs == "auto"
        try:
            result = await self.client.query(
                agent.endpoint,
                messages,
                agent.response_format,
                role=agent.role,
                images=images.by_digest if images else None,
                scope=scope,
                logprobs=logprobs,
            )
        except EndpointError as e:
            raise RunAborted(str(e)) from None
        if not result.ok:
            raise UnitFailure(result.error_code or result.status, result.error or result.status)
        try:
            if logprobs:
                return agent.parse(item, result.value, result.logprobs)
            return agent.parse(item, result.value)
        except ValueError as e:
            # valid JSON the agent cannot use: drop it from the cache, so a retry asks the model again
            self.client.forget(result.request_hash, scope)
            raise UnitFailure("unusable_output", f"{agent.role}: {e}") from None

    # --- media and segmentation ----------------------------------------------------------------------
    async def encode(self, video: VideoTask, indices: Sequence[int], endpoint_key: str) -> ImageSet:
        ep = getattr(self.cfg.agents, endpoint_key)
        digests, urls = await self.pools["media"].call(
            "encode",
            video.path,
            [int(i) + video.first_frame for i in indices],
            ep.image_max_side,
            ep.image_quality,
            self.cfg.sampling.frame_folder_fps,
            key=video.path,
        )
        return ImageSet(tuple(digests), tuple(urls))

    async def overlays(
        self, video: VideoTask, items: Sequence[tuple[Sequence[int], Any]], endpoint_key: str, label: str | None = None
    ) -> list[ImageSet]:
        """For each (frame indices, an object's masks by frame), those frames with the mask drawn: one actor call.
        An item may give a list of objects' masks instead: drawn together, object i in colour i, labelled i + 1."""
        if not items:
            return []
        ep = getattr(self.cfg.agents, endpoint_key)

        off = video.first_frame  # the actor counts a clip's frames in its source

        def drawn(idx, layer: dict) -> dict:  # only the masks drawn travel to the actor
            return {str(int(f) + off): layer.get(str(f)) for f in idx}

        needed = [
            ([int(f) + off for f in idx], [drawn(idx, x) for x in m] if isinstance(m, list) else drawn(idx, m))
            for idx, m in items
        ]
        out = await self.pools["media"].call(
            "overlays",
            video.path,
            needed,
            ep.image_max_side,
            ep.image_quality,
            label,
            self.cfg.sampling.frame_folder_fps,
            key=video.path,
        )
        return [ImageSet(tuple(d), tuple(u)) for d, u in out]

    async def segment(self, request: Any) -> list:
        """[(track, its quality metrics)] for the request's nouns."""
        # The SegmentorWorker fetches the frames from the MediaWorker that has this video open: the pixels
        # go between the actors through Ray's object store, and the driver makes one call, not two.
        from ray.exceptions import RayTaskError  # Ray loads only in a run, not with every command

        try:
            with self.pools["media"].lease(key=request.video_path) as media:
                tracks, warned = await self.pools["segmentor"].call(
                    "segment", request, media, self.cfg.sampling.frame_folder_fps
                )
        except RayTaskError as e:
            if isinstance(e.cause, masks.SegmentorOutputError):  # masks that do not fit the video: never stored
                raise UnitFailure("segmentor_output", str(e.cause)) from None
            raise UnitFailure("segmentor_error", f"{type(e.cause).__name__}: {e.cause}") from None
        for message in warned:
            if message not in self._warned:  # once per run, not once per video
                self._warned.add(message)
                log.warning("segmentor: %s", message)
        return tracks

    # --- failures and quarantine ---------------------------------------------------------------------
    async def attempt(
        self, ctx: StageContext, unit_kind: str, unit_id: str, stage: str, work: Callable[[], Awaitable[Any]]
    ) -> tuple[bool, Any]:
        """Run one unit's work with bounded retries; on the last failure, quarantine it.

        Returns (succeeded, result). Attempts made before a crash count: a resumed run finishes the
        unit's budget, it does not restart it.
        """
        failure = ctx.state.failure(unit_id, stage, ctx.key_lineage)
        if failure is not None and failure.quarantined and not self.retry_failed:
            self.tally.unit(stage, "quarantined")
            return False, None
        budget = self.cfg.runtime.max_unit_attempts
        made = failure.attempts if failure is not None and not self.retry_failed else 0
        failed = failure is not None
        for n in range(min(made, budget - 1), budget):
            token = _UNIT.set((unit_kind, unit_id, stage))
            try:
                result = await work()
            except UnitFailure as e:
                failed = True
                self._record_failure(ctx, unit_kind, unit_id, stage, e, attempts=n + 1, quarantine=n == budget - 1)
                continue
            except StoreError as e:
                raise RunAborted(str(e)) from None
            finally:
                _UNIT.reset(token)
            if failed:  # it works now: it is no longer a failure
                ctx.forget_failure(unit_id, stage)
            return True, result
        return False, None

    def _record_failure(
        self,
        ctx: StageContext,
        unit_kind: str,
        unit_id: str,
        stage: str,
        e: UnitFailure,
        attempts: int,
        quarantine: bool,
    ) -> None:
        op = failure_upsert(
            UnitRef(unit_kind, unit_id, ctx.video.id, stage, ctx.key_lineage, self.run_id),
            e.code,
            e.message,
            attempts,
            quarantine,
        )
        ctx.state.set_failure(FailureRecord.from_row(op.rows[0]))
        self.io.submit([op])
        self.tally.failed(stage, e.code, quarantine)


@dataclass
class StageContext:
    """One stage of one pipeline on one video: where its results go and under which lineage."""

    s: Services
    video: VideoTask
    state: VideoState
    stage: str  # the stage's name: completion markers and failures are keyed by it
    lineage: str | None
    version: str | None  # the stage's own version (objects.stage_version for the Analyzer)
    objects_version: str | None  # the pipeline's objects: the stage_version its Analyzer (or dataset) writes
    saved: bool = False  # whether the stage stored anything on this video: if not, its results were current

    @property
    def cfg(self) -> Config:
        return self.s.cfg

    @property
    def own_version(self) -> str:
        """The stage's own version, for a stage that writes versioned results (objects, masklets) and has one."""
        if self.version is None:
            raise UnitFailure("unversioned", f"stage {self.stage} writes versioned results but has no version")
        return self.version

    @property
    def key_lineage(self) -> str:
        """The lineage that keys this stage's completions and failures (never NULL)."""
        return self.lineage if self.lineage is not None else UNVERSIONED

    def save(
        self,
        *items: Sequence[StageRecord],
        done: Sequence[str] = (),
        dropped: dict[str, int] | None = None,
    ) -> None:
        """Keep records (in memory now, in the store with the next batch) as one group; each item holds the
        records of one table.

        `done` names the units this group completes: their completion markers go in the same group, so a
        unit is either done with all its results stored, or not done at all. `dropped` counts, by reason,
        what the work left out (the run summary adds them up).
        """
        held: list[StageRecord] = []
        groups: list[tuple[type[schema.Base], list[dict[str, Any]]]] = []
        for records in items:
            if not records:
                continue
            model = records[0].table
            # a versioned result carries its stage's lineage, in memory as in the store
            records = [_at_lineage(r, self.lineage) for r in records]
            held += records
            # rows completed with the columns' defaults: what the store's writer inserts
            groups.append((model, [with_defaults(model, r.columns()) for r in records]))
        markers = [
            dict(
                video_id=self.video.id,
                unit_id=unit,
                stage=self.stage,
                lineage=self.key_lineage,
                run_id=self.s.run_id,
                dropped=dict(dropped) if dropped else None,
            )
            for unit in done
        ]
        if markers:
            groups.append((schema.Completion, markers))
        try:  # what the store would refuse fails this unit now, never the batch it would share
            check_group(groups, self.state.known, self.state.holder)
        except RowError as e:
            raise UnitFailure("invalid_rows", str(e)) from None
        self.state.add(held)
        for unit in done:
            self.state.mark_done(unit, self.stage, self.key_lineage)
        self.saved = True
        for records in items:
            if records:
                self.s.tally.saved(records[0].table.__tablename__, records)
        kind, unit_id, stage = _UNIT.get() or ("video", self.video.id, self.stage)
        self.s.io.submit(
            [Insert(model, rows) for model, rows in groups],
            UnitRef(kind, unit_id, self.video.id, stage, self.key_lineage, self.s.run_id),
        )

    def done(self, unit_id: str) -> bool:
        return self.state.done(unit_id, self.stage, self.key_lineage)

    async def ask(self, agent: Any, item: Any, images: ImageSet | None = None) -> Any:
        """An agent's call for this video (its cached answers were loaded with its state)."""
        return await self.s.ask(agent, item, images, scope=self.video.id)

    def forget_failure(self, unit_id: str, stage: str) -> None:
        self.state.forget_failure(unit_id, stage, self.key_lineage)
        self.s.io.submit([Delete(schema.Failure, {"unit_id": unit_id, "stage": stage, "lineage": self.key_lineage})])

    async def attempt(
        self, unit_kind: str, unit_id: str, work: Callable[[], Awaitable[Any]], stage: str | None = None
    ) -> tuple[bool, Any]:
        return await self.s.attempt(self, unit_kind, unit_id, stage or self.stage, work)


def _at_lineage(record: StageRecord, lineage: str | None) -> StageRecord:
    """A versioned record (a masklet, description, review or sample) with its stage's lineage, unless it names one."""
    if isinstance(record, VersionedRecord) and record.lineage is None and lineage is not None:
        return replace(record, lineage=lineage)
    return record


async def gather_units(items: Sequence[Any], work: Callable[[Any], Awaitable[Any]]) -> None:
    """Object-level work of one stage, concurrently; each item fails on its own (attempt() records it)."""
    await asyncio.gather(*(work(item) for item in items))
