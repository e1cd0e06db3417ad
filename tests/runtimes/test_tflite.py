"""TFLite runtime: a flatbuffer round trip through one LiteRT interpreter."""

from __future__ import annotations

import numpy as np

from green_deploy.runtimes import get_runtime
from green_deploy.runtimes.tflite import TFLITE_FILE, predict_tflite, tflite_tensor_stats


def test_a_saved_flatbuffer_loads_predicts_and_counts_its_weights(tmp_path):
    import tensorflow as tf
    import tf_keras

    images = tf_keras.Input((4, 4, 1))
    keras_model = tf_keras.Model(images, tf_keras.layers.Dense(3)(tf_keras.layers.Flatten()(images)))
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(keras_model).convert()
    runtime = get_runtime("tflite")
    assert runtime.save(flatbuffer, tmp_path, {}) == [TFLITE_FILE]
    assert runtime.load(tmp_path) == flatbuffer
    x = np.random.default_rng(0).random((6, 1, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(
        runtime.predictor(flatbuffer, num_threads=1)(x), predict_tflite(flatbuffer, x), rtol=1e-6
    )
    counts = runtime.weight_counts(tmp_path)
    stats = tflite_tensor_stats(flatbuffer)
    assert counts.n_parameters == stats["n_parameters"] >= 16 * 3  # the converter may drop a zero bias
    assert counts.n_nonzero_parameters == stats["n_parameters"] - stats["n_zeros"]
    assert runtime.serving_path() == "LiteRT interpreter"
