"""Stages: each wraps one agent (or the segmentor) and moves one video forward by one step.

A stage reads the video's current results from its in-memory state (loaded once per video), skips
what is already done at its lineage (so a rerun resumes, and a new prompt, model or segmentor version
reruns that stage and those after it), sends work through the driver's Services, and saves each
unit's results with its completion marker as one group. Object-level work runs concurrently and fails
per object; the other objects go on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agents.analyzer import Analysis, AnalyzeItem, AnalyzerAgent, subject_is_plural
from agents.annotator import AnnotateItem, AnnotatorAgent
from agents.captioner import CaptionerAgent, CaptionItem
from agents.refiner import QAItem, QAObject, QAWriter, QAWriterSeeingFrames, RefineItem, RefinerAgent, qa_types
from agents.reviewer import DirectReviewer, Judge, JudgeItem, RegionDescriber, RegionItem, Scored
from agents.segmentor import SegmentRequest
from engine.config import JUDGE_PREFIX, Config, ShortConfig
from engine.dataset import records
from engine.media import masks
from engine.media.gates import failed_gate, gate_metrics
from engine.media.video import uniform_indices
from engine.runtime.pipeline import CallEstimate, Stage, UnitFailure, VersionContext, VideoTask
from engine.runtime.services import ImageSet, StageContext, gather_units
from engine.runtime.state import VideoState
from engine.sources.datasets import dataset_of
from engine.store import schema
from engine.store.ids import derived_id, hash_part, stable_id
from engine.store.records import (
    CaptionRecord,
    DescriptionRecord,
    GateRecord,
    MaskletRecord,
    ObjectRecord,
    ReviewRecord,
    SampleRecord,
)

DIRECT_REVIEW_FRAMES = 8
RECORDS_VERSION = "records@2"  # the sample format: a change gives samples a new lineage
# records@2: empty frames as {"segmentation": null}; text from models, captions and datasets neutralised


def mask_indices(cfg: Config, video: VideoTask) -> list[int]:
    return uniform_indices(video.num_frames, cfg.sampling.mask_frames)


def description_record(ctx: StageContext, obj: ObjectRecord, kind: str, text: str, agent: Any) -> DescriptionRecord:
    return DescriptionRecord(
        id=derived_id(obj.id, "description", hash_part(obj.id), kind, ctx.lineage),
        lineage=ctx.lineage,
        object_id=obj.id,
        kind=kind,
        text=text,
        model=ctx.cfg.endpoint(agent.endpoint).model,
        prompt_version=agent.version,
    )


@dataclass
class CaptionStage(Stage):
    """Write a scene caption for a video that came without one. A clip of a multi-shot source has a caption of its
    own only from a timed caption line (docs/clips.md); the source's caption goes to the Captioner as context."""

    name = "caption"
    uses = ("media", "model")
    agent: CaptionerAgent = field(default_factory=CaptionerAgent)

    def agents(self, cfg: Config) -> tuple:
        return (self.agent,)

    def version(self, vc: VersionContext) -> None:
        return None  # a caption is an input: written once for a video that has none, never re-versioned

    def estimate(self, cfg: Config) -> list[CallEstimate]:
        return [CallEstimate("captioner", "captioner", "uncaptioned", 1, 150, cfg.sampling.annotator_frames, 80)]

    async def run(self, video: VideoTask, ctx: StageContext) -> None:
        if ctx.state.caption is not None:
            return
        idx = uniform_indices(video.num_frames, ctx.cfg.sampling.annotator_frames)
        images = await ctx.s.encode(video, idx, "captioner")
        text = await ctx.ask(self.agent, CaptionItem(images.digests, video.context), images)
        ctx.save(
            [
                CaptionRecord(
                    id=stable_id("caption", video.id, "captioner"), video_id=video.id, source="captioner", text=text
                )
            ]
        )


NOUN_CHARS = schema.max_chars(schema.VideoObject, "noun")  # PostgreSQL enforces VARCHAR(128), SQLite does not


def clip_noun(text: str) -> str:
    """A noun as its objects row keeps it: whitespace collapsed, clipped to the column (the id hashes this too)."""
    return " ".join(text.split())[:NOUN_CHARS].strip()


def object_nouns(analysis: Analysis) -> list[str]:
    """The Analysis's nouns (the subject first), one per noun whatever its case, as the column keeps them, empty ones
    dropped: the Analyzer's parse() normalises already, but the rows' unique key (video, noun, instance, version)
    must hold for any agent, or the second row is silently skipped and its masklet fails the foreign key."""
    out, seen = [], set()
    for noun in map(clip_noun, analysis.nouns):
        if noun and noun.casefold() not in seen:
            seen.add(noun.casefold())
            out.append(noun)
    return out


