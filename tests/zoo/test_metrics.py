from __future__ import annotations

import math

import numpy as np
import pytest

from green_deploy.zoo.metrics import classification_scores, language_model_scores, retrieval_scores


def test_accuracy_counts_argmax_matches():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0]])
    scores = classification_scores(logits, np.array([0, 1, 1]))["accuracy"]
    assert scores.tolist() == [1.0, 1.0, 0.0]


def test_retrieval_ranks_the_paired_document():
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # by cosine: queries 0 and 1 rank their own document first; query 2's document ranks last
    documents = np.array([[1.0, 0.1], [0.7, 0.7], [-1.0, 0.0]])
    scores = retrieval_scores(queries, documents)
    assert scores["top1"].mean() == pytest.approx(2 / 3)
    assert scores["mrr"].tolist() == pytest.approx([1, 1, 1 / 3])


def test_retrieval_answers_name_each_querys_document_among_all():
    documents = np.array([[1.0, 0.1], [0.7, 0.7], [-1.0, 0.0]])
    # a subset of the queries (1 and 2) still ranks all three documents
    scores = retrieval_scores(np.array([[0.0, 1.0], [1.0, 1.0]]), documents, answers=np.array([1, 2]))
    assert scores["mrr"].tolist() == pytest.approx([1, 1 / 3])


def test_uniform_byte_predictions_cost_eight_bits_per_byte():
    logits = np.zeros((2, 5, 256), dtype=np.float32)
    targets = np.random.default_rng(0).integers(0, 256, size=(2, 5))
    scores = language_model_scores(logits, targets)
    assert scores["bits_per_byte"].tolist() == pytest.approx([8.0, 8.0])


def test_confident_correct_predictions_cost_almost_nothing_per_window():
    targets = np.array([[1, 2, 3], [4, 5, 6]])
    logits = np.full((2, 3, 256), -50.0)
    logits[0, np.arange(3), targets[0]] = 50.0  # window 0 right everywhere, window 1 wrong
    scores = language_model_scores(logits, targets)
    assert scores["next_byte_accuracy"].tolist() == [1.0, 0.0]
    assert scores["bits_per_byte"][0] < 1e-6
    assert not math.isnan(scores["bits_per_byte"][1])
