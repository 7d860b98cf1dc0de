"""The dry-run plan: what a run of the chosen pipelines over the ingested videos would decode, call and cost now.

Derived from the pipelines' own declarations: each distinct stage (pipelines that share a stage at
one lineage run it once) says which calls it makes per video, per object, per kept object or per
object pair (`Stage.estimate`), and what it writes (`Stage.outputs`). The plan counts only the work a real
run would do: against each video's current rows (engine/store/current.py), a stage whose completion marker or
outputs are there plans nothing, and objects already found are counted, not estimated. A dataset's objects
come from its annotation files (`Stage.planned_objects`), and a video such a stage drops plans nothing after
it. Token counts per call are estimates of our own prompts until runs exist; once the store holds enough
answered requests of an agent role, their measured means replace the estimate for that role.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from engine.config import Config
from engine.media.video import uniform_indices
from engine.runtime.pipeline import Pipeline, Stage, VersionContext, VideoTask, current_of
from engine.runtime.services import UNVERSIONED
from engine.store.current import Current, VideoRows
from engine.store.db import Store
from engine.store.records import ObjectRecord
from engine.store.requests import measured_call_tokens

MIN_MEASURED_CALLS = 20  # below this, measured means are too noisy to replace the estimate


@dataclass(frozen=True)
class RoleEstimate:
    role: str
    endpoint: str  # the agent's endpoint key in the configuration (agents.<endpoint>)
    calls: float
    tokens_in: float
    tokens_out: float
    cost_usd: float
    measured: bool  # True when the per-call tokens come from this store's past requests
    url: str = ""  # where its requests go: the endpoint's base_url, else OPENAI_BASE_URL, else OpenAI's


@dataclass(frozen=True)
class Plan:
    videos: int  # units the run takes up
    frames: int  # at full resolution, mask frames and annotator frames together, of the videos with work left
    mask_frames: int  # object-frames the segmentor propagates over (0 when no stage segments)
    objects: float  # known where found (or annotated in a dataset), else estimated
    roles: list[RoleEstimate]
    videos_with_work: int = 0  # units with any stage left to run
    objects_estimated: bool = True  # False when every count comes from the store or a dataset's annotations
    dropped: int = 0  # units a stage leaves out before any call (a dataset split released without masks)

    @property
    def calls(self) -> float:
        return sum(a.calls for a in self.roles)

    @property
    def cost_usd(self) -> float:
        return sum(a.cost_usd for a in self.roles)


def measured_tokens(store: Store, cfg: Config, pipelines: Sequence[Pipeline]) -> dict[str, tuple[float, float, int]]:
    """{role: (mean tokens in, mean tokens out, number of requests)} over the recent answered calls of each role the
    pipelines call."""
    return measured_call_tokens(store, {e.role for p in pipelines for st in p.stages for e in st.estimate(cfg)})


RowsOf = Callable[[Current, list[str]], Mapping[str, VideoRows]]


def make_plan(
    cfg: Config,
    pipelines: Sequence[Pipeline],
    vc: VersionContext,
    videos: Sequence[VideoTask],
    uncaptioned: set[str],
    measured: dict[str, tuple[float, float, int]] | None = None,
    rows_of: RowsOf | None = None,
    environ: Mapping[str, str] | None = None,
    chunk: int = 256,
) -> Plan:
    """Estimate a run of `pipelines` over `videos` (the ids in `uncaptioned` have no caption yet). `rows_of`
    reads videos' current rows (None: a store that holds nothing yet); `environ` gives OPENAI_BASE_URL."""
    measured = measured or {}
    current = current_of(list(pipelines), vc)
    tally = _Tally(cfg, current, uncaptioned)
    for i in range(0, len(videos), chunk):
        part = videos[i : i + chunk]
        rows = rows_of(current, [v.id for v in part]) if rows_of is not None else {}
        for video in part:
            tally.video(video, pipelines, vc, rows.get(video.id))
    roles = []
    shapes = {e.role: e for stage in tally.stages.values() for e in stage.estimate(cfg)}
    for (role, endpoint), n in tally.calls.items():
        m = measured.get(role)
        is_measured = m is not None and m[2] >= MIN_MEASURED_CALLS
        e = shapes[role]
        per_in, per_out = (m[0], m[1]) if m is not None and is_measured else (
            e.text_in + e.images * cfg.plan.tokens_per_image, e.tokens_out)  # fmt: skip
        ep = cfg.endpoint(endpoint)
        tin, tout = n * per_in, n * per_out
        cost = (tin * ep.price_in_per_mtok + tout * ep.price_out_per_mtok) / 1e6
        roles.append(RoleEstimate(role, endpoint, n, tin, tout, cost, is_measured, ep.url(environ or {})))
    return Plan(
        len(videos),
        tally.frames,
        round(tally.mask_frames),
        tally.objects,
        sorted(roles, key=lambda r: r.role),
        tally.with_work,
        tally.estimated,
        tally.dropped,
    )


