"""The Reviewer's cascade of judges (engine/audit/cascade.py): decisions on hand-made scores, feasibility, the
one-judge case, and the simulation of benchmarks/cascade_simulation.py with known truth, where the calibrated
bands' real precision over the whole pool must fall inside the reported interval in at least 90% of 200 seeded
repetitions, and the cascade must cost less per kept object than the strong judge alone."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.audit.cascade import (
    MAX_CONFIGS,
    CascadePool,
    _configs,
    _Evaluator,
    calibrate_cascade,
    decide,
    describe,
    grids,
    single_judge_pool,
    stratum_weights,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
import cascade_simulation as sim  # noqa: E402

NAN = np.nan
COLLECT = [(0.1, 0.9), (0.5, 0.5)]


def test_decide_keeps_discards_and_defers_to_the_last_judge():
    scores = np.array([[0.95, NAN], [0.05, NAN], [0.5, 0.8], [0.5, 0.2]])
    d = decide(scores, COLLECT)
    assert d.keep.tolist() == [True, False, True, False]
    assert d.decider.tolist() == [0, 0, 1, 1]
    assert d.calls.tolist() == [[True, False], [True, False], [True, True], [True, True]]
    assert d.known.all()


def test_decide_band_edges_keep_at_hi_and_defer_at_lo():
    d = decide(np.array([[0.9, NAN], [0.1, 0.7], [0.0999, NAN]]), COLLECT)
    assert d.keep.tolist() == [True, True, False] and d.decider.tolist() == [0, 1, 0]


def test_decide_the_last_judge_keeps_at_its_threshold_and_ignores_its_lo():
    scores = np.array([[0.5, 0.6], [0.5, 0.59], [0.5, 1.0]])
    d = decide(scores, [(0.1, 0.9), (0.99, 0.6)])
    assert d.keep.tolist() == [True, False, True] and (d.decider == 1).all()
    alone = decide(np.array([[0.3], [0.7]]), [(0.5, 0.5)])  # one judge: it decides everything
    assert alone.keep.tolist() == [False, True] and alone.decider.tolist() == [0, 0]


def test_decide_a_path_through_an_unscored_judge_is_not_known():
    scores = np.array([[0.5, NAN], [NAN, 0.9], [0.95, NAN], [0.5, 0.9]])
    d = decide(scores, COLLECT)
    assert d.known.tolist() == [False, False, True, True]
    assert d.keep.tolist() == [False, False, True, True]
    assert d.decider.tolist() == [1, 0, 0, 1]
    assert d.calls[1].tolist() == [True, False]  # stopped at the unscored cheap judge
    assert decide(scores, [(0.4, 0.4), (0.5, 0.5)]).known.tolist() == [True, False, True, True]


def test_decide_refuses_a_band_with_lo_above_hi_and_a_wrong_number_of_bands():
    with pytest.raises(ValueError):
        decide(np.array([[0.5, 0.5]]), [(0.8, 0.2), (0.5, 0.5)])
    with pytest.raises(ValueError):
        decide(np.array([[0.5, 0.5]]), [(0.5, 0.5)])


def test_stratum_weights_are_population_over_audited():
    stratum = np.array([0] * 6 + [1] * 4 + [2] * 2)
    audited = np.array([0, 1, 6, 7, 8, 9])  # stratum 2 has no audits: it contributes no audited items
    assert stratum_weights(stratum, audited).tolist() == [3.0, 3.0, 1.0, 1.0, 1.0, 1.0]


def collected_pool(seed: int = 0, objects: int = 3000, audits: int = 400, noise: float = 2.0):
    same, full = sim.synthetic(seed, objects, noise)
    scores, stratum = sim.collect(full, COLLECT)
    audited = sim.draw_audits(np.random.default_rng(seed), stratum, audits)
    return CascadePool(scores, stratum, audited, same[audited], sim.COST, ["cheap", "strong"]), same


def three_judge_pool(seed: int = 0, objects: int = 800) -> CascadePool:
    rng = np.random.default_rng(seed)
    same = rng.random(objects) < 0.5
    full = np.stack([sim.judge(rng, same, a, noise) for a, noise in ((1.5, 2.0), (2.0, 1.5), (3.0, 1.0))], 1)
    d = decide(full, [(0.2, 0.8), (0.3, 0.7), (0.5, 0.5)])
    scores, stratum = np.where(d.calls, full, NAN), d.decider * 2 + d.keep
    audited = sim.draw_audits(rng, stratum, 150)
    return CascadePool(scores, stratum, audited, same[audited], np.array([1e-4, 5e-4, 2e-3]))


@pytest.mark.parametrize("judges", [2, 3])
def test_the_prefix_sum_evaluation_matches_decide_on_every_sampled_configuration(judges):
    pool = collected_pool(3, objects=800, audits=120)[0] if judges == 2 else three_judge_pool()
    edges = grids(pool, max_configs=3000)
    lo, hi = _configs(edges)
    r = _Evaluator(pool, edges, np.arange(len(pool.audited))).evaluate(lo, hi)
    w = pool.weights()
    assert (r.unknown == 0).any() and (r.unknown > 0).any()
    for i in np.random.default_rng(0).choice(len(lo), 300, replace=False):
        d = decide(pool.scores, [(edges[j][lo[i, j]], edges[j][hi[i, j]]) for j in range(judges)])
        assert r.unknown[i] == (~d.known).sum()
        assert r.kept[i] == (d.keep & d.known).sum()
        assert (r.calls[i] == d.calls.sum(0)).all()
        ka = d.keep[pool.audited]
        assert r.audited[i] == ka.sum()
        assert np.isclose(r.w[i], (w * ka).sum()) and np.isclose(r.wl[i], (w * ka * pool.labels).sum())


def test_the_chosen_bands_are_the_cheapest_that_reach_the_target_and_their_numbers_are_exact():
    pool, same = collected_pool(1, noise=3.0)
    cal = calibrate_cascade(pool, 0.9, bootstrap=200)
    assert cal.bands is not None and cal.bands == cal.best_bands
    d = decide(pool.scores, cal.bands)
    assert d.known.all()
    assert cal.kept == d.keep.sum() and cal.yield_ == d.keep.mean()
    assert cal.share_decided == [float((d.decider == j).mean()) for j in range(2)]
    assert cal.share_called == [1.0, float(d.calls[:, 1].mean())] and 0 < cal.share_called[1] < 1
    spent = (d.calls @ pool.cost).sum()
    assert np.isclose(cal.cost_per_object, spent / 3000) and np.isclose(cal.cost_per_kept, spent / cal.kept)
    w, ka = pool.weights(), d.keep[pool.audited]
    assert np.isclose(cal.precision.value, (w * ka * pool.labels).sum() / (w * ka).sum())
    assert cal.target <= cal.precision.value and cal.precision.low <= cal.precision.value <= cal.precision.high
    assert cal.bands[0][0] >= 0.1 and cal.bands[0][1] <= 0.9  # nested in the collecting band
    assert cal.tried <= MAX_CONFIGS and 0 < cal.feasible < cal.tried
    # no feasible configuration that reaches the target costs less per kept object
    edges = grids(pool)
    lo, hi = _configs(edges)
    r = _Evaluator(pool, edges, np.arange(len(pool.audited))).evaluate(lo, hi)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = (r.unknown == 0) & (r.audited >= 10) & (r.wl / r.w >= 0.9)
        assert ((r.calls[ok] @ pool.cost) / r.kept[ok] >= cal.cost_per_kept - 1e-12).all()


def trap_pool() -> tuple[CascadePool, np.ndarray]:
    """Collected with the cheap judge's band (0.4, 0.6); its scores in [0.6, 0.8) are wrong, which the strong judge
    knows but never scored. Any feasible bands keep [0.6, 1] by the cheap judge: precision at most 0.6."""
    cheap = np.linspace(0, 1, 2000, endpoint=False)
    same = (cheap >= 0.5) & ~((cheap >= 0.6) & (cheap < 0.8))
    full = np.stack([cheap, np.where(same, 0.95, 0.05)], 1)
    d = decide(full, [(0.4, 0.6), (0.5, 0.5)])
    scores, stratum = np.where(d.calls, full, NAN), d.decider * 2 + d.keep
    audited = np.arange(0, 2000, 5)
    return CascadePool(scores, stratum, audited, same[audited], sim.COST), same


def test_infeasible_bands_are_never_chosen():
    pool, same = trap_pool()
    for target in (0.5, 0.55, 0.6):
        cal = calibrate_cascade(pool, target, bootstrap=100)
        assert cal.bands is not None and decide(pool.scores, cal.bands).known.all()
        assert 0.4 <= cal.bands[0][0] <= cal.bands[0][1] <= 0.6
        assert cal.precision.value >= target


def test_no_configuration_reaching_the_target_gives_no_bands_and_the_best_feasible_numbers():
    pool, same = trap_pool()
    cal = calibrate_cascade(pool, 0.7, bootstrap=100)  # reachable only by widening the band to 0.8: infeasible
    assert cal.bands is None and cal.best_bands is not None
    assert decide(pool.scores, cal.best_bands).known.all()
    assert 0.55 < cal.precision.value < 0.7
    lines = describe(cal)
    assert lines[0].startswith("no feasible bands reach precision 0.70")
    impossible = calibrate_cascade(collected_pool(2)[0], 1.01, bootstrap=50)
    assert impossible.bands is None and impossible.best_bands is not None


def test_a_pool_with_no_feasible_configuration_reports_nothing():
    pool = CascadePool(np.array([[NAN, 0.9]] * 30), np.zeros(30, int), np.arange(30), np.ones(30, bool), sim.COST)
    cal = calibrate_cascade(pool, 0.9, bootstrap=20)
    assert cal.bands is None and cal.best_bands is None and cal.feasible == 0 and cal.kept == 0
    assert describe(cal)[0].startswith("no feasible bands")


def test_a_one_judge_cascade_searches_its_threshold_only():
    same, full = sim.synthetic(4, 3000, 1.0)
    stratum = (full[:, 1] >= 0.5).astype(int)
    audited = sim.draw_audits(np.random.default_rng(4), stratum, 400)
    pool = single_judge_pool(full[:, 1], stratum, audited, same[audited], 0.002, "strong")
    cal = calibrate_cascade(pool, 0.95, bootstrap=200)
    assert cal.bands is not None and len(cal.bands) == 1 and cal.bands[0][0] == cal.bands[0][1]
    t = cal.bands[0][1]
    assert cal.yield_ == (full[:, 1] >= t).mean() and cal.share_decided == [1.0]
    assert np.isclose(cal.cost_per_kept, 0.002 * 3000 / cal.kept)
    w, sa, lab = pool.weights(), full[audited, 1], same[audited]
    for lower in np.unique(full[:, 1][full[:, 1] < t]):  # every lower threshold misses the target (or is untrusted)
        above = sa >= lower
        assert above.sum() < 10 or (w * above * lab).sum() / (w * above).sum() < 0.95


def test_the_search_stays_bounded_and_fast():
    pool, _ = collected_pool(5, objects=5000, audits=400)
    calibrate_cascade(pool, 0.9, bootstrap=10)  # warm up
    start = time.perf_counter()
    cal = calibrate_cascade(pool, 0.9, bootstrap=1000)
    assert time.perf_counter() - start < 1.0
    assert 10000 < cal.tried <= MAX_CONFIGS
    three = calibrate_cascade(three_judge_pool(objects=3000), 0.9, bootstrap=10)
    assert 5000 < three.tried <= MAX_CONFIGS and three.bands is not None and len(three.bands) == 3
    assert describe(three)[2].endswith("else discard (never reached)")  # the cheap judge decides everything


def test_describe_gives_the_bands_precision_yield_shares_and_cost():
    pool, _ = collected_pool(6, noise=3.0)
    lines = describe(calibrate_cascade(pool, 0.9, bootstrap=100))
    text = "\n".join(lines)
    assert lines[0].startswith("cheap: keep p >= ") and "else defer" in lines[0]
    assert lines[1].startswith("strong: keep p >= ") and lines[1].endswith("else discard")
    for part in ("precision 0.9", "95% interval", "target 0.90", "yield ", "decided by cheap ", "per kept object"):
        assert part in text


def simulate(noise: float, reps: int = 200) -> list[sim.Rep]:
    """Collect, audit (400, stratified), calibrate at 0.9 (300 bootstrap replicates) and measure, 200 seeds."""
    return [sim.repetition(seed, noise, objects=3000, audits=400, target=0.9, bootstrap=300) for seed in range(reps)]


def test_simulated_cascade_interval_covers_the_real_precision_and_beats_the_strong_judge_alone():
    reps = simulate(1.0)  # a benign cheap judge
    coverage = np.mean([r.inside for r in reps])
    cascade, strong = np.mean([r.cost_per_kept for r in reps]), np.mean([r.strong_cost_per_kept for r in reps])
    print(f"\nnoise 1: coverage {coverage:.3f}, strong alone {np.mean([r.strong_inside for r in reps]):.3f}, "
          f"cost per kept {cascade:.6f} vs {strong:.6f}")  # fmt: skip
    assert coverage >= 0.90
    assert np.mean([r.strong_inside for r in reps]) >= 0.90
    assert np.mean([r.reached for r in reps]) >= 0.95
    assert cascade < strong
    # held to the strong judge's yield as well (equal precision and yield), it still costs under half as much
    same_yield = [r.same_yield_cost_per_kept for r in reps if r.same_yield_reached]
    assert len(same_yield) >= 0.5 * len(reps) and np.median(same_yield) < 0.5 * np.median(
        [r.strong_cost_per_kept for r in reps]
    )


def test_simulated_cascade_interval_covers_when_the_strong_judge_shares_the_work():
    reps = simulate(4.0)  # a noisy cheap judge: the strong one decides part of the pool, the target is at the edge
    coverage = np.mean([r.inside for r in reps])
    strong_share = np.median([r.share_decided[1] for r in reps if r.reached])
    print(f"\nnoise 4: coverage {coverage:.3f}, reached {np.mean([r.reached for r in reps]):.3f}, "
          f"strong decides {strong_share:.1%}")  # fmt: skip
    assert coverage >= 0.90
    assert strong_share > 0.05
