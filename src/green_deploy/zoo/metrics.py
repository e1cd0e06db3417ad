"""Task metrics computed from model outputs (numpy), identical for both frameworks."""

from __future__ import annotations

import math

import numpy as np


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def retrieval_metrics(query_embeddings: np.ndarray, document_embeddings: np.ndarray) -> dict[str, float]:
    """Top-1 accuracy and mean reciprocal rank when query i's answer is document i, ranking all
    documents by cosine similarity."""
    queries = query_embeddings / np.linalg.norm(query_embeddings, axis=1, keepdims=True).clip(min=1e-12)
    documents = document_embeddings / np.linalg.norm(document_embeddings, axis=1, keepdims=True).clip(
        min=1e-12
    )
    similarity = queries @ documents.T
    correct = np.diag(similarity)[:, np.newaxis]
    ranks = 1 + np.sum(similarity > correct, axis=1)
    return {"top1": float(np.mean(ranks == 1)), "mrr": float(np.mean(1.0 / ranks))}


def language_model_metrics(logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Next-byte accuracy and bits per byte (mean cross-entropy in bits) over every position."""
    flat = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    flat_targets = targets.reshape(-1)
    shifted = flat - flat.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    nll_nats = -log_probs[np.arange(len(flat_targets)), flat_targets].mean()
    return {
        "next_byte_accuracy": float(np.mean(flat.argmax(axis=1) == flat_targets)),
        "bits_per_byte": float(nll_nats / math.log(2)),
    }