class _Tally:
    """The plan's sums, one video at a time."""

    def __init__(self, cfg: Config, current: Current, uncaptioned: set[str]):
        self.cfg, self.current, self.uncaptioned = cfg, current, uncaptioned
        self.calls: dict[tuple[str, str], float] = {}
        self.stages: dict[tuple[str, str | None], Stage] = {}
        self.frames = 0
        self.mask_frames = 0.0
        self.objects = 0.0
        self.with_work = 0
        self.dropped = 0
        self.estimated = False

    def video(self, video: VideoTask, pipelines: Sequence[Pipeline], vc: VersionContext, r: VideoRows | None) -> None:
        cfg = self.cfg
        seen: set[tuple[str, str | None]] = set()
        work = segments = False
        for p in (p for p in pipelines if p.accepts(video)):
            found: list[ObjectRecord] | None = None  # this pipeline's objects of the video, where known
            planned: float | None = None  # else their number, from annotations or the estimate
            as_is = any(st.counts_as_kept for st in p.stages)
            for stage, lineage in zip(p.stages, p.lineages(vc)):
                key = lineage if lineage is not None else UNVERSIONED
                done = r is not None and (video.id, stage.name, key) in r.done
                if "objects" in stage.outputs:
                    version = stage.version(vc)
                    mine = [o for o in r.objects.values() if o.stage_version == version] if r is not None else []
                    if done or mine:
                        found = mine
                    else:
                        planned = stage.planned_objects(video)
                        if planned is None:
                            planned, self.estimated = cfg.plan.objects_per_video, True
                    n = len(found) if found is not None else planned or 0
                    if (stage.name, lineage) not in seen:
                        self.objects += n
                    if n == 0:  # a video with no object (or dropped: a split without masks) has nothing after
                        self.dropped += int(done and not mine and as_is or planned == 0)
                        break
                if (stage.name, lineage) in seen:
                    continue
                seen.add((stage.name, lineage))
                self.stages[(stage.name, lineage)] = stage
                counts = self._pending(video, stage, key, done, r, found, planned, as_is)
                for e in stage.estimate(cfg):
                    n = counts[e.per] * e.calls  # a role with nothing left is listed at 0 calls
                    self.calls[(e.role, e.endpoint)] = self.calls.get((e.role, e.endpoint), 0.0) + n
                    work = work or n > 0
                if "segmentor" in stage.uses and not done and counts["object"]:
                    segments = True
                    self.mask_frames += (
                        len(uniform_indices(video.num_frames, cfg.sampling.mask_frames)) * (counts["object"])
                    )
        if work or segments:
            self.with_work += 1
            n_mask, n_ann = cfg.sampling.mask_frames, cfg.sampling.annotator_frames
            self.frames += len(
                set(uniform_indices(video.num_frames, n_mask)) | set(uniform_indices(video.num_frames, n_ann))
            )

    def _pending(
        self,
        video: VideoTask,
        stage: Stage,
        key: str,
        done: bool,
        r: VideoRows | None,
        found: list[ObjectRecord] | None,
        planned: float | None,
        as_is: bool,
    ) -> dict[str, float]:
        """How many of each unit (video, object, kept object, pair) this stage has left on this video."""
        keep_rate = 1.0 if as_is else self.cfg.plan.keep_rate
        if found is None or r is None:  # nothing found yet: all of it, estimated
            n = planned if planned is not None else self.cfg.plan.objects_per_video
            kept = n * keep_rate
            return {
                "uncaptioned": float(video.id in self.uncaptioned),
                "video": float(not done),
                "object": n,
                "kept": kept,
                "pair": min(1.0, max(0.0, kept - 1)),
            }
        grounded = [o for o in found if o.id in r.masklets] or found  # before segmenting: every object

        def lacks(o: ObjectRecord) -> bool:
            for out in stage.outputs:
                kind, _, sub = out.partition(":")
                if kind == "descriptions" and (o.id, sub) not in r.descriptions:
                    return True
                if kind == "reviews" and o.id not in r.reviews:
                    return True
                if kind == "masklets" and o.id not in r.masklets and (o.id, stage.name, key) not in r.done:
                    return True
                if kind == "samples" and (o.id, stage.name, key) not in r.done:
                    return True
            return False

        reviewed = [o for o in grounded if o.id in r.reviews]
        kept_known = [o for o in grounded if self.current.kept(o.stage_version, _verdict(r, o))]
        unreviewed = 0 if as_is else len(grounded) - len(reviewed)
        kept_pending = sum(lacks(o) for o in kept_known) + unreviewed * keep_rate
        pairs_done = any(u.count("+") and st == stage.name and lin == key for u, st, lin in r.done)
        kept_all = len(kept_known) + unreviewed * keep_rate
        return {
            "uncaptioned": float(video.id in self.uncaptioned),
            "video": float(not done),
            "object": float(sum(lacks(o) for o in grounded)) if stage.outputs else 0.0,
            "kept": kept_pending,
            "pair": 0.0 if pairs_done else min(1.0, max(0.0, kept_all - 1)),
        }


def _verdict(r: VideoRows, o: ObjectRecord) -> bool | None:
    review = r.reviews.get(o.id)
    return review.verdict if review is not None else None
