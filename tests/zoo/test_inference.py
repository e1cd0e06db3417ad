"""Keras variants are called as TensorFlow serves them: one traced graph, equal to the eager
outputs within the parity tolerance, refused when it is not."""

from __future__ import annotations

import numpy as np
import pytest

from green_deploy.zoo.families import get_family
from green_deploy.zoo.inference import KerasPredictor, ParityError, ParityTolerance, predict_keras

rng = np.random.default_rng(0)
IMAGES = (rng.random((9, 28, 28)) * 255).astype(np.uint8)
TEXTS = ["hello world", "Bonjour à tous, ça va ?", "", "def f(x):\n    return x * 2\n", "Привет мир"]
CASES = {
    "resnet_cnn": ({"widths": [8, 16], "blocks_per_stage": 1}, IMAGES, 10),
    "vit": ({"dim": 32, "depth": 2, "heads": 4, "mlp_dim": 64}, IMAGES, 10),
    "byte_lstm": ({"max_length": 32, "hidden_dim": 16}, TEXTS, 4),
    "ngram_bag": ({"max_bytes": 64, "n_buckets": 1024, "dim": 16}, TEXTS, 4),
}


def _keras(name):
    arch, examples, n_outputs = CASES[name]
    family = get_family(name)
    return family.build_keras(arch, n_outputs), family.encode(examples, arch)


@pytest.mark.parametrize("mode", ["graph", "xla"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_the_graph_gives_the_eager_outputs_at_every_batch_size(name, mode):
    model, inputs = _keras(name)
    predict = KerasPredictor(model, mode)
    eager = predict_keras(model, inputs)
    for size in (1, len(inputs), 3):
        outputs = predict(inputs[:size])
        bound = ParityTolerance().bound(eager[:size])
        assert np.abs(outputs - eager[:size]).max() <= bound
    assert predict.parity_max_abs_diff is not None and predict.parity_max_abs_diff <= bound
    # one fixed input signature: traced once, whatever the batch size
    assert predict._graph.experimental_get_tracing_count() == 1


def test_eager_mode_calls_the_model_eagerly():
    model, inputs = _keras("resnet_cnn")
    outputs = KerasPredictor(model, "eager")(inputs)
    assert np.array_equal(outputs, predict_keras(model, inputs))


def test_a_graph_that_differs_from_eager_is_refused():
    import tensorflow as tf
    import tf_keras

    class GraphOnlyShift(tf_keras.layers.Layer):
        """Adds 1 when traced into a graph: what a layer with eager-only Python logic would do."""

        def call(self, x):
            return x if tf.executing_eagerly() else x + 1.0

    inputs = tf_keras.Input((4,))
    model = tf_keras.Model(inputs, GraphOnlyShift()(tf_keras.layers.Dense(3)(inputs)))
    with pytest.raises(ParityError, match="differs from its eager outputs"):
        KerasPredictor(model)(np.ones((2, 4), np.float32))
