"""Keras runtime: a ``.keras`` file round trip, served as a ``tf.function`` graph."""

from __future__ import annotations

import numpy as np
import pytest

from green_deploy.errors import ArtifactError
from green_deploy.runtimes import get_runtime
from green_deploy.runtimes.keras import KERAS_MODES


def test_a_saved_model_loads_predicts_and_counts_its_weights(tmp_path):
    import tf_keras

    images = tf_keras.Input((4, 4, 1))
    model = tf_keras.Model(images, tf_keras.layers.Dense(3)(tf_keras.layers.Flatten()(images)))
    runtime = get_runtime("keras")
    assert runtime.save(model, tmp_path, {}) == ["model.keras"]
    loaded = runtime.load(tmp_path)
    x = np.random.default_rng(0).random((6, 1, 4, 4)).astype(np.float32)  # NCHW, as the zoo stores images
    expected = model(np.transpose(x, (0, 2, 3, 1)), training=False).numpy()
    for mode in KERAS_MODES:
        np.testing.assert_allclose(
            runtime.predictor(loaded, keras_mode=mode)(x), expected, rtol=1e-5, atol=1e-6
        )
    counts = runtime.weight_counts(tmp_path)
    assert (counts.n_parameters, counts.n_matrix_parameters) == (16 * 3 + 3, 16 * 3)
    assert runtime.serving_path("xla") == "tf.function graph, XLA"


def test_a_missing_file_names_its_rebuild(tmp_path):
    with pytest.raises(
        ArtifactError, match="model.keras is missing; rebuild it with `kedro run --pipeline=optimize"
    ):
        get_runtime("keras").load(tmp_path)
