"""The accuracy subset (deterministic, stratified) and the metrics' intervals, checked against
statsmodels and against what an interval must do: cover the true value at its nominal rate,
contain the point estimate and narrow with more items."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

from green_deploy.evaluate.accuracy import accuracy_key, mean_interval, metric_interval, subset_indices
from green_deploy.evaluate.harness import EvaluationSet
from green_deploy.zoo.metrics import (
    METRICS,
    ClassificationEvidence,
    LanguageModelEvidence,
    RetrievalEvidence,
    metric_values,
)

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
    interval = mean_interval(scores, confidence=0.95)
    low, high = proportion_confint(successes, n, alpha=0.05, method="wilson")
    assert interval.method == "wilson"
    assert (interval.low, interval.high) == pytest.approx((low, high), abs=1e-9)


def test_a_mean_of_continuous_scores_gets_a_bootstrap_interval_near_the_normal_one():
    scores = 1.0 / np.random.default_rng(0).integers(1, 20, size=2000)  # reciprocal ranks
    interval = mean_interval(scores, confidence=0.95, seed=0)
    half = 1.96 * scores.std(ddof=1) / np.sqrt(len(scores))
    assert interval.method == "bootstrap"
    assert interval.low == pytest.approx(scores.mean() - half, abs=0.15 * half)
    assert interval.high == pytest.approx(scores.mean() + half, abs=0.15 * half)
    assert mean_interval(scores, seed=0) == interval  # seeded: the same interval again


def test_bootstrap_intervals_cover_the_true_mean_at_about_their_level():
    rng = np.random.default_rng(7)
    true_mean = np.mean(1.0 / np.arange(1, 11))
    covered = 0
    for seed in range(200):
        sample = 1.0 / rng.integers(1, 11, size=300)
        interval = mean_interval(sample, confidence=0.95, seed=seed)
        covered += interval.low <= true_mean <= interval.high
    assert 0.90 <= covered / 200 <= 0.99


def test_a_constant_score_has_a_zero_width_interval():
    interval = mean_interval(np.full(100, 0.25))
    assert (interval.low, interval.high) == (0.25, 0.25)


def test_a_retrieval_subset_keeps_every_document_and_names_each_querys_answer():
    queries = np.arange(3000)[:, None]
    documents = np.arange(3000)[:, None] + 10_000
    data = EvaluationSet("retrieval", "mrr", queries, None, documents)
    subset = data.subset(2000, seed=0)
    assert subset.n_items == 2000 and subset.split_items == 3000
    assert len(subset.pairs) == 3000  # every document stays a candidate
    assert np.array_equal(subset.x[:, 0], subset.answers)  # query i still answers to document i


def test_the_accuracy_key_follows_files_runtime_device_items_and_metrics_not_the_rest():
    files = {"model.onnx": "a" * 64}
    path = "ONNX Runtime session"
    metrics = ("accuracy", "macro_f1")
    key = accuracy_key(files, "onnxruntime", path, "cpu", "items1", metrics)
    assert key == accuracy_key(dict(files), "onnxruntime", path, "cpu", "items1", metrics[::-1])
    assert key != accuracy_key({"model.onnx": "b" * 64}, "onnxruntime", path, "cpu", "items1", metrics)
    assert key != accuracy_key(files, "onnxruntime", path, "cuda", "items1", metrics)
    assert key != accuracy_key(files, "onnxruntime", path, "cpu", "items2", metrics)
    # a pass stored before the task gained a metric lacks it: not reused
    assert key != accuracy_key(files, "onnxruntime", path, "cpu", "items1", ("accuracy",))


def _evidence(task: str, n_items: int, seed: int):
    """Scores of a middling model on ``n_items`` random items of ``task``."""
    rng = np.random.default_rng(seed)
    if task == "classification":
        labels = rng.choice(8, n_items, p=[0.4, 0.2, 0.1, 0.1, 0.08, 0.06, 0.04, 0.02])
        logits = rng.normal(size=(n_items, 8))
        logits[np.arange(n_items), labels] += 1.5
        return ClassificationEvidence(logits, labels)
    if task == "retrieval":
        documents = rng.normal(size=(n_items, 8))
        return RetrievalEvidence.from_embeddings(documents + rng.normal(size=documents.shape), documents)
    targets = rng.integers(0, 256, (n_items, 16))
    logits = rng.normal(size=(n_items, 16, 256))
    logits[np.arange(n_items)[:, None], np.arange(16), targets] += rng.exponential(4.0, (n_items, 16))
    return LanguageModelEvidence.from_logits(logits, targets)


@pytest.mark.parametrize(("task", "name"), [(t, m) for t, metrics in METRICS.items() for m in metrics])
def test_every_metric_has_an_interval_around_it_that_narrows_with_more_items(task, name):
    metric = METRICS[task][name]
    widths = []
    for n_items in (200, 1600):
        evidence = _evidence(task, n_items, seed=n_items)
        value = metric_values(evidence)[name]
        interval = metric_interval(metric, evidence)
        assert interval.low <= value <= interval.high
        assert interval.method == ("wilson" if metric.interval == "wilson" else "bootstrap")
        widths.append(interval.high - interval.low)
    assert widths[1] < 0.6 * widths[0]  # ~1/sqrt(8) of it


def test_macro_f1_gets_a_bootstrap_interval_repeatable_by_its_seed():
    evidence = _evidence("classification", 500, seed=0)
    macro_f1 = METRICS["classification"]["macro_f1"]
    interval = metric_interval(macro_f1, evidence, seed=0)
    assert interval.method == "bootstrap"
    assert metric_interval(macro_f1, evidence, seed=0) == interval
    assert metric_interval(macro_f1, evidence, seed=1) != interval
    assert metric_interval(macro_f1, evidence, confidence=0.5).high < interval.high


def test_macro_f1_intervals_cover_the_population_value_at_about_their_level():
    population = _evidence("classification", 200_000, seed=99)
    true_value = metric_values(population)["macro_f1"]
    macro_f1 = METRICS["classification"]["macro_f1"]
    draws = np.random.default_rng(3)
    covered = 0
    for seed in range(60):
        sample = population.take(draws.choice(len(population), 400, replace=False))
        interval = metric_interval(macro_f1, sample, seed=seed)
        covered += interval.low <= true_value <= interval.high
    assert 0.85 <= covered / 60 <= 1.0


def test_perplexity_has_the_interval_of_bits_per_byte_mapped():
    evidence = _evidence("language_modeling", 300, seed=0)
    metrics = METRICS["language_modeling"]
    bits = metric_interval(metrics["bits_per_byte"], evidence)
    perplexity = metric_interval(metrics["perplexity"], evidence)
    assert (perplexity.low, perplexity.high) == pytest.approx((2**bits.low, 2**bits.high), rel=1e-9)


def test_a_share_of_items_gets_the_wilson_interval_of_its_count():
    evidence = _evidence("classification", 300, seed=5)
    top5 = METRICS["classification"]["top5_accuracy"]
    hits = round(metric_values(evidence)["top5_accuracy"] * 300)
    low, high = proportion_confint(hits, 300, alpha=0.05, method="wilson")
    interval = metric_interval(top5, evidence)
    assert (interval.method, interval.low, interval.high) == (
        "wilson",
        pytest.approx(low),
        pytest.approx(high),
    )


def test_a_metric_of_one_item_has_a_zero_width_interval():
    evidence = ClassificationEvidence(np.array([[2.0, 1.0, 0.0]]), np.array([0]))
    interval = metric_interval(METRICS["classification"]["macro_f1"], evidence)
    assert interval.low == interval.high == metric_values(evidence)["macro_f1"]
