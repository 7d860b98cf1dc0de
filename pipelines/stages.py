"""Stages: each wraps one agent (or the segmentor) and moves one video forward by one step.

Every stage reads its inputs from the store, skips what the store already holds (so a rerun
resumes), sends work through the driver's Services, and writes each result as soon as it has
it. Object-level work runs concurrently and fails per object; the other objects go on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable

from agents.analyzer import AnalyzeItem, AnalyzerAgent
from agents.annotator import AnnotateItem, AnnotatorAgent
from agents.captioner import CaptionerAgent, CaptionItem
from agents.refiner import QAItem, QAObject, QAWriter, RefineItem, RefinerAgent
from agents.reviewer import DirectReviewer, Judge, JudgeItem, RegionDescriber, RegionItem
from agents.segmentor import SegmentRequest, dataset_objects, dataset_root
from engine.media import masks
from engine.dataset import records
from engine.store import schema
from engine.store.ids import stable_id
from engine.sources.ingest import CAPTION_SOURCE_ORDER
from engine.media.video import uniform_indices
from engine.runtime.executor import ImageSet, Services, UnitFailure, VideoTask

DIRECT_REVIEW_FRAMES = 8


# --- store lookups shared by the stages ------------------------------------------------------------

def caption_of(s: Services, video_id: str) -> str | None:
    caps = s.read(lambda q: {c.source: c.text for c in q.query(schema.Caption).filter_by(video_id=video_id)})
    return next((caps[src] for src in CAPTION_SOURCE_ORDER if src in caps), None)


def analyzer_version(s: Services) -> str:
    return f"{AnalyzerAgent().version}|{s.model('analyzer')}"


def objects_of(s: Services, video_id: str, status: str | None = None, subject_only: bool = False) -> list[Any]:
    def q(sess):
        rows = sess.query(schema.VideoObject).filter_by(video_id=video_id, stage_version=analyzer_version(s))
        if status:
            rows = rows.filter_by(status=status)
        if subject_only:
            rows = rows.filter_by(is_subject=True)
        return rows.order_by(schema.VideoObject.noun, schema.VideoObject.instance).all()

    return s.read(q)


def masklet_of(s: Services, object_id: str) -> Any:
    return s.read(lambda q: q.query(schema.Masklet).filter_by(object_id=object_id).first())


def description(s: Services, object_id: str, kind: str, model: str, version: str) -> Any:
    return s.read(lambda q: q.query(schema.Description).filter_by(
        object_id=object_id, kind=kind, model=model, prompt_version=version).first())


def add_description(s: Services, object_id: str, kind: str, text: str, agent: Any) -> str:
    model = s.model(agent.name)
    row = dict(id=stable_id("description", object_id, kind, model, agent.version), object_id=object_id, kind=kind,
               text=text, model=model, prompt_version=agent.version)
    s.write(lambda q: s.store.insert_ignore(q, schema.Description, [row]))
    return row["id"]


def mask_indices(s: Services, video: VideoTask) -> list[int]:
    return uniform_indices(video.num_frames, s.cfg.sampling.mask_frames)


async def for_each(items: list[Any], work: Callable[[Any], Any]) -> None:
    await asyncio.gather(*(work(item) for item in items))


# --- stages ----------------------------------------------------------------------------------------

@dataclass
class CaptionStage:
    """Write a scene caption for a video that came without one."""

    name: str = "caption"
    agent: CaptionerAgent = field(default_factory=CaptionerAgent)

    async def run(self, video: VideoTask, s: Services) -> None:
        if caption_of(s, video.id) is not None:
            return
        s.progress(self.name, total=1)
        images = await s.encode(video, uniform_indices(video.num_frames, s.cfg.sampling.annotator_frames), "captioner")
        text = await s.ask(self.agent, CaptionItem(images.digests), images)
        row = dict(id=stable_id("caption", video.id, "captioner"), video_id=video.id, source="captioner", text=text)
        s.write(lambda q: s.store.insert_ignore(q, schema.Caption, [row]))
        s.progress(self.name, done=1)


@dataclass
class AnalyzeStage:
    """Nouns of the caption's physical objects, the subject marked: one object row per noun."""

    name: str = "analyze"
    agent: AnalyzerAgent = field(default_factory=AnalyzerAgent)

    async def run(self, video: VideoTask, s: Services) -> None:
        if objects_of(s, video.id):
            return
        caption = caption_of(s, video.id)
        if caption is None:
            raise UnitFailure("no_caption", "the video has no caption (add a sidecar, or run the caption stage)")
        s.progress(self.name, total=1)
        analysis = await s.ask(self.agent, AnalyzeItem(caption))
        version = analyzer_version(s)
        rows = [dict(id=stable_id("object", video.id, noun, 0, version), video_id=video.id, noun=noun, instance=0,
                     is_subject=noun == analysis.subject, stage_version=version) for noun in analysis.nouns]
        s.write(lambda q: s.store.insert_ignore(q, schema.VideoObject, rows))
        s.progress(self.name, done=1)


