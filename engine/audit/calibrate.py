"""Calibrate the Reviewer's keep threshold from people's audits, for a target precision.

The score is P(same object): the judge's answer-token probability where its server returned log-probabilities
("tokens"), else its verbalised confidence c in its own same_object answer, c for a yes and 1 - c for a no
("verbal"). Both are stored with every review; a calibration uses one and says which. Keeping every object whose
score is at least t gives, over the whole pool:

- yield(t): the share of reviewed objects kept, known exactly (every score is in the store);
- precision(t): the share of those that are the same object, and recall(t): the share of same-object pairs kept,
  both estimated from audited items.

Audited items are not a uniform sample: the verdict strata are drawn apart, and near-threshold draws add more where
the decision is uncertain. Each audited item is weighted by its cell: cells are (verdict, score band) with bands at
the deciles of each verdict's scores, and an item's weight is the cell's population over its audited items
(post-stratification). Every draw is uniform within whole cells, so the weighted estimates stay unbiased; a cell
without audits is merged with its neighbour. Intervals come from a seeded bootstrap that resamples audited items
within each cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import BinaryIO

import numpy as np

from engine.store.audits import ScoredReview

BANDS = 10
BOOTSTRAP = 1000
SEED = 0
MIN_ABOVE = 10  # audited items at or above a threshold before its precision is trusted


def same_score(keep: bool, confidence: float) -> float:
    return float(confidence) if keep else 1.0 - float(confidence)


@dataclass
class Pool:
    """Every reviewed object's score and verdict, and which of them were audited with what label."""

    scores: np.ndarray  # float, per reviewed object
    keep: np.ndarray  # bool, the Reviewer's verdict
    audited: np.ndarray  # int indices into scores
    labels: np.ndarray  # bool, same object, per audited index

    def cells(self) -> np.ndarray:
        """The cell of every object: verdict x score band (deciles of that verdict's scores), cells without audits
        merged into the next one of the same verdict."""
        cell = np.zeros(len(self.scores), int)
        audited = np.zeros(len(self.scores), bool)
        audited[self.audited] = True
        next_id = 0
        for verdict in (False, True):
            idx = np.flatnonzero(self.keep == verdict)
            if not len(idx):
                continue
            edges = np.unique(np.quantile(self.scores[idx], np.linspace(0, 1, BANDS + 1)[1:-1]))
            band = np.searchsorted(edges, self.scores[idx], side="right")
            groups = [idx[band == b] for b in range(len(edges) + 1)]
            merged: list[np.ndarray] = []
            pending = np.zeros(0, int)
            for g in groups:
                pending = np.concatenate([pending, g])
                if audited[pending].any():
                    merged.append(pending)
                    pending = np.zeros(0, int)
            if len(pending):
                if merged:
                    merged[-1] = np.concatenate([merged[-1], pending])
                else:
                    merged.append(pending)
            for g in merged:
                cell[g] = next_id
                next_id += 1
        return cell

    def weights(self, cell: np.ndarray) -> np.ndarray:
        """Per audited item: its cell's population over the cell's audited items."""
        population = np.bincount(cell, minlength=cell.max() + 1)
        sampled = np.bincount(cell[self.audited], minlength=cell.max() + 1)
        return population[cell[self.audited]] / np.maximum(sampled[cell[self.audited]], 1)


@dataclass
class Interval:
    value: float
    low: float
    high: float


@dataclass
class Calibration:
    target: float
    threshold: float | None  # None: no threshold reaches the target
    precision: Interval
    recall: Interval
    yield_: float  # share of reviewed objects at or above the threshold (exact)
    kept_by_reviewer: int  # objects the Reviewer kept
    admitted: int  # objects at or above the threshold
    readmitted: int  # of those, objects the Reviewer discarded (they have no detailed description yet)
    audited: int
    curve: list[tuple[float, float, float]] = field(default_factory=list)  # (threshold, precision, yield)
    score: str = "verbal"  # which score it was computed on: tokens | verbal


def _estimates(scores_a: np.ndarray, labels: np.ndarray, w: np.ndarray, t: float) -> tuple[float, float]:
    above = scores_a >= t
    wp = (w * above).sum()
    tp = (w * above * labels).sum()
    total_same = (w * labels).sum()
    return (tp / wp if wp else float("nan")), (tp / total_same if total_same else float("nan"))