@dataclass
class AnalyzeStage(Stage):
    """Nouns of the caption's physical objects, the subject marked: one object row per noun."""

    name = "analyze"
    uses = ("model",)
    outputs = ("objects",)
    agent: AnalyzerAgent = field(default_factory=AnalyzerAgent)

    def agents(self, cfg: Config) -> tuple:
        return (self.agent,)

    def estimate(self, cfg: Config) -> list[CallEstimate]:
        return [CallEstimate("analyzer", "analyzer", "video", 1, 300, 0, 40)]

    async def run(self, video: VideoTask, ctx: StageContext) -> None:
        if ctx.done(video.id):
            return
        caption = ctx.state.caption
        if caption is None:
            raise UnitFailure("no_caption", "the video has no caption (add a sidecar, or run the caption stage)")
        analysis = await ctx.ask(self.agent, AnalyzeItem(caption))
        subject = clip_noun(analysis.subject or "")
        version = ctx.own_version
        objects = [
            ObjectRecord(
                id=derived_id(video.id, "object", video.id, noun, 0, version),
                video_id=video.id,
                noun=noun,
                instance=0,
                is_subject=noun == subject,
                stage_version=version,
            )
            for noun in object_nouns(analysis)
        ]
        ctx.save(objects, done=[video.id])


@dataclass
class SegmentStage(Stage):
    """All pending nouns of a video in one segmentor request; each instance becomes its own object."""

    name = "segment"
    uses = ("media", "segmentor")
    outputs = ("masklets",)
    subject_only: bool = False

    def version(self, vc: VersionContext) -> str:
        return vc.segmentor_version

    async def run(self, video: VideoTask, ctx: StageContext) -> None:
        nouns = [
            o
            for o in ctx.state.objects(ctx.objects_version, self.subject_only)
            if o.instance == 0 and not ctx.done(o.id)
        ]
        if not nouns:
            return
        indices = tuple(mask_indices(ctx.cfg, video))
        request = SegmentRequest(
            video.id,
            video.path,
            indices,
            tuple(o.noun for o in nouns),
            video.height,
            video.width,
            video.first_frame,
        )
        tracks = await ctx.s.segment(request)
        new_objects: list[ObjectRecord] = []
        masklets: list[MaskletRecord] = []
        for obj in nouns:
            for t, quality in (tq for tq in tracks if tq[0].noun == obj.noun):
                object_id = obj.id
                if t.instance:  # each further instance is an object of its own
                    object_id = derived_id(video.id, "object", video.id, obj.noun, t.instance, obj.stage_version)
                    new_objects.append(
                        ObjectRecord(
                            id=object_id,
                            video_id=video.id,
                            noun=obj.noun,
                            instance=t.instance,
                            is_subject=obj.is_subject,
                            stage_version=obj.stage_version,
                        )
                    )
                frames = {str(f): m for f, m in t.masks.items()}
                masklets.append(
                    MaskletRecord(
                        id=derived_id(object_id, "masklet", hash_part(object_id), ctx.lineage),
                        lineage=ctx.lineage,
                        object_id=object_id,
                        backend_version=ctx.own_version,
                        anchor_frame=t.anchor_frame,
                        box=list(t.box),
                        grounding_score=t.grounding_score,
                        mask_score=t.mask_score,
                        height=video.height,
                        width=video.width,
                        frames=frames,
                        **quality,
                    )
                )
        # a noun without a track is done too: not grounded at this lineage
        ctx.save(new_objects, masklets, done=[o.id for o in nouns])


@dataclass
class GateStage(Stage):
    """Masklet quality gates (engine/media/gates.py) right after segmentation: an object whose masklet fails one is
    stored with the gate and the metric's value, and no later stage sees it (no Annotator or Reviewer request, no
    sample). Judged from the stored masklet, so new thresholds re-gate without a segmentor call."""

    name = "gate"
    uses = ()
    outputs = ("gates",)
    dataset: bool = False  # after a dataset's own masks: gated only when gates.dataset_masks says so

    def version(self, vc: VersionContext) -> str | None:
        g = vc.cfg.gates
        if not g.enabled or (self.dataset and not g.dataset_masks):
            return None  # no gate: the lineages after it are what they were without one
        return "gates@1|" + ",".join(f"{k}={v}" for k, v in sorted(g.thresholds().items()))

    async def run(self, video: VideoTask, ctx: StageContext) -> None:
        if ctx.version is None:
            return
        state, thresholds, verdicts = ctx.state, ctx.cfg.gates.thresholds(), []
        for obj in state.segmented(ctx.objects_version):
            if state.gate(obj.id) is not None:
                continue
            m = state.masklet_of(obj.id)
            metrics = gate_metrics(m.frames, m.mean_consecutive_iou, m.border_contact)
            failed = failed_gate(metrics, thresholds)
            gate, value, threshold = failed if failed is not None else (None, None, None)
            verdicts.append(
                GateRecord(
                    object_id=obj.id,
                    masklet_id=m.id,
                    passed=failed is None,
                    gate=gate,
                    value=value,
                    threshold=threshold,
                    metrics=metrics,
                    thresholds=thresholds,
                    run_id=ctx.s.run_id,
                )
            )
        if verdicts:
            ctx.save(verdicts)


