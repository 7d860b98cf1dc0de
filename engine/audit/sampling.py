"""Human audit of the Reviewer: auditors, stratified sampling, and honest statistics.

The paper audited 100 kept and 100 discarded decisions and reported sample ratios. The kept and
discarded pools differ in size (about 40% kept), so sample ratios misstate recall and accuracy;
`audit_stats` reports both the sample figures and population estimates that weight each stratum
by its size, with 95% intervals: Wilson for proportions, a stratified bootstrap (documented seed
and replicate count) for recall, accuracy and F1.
"""

from __future__ import annotations

import hashlib
import math
import random
import secrets
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from engine.audit.names import lookup_key
from engine.audit.stats import Confusion, wilson
from engine.store import Store, audits, schema
from engine.store.current import Current

if TYPE_CHECKING:
    from engine.audit.calibrate import Calibration, Pool
    from engine.audit.cascade import CascadePool
    from engine.config import Config

BOOTSTRAP_REPLICATES = 2000
BOOTSTRAP_SEED = 12345


# --- auditors ------------------------------------------------------------------------------------


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_auditor(store: Store, name: str) -> str:
    """Create (or re-key) an auditor; returns the new token, which is stored only as a hash."""
    name = name.strip()
    if not name or len(name) > 64:
        raise ValueError("an auditor name is 1 to 64 characters")
    token = secrets.token_urlsafe(24)
    audits.put_auditor(store, name, hash_token(token))
    return token


def remove_auditor(store: Store, name: str) -> bool:
    """Remove an auditor: their sessions end at their next request, their audits stay. False if there was none."""
    return audits.delete_auditor(store, name.strip())


def check_auditor(store: Store, name: str, token: str) -> bool:
    # the name as `engine audit add-auditor` stored it (NFKC: full-width is ASCII)
    stored = audits.auditor_token_sha256(store, lookup_key(name))
    return stored is not None and secrets.compare_digest(stored, hash_token(token))


# --- sampling ------------------------------------------------------------------------------------


def _size_bucket(area_fraction: float) -> str:
    return "small" if area_fraction < 0.01 else "medium" if area_fraction < 0.1 else "large"


def _verdict_of(stratum: str) -> str:
    """'kept', 'kept@small' or 'kept@small:dog' -> 'kept'."""
    return stratum.split(":")[0].split("@")[0]


def draw_sample(
    store: Store, current: Current, kept: int = 100, discarded: int = 100, seed: int = 0, extra: str | None = None
) -> dict[str, tuple[int, int]]:
    """Draw audit items among the current reviews, stratified by the Reviewer's verdict (and optionally
    'category' or 'size').

    Each stratum's quota is split over its sub-strata in proportion to their sizes. Items already
    drawn stay; returns {stratum: (population, newly drawn)}.
    """
    rows = audits.current_review_rows(store, current)
    already = audits.audit_item_strata(store)
    pools: dict[str, list[str]] = defaultdict(list)
    for rid, keep, _, noun, frames, h, w, _, judge, _ in rows:
        key = "kept" if keep else "discarded"
        if judge not in (None, "reviewer"):  # a cascade's: each judge's decisions apart, so each one's get audited
            key += f"@{judge}"
        if extra == "category":
            key += f":{noun}"
        elif extra == "size":
            from engine.media import masks

            areas = [masks.area(v) for v in (frames or {}).values() if v]
            key += f":{_size_bucket(max(areas, default=0) / max(1, (h or 1) * (w or 1)))}"
        pools[key].append(rid)
    quota = {"kept": kept, "discarded": discarded}
    totals = {v: sum(len(ids) for k, ids in pools.items() if _verdict_of(k) == v) for v in quota}
    rng = random.Random(seed)
    new_rows: list[audits.NewAuditItem] = []
    report: dict[str, tuple[int, int]] = {}
    for key in sorted(pools):
        ids = pools[key]
        verdict = _verdict_of(key)
        share = math.ceil(quota[verdict] * len(ids) / totals[verdict]) if totals[verdict] else 0
        taken = [i for i in ids if already.get(i) == key]  # near-threshold draws are not this stratum's uniform draw
        candidates = [i for i in ids if i not in already]
        want = max(0, min(share, len(ids)) - len(taken))
        picked = rng.sample(candidates, min(want, len(candidates)))
        new_rows += [audits.NewAuditItem(i, key, len(ids), seed) for i in picked]
        report[key] = (len(ids), len(picked))
    # every item of a stratum carries the stratum's current population
    audits.add_audit_items(store, new_rows, {key: population for key, (population, _) in report.items()})
    return report


# --- statistics ----------------------------------------------------------------------------------


@dataclass
class Estimate:
    value: float
    low: float
    high: float
    method: str


