from __future__ import annotations

import math

import numpy as np
import pytest

from green_deploy.zoo.metrics import accuracy, language_model_metrics, retrieval_metrics


def test_accuracy_counts_argmax_matches():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0]])
    assert accuracy(logits, np.array([0, 1, 1])) == pytest.approx(2 / 3)


def test_retrieval_ranks_the_paired_document():
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # by cosine: queries 0 and 1 rank their own document first; query 2's document ranks last
    documents = np.array([[1.0, 0.1], [0.7, 0.7], [-1.0, 0.0]])
    metrics = retrieval_metrics(queries, documents)
    assert metrics["top1"] == pytest.approx(2 / 3)
    assert metrics["mrr"] == pytest.approx((1 + 1 + 1 / 3) / 3)


def test_uniform_byte_predictions_cost_eight_bits_per_byte():
    logits = np.zeros((2, 5, 256), dtype=np.float32)
    targets = np.random.default_rng(0).integers(0, 256, size=(2, 5))
    metrics = language_model_metrics(logits, targets)
    assert metrics["bits_per_byte"] == pytest.approx(8.0)


def test_confident_correct_predictions_cost_almost_nothing():
    targets = np.array([[1, 2, 3]])
    logits = np.full((1, 3, 256), -50.0)
    logits[0, np.arange(3), targets[0]] = 50.0
    metrics = language_model_metrics(logits, targets)
    assert metrics["next_byte_accuracy"] == 1.0
    assert metrics["bits_per_byte"] < 1e-6
    assert not math.isnan(metrics["bits_per_byte"])
