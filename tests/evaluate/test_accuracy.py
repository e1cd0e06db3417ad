"""The accuracy subset (deterministic, stratified) and the metrics' intervals, checked against
statsmodels and against what an interval must do: cover the true value at its nominal rate."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

from green_deploy.evaluate.accuracy import accuracy_key, metric_interval, subset_indices
from green_deploy.evaluate.harness import EvaluationSet

LABELS = np.repeat(np.arange(10), [3000, 1500, 1500, 1000, 1000, 500, 500, 400, 400, 200])


def test_the_subset_is_the_same_for_the_same_split_cap_and_seed():
    first = subset_indices(len(LABELS), 2000, seed=0, labels=LABELS)
    assert np.array_equal(first, subset_indices(len(LABELS), 2000, seed=0, labels=LABELS))
    assert not np.array_equal(first, subset_indices(len(LABELS), 2000, seed=1, labels=LABELS))
    assert len(first) == len(np.unique(first)) == 2000 and np.all(np.diff(first) > 0)


def test_every_class_keeps_its_share_of_the_split():
    chosen = subset_indices(len(LABELS), 2000, seed=3, labels=LABELS)
    counts = np.bincount(LABELS[chosen], minlength=10)
    expected = np.bincount(LABELS) * 2000 / len(LABELS)
    assert np.all(np.abs(counts - expected) < 1)  # largest remainders: off by less than one item
    assert counts.sum() == 2000


def test_a_split_no_larger_than_the_cap_is_used_whole():
    assert np.array_equal(subset_indices(500, 2000, seed=0, labels=LABELS[:500]), np.arange(500))
    assert np.array_equal(subset_indices(12000, None, seed=0), np.arange(12000))


def test_items_without_one_label_each_are_drawn_uniformly():
    windows = np.zeros((6151, 63), dtype=np.int64)  # language-model targets: no class per item
    chosen = subset_indices(len(windows), 2000, seed=0, labels=windows)
    assert len(chosen) == 2000 and chosen.max() < 6151


@pytest.mark.parametrize(("successes", "n"), [(1700, 2000), (0, 50), (50, 50), (468, 936)])
def test_proportions_get_the_wilson_interval(successes, n):
    scores = np.r_[np.ones(successes), np.zeros(n - successes)]
    interval = metric_interval(scores, confidence=0.95)
    low, high = proportion_confint(successes, n, alpha=0.05, method="wilson")
    assert interval.method == "wilson"
    assert (interval.low, interval.high) == pytest.approx((low, high), abs=1e-9)


def test_a_mean_of_continuous_scores_gets_a_bootstrap_interval_near_the_normal_one():
    scores = 1.0 / np.random.default_rng(0).integers(1, 20, size=2000)  # reciprocal ranks
    interval = metric_interval(scores, confidence=0.95, seed=0)
    half = 1.96 * scores.std(ddof=1) / np.sqrt(len(scores))
    assert interval.method == "bootstrap"
    assert interval.low == pytest.approx(scores.mean() - half, abs=0.15 * half)
    assert interval.high == pytest.approx(scores.mean() + half, abs=0.15 * half)
    assert metric_interval(scores, seed=0) == interval  # seeded: the same interval again


def test_bootstrap_intervals_cover_the_true_mean_at_about_their_level():
    rng = np.random.default_rng(7)
    true_mean = np.mean(1.0 / np.arange(1, 11))
    covered = 0
    for seed in range(200):
        sample = 1.0 / rng.integers(1, 11, size=300)
        interval = metric_interval(sample, confidence=0.95, seed=seed)
        covered += interval.low <= true_mean <= interval.high
    assert 0.90 <= covered / 200 <= 0.99


def test_a_constant_score_has_a_zero_width_interval():
    interval = metric_interval(np.full(100, 0.25))
    assert (interval.low, interval.high) == (0.25, 0.25)


def test_a_retrieval_subset_keeps_every_document_and_names_each_querys_answer():
    queries = np.arange(3000)[:, None]
    documents = np.arange(3000)[:, None] + 10_000
    data = EvaluationSet("retrieval", "mrr", queries, None, documents)
    subset = data.subset(2000, seed=0)
    assert subset.n_items == 2000 and subset.split_items == 3000
    assert len(subset.pairs) == 3000  # every document stays a candidate
    assert np.array_equal(subset.x[:, 0], subset.answers)  # query i still answers to document i


def test_the_accuracy_key_follows_files_runtime_device_and_items_not_the_rest():
    files = {"model.onnx": "a" * 64}
    key = accuracy_key(files, "onnxruntime", "ONNX Runtime session", "cpu", "items1")
    assert key == accuracy_key(dict(files), "onnxruntime", "ONNX Runtime session", "cpu", "items1")
    assert key != accuracy_key(
        {"model.onnx": "b" * 64}, "onnxruntime", "ONNX Runtime session", "cpu", "items1"
    )
    assert key != accuracy_key(files, "onnxruntime", "ONNX Runtime session", "cuda", "items1")
    assert key != accuracy_key(files, "onnxruntime", "ONNX Runtime session", "cpu", "items2")
