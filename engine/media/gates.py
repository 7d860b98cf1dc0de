"""Masklet quality gates: which metric of a stored masklet each gate reads, which way it cuts, and the first
gate a masklet fails.

The metrics come from what the store keeps of a masklet (its RLEs and quality columns, engine/media/masks.py),
so a change of thresholds re-gates without a segmentor call. The gate stage (pipelines/stages.py GateStage) and
`engine audit gates` (engine/audit/gates.py) share these definitions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from engine.media import masks

# config key ([gates] in the config) -> (metric, which side fails). The order is the order they are checked in:
# the first that fails is the one stored.
GATES: dict[str, tuple[str, Literal["min", "max"]]] = {
    "max_empty_share": ("empty_share", "max"),  # mostly empty: the object was lost on most frames
    "min_mean_iou": ("mean_consecutive_iou", "min"),  # flicker: consecutive masks do not overlap
    "min_area_share": ("area_share", "min"),  # specks
    "max_area_share": ("area_share", "max"),  # drift onto the background: the mask covers most of the frame
    "max_border_contact": ("border_contact", "max"),  # cut off by the frame on most frames
}
METRICS = tuple(dict.fromkeys(metric for metric, _ in GATES.values()))


def gate_metrics(frames: Mapping[Any, Mapping | None], mean_consecutive_iou: float, border_contact: float) -> dict:
    """The gates' metrics of one masklet: its frames ({frame: RLE or None}) and two of its stored quality columns.
    `area_share` is the mean share of the frame that the non-empty masks cover."""
    shares = [masks.area(r) / (r["size"][0] * r["size"][1]) if r is not None else 0.0 for r in frames.values()]
    present = [x for x in shares if x > 0]
    return {
        "empty_share": (len(shares) - len(present)) / len(shares) if shares else 1.0,
        "mean_consecutive_iou": float(mean_consecutive_iou),
        "area_share": sum(present) / len(present) if present else 0.0,
        "border_contact": float(border_contact),
    }


def failed_gate(metrics: Mapping[str, float], thresholds: Mapping[str, float]) -> tuple[str, float, float] | None:
    """(gate, the metric's value, the threshold) of the first gate the metrics fail, or None if they pass them all.
    A metric that is not a number fails its gate: nothing is known to be good about it."""
    for key, (metric, side) in GATES.items():
        limit, value = thresholds[key], float(metrics[metric])
        if math.isnan(value) or (value < limit if side == "min" else value > limit):
            return key, value, limit
    return None
