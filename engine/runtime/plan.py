"""The dry-run plan: what a full run over the ingested videos would decode, call and cost.

Token counts per call are estimates of our own prompts until runs exist; once the store holds
enough successful calls for an agent, their measured means replace the estimate for that agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import sqlalchemy as sa

from engine.store import schema
from engine.config import Config
from engine.media.video import uniform_indices
from engine.store import Store

MIN_MEASURED_CALLS = 20  # below this, measured means are too noisy to replace the estimate


@dataclass(frozen=True)
class CallShape:
    """Expected size of one call of an agent: text tokens in, images in, tokens out."""

    text_in: int
    images: int
    tokens_out: int


@dataclass(frozen=True)
class AgentEstimate:
    agent: str
    calls: float
    tokens_in: float
    tokens_out: float
    cost_usd: float
    measured: bool  # True when the per-call tokens come from this store's past calls


@dataclass(frozen=True)
class Plan:
    videos: int
    frames: int  # at full resolution, mask frames and annotator frames together
    mask_frames: int  # frames the segmentor propagates over, all objects together
    objects: float
    agents: list[AgentEstimate]

    @property
    def calls(self) -> float:
        return sum(a.calls for a in self.agents)

    @property
    def cost_usd(self) -> float:
        return sum(a.cost_usd for a in self.agents)


def _shapes(cfg: Config) -> dict[str, CallShape]:
    n_ann, n_mask = cfg.sampling.annotator_frames, cfg.sampling.mask_frames
    return {
        "captioner": CallShape(text_in=150, images=n_ann, tokens_out=80),
        "analyzer": CallShape(text_in=300, images=0, tokens_out=40),
        "annotator": CallShape(text_in=250, images=n_ann, tokens_out=120),
        # paper mode: a region description on the anchor frame, then a text-only judgement (averaged)
        "reviewer": CallShape(text_in=300, images=1, tokens_out=80)
        if cfg.runtime.reviewer_mode == "paper"
        else CallShape(text_in=400, images=min(8, n_mask), tokens_out=60),
        "refiner": CallShape(text_in=450, images=0, tokens_out=250),
    }


def _calls(cfg: Config, videos: int, uncaptioned: int, objects: float) -> dict[str, float]:
    reviews_per_object = 2 if cfg.runtime.reviewer_mode == "paper" else 1
    return {
        "captioner": uncaptioned,
        "analyzer": videos,
        "annotator": 2 * objects,  # dynamic and static queries, as the paper
        "reviewer": reviews_per_object * objects,
        "refiner": objects * cfg.plan.keep_rate,  # only what the Reviewer keeps is refined
    }


def measured_tokens(store: Store) -> dict[str, tuple[float, float, int]]:
    """{agent: (mean tokens in, mean tokens out, number of calls)} over successful calls."""
    mc = schema.ModelCall
    with store.session() as s:
        rows = s.execute(
            sa.select(mc.agent, sa.func.avg(mc.tokens_in), sa.func.avg(mc.tokens_out), sa.func.count())
            .where(mc.status == "ok")
            .group_by(mc.agent)
        ).all()
    return {agent: (float(i), float(o), int(n)) for agent, i, o, n in rows}


def make_plan(
    cfg: Config,
    num_frames: Sequence[int],
    uncaptioned: int,
    measured: dict[str, tuple[float, float, int]] | None = None,
) -> Plan:
    """Estimate a detailed-pipeline run over videos with the given frame counts."""
    measured = measured or {}
    n_mask, n_ann = cfg.sampling.mask_frames, cfg.sampling.annotator_frames
    frames = sum(len(set(uniform_indices(n, n_mask)) | set(uniform_indices(n, n_ann))) for n in num_frames)
    objects = cfg.plan.objects_per_video * len(num_frames)
    mask_frames = round(sum(len(uniform_indices(n, n_mask)) for n in num_frames) * cfg.plan.objects_per_video)
    shapes = _shapes(cfg)
    agents = []
    for agent, calls in _calls(cfg, len(num_frames), uncaptioned, objects).items():
        shape = shapes[agent]
        m = measured.get(agent)
        is_measured = m is not None and m[2] >= MIN_MEASURED_CALLS
        per_in, per_out = (m[0], m[1]) if is_measured else (
            shape.text_in + shape.images * cfg.plan.tokens_per_image, shape.tokens_out
        )
        endpoint = getattr(cfg.agents, agent)
        tin, tout = calls * per_in, calls * per_out
        cost = (tin * endpoint.price_in_per_mtok + tout * endpoint.price_out_per_mtok) / 1e6
        agents.append(AgentEstimate(agent, calls, tin, tout, cost, is_measured))
    return Plan(len(num_frames), frames, mask_frames, objects, agents)
