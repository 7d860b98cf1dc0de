"""Masklet quality gates learnt from audits (`engine audit gates`).

People's audits say why a pairing was wrong; reason `mask_wrong` ("mask wrong or drifting") marks a bad masklet,
an item judged correct a good one (other reasons say nothing about the mask and are left out). For each gate
(engine/media/gates.py) this measures how well its metric separates the two, then chooses thresholds, greedily,
that remove as many bad masklets as possible while losing at most `max_loss` of the good ones, both estimated for
the population: each item weighs its Reviewer-verdict stratum's population over that stratum's audited items, as
the audit statistics weigh them (engine/audit/sampling.py). Intervals come from a bootstrap within strata.

Audited items passed the gates in force when their run made them, so what those gates already removed is never
seen here: a suggestion can tighten a gate, or loosen it only as far as the audited values reach.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from engine.audit.sampling import Estimate, label_rule
from engine.media.gates import GATES, gate_metrics
from engine.store.audits import GateDecision

MIN_PER_CLASS = 20  # bad and good items each, before any threshold is suggested
REPLICATES = 200
OFF = {"min": 0.0, "max": 1.0}  # a threshold that stops nothing (every metric is a share in [0, 1])


@dataclass(frozen=True)
class GateItem:
    """An audited masklet: its gate metrics, whether people marked its mask wrong, and its stratum."""

    review_id: str
    stratum: str  # the Reviewer's verdict: "kept" or "discarded"
    bad: bool
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class GateFit:
    """One gate on its own: how well its metric separates bad from good, and its best threshold alone."""

    key: str
    auc: float  # probability that a bad masklet is on the failing side of a good one (0.5: no separation)
    threshold: float
    removal: float
    loss: float


@dataclass
class GatesSuggestion:
    n_bad: int
    n_good: int
    target_removal: float
    max_loss: float
    needed: str | None = None  # why nothing is suggested (too few items), with how many more audits
    thresholds: dict[str, float] = field(default_factory=dict)  # every gate's suggested threshold
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # per gate, over the bootstrap
    removal: Estimate | None = None
    loss: Estimate | None = None
    alone: list[GateFit] = field(default_factory=list)
    pool: int = 0  # current reviewed objects the estimate of saved calls is over
    gated_in_pool: int = 0  # of them, stopped by the suggested thresholds

    @property
    def meets_target(self) -> bool:
        return self.removal is not None and self.removal.value >= self.target_removal - 1e-9


def items_from(decisions: Sequence[GateDecision], rule: str = "majority") -> tuple[list[GateItem], int]:
    """One item per audited review with a masklet: good (the label says same object) or bad (not, and the reason
    most given is mask_wrong); other reasons are left out. Also returns how many items have a label at all."""
    choose = label_rule(rule)
    by_item: dict[str, list[GateDecision]] = {}
    for d in decisions:
        by_item.setdefault(d.review_id, []).append(d)
    items: list[GateItem] = []
    for rid, ds in sorted(by_item.items()):
        first = ds[0]
        if first.frames is None:  # a review from before masklets were linked: nothing to measure
            continue
        if choose([(d.decided_at, d.auditor, d.same_object) for d in ds]):
            bad = False
        else:
            reasons = Counter(d.reason for d in ds if not d.same_object)
            if reasons.most_common(1)[0][0] != "mask_wrong":
                continue
            bad = True
        metrics = gate_metrics(first.frames, first.mean_consecutive_iou or 0.0, first.border_contact or 0.0)
        items.append(GateItem(rid, "kept" if first.reviewer_keep else "discarded", bad, metrics))
    return items, len(by_item)


def weights(items: Sequence[GateItem], populations: Mapping[str, int]) -> list[float]:
    """Each item: its stratum's population over the stratum's audited items (1 where the population is unknown)."""
    audited: dict[str, int] = {}
    for it in items:
        audited[it.stratum] = audited.get(it.stratum, 0) + 1
    return [(populations.get(it.stratum) or audited[it.stratum]) / audited[it.stratum] for it in items]


def fails(key: str, threshold: float, metrics: Mapping[str, float]) -> bool:
    metric, side = GATES[key]
    value = metrics[metric]
    return math.isnan(value) or (value < threshold if side == "min" else value > threshold)


class _Arrays:
    """The items as arrays: a column of values per gate, bad or good, and weights (the fit is vectorised)."""

    def __init__(self, items: Sequence[GateItem], w: Sequence[float]):
        self.values = {k: np.array([it.metrics[m] for it in items], float) for k, (m, _) in GATES.items()}
        bad = np.array([it.bad for it in items], bool)
        wt = np.asarray(w, float)
        self.w_bad, self.w_good = wt * bad, wt * ~bad
        self.total_bad, self.total_good = self.w_bad.sum(), self.w_good.sum()

    def failing(self, key: str, thresholds: np.ndarray) -> np.ndarray:
        """(items, thresholds) booleans: fails the gate at each threshold (a value that is not a number fails)."""
        v = self.values[key][:, None]
        out = v < thresholds[None, :] if GATES[key][1] == "min" else v > thresholds[None, :]
        return out | np.isnan(v)

    def rates(self, fail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Removal of bad and loss of good for each column of `fail` (items, k)."""
        f = fail.astype(float)
        removal = self.w_bad @ f / self.total_bad if self.total_bad else np.zeros(f.shape[1])
        loss = self.w_good @ f / self.total_good if self.total_good else np.zeros(f.shape[1])
        return np.clip(removal, 0.0, 1.0), np.clip(loss, 0.0, 1.0)  # sums of weights: no 1.0000000000000002

    def union(self, thresholds: Mapping[str, float], skip: str | None = None) -> np.ndarray:
        n = len(self.w_bad)
        out = np.zeros(n, bool)
        for k, t in thresholds.items():
            if k != skip:
                out |= self.failing(k, np.array([t]))[:, 0]
        return out