@dataclass
class SegmentStage:
    """All pending nouns of a video in one segmentor request; each instance becomes its own object."""

    name: str = "segment"
    subject_only: bool = False

    async def run(self, video: VideoTask, s: Services) -> None:
        pending = objects_of(s, video.id, status="pending", subject_only=self.subject_only)
        if not pending:
            return
        s.progress(self.name, total=1)
        indices = tuple(mask_indices(s, video))
        request = SegmentRequest(video.id, video.path, indices, tuple(o.noun for o in pending), video.height,
                                 video.width)
        tracks = await s.segment(request)
        s.write(lambda q: self._store(q, s, video, pending, tracks))
        s.progress(self.name, done=1)

    @staticmethod
    def _store(q, s: Services, video: VideoTask, pending: list, tracks: list) -> None:
        for obj in pending:
            mine = [t for t in tracks if t.noun == obj.noun]
            row = q.get(schema.VideoObject, obj.id)
            row.status = "grounded" if mine else "not_grounded"
            for t in mine:
                object_id = obj.id if t.instance == 0 else stable_id("object", video.id, obj.noun, t.instance,
                                                                    obj.stage_version)
                if t.instance:
                    s.store.insert_ignore(q, schema.VideoObject, [dict(
                        id=object_id, video_id=video.id, noun=obj.noun, instance=t.instance, is_subject=obj.is_subject,
                        stage_version=obj.stage_version, status="grounded")])
                frames = {str(f): m for f, m in t.masks.items()}
                s.store.insert_ignore(q, schema.Masklet, [dict(
                    id=stable_id("masklet", object_id, s.segmentor_version), object_id=object_id,
                    backend_version=s.segmentor_version, anchor_frame=t.anchor_frame, box=list(t.box),
                    grounding_score=t.grounding_score, mask_score=t.mask_score, height=video.height, width=video.width,
                    frames=frames, **masks.quality(frames))])


@dataclass
class AnnotateStage:
    """Two descriptions per grounded object: dynamic (motion) and static (appearance)."""

    name: str = "annotate"
    agents: tuple[AnnotatorAgent, ...] = field(default_factory=lambda: (AnnotatorAgent("dynamic"), AnnotatorAgent("static")))

    async def run(self, video: VideoTask, s: Services) -> None:
        objects = objects_of(s, video.id, status="grounded")
        model = s.model("annotator")
        todo = [(o, a) for o in objects for a in self.agents if not description(s, o.id, a.kind, model, a.version)]
        if not todo:
            return
        s.progress(self.name, total=len(todo))
        shared: dict[str, ImageSet] = {}
        nouns = [o.noun for o in objects]

        async def plain() -> ImageSet:
            if "plain" not in shared:  # encoded once per video, shared by all its objects
                idx = uniform_indices(video.num_frames, s.cfg.sampling.annotator_frames)
                shared["plain"] = await s.encode(video, idx, "annotator")
            return shared["plain"]

        async def one(pair) -> None:
            obj, agent = pair

            async def work():
                if nouns.count(obj.noun) > 1:  # several instances: show which one is meant
                    m = masklet_of(s, obj.id)
                    idx = mask_indices(s, video)  # overlays exist on mask frames: take annotator_frames of them
                    idx = [idx[i] for i in uniform_indices(len(idx), s.cfg.sampling.annotator_frames)]
                    images = await s.overlays(video, idx, m.frames, "annotator")
                else:
                    images = await plain()
                text = await s.ask(agent, AnnotateItem(obj.noun, images.digests, nouns.count(obj.noun) > 1), images)
                add_description(s, obj.id, agent.kind, text, agent)

            await s.attempt("object", obj.id, f"{self.name}.{agent.query}", work)
            s.progress(self.name, done=1)

        await for_each(todo, one)


