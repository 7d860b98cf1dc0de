"""The run's tally: what the live snapshot and the Prometheus families are read from."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from engine.runtime.metrics import TallyCollector
from engine.runtime.tally import HISTORY_POINTS, Histogram, RunTally


def test_a_histogram_counts_each_value_in_the_first_bucket_that_holds_it_and_cumulates_for_prometheus():
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 3.0):
        h.observe(v)
    assert h.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]  # le: a value equal to a bound is in it
    assert (h.n, round(h.total, 2)) == (4, 3.65)


def test_requests_count_rows_by_status_and_only_known_tokens_and_costs():
    t = RunTally()
    t.request({"role": "annotator", "status": "ok", "tokens_in": 10, "tokens_out": 2, "cost_usd": 0.5, "latency_s": 1})
    t.request({"role": "annotator", "status": "http_500", "tokens_in": None, "tokens_out": None, "cost_usd": None})
    t.request({"role": "annotator", "status": "cancelled", "latency_s": 0.2})
    t.cache_hit("annotator")
    assert t.roles() == {
        "annotator": {
            "requests": 3,
            "ok": 1,
            "errors": 2,
            "cache_hits": 1,
            "tokens_in": 10,
            "tokens_out": 2,
            "cost_usd": 0.5,
        }
    }
    assert t.request_seconds["annotator"].n == 2  # the row without a latency has none to count


def test_the_history_keeps_a_bounded_number_of_points_and_always_the_newest():
    t = RunTally()
    for i in range(HISTORY_POINTS * 3):
        t.beat(float(i), i)
    assert len(t.history) <= HISTORY_POINTS
    assert t.history[0][0] == 0.0 and t.history[-1][0] == float(HISTORY_POINTS * 3 - 1)
    times = [p[0] for p in t.history]
    assert times == sorted(times)


def test_every_outcome_of_a_seen_stage_or_role_is_exported_with_zeros_and_unseen_ones_are_not():
    t = RunTally()
    t.unit("segment", "done")
    t.cache_hit("reviewer.judge")
    registry = CollectorRegistry()
    registry.register(TallyCollector(t, {"run_id": "r1", "pipelines": "detailed", "engine_version": "0"}))

    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        for s in f.samples
    }
    assert found["videorefer_engine_units_total", (("outcome", "failed"), ("stage", "segment"))] == 0
    assert found["videorefer_engine_units_total", (("outcome", "done"), ("stage", "segment"))] == 1
    assert found["videorefer_engine_requests_total", (("outcome", "cache_hit"), ("role", "reviewer.judge"))] == 1
    assert found["videorefer_engine_requests_total", (("outcome", "ok"), ("role", "reviewer.judge"))] == 0
    assert not any(name == "videorefer_engine_units_total" and ("stage", "qa") in labels for name, labels in found)
    info = ("engine_version", "0"), ("pipelines", "detailed"), ("run_id", "r1")
    assert found["videorefer_engine_run_info", info] == 1


def test_failures_count_by_error_code_in_the_snapshot_and_by_outcome_in_the_units():
    t = RunTally()
    t.failed("annotate", "schema_violation", quarantined=False)
    t.failed("annotate", "schema_violation", quarantined=True)
    t.failed("segment", "segmentor_error", quarantined=True)
    assert t.snapshot()["failures"] == {"schema_violation": 2, "segmentor_error": 1}
    assert t.units == {("annotate", "failed"): 1, ("annotate", "quarantined"): 1, ("segment", "quarantined"): 1}
