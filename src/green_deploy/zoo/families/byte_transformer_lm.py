"""A tiny causal byte-level transformer language model trained on source code.

Works on raw bytes (vocabulary 256, no tokenizer to ship); the model predicts every next byte
of a window, which gives next-byte accuracy and bits per byte.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from green_deploy.zoo.families.base import TWIN_FRAMEWORKS, parse_architecture
from green_deploy.zoo.spec import TRAINING_MODES

VOCAB = 256


@dataclass(frozen=True)
class ByteLMSettings:
    context: int = 64
    dim: int = 64
    depth: int = 2
    heads: int = 4
    mlp_dim: int = 128


def byte_windows(texts: Sequence[bytes], length: int) -> np.ndarray:
    """Non-overlapping windows of ``length`` bytes cut from each text (a short tail is dropped),
    so no window spans two files."""
    windows = [
        np.frombuffer(text[: len(text) // length * length], dtype=np.uint8).reshape(-1, length)
        for text in texts
        if len(text) >= length
    ]
    if not windows:
        return np.zeros((0, length), dtype=np.int64)
    return np.concatenate(windows).astype(np.int64)


class ByteTransformerLMFamily:
    name = "byte_transformer_lm"
    frameworks = TWIN_FRAMEWORKS
    tasks = ("language_modeling",)
    training_modes = TRAINING_MODES

    def settings(self, arch: Mapping[str, Any]) -> ByteLMSettings:
        return parse_architecture(ByteLMSettings, arch, self.name)

    def encode(self, examples: Sequence[bytes], arch: Mapping[str, Any]) -> np.ndarray:
        """Windows of context + 1 bytes: the model reads the first ``context`` and predicts the last."""
        return byte_windows(examples, self.settings(arch).context + 1)

    def build_torch(self, arch: Mapping[str, Any], n_outputs: int) -> Any:
        from green_deploy.zoo.families.torch_models import ByteTransformerLM

        s = self.settings(arch)
        return ByteTransformerLM(s.context, s.dim, s.depth, s.heads, s.mlp_dim, VOCAB)

    def build_keras(self, arch: Mapping[str, Any], n_outputs: int) -> Any:
        import tf_keras

        from green_deploy.zoo.families.keras_blocks import transformer_block
        from green_deploy.zoo.families.keras_layers import PositionEmbedding
        from green_deploy.zoo.families.torch_models import LAYER_NORM_EPS

        layers = tf_keras.layers
        s = self.settings(arch)
        inputs = tf_keras.Input((s.context,), dtype="int32", name="byte_ids")
        x = layers.Embedding(VOCAB, s.dim, name="byte_embedding")(inputs)
        x = PositionEmbedding(s.context, name="position_embedding")(x)
        for index in range(s.depth):
            x = transformer_block(x, s.dim, s.heads, s.mlp_dim, causal=True, name=f"blocks.{index}")
        x = layers.LayerNormalization(epsilon=LAYER_NORM_EPS, name="norm")(x)
        outputs = layers.Dense(VOCAB, name="lm_head")(x)
        return tf_keras.Model(inputs, outputs, name=self.name)

    def port_weights(self, torch_model: Any, keras_model: Any) -> None:
        from green_deploy.zoo.families.keras_blocks import (
            port_dense,
            port_layer_norm,
            port_transformer_block,
            to_numpy,
        )

        keras_model.get_layer("byte_embedding").set_weights([to_numpy(torch_model.byte_embedding.weight)])
        keras_model.get_layer("position_embedding").set_weights([to_numpy(torch_model.position_embedding)[0]])
        for index, block in enumerate(torch_model.blocks):
            port_transformer_block(block, keras_model, f"blocks.{index}")
        port_layer_norm(torch_model.norm, keras_model.get_layer("norm"))
        port_dense(torch_model.lm_head, keras_model.get_layer("lm_head"))


FAMILY = ByteTransformerLMFamily()
