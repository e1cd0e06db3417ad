"""A byte-level LSTM text classifier trained from scratch.

Texts become UTF-8 byte ids shifted by one (0 is padding), truncated and left-padded to a fixed
length, so the last step always follows the text's last byte and no mask is needed: both
frameworks run the same arithmetic over the same padded sequence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from green_deploy.zoo.families.base import TWIN_FRAMEWORKS, parse_architecture
from green_deploy.zoo.spec import TRAINING_MODES

VOCAB = 257  # 256 byte values shifted by one, and padding


@dataclass(frozen=True)
class ByteLSTMSettings:
    max_length: int = 64
    embedding_dim: int = 32
    hidden_dim: int = 128


def left_padded_bytes(texts: Sequence[str], max_length: int) -> np.ndarray:
    """(N, max_length) int64: the first ``max_length`` UTF-8 bytes + 1 of each text, left-padded with 0."""
    ids = np.zeros((len(texts), max_length), dtype=np.int64)
    for row, text in enumerate(texts):
        data = np.frombuffer(text.encode("utf-8")[:max_length], dtype=np.uint8)
        if len(data):
            ids[row, max_length - len(data) :] = data.astype(np.int64) + 1
    return ids


class ByteLSTMFamily:
    name = "byte_lstm"
    frameworks = TWIN_FRAMEWORKS
    tasks = ("classification",)
    training_modes = TRAINING_MODES

    def settings(self, arch: Mapping[str, Any]) -> ByteLSTMSettings:
        return parse_architecture(ByteLSTMSettings, arch, self.name)

    def encode(self, examples: Sequence[str], arch: Mapping[str, Any]) -> np.ndarray:
        return left_padded_bytes(examples, self.settings(arch).max_length)

    def build_torch(self, arch: Mapping[str, Any], n_outputs: int) -> Any:
        from green_deploy.zoo.families.torch_models import ByteLSTM

        s = self.settings(arch)
        return ByteLSTM(VOCAB, s.embedding_dim, s.hidden_dim, n_outputs)

    def build_keras(self, arch: Mapping[str, Any], n_outputs: int) -> Any:
        import tf_keras

        layers = tf_keras.layers
        s = self.settings(arch)
        inputs = tf_keras.Input((s.max_length,), dtype="int32", name="byte_ids")
        x = layers.Embedding(VOCAB, s.embedding_dim, name="embedding")(inputs)
        # Unrolled over the fixed length: TFLite cannot lower the while-loop form with a dynamic
        # batch size, and the unrolled form is plain matmuls that full-int8 conversion handles.
        x = layers.LSTM(s.hidden_dim, unroll=True, name="lstm")(x)
        outputs = layers.Dense(n_outputs, name="classifier")(x)
        return tf_keras.Model(inputs, outputs, name=self.name)

    def port_weights(self, torch_model: Any, keras_model: Any) -> None:
        from green_deploy.zoo.families.keras_blocks import port_dense, to_numpy

        keras_model.get_layer("embedding").set_weights([to_numpy(torch_model.embedding.weight)])
        lstm = torch_model.lstm
        # Both frameworks order the four gates input, forget, cell, output; Keras has one bias.
        keras_model.get_layer("lstm").set_weights(
            [
                to_numpy(lstm.weight_ih_l0).T,
                to_numpy(lstm.weight_hh_l0).T,
                to_numpy(lstm.bias_ih_l0) + to_numpy(lstm.bias_hh_l0),
            ]
        )
        port_dense(torch_model.classifier, keras_model.get_layer("classifier"))


FAMILY = ByteLSTMFamily()
