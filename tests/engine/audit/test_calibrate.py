"""The Reviewer's keep threshold, calibrated from audits: a synthetic pool with known truth and a Reviewer whose
confidence is informative but noisy. The threshold's real precision over the whole pool must fall inside the
reported interval in at least 90% of 200 seeded repetitions."""

from __future__ import annotations

import numpy as np

from engine.audit.calibrate import Pool, calibrate

N = 4000


def synthetic(seed: int, kept_audits: int = 150, discarded_audits: int = 150):
    rng = np.random.default_rng(seed)
    same = rng.random(N) < 0.45  # the truth: does the description fit the mask?
    logit = np.where(same, 1.2, -1.2) + rng.normal(0, 1.4, N)  # informative, noisy
    p_same = 1 / (1 + np.exp(-logit))
    keep = p_same >= 0.5
    confidence = np.where(keep, p_same, 1 - p_same)  # the probability its own verdict is right, as it says
    scores = np.where(keep, confidence, 1 - confidence)
    audited = np.concatenate(
        [
            rng.choice(np.flatnonzero(keep), kept_audits, replace=False),
            rng.choice(np.flatnonzero(~keep), discarded_audits, replace=False),
        ]
    )
    return Pool(scores, keep, audited, same[audited]), same


def test_the_calibrated_thresholds_real_precision_is_inside_its_interval_90_percent_of_the_time():
    inside, widths, reached = 0, [], 0
    for seed in range(200):
        pool, same = synthetic(seed)
        cal = calibrate(pool, target=0.90, bootstrap=300, seed=seed)
        t = cal.threshold if cal.threshold is not None else 1.0
        real = same[pool.scores >= t].mean()
        inside += cal.precision.low <= real <= cal.precision.high
        widths.append(cal.precision.high - cal.precision.low)
        reached += cal.threshold is not None
    print(f"\ncoverage {inside}/200, median interval width {np.median(widths):.3f}, target reached {reached}/200")
    assert inside >= 180 and reached >= 190


def test_estimates_follow_the_pool():
    pool, same = synthetic(1, 400, 400)
    cal = calibrate(pool, target=0.85, bootstrap=200)
    real_yield = (pool.scores >= cal.threshold).mean()
    assert cal.yield_ == real_yield and cal.admitted == int((pool.scores >= cal.threshold).sum())
    real_recall = (same & (pool.scores >= cal.threshold)).sum() / same.sum()
    assert cal.recall.low <= real_recall <= cal.recall.high
    assert cal.readmitted == int(((pool.scores >= cal.threshold) & ~pool.keep).sum())
    ys = [y for _, _, y in cal.curve]
    assert ys == sorted(ys, reverse=True)  # a higher threshold never keeps more


def test_the_plot_draws_a_degenerate_interval(tmp_path):
    """Every bootstrap replicate alike: the interval has no width, and its bounds can lie a last bit off the point
    estimate (the sums run in another order). The plot draws it with zero-length error bars, never a negative one
    (which matplotlib refuses)."""
    from engine.audit.calibrate import Calibration, Interval, error_bar, plot

    point = 0.503267973856209
    above = 0.5032679738562091  # the next float up: what the bootstrap gave for this point
    assert above > point
    for precision in (Interval(point, above, above), Interval(point, point, point), Interval(above, point, point)):
        bars = error_bar(precision)
        assert all(v >= 0 for side in bars for v in side)
        assert bars == [[max(0.0, precision.value - precision.low)], [max(0.0, precision.high - precision.value)]]
        curve = [(0.084, point, 0.9), (0.9, 1.0, 0.1)]
        cal = Calibration(0.5, 0.084, precision, Interval(1.0, 1.0, 1.0), 0.9, 80, 144, 64, 30, curve)
        path = tmp_path / "curve.png"
        plot(cal, path)
        assert path.read_bytes()[:4] == b"\x89PNG"
    assert error_bar(Interval(point, above, above)) == [[0.0], [above - point]]


def test_a_calibration_with_a_degenerate_interval_is_plotted():
    """Above the threshold each cell's audited items agree: every replicate resamples the same labels, and the
    interval, summed in another order, lies a last bit below its point."""
    import io

    from engine.audit.calibrate import plot

    n = 121
    scores = np.round(0.01 + 0.98 * ((np.arange(n) * 0.6180339887) % 1), 3)  # spread without a pattern
    audited = np.arange(0, n, 7)
    cal = calibrate(Pool(scores, scores >= 0.5, audited, scores[audited] >= 0.6), target=0.5, bootstrap=100)
    p = cal.precision
    assert cal.threshold is not None and p.low == p.high and abs(p.high - p.value) < 1e-12
    buf = io.BytesIO()
    plot(cal, buf)
    assert buf.getvalue()[:4] == b"\x89PNG"


