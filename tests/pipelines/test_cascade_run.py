"""The Reviewer cascade in a run of the engine (pipelines/stages.py ReviewStage): two judges on the test endpoint
under two model names with their prices, scores from the answer token's log-probabilities. The cheap judge decides
what it is sure of, the strong one the rest; each review names its judge and every judge's score; the summary, the
status and the dataset card show the share each judge decided and the cost per kept object."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from engine_runs import open_store, run_engine
from fake_endpoint import FakeEndpoint, FaultRule, image_urls, last_user_text
from synthetic import render, write_mp4
from typer.testing import CliRunner

from engine.cli import app
from engine.store import schema

# P(same object) each judge gives each noun: the cheap judge is sure of four, unsure of two
CHEAP = {"dog": 0.99, "ball": 0.01, "tree": 0.5, "man": 0.6, "horse": 0.985, "car": 0.005}
STRONG = {"dog": 0.99, "ball": 0.01, "tree": 0.93, "man": 0.08, "horse": 0.99, "car": 0.01}
CONFIG = """
[review]
logprobs = "auto"

[[review.cascade]]
name = "small"
base_url = "{url}"
model = "judge-small"
api_key_env = ""
price_in_per_mtok = 0.05
price_out_per_mtok = 0.10

[[review.cascade]]
name = "large"
base_url = "{url}"
model = "judge-large"
api_key_env = ""
price_in_per_mtok = 2.50
price_out_per_mtok = 10.0
"""


def judge_score(body: dict) -> float | None:
    """The judges' P(same object), by model and by the noun the judging prompt names."""
    noun = re.search(r"Object noun: (\w+)", last_user_text(body))  # the text part too, where frames come with it
    table = {"judge-small": CHEAP, "judge-large": STRONG}.get(body.get("model"))
    return table.get(noun.group(1)) if noun and table else None


@pytest.fixture
def two_clips(tmp_path):
    src = tmp_path / "videos"
    src.mkdir()
    for n, (name, caption) in enumerate(
        (("park", "A dog chases a ball near a tree."), ("road", "A man rides a horse past a car."))
    ):
        write_mp4(src / f"{name}.mp4", render(16 + 4 * n, 96, 72)[0])  # other frames: not a duplicate
        (src / f"{name}.txt").write_text(caption)
    return src


def test_a_cascade_run_decides_by_bands_records_every_judge_and_reports_shares_and_cost(tmp_path, two_clips):
    with FakeEndpoint(model_ids=("fake-model", "judge-small", "judge-large"), p_same=judge_score) as fe:
        config = tmp_path / "engine.toml"
        config.write_text(CONFIG.format(url=fe.base_url))
        data = tmp_path / "data"
        r = run_engine(fe, data, "--config", str(config), "--source", str(two_clips), "--pipelines", "detailed")
        assert r.exit_code == 0, r.output
        # preflight learnt that both judges' server returns log-probabilities
        assert "judge small: token log-probabilities returned" in r.output
        assert "judge large: token log-probabilities returned" in r.output
        asked = [x.body for x in fe.work_requests()]
    judge_calls = [b for b in asked if b.get("model") in ("judge-small", "judge-large")]
    assert judge_calls and all(b.get("logprobs") is True and b.get("top_logprobs") for b in judge_calls)
    store = open_store(data)
    with store.session() as s:
        rows = s.execute(
            sa.select(schema.VideoObject.noun, schema.Review).join(
                schema.Review, schema.Review.object_id == schema.VideoObject.id
            )
        ).all()
    reviews = {noun: rv for noun, rv in rows}
    assert set(reviews) == set(CHEAP)
    for noun, rv in reviews.items():
        sure = CHEAP[noun] >= 0.98 or CHEAP[noun] < 0.02  # the default band [0.02, 0.98]
        assert rv.judge == ("small" if sure else "large"), noun
        assert [j["judge"] for j in rv.judges] == (["small"] if sure else ["small", "large"])
        assert rv.judges[0]["p_same"] == pytest.approx(CHEAP[noun], abs=1e-6)
        assert rv.score_source == "tokens" and rv.token_p_same == pytest.approx(rv.p_same)
        decider = CHEAP if sure else STRONG
        assert rv.p_same == pytest.approx(decider[noun], abs=1e-6)
        assert rv.verdict == (decider[noun] >= (0.98 if sure else 0.5))
        assert rv.model == ("judge-small" if sure else "judge-large")
    # requests per judge: the small one for every object, the large one only for the two it was handed
    assert sum(b["model"] == "judge-small" for b in judge_calls) == 6
    assert sum(b["model"] == "judge-large" for b in judge_calls) == 2
    out = r.output
    assert "cascade bands (default: not calibrated from audits)" in out
    assert re.search(r"decided by small \(kept / discarded\)[\s│]+4 \(67%\): 2 / 2", out), out
    assert re.search(r"decided by large \(kept / discarded\)[\s│]+2 \(33%\): 1 / 1", out), out
    assert re.search(r"judging cost USD per kept object[\s│]+0\.\d+", out)
    assert re.search(r"judge scores from[\s│]+tokens 6", out)
    with store.session() as s:
        summary = s.scalar(sa.select(schema.Run.summary))
    small, large = summary["judges"]["small"], summary["judges"]["large"]
    assert (small["decided"], large["decided"]) == (4, 2)
    assert small["cost_usd"] > 0 and large["cost_usd"] > 0
    # two calls of the large judge cost more than six of the small one: its price is 50-100x
    assert large["cost_usd"] > small["cost_usd"]
    assert summary["cost_per_kept_usd"] == pytest.approx(summary["cost_usd"] / 3)
    assert summary["cascade"] == {"bands": {"small": [0.02, 0.98], "large": [0.5, 0.5]}, "calibrated": False}
    status = CliRunner().invoke(app, ["status", "--data-dir", str(data)], env={"COLUMNS": "200"})
    assert "Reviews by deciding judge" in status.output, status.output
    assert re.search(r"small\s*│\s*4\s*│\s*67%\s*│\s*2\s*│\s*2\s*│\s*0\.\d{4}", status.output), status.output
    export = CliRunner().invoke(app, ["export", "--data-dir", str(data), "--out", str(tmp_path / "out")])
    assert export.exit_code == 0, export.output
    card = (tmp_path / "out" / "README.md").read_text()
    assert re.search(r"Decided by small: 66\.7% \(4: kept 2, discarded 2\), judging cost USD", card), card
    assert re.search(r"Decided by large: 33\.3% \(2: kept 1, discarded 1\)", card)
    assert "6 from token probabilities" in card
    assert re.search(r"Cost per kept object: USD \d\.\d{6} \(all requests in the store\), of which judging", card)


