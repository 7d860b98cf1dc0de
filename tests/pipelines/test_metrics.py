"""A run's Prometheus metrics (engine/runtime/metrics.py) agree with the store: scraped over HTTP at the end of a
real run (fake endpoint, fake segmentor), compared with the request log, the summary and the samples table."""

from __future__ import annotations

import urllib.request
from collections import defaultdict

import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from engine.api import Engine, RunObserver
from engine.store import schema
from engine.store.db import Store

PIPELINES = ("detailed", "short", "qa")


class Scraper(RunObserver):
    """Scrapes /metrics when the run's summary is ready: the run has done its work, the server is still up."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.scraped: str | None = None
        self.summary: dict = {}

    def note(self, message: str) -> None:
        if message.startswith("metrics: http://") and self.url is None:
            self.url = message.split()[1]

    def summarized(self, summary: dict) -> None:
        self.summary = summary
        assert self.url is not None, "the run never said where its metrics are"
        with urllib.request.urlopen(self.url, timeout=10) as r:
            self.scraped = r.read().decode()


def samples_of(text: str) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}}."""
    out: dict[str, dict[tuple, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name][tuple(sorted(s.labels.items()))] = s.value
    return out


def run_with_metrics(tmp_path, source, endpoint) -> tuple[Scraper, Engine]:
    obs = Scraper()
    eng = Engine.from_settings(
        data_dir=tmp_path / "data",
        overrides={
            "segmentor.backend": "fake_segmentor:HashSegmentor",
            "split.detector": "none",
            "ray.resources.segmentor.num_gpus": 0,
            "ray.resources.segmentor.num_cpus": 0.5,
            "ray.resources.media.num_cpus": 0.5,
            "metrics.port": 0,  # any free port: the run's note names it
            "metrics.linger_s": 0,
        },
        observer=obs,
        environ={"OPENAI_BASE_URL": endpoint.base_url, "OPENAI_API_KEY": "sk-test"},
    )
    result = eng.run(source, PIPELINES)
    assert result.exit_code == 0, result.sentence
    return obs, eng


def by(metric: dict[tuple, float], label: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for labels, v in metric.items():
        out[dict(labels)[label]] += v
    return dict(out)


def test_the_metrics_a_run_serves_agree_with_its_request_log_summary_and_samples(tmp_path, source, endpoint):
    obs, eng = run_with_metrics(tmp_path, source, endpoint)
    m = samples_of(obs.scraped or "")
    store: Store = eng.store
    run_id = eng.status().runs[0].id
    with store.session() as s:
        logged = dict(
            s.execute(
                sa.select(schema.Request.role, sa.func.count())
                .where(schema.Request.run_id == run_id)
                .group_by(schema.Request.role)
            ).all()
        )
        samples = dict(
            s.execute(
                sa.select(schema.Sample.data_type, sa.func.count())
                .where(schema.Sample.run_id == run_id)
                .group_by(schema.Sample.data_type)
            ).all()
        )
    requests = m["videorefer_engine_requests_total"]
    per_role: dict[str, float] = defaultdict(float)
    for (role, outcome), n in _pairs(requests, "role", "outcome").items():
        if outcome != "cache_hit":  # a cache hit sends no request and has no row
            per_role[role] += n
    assert dict(per_role) == {r: float(n) for r, n in logged.items()}  # every logged request, probes as "probe"
    assert "probe" in logged
    assert by(m["videorefer_engine_samples_total"], "type") == {t: float(n) for t, n in samples.items()}
    assert set(samples) == set(PIPELINES)
    summary = obs.summary
    assert sum(by(m["videorefer_engine_samples_total"], "type").values()) == sum(summary["samples"].values())
    tokens = _pairs(m["videorefer_engine_tokens_total"], "role", "direction")
    assert sum(v for (_, d), v in tokens.items() if d == "in") == summary["tokens_in"]
    assert sum(v for (_, d), v in tokens.items() if d == "out") == summary["tokens_out"]
    assert abs(sum(m["videorefer_engine_cost_usd_total"].values()) - summary["cost_usd"]) < 1e-9
    objects = by(m["videorefer_engine_objects_total"], "state")
    assert objects == {
        "found": summary["objects"],
        "grounded": summary["grounded"],
        "gated": sum(summary["gated"].values()),
        "reviewed": summary["reviewed"],
        "kept": summary["kept"],
    }
    units = _pairs(m["videorefer_engine_units_total"], "stage", "outcome")
    assert units[("caption", "done")] == 1  # the frame folder without a caption
    assert all(outcome in {"done", "failed", "quarantined", "skipped"} for _, outcome in units)
    # one stage-seconds observation per video and stage: the videos times the stages every video goes through
    counts = by(m["videorefer_engine_stage_seconds_count"], "stage")
    assert counts["analyze"] == summary["videos"]
    assert m["videorefer_engine_videos_in_flight"][()] == 0
    (info,) = m["videorefer_engine_run_info"]
    assert dict(info)["run_id"] == run_id and dict(info)["pipelines"] == ",".join(PIPELINES)
    latency = by(m["videorefer_engine_request_seconds_count"], "role")
    assert latency == {r: float(n) for r, n in logged.items()}


def test_a_rerun_counts_skipped_units_and_cache_hits_and_sends_only_probes(tmp_path, source, endpoint):
    run_with_metrics(tmp_path, source, endpoint)
    obs, eng = run_with_metrics(tmp_path, source, endpoint)
    m = samples_of(obs.scraped or "")
    units = _pairs(m["videorefer_engine_units_total"], "stage", "outcome")
    assert units and {outcome for (_, outcome), n in units.items() if n} == {"skipped"}, units
    roles = by(m["videorefer_engine_requests_total"], "role")
    assert set(roles) == {"probe"}, roles  # every result current: only preflight's probes went out
    assert "videorefer_engine_samples_total" not in m or not m["videorefer_engine_samples_total"]


def _pairs(metric: dict[tuple, float], a: str, b: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for labels, v in metric.items():
        d = dict(labels)
        out[d[a], d[b]] = out.get((d[a], d[b]), 0.0) + v
    return out