@dataclass
class AnnotateStage(Stage):
    """Two descriptions per grounded object: dynamic (motion) and static (appearance)."""

    name = "annotate"
    uses = ("media", "model")
    outputs = ("descriptions:appearance", "descriptions:motion")
    annotators: tuple[AnnotatorAgent, ...] = field(
        default_factory=lambda: (AnnotatorAgent("dynamic"), AnnotatorAgent("static"))
    )
    masked: bool = False  # every object shown with its mask drawn (a dataset's objects: no noun to find it by)
    context_kind: str | None = None  # a description kind given to the Annotator as context (a dataset's expressions)

    def agents(self, cfg: Config) -> tuple:
        return self.annotators

    def estimate(self, cfg: Config) -> list[CallEstimate]:
        n = cfg.sampling.annotator_frames
        return [CallEstimate(a.role, a.endpoint, "object", 1, 250, n, 120) for a in self.annotators]

    async def run(self, video: VideoTask, ctx: StageContext) -> None:
        state = ctx.state
        objects = state.grounded(ctx.objects_version)
        todo = [(o, a) for o in objects for a in self.annotators if state.description(o.id, a.kind) is None]
        if not todo:
            return
        nouns = [o.noun for o in objects]
        marked = sorted({o.id for o, _ in todo if self.masked or nouns.count(o.noun) > 1})
        plain: asyncio.Future[ImageSet] | None = None
        overlaid: asyncio.Future[list[ImageSet]] | None = None

        async def images_for(obj: ObjectRecord) -> ImageSet:
            """Plain frames, encoded once per video; frames with the object marked where its noun names several
            (made in one media call for all of them, shared by both queries)."""
            nonlocal plain, overlaid
            if obj.id not in marked:
                if plain is None:
                    idx = uniform_indices(video.num_frames, ctx.cfg.sampling.annotator_frames)
                    plain = asyncio.ensure_future(ctx.s.encode(video, idx, "annotator"))
                return await plain
            if overlaid is None:
                # overlays exist on mask frames (a dataset's annotated ones): take annotator_frames of them
                idx = sorted(int(k) for k in state.masklet_of(marked[0]).frames)
                idx = [idx[i] for i in uniform_indices(len(idx), ctx.cfg.sampling.annotator_frames)]
                overlaid = asyncio.ensure_future(
                    ctx.s.overlays(video, [(idx, state.masklet_of(i).frames) for i in marked], "annotator")
                )
            return (await overlaid)[marked.index(obj.id)]

        async def one(pair: tuple[ObjectRecord, AnnotatorAgent]) -> None:
            obj, agent = pair
            several = obj.id in marked

            async def work() -> None:
                images = await images_for(obj)
                said = state.description(obj.id, self.context_kind) if self.context_kind else None
                context = tuple(said.text.splitlines()) if said else ()
                noun = "object" if self.masked else obj.noun
                text = await ctx.ask(agent, AnnotateItem(noun, images.digests, several, context), images)
                ctx.save([description_record(ctx, obj, agent.kind, text, agent)])

            await ctx.attempt("object", obj.id, work, stage=f"{self.name}.{agent.query}")

        await gather_units(todo, one)


