"""A deployment's accuracy: scored on a fixed, seeded, stratified subset of the evaluation set,
with a confidence interval per metric, and computed once per artifact.

**Subset.** Scoring every variant on whole test splits took half of the CPU study's time
(bench/results/evaluate_cpu.md), while a metric on 2,000 items is already known to about
+-2 points. ``subset_indices`` (``zoo.metrics``, which the zoo's own test scores use too)
depends only on the split's size, its labels, the cap and a seed, so every variant, target and
study scores the same items; classes keep their shares (largest remainders), and a split no
larger than the cap is used whole. The full study scores whole splits.

**Intervals.** A metric whose item scores are 0 or 1 (accuracy, top-1) is a proportion of
independent items: Wilson's score interval. The others (MRR, next-byte accuracy and bits per
byte per window) get a percentile bootstrap over items, seeded.

**Once per artifact.** A pass depends on the files served, the runtime and how it calls them,
the device and the items scored (``accuracy_key``); never on the target, the cells' batch sizes
or the study, so a second target or batch size reuses it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from green_deploy.zoo.metrics import subset_indices

__all__ = ["MetricInterval", "accuracy_key", "arrays_sha256", "metric_interval", "subset_indices"]

BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class MetricInterval:
    """A metric's two-sided ``confidence`` interval and how it was computed."""

    low: float
    high: float
    method: str  # "wilson" or "bootstrap"
    confidence: float


def metric_interval(scores: np.ndarray, confidence: float = 0.95, seed: int = 0) -> MetricInterval:
    """The interval of the mean of per-item ``scores`` (see the module docstring)."""
    from scipy import stats

    values = np.asarray(scores, dtype=np.float64)
    if np.isin(values, (0.0, 1.0)).all():
        interval = stats.binomtest(int(values.sum()), len(values)).proportion_ci(confidence, method="wilson")
        return MetricInterval(float(interval.low), float(interval.high), "wilson", confidence)
    if len(values) < 2 or np.ptp(values) == 0:
        mean = float(np.mean(values))
        return MetricInterval(mean, mean, "bootstrap", confidence)
    result = stats.bootstrap(
        (values,),
        np.mean,
        confidence_level=confidence,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return MetricInterval(
        float(result.confidence_interval.low), float(result.confidence_interval.high), "bootstrap", confidence
    )


def arrays_sha256(*arrays: np.ndarray | None) -> str:
    """A hash of arrays' dtypes, shapes and bytes (``None`` counts as absent)."""
    digest = hashlib.sha256()
    for array in arrays:
        if array is None:
            digest.update(b"none")
            continue
        values = np.ascontiguousarray(array)
        digest.update(f"{values.dtype.str}{values.shape}".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()


def accuracy_key(
    artifact_sha256: Mapping[str, str], runtime: str, serving_path: str, device: str, items_sha256: str
) -> str:
    """What an accuracy pass depends on (see the module docstring)."""
    key = {
        "files": dict(sorted(artifact_sha256.items())),
        "runtime": runtime,
        "serving_path": serving_path,
        "device": device,
        "items": items_sha256,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