@dataclass
class ReviewStage:
    """Keep or discard each annotated object: does the description match the mask?"""

    name: str = "review"
    region: RegionDescriber = field(default_factory=RegionDescriber)
    judge: Judge = field(default_factory=Judge)
    direct: DirectReviewer = field(default_factory=DirectReviewer)

    def _reviewer(self, s: Services) -> Judge:
        return self.judge if s.cfg.runtime.reviewer_mode == "paper" else self.direct

    async def run(self, video: VideoTask, s: Services) -> None:
        judge = self._reviewer(s)
        model = s.model("reviewer")
        todo = [o for o in objects_of(s, video.id, status="grounded")
                if not s.read(lambda q, o=o: q.query(schema.Review).filter_by(
                    object_id=o.id, mode=judge.mode, model=model, prompt_version=judge.version).first())]
        if not todo:
            return
        s.progress(self.name, total=len(todo))

        async def one(obj) -> None:
            await s.attempt("object", obj.id, self.name, lambda: self._review(video, obj, judge, s))
            s.progress(self.name, done=1)

        await for_each(todo, one)

    async def _review(self, video: VideoTask, obj: Any, judge: Judge, s: Services) -> None:
        ann_model = s.model("annotator")
        texts = {a.kind: description(s, obj.id, a.kind, ann_model, a.version) for a in AnnotateStage().agents}
        if not all(texts.values()):
            return  # the Annotator failed on this object: nothing to review
        m = masklet_of(s, obj.id)
        region_id = None
        if judge.mode == "paper":
            region = description(s, obj.id, "region", s.model("reviewer"), self.region.version)
            if region is None:
                images = await s.overlays(video, [m.anchor_frame], m.frames, "reviewer")
                text = await s.ask(self.region, RegionItem(images.digests[0]), images)
                region_id = add_description(s, obj.id, "region", text, self.region)
                region_text = text
            else:
                region_id, region_text = region.id, region.text
            item = JudgeItem(obj.noun, region_text, texts["appearance"].text, texts["motion"].text)
            verdict = await s.ask(judge, item)
        else:
            idx = uniform_indices(len(m.frames), DIRECT_REVIEW_FRAMES)
            frames = [sorted(int(f) for f in m.frames)[i] for i in idx]
            images = await s.overlays(video, frames, m.frames, "reviewer")
            item = JudgeItem(obj.noun, "", texts["appearance"].text, texts["motion"].text, images.digests)
            verdict = await s.ask(judge, item, images)
        row = dict(id=stable_id("review", obj.id, judge.mode, s.model("reviewer"), judge.version), object_id=obj.id,
                   mode=judge.mode, verdict=verdict.same_object, confidence=verdict.confidence,
                   rationale=verdict.rationale, region_description_id=region_id, model=s.model("reviewer"),
                   prompt_version=judge.version)
        s.write(lambda q: s.store.insert_ignore(q, schema.Review, [row]))


def kept_objects(s: Services, video_id: str) -> list[Any]:
    """Grounded objects the Reviewer kept (under the configured mode), in noun order."""
    judge = Judge() if s.cfg.runtime.reviewer_mode == "paper" else DirectReviewer()
    kept_ids = set(s.read(lambda q: [r.object_id for r in q.query(schema.Review).filter_by(
        mode=judge.mode, model=s.model("reviewer"), prompt_version=judge.version, verdict=True)]))
    return [o for o in objects_of(s, video_id, status="grounded") if o.id in kept_ids]


