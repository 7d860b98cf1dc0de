"""A cascade's reviews in a store, audited and calibrated through the CLI: `engine audit sample` draws every judge's
decisions apart, `engine audit calibrate --cascade --apply` writes bands that reach the target into the config file
(and the next configuration says they are calibrated), `--score tokens|verbal` says which score it calibrated, and
the dashboard draws a curve for each score."""

from __future__ import annotations

import math
import random

import sqlalchemy as sa
from review_data import make_reviews
from typer.testing import CliRunner

from engine.cli import app
from engine.config import load_config
from engine.registry import build_pipelines, configured_current, version_context
from engine.store import schema
from engine.store.ids import stable_id

CASCADE = """
[[review.cascade]]
name = "small"
model = "judge-small"
api_key_env = ""
price_in_per_mtok = 0.05
price_out_per_mtok = 0.1

[[review.cascade]]
name = "large"
model = "judge-large"
api_key_env = ""
price_in_per_mtok = 2.5
price_out_per_mtok = 10.0
"""


def _cascade_store(store, tmp_path, n=600, seed=3):
    """n reviews decided by a two-judge cascade at the default bands, with known truth: the small judge's score is
    noisy, the large one's sharp; verbal confidences noisier than token probabilities. Returns the config path,
    the truth by review id and the current results."""
    config = tmp_path / "engine.toml"
    config.write_text(CASCADE)
    cfg = load_config(config, environ={})
    vc, _ = version_context(cfg)
    detailed = build_pipelines(["detailed"])[0]
    lineage = dict(zip([st.name for st in detailed.stages], detailed.lineages(vc)))["review"]
    ids = make_reviews(store, tmp_path, kept=n // 2, discarded=n - n // 2)
    rng = random.Random(seed)
    truth = {}
    bands = cfg.review.bands()
    with store.session() as s:
        for rid in ids:
            same = rng.random() < 0.5
            truth[rid] = same
            sign = 1 if same else -1
            asked = []
            for (name, model, sep, noise), (lo, hi) in zip(
                (("small", "judge-small", 1.5, 1.2), ("large", "judge-large", 4.0, 0.8)), bands
            ):
                p = 1 / (1 + math.exp(-(sign * sep + rng.gauss(0, noise))))
                verbal = min(0.99, max(0.01, p + rng.gauss(0, 0.25)))
                asked.append(
                    {
                        "judge": name,
                        "model": model,
                        "p_same": p,
                        "source": "tokens",
                        "token_p_same": p,
                        "same_object": verbal >= 0.5,
                        "confidence": max(verbal, 1 - verbal),
                    }
                )
                if p >= hi or p < lo or name == "large":
                    keep = p >= hi
                    break
            r = s.get(schema.Review, rid)
            last = asked[-1]
            r.lineage, r.verdict, r.judge, r.judges = lineage, keep, last["judge"], asked
            r.p_same = r.token_p_same = last["p_same"]
            r.score_source, r.confidence, r.model = "tokens", last["confidence"], last["model"]
    return config, truth, configured_current(cfg)


def _audit_all_drawn(store, truth):
    with store.session() as s:
        for item in s.query(schema.AuditItem):
            s.add(
                schema.Audit(
                    id=stable_id("a", item.review_id), review_id=item.review_id, auditor="ann",
                    human_verdict=truth[item.review_id],
                )
            )  # fmt: skip


def test_audit_sample_draws_each_judges_decisions_and_calibrate_cascade_writes_bands(sqlite_store, tmp_path):
    config, truth, current = _cascade_store(sqlite_store, tmp_path)
    url = ["--database-url", sqlite_store.url, "--config", str(config)]
    run = CliRunner()
    r = run.invoke(app, ["audit", "sample", "--kept", "150", "--discarded", "150", *url], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    with sqlite_store.session() as s:
        strata = dict(
            s.execute(sa.select(schema.AuditItem.stratum, sa.func.count()).group_by(schema.AuditItem.stratum)).all()
        )
        deciders = dict(
            s.execute(
                sa.select(schema.Review.judge, sa.func.count())
                .where(schema.Review.lineage.in_(sorted(current.reviews)))
                .group_by(schema.Review.judge)
            ).all()
        )
    assert set(strata) == {"kept@small", "kept@large", "discarded@small", "discarded@large"}, strata
    assert set(deciders) == {"small", "large"}
    _audit_all_drawn(sqlite_store, truth)
    r = run.invoke(app, ["audit", "calibrate", "--apply", *url])
    assert r.exit_code == 2 and "give it with --cascade" in r.output

    r = run.invoke(
        app, ["audit", "calibrate", "--cascade", "--target-precision", "0.9", "--apply", *url], env={"COLUMNS": "200"}
    )
    assert r.exit_code == 0, r.output
    assert "small: keep p >= " in r.output and "large: keep p >= " in r.output
    assert "decided by small" in r.output and "per kept object" in r.output
    assert "written to [[review.cascade]]" in " ".join(r.output.split())
    cfg = load_config(config, environ={})
    assert cfg.review.calibrated and all(j.band is not None for j in cfg.review.cascade)
    (lo, hi), (t, t2) = cfg.review.bands()
    assert 0.02 <= lo <= hi <= 0.98 and t == t2  # nested inside the collecting band
    # the bands' real precision over the whole pool, from the truth
    scores = {}
    with sqlite_store.session() as s:
        for rv in s.query(schema.Review).filter(schema.Review.lineage.in_(sorted(current.reviews))):
            scores[rv.id] = {j["judge"]: j["p_same"] for j in rv.judges}
    kept = [rid for rid, sc in scores.items() if sc["small"] >= hi or (lo <= sc["small"] < hi and sc["large"] >= t)]
    precision = sum(truth[rid] for rid in kept) / len(kept)
    assert precision >= 0.85, precision


def test_calibrate_says_which_score_it_used_and_the_dashboard_draws_both(sqlite_store, tmp_path):
    from fastapi.testclient import TestClient

    import review_ui.app as ui
    from engine.audit.sampling import add_auditor

    config, truth, current = _cascade_store(sqlite_store, tmp_path)
    url = ["--database-url", sqlite_store.url, "--config", str(config)]
    run = CliRunner()
    assert run.invoke(app, ["audit", "sample", *url]).exit_code == 0
    _audit_all_drawn(sqlite_store, truth)
    for score, said in (("tokens", "answer-token probability"), ("verbal", "verbalised confidence")):
        r = run.invoke(app, ["audit", "calibrate", "--target-precision", "0.8", "--score", score, *url])
        assert r.exit_code == 0, r.output
        assert f"score: the judges' {said}" in r.output
    r = run.invoke(app, ["audit", "calibrate", "--target-precision", "0.8", *url])  # auto: every review has tokens
    assert "answer-token probability" in r.output
    with sqlite_store.session() as s:
        scores = [c.estimates["score"] for c in s.query(schema.Calibration).order_by(schema.Calibration.created_at)]
    assert scores == ["tokens", "verbal", "tokens"]
    c = TestClient(ui.create_app(sqlite_store, current=current), headers={"origin": "http://testserver"})
    c.post("/login", data={"name": "ann", "token": add_auditor(sqlite_store, "ann")})
    page = c.get("/dashboard").text
    assert 'data-score="verbal"' in page and 'data-score="tokens"' in page
    for score in ("tokens", "verbal"):
        assert c.get(f"/calibration.png?score={score}").content[:4] == b"\x89PNG"
    # a review without a token probability: tokens cannot be asked, auto falls back to verbal
    with sqlite_store.session() as s:
        rv = s.query(schema.Review).filter(schema.Review.lineage.in_(sorted(current.reviews))).first()
        rv.token_p_same = None
    r = run.invoke(app, ["audit", "calibrate", "--target-precision", "0.8", "--score", "tokens", *url])
    assert r.exit_code == 2 and "have no token probability" in r.output
    r = run.invoke(app, ["audit", "calibrate", "--target-precision", "0.8", *url])
    assert r.exit_code == 0 and "verbalised confidence" in r.output
    assert 'data-score="tokens"' not in c.get("/dashboard").text


def test_the_revealed_verdict_names_the_deciding_judge_and_its_score(sqlite_store, tmp_path):
    import re

    from fastapi.testclient import TestClient

    import review_ui.app as ui
    from engine.audit.sampling import add_auditor

    config, truth, current = _cascade_store(sqlite_store, tmp_path, n=40)
    drawn = CliRunner().invoke(app, ["audit", "sample", "--database-url", sqlite_store.url, "--config", str(config)])
    assert drawn.exit_code == 0, drawn.output
    with sqlite_store.session() as s:
        rid = s.query(schema.AuditItem).first().review_id
        rv = s.get(schema.Review, rid)
        judge, p = rv.judge, rv.p_same
    c = TestClient(ui.create_app(sqlite_store, current=current), headers={"origin": "http://testserver"})
    c.post("/login", data={"name": "ann", "token": add_auditor(sqlite_store, "ann")})
    before = c.get(f"/item/{rid}").text
    assert 'id="score"' not in before  # blind until decided
    csrf = re.search(r'name="csrf" value="([^"]+)"', before).group(1)
    c.post("/decide", data={"review_id": rid, "verdict": "correct", "csrf": csrf})
    after = c.get(f"/item/{rid}").text
    assert f"Decided by <bdi>{judge}</bdi>: P(same object) {p:.3f}, from its answer token&#39;s probability" in after
