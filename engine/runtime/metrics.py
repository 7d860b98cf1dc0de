"""A run's metrics in Prometheus's text format, served on 127.0.0.1 while the run lasts.

The hot path never touches prometheus_client: units and requests are counted in the run's tally (plain dicts,
engine/runtime/tally.py), and a collector turns the tally into metric families when Prometheus scrapes. So
recording costs a dict increment, and the figures are the same ones the live snapshot writes to the store.
The names are a contract (dashboards and alerts use them): deploy/ holds a scrape config and a Grafana dashboard.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from engine.runtime.tally import OBJECT_STATES, REQUEST_OUTCOMES, UNIT_OUTCOMES, Histogram, RunTally

PREFIX = "videorefer_engine"


class TallyCollector(Collector):
    def __init__(self, tally: RunTally, info: dict[str, str]):
        self.tally, self.info = tally, info

    def collect(self) -> Iterator[Metric]:
        t = self.tally
        units = CounterMetricFamily(
            f"{PREFIX}_units", "Units of work by stage and outcome", labels=["stage", "outcome"]
        )
        # every outcome of every stage and role seen, zeros too: a rate or a ratio over them is 0, not "no data"
        for stage in sorted({stage for stage, _ in t.units}):
            for outcome in UNIT_OUTCOMES:
                units.add_metric([stage, outcome], t.units[stage, outcome])
        requests = CounterMetricFamily(
            f"{PREFIX}_requests", "Model calls: HTTP requests (ok, error) and cache hits", labels=["role", "outcome"]
        )
        for role in sorted({role for role, _ in t.requests}):
            for outcome in REQUEST_OUTCOMES:
                requests.add_metric([role, outcome], t.requests[role, outcome])
        tokens = CounterMetricFamily(f"{PREFIX}_tokens", "Tokens the servers reported", labels=["role", "direction"])
        for (role, direction), n in sorted(t.tokens.items()):
            tokens.add_metric([role, direction], n)
        cost = CounterMetricFamily(
            f"{PREFIX}_cost_usd", "Cost of the requests at the configured prices", labels=["role"]
        )
        for role, usd in sorted(t.cost_usd.items()):
            cost.add_metric([role], usd)
        samples = CounterMetricFamily(f"{PREFIX}_samples", "Samples this run wrote", labels=["type"])
        for data_type, n in sorted(t.samples.items()):
            samples.add_metric([data_type], n)
        objects = CounterMetricFamily(f"{PREFIX}_objects", "Objects this run took to each state", labels=["state"])
        for state in OBJECT_STATES:
            objects.add_metric([state], t.objects[state])
        yield from (units, requests, tokens, cost, samples, objects)
        yield _histogram(
            f"{PREFIX}_stage_seconds", "Wall time of a stage on one video or clip", "stage", t.stage_seconds
        )
        yield _histogram(f"{PREFIX}_request_seconds", "Latency of one HTTP request", "role", t.request_seconds)
        yield GaugeMetricFamily(f"{PREFIX}_videos_in_flight", "Videos being worked on now", value=t.videos_in_flight)
        # an info metric: exposed as videorefer_engine_run_info{...} 1
        yield InfoMetricFamily(f"{PREFIX}_run", "The run these metrics are of", value=self.info)


def _histogram(name: str, doc: str, label: str, by: dict[str, Histogram]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[label])
    for key, h in sorted(by.items()):
        family.add_metric([key], h.cumulative(), sum_value=h.total)
    return family


@dataclass
class MetricsServer:
    port: int
    _server: Any

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_metrics(port: int, tally: RunTally, info: dict[str, str]) -> MetricsServer:
    """Serve the tally on 127.0.0.1:port (0: a free port) in a daemon thread. Raises OSError if the port is taken.
    Its own registry: two runs in one process (a notebook, the tests) never share or collide on metrics."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(TallyCollector(tally, info))
    server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    return MetricsServer(server.server_port, server)