@dataclass
class ReviewStage(Stage):
    """Keep or discard each annotated object: does the description match the mask?

    The judging step is one judge (agents.reviewer, whose verdict decides) or a cascade ([[review.cascade]]), cheap
    to strong: a judge whose score P(same object) is at or above its band's hi keeps the object, below its lo
    discards it, and in between hands it to the next judge; the last judge keeps at its hi and discards the rest.
    The review records which judge decided and every judge's answer."""

    name = "review"
    uses = ("media", "model")
    outputs = ("reviews", "descriptions:region")
    region: RegionDescriber = field(default_factory=RegionDescriber)
    judge: Judge = field(default_factory=Judge)
    direct: DirectReviewer = field(default_factory=DirectReviewer)
    _cascades: dict[tuple, tuple[Judge, ...]] = field(default_factory=dict, repr=False)

    def judges(self, cfg: Config) -> tuple[Judge, ...]:
        """The judging step's agents, in order: the cascade's judges, or the reviewer alone."""
        paper = cfg.runtime.reviewer_mode == "paper"
        if not cfg.review.cascade:
            return (self.judge if paper else self.direct,)
        key = (paper, tuple(j.name for j in cfg.review.cascade))
        if key not in self._cascades:
            kind = Judge if paper else DirectReviewer
            self._cascades[key] = tuple(kind(JUDGE_PREFIX + j.name, j.name) for j in cfg.review.cascade)
        return self._cascades[key]

    def agents(self, cfg: Config) -> tuple:
        return ((self.region,) if cfg.runtime.reviewer_mode == "paper" else ()) + self.judges(cfg)

    def version(self, vc: VersionContext) -> str:
        cfg = vc.cfg
        text = f"{cfg.runtime.reviewer_mode}: " + " ".join(vc.agent_version(a) for a in self.agents(cfg))
        if cfg.review.logprobs == "auto":
            text += " +logprobs"  # another request, and another score
        if cfg.review.cascade:  # the bands decide: new bands re-decide (the judges' answers come from the cache)
            text += " bands " + " ".join(f"{lo:g}-{hi:g}" for lo, hi in cfg.review.bands())
        return text

    def estimate(self, cfg: Config) -> list[CallEstimate]:
        paper = cfg.runtime.reviewer_mode == "paper"
        out = [CallEstimate(self.region.role, "reviewer", "object", 1, 100, 1, 80)] if paper else []
        images = 0 if paper else min(DIRECT_REVIEW_FRAMES, cfg.sampling.mask_frames)
        reach = 1.0  # a later judge sees the objects its predecessors could not decide
        for judge in self.judges(cfg):
            out.append(CallEstimate(judge.role, judge.endpoint, "object", reach, 500 if paper else 400, images, 60))
            reach *= cfg.plan.cascade_deferred
        return out

    async def run(self, video: VideoTask, ctx: StageContext) -> None:
        state = ctx.state
        todo = [
            o
            for o in state.grounded(ctx.objects_version)
            if state.review(o.id) is None and all(state.description(o.id, k) for k in ("appearance", "motion"))
        ]  # the Annotator's done
        paper = ctx.cfg.runtime.reviewer_mode == "paper"
        shown = [o for o in todo if not (paper and state.description(o.id, "region"))]
        overlaid: asyncio.Future[list[ImageSet]] | None = None

        async def images_for(obj: ObjectRecord) -> ImageSet:
            """The frames the reviewer sees, with the mask drawn: one media call for all of the video's objects."""
            nonlocal overlaid
            if overlaid is None:
                items = []
                for o in shown:
                    m = state.masklet_of(o.id)
                    keys = sorted(int(f) for f in m.frames)
                    frames = (
                        [m.anchor_frame]
                        if paper
                        else [keys[i] for i in uniform_indices(len(keys), DIRECT_REVIEW_FRAMES)]
                    )
                    items.append((frames, m.frames))
                overlaid = asyncio.ensure_future(ctx.s.overlays(video, items, "reviewer"))
            return (await overlaid)[shown.index(obj)]

        async def one(obj: ObjectRecord) -> None:
            await ctx.attempt("object", obj.id, lambda: self._review(obj, ctx, images_for))

        await gather_units(todo, one)

    async def _review(
        self, obj: ObjectRecord, ctx: StageContext, images_for: Callable[[ObjectRecord], Awaitable[ImageSet]]
    ) -> None:
        state, cfg = ctx.state, ctx.cfg
        appearance, motion = state.description(obj.id, "appearance"), state.description(obj.id, "motion")
        if appearance is None or motion is None:  # run() reviews only objects the Annotator has described
            raise UnitFailure("missing_input", f"object {obj.noun} has no appearance or motion description")
        m = state.masklet_of(obj.id)
        regions: list[DescriptionRecord] = []
        region_id = None
        images: ImageSet | None = None
        if cfg.runtime.reviewer_mode == "paper":
            region = state.description(obj.id, "region")
            if region is None:
                shown = await images_for(obj)
                text = await ctx.ask(self.region, RegionItem(shown.digests[0]), shown)
                region = description_record(ctx, obj, "region", text, self.region)
                regions.append(region)
            region_id = region.id
            item = JudgeItem(obj.noun, region.text, appearance.text, motion.text)
        else:
            images = await images_for(obj)
            item = JudgeItem(obj.noun, "", appearance.text, motion.text, images.digests)
        judges = self.judges(cfg)
        bands = cfg.review.bands() if cfg.review.cascade else [(0.5, 0.5)]
        asked: list[tuple[Judge, Scored]] = []
        for judge, (lo, hi) in zip(judges, bands):
            scored = await ctx.ask(judge, item, images)
            asked.append((judge, scored))
            if not cfg.review.cascade:
                keep = scored.verdict.same_object  # the reviewer alone: its verdict decides, as the paper's
                break
            if scored.p_same >= hi or scored.p_same < lo or judge is judges[-1]:
                keep = scored.p_same >= hi
                break
        judge, scored = asked[-1]
        verdict = scored.verdict
        review = ReviewRecord(
            id=derived_id(obj.id, "review", hash_part(obj.id), ctx.lineage),
            lineage=ctx.lineage,
            object_id=obj.id,
            mode=judge.mode,
            verdict=keep,
            confidence=verdict.confidence,
            rationale=verdict.rationale,
            region_description_id=region_id,
            model=cfg.endpoint(judge.endpoint).model,
            prompt_version=judge.version,
            masklet_id=m.id,
            description_ids=[appearance.id, motion.id],
            p_same=scored.p_same,
            score_source=scored.source,
            token_p_same=scored.token_p_same,
            judge=judge.name,
            judges=[s.as_row(j.name, cfg.endpoint(j.endpoint).model) for j, s in asked],
        )
        ctx.save(regions, [review])


