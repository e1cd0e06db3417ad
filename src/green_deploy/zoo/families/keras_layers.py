"""Small Keras layers the twins need beyond Keras' built-ins.

Registered for ``.keras`` (de)serialisation under the ``green_deploy`` package, so importing
this module is all a loader needs. Each declares ``get_prunable_weights`` so tfmot's
``prune_low_magnitude`` accepts models that contain it (its registry knows only built-ins).
Import only with ``TF_USE_LEGACY_KERAS=1`` set (tfmot needs Keras 2, i.e. ``tf_keras``).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras

_register = tf_keras.utils.register_keras_serializable(package="green_deploy")


class _Unprunable(tf_keras.layers.Layer):
    """A layer whose weights tfmot should leave alone (position tables, masks)."""

    def get_prunable_weights(self) -> list[tf.Variable]:
        return []


@_register
class PositionEmbedding(_Unprunable):
    """Adds a learned position embedding (max_length, dim) to (N, L, dim) inputs, L <= max_length."""

    def __init__(self, max_length: int, **kwargs):
        super().__init__(**kwargs)
        self.max_length = max_length

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.max_length, int(input_shape[-1])), initializer="zeros"
        )
        super().build(input_shape)

    def call(self, inputs):
        length = tf.shape(inputs)[1]
        return inputs + self.embeddings[tf.newaxis, :length, :]

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length}


@_register
class PaddingAttentionMask(_Unprunable):
    """Token ids (N, L) to a boolean attention mask (N, L, L): query i may attend key j unless j is padding."""

    def __init__(self, pad_id: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.pad_id = pad_id

    def call(self, token_ids):
        keys = tf.not_equal(token_ids, self.pad_id)[:, tf.newaxis, :]
        return tf.repeat(keys, repeats=tf.shape(token_ids)[1], axis=1)

    def get_config(self):
        return {**super().get_config(), "pad_id": self.pad_id}


@_register
class MaskedMean(_Unprunable):
    """Mean over the sequence axis of (N, L, D) features, counting only non-padding tokens."""

    def __init__(self, pad_id: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.pad_id = pad_id

    def call(self, inputs):
        features, token_ids = inputs
        mask = tf.cast(tf.not_equal(token_ids, self.pad_id), features.dtype)[:, :, tf.newaxis]
        total = tf.reduce_sum(features * mask, axis=1)
        count = tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
        return total / count

    def get_config(self):
        return {**super().get_config(), "pad_id": self.pad_id}


@_register
class L2Normalize(_Unprunable):
    """Scales each row to unit length, as sentence-embedding models do before cosine similarity."""

    def call(self, inputs):
        return tf.math.l2_normalize(inputs, axis=-1, epsilon=1e-12)


@_register
class ScaleOffset(_Unprunable):
    """``inputs * scale + offset``: Keras' ``Rescaling`` without its tfmot problem.

    tfmot 0.8's prune registry lists ``Rescaling.__class__`` (its metaclass) instead of the
    class, so ``prune_low_magnitude`` rejects any model holding a ``Rescaling`` layer.
    """

    def __init__(self, scale: float, offset: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)
        self.offset = float(offset)

    def call(self, inputs):
        return tf.cast(inputs, self.compute_dtype) * self.scale + self.offset

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}