@dataclass
class AuditStats:
    sample: Confusion
    kept_population: int
    discarded_population: int
    precision: Estimate
    sample_accuracy: Estimate
    population_recall: Estimate | None
    population_accuracy: Estimate | None
    population_f1: Estimate | None
    more_for_precision_05: int
    rule: str  # how an item's label was chosen among its auditors' (label_rule)
    items: int  # audited items: what the sample, the intervals and the estimates count
    decisions: int  # audits: one per (item, auditor)
    multi: int  # items with more than one label
    kappas: list[PairKappa] = field(default_factory=list)
    per_auditor: dict[str, Confusion] = field(default_factory=dict)  # each auditor's own decisions, on their items


KAPPA_MIN_ITEMS = 20  # below this many shared items a kappa says little: shown as "too few items"
RULES = ("majority", "first", "adjudicator:<name>")


@dataclass
class PairKappa:
    a: str
    b: str
    n: int  # items both labelled
    kappa: float | None  # None below KAPPA_MIN_ITEMS


Labels = list[tuple[datetime, str, bool]]  # an item's (decided at, auditor, same object), one per auditor


def label_rule(rule: str) -> Callable[[Labels], bool]:
    """An item's label from its [(created_at, auditor, same_object)]: majority (a tie goes to the first auditor),
    first (the earliest decision), or adjudicator:<name> (that auditor's label where they gave one, else majority)."""

    def first(labels: Labels) -> bool:
        return min(labels, key=lambda x: (x[0], x[1]))[2]

    def majority(labels: Labels) -> bool:
        yes = sum(h for _, _, h in labels)
        return first(labels) if 2 * yes == len(labels) else 2 * yes > len(labels)

    if rule == "majority":
        return majority
    if rule == "first":
        return first
    if rule.startswith("adjudicator:") and rule.split(":", 1)[1]:
        judge = rule.split(":", 1)[1]

        def adjudicated(labels: Labels) -> bool:
            own = [h for _, who, h in labels if who == judge]
            return own[0] if own else majority(labels)

        return adjudicated
    raise ValueError(f"unknown rule {rule!r}: choose {', '.join(RULES)}")


def cohen_kappa(pairs: list[tuple[bool, bool]]) -> float | None:
    """Agreement of two raters on the same items, beyond chance; None without items."""
    n = len(pairs)
    if n == 0:
        return None
    agree = sum(a == b for a, b in pairs) / n
    pa, pb = sum(a for a, _ in pairs) / n, sum(b for _, b in pairs) / n
    chance = pa * pb + (1 - pa) * (1 - pb)
    return 1.0 if chance == 1 else (agree - chance) / (1 - chance)


def population_metrics(p_kept: float, p_disc: float, n_kept: int, n_disc: int) -> tuple[float, float, float]:
    """Recall, accuracy, F1 of the Reviewer over the whole pool, from the share correct in each stratum."""
    tp = n_kept * p_kept  # kept and correct
    fn, tn = n_disc * p_disc, n_disc * (1 - p_disc)  # discarded and correct / wrong
    recall = tp / (tp + fn) if tp + fn else 0.0
    accuracy = (tp + tn) / (n_kept + n_disc) if n_kept + n_disc else 0.0
    precision = p_kept
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return recall, accuracy, f1


def _bootstrap(kept: list[bool], disc: list[bool], n_kept: int, n_disc: int) -> list[tuple[float, float, float]]:
    """Resample each stratum with replacement (stratified bootstrap), seeded for reproducible intervals."""
    rng = random.Random(BOOTSTRAP_SEED)
    out = []
    for _ in range(BOOTSTRAP_REPLICATES):
        k = [kept[rng.randrange(len(kept))] for _ in kept]
        d = [disc[rng.randrange(len(disc))] for _ in disc]
        out.append(population_metrics(sum(k) / len(k), sum(d) / len(d), n_kept, n_disc))
    return out


def _interval(values: list[float], point: float, method: str) -> Estimate:
    values = sorted(values)
    return Estimate(point, values[int(0.025 * (len(values) - 1))], values[int(0.975 * (len(values) - 1))], method)


def verdict_populations(strata: audits.StrataDecisions) -> tuple[int, int]:
    """(kept, discarded): the reviews each verdict stratum was drawn from, as recorded with the draws (else the
    Reviewer's verdicts counted now)."""
    pops, counts = strata.populations, strata.verdict_counts
    n_kept = sum(v for k, v in pops.items() if k.startswith("kept")) or counts.get(True, 0)
    n_disc = sum(v for k, v in pops.items() if k.startswith("discarded")) or counts.get(False, 0)
    return n_kept, n_disc