def _audited_store(store, tmp_path, n=40, drawn=15):
    """n kept and n discarded reviews with spread confidences; `drawn` of each audited, the truth following the
    same-object score with one exception in six.

    Deterministic whatever the ids (they hash the temporary folder): the draw takes the same confidences whatever
    the ids, and the exceptions are chosen in order of the same-object score, highest first, so the best-scored
    audited item is one: no threshold with enough audited items above it has a precision of 1."""
    from review_data import CURRENT, make_reviews

    from engine.audit.sampling import draw_sample
    from engine.store import schema
    from engine.store.ids import stable_id

    reviews = make_reviews(store, tmp_path, kept=n, discarded=n)
    with store.session() as s:
        for k, r in enumerate(s.query(schema.Review).order_by(schema.Review.verdict, schema.Review.id)):
            r.confidence = 0.5 + 0.49 * ((k * 37) % n) / n  # spread over 0.5 .. 0.99
    draw_sample(store, CURRENT, kept=drawn, discarded=drawn, seed=1)
    with store.session() as s:
        drawn_reviews = [s.get(schema.Review, item.review_id) for item in s.query(schema.AuditItem)]
        by_score = sorted(
            drawn_reviews, key=lambda r: (r.confidence if r.verdict else 1 - r.confidence, r.verdict), reverse=True
        )
        for k, r in enumerate(by_score):
            same = (r.confidence >= 0.6 if r.verdict else r.confidence < 0.6) != (k % 6 == 0)
            s.add(schema.Audit(id=stable_id("a", r.id, "ann"), review_id=r.id, auditor="ann", human_verdict=same))
    return reviews, CURRENT


def test_calibrate_sample_near_the_threshold_dashboard_and_export(sqlite_store, tmp_path):
    import json

    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    import review_ui.app as ui
    from engine.audit.sampling import add_auditor, audit_stats
    from engine.cli import app
    from engine.store import schema

    _, current = _audited_store(sqlite_store, tmp_path, n=80)
    url = ["--database-url", sqlite_store.url]
    run = CliRunner()
    r = run.invoke(app, ["audit", "sample", "--near-threshold", "5", *url])
    assert r.exit_code == 2 and "calibrate" in r.output  # nothing to sample near yet
    before = audit_stats(sqlite_store)
    from pathlib import Path

    png = Path(__file__).resolve().parents[3] / "test-artifacts" / "calibration_curve.png"  # beside the UI's
    png.parent.mkdir(exist_ok=True)
    r = run.invoke(
        app, ["audit", "calibrate", "--target-precision", "0.7", "--plot", str(png), *url], env={"COLUMNS": "200"}
    )
    assert r.exit_code == 0, r.output
    assert "threshold" in r.output and "precision" in r.output and "yield" in r.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    with sqlite_store.session() as s:
        cal = s.query(schema.Calibration).one()
        assert cal.target == 0.7 and cal.estimates["precision"]["low"] <= cal.estimates["precision"]["value"]
    r = run.invoke(app, ["audit", "sample", "--near-threshold", "6", *url], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    with sqlite_store.session() as s:
        near = s.query(schema.AuditItem).filter(schema.AuditItem.stratum.like("near:%")).all()
        assert len(near) == 6 and all(i.population >= 1 for i in near)
    r = run.invoke(app, ["audit", "sample", "--near-threshold", "1000", *url], env={"COLUMNS": "200"})
    assert r.exit_code == 0  # the rest of the cells around the threshold
    r = run.invoke(app, ["audit", "sample", "--near-threshold", "5", *url], env={"COLUMNS": "200"})
    assert r.exit_code == 1 and "no undrawn item" in r.output
    with sqlite_store.session() as s:
        for i in near:  # decided: they count in the calibration, weighted by cell, not in the verdict strata's
            s.add(schema.Audit(id="n" + i.review_id[1:], review_id=i.review_id, auditor="ann", human_verdict=True))
    assert audit_stats(sqlite_store).items == before.items

    c = TestClient(ui.create_app(sqlite_store, current=current), headers={"origin": "http://testserver"})
    c.post("/login", data={"name": "ann", "token": add_auditor(sqlite_store, "ann")})
    assert "Keep threshold, calibrated from the audits" in c.get("/dashboard").text
    assert c.get("/calibration.png").content[:4] == b"\x89PNG"

    r = run.invoke(app, ["export", "--out", str(tmp_path / "out"), "--calibrated", *url])
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert r.exit_code == 4 and manifest["calibration"]["threshold"] == cal.threshold  # no samples, but recorded

    r = run.invoke(app, ["audit", "calibrate", "--target-precision", "0.999", *url], env={"COLUMNS": "200"})
    assert r.exit_code == 1 and "no threshold reaches" in r.output  # recorded, but nothing to apply: not a success


def test_export_leaves_out_objects_below_the_calibrated_threshold():
    from types import SimpleNamespace

    from engine.dataset.export import Filters, _skip_reason
    from engine.store.samples import ExportContext

    def ctx(confidence, verdict=True):
        review = {"id": "r", "verdict": verdict, "confidence": confidence}
        return ExportContext(views={"o": SimpleNamespace(masklet=None, review=review, kept=verdict)})

    smp = SimpleNamespace(object_ids=["o"])
    f = Filters(calibrated_threshold=0.7)
    assert _skip_reason(smp, ctx(0.65), f) == "below_calibrated_threshold"
    assert _skip_reason(smp, ctx(0.75), f) is None
    assert _skip_reason(smp, ctx(0.75), Filters()) is None


def test_export_calibrated_needs_a_calibration(sqlite_store, tmp_path):
    from typer.testing import CliRunner

    from engine.cli import app

    r = CliRunner().invoke(
        app, ["export", "--out", str(tmp_path / "o"), "--calibrated", "--database-url", sqlite_store.url]
    )
    assert r.exit_code == 2 and "engine audit calibrate" in r.output
