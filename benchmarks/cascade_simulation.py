"""Does a cascade of Reviewer judges (cheap, then strong) pay, and is its calibrated precision honest? A synthetic
pool with known truth, for several noise levels of the cheap judge: each seeded repetition collects scores with the
default bands, draws stratified audits, calibrates the bands at the target (engine/audit/cascade.py), and measures
the chosen bands' real precision over the whole pool against the reported interval; the strong judge alone, audited
and calibrated the same way, is the baseline.

    python benchmarks/cascade_simulation.py --reps 200 --target 0.9 --objects 3000 --audits 400 --seed 0
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.audit.cascade import CascadePool, calibrate_cascade, decide, single_judge_pool  # noqa: E402

nan = float("nan")
COLLECT = [(0.02, 0.98), (0.5, 0.5)]  # review.default_band for the cheap judge; the strong one keeps at 0.5
CHEAP_SEPARATION, STRONG_SEPARATION, STRONG_NOISE = 2.0, 3.0, 1.0
COST = np.array([0.0001, 0.002])  # USD per call: the strong judge costs 20x the cheap one
NOISES = (0.5, 1.0, 2.0, 3.0, 4.0)


def judge(rng: np.random.Generator, same: np.ndarray, separation: float, noise: float) -> np.ndarray:
    """p = sigmoid(separation * (+1 same, -1 not) + noise * N(0, 1))."""
    return 1 / (1 + np.exp(-(separation * (2 * same - 1) + noise * rng.standard_normal(len(same)))))


def synthetic(seed: int, objects: int, cheap_noise: float) -> tuple[np.ndarray, np.ndarray]:
    """The truth (same object, Bernoulli(0.5)) and both judges' scores of every object (n x 2)."""
    rng = np.random.default_rng(seed)
    same = rng.random(objects) < 0.5
    cheap = judge(rng, same, CHEAP_SEPARATION, cheap_noise)
    strong = judge(rng, same, STRONG_SEPARATION, STRONG_NOISE)
    return same, np.stack([cheap, strong], 1)


def draw_audits(rng: np.random.Generator, stratum: np.ndarray, audits: int) -> np.ndarray:
    """Uniform within each stratum, proportional allocation rounded up."""
    picks = []
    for h in np.unique(stratum):
        members = np.flatnonzero(stratum == h)
        take = min(len(members), math.ceil(audits * len(members) / len(stratum)))
        picks.append(rng.choice(members, take, replace=False))
    return np.sort(np.concatenate(picks))