@dataclass
class RefineStage(Stage):
    """One detailed description per kept object, from its two annotations."""

    name = "refine"
    uses = ("model",)
    outputs = ("descriptions:detailed",)
    agent: RefinerAgent = field(default_factory=RefinerAgent)

    def agents(self, cfg: Config) -> tuple:
        return (self.agent,)

    def estimate(self, cfg: Config) -> list[CallEstimate]:
        return [CallEstimate(self.agent.role, "refiner", "kept", 1, 450, 0, 250)]

    async def run(self, video: VideoTask, ctx: StageContext) -> None:
        state = ctx.state
        todo = []
        for o in state.grounded(ctx.objects_version):
            appearance, motion = state.description(o.id, "appearance"), state.description(o.id, "motion")
            # an object the Annotator failed to describe is that unit's failure (the Annotator's): left out
            if state.kept(o) and state.description(o.id, "detailed") is None and appearance and motion:
                todo.append((o, appearance, motion))

        async def one(item: tuple[ObjectRecord, DescriptionRecord, DescriptionRecord]) -> None:
            obj, appearance, motion = item

            async def work() -> None:
                text = await ctx.ask(self.agent, RefineItem(obj.noun, appearance.text, motion.text))
                ctx.save([description_record(ctx, obj, "detailed", text, self.agent)])

            await ctx.attempt("object", obj.id, work)

        await gather_units(todo, one)


def _usable(annotation: list[dict]) -> bool:
    return all(any(v["segmentation"] is not None for v in entry.values()) for entry in annotation)


def sample_record(
    ctx: StageContext,
    sample_id: str,
    data_type: str,
    video: VideoTask,
    object_ids: list[str],
    human: str,
    answer: str,
    annotation: list[dict],
    mode: str,
    qa_type: str | None = None,
) -> SampleRecord:
    conversations = records.conversation(human, answer)
    records.check(conversations, annotation)
    return SampleRecord(
        id=sample_id,
        lineage=ctx.lineage,
        data_type=data_type,
        qa_type=qa_type,
        video_id=video.id,
        object_ids=object_ids,
        conversations=conversations,
        annotation=annotation,
        mode=mode,
        run_id=ctx.s.run_id,
    )


class _SamplesStage(Stage):
    uses = ()

    def version(self, vc: VersionContext) -> str:
        return f"{RECORDS_VERSION}|multi_frame_ratio={vc.cfg.runtime.multi_frame_ratio}"


@dataclass
class DetailedSamples(_SamplesStage):
    """A detailed-description record per refined object; single- or multi-frame per the configured ratio."""

    name = "detailed_samples"
    outputs = ("samples:detailed",)

    async def run(self, video: VideoTask, ctx: StageContext) -> None:
        state, samples = ctx.state, []
        for obj in state.grounded(ctx.objects_version):
            sample_id = derived_id(obj.id, "sample", "detailed", hash_part(obj.id), ctx.lineage)
            text, m = state.description(obj.id, "detailed"), state.masklet_of(obj.id)
            if state.has_sample(sample_id) or not state.kept(obj) or text is None:
                continue
            mode = records.frame_mode(hash_part(obj.id), ctx.cfg.runtime.multi_frame_ratio)
            annotation = [records.region(m.frames, m.anchor_frame, mode)]
            if not _usable(annotation):
                continue
            human = records.single_object_turn(records.pick(records.DETAILED_PROMPTS, hash_part(obj.id)))
            samples.append(
                sample_record(
                    ctx, sample_id, "detailed", video, [obj.id], human, records.neutralise(text.text), annotation, mode
                )
            )
        if samples:
            ctx.save(samples)