def audit_stats(store: Store, rule: str = "majority") -> AuditStats:
    """Statistics over audited items: one label per item (chosen by `rule` where several auditors labelled it), so a
    second opinion changes a label, never the count; kappa per pair of auditors over the items both labelled."""
    choose = label_rule(rule)
    # items of the verdict strata only: near-threshold draws (calibration) are not uniform within a verdict
    strata = audits.verdict_strata_decisions(store)
    rows = strata.decisions
    n_kept, n_disc = verdict_populations(strata)
    by_item: dict[str, Labels] = defaultdict(list)
    keep_of: dict[str, bool] = {}
    for rid, keep, who, human, at in rows:
        by_item[rid].append((at, who, bool(human)))
        keep_of[rid] = bool(keep)
    labelled = [(keep_of[rid], choose(labels)) for rid, labels in sorted(by_item.items())]
    sample = _confusion(labelled)
    per_auditor = {
        name: _confusion([(k, h) for _, k, who, h, _ in rows if who == name]) for name in {x[2] for x in rows}
    }
    kept = [h for k, h in labelled if k]
    disc = [h for k, h in labelled if not k]
    p_lo, p_hi = wilson(sample.tp, sample.tp + sample.fp)
    acc_lo, acc_hi = wilson(sample.tp + sample.tn, sample.n)
    precision = Estimate(sample.precision, p_lo, p_hi, "Wilson")
    recall = accuracy = f1 = None
    if kept and disc:
        point = population_metrics(sum(kept) / len(kept), sum(disc) / len(disc), n_kept, n_disc)
        boot = _bootstrap(kept, disc, n_kept, n_disc)
        recall, accuracy, f1 = (
            _interval([b[i] for b in boot], point[i], f"stratified bootstrap x{BOOTSTRAP_REPLICATES}")
            for i in range(3)
        )
    names = sorted(per_auditor)
    kappas: list[PairKappa] = []
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            both = [
                (lab[x], lab[y])
                for lab in ({who: h for _, who, h in v} for v in by_item.values())
                if x in lab and y in lab
            ]
            if both:
                kappas.append(PairKappa(x, y, len(both), cohen_kappa(both) if len(both) >= KAPPA_MIN_ITEMS else None))
    return AuditStats(
        sample,
        n_kept,
        n_disc,
        precision,
        Estimate(sample.accuracy, acc_lo, acc_hi, "Wilson"),
        recall,
        accuracy,
        f1,
        audits_for_half_width(sample.precision if kept else 0.5, len(kept)),
        rule,
        len(by_item),
        len(rows),
        sum(len(v) > 1 for v in by_item.values()),
        kappas,
        per_auditor,
    )


def audits_for_half_width(p: float, have: int, half_width: float = 0.05) -> int:
    """Further kept-stratum audits until the Wilson interval of precision is within ±half_width, at the current p."""
    n = max(1, have)
    while True:
        lo, hi = wilson(round(p * n), n)
        if (hi - lo) / 2 <= half_width:
            return max(0, n - have)
        n += 1


def _confusion(pairs: list[tuple[bool, bool]]) -> Confusion:
    return Confusion(
        tp=sum(k and h for k, h in pairs),
        fp=sum(k and not h for k, h in pairs),
        fn=sum(not k and h for k, h in pairs),
        tn=sum(not k and not h for k, h in pairs),
    )


# --- calibration ---------------------------------------------------------------------------------


def calibration_pool(
    store: Store, current: Current, rule: str = "majority", score: str = "auto"
) -> tuple[Pool, list[str], str]:
    """Every current review's score and verdict, and each audited item's label by `rule`
    (engine/audit/calibrate.py); with the review ids in pool order and the score used (tokens or verbal)."""
    from engine.audit.calibrate import pool_from, score_source

    choose = label_rule(rule)
    inputs = audits.calibration_inputs(store, current)
    labels: dict[str, Labels] = defaultdict(list)
    for rid, who, human, at in inputs.labels:
        labels[rid].append((at, who, human))
    source = score_source(inputs.reviews, score)
    pool, ids = pool_from(inputs.reviews, {rid: choose(v) for rid, v in labels.items()}, source)
    return pool, ids, source