def _rates(items: Sequence[GateItem], w: Sequence[float], thresholds: Mapping[str, float]) -> tuple[float, float]:
    """(removal of bad, loss of good) under these thresholds, weighted."""
    a = _Arrays(items, w)
    removal, loss = a.rates(a.union(thresholds)[:, None])
    return float(removal[0]), float(loss[0])


def _candidates(items: Sequence[GateItem], key: str) -> np.ndarray:
    """Thresholds worth trying: each audited value (a max gate at a value stops what is above it), and off."""
    metric, side = GATES[key]
    values = {round(it.metrics[metric], 6) for it in items if not math.isnan(it.metrics[metric])}
    if side == "min":  # a min gate at a value v stops what is below v: the next value up stops v itself
        values |= {round(v + 1e-6, 6) for v in values}
    return np.array(sorted(values | {OFF[side]}), float)


def _auc(items: Sequence[GateItem], w: Sequence[float], key: str) -> float:
    a = _Arrays(items, w)
    sign = 1.0 if GATES[key][1] == "max" else -1.0  # bad is high for a max gate, low for a min gate
    v = sign * a.values[key]
    bad, good = a.w_bad > 0, a.w_good > 0
    if not bad.any() or not good.any():
        return 0.5
    vb, vg = v[bad][:, None], v[good][None, :]
    pair = np.where(vb > vg, 1.0, np.where(vb == vg, 0.5, 0.0))
    return float(a.w_bad[bad] @ pair @ a.w_good[good] / (a.total_bad * a.total_good))


def fit(items: Sequence[GateItem], w: Sequence[float], max_loss: float) -> dict[str, float]:
    """Greedy: start with every gate off; each step moves the one gate to the one threshold that removes the most
    more bad masklets while the loss of good ones stays at most max_loss; stop when no step helps."""
    a = _Arrays(items, w)
    thresholds = {k: OFF[side] for k, (_, side) in GATES.items()}
    candidates = {k: _candidates(items, k) for k in GATES}
    removal = 0.0
    while True:
        best: tuple[float, float, str, float] | None = None  # (removal, -loss, key, threshold)
        for key, values in candidates.items():
            others = a.union(thresholds, skip=key)
            r, loss = a.rates(others[:, None] | a.failing(key, values))
            ok = (loss <= max_loss + 1e-12) & (r > removal + 1e-12)
            for i in np.flatnonzero(ok):
                if best is None or (r[i], -loss[i]) > best[:2]:
                    best = (float(r[i]), float(-loss[i]), key, float(values[i]))
        if best is None:
            return thresholds
        removal, _, key, t = best
        thresholds[key] = t


