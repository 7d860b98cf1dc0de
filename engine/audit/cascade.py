"""Calibrate a cascade of Reviewer judges, cheap to strong, for a target precision at the least cost.

Each judge gives p = P(same object). A judge that is not the last keeps an object when p >= hi, discards it when
p < lo and hands it to the next judge otherwise; the last judge keeps it when p >= its threshold (its band is stored
as (t, t)). Most objects are clear, so a cheap judge that decides them and defers the rest to a strong one can cost
a fraction of the strong one alone, at the same precision.

Which bands? The pool's cost and yield under any bands are known exactly from the scores (no labels needed); the
precision of the kept objects is estimated from people's audits. Audits are drawn uniformly within strata, (verdict
x deciding judge) of the run that collected the scores, so an audited item weighs its stratum's population over its
audited items (post-stratification), whatever bands are evaluated later.

The scores come from a run with some bands: a judge that was not reached has no score (NaN). Only bands under which
every object's path meets scored judges can be evaluated (`feasible`): in practice bands nested inside the collecting
ones. To widen a band, collect with a wider one first.

Selection bias: the chosen bands are the cheapest of thousands whose estimated precision reaches the target, so
they lean towards bands whose estimate came out high, and the interval, computed on the same audits, ignores the
choice. Measured (benchmarks/cascade_simulation.py: 500 seeded pools of 3000 objects, 400 audits, cheap noise 1-3,
targets 0.8-0.95): the estimate's optimism is 0.001-0.008, a tenth to under half of its standard error, because the
configurations are nested and the search walks one cost frontier; the 95% interval holds the real precision in
94-97% of pools. Choosing on half the audits and estimating on the other half (holdout=True) removes the optimism,
but the error grows by 40-50%, the target is reached less often and the coverage is no better (93-94%): it is an
option, not the default. The point estimate, not the interval's lower bound, must reach the target, so the real
precision falls below the target in a fifth to a half of the pools, as with the single threshold.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from engine.audit.calibrate import Interval

BOOTSTRAP = 1000
SEED = 0
MIN_KEPT_AUDITED = 10  # audited items kept under the bands before their precision is trusted
MAX_CONFIGS = 20000  # band configurations tried, at most, whatever the number of judges

Band = tuple[float, float]


@dataclass
class Decisions:
    keep: np.ndarray  # bool n
    decider: np.ndarray  # int n: the judge that decided (or whose missing score stopped the path)
    calls: np.ndarray  # bool n x k: the judges called
    known: np.ndarray  # bool n: the path met only scored judges


def decide(scores: np.ndarray, bands: Sequence[Band]) -> Decisions:
    """Run the cascade over already-computed scores (n x k, NaN where a judge did not score). A path that reaches an
    unscored judge stops there: not known, not kept."""
    scores = np.asarray(scores, float)
    n, k = scores.shape
    if len(bands) != k:
        raise ValueError(f"{len(bands)} bands for {k} judges")
    keep, known, open_ = np.zeros(n, bool), np.ones(n, bool), np.ones(n, bool)
    decider, calls = np.full(n, k - 1), np.zeros((n, k), bool)
    for j, (lo, hi) in enumerate(bands):
        p = scores[:, j]
        calls[:, j] = open_
        missing = open_ & np.isnan(p)
        known &= ~missing
        if j == k - 1:
            keep |= open_ & (p >= hi)
            break
        if lo > hi:
            raise ValueError(f"judge {j}: band ({lo}, {hi}) has lo above hi")
        kept, dropped = open_ & (p >= hi), open_ & (p < lo)
        keep |= kept
        done = kept | dropped | missing
        decider[done] = j
        open_ &= ~done
    return Decisions(keep, decider, calls, known)


@dataclass
class CascadePool:
    """Every reviewed object's scores by each judge, its audit stratum, and which objects were audited as what."""

    scores: np.ndarray  # float n x k, NaN where the judge was not called
    stratum: np.ndarray  # int n: the stratum each object was drawn from for audit
    audited: np.ndarray  # int indices into scores
    labels: np.ndarray  # bool per audited index: same object
    cost: np.ndarray  # float k: expected USD per call of each judge
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, float).reshape(len(self.scores), -1)
        self.stratum = np.asarray(self.stratum, int)
        self.audited = np.asarray(self.audited, int)
        self.labels = np.asarray(self.labels, bool)
        self.cost = np.asarray(self.cost, float).reshape(-1)
        if not self.names:
            self.names = [f"judge {j}" for j in range(self.scores.shape[1])]

    def weights(self) -> np.ndarray:
        """Per audited item: its stratum's population over the stratum's audited items."""
        return stratum_weights(self.stratum, self.audited)