def calibrate(pool: Pool, target: float, bootstrap: int = BOOTSTRAP, seed: int = SEED) -> Calibration:
    """The lowest threshold whose estimated precision reaches the target, with its estimates and intervals."""
    cell = pool.cells()
    w = pool.weights(cell)
    sa, lab = pool.scores[pool.audited], pool.labels.astype(float)
    candidates = np.unique(sa)
    curve, chosen = [], None
    for t in candidates:  # from the lowest: the first that reaches the target keeps the most
        above = (sa >= t).sum()
        p, _ = _estimates(sa, lab, w, t)
        curve.append((float(t), float(p), float((pool.scores >= t).mean())))
        if chosen is None and above >= MIN_ABOVE and p >= target:
            chosen = float(t)
    t = chosen if chosen is not None else float(candidates[-1]) if len(candidates) else 1.0
    p, r = _estimates(sa, lab, w, t)
    rng = np.random.default_rng(seed)
    acell = cell[pool.audited]
    members = [np.flatnonzero(acell == c) for c in np.unique(acell)]
    boots = []
    for _ in range(bootstrap):  # resample audited items within each cell; weights stay the cell's
        pick = np.concatenate([m[rng.integers(0, len(m), len(m))] for m in members])
        boots.append(_estimates(sa[pick], lab[pick], w[pick], t))
    b = np.array(boots)

    def interval(point: float, col: int) -> Interval:
        vals = b[:, col][~np.isnan(b[:, col])]
        if not len(vals):
            return Interval(point, 0.0, 1.0)
        return Interval(float(point), float(np.quantile(vals, 0.025)), float(np.quantile(vals, 0.975)))

    admitted = pool.scores >= t
    return Calibration(
        target,
        chosen,
        interval(p, 0),
        interval(r, 1),
        float(admitted.mean()),
        int(pool.keep.sum()),
        int(admitted.sum()),
        int((admitted & ~pool.keep).sum()),
        len(pool.audited),
        curve,
    )


def error_bar(interval: Interval) -> list[list[float]]:
    """matplotlib's yerr for the interval: [[below], [above]] the point, clamped at 0 (matplotlib refuses a negative
    error). A degenerate interval (every bootstrap replicate alike) can lie a last bit off its point estimate (the
    sums run in another order), and a percentile interval need not hold its point: either side is then drawn with
    zero length."""
    return [[max(0.0, interval.value - interval.low)], [max(0.0, interval.high - interval.value)]]


def plot(cal: Calibration, path: str | PathLike[str] | BinaryIO) -> None:
    """The precision-yield curve over thresholds, the chosen one marked (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    if cal.curve:
        _, p, y = zip(*cal.curve)
        ax.plot(y, p, "-", color="#3b7dd8", label="estimated precision")
    ax.axhline(cal.target, color="#999", ls="--", lw=1, label=f"target {cal.target:.2f}")
    if cal.threshold is not None:
        ax.errorbar(
            [cal.yield_],
            [cal.precision.value],
            yerr=error_bar(cal.precision),
            fmt="o",
            color="#e06666",
            label=f"threshold {cal.threshold:.3f}",
        )
    ax.set_xlabel("yield (share of reviewed objects kept)")
    ax.set_ylabel("precision (same object)")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, 1.02)
    ax.legend(loc="lower left")
    name = "token probability" if cal.score == "tokens" else "verbalised confidence"
    ax.set_title(f"Reviewer keep threshold on the {name}: precision against yield", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


SOURCES = ("tokens", "verbal")


def score_source(rows: Sequence[ScoredReview], score: str = "auto") -> str:
    """Which score a calibration uses: "tokens" (the answer token's probability) or "verbal" (the verbalised
    confidence); "auto" takes tokens when every current review has one. ValueError for tokens that some lack."""
    if score not in ("auto", *SOURCES):
        raise ValueError(f"the score is auto, tokens or verbal, not {score!r}")
    have = sum(r.token_p_same is not None for r in rows)
    if score == "auto":
        return "tokens" if rows and have == len(rows) else "verbal"
    if score == "tokens" and have < len(rows):
        raise ValueError(
            f"{len(rows) - have:,} of {len(rows):,} current reviews have no token probability (their judge's server "
            "returned no log-probabilities, or they predate them): calibrate on the verbal score"
        )
    return score


def pool_from(rows: Sequence[ScoredReview], labels: dict[str, bool], score: str = "verbal") -> tuple[Pool, list[str]]:
    """rows: every current review; labels: review id -> same object; score: tokens or verbal (score_source)."""
    ids = [r.review_id for r in rows]
    scores = np.array([r.token_p_same if score == "tokens" else r.verbal_p_same for r in rows], float)
    keep = np.array([bool(r.verdict) for r in rows], bool)
    index = {rid: i for i, rid in enumerate(ids)}
    audited = np.array([index[r] for r in labels if r in index], int)
    return Pool(scores, keep, audited, np.array([labels[ids[i]] for i in audited], bool)), ids