def test_a_server_without_logprobs_gives_verbal_scores_and_says_so_at_preflight(tmp_path, two_clips):
    with FakeEndpoint(model_ids=("fake-model",), logprobs=False) as fe:
        data = tmp_path / "data"
        r = run_engine(fe, data, "--source", str(two_clips), "--pipelines", "detailed")
        assert r.exit_code == 0, r.output
        assert "returns no token log-probabilities: its score is its verbalised confidence" in r.output
    with open_store(data).session() as s:
        rows = s.execute(sa.select(schema.Review.score_source, schema.Review.p_same, schema.Review.token_p_same)).all()
        verdicts = s.execute(sa.select(schema.Review.verdict, schema.Review.confidence, schema.Review.p_same)).all()
    assert rows and {src for src, _, _ in rows} == {"verbal"} and all(t is None for _, _, t in rows)
    for keep, confidence, p in verdicts:  # the verbalised confidence is in the verdict: P(same) is c or 1 - c
        assert p == pytest.approx(confidence if keep else 1 - confidence)
    assert re.search(r"judge scores from[\s│]+verbal 6", r.output)


def test_a_judge_that_keeps_failing_costs_its_object_only_and_a_rerun_finishes_it(tmp_path, two_clips):
    with FakeEndpoint(model_ids=("fake-model", "judge-small", "judge-large"), p_same=judge_score) as fe:
        config = tmp_path / "engine.toml"
        config.write_text(
            CONFIG.format(url=fe.base_url).replace('api_key_env = ""', 'api_key_env = ""\nbackoff_max_s = 0.1')
        )
        fe.rules.append(FaultRule("500", schema="Verdict", text="Object noun: tree"))  # both judges, one object
        data = tmp_path / "data"
        args = ("--config", str(config), "--source", str(two_clips), "--pipelines", "detailed")
        r = run_engine(fe, data, *args, "--set", "runtime.max_unit_attempts=2")
        assert r.exit_code == 1, r.output  # finished with failures
        assert "Traceback" not in r.output
        with open_store(data).session() as s:
            failures = s.execute(sa.select(schema.Failure.stage, schema.Failure.quarantined)).all()
            reviewed = s.scalar(sa.select(sa.func.count()).select_from(schema.Review))
        assert failures == [("review", True)] and reviewed == 5
        fe.rules.clear()
        r = run_engine(fe, data, *args, "--retry-failed")
        assert r.exit_code == 0, r.output
    with open_store(data).session() as s:
        tree = s.execute(
            sa.select(schema.Review)
            .join(schema.VideoObject, schema.VideoObject.id == schema.Review.object_id)
            .where(schema.VideoObject.noun == "tree")
        ).scalar_one()
    assert tree.judge == "large" and tree.verdict and [j["judge"] for j in tree.judges] == ["small", "large"]


def test_in_direct_mode_the_cascade_judges_on_the_overlay_frames(tmp_path, two_clips):
    """The cascade replaces the judging call whichever review mode: in direct mode each judge sees the frames."""
    with FakeEndpoint(model_ids=("fake-model", "judge-small", "judge-large"), p_same=judge_score) as fe:
        config = tmp_path / "engine.toml"
        config.write_text(CONFIG.format(url=fe.base_url))
        data = tmp_path / "data"
        r = run_engine(
            fe, data, "--config", str(config), "--source", str(two_clips), "--pipelines", "detailed",
            "--set", "runtime.reviewer_mode=direct",
        )  # fmt: skip
        assert r.exit_code == 0, r.output
        judged = [x.body for x in fe.work_requests() if x.body.get("model") in ("judge-small", "judge-large")]
    assert judged and all(image_urls(b) for b in judged)  # each judge call carries the overlay frames
    with open_store(data).session() as s:
        rows = s.execute(
            sa.select(schema.VideoObject.noun, schema.Review.judge, schema.Review.mode).join(
                schema.Review, schema.Review.object_id == schema.VideoObject.id
            )
        ).all()
        regions = s.scalar(sa.select(sa.func.count()).where(schema.Description.kind == "region"))
    assert regions == 0 and {m for _, _, m in rows} == {"direct"}
    assert {noun: judge for noun, judge, _ in rows} == {
        n: "small" if CHEAP[n] >= 0.98 or CHEAP[n] < 0.02 else "large" for n in CHEAP
    }
