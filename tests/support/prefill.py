"""Fill a store with many objects fast, straight into the tables (not through the pipeline).

Each filler video has three objects, each with a current masklet, descriptions, a review (every other
one kept), a detailed description and sample for the kept, and completion markers, and the model calls that
made them (a cached answer and a request-log row each: the Analyzer's per video; per object two annotations, a
region description and a judgement, and the Refiner's for the kept): what a run of the detailed pipeline leaves,
at the lineages the given pipelines make current. Tests and benchmarks use it to check that the engine's cost per
object does not grow with the store.
"""

from __future__ import annotations

import hashlib
import itertools
import time
import uuid
from collections.abc import Sequence

from engine.runtime.pipeline import Pipeline, VersionContext
from engine.store import Store, schema
from engine.store.db import with_defaults
from engine.store.ids import derived_id, hash_part, stable_id

RLE = {"size": [48, 64], "counts": "0"}  # tiny: the filler's masks are never decoded


def prefill(
    store: Store, pipelines: Sequence[Pipeline], vc: VersionContext, objects: int, chunk_videos: int = 2000
) -> float:
    """Add `objects` objects (three per video) at the pipelines' current lineages; returns seconds taken."""
    t0 = time.perf_counter()
    lineage: dict[str, str] = {}
    version: dict[str, str] = {}
    for p in pipelines:
        for st, lin in zip(p.stages, p.lineages(vc)):
            if lin is not None:
                lineage.setdefault(st.name, lin)
                version.setdefault(st.name, st.version(vc))
    n_videos = -(-objects // 3)
    for start in range(0, n_videos, chunk_videos):
        rows: dict[type, list[dict]] = {
            m: []
            for m in (
                schema.Video,
                schema.Caption,
                schema.VideoObject,
                schema.Masklet,
                schema.Gate,
                schema.Description,
                schema.Review,
                schema.Sample,
                schema.Completion,
                schema.ModelCall,
                schema.Request,
            )
        }
        for v in range(start, min(n_videos, start + chunk_videos)):
            vid = stable_id("prefill-video", v)
            rows[schema.Video].append(
                dict(
                    id=vid,
                    path=f"filler/{v:07d}.mp4",
                    source_root="/prefill",
                    kind="file",
                    num_frames=40,
                    fps=25.0,
                    width=64,
                    height=48,
                    size_bytes=1000,
                )
            )
            rows[schema.Caption].append(
                dict(
                    id=stable_id("caption", vid, "sidecar"),
                    video_id=vid,
                    source="sidecar",
                    text=f"Filler video {v} with a dog, a ball and a tree.",
                )
            )
            rows[schema.Completion].append(_done(vid, vid, "analyze", lineage["analyze"]))
            _call(rows, vid, "analyzer", v)
            for k, noun in enumerate(("dog", "ball", "tree")):
                if v * 3 + k >= objects:
                    break
                oid = derived_id(vid, "prefill-object", v, k)
                rows[schema.VideoObject].append(
                    dict(
                        id=oid,
                        video_id=vid,
                        noun=noun,
                        instance=0,
                        is_subject=k == 0,
                        stage_version=version["analyze"],
                    )
                )
                mid = derived_id(oid, "masklet", hash_part(oid), lineage["segment"])
                rows[schema.Masklet].append(
                    dict(
                        id=mid,
                        object_id=oid,
                        backend_version=version["segment"],
                        lineage=lineage["segment"],
                        anchor_frame=20,
                        box=[0, 0, 8, 8],
                        grounding_score=0.9,
                        mask_score=0.9,
                        height=48,
                        width=64,
                        frames={"0": RLE, "20": RLE},
                        coverage=1.0,
                        area_variation=0.0,
                        mean_consecutive_iou=1.0,
                        empty_frames=0,
                        border_contact=0.0,
                    )
                )
                rows[schema.Completion].append(_done(vid, oid, "segment", lineage["segment"]))
                if "gate" in lineage and version.get("gate") is not None:  # gates on: every masklet passed
                    rows[schema.Gate].append(
                        dict(
                            object_id=oid,
                            lineage=lineage["gate"],
                            masklet_id=mid,
                            passed=True,
                            metrics={},
                            thresholds={},
                        )
                    )
                desc = {}
                for kind, stage in (("appearance", "annotate"), ("motion", "annotate"), ("region", "review")):
                    desc[kind] = derived_id(oid, "description", hash_part(oid), kind, lineage[stage])
                    rows[schema.Description].append(
                        dict(
                            id=desc[kind],
                            object_id=oid,
                            kind=kind,
                            lineage=lineage[stage],
                            text=f"{kind} of filler {noun}",
                            model="m",
                            prompt_version="p@1",
                        )
                    )
                for role in ("annotator.dynamic", "annotator.static", "reviewer.region", "reviewer.judge"):
                    _call(rows, vid, role, oid)
                kept = (v + k) % 2 == 0
                rows[schema.Review].append(
                    dict(
                        id=derived_id(oid, "review", hash_part(oid), lineage["review"]),
                        object_id=oid,
                        mode="paper",
                        verdict=kept,
                        confidence=0.8,
                        rationale="filler",
                        region_description_id=desc["region"],
                        model="m",
                        prompt_version="p@1",
                        lineage=lineage["review"],
                        masklet_id=mid,
                        description_ids=[desc["appearance"], desc["motion"]],
                    )
                )
                if kept:
                    _call(rows, vid, "refiner.detailed", oid)
                    rows[schema.Description].append(
                        dict(
                            id=derived_id(oid, "description", hash_part(oid), "detailed", lineage["refine"]),
                            object_id=oid,
                            kind="detailed",
                            lineage=lineage["refine"],
                            text=f"The filler {noun}.",
                            model="m",
                            prompt_version="p@1",
                        )
                    )
                    rows[schema.Sample].append(
                        dict(
                            id=derived_id(oid, "sample", "detailed", hash_part(oid), lineage["detailed_samples"]),
                            data_type="detailed",
                            video_id=vid,
                            object_ids=[oid],
                            lineage=lineage["detailed_samples"],
                            mode="single",
                            annotation=[{"20": {"segmentation": RLE}}],
                            conversations=[
                                {"from": "human", "value": "<video>\nDescribe <region>."},
                                {"from": "gpt", "value": f"The filler {noun}."},
                            ],
                        )
                    )
        with store.engine.begin() as conn:
            for model, batch in rows.items():
                if batch:
                    conn.execute(model.__table__.insert(), [with_defaults(model, r) for r in batch])
    return time.perf_counter() - t0


def _done(video_id: str, unit: str, stage: str, lineage: str) -> dict:
    return dict(video_id=video_id, unit_id=unit, stage=stage, lineage=lineage)


_REQUEST_PREFIX, _REQUEST_IDS = uuid.uuid4().hex[:16], itertools.count()  # as a client numbers its requests


def _call(rows: dict[type, list[dict]], video_id: str, role: str, unit: object) -> None:
    """A model call's cached answer and its request-log row, keyed as the client keys them."""
    request_hash = hashlib.sha256(f"prefill|{role}|{unit}".encode()).hexdigest()
    agent = role.split(".")[0]
    rows[schema.ModelCall].append(
        dict(
            request_hash=request_hash,
            agent=agent,
            model="m",
            endpoint="http://prefill/v1",
            status="ok",
            tokens_in=400,
            tokens_out=60,
            response={"parsed": {"text": f"filler answer of {role}"}},
            video_id=video_id,
        )
    )
    rows[schema.Request].append(
        dict(
            id=f"{_REQUEST_PREFIX}{next(_REQUEST_IDS):016x}",
            role=role,
            endpoint_key=agent,
            model="m",
            endpoint="http://prefill/v1",
            request_hash=request_hash,
            kind="call",
            output_mode="json_schema",
            status="ok",
            http_status=200,
            tokens_in=400,
            tokens_out=60,
        )
    )
