"""Task metrics computed from model outputs (numpy), identical for both frameworks.

Each task is scored per item (an example, a query, a window of bytes) first; a metric is the
mean of its item scores, so the same scores give the metric's confidence interval
(``green_deploy.evaluate.accuracy``).
"""

from __future__ import annotations

import math

import numpy as np


def subset_indices(
    n_items: int, max_items: int | None, seed: int, labels: np.ndarray | None = None
) -> np.ndarray:
    """Sorted indices of at most ``max_items`` of ``n_items`` (all of them when ``max_items`` is
    ``None`` or not smaller), drawn with ``seed``; with one label per item, each class keeps
    its share of the split (largest remainders get the items left over)."""
    if max_items is None or n_items <= max_items:
        return np.arange(n_items)
    rng = np.random.default_rng(seed)
    if labels is None or np.ndim(labels) != 1 or len(labels) != n_items:
        return np.sort(rng.choice(n_items, max_items, replace=False))
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * max_items / n_items
    take = np.floor(quota).astype(int)
    leftover = max_items - int(take.sum())
    take[np.argsort(take - quota, kind="stable")[:leftover]] += 1
    chosen = [
        rng.choice(np.flatnonzero(labels == label), count, replace=False)
        for label, count in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


def classification_scores(logits: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per example: 1.0 when the arg-max class is the label."""
    return {"accuracy": (np.argmax(logits, axis=-1) == labels).astype(np.float64)}


def retrieval_scores(
    query_embeddings: np.ndarray, document_embeddings: np.ndarray, answers: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per query: top-1 hit and reciprocal rank of its answer (document ``answers[i]``, by default
    document i) among all documents, ranked by cosine similarity."""
    queries = query_embeddings / np.linalg.norm(query_embeddings, axis=1, keepdims=True).clip(min=1e-12)
    documents = document_embeddings / np.linalg.norm(document_embeddings, axis=1, keepdims=True).clip(
        min=1e-12
    )
    similarity = queries @ documents.T
    answer_index = np.arange(len(queries)) if answers is None else np.asarray(answers)
    correct = similarity[np.arange(len(queries)), answer_index][:, np.newaxis]
    ranks = 1 + np.sum(similarity > correct, axis=1)
    return {"top1": (ranks == 1).astype(np.float64), "mrr": 1.0 / ranks}


def language_model_scores(logits: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Per window: next-byte accuracy and bits per byte (mean cross-entropy in bits) over its
    positions."""
    flat = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    flat_targets = targets.reshape(-1)
    shifted = flat - flat.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    nll_bits = -log_probs[np.arange(len(flat_targets)), flat_targets] / math.log(2)
    hits = flat.argmax(axis=1) == flat_targets
    shape = targets.shape if targets.ndim > 1 else (1, -1)
    return {
        "next_byte_accuracy": hits.reshape(shape).mean(axis=1),
        "bits_per_byte": nll_bits.reshape(shape).mean(axis=1),
    }
