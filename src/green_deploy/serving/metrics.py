"""Prometheus metrics of one server, in a registry of its own (never the process-global one,
so two apps in one process, as in tests, keep separate counts).

Names and units: ``green_deploy_http_requests_total{endpoint,status}``,
``green_deploy_http_request_duration_seconds{endpoint}``, ``green_deploy_request_errors_total{code}``,
``green_deploy_inference_duration_seconds`` and ``green_deploy_energy_windows_total{shared}``
(one per energy window),
``green_deploy_predicted_items_total``, ``green_deploy_energy_joules_total{component,source,measured}``
(the sum of every response's energy, so it equals what the responses reported) and
``green_deploy_request_energy_joules{component,source}`` (a histogram, one observation per request).
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from green_deploy.energy import EnergyMeasurement
from green_deploy.serving.worker import RequestEnergy

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ENERGY_BUCKETS_J = tuple(m * 10.0**e for e in range(-6, 3) for m in (1.0, 2.5, 5.0))


class ServingMetrics:
    def __init__(self, model: str, runtime: str):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "green_deploy_http_requests", "HTTP requests answered, by endpoint and status code",
            ["endpoint", "status"], registry=r,
        )  # fmt: skip
        self.request_duration = Histogram(
            "green_deploy_http_request_duration_seconds",
            "Server-side time from the request's headers to the end of the response, seconds",
            ["endpoint"], buckets=LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "green_deploy_request_errors", "Refused or failed requests, by error code", ["code"], registry=r
        )
        self.inference_duration = Histogram(
            "green_deploy_inference_duration_seconds",
            "Duration of one metered model call (energy window), seconds",
            buckets=LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.windows = Counter(
            "green_deploy_energy_windows", "Metered model calls, by whether requests shared one (micro-batching)",
            ["shared"], registry=r,
        )  # fmt: skip
        self.items = Counter("green_deploy_predicted_items", "Items predicted", registry=r)
        self.energy = Counter(
            "green_deploy_energy_joules",
            "Server-side energy attributed to answered predictions, joules, by component and source",
            ["component", "source", "measured"], registry=r,
        )  # fmt: skip
        self.request_energy = Histogram(
            "green_deploy_request_energy_joules",
            "Energy of one prediction request, joules, by component and source",
            ["component", "source"], buckets=ENERGY_BUCKETS_J, registry=r,
        )  # fmt: skip
        info = Gauge(
            "green_deploy_model_info", "The model served (always 1)", ["model", "runtime"], registry=r
        )
        info.labels(model=model, runtime=runtime).set(1)
        self._energy_children: dict[tuple[str, str, bool], tuple[Counter, Histogram]] = {}

    def observe_prediction(self, energy: RequestEnergy) -> None:
        self.items.inc(energy.n_items)
        for c in energy.components:
            key = (c.component, c.source, c.measured)
            children = self._energy_children.get(key)
            if children is None:  # labels() costs a lock and a lookup: once per source, not per request
                children = self._energy_children[key] = (
                    self.energy.labels(c.component, c.source, str(c.measured).lower()),
                    self.request_energy.labels(c.component, c.source),
                )
            children[0].inc(max(c.energy_j, 0.0))
            children[1].observe(c.energy_j)

    def observe_window(self, measurement: EnergyMeasurement, n_requests: int) -> None:
        """One metered model call (called from the worker thread; prometheus_client is thread-safe)."""
        self.inference_duration.observe(measurement.duration_s)
        self.windows.labels(str(n_requests > 1).lower()).inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
