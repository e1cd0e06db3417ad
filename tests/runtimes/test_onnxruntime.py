"""The ONNX Runtime runtime on hand-built graphs: weight counts that could go wrong, inputs, batching,
and a saved graph's round trip."""

from __future__ import annotations

import numpy as np
import pytest

from green_deploy.runtimes import get_runtime
from green_deploy.runtimes.onnxruntime import ONNX_FILE, onnx_tensor_stats, predict_onnx
from green_deploy.zoo.inference import onnx_session


def _int8_matmul_model() -> bytes:
    """x (N, 3) float @ dequantize(W int8 (3, 4), per-column scale and zero point) + dequantized
    int32 bias; plus a float (2, 3) table that is never used, an int32 that is not a bias, and an
    int64 shape, which must not count as parameters."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.array([[0, 1, 2, 5], [3, 0, 2, -1], [0, 0, 2, 7]], dtype=np.int8)
    zero_point = np.array([0, 0, 2, 0], dtype=np.int8)  # column 2's zero is the stored value 2
    initializers = [
        numpy_helper.from_array(weight, "w_quantized"),
        numpy_helper.from_array(np.full(4, 0.5, np.float32), "w_scale"),
        numpy_helper.from_array(zero_point, "w_zero_point"),
        numpy_helper.from_array(np.array([7, 0, 0, 1], np.int32), "b_quantized"),
        numpy_helper.from_array(np.full(4, 0.25, np.float32), "b_quantized_scale"),
        numpy_helper.from_array(np.zeros(4, np.int32), "b_quantized_zero_point"),
        numpy_helper.from_array(np.array([[0.0, 1.5, 0.0], [2.0, 0.0, 3.0]], np.float32), "table"),
        numpy_helper.from_array(np.array([1, 2, 3], np.int32), "not_a_bias"),
        numpy_helper.from_array(np.array([-1, 4], np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["w_quantized", "w_scale", "w_zero_point"], ["w"], axis=1),
        helper.make_node(
            "DequantizeLinear", ["b_quantized", "b_quantized_scale", "b_quantized_zero_point"], ["b"], axis=0
        ),
        helper.make_node("MatMul", ["x", "w"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["sum"]),
        helper.make_node("Reshape", ["sum", "shape"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _embedding_model() -> bytes:
    """int64 ids (N, L) -> mean of rows of a (5, 2) float table: (N, 2)."""
    from onnx import TensorProto, helper, numpy_helper

    table = np.arange(10, dtype=np.float32).reshape(5, 2)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "ids"], ["rows"]),
            helper.make_node("ReduceMean", ["rows", "axes"], ["y"], keepdims=0),
        ],
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model.SerializeToString()


def test_stats_count_quantized_weights_at_their_zero_point_and_skip_quantization_parameters():
    stats = onnx_tensor_stats(_int8_matmul_model())
    # int8 weight 12 + int32 bias 4 + float table 6; scales, zero points, the int32 that feeds no
    # DequantizeLinear and the int64 shape are not parameters.
    assert stats["n_parameters"] == 22
    assert stats["parameters_by_dtype"] == {"int8": 12, "int32": 4, "float32": 6}
    # weight: 0s in columns 0, 1, 3 (4) + the 2s of column 2 (3); bias: 2; table: 3
    assert stats["n_zeros"] == 4 + 3 + 2 + 3
    assert stats["n_weight_tensors"] == 3
    assert stats["weight_bytes"] == 12 + 16 + 24
    assert (stats["n_matrix_parameters"], stats["n_matrix_zeros"]) == (18, 10)
    assert stats["sparsity"] == pytest.approx(12 / 22)


def test_predict_runs_the_graph_in_batches_and_caches_the_session():
    model = _int8_matmul_model()
    x = np.random.default_rng(0).random((7, 3)).astype(np.float32)
    expected = x @ ((np.array([[0, 1, 2, 5], [3, 0, 2, -1], [0, 0, 2, 7]]) - [0, 0, 2, 0]) * 0.5)
    expected += np.array([7, 0, 0, 1]) * 0.25
    hits = onnx_session.cache_info().hits
    whole = predict_onnx(model, x)
    # ORT fuses DequantizeLinear + MatMul into an int8 MatMul that quantizes x per run: close, not exact
    np.testing.assert_allclose(whole, expected, atol=0.05)
    np.testing.assert_array_equal(predict_onnx(model, x, batch_size=3), whole)
    assert onnx_session.cache_info().hits >= hits + 1  # the second call reused the session
    assert predict_onnx(model, x[:0]).shape == (0,)
    with pytest.raises(ValueError, match="batch_size"):
        predict_onnx(model, x, batch_size=0)


def test_predict_feeds_integer_ids_as_the_graph_expects():
    ids = np.array([[0, 1, 4], [2, 2, 2]])
    expected = np.array([[10 / 3, 13 / 3], [4.0, 5.0]], dtype=np.float32)
    np.testing.assert_allclose(predict_onnx(_embedding_model(), ids.astype(np.int64)), expected, rtol=1e-6)
    np.testing.assert_allclose(predict_onnx(_embedding_model(), ids.astype(np.int32)), expected, rtol=1e-6)


def test_a_saved_graph_loads_predicts_and_counts_as_its_bytes(tmp_path):
    runtime = get_runtime("onnxruntime")
    model = _int8_matmul_model()
    assert runtime.save(model, tmp_path, {}) == [ONNX_FILE]
    loaded = runtime.load(tmp_path)
    assert loaded == model
    x = np.random.default_rng(0).random((5, 3)).astype(np.float32)
    np.testing.assert_array_equal(runtime.predictor(loaded, num_threads=1)(x), predict_onnx(model, x))
    counts = runtime.weight_counts(tmp_path)
    stats = onnx_tensor_stats(model)
    assert (counts.n_parameters, counts.n_nonzero_parameters) == (22, 22 - stats["n_zeros"])
    assert (counts.n_matrix_parameters, counts.n_matrix_zeros) == (18, 10)