@dataclass
class RefineStage:
    """One detailed description per kept object, from its two annotations."""

    name: str = "refine"
    agent: RefinerAgent = field(default_factory=RefinerAgent)

    async def run(self, video: VideoTask, s: Services) -> None:
        model = s.model("refiner")
        todo = [o for o in kept_objects(s, video.id) if not description(s, o.id, "detailed", model, self.agent.version)]
        if not todo:
            return
        s.progress(self.name, total=len(todo))
        ann_model = s.model("annotator")

        async def one(obj) -> None:
            async def work():
                texts = {a.kind: description(s, obj.id, a.kind, ann_model, a.version).text for a in AnnotateStage().agents}
                text = await s.ask(self.agent, RefineItem(obj.noun, texts["appearance"], texts["motion"]))
                add_description(s, obj.id, "detailed", text, self.agent)

            await s.attempt("object", obj.id, self.name, work)
            s.progress(self.name, done=1)

        await for_each(todo, one)


def _usable(annotation: list[dict]) -> bool:
    return all(any(v is not None for v in entry.values()) for entry in annotation)


def _sample_row(s: Services, sample_id: str, data_type: str, video: VideoTask, object_ids: list[str], human: str,
                answer: str, annotation: list[dict], mode: str, qa_type: str | None = None) -> dict:
    conversations = records.conversation(human, answer)
    records.check(conversations, annotation)
    return dict(id=sample_id, data_type=data_type, qa_type=qa_type, video_id=video.id, object_ids=object_ids,
                conversations=conversations, annotation=annotation, mode=mode, run_id=s.run_id)


@dataclass
class DetailedSamples:
    """A detailed-description record per refined object; single- or multi-frame per the configured ratio."""

    name: str = "detailed_samples"

    async def run(self, video: VideoTask, s: Services) -> None:
        refiner = RefinerAgent()
        rows = []
        for obj in kept_objects(s, video.id):
            text = description(s, obj.id, "detailed", s.model("refiner"), refiner.version)
            m = masklet_of(s, obj.id)
            if text is None or m is None:
                continue
            mode = records.frame_mode(obj.id, s.cfg.runtime.multi_frame_ratio)
            annotation = [records.region(m.frames, m.anchor_frame, mode)]
            if not _usable(annotation):
                continue
            human = records.single_object_turn(records.pick(records.DETAILED_PROMPTS, obj.id))
            rows.append(_sample_row(s, stable_id("sample", "detailed", obj.id, text.id), "detailed", video, [obj.id],
                                    human, text.text, annotation, mode))
        s.write(lambda q: s.store.insert_ignore(q, schema.Sample, rows))


@dataclass
class ShortSamples:
    """A short-description record for the subject: the answer is the raw caption, single-frame."""

    name: str = "short_samples"

    async def run(self, video: VideoTask, s: Services) -> None:
        caption = caption_of(s, video.id)
        rows = []
        for obj in objects_of(s, video.id, status="grounded", subject_only=True):
            m = masklet_of(s, obj.id)
            if caption is None or m is None:
                continue
            annotation = [records.region(m.frames, m.anchor_frame, "single")]
            if not _usable(annotation):
                continue
            human = records.single_object_turn(records.pick(records.SHORT_PROMPTS, obj.id))
            rows.append(_sample_row(s, stable_id("sample", "short", obj.id, caption), "short", video, [obj.id], human,
                                    caption, annotation, "single"))
        s.write(lambda q: s.store.insert_ignore(q, schema.Sample, rows))


