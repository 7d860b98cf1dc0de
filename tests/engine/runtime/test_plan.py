from datetime import UTC, datetime, timedelta

import pytest

from engine.config import load_config
from engine.media.video import uniform_indices
from engine.registry import build_pipelines, version_context
from engine.runtime.pipeline import VideoTask
from engine.runtime.plan import MIN_MEASURED_CALLS, make_plan, measured_tokens
from engine.store import schema
from engine.store.requests import measured_call_tokens


def videos(*frames: int) -> list[VideoTask]:
    return [VideoTask(f"v{i}", f"/src/v{i}.mp4", f"v{i}.mp4", "file", n, 25.0, 640, 360) for i, n in enumerate(frames)]


def plan_for(cfg, names, vids, uncaptioned=(), measured=None):
    vc, _ = version_context(cfg)
    return make_plan(cfg, build_pipelines(names), vc, vids, set(uncaptioned), measured)


def test_plan_counts_calls_frames_and_cost_per_agent_role():
    cfg = load_config(environ={})
    plan = plan_for(cfg, ["detailed"], videos(250, 10), uncaptioned=["v1"])
    roles = {a.role: a for a in plan.roles}
    objects = 2 * cfg.plan.objects_per_video
    assert plan.objects == objects
    assert roles["captioner"].calls == 1 and roles["analyzer"].calls == 2
    assert roles["annotator.dynamic"].calls == objects and roles["annotator.static"].calls == objects
    assert roles["reviewer.region"].calls == objects and roles["reviewer.judge"].calls == objects  # paper mode
    assert roles["refiner.detailed"].calls == pytest.approx(objects * cfg.plan.keep_rate)
    assert "refiner.qa" not in roles  # the detailed pipeline writes no QA
    expected_frames = len(set(uniform_indices(250, 32)) | set(uniform_indices(250, 16))) + 10
    assert plan.frames == expected_frames
    ann = roles["annotator.dynamic"]
    assert ann.tokens_in == pytest.approx(ann.calls * (250 + 16 * cfg.plan.tokens_per_image))
    price = cfg.agents.annotator
    assert ann.cost_usd == pytest.approx(
        (ann.tokens_in * price.price_in_per_mtok + ann.tokens_out * price.price_out_per_mtok) / 1e6
    )
    assert plan.cost_usd == pytest.approx(sum(a.cost_usd for a in plan.roles))
    assert plan.mask_frames == round((32 + 10) * cfg.plan.objects_per_video)


def test_the_plan_follows_the_pipelines_and_counts_shared_stages_once():
    cfg = load_config(environ={})
    detailed = {a.role: a.calls for a in plan_for(cfg, ["detailed"], videos(100)).roles}
    both = {a.role: a.calls for a in plan_for(cfg, ["detailed", "qa"], videos(100)).roles}
    assert both["annotator.dynamic"] == detailed["annotator.dynamic"]  # qa shares detailed's stages
    assert both["refiner.qa"] > 0
    short = plan_for(cfg, ["short"], videos(100))
    assert {a.role for a in short.roles} == {"captioner", "analyzer"}  # no annotator, no reviewer


def test_prices_and_modes_from_config_change_the_plan():
    base = plan_for(load_config(environ={}), ["detailed"], videos(100))
    dearer = plan_for(
        load_config(environ={"ENGINE_AGENTS__ANNOTATOR__PRICE_IN_PER_MTOK": "30"}), ["detailed"], videos(100)
    )
    assert dearer.cost_usd > base.cost_usd
    direct = plan_for(load_config(environ={"ENGINE_RUNTIME__REVIEWER_MODE": "direct"}), ["detailed"], videos(100))
    roles = {a.role: a.calls for a in direct.roles}
    assert roles["reviewer.direct"] == 3 and "reviewer.judge" not in roles


def test_measured_tokens_replace_estimates_once_there_are_enough(store):
    cfg = load_config(environ={})

    def request(i, role, status="ok", tin=1000, tout=10, **kw):
        return schema.Request(
            **kw,
            id=f"{i:032d}",
            role=role,
            endpoint_key=role.split(".")[0],
            model="m",
            endpoint="",
            request_hash=f"{i:064d}",
            kind="call",
            attempt=1,
            status=status,
            tokens_in=tin,
            tokens_out=tout,
        )

    with store.session() as s:
        for i in range(MIN_MEASURED_CALLS):
            s.add(request(i, "analyzer"))
        s.add(request(100, "analyzer", status="http_500", tin=99999))
        s.add(request(101, "analyzer", tin=None, tout=None))  # no usage: not a measurement
        s.add(request(102, "refiner.detailed", tin=5, tout=5))
    measured = measured_tokens(store, cfg, build_pipelines(["detailed"]))
    assert set(measured) == {"analyzer", "refiner.detailed"}  # the roles the pipeline calls that have requests
    assert measured["analyzer"] == (1000.0, 10.0, MIN_MEASURED_CALLS)  # failed and unknown excluded
    roles = {a.role: a for a in plan_for(cfg, ["detailed"], videos(50, 50), measured=measured).roles}
    assert roles["analyzer"].measured and roles["analyzer"].tokens_in == 2000
    assert not roles["refiner.detailed"].measured  # one call is too few to trust


def test_measured_tokens_read_each_roles_newest_requests_only(store):
    """A bounded read: the newest requests of a role speak for it (what the prompts cost lately), and a failure
    among them takes its place in the window without counting in the mean."""
    t0 = datetime(2026, 12, 1, tzinfo=UTC)

    def request(i, tin, minutes, status="ok", kind="call"):
        return schema.Request(
            id=f"{i:032d}", role="analyzer", endpoint_key="analyzer", model="m", endpoint="",
            request_hash=f"{i:064d}", kind=kind, attempt=1, status=status, tokens_in=tin, tokens_out=1,
            sent_at=t0 + timedelta(minutes=minutes),
        )  # fmt: skip

    with store.session() as s:
        s.add_all(request(i, 500, i) for i in range(40))  # older, cheaper prompts
        s.add_all(request(100 + i, 900, 100 + i) for i in range(8))  # the newest
        s.add(request(200, 99999, 150, status="http_500"))
        s.add(request(201, 99999, 151, kind="repair"))
    assert measured_call_tokens(store, ["analyzer", "refiner.qa"], newest=10) == {"analyzer": (900.0, 1.0, 8)}
    assert measured_call_tokens(store, ["analyzer"], newest=20)["analyzer"] == (
        (8 * 900 + 10 * 500) / 18, 1.0, 18,
    )  # fmt: skip
    assert measured_call_tokens(store, ["analyzer"])["analyzer"][2] == 48