def short_subject(
    subjects: list[ObjectRecord], scores: dict[str, float], caption: str | None, rule: ShortConfig
) -> tuple[ObjectRecord | None, str | None]:
    """The one instance of the clip's subject that its caption can describe, or why there is none.

    `subjects`: every instance of the subject noun the Analyzer named ([] when it named none); `scores`: the grounding
    score of each grounded one (an instance without a masklet was not found). The caption speaks of one object, so a
    subject grounded several times gets no record, unless rule "top_score" finds one ahead of the rest by the margin.
    Reasons: no_caption, no_subject, plural_subject, subject_not_found, subject_seen_<n>_times.
    """
    if caption is None:
        return None, "no_caption"
    if not subjects:
        return None, "no_subject"
    if subject_is_plural(subjects[0].noun, caption):
        return None, "plural_subject"
    grounded = sorted((o for o in subjects if o.id in scores), key=lambda o: -scores[o.id])
    if not grounded:
        return None, "subject_not_found"
    if len(grounded) == 1:
        return grounded[0], None
    lead = scores[grounded[0].id] - scores[grounded[1].id]
    if rule.subject_rule == "top_score" and lead >= rule.score_margin - 1e-9:  # a margin met exactly counts
        return grounded[0], None
    return None, f"subject_seen_{len(grounded)}_times"


@dataclass
class ShortSamples(_SamplesStage):
    """A short-description record for the subject: the answer is the raw caption, single-frame, written only where
    the caption can describe one region (short_subject); the clips without one are counted by reason."""

    name = "short_samples"
    outputs = ("samples:short",)

    def version(self, vc: VersionContext) -> str:
        rule = vc.cfg.short
        margin = f",margin={rule.score_margin}" if rule.subject_rule == "top_score" else ""
        return f"{RECORDS_VERSION}|subject={rule.subject_rule}{margin}"

    async def run(self, video: VideoTask, ctx: StageContext) -> None:
        if ctx.done(video.id):
            return
        state = ctx.state
        subjects = state.objects(ctx.objects_version, subject_only=True)
        scores = {o.id: m.grounding_score for o in subjects if (m := state.masklet(o.id)) is not None}
        obj, reason = short_subject(subjects, scores, state.caption, ctx.cfg.short)
        if obj is not None and (gate := state.gate(obj.id)) is not None and not gate.passed:
            obj, reason = None, "subject_gated"  # its one masklet failed a quality gate
        samples = []
        if obj is not None and state.caption is not None:
            m = state.masklet_of(obj.id)
            annotation = [records.region(m.frames, m.anchor_frame, "single")]
            if not _usable(annotation):
                reason = "subject_mask_empty"
            else:
                human = records.single_object_turn(records.pick(records.SHORT_PROMPTS, hash_part(obj.id)))
                answer = records.neutralise(state.caption)
                sample_id = derived_id(obj.id, "sample", "short", hash_part(obj.id), ctx.lineage)
                samples.append(
                    sample_record(ctx, sample_id, "short", video, [obj.id], human, answer, annotation, "single")
                )
        ctx.save(samples, done=[video.id], dropped={f"short_records:{reason}": 1} if reason else None)


def qa_groups(objects: list[ObjectRecord], state: VideoState, max_pairs: int) -> list[list[ObjectRecord]]:
    """Every object alone, then pairs of objects: those seen together on the most mask frames first (ties by id,
    so the choice is deterministic), at most max_pairs, never a pair that shares no frame."""
    present = {o.id: {k for k, v in state.masklet_of(o.id).frames.items() if v is not None} for o in objects}
    pairs = []
    for i, a in enumerate(objects):
        for b in objects[i + 1 :]:
            shared = len(present[a.id] & present[b.id])
            if shared:
                pairs.append((-shared, a.id, b.id, [a, b]))
    pairs.sort(key=lambda p: p[:3])
    return [[o] for o in objects] + [p[3] for p in pairs[:max_pairs]]


