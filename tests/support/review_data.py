"""Reviews in a store, made directly (no pipeline run), for audit and review-UI tests.

They carry the lineages the default configuration makes current, as a run of the detailed pipeline
would write them, so `CURRENT` (and `engine audit` with no config) sees them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from synthetic import render, write_mp4

from engine.config import load_config
from engine.media import masks
from engine.registry import build_pipelines, configured_current, version_context
from engine.store import Store, schema
from engine.store.ids import stable_id

XSS = ("<script>window.__xss = 1</script>", '"><img src=x onerror="window.__xss=2">')

_CFG = load_config(environ={})
CURRENT = configured_current(_CFG)
_VC, _ = version_context(_CFG)
_DETAILED = build_pipelines(["detailed"])[0]
LINEAGE = {st.name: lin for st, lin in zip(_DETAILED.stages, _DETAILED.lineages(_VC))}
ANALYZER_VERSION = next(st.version(_VC) for st in _DETAILED.stages if st.name == "analyze")


def lineage_of(pipeline: str, stage: str) -> str:
    """The lineage the default configuration gives a stage of a pipeline (what a run would write)."""
    p = next(p for p in build_pipelines([pipeline]) if p.name == pipeline)
    return dict(zip([st.name for st in p.stages], p.lineages(_VC)))[stage]


def make_reviews(store: Store, src: Path, kept: int, discarded: int, evil: bool = False) -> list[str]:
    """One video with kept + discarded objects, each with a masklet, descriptions and a review."""
    frames, gt = render(8, 96, 72)
    write_mp4(src / "clip.mp4", frames)
    vid = stable_id("video", str(src))
    ids = []
    with store.session() as s:
        s.add(
            schema.Video(
                id=vid,
                path="clip.mp4",
                source_root=str(src),
                kind="file",
                num_frames=8,
                fps=12.0,
                width=96,
                height=72,
                size_bytes=1,
            )
        )
        s.flush()
        for i in range(kept + discarded):
            oid = stable_id("object", vid, i)
            noun = XSS[0] if evil and i == 0 else f"object {i}"
            s.add(schema.VideoObject(id=oid, video_id=vid, noun=noun, stage_version=ANALYZER_VERSION))
            s.flush()
            mask_frames = {str(f): masks.encode(np.roll(gt["red square"][f], i, axis=0)) for f in range(0, 8, 2)}
            mid = stable_id("m", oid)
            s.add(
                schema.Masklet(
                    id=mid,
                    object_id=oid,
                    backend_version="t@1",
                    lineage=LINEAGE["segment"],
                    anchor_frame=2,
                    box=[0, 0, 1, 1],
                    grounding_score=1,
                    mask_score=1,
                    height=72,
                    width=96,
                    frames=mask_frames,
                    coverage=1,
                    area_variation=0,
                    mean_consecutive_iou=1,
                    empty_frames=0,
                    border_contact=0,
                )
            )
            for kind, text, stage in (
                ("appearance", XSS[1] if evil else f"a red square {i}", "annotate"),
                ("motion", f"it moves right {i}", "annotate"),
                ("region", f"a red block {i}", "review"),
            ):
                s.add(
                    schema.Description(
                        id=stable_id("d", oid, kind),
                        object_id=oid,
                        kind=kind,
                        text=text,
                        model="m",
                        prompt_version="p@1",
                        lineage=LINEAGE[stage],
                    )
                )
            s.flush()
            rid = stable_id("review", oid)
            s.add(
                schema.Review(
                    id=rid,
                    object_id=oid,
                    mode="paper",
                    verdict=i < kept,
                    confidence=0.8,
                    rationale=XSS[0] if evil else "same object",
                    model="m",
                    prompt_version="j@1",
                    lineage=LINEAGE["review"],
                    masklet_id=mid,
                    description_ids=[stable_id("d", oid, "appearance"), stable_id("d", oid, "motion")],
                    region_description_id=stable_id("d", oid, "region"),
                )
            )
            ids.append(rid)
    return ids
