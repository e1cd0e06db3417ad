"""Loading a variant's serialized model: a truncated or corrupt ONNX or TFLite file is named, with
the command that rebuilds it, instead of failing inside its runtime."""

from __future__ import annotations

import numpy as np
import pytest

from green_deploy.errors import ArtifactError
from green_deploy.optimize.artifacts import ONNX_FILE, TFLITE_FILE, load_variant


def _onnx_bytes() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    weights = np.arange(400, dtype=np.float32).reshape(20, 20)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 20])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 20])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    return model.SerializeToString()


def _tflite_bytes() -> bytes:
    import tensorflow as tf
    import tf_keras

    inputs = tf_keras.Input((20,))
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(20)(inputs))
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


@pytest.mark.parametrize(
    ("runtime", "file", "make"),
    [("onnxruntime", ONNX_FILE, _onnx_bytes), ("tflite", TFLITE_FILE, _tflite_bytes)],
)
def test_a_whole_file_loads_and_a_truncated_one_is_named_with_its_rebuild(tmp_path, runtime, file, make):
    folder = tmp_path / "tiny_model" / "pt_onnx_fp32"
    folder.mkdir(parents=True)
    data = make()
    (folder / file).write_bytes(data)
    assert load_variant(folder, runtime) == data
    (folder / file).write_bytes(data[: len(data) // 2])
    with pytest.raises(
        ArtifactError,
        match=rf"{file} is not a readable {runtime} model .*--namespaces=tiny_model --params \"optimize.only=pt_onnx_fp32\"",
    ):
        load_variant(folder, runtime)


def test_a_missing_file_says_how_to_rebuild_it(tmp_path):
    with pytest.raises(ArtifactError, match="is missing; rebuild it with `kedro run --pipeline=optimize"):
        load_variant(tmp_path, "onnxruntime")