def stratum_weights(stratum: np.ndarray, audited: np.ndarray) -> np.ndarray:
    """Per audited index: its stratum's population over the stratum's audited indices (post-stratification)."""
    size = int(stratum.max()) + 1 if len(stratum) else 0
    population = np.bincount(stratum, minlength=size)
    sampled = np.bincount(stratum[audited], minlength=size)
    return population[stratum[audited]] / np.maximum(sampled[stratum[audited]], 1)


def single_judge_pool(
    scores: np.ndarray, stratum: np.ndarray, audited: np.ndarray, labels: np.ndarray, cost: float, name: str = "judge"
) -> CascadePool:
    """A one-judge cascade (the strong judge alone, every object scored): `calibrate_cascade` then searches its
    threshold only, so the baseline goes through the same code as the cascade."""
    return CascadePool(np.asarray(scores, float)[:, None], stratum, audited, labels, np.array([cost]), [name])


@dataclass
class CascadeCalibration:
    """The cheapest bands whose precision reaches the target, or bands=None when none does: the numbers are then
    those of the feasible bands with the best estimated precision (`best_bands`), which miss the target."""

    target: float
    bands: list[Band] | None
    precision: Interval  # from every audit (the held-out half with holdout=True)
    yield_: float  # share of the pool kept (exact)
    kept: int
    share_decided: list[float]  # per judge, share of the pool it decided (exact)
    cost_per_object: float  # USD, exact over the pool
    cost_per_kept: float
    audited: int
    tried: int  # configurations evaluated
    feasible: int  # of those, configurations whose every path meets scored judges
    best_bands: list[Band] | None = None  # the bands the numbers describe (None: no feasible configuration)
    # the precision as estimated by the audits that chose the bands (without holdout, the same as `precision`)
    chosen_precision: float = float("nan")
    held_out: int = 0  # audits behind `precision`
    names: list[str] = field(default_factory=list)
    share_called: list[float] = field(default_factory=list)  # per judge, share of the pool it scored (exact)