def collect(full: np.ndarray, bands: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Run the cascade: the scores of the judges called (NaN elsewhere) and each object's stratum, verdict x
    deciding judge."""
    d = decide(full, bands)
    return np.where(d.calls, full, np.nan), d.decider * 2 + d.keep


@dataclass
class Rep:
    reached: bool  # some bands reached the target
    inside: bool  # the real precision lies inside the reported interval
    real_precision: float  # of the chosen bands (the best feasible ones when none reached), over the whole pool
    reported: float  # the precision estimate reported
    cost_per_kept: float
    yield_: float
    share_decided: list[float]
    strong_reached: bool
    strong_inside: bool
    strong_real_precision: float
    strong_cost_per_kept: float
    strong_yield: float
    # the cascade held to the strong judge's yield as well (equal precision and equal yield)
    same_yield_reached: bool = False
    same_yield_cost_per_kept: float = float("nan")
    same_yield_inside: bool = False


def repetition(
    seed: int,
    cheap_noise: float,
    objects: int = 3000,
    audits: int = 400,
    target: float = 0.9,
    bootstrap: int = 300,
    collect_bands: list[tuple[float, float]] | None = None,
    holdout: bool = False,
) -> Rep:
    """Collect, audit, calibrate, measure: the cascade, then the strong judge alone on the same objects."""
    same, full = synthetic(seed, objects, cheap_noise)
    rng = np.random.default_rng([seed, 7])
    scores, stratum = collect(full, collect_bands or COLLECT)
    audited = draw_audits(rng, stratum, audits)
    cal = calibrate_cascade(CascadePool(scores, stratum, audited, same[audited], COST, ["cheap", "strong"]), target,
                            bootstrap=bootstrap, seed=seed, holdout=holdout)  # fmt: skip
    bands = cal.best_bands or [(0.0, 0.0), (1.0, 1.0)]
    real = float(same[decide(scores, bands).keep].mean())

    strong_stratum = (full[:, 1] >= 0.5).astype(int)  # the strong judge alone: strata are its verdicts
    strong_audited = draw_audits(rng, strong_stratum, audits)
    alone = single_judge_pool(full[:, 1], strong_stratum, strong_audited, same[strong_audited], COST[1], "strong")
    scal = calibrate_cascade(alone, target, bootstrap=bootstrap, seed=seed, holdout=holdout)
    sbands = scal.best_bands or [(1.0, 1.0)]
    sreal = float(same[decide(alone.scores, sbands).keep].mean())
    pool = CascadePool(scores, stratum, audited, same[audited], COST, ["cheap", "strong"])
    ycal = calibrate_cascade(pool, target, bootstrap=bootstrap, seed=seed, holdout=holdout, min_yield=scal.yield_)
    yreal = float(same[decide(scores, ycal.best_bands or [(0.0, 0.0), (1.0, 1.0)]).keep].mean())
    return Rep(
        cal.bands is not None,
        cal.precision.low <= real <= cal.precision.high,
        real,
        cal.precision.value,
        cal.cost_per_kept,
        cal.yield_,
        cal.share_decided,
        scal.bands is not None,
        scal.precision.low <= sreal <= scal.precision.high,
        sreal,
        scal.cost_per_kept,
        scal.yield_,
        ycal.bands is not None,
        ycal.cost_per_kept,
        ycal.precision.low <= yreal <= ycal.precision.high,
    )


def summary(reps: list[Rep], target: float) -> dict[str, float]:
    ok = [r for r in reps if r.reached] or reps  # costs of the reps that reached the target
    cascade, strong = (
        float(np.median([r.cost_per_kept for r in ok])),
        float(np.median([r.strong_cost_per_kept for r in reps])),
    )
    return {
        "reached": float(np.mean([r.reached for r in reps])),
        "coverage": float(np.mean([r.inside for r in reps])),
        "at_target": float(np.mean([r.real_precision >= target for r in reps])),
        "precision": float(np.median([r.real_precision for r in reps])),
        "cascade": cascade,
        "strong": strong,
        "ratio": cascade / strong,
        "yield": float(np.median([r.yield_ for r in ok])),
        "strong_yield": float(np.median([r.strong_yield for r in reps])),
        "cheap_share": float(np.median([r.share_decided[0] for r in ok])),
        "strong_share": float(np.median([r.share_decided[1] for r in ok])),
        "strong_coverage": float(np.mean([r.strong_inside for r in reps])),
        "strong_at_target": float(np.mean([r.strong_real_precision >= target for r in reps])),
        "same_yield_reached": float(np.mean([r.same_yield_reached for r in reps])),
        "same_yield_ratio": float(
            np.median([r.same_yield_cost_per_kept for r in reps if r.same_yield_reached] or [nan])
        )
        / strong,
        "same_yield_coverage": float(np.mean([r.same_yield_inside for r in reps if r.same_yield_reached] or [nan])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--target", type=float, default=0.9)
    ap.add_argument("--objects", type=int, default=3000)
    ap.add_argument("--audits", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=300, help="bootstrap replicates per calibration")
    ap.add_argument("--noises", type=float, nargs="+", default=list(NOISES), help="the cheap judge's noise levels")
    ap.add_argument("--collect", type=float, nargs=2, default=list(COLLECT[0]), metavar=("LO", "HI"),
                    help="the cheap judge's collecting band")  # fmt: skip
    ap.add_argument("--holdout", action="store_true", help="choose on half the audits, estimate on the other half")
    a = ap.parse_args()
    bands = [(a.collect[0], a.collect[1]), COLLECT[1]]
    print(
        f"{a.reps} reps x {a.objects} objects, {a.audits} audits, target {a.target}, bootstrap {a.bootstrap}, "
        f"collecting bands {bands}, holdout {a.holdout}; cheap judge separation {CHEAP_SEPARATION} "
        f"${COST[0]}/call, strong separation {STRONG_SEPARATION} noise {STRONG_NOISE} ${COST[1]}/call"
    )
    cols = [("reached", "reached", ".1%"), ("cover", "coverage", ".1%"), (">=tgt", "at_target", ".1%"),
            ("med prec", "precision", ".3f"), ("C $/kept", "cascade", ".6f"), ("S $/kept", "strong", ".6f"),
            ("ratio", "ratio", ".3f"), ("C yield", "yield", ".1%"), ("S yield", "strong_yield", ".1%"),
            ("cheap", "cheap_share", ".1%"), ("strong", "strong_share", ".1%"), ("S cover", "strong_coverage", ".1%"),
            ("S >=tgt", "strong_at_target", ".1%"), ("=Y reach", "same_yield_reached", ".1%"),
            ("=Y ratio", "same_yield_ratio", ".3f"), ("=Y cover", "same_yield_coverage", ".1%")]  # fmt: skip
    head = "noise " + " ".join(f"{name:>9}" for name, _, _ in cols) + "  verdict"
    print(head)
    print("-" * len(head))
    t0, fails, halves = time.perf_counter(), [], []
    for noise in a.noises:
        reps = [repetition(a.seed + i, noise, a.objects, a.audits, a.target, a.bootstrap, bands, a.holdout)
                for i in range(a.reps)]  # fmt: skip
        s = summary(reps, a.target)
        if s["reached"] < 0.5:
            verdict, fails = "target not reached with these collecting bands: does not pay", fails + [noise]
        elif s["ratio"] >= 1:
            verdict, fails = "does not pay (ratio >= 1)", fails + [noise]
        elif s["ratio"] >= 0.5:
            verdict, halves = "pays, but misses 0.5x", halves + [noise]
        else:
            verdict = "pays, under 0.5x"
        cells = " ".join(f"{s[key]:>9{spec}}" for _, key, spec in cols)
        print(f"{noise:>5.1f} {cells}  {verdict}")
    print(
        f"\n({time.perf_counter() - t0:.0f} s) reached: share of reps where some feasible bands reach the target; "
        "cover: share whose real precision (chosen bands, whole pool, true labels) lies in the reported 95% interval; "
        ">=tgt: share whose real precision reaches the target; med prec: median real precision; C: the cascade, S: "
        "the strong judge alone; $/kept: median cost per kept object; ratio: C over S; yield: median share kept; "
        "cheap, strong: median share of the pool each judge decided. C's costs, yields and shares are over the reps "
        "that reached the target. =Y: the cascade held to the strong judge's yield too (calibrate_cascade's "
        "min_yield): the share of reps it reaches, its cost per kept object over the strong judge's (median), and "
        "its interval's coverage."
    )
    print(f"does not pay at noise {fails or 'none'}; pays but misses 0.5x at noise {halves or 'none'}")


if __name__ == "__main__":
    main()
