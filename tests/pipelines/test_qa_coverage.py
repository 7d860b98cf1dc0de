"""QA coverage: every object alone, pairs by how often they are seen together (capped), types in the configured
mix; and the QA writer shown the frames when configured."""

from __future__ import annotations

from collections import Counter

from agents.refiner import QA_TYPES, qa_types
from engine.runtime.state import VideoState
from engine.store.current import Current, VideoRows
from engine.store.records import MaskletRecord, ObjectRecord
from pipelines.stages import qa_groups


def _state(frames: dict[str, dict]) -> VideoState:
    """A video's state whose objects have masks on these frames."""
    rows = VideoRows("v")
    for object_id, masks in frames.items():
        rows.objects[object_id] = ObjectRecord(id=object_id, video_id="v", noun=object_id, stage_version="s")
        rows.masklets[object_id] = MaskletRecord(
            id=f"m{object_id}",
            object_id=object_id,
            backend_version="b",
            anchor_frame=0,
            box=[0, 0, 1, 1],
            grounding_score=1.0,
            mask_score=1.0,
            height=1,
            width=1,
            frames=masks,
            coverage=1.0,
            area_variation=0.0,
            mean_consecutive_iou=1.0,
            empty_frames=0,
            border_contact=0.0,
        )
    return VideoState(rows, Current())


def test_pairs_seen_together_most_come_first_and_the_cap_holds():
    on = {"x": 1}
    frames = {  # frames where each object has a mask
        "a": {"0": on, "1": on, "2": on, "3": on},
        "b": {"0": on, "1": on, "2": on, "3": None},
        "c": {"0": None, "1": None, "2": on, "3": on},
        "d": {"0": None, "1": None, "2": None, "3": None},  # never shares a frame: in no pair
    }
    state = _state(frames)
    objects = state.grounded("s")
    groups = qa_groups(objects, state, max_pairs=10)
    singles, pairs = groups[:4], [[o.id for o in g] for g in groups[4:]]
    assert [g[0].id for g in singles] == ["a", "b", "c", "d"]
    assert pairs == [["a", "b"], ["a", "c"], ["b", "c"]]  # 3, 2 and 1 shared frames
    assert [[o.id for o in g] for g in qa_groups(objects, state, max_pairs=1)[4:]] == [["a", "b"]]
    assert len(qa_groups(objects, state, max_pairs=0)) == 4


def test_types_follow_the_mix_deterministically():
    mix = {"basic": 40.0, "reasoning": 21.0, "future": 14.0}
    drawn = Counter(t for unit in range(3000) for t in qa_types(f"unit{unit}", mix, 3))
    total = sum(drawn.values())
    for t in QA_TYPES:
        assert abs(drawn[t] / total - mix[t] / 75) < 0.02, (t, drawn)
    assert qa_types("u", mix, 3) == qa_types("u", mix, 3)
    assert set(qa_types("u", {"basic": 0, "reasoning": 1, "future": 0}, 5)) == {"reasoning"}