def grids(pool: CascadePool, max_configs: int = MAX_CONFIGS, points: int | None = None) -> list[np.ndarray]:
    """Candidate band edges per judge: quantiles of its scores plus 0 and 1. For a judge before the last, the
    quantiles are of the scores whose next judge was called (a feasible band lies among them), plus the first score
    above them (so the collecting band itself is a candidate). Points per judge shrink with the number of judges so
    that the configurations stay under max_configs."""
    k = pool.scores.shape[1]
    g = points or (_points(k, max_configs) if k > 1 else 0)
    out: list[np.ndarray] = []
    for j in range(k):
        s = pool.scores[:, j]
        if j == k - 1:
            bands = int(np.prod([len(x) * (len(x) + 1) // 2 for x in out]))  # (lo, hi) pairs of the judges before
            last = max(2, max_configs // bands)
            edges = _quantiles(s[~np.isnan(s)], (points or last) - 2)
        else:
            inner = s[~np.isnan(s) & ~np.isnan(pool.scores[:, j + 1])]
            edges = _quantiles(inner, g - 3)
            if len(inner):
                above = s[s > inner.max()]
                edges = np.append(edges, above.min() if len(above) else [])
        out.append(np.unique(np.concatenate([[0.0, 1.0], edges])))
    return out


def _points(k: int, max_configs: int) -> int:
    """The most edges g per judge with (g (g + 1) / 2) ** (k - 1) * g configurations under max_configs (at least 2)."""
    g = 2
    while ((g + 1) * (g + 2) // 2) ** (k - 1) * (g + 1) <= max_configs:
        g += 1
    return g


def _quantiles(s: np.ndarray, n: int) -> np.ndarray:
    if not len(s) or n < 1:
        return np.zeros(0)
    return np.unique(np.quantile(s, np.linspace(0, 1, n) if n > 1 else [0.5]))


def _configs(edges: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every band configuration on the grids, as indices into them: lo (m x k) and hi (m x k), lo <= hi."""
    per_judge = []
    for j, e in enumerate(edges):
        if j == len(edges) - 1:
            t = np.arange(len(e))
            per_judge.append(np.stack([t, t], 1))
        else:
            lo, hi = np.triu_indices(len(e))
            per_judge.append(np.stack([lo, hi], 1))
    mesh = np.meshgrid(*[np.arange(len(p)) for p in per_judge], indexing="ij")
    rows = [p[m.ravel()] for p, m in zip(per_judge, mesh)]
    return np.stack([r[:, 0] for r in rows], 1), np.stack([r[:, 1] for r in rows], 1)


@dataclass
class _Sums:
    """Per configuration."""

    calls: np.ndarray  # m x k: objects that reach each judge
    kept: np.ndarray  # objects kept
    w: np.ndarray  # over the audited items kept: their weight
    wl: np.ndarray  # their weight if same object
    audited: np.ndarray  # their number
    unknown: np.ndarray  # objects whose path meets an unscored judge


class _Evaluator:
    """Sums over the objects (count, and over audited items: weight, weight x label, count) that each configuration
    keeps, calls at each judge or leaves unknown, by box queries on a k-dimensional prefix sum of the objects binned
    on the grids: a configuration costs a few lookups, not a pass over the objects."""

    def __init__(self, pool: CascadePool, edges: list[np.ndarray], positions: np.ndarray) -> None:
        self.edges = edges
        audited, labels = pool.audited[positions], pool.labels[positions]
        w = stratum_weights(pool.stratum, audited)
        n, k = pool.scores.shape
        bins = np.empty((n, k), int)
        for j, e in enumerate(edges):  # bin b: b grid edges at or below the score; len(e) + 1: not scored
            s = pool.scores[:, j]
            bins[:, j] = np.where(np.isnan(s), len(e) + 1, np.searchsorted(e, np.nan_to_num(s), side="right"))
        shape = tuple(len(e) + 2 for e in edges)
        flat = np.asarray(np.ravel_multi_index(tuple(bins.T), shape), np.intp)
        hist = np.zeros((int(np.prod(shape)), 4))
        hist[:, 0] = np.bincount(flat, minlength=len(hist))
        hist[:, 1] = np.bincount(flat[audited], w, minlength=len(hist))
        hist[:, 2] = np.bincount(flat[audited], w * labels, minlength=len(hist))
        hist[:, 3] = np.bincount(flat[audited], minlength=len(hist))
        prefix = hist.reshape(*shape, 4)
        for d in range(k):
            prefix = np.cumsum(prefix, axis=d)
        self.prefix = np.pad(prefix, [(1, 0)] * k + [(0, 0)])  # prefix[x] = sums over bins below x in every dim

    def box(self, ranges: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Sums (m x 4) over bins in [start, stop) of the first len(ranges) dims, every bin of the others."""
        k = len(self.edges)
        m = len(ranges[0][0]) if ranges else 1
        ends = [np.full(m, len(e) + 2) for e in self.edges[len(ranges) :]]
        total = np.zeros((m, 4))
        for corner in itertools.product((0, 1), repeat=len(ranges)):
            idx = [r[1] if c == 0 else r[0] for r, c in zip(ranges, corner)] + ends
            total += (-1) ** sum(corner) * self.prefix[tuple(idx[:k])]
        return total

    def evaluate(self, lo: np.ndarray, hi: np.ndarray) -> _Sums:
        """lo, hi: (m x k) indices into the edges."""
        k, m = len(self.edges), len(lo)
        band = [(lo[:, j] + 1, hi[:, j] + 1) for j in range(k - 1)]  # lo <= p < hi
        calls, kept, unknown = [], np.zeros((m, 4)), np.zeros(m)
        for j, e in enumerate(self.edges):
            calls.append(self.box(band[:j])[:, 0] if j else np.full(m, self.prefix[(-1,) * k][0]))
            kept += self.box(band[:j] + [(hi[:, j] + 1, np.full(m, len(e) + 1))])  # p >= hi, scored
            unknown += self.box(band[:j] + [(np.full(m, len(e) + 1), np.full(m, len(e) + 2))])[:, 0]
        return _Sums(np.stack(calls, 1), kept[:, 0], kept[:, 1], kept[:, 2], kept[:, 3], unknown)


def split_audits(pool: CascadePool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The audited positions split at random in two halves within each stratum: (choosing, held out). A stratum's
    odd item goes to the choosing half; a stratum with one audited item stays whole in it."""
    rng = np.random.default_rng([seed, 1])
    strata = pool.stratum[pool.audited]
    choose, hold = [], []
    for h in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == h))
        half = (len(members) + 1) // 2
        choose.append(members[:half])
        hold.append(members[half:])
    empty = [np.zeros(0, int)]
    return np.sort(np.concatenate(choose + empty)), np.sort(np.concatenate(hold + empty))


def calibrate_cascade(
    pool: CascadePool,
    target: float,
    bootstrap: int = BOOTSTRAP,
    seed: int = SEED,
    grid: int | None = None,
    max_configs: int = MAX_CONFIGS,
    holdout: bool = False,
    min_yield: float = 0.0,
) -> CascadeCalibration:
    """The band configuration of least cost per kept object (ties: the higher yield) among the feasible ones whose
    estimated precision reaches the target, with its precision's interval and its exact yield, shares and cost.
    grid: edges per judge (default: as many as max_configs allows). holdout=True chooses on half the audits and
    estimates on the other half (see the module docstring). min_yield: only bands that keep at least this share of
    the pool (the cheapest bands per kept object may keep fewer objects than the strong judge alone would: a
    comparison at equal precision and equal yield sets it to the strong judge's yield)."""
    n, k = pool.scores.shape
    if holdout:
        choose, hold = split_audits(pool, seed)
    else:
        choose = hold = np.arange(len(pool.audited))
    edges = grids(pool, max_configs, grid)
    lo, hi = _configs(edges)
    r = _Evaluator(pool, edges, choose).evaluate(lo, hi)
    feasible = r.unknown == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = r.wl / r.w
        cost_per_kept = (r.calls @ pool.cost) / r.kept
    trusted = feasible & (r.audited >= MIN_KEPT_AUDITED) & (r.kept > 0)
    ok = np.flatnonzero(trusted & (precision >= target) & (r.kept >= min_yield * n))
    if len(ok):
        pick = ok[np.lexsort((-r.kept[ok], cost_per_kept[ok]))[0]]  # the cheapest per kept object, then the most kept
    else:  # the best precision, then the most kept, to show how far the target is
        rest = np.flatnonzero(trusted) if trusted.any() else np.flatnonzero(feasible & (r.audited > 0))
        pick = rest[np.lexsort((-r.kept[rest], -precision[rest]))[0]] if len(rest) else -1
    nan = float("nan")
    bands = None if pick < 0 else [(float(edges[j][lo[pick, j]]), float(edges[j][hi[pick, j]])) for j in range(k)]
    keep, kept, shares, called, spent = np.zeros(n, bool), 0, [nan] * k, [nan] * k, nan
    if bands is not None:
        d = decide(pool.scores, bands)
        keep, kept, spent = d.keep, int(d.keep.sum()), float((d.calls @ pool.cost).sum())
        shares = [float(x) for x in np.bincount(d.decider, minlength=k) / n]
        called = [float(x) for x in d.calls.mean(0)]
    return CascadeCalibration(
        target=target,
        bands=bands if len(ok) else None,
        precision=precision_interval(pool, keep, hold, bootstrap, seed),
        yield_=kept / n,
        kept=kept,
        share_decided=shares,
        cost_per_object=spent / n,
        cost_per_kept=spent / kept if kept else nan,
        audited=len(pool.audited),
        tried=len(lo),
        feasible=int(feasible.sum()),
        best_bands=bands,
        chosen_precision=float(precision[pick]) if bands else nan,
        held_out=len(hold),
        names=pool.names,
        share_called=called,
    )


def precision_interval(
    pool: CascadePool, keep: np.ndarray, positions: np.ndarray, bootstrap: int = BOOTSTRAP, seed: int = SEED
) -> Interval:
    """Weighted precision of the kept audited items at the given positions, with a 95% percentile interval from a
    seeded bootstrap that resamples them within each stratum (weights stay the stratum's)."""
    idx = pool.audited[positions]
    w = stratum_weights(pool.stratum, idx)
    kw = w * keep[idx]
    kwl = kw * pool.labels[positions]
    point = kwl.sum() / kw.sum() if kw.sum() else float("nan")
    rng = np.random.default_rng(seed)
    num, den = np.zeros(bootstrap), np.zeros(bootstrap)
    strata = pool.stratum[idx]
    for h in np.unique(strata):
        members = np.flatnonzero(strata == h)
        pick = members[rng.integers(0, len(members), (bootstrap, len(members)))]
        num += kwl[pick].sum(1)
        den += kw[pick].sum(1)
    vals = num[den > 0] / den[den > 0]
    if not len(vals):
        return Interval(float(point), 0.0, 1.0)
    return Interval(float(point), float(np.quantile(vals, 0.025)), float(np.quantile(vals, 0.975)))


def describe(cal: CascadeCalibration) -> list[str]:
    """Short lines for the CLI: the bands, precision with its interval, yield, share decided, cost per kept object."""
    names = cal.names or [f"judge {j}" for j in range(len(cal.share_decided))]
    if cal.best_bands is None:
        return [f"no feasible bands: every configuration meets a judge that did not score ({cal.tried} tried)"]
    lines = [] if cal.bands else [f"no feasible bands reach precision {cal.target:.2f}; the best feasible ones:"]
    for j, (lo, hi) in enumerate(cal.best_bands):
        if j == len(cal.best_bands) - 1 or lo == hi:
            line = f"{names[j]}: keep p >= {hi:.3f}, else discard"
        else:
            line = f"{names[j]}: keep p >= {hi:.3f}, discard p < {lo:.3f}, else defer"
        lines.append(line + (" (never reached)" if cal.share_called and not cal.share_called[j] else ""))
    p = cal.precision
    held = f", from the {cal.held_out} of {cal.audited} audits held out" if cal.held_out < cal.audited else ""
    lines.append(f"precision {p.value:.3f} (95% interval {p.low:.3f}-{p.high:.3f}{held}), target {cal.target:.2f}")
    if cal.bands and p.value < cal.target:
        lines.append(f"  the choosing audits estimated {cal.chosen_precision:.3f}; the held-out ones fall short")
    lines.append(f"yield {cal.yield_:.1%} ({cal.kept} kept)")
    lines.append("decided by " + ", ".join(f"{nm} {s:.1%}" for nm, s in zip(names, cal.share_decided)))
    lines.append(f"cost ${cal.cost_per_object:.6f} per object, ${cal.cost_per_kept:.6f} per kept object")
    lines.append(f"{cal.feasible} of {cal.tried} band configurations feasible (nested in the collecting bands)")
    return lines
