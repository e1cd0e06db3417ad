"""The task metrics: what scikit-learn computes, the numbers the zoo's hand formulas gave before
(kept here as references), and the evidence each metric's interval is found from."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, label_ranking_average_precision_score, top_k_accuracy_score

from green_deploy.errors import ConfigError
from green_deploy.zoo.metrics import (
    METRICS,
    ClassificationEvidence,
    LanguageModelEvidence,
    RetrievalEvidence,
    better_sign,
    metric_values,
    task_metrics,
)


def old_retrieval_scores(queries, documents, answers=None):
    """The zoo's hand formula before scikit-learn: rank = 1 + documents scored strictly higher."""
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(min=1e-12)
    documents = documents / np.linalg.norm(documents, axis=1, keepdims=True).clip(min=1e-12)
    similarity = queries @ documents.T
    answer_index = np.arange(len(queries)) if answers is None else np.asarray(answers)
    correct = similarity[np.arange(len(queries)), answer_index][:, np.newaxis]
    ranks = 1 + np.sum(similarity > correct, axis=1)
    return {"top1": (ranks == 1).astype(np.float64), "mrr": 1.0 / ranks}


def old_language_model_scores(logits, targets):
    """The zoo's hand formula before PyTorch's cross-entropy, per window."""
    flat = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    flat_targets = targets.reshape(-1)
    shifted = flat - flat.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    nll_bits = -log_probs[np.arange(len(flat_targets)), flat_targets] / math.log(2)
    hits = flat.argmax(axis=1) == flat_targets
    return {
        "next_byte_accuracy": hits.reshape(targets.shape).mean(axis=1),
        "bits_per_byte": nll_bits.reshape(targets.shape).mean(axis=1),
    }


@pytest.fixture
def classified():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 12, 500)
    logits = rng.normal(size=(500, 12)).astype(np.float32)
    logits[np.arange(500), labels] += 1.0
    return ClassificationEvidence(logits, labels)


def test_classification_metrics_are_scikit_learns(classified):
    values = metric_values(classified)
    assert values["accuracy"] == np.mean(np.argmax(classified.logits, axis=1) == classified.labels)
    assert values["macro_f1"] == f1_score(
        classified.labels, classified.logits.argmax(axis=1), average="macro", zero_division=0
    )
    assert values["top5_accuracy"] == top_k_accuracy_score(classified.labels, classified.logits, k=5)
    assert values["accuracy"] < values["top5_accuracy"] < 1


def test_macro_f1_weighs_a_rare_class_as_much_as_a_common_one():
    labels = np.r_[np.zeros(95, int), np.ones(5, int)]
    always_zero = np.tile([5.0, 0.0], (100, 1))  # never predicts the rare class
    values = metric_values(ClassificationEvidence(always_zero, labels))
    assert values["accuracy"] == 0.95
    assert values["macro_f1"] == pytest.approx((2 * 95 / 195 + 0) / 2)  # the rare class's F1 is 0