@dataclass
class QAStage(Stage):
    """QA pairs about kept objects: a set per object and per pair of objects seen together (qa_groups); each set's
    QA types drawn from the configured mix."""

    name = "qa"
    uses = ("model",)
    outputs = ("samples:qa",)
    agent: QAWriter = field(default_factory=QAWriter)
    seeing: QAWriter = field(default_factory=QAWriterSeeingFrames)

    def _agent(self, cfg: Config) -> QAWriter:
        return self.seeing if cfg.qa.frames else self.agent

    def agents(self, cfg: Config) -> tuple:
        return (self._agent(cfg),)

    def version(self, vc: VersionContext) -> str:
        qa = vc.cfg.qa
        mix = ",".join(f"{k}={v:g}" for k, v in sorted(qa.type_mix.items()))
        return (
            f"{vc.agent_version(self._agent(vc.cfg))}|{RECORDS_VERSION}|multi_frame_ratio="
            f"{vc.cfg.runtime.multi_frame_ratio}|qa={qa.pairs_per_set},{mix},{qa.pairs_per_video},{qa.frames}"
        )

    def estimate(self, cfg: Config) -> list[CallEstimate]:
        frames = cfg.sampling.annotator_frames if cfg.qa.frames else 0
        return [
            CallEstimate(self.agent.role, "refiner", "kept", 1, 500, frames, 100 * cfg.qa.pairs_per_set),
            CallEstimate(self.agent.role, "refiner", "pair", 1, 800, frames, 100 * cfg.qa.pairs_per_set),
        ]

    async def run(self, video: VideoTask, ctx: StageContext) -> None:
        state, qa = ctx.state, ctx.cfg.qa
        agent = self._agent(ctx.cfg)
        mix: dict[str, float] = {t: share for t, share in qa.type_mix.items()}
        # an object whose detailed description failed is that unit's failure (the Refiner's), not its QA's: left out
        kept = [
            o
            for o in state.grounded(ctx.objects_version)
            if state.kept(o) and state.description(o.id, "detailed") is not None
        ]
        todo = [g for g in qa_groups(kept, state, qa.pairs_per_video) if not ctx.done("+".join(o.id for o in g))]

        async def one(group: list[ObjectRecord]) -> None:
            unit = "+".join(o.id for o in group)

            async def work() -> None:
                objs = []
                for o in group:
                    d = state.description(o.id, "detailed")
                    if d is None:
                        raise UnitFailure("missing_input", f"object {o.noun} has no detailed description")
                    objs.append(QAObject(o.noun, d.text))
                images = await self._frames_with_group_marked(video, ctx, group) if qa.frames else None
                item = QAItem(tuple(objs), qa_types(unit, mix, qa.pairs_per_set), images.digests if images else ())
                result = await ctx.ask(agent, item, images)
                samples = [
                    s
                    for s in (self._sample(ctx, video, group, i, p) for i, p in enumerate(result.pairs))
                    if s is not None
                ]
                ctx.save(samples, done=[unit], dropped={f"qa_pairs:{k}": v for k, v in result.dropped.items()})

            await ctx.attempt("object", unit, work)

        await gather_units(todo, one)

    @staticmethod
    async def _frames_with_group_marked(video: VideoTask, ctx: StageContext, group: list[ObjectRecord]) -> ImageSet:
        """Frames with every object of the group marked, in the group's order (colour 1, 2, ...)."""
        m = [ctx.state.masklet_of(o.id) for o in group]
        keys = sorted(
            set.intersection(*({int(k) for k, v in x.frames.items() if v is not None} for x in m))
        ) or sorted(int(k) for k in m[0].frames)
        idx = [keys[i] for i in uniform_indices(len(keys), ctx.cfg.sampling.annotator_frames)]
        return (await ctx.s.overlays(video, [(idx, [x.frames for x in m])], "refiner"))[0]

    def _sample(
        self, ctx: StageContext, video: VideoTask, group: list[ObjectRecord], index: int, pair: Any
    ) -> SampleRecord | None:
        ids = [o.id for o in group]
        mode = records.frame_mode("+".join(map(hash_part, ids)), ctx.cfg.runtime.multi_frame_ratio)
        annotation = []
        for o in group:
            m = ctx.state.masklet_of(o.id)
            annotation.append(records.region(m.frames, m.anchor_frame, mode))
        if not _usable(annotation):
            return None
        human = records.multi_object_turn(len(group), pair.question)
        return sample_record(
            ctx,
            derived_id(video.id, "sample", "qa", [hash_part(i) for i in ids], index, ctx.lineage),
            "qa",
            video,
            ids,
            human,
            pair.answer,
            annotation,
            mode,
            qa_type=pair.type,
        )


# --- annotated datasets (engine/sources/datasets: MeViS, Ref-YouTube-VOS, A2D-Sentences, Ref-DAVIS17) -----------

# dataset@3: an object's row is told apart by the dataset's object id (instance), not by its first expression: two
# instances with one expression (12 videos of A2D-Sentences) are two objects; its id hashes its stage_version
DATASET_VERSION = "dataset@3"
EXPRESSIONS = "referring_expressions"  # the descriptions' model field for a dataset's own text


def dataset_instances(obj_ids: list[str]) -> dict[str, int]:
    """A video's dataset object ids as the objects' instance numbers: the ids themselves where all are integers that
    fit the INTEGER column (A2D's instance ids, palette values, MeViS anno ids), else their rank (shorter ids first,
    so numbers keep their order): fixed by the released annotations, never by the frames sampled."""
    if all(i.isdecimal() and int(i) < 2**31 for i in obj_ids):
        return {i: int(i) for i in obj_ids}
    return {i: n for n, i in enumerate(sorted(obj_ids, key=lambda i: (len(i), i)))}


def is_dataset_video(video: VideoTask) -> bool:
    return dataset_of(video.path) is not None


def is_plain_video(video: VideoTask) -> bool:
    return dataset_of(video.path) is None


