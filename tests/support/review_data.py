"""Reviews in a store, made directly (no pipeline run), for audit and review-UI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.media import masks
from engine.store import schema
from engine.store.ids import stable_id
from engine.store import Store
from synthetic import render, write_mp4

XSS = ('<script>window.__xss = 1</script>', '"><img src=x onerror="window.__xss=2">')


def make_reviews(store: Store, src: Path, kept: int, discarded: int, evil: bool = False) -> list[str]:
    """One video with kept + discarded objects, each with a masklet, descriptions and a review."""
    frames, gt = render(8, 96, 72)
    write_mp4(src / "clip.mp4", frames)
    vid = stable_id("video", str(src))
    ids = []
    with store.session() as s:
        s.add(schema.Video(id=vid, path="clip.mp4", source_root=str(src), kind="file", num_frames=8, fps=12.0,
                           width=96, height=72, size_bytes=1))
        s.flush()
        for i in range(kept + discarded):
            oid = stable_id("object", vid, i)
            noun = XSS[0] if evil and i == 0 else f"object {i}"
            s.add(schema.VideoObject(id=oid, video_id=vid, noun=noun, stage_version="a@1", status="grounded"))
            s.flush()
            mask_frames = {str(f): masks.encode(np.roll(gt["red square"][f], i, axis=0)) for f in range(0, 8, 2)}
            s.add(schema.Masklet(id=stable_id("m", oid), object_id=oid, backend_version="t@1", anchor_frame=2,
                                 box=[0, 0, 1, 1], grounding_score=1, mask_score=1, height=72, width=96,
                                 frames=mask_frames, coverage=1, area_variation=0, mean_consecutive_iou=1,
                                 empty_frames=0, border_contact=0))
            for kind, text in (("appearance", XSS[1] if evil else f"a red square {i}"),
                               ("motion", f"it moves right {i}"), ("region", f"a red block {i}")):
                s.add(schema.Description(id=stable_id("d", oid, kind), object_id=oid, kind=kind, text=text, model="m",
                                         prompt_version="p@1"))
            rid = stable_id("review", oid)
            s.add(schema.Review(id=rid, object_id=oid, mode="paper", verdict=i < kept, confidence=0.8,
                                rationale=XSS[0] if evil else "same object", model="m", prompt_version="j@1"))
            ids.append(rid)
    return ids
