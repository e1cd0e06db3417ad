"""How two deployments of one variant differ per request: latency seen by the caller and energy
reported by the serving side, e.g. the local HTTP server against the in-process worker.

    local, inproc = LocalDeployer(...), InProcessDeployer()
    comparison = compare_deployments((local, local.deploy(v)), (inproc, inproc.deploy(v)), batch, 200)
    comparison.latency_median_diff_s, comparison.energy_per_request_diff_j, comparison.to_dict()

Requests alternate between the two (A, B, A, B, ...) so that both see the same machine
conditions; a few unrecorded warm-up requests go first. Latency is the caller's wall time of
``Deployer.predict`` (for HTTP: encoding, the loopback round trip, parsing, queueing, the model
call); energy is what the serving core metered for the request, which holds the model call only,
on either path (see ``serving.worker``): a difference in energy is the metering's noise plus
whatever else ran in the process during the window, a difference in latency is the HTTP path.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from green_deploy.deploy.base import Deployer, Deployment, ServerEnergy


@dataclass(frozen=True)
class PathFigures:
    """One deployment's figures over the compared requests (seconds and joules per request)."""

    target: str
    endpoint_url: str
    n_requests: int
    latency_median_s: float
    latency_p90_s: float
    latency_mean_s: float
    energy_per_request_j: float
    energy_per_item_j: float
    energy_measured: bool
    energy_sources: str


@dataclass(frozen=True)
class DeploymentComparison:
    """``second`` minus ``first``: positive means the second path is slower or spends more."""

    model_id: str
    variant_id: str
    n_items_per_request: int
    first: PathFigures
    second: PathFigures
    max_abs_output_diff: float

    @property
    def latency_median_diff_s(self) -> float:
        return self.second.latency_median_s - self.first.latency_median_s

    @property
    def latency_median_ratio(self) -> float:
        return self.second.latency_median_s / self.first.latency_median_s

    @property
    def energy_per_request_diff_j(self) -> float:
        return self.second.energy_per_request_j - self.first.energy_per_request_j

    @property
    def energy_per_request_ratio(self) -> float | None:
        first = self.first.energy_per_request_j
        return None if first == 0 else self.second.energy_per_request_j / first

    def to_dict(self) -> dict[str, Any]:
        """Flat: ``first_*``/``second_*`` figures and the differences (a table row)."""
        row: dict[str, Any] = {
            "model_id": self.model_id,
            "variant_id": self.variant_id,
            "n_items_per_request": self.n_items_per_request,
            "max_abs_output_diff": self.max_abs_output_diff,
            "latency_median_diff_s": self.latency_median_diff_s,
            "latency_median_ratio": self.latency_median_ratio,
            "energy_per_request_diff_j": self.energy_per_request_diff_j,
            "energy_per_request_ratio": self.energy_per_request_ratio,
        }
        for side in ("first", "second"):
            row.update({f"{side}_{k}": v for k, v in asdict(getattr(self, side)).items()})
        return row


def compare_deployments(
    first: tuple[Deployer, Deployment],
    second: tuple[Deployer, Deployment],
    batch: np.ndarray,
    n_requests: int = 100,
    warmup_requests: int = 3,
) -> DeploymentComparison:
    """Send ``batch`` ``n_requests`` times to each deployment, alternating; their figures.

    Raises:
        ValueError: the deployments serve different variants, or ``n_requests`` < 1.
    """
    (_, a), (_, b) = first, second
    if (a.model_id, a.variant_id) != (b.model_id, b.variant_id):
        raise ValueError(
            f"compare deployments of one variant; got {a.model_id}/{a.variant_id} and {b.model_id}/{b.variant_id}"
        )
    if n_requests < 1:
        raise ValueError(f"n_requests must be >= 1, got {n_requests}")
    for _ in range(warmup_requests):
        for deployer, deployment in (first, second):
            deployer.predict(deployment, batch)
    latencies: tuple[list[float], list[float]] = ([], [])
    energies: tuple[list[ServerEnergy], list[ServerEnergy]] = ([], [])
    outputs: list[np.ndarray | None] = [None, None]
    for _ in range(n_requests):
        for side, (deployer, deployment) in enumerate((first, second)):
            started = time.perf_counter()
            out, energy = deployer.predict(deployment, batch)
            latencies[side].append(time.perf_counter() - started)
            energies[side].append(energy)
            outputs[side] = out
    diff = float(np.max(np.abs(np.asarray(outputs[0], np.float64) - np.asarray(outputs[1], np.float64))))
    return DeploymentComparison(
        model_id=a.model_id,
        variant_id=a.variant_id,
        n_items_per_request=len(batch),
        first=_figures(a, latencies[0], energies[0], len(batch)),
        second=_figures(b, latencies[1], energies[1], len(batch)),
        max_abs_output_diff=diff,
    )


def _figures(
    deployment: Deployment, latencies: list[float], energies: list[ServerEnergy], n_items: int
) -> PathFigures:
    seconds = np.asarray(latencies)
    joules = float(np.mean([e.energy_j for e in energies]))
    sources = sorted({f"{c.get('component')}={c.get('source')}" for e in energies for c in e.components})
    return PathFigures(
        target=deployment.target,
        endpoint_url=deployment.endpoint_url,
        n_requests=len(latencies),
        latency_median_s=float(np.median(seconds)),
        latency_p90_s=float(np.percentile(seconds, 90)),
        latency_mean_s=float(np.mean(seconds)),
        energy_per_request_j=joules,
        energy_per_item_j=joules / n_items,
        energy_measured=all(e.measured for e in energies),
        energy_sources="; ".join(sources),
    )