def _alone(items: Sequence[GateItem], w: Sequence[float], key: str, max_loss: float) -> GateFit:
    a, values = _Arrays(items, w), _candidates(items, key)
    r, loss = a.rates(a.failing(key, values))
    best = (0.0, 0.0, OFF[GATES[key][1]])
    for i in np.flatnonzero(loss <= max_loss + 1e-12):
        if (r[i], -loss[i]) > (best[0], -best[1]):
            best = (float(r[i]), float(loss[i]), float(values[i]))
    return GateFit(key, _auc(items, w, key), best[2], best[0], best[1])


def _needed(n_bad: int, n_good: int, n_labelled: int) -> str | None:
    """How many more audits the fit needs before it suggests anything, or None when it has enough."""
    parts = []
    for n, what in ((n_bad, "marked 'mask wrong or drifting'"), (n_good, "judged correct")):
        if n >= MIN_PER_CLASS:
            continue
        if n == 0:
            parts.append(f"no audited item is {what} yet: audit until at least {MIN_PER_CLASS} are")
        else:
            more = math.ceil((MIN_PER_CLASS - n) * n_labelled / n)  # at the rate seen so far
            parts.append(f"{n} audited items are {what}, {MIN_PER_CLASS} are needed: about {more:,} more audits")
    return "; ".join(parts) or None


def suggest(
    items: Sequence[GateItem],
    populations: Mapping[str, int],
    target_removal: float,
    max_loss: float,
    n_labelled: int,
    pool: Sequence[Mapping[str, float]] = (),
    seed: int = 0,
    replicates: int = REPLICATES,
    on_replicate: Callable[[], None] | None = None,
) -> GatesSuggestion:
    """Thresholds for the gates from the audited items (`n_labelled`: every item with a label, other reasons too,
    for the rate of bad masks), and how many of the current reviewed masklets (`pool`) they would stop."""
    n_bad = sum(it.bad for it in items)
    out = GatesSuggestion(n_bad, len(items) - n_bad, target_removal, max_loss)
    out.needed = _needed(out.n_bad, out.n_good, n_labelled)
    if out.needed:
        return out
    w = weights(items, populations)
    out.thresholds = fit(items, w, max_loss)
    removal, loss = _rates(items, w, out.thresholds)
    rng = random.Random(seed)
    strata: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        strata.setdefault(it.stratum, []).append(i)
    boot_rates: list[tuple[float, float]] = []
    boot_thresholds: dict[str, list[float]] = {k: [] for k in GATES}
    for _ in range(replicates):  # resampled within each stratum, so the weights keep their meaning
        idx = [rng.choice(members) for members in strata.values() for _ in members]
        sample = [items[i] for i in idx]
        if not any(it.bad for it in sample) or all(it.bad for it in sample):
            continue
        sw = weights(sample, populations)
        boot_rates.append(_rates(sample, sw, out.thresholds))
        for k, t in fit(sample, sw, max_loss).items():
            boot_thresholds[k].append(t)
        if on_replicate:
            on_replicate()
    out.removal = _estimate(removal, [r for r, _ in boot_rates])
    out.loss = _estimate(loss, [x for _, x in boot_rates])
    out.intervals = {k: _percentiles(v) for k, v in boot_thresholds.items() if v}
    out.alone = [_alone(items, w, k, max_loss) for k in GATES]
    out.pool = len(pool)
    out.gated_in_pool = sum(any(fails(k, t, m) for k, t in out.thresholds.items()) for m in pool)
    return out


def _percentiles(values: list[float]) -> tuple[float, float]:
    v = sorted(values)
    return v[int(0.025 * (len(v) - 1))], v[int(round(0.975 * (len(v) - 1)))]


def _estimate(point: float, replicates: list[float]) -> Estimate:
    low, high = _percentiles(replicates) if replicates else (float("nan"), float("nan"))
    return Estimate(point, low, high, f"stratified bootstrap x{len(replicates)}")
