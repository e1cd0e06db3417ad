"""A deployment's accuracy: scored on a fixed, seeded, stratified subset of the evaluation set,
with a confidence interval per metric, and computed once per artifact.

**Subset.** Scoring every variant on whole test splits took half of the CPU study's time
(bench/results/evaluate_cpu.md), while a metric on 2,000 items is already known to about
+-2 points. ``subset_indices`` (``zoo.metrics``, which the zoo's own test scores use too)
depends only on the split's size, its labels, the cap and a seed, so every variant, target and
study scores the same items; classes keep their shares (largest remainders), and a split no
larger than the cap is used whole. The full study scores whole splits.

**Intervals.** Each metric says which interval fits it (``zoo.metrics.Metric``). A share of
independent items (accuracy, top-5 accuracy, top-1) gets Wilson's score interval. A mean of
per-item scores (MRR, and next-byte accuracy and bits per byte per window) gets a percentile
bootstrap of that mean over items, seeded; perplexity, exp of the mean negative log-likelihood,
gets that mean's interval through exp. A metric that is no mean (macro-F1) gets a percentile
bootstrap over items too, its own library function computed again on every resample. For
macro-F1, 2,000 resamples of 2,000 items (10 or 100 classes) take 0.4-0.5 s on two busy CPU
cores, one ``f1_score`` call per batch of 250 resamples (``zoo.metrics``); one call per resample
gives the same interval in 3.5-4.7 s.

**Once per artifact.** A pass depends on the files served, the runtime and how it calls them,
the device, the items scored and the metrics computed (``accuracy_key``: a pass stored before a
task gained a metric lacks it); never on the target, the cells' batch sizes or the study, so a
second target or batch size reuses it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from green_deploy.zoo.metrics import Evidence, Metric, subset_indices

__all__ = [
    "MetricInterval",
    "accuracy_key",
    "arrays_sha256",
    "mean_interval",
    "metric_interval",
    "subset_indices",
]

BOOTSTRAP_RESAMPLES = 2000
RESAMPLE_BATCH = 250  # resamples drawn at once, so memory stays small on whole splits


@dataclass(frozen=True)
class MetricInterval:
    """A metric's two-sided ``confidence`` interval and how it was computed."""

    low: float
    high: float
    method: str  # "wilson" or "bootstrap"
    confidence: float


def metric_interval(
    metric: Metric[Any], evidence: Evidence, confidence: float = 0.95, seed: int = 0
) -> MetricInterval:
    """The interval of ``metric`` on the items of ``evidence`` (see the module docstring)."""
    if metric.interval == "wilson":
        return wilson_interval(round(metric.value(evidence) * len(evidence)), len(evidence), confidence)
    if metric.interval == "mean":
        assert metric.item_scores is not None  # Metric checks it
        interval = mean_interval(metric.item_scores(evidence), confidence, seed)
        if metric.of_mean is None:
            return interval
        return replace(interval, low=metric.of_mean(interval.low), high=metric.of_mean(interval.high))
    return resampled_interval(metric, evidence, confidence, seed)


def wilson_interval(successes: int, n_items: int, confidence: float = 0.95) -> MetricInterval:
    """Wilson's score interval of a proportion of ``successes`` among ``n_items``."""
    from scipy import stats

    interval = stats.binomtest(successes, n_items).proportion_ci(confidence, method="wilson")
    return MetricInterval(float(interval.low), float(interval.high), "wilson", confidence)


def mean_interval(scores: np.ndarray, confidence: float = 0.95, seed: int = 0) -> MetricInterval:
    """The interval of the mean of per-item ``scores``: Wilson's when they are all 0 or 1, else
    a percentile bootstrap."""
    from scipy import stats

    values = np.asarray(scores, dtype=np.float64)
    if np.isin(values, (0.0, 1.0)).all():
        return wilson_interval(int(values.sum()), len(values), confidence)
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


def resampled_interval(
    metric: Metric[Any], evidence: Evidence, confidence: float = 0.95, seed: int = 0
) -> MetricInterval:
    """A percentile bootstrap of ``metric`` over the items of ``evidence``: the metric computed
    again on ``BOOTSTRAP_RESAMPLES`` resamples drawn with ``seed``, a batch at a time (a batch's
    indices are resamples x items)."""
    n_items = len(evidence)
    if n_items < 2:
        point = metric.value(evidence)
        return MetricInterval(point, point, "bootstrap", confidence)
    rng = np.random.default_rng(seed)
    sizes = np.diff(np.r_[0:BOOTSTRAP_RESAMPLES:RESAMPLE_BATCH, BOOTSTRAP_RESAMPLES])
    values = np.concatenate(
        [metric.on_resamples(evidence, rng.integers(0, n_items, (k, n_items))) for k in sizes]
    )
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return MetricInterval(float(low), float(high), "bootstrap", confidence)


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
    artifact_sha256: Mapping[str, str],
    runtime: str,
    serving_path: str,
    device: str,
    items_sha256: str,
    metrics: Sequence[str],
) -> str:
    """What an accuracy pass depends on (see the module docstring)."""
    key = {
        "files": dict(sorted(artifact_sha256.items())),
        "runtime": runtime,
        "serving_path": serving_path,
        "device": device,
        "items": items_sha256,
        "metrics": sorted(metrics),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