@dataclass
class QAStage:
    """QA pairs about kept objects: one set per object, and one about the first two objects together."""

    name: str = "qa"
    agent: QAWriter = field(default_factory=QAWriter)

    async def run(self, video: VideoTask, s: Services) -> None:
        kept = self._kept(s, video.id)
        groups = [[o] for o in kept] + ([kept[:2]] if len(kept) >= 2 else [])
        todo = [g for g in groups if not s.read(lambda q, g=g: q.query(schema.Sample).filter_by(
            data_type="qa", id=self._sample_id(g, 0)).first())]
        if not todo:
            return
        s.progress(self.name, total=len(todo))

        async def one(group) -> None:
            async def work():
                objs = []
                for o in group:
                    d = self._description(s, o)
                    if d is None:
                        raise UnitFailure("missing_input", f"object {o.noun} has no detailed description")
                    objs.append(QAObject(o.noun, d.text))
                pairs = await s.ask(self.agent, QAItem(tuple(objs)))
                rows = [r for r in (self._row(s, video, group, i, p) for i, p in enumerate(pairs)) if r]
                s.write(lambda q: s.store.insert_ignore(q, schema.Sample, rows))

            await s.attempt("object", "+".join(o.id for o in group), self.name, work)
            s.progress(self.name, done=1)

        await for_each(todo, one)

    def _kept(self, s: Services, video_id: str) -> list[Any]:
        return kept_objects(s, video_id)

    def _description(self, s: Services, obj: Any) -> Any:
        return description(s, obj.id, "detailed", s.model("refiner"), RefinerAgent().version)

    def _sample_id(self, group: list, index: int) -> str:
        return stable_id("sample", "qa", [o.id for o in group], index, self.agent.version)

    def _row(self, s: Services, video: VideoTask, group: list, index: int, pair: Any) -> dict | None:
        key = "+".join(o.id for o in group)
        mode = records.frame_mode(key, s.cfg.runtime.multi_frame_ratio)
        annotation = []
        for o in group:
            m = masklet_of(s, o.id)
            annotation.append(records.region(m.frames, m.anchor_frame, mode))
        if not _usable(annotation):
            return None
        human = records.multi_object_turn(len(group), pair.question)
        return _sample_row(s, self._sample_id(group, index), "qa", video, [o.id for o in group], human, pair.answer,
                           annotation, mode, qa_type=pair.type)


# --- annotated datasets (MeViS / Ref-YouTube-VOS layout) ------------------------------------------

DATASET_VERSION = "dataset@1"
EXPRESSIONS = "referring_expressions"  # the descriptions' model field for a dataset's own text


def is_dataset_video(video: VideoTask) -> bool:
    return video.kind == "frames" and dataset_root(video.path) is not None


@dataclass
class DatasetObjectsStage:
    """A dataset's objects with their masks and referring expressions, as kept objects of this video."""

    name: str = "dataset_objects"

    async def run(self, video: VideoTask, s: Services) -> None:
        if s.read(lambda q: q.query(schema.VideoObject).filter_by(video_id=video.id, stage_version=DATASET_VERSION)
                  .first()):
            return
        root, meta = dataset_root(video.path)
        indices = tuple(mask_indices(s, video))
        rows = []
        for n, obj in enumerate(dataset_objects(root, video.rel.rsplit("/", 1)[-1], meta, indices)):
            frames = {str(f): m for f, m in obj["masks"].items()}
            if not any(frames.values()):
                continue
            anchor = max(indices, key=lambda f: masks.area(frames[str(f)]))
            object_id = stable_id("object", video.id, f"dataset:{obj['obj_id']}", n, DATASET_VERSION)
            rows.append((object_id, obj, frames, anchor))

        def store(q) -> None:
            for object_id, obj, frames, anchor in rows:
                s.store.insert_ignore(q, schema.VideoObject, [dict(
                    id=object_id, video_id=video.id, noun=obj["expressions"][0][:128], instance=0,
                    stage_version=DATASET_VERSION, status="grounded")])
                s.store.insert_ignore(q, schema.Masklet, [dict(
                    id=stable_id("masklet", object_id, DATASET_VERSION), object_id=object_id,
                    backend_version=DATASET_VERSION, anchor_frame=anchor,
                    box=list(masks.bbox_xyxy(frames[str(anchor)])), grounding_score=1.0, mask_score=1.0,
                    height=video.height, width=video.width, frames=frames, **masks.quality(frames))])
                s.store.insert_ignore(q, schema.Description, [dict(
                    id=stable_id("description", object_id, "detailed", EXPRESSIONS), object_id=object_id,
                    kind="detailed", text=" ".join(e.rstrip(".") + "." for e in obj["expressions"]),
                    model=EXPRESSIONS, prompt_version=DATASET_VERSION)])

        s.write(store)


@dataclass
class DatasetQAStage(QAStage):
    """QA from a dataset's referring expressions: its objects count as kept (people annotated them)."""

    name: str = "dataset_qa"

    def _kept(self, s: Services, video_id: str) -> list[Any]:
        return s.read(lambda q: q.query(schema.VideoObject).filter_by(video_id=video_id, stage_version=DATASET_VERSION)
                      .order_by(schema.VideoObject.id).all())

    def _description(self, s: Services, obj: Any) -> Any:
        return description(s, obj.id, "detailed", EXPRESSIONS, DATASET_VERSION)
