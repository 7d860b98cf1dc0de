"""The dry-run plan: what a run of the chosen pipelines over the ingested videos would decode, call and cost.

Derived from the pipelines' own declarations: each distinct stage (pipelines that share a stage at
one lineage run it once) says which calls it makes per video, per object, per kept object or per
object pair (`Stage.estimate`). Token counts per call are estimates of our own prompts until runs
exist; once the store holds enough answered requests of an agent role, their measured means replace
the estimate for that role.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.config import Config
from engine.media.video import uniform_indices
from engine.runtime.pipeline import Pipeline, VersionContext, VideoTask, distinct_stages
from engine.store.db import Store
from engine.store.requests import measured_call_tokens

MIN_MEASURED_CALLS = 20  # below this, measured means are too noisy to replace the estimate


@dataclass(frozen=True)
class RoleEstimate:
    role: str
    endpoint: str
    calls: float
    tokens_in: float
    tokens_out: float
    cost_usd: float
    measured: bool  # True when the per-call tokens come from this store's past requests


@dataclass(frozen=True)
class Plan:
    videos: int
    frames: int  # at full resolution, mask frames and annotator frames together
    mask_frames: int  # object-frames the segmentor propagates over (0 when no stage segments)
    objects: float
    roles: list[RoleEstimate]

    @property
    def calls(self) -> float:
        return sum(a.calls for a in self.roles)

    @property
    def cost_usd(self) -> float:
        return sum(a.cost_usd for a in self.roles)


def measured_tokens(store: Store) -> dict[str, tuple[float, float, int]]:
    """{role: (mean tokens in, mean tokens out, number of requests)} over answered requests of kind call."""
    return measured_call_tokens(store)


def make_plan(
    cfg: Config,
    pipelines: Sequence[Pipeline],
    vc: VersionContext,
    videos: Sequence[VideoTask],
    uncaptioned: set[str],
    measured: dict[str, tuple[float, float, int]] | None = None,
) -> Plan:
    """Estimate a run of `pipelines` over `videos` (the ids in `uncaptioned` have no caption yet)."""
    measured = measured or {}
    n_mask, n_ann = cfg.sampling.mask_frames, cfg.sampling.annotator_frames
    per_video = cfg.plan.objects_per_video
    calls: dict[tuple[str, str], float] = {}
    shapes: dict[str, tuple[int, int, int]] = {}
    segmented: set[str] = set()
    for pipeline, stage in distinct_stages(list(pipelines), vc):
        mine = [v for v in videos if pipeline.accepts(v)]
        kept_rate = 1.0 if any(st.counts_as_kept for st in pipeline.stages) else cfg.plan.keep_rate
        kept_per_video = per_video * kept_rate
        count = {
            "uncaptioned": sum(v.id in uncaptioned for v in mine),
            "video": len(mine),
            "object": len(mine) * per_video,
            "kept": len(mine) * kept_per_video,
            "pair": len(mine) * min(1.0, max(0.0, kept_per_video - 1)),
        }
        if "segmentor" in stage.uses:
            segmented.update(v.id for v in mine)
        for e in stage.estimate(cfg):
            calls[(e.role, e.endpoint)] = calls.get((e.role, e.endpoint), 0.0) + count[e.per] * e.calls
            shapes.setdefault(e.role, (e.text_in + e.images * cfg.plan.tokens_per_image, e.tokens_out, 0))
    roles = []
    for (role, endpoint), n in calls.items():
        m = measured.get(role)
        is_measured = m is not None and m[2] >= MIN_MEASURED_CALLS
        per_in, per_out = (m[0], m[1]) if m is not None and is_measured else shapes[role][:2]
        ep = getattr(cfg.agents, endpoint)
        tin, tout = n * per_in, n * per_out
        roles.append(
            RoleEstimate(
                role,
                endpoint,
                n,
                tin,
                tout,
                (tin * ep.price_in_per_mtok + tout * ep.price_out_per_mtok) / 1e6,
                is_measured,
            )
        )
    frames = sum(
        len(set(uniform_indices(v.num_frames, n_mask)) | set(uniform_indices(v.num_frames, n_ann))) for v in videos
    )
    mask_frames = round(
        sum(len(uniform_indices(v.num_frames, n_mask)) for v in videos if v.id in segmented) * per_video
    )
    return Plan(len(videos), frames, mask_frames, len(videos) * per_video, sorted(roles, key=lambda r: r.role))
