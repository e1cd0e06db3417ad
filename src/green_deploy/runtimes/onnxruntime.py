"""ONNX graphs, run in ONNX Runtime, and the weights stored in them.

The ``.onnx`` bytes are the deployed artifact, so accuracy and sparsity are measured on them
rather than on the module they came from (``optimize.onnx_export`` writes them). onnx and
onnxruntime are imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from green_deploy.runtimes.base import Predict, SerializedGraphRuntime, WeightCounts
from green_deploy.zoo.artifacts import ONNX_FILE
from green_deploy.zoo.inference import predict_onnx

INPUT_NAME = "x"
OUTPUT_NAME = "y"

# ONNX TensorProto data types (onnx.TensorProto.DataType) of stored weights: floats, and the
# integer types quantizers store weights in. INT32 counts only as a quantized bias (it feeds a
# DequantizeLinear); INT64 initializers are shapes, axes and indices, never weights.
_FLOAT_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}
_QUANTIZED_TYPES = {2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 21: "uint4", 22: "int4"}

# Where quantized ops take a weight's zero point: op type -> {weight input index: (zero-point
# input index, per-channel axis when the op has no ``axis`` attribute)}.
_QUANTIZED_INPUTS: dict[str, dict[int, tuple[int, int]]] = {
    "DequantizeLinear": {0: (2, 1)},
    "MatMulInteger": {1: (3, -1)},  # B's zero point is per column (last axis)
    "ConvInteger": {1: (3, 0)},  # w's zero point is per output channel
    # W (D, in, 4H) and R (D, hidden, 4H) with zero points (D, 4H)
    "DynamicQuantizeLSTM": {1: (9, 2), 2: (11, 2)},
}
# Inputs that hold scales or zero points (not parameters) of ops that are not listed above.
_QUANTIZATION_PARAMETER_INPUTS: dict[str, tuple[int, ...]] = {
    "QuantizeLinear": (1, 2),
    "DequantizeLinear": (1, 2),
    "MatMulInteger": (2, 3),
    "ConvInteger": (2, 3),
    "QLinearMatMul": (1, 2, 4, 5, 6, 7),
    "QLinearConv": (1, 2, 4, 5, 6, 7),
    "DynamicQuantizeLSTM": (8, 9, 10, 11),
}


class OnnxRuntime(SerializedGraphRuntime):
    name = "onnxruntime"
    framework = "torch"
    model_file = ONNX_FILE
    converted_from = "pytorch"
    preload_modules = ("onnxruntime",)
    image_packages = ("onnxruntime",)

    @staticmethod
    def parse(data: bytes) -> Any:
        import onnx

        return onnx.load_model_from_string(data)

    def predictor(
        self, model: Any, num_threads: int | None = None, device: str = "cpu", keras_mode: str = "graph"
    ) -> Predict:
        return lambda x: predict_onnx(model, x, num_threads=num_threads)

    def weight_counts(self, folder: Path) -> WeightCounts:
        stats = onnx_tensor_stats((folder / self.model_file).read_bytes())
        return WeightCounts(
            n_parameters=stats["n_parameters"],
            n_nonzero_parameters=stats["n_parameters"] - stats["n_zeros"],
            n_matrix_parameters=stats["n_matrix_parameters"],
            n_matrix_zeros=stats["n_matrix_zeros"],
        )

    def serving_path(self, keras_mode: str = "graph") -> str:
        return "ONNX Runtime session"


def onnx_tensor_stats(model_bytes: bytes) -> dict[str, Any]:
    """Parameter and exactly-zero weight counts of the weights stored in an ONNX model.

    Counted: initializers (and ``Constant`` node values) that are floating point (weights,
    biases, norms, embeddings, positions) or quantized (int8/uint8 weights, int32 biases that a
    ``DequantizeLinear`` reads). Not counted: scales and zero points of quantized tensors, int64
    shapes/axes/indices, activations. A quantized weight is zero when its stored value equals its
    zero point. The exporter stores some weights transposed and folds constants, so counts can
    differ slightly from the PyTorch module's (a few scalars more).

    Returns:
        ``n_parameters``, ``n_zeros``, ``sparsity`` (zeros / parameters), ``n_weight_tensors``,
        ``weight_bytes`` (bytes the weights take in their stored dtypes) and
        ``parameters_by_dtype`` (dtype name to parameter count), and ``n_matrix_parameters`` /
        ``n_matrix_zeros``: the same counts over tensors of two or more dimensions (weight
        matrices, kernels, embedding tables), where ``effective_sparsity`` is measured.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    tensors = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            tensors[node.output[0]] = node.attribute[0].t
    parameters_of_quantization = _quantization_parameter_names(graph)
    zero_points = _zero_points(graph, tensors)
    dequantized = {node.input[0] for node in graph.node if node.op_type == "DequantizeLinear"}

    n_parameters = n_zeros = n_tensors = weight_bytes = n_matrix = n_matrix_zeros = 0
    by_dtype: dict[str, int] = {}
    for name, tensor in tensors.items():
        if name in parameters_of_quantization or name.endswith(("_scale", "_zero_point")):
            continue
        dtype_name = _FLOAT_TYPES.get(tensor.data_type)
        if dtype_name is None:
            dtype_name = _QUANTIZED_TYPES.get(tensor.data_type)
            if dtype_name is None or (dtype_name == "int32" and name not in dequantized):
                continue
        values = numpy_helper.to_array(tensor)
        if values.size == 0:
            continue
        zero_value = zero_points.get(name, 0)
        n_tensors += 1
        n_parameters += values.size
        weight_bytes += values.nbytes
        zeros = int(np.count_nonzero(values == zero_value))
        n_zeros += zeros
        if values.ndim >= 2:
            n_matrix += values.size
            n_matrix_zeros += zeros
        by_dtype[dtype_name] = by_dtype.get(dtype_name, 0) + values.size
    return {
        "n_parameters": n_parameters,
        "n_zeros": n_zeros,
        "sparsity": n_zeros / n_parameters if n_parameters else 0.0,
        "n_weight_tensors": n_tensors,
        "weight_bytes": weight_bytes,
        "parameters_by_dtype": by_dtype,
        "n_matrix_parameters": n_matrix,
        "n_matrix_zeros": n_matrix_zeros,
    }