def cascade_pool(store: Store, current: Current, cfg: Config, rule: str = "majority") -> CascadePool:
    """The current reviews as a cascade calibration sees them (engine/audit/cascade.py): each judge's score (NaN where
    it was not asked), each review's audit stratum (verdict x deciding judge, as `draw_sample` draws), the labels of
    items drawn from those strata (near-threshold draws are not uniform within them: left out), and each judge's
    expected cost per call: its requests' mean cost in the store, else its prices at the plan's token counts."""
    import numpy as np

    from engine.audit.cascade import CascadePool
    from engine.store.requests import request_totals

    names = [j.name for j in cfg.review.cascade]
    if not names:
        raise ValueError(
            "no cascade is configured: [[review.cascade]] lists the judges (engine init writes an example)"
        )
    choose = label_rule(rule)
    inputs = audits.calibration_inputs(store, current)
    column = {name: j for j, name in enumerate(names)}
    scores = np.full((len(inputs.reviews), len(names)), np.nan)
    strata: dict[tuple[bool, str | None], int] = {}
    stratum = np.zeros(len(inputs.reviews), int)
    index = {}
    for i, r in enumerate(inputs.reviews):
        index[r.review_id] = i
        for entry in r.judges or ():
            if entry.get("judge") in column:
                scores[i, column[entry["judge"]]] = entry["p_same"]
        stratum[i] = strata.setdefault((r.verdict, r.judge), len(strata))
    drawn = {rid for rid, st in audits.audit_item_strata(store).items() if not st.startswith("near:")}
    labels: dict[str, Labels] = defaultdict(list)
    for rid, who, human, at in inputs.labels:
        if rid in drawn and rid in index:
            labels[rid].append((at, who, human))
    audited = sorted(labels, key=index.__getitem__)
    roles = {t.role: t for t in request_totals(store)}
    cost = []
    for j in cfg.review.cascade:
        t = roles.get(f"reviewer.judge.{j.name}") or roles.get(f"reviewer.direct.{j.name}")
        if t is not None and t.ok and t.cost_usd:
            cost.append(t.cost_usd / t.ok)
        else:  # no priced request yet: the judge's prices at the plan's tokens per judging call
            cost.append((500 * j.price_in_per_mtok + 60 * j.price_out_per_mtok) / 1e6)
    return CascadePool(
        scores,
        stratum,
        np.array([index[r] for r in audited], int),
        np.array([choose(labels[r]) for r in audited], bool),
        np.array(cost, float),
        names,
    )


def score_sources(store: Store, current: Current) -> list[str]:
    """The scores every current review has: verbal always, tokens too where each one's judge gave a token
    probability (the dashboard draws a curve for each)."""
    rows = audits.calibration_inputs(store, current).reviews
    return ["verbal"] + (["tokens"] if rows and all(r.token_p_same is not None for r in rows) else [])


def save_calibration(store: Store, cal: Calibration, rule: str) -> str:
    """Record a calibration with its estimates, for `engine export --calibrated` and the dashboard; returns its id."""
    est = {
        "precision": vars(cal.precision),
        "recall": vars(cal.recall),
        "yield": cal.yield_,
        "admitted": cal.admitted,
        "readmitted": cal.readmitted,
        "audited": cal.audited,
        "kept_by_reviewer": cal.kept_by_reviewer,
        "score": cal.score,
    }
    return audits.add_calibration(store, cal.target, cal.threshold, rule, est)


def latest_calibration(store: Store) -> schema.Calibration | None:
    """The newest calibration, or None."""
    return audits.latest_calibration(store)


def draw_near_threshold(store: Store, current: Current, n: int, seed: int = 0) -> dict[str, tuple[int, int]]:
    """n more items where the decision is most uncertain: uniformly from the whole cells (verdict x score band) around
    the newest calibration's threshold, so the calibration's post-stratified weights stay unbiased. Each item records
    its cell as stratum 'near:<cell>' with the cell's population: its weight is that population over the cell's
    audited items (engine/audit/calibrate.py)."""
    cal = latest_calibration(store)
    if cal is None or cal.threshold is None:
        raise ValueError("no calibration with a threshold yet: run `engine audit calibrate` first")
    pool, ids, _ = calibration_pool(store, current, score=cal.estimates.get("score", "verbal"))
    cell = pool.cells()
    already = set(audits.audit_item_strata(store))
    # the cells whose score range holds the threshold, or is next to it, for each verdict
    near_cells = set()
    for verdict in (False, True):
        mine = sorted({int(c) for c in cell[pool.keep == verdict]}, key=lambda c: pool.scores[cell == c].min())
        for k, c in enumerate(mine):
            lo, hi = pool.scores[cell == c].min(), pool.scores[cell == c].max()
            if lo <= cal.threshold <= hi or (
                k + 1 < len(mine) and hi < cal.threshold <= pool.scores[cell == mine[k + 1]].min()
            ):
                near_cells.update(mine[max(0, k - 1) : k + 2])
    candidates = [i for i, c in enumerate(cell) if int(c) in near_cells and ids[i] not in already]
    rng = random.Random(seed)
    picked = rng.sample(candidates, min(n, len(candidates)))
    population = {c: int((cell == c).sum()) for c in near_cells}
    rows = [audits.NewAuditItem(ids[i], f"near:{int(cell[i])}", population[int(cell[i])], seed) for i in picked]
    audits.add_audit_items(store, rows)
    report: dict[str, tuple[int, int]] = {}
    for row in rows:
        pop, k = report.get(row.stratum, (row.population, 0))
        report[row.stratum] = (pop, k + 1)
    return report
