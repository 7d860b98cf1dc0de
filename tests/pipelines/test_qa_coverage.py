"""QA coverage: every object alone, pairs by how often they are seen together (capped), types in the configured
mix; and the QA writer shown the frames when configured."""

from __future__ import annotations

from collections import Counter

from agents.refiner import QA_TYPES, qa_types
from pipelines.stages import qa_groups


class _State:
    def __init__(self, frames: dict[str, dict]):
        self.frames = frames

    def masklet(self, object_id: str) -> dict:
        return {"frames": self.frames[object_id]}


def test_pairs_seen_together_most_come_first_and_the_cap_holds():
    on = {"x": 1}
    frames = {  # frames where each object has a mask
        "a": {"0": on, "1": on, "2": on, "3": on},
        "b": {"0": on, "1": on, "2": on, "3": None},
        "c": {"0": None, "1": None, "2": on, "3": on},
        "d": {"0": None, "1": None, "2": None, "3": None},  # never shares a frame: in no pair
    }
    objects = [{"id": k} for k in sorted(frames)]
    groups = qa_groups(objects, _State(frames), max_pairs=10)
    singles, pairs = groups[:4], [[o["id"] for o in g] for g in groups[4:]]
    assert [g[0]["id"] for g in singles] == ["a", "b", "c", "d"]
    assert pairs == [["a", "b"], ["a", "c"], ["b", "c"]]  # 3, 2 and 1 shared frames
    assert [[o["id"] for o in g] for g in qa_groups(objects, _State(frames), max_pairs=1)[4:]] == [["a", "b"]]
    assert len(qa_groups(objects, _State(frames), max_pairs=0)) == 4


def test_types_follow_the_mix_deterministically():
    mix = {"basic": 40.0, "reasoning": 21.0, "future": 14.0}
    drawn = Counter(t for unit in range(3000) for t in qa_types(f"unit{unit}", mix, 3))
    total = sum(drawn.values())
    for t in QA_TYPES:
        assert abs(drawn[t] / total - mix[t] / 75) < 0.02, (t, drawn)
    assert qa_types("u", mix, 3) == qa_types("u", mix, 3)
    assert set(qa_types("u", {"basic": 0, "reasoning": 1, "future": 0}, 5)) == {"reasoning"}