@dataclass
class DatasetObjectsStage(Stage):
    """A dataset's objects with their masks at the frames that have them, and their referring expressions (kept as
    the objects' short descriptions): kept objects of this video, as people annotated them."""

    name = "dataset_objects"
    outputs = ("objects", "masklets", "descriptions:short")
    counts_as_kept = True  # people annotated them

    def version(self, vc: VersionContext) -> str:
        return f"{DATASET_VERSION}|mask_frames={vc.cfg.sampling.mask_frames}"

    def planned_objects(self, video: VideoTask) -> int | None:
        """The annotated objects (read from the annotation files, without their masks); 0 for a split released
        without masks, which run() drops."""
        found = dataset_of(video.path)
        if found is None:
            return None
        adapter, dv = found
        if not any(0 <= f < video.num_frames for f in adapter.mask_frames(dv)):
            return 0
        return len(adapter.objects(dv, []))

    async def run(self, video: VideoTask, ctx: StageContext) -> None:
        if ctx.done(video.id):
            return
        found_video = dataset_of(video.path)
        if found_video is None:  # the pipeline accepts only a dataset's videos (is_dataset_video)
            raise UnitFailure("not_a_dataset_video", f"{video.rel} belongs to no annotated dataset")
        adapter, dv = found_video
        frames = [f for f in adapter.mask_frames(dv) if 0 <= f < video.num_frames]
        if not frames:  # a split released without masks: nothing to ask about, and never the plain-video path
            ctx.save(done=[video.id], dropped={"dataset_videos:no_masks": 1})
            return
        if len(frames) > ctx.cfg.sampling.mask_frames:
            frames = [frames[i] for i in uniform_indices(len(frames), ctx.cfg.sampling.mask_frames)]
        found = await asyncio.to_thread(adapter.objects, dv, frames)
        instances = dataset_instances([str(o.obj_id) for o in found])  # all of them: dropping one renumbers none
        version = ctx.own_version
        objects: list[ObjectRecord] = []
        masklets: list[MaskletRecord] = []
        descriptions: list[DescriptionRecord] = []
        no_mask = 0  # objects without a mask on any sampled frame
        for obj in found:
            try:
                masks.check_masks(obj.masks, frames, (video.height, video.width), f"{dv.dataset} masks", video.rel)
            except masks.SegmentorOutputError as e:
                raise UnitFailure("segmentor_output", str(e)) from None
            by_frame = {f: obj.masks.get(f) for f in frames}
            if not any(by_frame.values()):
                no_mask += 1
                continue
            expressions = [e for e in (" ".join(records.neutralise(e).split()) for e in obj.expressions) if e]
            anchor = max(frames, key=lambda f: masks.area(by_frame[f]))
            anchor_mask = by_frame[anchor]
            box = masks.bbox_xyxy(anchor_mask) if anchor_mask is not None else None
            if box is None:  # masks given on some frames, each of them empty
                raise UnitFailure("segmentor_output", f"{dv.dataset} masks of object {obj.obj_id} are all empty")
            # the id hashes the stage's version as the unique key holds it: without it, a new mask_frames gave the
            # old version's id, its rows were skipped, and the store had no object of the version in use
            object_id = derived_id(video.id, "object", video.id, f"{dv.dataset}:{obj.obj_id}", version)
            noun = clip_noun(expressions[0]) if expressions else "object"  # no usable text: still people's mask
            objects.append(
                ObjectRecord(
                    id=object_id,
                    video_id=video.id,
                    noun=noun,
                    instance=instances[str(obj.obj_id)],
                    stage_version=version,
                )
            )
            quality: dict[str, Any] = masks.quality(by_frame)
            masklets.append(
                MaskletRecord(
                    id=derived_id(object_id, "masklet", hash_part(object_id), ctx.lineage),
                    lineage=ctx.lineage,
                    object_id=object_id,
                    backend_version=DATASET_VERSION,
                    anchor_frame=anchor,
                    box=list(box),
                    grounding_score=1.0,
                    mask_score=1.0,
                    height=video.height,
                    width=video.width,
                    frames={str(f): m for f, m in by_frame.items()},
                    **quality,
                )
            )
            if expressions:
                descriptions.append(
                    DescriptionRecord(
                        id=derived_id(object_id, "description", hash_part(object_id), "short", ctx.lineage),
                        lineage=ctx.lineage,
                        object_id=object_id,
                        kind="short",
                        text="\n".join(expressions),
                        model=EXPRESSIONS,
                        prompt_version=DATASET_VERSION,
                    )
                )
        dropped = {"dataset_objects:no_mask_on_sampled_frames": no_mask} if no_mask else {}
        ctx.save(objects, masklets, descriptions, done=[video.id], dropped=dropped)


@dataclass
class DatasetQAStage(QAStage):
    """QA about a dataset's objects (people annotated them: they count as kept), from the detailed descriptions the
    Annotator and Refiner wrote on the masked frames with the expressions as context."""

    name = "dataset_qa"
