"""Loading a serialized model (``read_checked_bytes``): a truncated or corrupt ONNX or TFLite file
is named, with the command that rebuilds it, instead of failing inside its runtime."""

from __future__ import annotations

import numpy as np
import pytest

from green_deploy.errors import ArtifactError
from green_deploy.runtimes import get_runtime
from green_deploy.runtimes.base import count_arrays
from green_deploy.runtimes.onnxruntime import ONNX_FILE
from green_deploy.runtimes.tflite import TFLITE_FILE
from green_deploy.zoo.inference import in_batches


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
    assert get_runtime(runtime).load(folder) == data
    (folder / file).write_bytes(data[: len(data) // 2])
    with pytest.raises(
        ArtifactError,
        match=rf"{file} is not a readable {runtime} model .*--namespaces=tiny_model --params \"optimize.only=pt_onnx_fp32\"",
    ):
        get_runtime(runtime).load(folder)


def test_a_missing_file_says_how_to_rebuild_it(tmp_path):
    with pytest.raises(ArtifactError, match="is missing; rebuild it with `kedro run --pipeline=optimize"):
        get_runtime("onnxruntime").load(tmp_path)


def test_weights_are_counted_whole_and_as_matrices():
    counts = count_arrays([np.array([[0.0, 1.0], [2.0, 0.0]]), np.array([0.0, 3.0, 0.0])])
    assert (counts.n_parameters, counts.n_nonzero_parameters) == (7, 3)
    assert (counts.n_matrix_parameters, counts.n_matrix_zeros) == (4, 2)


def test_predictions_run_in_batches_and_none_is_an_empty_array():
    sizes: list[int] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        sizes.append(len(batch))
        return batch * 2

    np.testing.assert_array_equal(in_batches(predict, np.arange(5.0), 2), np.arange(5.0) * 2)
    assert sizes == [2, 2, 1]
    assert in_batches(predict, np.zeros((0, 3))).shape == (0,)
    with pytest.raises(ValueError, match="batch_size"):
        in_batches(predict, np.arange(5.0), 0)
