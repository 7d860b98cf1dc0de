"""Audit sampling and statistics: the paper's numbers, population estimates, intervals, kappa."""

from datetime import UTC

import pytest
from review_data import CURRENT, make_reviews
from typer.testing import CliRunner

from engine.audit.sampling import (
    add_auditor,
    audit_stats,
    check_auditor,
    cohen_kappa,
    draw_sample,
    hash_token,
    population_metrics,
)
from engine.audit.stats import Confusion, wilson
from engine.cli import app
from engine.store import schema
from engine.store.ids import stable_id


def test_the_papers_table_a5():
    c = Confusion(tp=88, fp=12, fn=36, tn=64)
    assert (round(c.accuracy, 2), round(c.precision, 2), round(c.recall, 2), round(c.f1, 2)) == (
        0.76,
        0.88,
        0.71,
        0.79,
    )


def test_wilson_matches_the_closed_form():
    lo, hi = wilson(88, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.8019, 0.9300)  # by hand: centre 0.8659, half-width 0.0641
    assert wilson(0, 0) == (0.0, 1.0) and wilson(10, 10)[1] == pytest.approx(1.0)


def test_population_estimates_weight_the_strata():
    # 88% of kept and 36% of discarded are truly correct; the pool keeps 40%
    recall, accuracy, f1 = population_metrics(0.88, 0.36, 400, 600)
    assert recall == pytest.approx(352 / (352 + 216))
    assert accuracy == pytest.approx((352 + 384) / 1000)
    assert f1 == pytest.approx(2 * 0.88 * recall / (0.88 + recall))
    assert recall != pytest.approx(0.71, abs=0.02)  # the sample ratio misstates it


def test_audits_needed_for_a_precision_interval_of_005():
    from engine.audit.sampling import audits_for_half_width

    assert audits_for_half_width(0.88, 100) > 0  # 100 kept audits give about ±0.064
    assert 0 < audits_for_half_width(1.0, 4) < 100  # p = 1 still needs audits (the normal approximation says 0)
    n = 100 + audits_for_half_width(0.88, 100)
    lo, hi = wilson(round(0.88 * n), n)
    assert (
        (hi - lo) / 2 <= 0.05 < (lambda m: (wilson(round(0.88 * m), m)[1] - wilson(round(0.88 * m), m)[0]) / 2)(n - 1)
    )


def test_kappa():
    assert cohen_kappa([(True, True), (False, False)] * 5) == 1.0
    assert cohen_kappa([(True, False), (False, True)] * 5) == -1.0
    assert cohen_kappa([]) is None


def test_auditor_tokens_are_stored_hashed(sqlite_store):
    token = add_auditor(sqlite_store, "ann")
    with sqlite_store.session() as s:
        row = s.get(schema.Auditor, "ann")
    assert row.token_sha256 == hash_token(token) and token not in row.token_sha256
    assert check_auditor(sqlite_store, "ann", token) and not check_auditor(sqlite_store, "ann", "wrong")
    assert not check_auditor(sqlite_store, "bob", token)


def test_stratified_sample_records_populations_and_is_idempotent(sqlite_store, tmp_path):
    make_reviews(sqlite_store, tmp_path, kept=8, discarded=12)
    report = draw_sample(sqlite_store, CURRENT, kept=5, discarded=5, seed=1)
    assert report == {"kept": (8, 5), "discarded": (12, 5)}
    with sqlite_store.session() as s:
        items = s.query(schema.AuditItem).all()
    assert len(items) == 10 and {i.population for i in items if i.stratum == "kept"} == {8}
    assert draw_sample(sqlite_store, CURRENT, kept=5, discarded=5, seed=1) == {"kept": (8, 0), "discarded": (12, 0)}
    assert draw_sample(sqlite_store, CURRENT, kept=6, discarded=5, seed=2)["kept"] == (8, 1)  # tops up


