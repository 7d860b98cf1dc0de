import pytest

from engine.store import schema
from engine.config import load_config
from engine.media.video import uniform_indices
from engine.runtime.plan import MIN_MEASURED_CALLS, make_plan, measured_tokens


def test_plan_counts_calls_frames_and_cost():
    cfg = load_config(environ={})
    plan = make_plan(cfg, [250, 10], uncaptioned=1)
    agents = {a.agent: a for a in plan.agents}
    objects = 2 * cfg.plan.objects_per_video
    assert plan.objects == objects
    assert agents["captioner"].calls == 1 and agents["analyzer"].calls == 2
    assert agents["annotator"].calls == 2 * objects
    assert agents["reviewer"].calls == 2 * objects  # paper mode: region description + judgement
    assert agents["refiner"].calls == pytest.approx(objects * cfg.plan.keep_rate)
    expected_frames = len(set(uniform_indices(250, 32)) | set(uniform_indices(250, 16))) + 10
    assert plan.frames == expected_frames
    ann = agents["annotator"]
    per_call_in = 250 + 16 * cfg.plan.tokens_per_image
    assert ann.tokens_in == pytest.approx(ann.calls * per_call_in)
    price = cfg.agents.annotator
    assert ann.cost_usd == pytest.approx((ann.tokens_in * price.price_in_per_mtok + ann.tokens_out * price.price_out_per_mtok) / 1e6)
    assert plan.cost_usd == pytest.approx(sum(a.cost_usd for a in plan.agents))


def test_prices_and_modes_from_config_change_the_plan():
    base = make_plan(load_config(environ={}), [100], 0)
    dearer = make_plan(load_config(environ={"ENGINE_AGENTS__ANNOTATOR__PRICE_IN_PER_MTOK": "30"}), [100], 0)
    assert dearer.cost_usd > base.cost_usd
    direct = make_plan(load_config(environ={"ENGINE_RUNTIME__REVIEWER_MODE": "direct"}), [100], 0)
    assert {a.agent: a.calls for a in direct.agents}["reviewer"] == 3


def test_measured_tokens_replace_estimates_once_there_are_enough(store):
    cfg = load_config(environ={})
    with store.session() as s:
        for i in range(MIN_MEASURED_CALLS):
            s.add(schema.ModelCall(id=f"{i:032d}", request_hash=f"{i:064d}", agent="analyzer", model="m",
                                   status="ok", tokens_in=1000, tokens_out=10))
        s.add(schema.ModelCall(id="e" * 32, request_hash="e" * 64, agent="analyzer", model="m", status="error",
                               tokens_in=99999))
        s.add(schema.ModelCall(id="f" * 32, request_hash="f" * 64, agent="refiner", model="m", status="ok",
                               tokens_in=5, tokens_out=5))
    measured = measured_tokens(store)
    assert measured["analyzer"] == (1000.0, 10.0, MIN_MEASURED_CALLS)  # failed calls excluded
    agents = {a.agent: a for a in make_plan(cfg, [50, 50], 0, measured).agents}
    assert agents["analyzer"].measured and agents["analyzer"].tokens_in == 2000
    assert not agents["refiner"].measured  # one call is too few to trust
