"""A fastText-style bag of hashed byte n-grams (Joulin et al. 2017), trained from scratch.

N-grams are hashed into buckets with a fixed arithmetic hash (not Python's salted ``hash``), so
an encoded text is the same on every machine and in every process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from green_deploy.zoo.families.base import TWIN_FRAMEWORKS, parse_architecture
from green_deploy.zoo.spec import TRAINING_MODES

_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing multiplier: spreads nearby values apart


@dataclass(frozen=True)
class NgramBagSettings:
    ngram_sizes: tuple[int, ...] = (1, 2, 3)
    max_bytes: int = 256
    n_buckets: int = 32768
    dim: int = 64


def hashed_ngrams(texts: Sequence[str], sizes: Sequence[int], max_bytes: int, n_buckets: int) -> np.ndarray:
    """(N, len(sizes) * max_bytes) int64 bucket ids in [1, n_buckets), 0-padded, of the byte
    n-grams of each text's first ``max_bytes`` UTF-8 bytes."""
    width = len(sizes) * max_bytes
    ids = np.zeros((len(texts), width), dtype=np.int64)
    for row, text in enumerate(texts):
        data = np.frombuffer(text.encode("utf-8")[:max_bytes], dtype=np.uint8).astype(np.uint64)
        parts = []
        for n in sizes:
            if len(data) < n:
                continue
            value = np.full(len(data) - n + 1, np.uint64(n))
            for offset in range(n):
                value = value * np.uint64(257) + data[offset : len(data) - n + 1 + offset]
            mixed = (value * _MIX) >> np.uint64(17)
            parts.append(1 + (mixed % np.uint64(n_buckets - 1)).astype(np.int64))
        if parts:
            row_ids = np.concatenate(parts)
            ids[row, : len(row_ids)] = row_ids
    return ids


class NgramBagFamily:
    name = "ngram_bag"
    frameworks = TWIN_FRAMEWORKS
    tasks = ("classification",)
    training_modes = TRAINING_MODES

    def settings(self, arch: Mapping[str, Any]) -> NgramBagSettings:
        return parse_architecture(NgramBagSettings, arch, self.name)

    def encode(self, examples: Sequence[str], arch: Mapping[str, Any]) -> np.ndarray:
        s = self.settings(arch)
        return hashed_ngrams(examples, s.ngram_sizes, s.max_bytes, s.n_buckets)

    def build_torch(self, arch: Mapping[str, Any], n_outputs: int) -> Any:
        from green_deploy.zoo.families.torch_models import NgramBag

        s = self.settings(arch)
        return NgramBag(s.n_buckets, s.dim, n_outputs)

    def build_keras(self, arch: Mapping[str, Any], n_outputs: int) -> Any:
        import tf_keras

        from green_deploy.zoo.families.keras_layers import MaskedMean

        layers = tf_keras.layers
        s = self.settings(arch)
        inputs = tf_keras.Input((len(s.ngram_sizes) * s.max_bytes,), dtype="int32", name="ngram_ids")
        x = layers.Embedding(s.n_buckets, s.dim, name="embedding")(inputs)
        x = MaskedMean(name="mean")([x, inputs])
        outputs = layers.Dense(n_outputs, name="classifier")(x)
        return tf_keras.Model(inputs, outputs, name=self.name)

    def port_weights(self, torch_model: Any, keras_model: Any) -> None:
        from green_deploy.zoo.families.keras_blocks import port_dense, to_numpy

        keras_model.get_layer("embedding").set_weights([to_numpy(torch_model.embedding.weight)])
        port_dense(torch_model.classifier, keras_model.get_layer("classifier"))


FAMILY = NgramBagFamily()
