"""Shared setup for the family tests: Keras 2 for tfmot, an offline hub, and TFLite helpers.

The environment is set here, before any test module imports TensorFlow or transformers.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tfmot works with Keras 2 (tf_keras) only
os.environ["HF_HUB_OFFLINE"] = "1"  # the models ship in PyPI packages; never reach the hub
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def keras_roundtrip(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Any], Any]:
    """Saves a Keras model to ``.keras`` and loads it back the way a deployment would."""

    def roundtrip(model: Any) -> Any:
        import tf_keras

        import green_deploy.zoo.families.keras_layers  # noqa: F401  (registers the custom layers)

        path = Path(tmp_path_factory.mktemp("keras")) / f"{model.name}.keras"
        model.save(path)
        return tf_keras.models.load_model(path)

    return roundtrip


@pytest.fixture(scope="session")
def tflite_predict() -> Callable[[Any, np.ndarray], np.ndarray]:
    """Converts a Keras model with the default TFLite converter and runs it on one batch."""

    def predict(model: Any, inputs: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
        with warnings.catch_warnings():
            # TF 2.21 announces tf.lite.Interpreter's move to ai_edge_litert; it still works.
            warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
            interpreter = tf.lite.Interpreter(model_content=flatbuffer)
        (source,) = interpreter.get_input_details()
        interpreter.resize_tensor_input(source["index"], inputs.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(source["index"], inputs.astype(source["dtype"]))
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    return predict