def test_a_class_absent_from_the_items_counts_as_zero_in_macro_f1():
    logits = np.eye(3)[[0, 1, 0, 1]] * 4  # three classes, the third never seen nor predicted
    values = metric_values(ClassificationEvidence(logits, np.array([0, 1, 0, 1])))
    assert values["accuracy"] == 1.0
    assert values["macro_f1"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("n_classes", [2, 5])
def test_top5_accuracy_of_five_classes_or_fewer_is_every_item(n_classes):
    rng = np.random.default_rng(1)
    evidence = ClassificationEvidence(rng.normal(size=(50, n_classes)), rng.integers(0, n_classes, 50))
    assert metric_values(evidence)["top5_accuracy"] == 1.0


def test_retrieval_ranks_the_paired_document():
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # by cosine: queries 0 and 1 rank their own document first; query 2's document ranks last
    documents = np.array([[1.0, 0.1], [0.7, 0.7], [-1.0, 0.0]])
    evidence = RetrievalEvidence.from_embeddings(queries, documents)
    assert metric_values(evidence) == pytest.approx({"top1": 2 / 3, "mrr": (1 + 1 + 1 / 3) / 3})
    assert METRICS["retrieval"]["mrr"].item_scores(evidence).tolist() == pytest.approx([1, 1, 1 / 3])


def test_retrieval_answers_name_each_querys_document_among_all():
    documents = np.array([[1.0, 0.1], [0.7, 0.7], [-1.0, 0.0]])
    # a subset of the queries (1 and 2) still ranks all three documents
    evidence = RetrievalEvidence.from_embeddings(
        np.array([[0.0, 1.0], [1.0, 1.0]]), documents, answers=np.array([1, 2])
    )
    assert evidence.ranks.tolist() == [1, 3]
    assert metric_values(evidence)["mrr"] == pytest.approx((1 + 1 / 3) / 2)


def test_retrieval_metrics_equal_the_old_formulas_and_scikit_learn_on_random_embeddings():
    rng = np.random.default_rng(2)
    queries, documents = rng.normal(size=(300, 16)), rng.normal(size=(400, 16))
    answers = rng.permutation(400)[:300]
    evidence = RetrievalEvidence.from_embeddings(queries, documents, answers)
    old = old_retrieval_scores(queries, documents, answers)
    values = metric_values(evidence)
    assert values["top1"] == pytest.approx(old["top1"].mean(), abs=1e-12)
    assert values["mrr"] == pytest.approx(old["mrr"].mean(), abs=1e-12)
    assert METRICS["retrieval"]["mrr"].item_scores(evidence) == pytest.approx(old["mrr"], abs=1e-12)
    relevant = np.zeros((300, 400))
    relevant[np.arange(300), answers] = 1
    assert values["mrr"] == label_ranking_average_precision_score(relevant, evidence.similarity)


def test_documents_tied_with_the_answer_rank_above_it():
    # every document the same: the old formula gave every query rank 1 (a perfect score)
    collapsed = np.ones((4, 3))
    evidence = RetrievalEvidence.from_embeddings(collapsed, np.ones((5, 3)))
    assert old_retrieval_scores(collapsed, np.ones((5, 3)))["mrr"].mean() == 1.0
    assert metric_values(evidence) == pytest.approx({"top1": 0.0, "mrr": 1 / 5})
    # one tie: the answer shares first place with another document, so it ranks second
    tied = RetrievalEvidence.from_embeddings(
        np.array([[1.0, 0.0]]), np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    )
    assert tied.ranks.tolist() == [2]


def test_uniform_byte_predictions_cost_eight_bits_per_byte():
    logits = np.zeros((2, 5, 256), dtype=np.float32)
    targets = np.random.default_rng(0).integers(0, 256, size=(2, 5))
    evidence = LanguageModelEvidence.from_logits(logits, targets)
    values = metric_values(evidence)
    assert values["bits_per_byte"] == pytest.approx(8.0)
    assert values["perplexity"] == pytest.approx(256.0)  # a uniform guess among 256 bytes


def test_confident_correct_predictions_cost_almost_nothing_per_window():
    targets = np.array([[1, 2, 3], [4, 5, 6]])
    logits = np.full((2, 3, 256), -50.0)
    logits[0, np.arange(3), targets[0]] = 50.0  # window 0 right everywhere, window 1 wrong
    evidence = LanguageModelEvidence.from_logits(logits, targets)
    assert METRICS["language_modeling"]["next_byte_accuracy"].item_scores(evidence).tolist() == [1.0, 0.0]
    bits = METRICS["language_modeling"]["bits_per_byte"].item_scores(evidence)
    assert bits[0] < 1e-6 and math.isfinite(bits[1])


def test_language_model_metrics_equal_the_old_formulas_on_random_logits():
    rng = np.random.default_rng(3)
    logits = (rng.normal(size=(6, 40, 256)) * 3).astype(np.float32)
    targets = rng.integers(0, 256, size=(6, 40))
    targets[:, ::4] = logits[:, ::4].argmax(axis=-1)  # some hits
    evidence = LanguageModelEvidence.concatenate(
        [
            LanguageModelEvidence.from_logits(logits[:4], targets[:4]),
            LanguageModelEvidence.from_logits(logits[4:], targets[4:]),
        ]
    )
    old = old_language_model_scores(logits, targets)
    values = metric_values(evidence)
    metrics = METRICS["language_modeling"]
    for name in ("next_byte_accuracy", "bits_per_byte"):
        assert values[name] == pytest.approx(old[name].mean(), rel=1e-12)
        assert metrics[name].item_scores(evidence) == pytest.approx(old[name], rel=1e-12)
    assert values["perplexity"] == pytest.approx(2 ** old["bits_per_byte"].mean(), rel=1e-12)


@pytest.mark.parametrize("task", sorted(METRICS))
def test_a_mean_metric_is_its_item_scores_mean(task, classified):
    rng = np.random.default_rng(4)
    evidence = {
        "classification": classified,
        "retrieval": RetrievalEvidence.from_embeddings(rng.normal(size=(50, 8)), rng.normal(size=(60, 8))),
        "language_modeling": LanguageModelEvidence.from_logits(
            rng.normal(size=(7, 9, 256)), rng.integers(0, 256, (7, 9))
        ),
    }[task]
    for metric in METRICS[task].values():
        if metric.interval == "mean":
            mean = float(np.mean(metric.item_scores(evidence)))
            assert metric.value(evidence) == pytest.approx((metric.of_mean or float)(mean), rel=1e-12)
        if metric.interval == "wilson":  # a share of the items
            hits = metric.value(evidence) * len(evidence)
            assert hits == pytest.approx(round(hits))


def test_macro_f1_of_many_resamples_at_once_equals_one_call_per_resample(classified):
    index = np.random.default_rng(5).integers(0, len(classified), (30, len(classified)))
    macro_f1 = METRICS["classification"]["macro_f1"]
    one_by_one = [macro_f1.value(classified.take(row)) for row in index]
    assert macro_f1.on_resamples(classified, index) == pytest.approx(one_by_one, abs=1e-15)


def test_metrics_say_which_way_is_better():
    names = [name for metrics in METRICS.values() for name in metrics]
    assert len(names) == len(set(names))  # a name alone says which metric, and so which way
    assert {name for name in names if better_sign(name) < 0} == {"bits_per_byte", "perplexity"}
    assert better_sign("macro_f1") == 1.0
    with pytest.raises(ConfigError, match="unknown metric 'f1'; known: accuracy, bits_per_byte"):
        better_sign("f1")


def test_an_unknown_task_is_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match="classification.*language_modeling.*retrieval"):
        task_metrics("detection")