def test_stats_from_audits(sqlite_store, tmp_path):
    reviews = make_reviews(sqlite_store, tmp_path, kept=6, discarded=6)
    draw_sample(sqlite_store, CURRENT, kept=6, discarded=6)
    truth = [True, True, True, True, True, False] + [True, False, False, False, False, False]
    with sqlite_store.session() as s:
        for rid, correct in zip(reviews, truth):
            s.add(schema.Audit(id=stable_id("a", rid, "ann"), review_id=rid, auditor="ann", human_verdict=correct))
        for rid, correct in zip(reviews[:4], [True, True, False, True]):  # a second auditor on four items
            s.add(schema.Audit(id=stable_id("a", rid, "bob"), review_id=rid, auditor="bob", human_verdict=correct))
    st = audit_stats(sqlite_store)
    ann = st.per_auditor["ann"]
    assert (ann.tp, ann.fp, ann.fn, ann.tn) == (5, 1, 1, 5)
    # a second auditor's labels change no count: 12 items, 16 decisions; kappa over 4 shared items is too few
    assert st.sample.n == 12 and st.items == 12 and st.decisions == 16 and st.multi == 4
    assert [(k.a, k.b, k.n, k.kappa) for k in st.kappas] == [("ann", "bob", 4, None)]
    assert st.precision.low < st.precision.value < st.precision.high and st.precision.method == "Wilson"
    assert st.population_recall.low <= st.population_recall.value <= st.population_recall.high
    assert "bootstrap" in st.population_f1.method
    assert st.more_for_precision_05 > 0


def test_cli_audit_commands(sqlite_store, tmp_path):
    make_reviews(sqlite_store, tmp_path, kept=4, discarded=4)
    run = CliRunner()
    url = ["--database-url", sqlite_store.url]
    r = run.invoke(app, ["audit", "add-auditor", "ann", *url])
    assert r.exit_code == 0 and "token" in r.output
    r = run.invoke(
        app, ["audit", "sample", "--kept", "2", "--discarded", "2", "--seed", "3", *url], env={"COLUMNS": "120"}
    )
    assert r.exit_code == 0 and "kept" in r.output and "discarded" in r.output
    r = run.invoke(app, ["audit", "stats", *url], env={"COLUMNS": "160"})
    assert r.exit_code == 0 and "TP 0" in r.output and "audited items: 0 (0 decisions" in r.output
    r = run.invoke(app, ["audit", "stats", "--rule", "loudest", *url], env={"COLUMNS": "160"})
    assert r.exit_code == 2 and "--rule" in r.output


def test_one_label_per_item_by_the_chosen_rule_and_kappa_per_pair(sqlite_store, tmp_path):
    """A second auditor on audited items adds no item (the interval does not narrow); the rule picks the label;
    kappa is per pair of auditors over the items both labelled, with n, and 'too few' under 20."""
    from datetime import datetime, timedelta

    reviews = make_reviews(sqlite_store, tmp_path, kept=24, discarded=0)
    draw_sample(sqlite_store, CURRENT, kept=24, discarded=0)
    t0 = datetime(2026, 11, 30, tzinfo=UTC)
    with sqlite_store.session() as s:
        for rid in reviews:
            s.add(
                schema.Audit(
                    id=stable_id("a", rid, "ann"), review_id=rid, auditor="ann", human_verdict=True, created_at=t0
                )
            )
    before = audit_stats(sqlite_store)
    with sqlite_store.session() as s:
        for i, rid in enumerate(reviews):  # bob disagrees on the first 6 items, later
            s.add(
                schema.Audit(
                    id=stable_id("a", rid, "bob"),
                    review_id=rid,
                    auditor="bob",
                    human_verdict=i >= 6,
                    created_at=t0 + timedelta(hours=1),
                )
            )
        for rid in reviews[:3]:  # cy sides with bob on three of them
            s.add(
                schema.Audit(
                    id=stable_id("a", rid, "cy"),
                    review_id=rid,
                    auditor="cy",
                    human_verdict=False,
                    created_at=t0 + timedelta(hours=2),
                )
            )
    first, majority = audit_stats(sqlite_store, "first"), audit_stats(sqlite_store, "majority")
    judge = audit_stats(sqlite_store, "adjudicator:bob")
    assert first.items == majority.items == before.items == 24  # items, not decisions
    assert (first.sample.tp, first.sample.fp) == (24, 0)  # ann's labels (first)
    assert (majority.sample.tp, majority.sample.fp) == (21, 3)  # 2 of 3 say different on three items; ties: first
    assert (judge.sample.tp, judge.sample.fp) == (18, 6)
    assert (first.precision.low, first.precision.high) == (before.precision.low, before.precision.high)
    kappas = {(k.a, k.b): (k.n, k.kappa) for k in majority.kappas}
    assert kappas[("ann", "bob")][0] == 24 and kappas[("ann", "bob")][1] is not None
    assert kappas[("ann", "cy")] == (3, None) and kappas[("bob", "cy")] == (3, None)  # too few items
    with pytest.raises(ValueError):
        audit_stats(sqlite_store, "loudest")