def _quantization_parameter_names(graph: Any) -> set[str]:
    names: set[str] = set()
    for node in graph.node:
        for index in _QUANTIZATION_PARAMETER_INPUTS.get(node.op_type, ()):
            if index < len(node.input) and node.input[index]:
                names.add(node.input[index])
    return names


def _zero_points(graph: Any, tensors: dict[str, Any]) -> dict[str, Any]:
    """Quantized weight name -> its zero point, shaped to broadcast against the weight."""
    from onnx import numpy_helper

    found: dict[str, Any] = {}
    for node in graph.node:
        for weight_index, (zero_index, default_axis) in _QUANTIZED_INPUTS.get(node.op_type, {}).items():
            if zero_index >= len(node.input):
                continue
            weight, zero = node.input[weight_index], node.input[zero_index]
            if weight in tensors and zero in tensors:
                axis = next((a.i for a in node.attribute if a.name == "axis"), default_axis)
                found[weight] = _along(
                    numpy_helper.to_array(tensors[zero]), tuple(tensors[weight].dims), axis
                )
    # A dynamically quantized embedding is looked up in int8 and dequantized after the Gather, so
    # no node reads table and zero point together; ORT names them <w>_quantized and <w>_zero_point.
    for name, tensor in tensors.items():
        zero = name.removesuffix("_quantized") + "_zero_point"
        if name not in found and name.endswith("_quantized") and zero in tensors:
            found[name] = _along(numpy_helper.to_array(tensors[zero]), tuple(tensor.dims), 0)
    return found


def _along(zero_point: np.ndarray, weight_shape: tuple[int, ...], axis: int) -> Any:
    """A zero point as an int (per tensor) or an array broadcasting along ``axis`` of the weight."""
    zero_point = zero_point.astype(np.int64)
    if zero_point.size <= 1:
        return int(zero_point.reshape(-1)[0]) if zero_point.size else 0
    rank = len(weight_shape)
    shape = [1] * rank
    shape[axis % rank] = weight_shape[axis % rank]
    if rank >= 2 and zero_point.ndim == 2 and zero_point.shape[0] == weight_shape[0]:
        shape[0] = weight_shape[0]  # LSTM: one zero point per direction and gate column
    if int(np.prod(shape)) != zero_point.size:
        raise ValueError(
            f"zero point of {zero_point.size} values does not fit a weight of shape {weight_shape} "
            f"along axis {axis}"
        )
    return zero_point.reshape(shape)
