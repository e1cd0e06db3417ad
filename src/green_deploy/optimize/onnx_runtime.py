"""Exporting a PyTorch model to ONNX, running it in ONNX Runtime, and counting its weights.

The ``.onnx`` bytes are the deployed artifact, so accuracy and sparsity are measured on them
rather than on the module they came from. The exporter is ``torch.onnx.export(dynamo=True)``
(``torch.export`` graph translated by onnxscript); ``green_deploy.optimize.techniques.onnx_runtime``
says why. torch, onnx and onnxruntime are imported inside the functions.
"""

from __future__ import annotations

import functools
import logging
import re
import warnings
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

INPUT_NAME = "x"
OUTPUT_NAME = "y"
_EXPORT_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")

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


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
_SUMMARY = "## Exception summary"
_CLASS_PREFIX = re.compile(r"<class '(?:[\w.]*\.)?(?P<name>\w+)'>: (?P<message>.*)")


class ExportError(RuntimeError):
    """``torch.onnx.export`` could not turn the module into an ONNX graph; the message says why."""


def export_onnx(model: Any, example: np.ndarray, opset: int | None = None) -> bytes:
    """The ONNX bytes of ``model`` (an ``nn.Module`` in eval mode) traced on ``example``.

    The batch axis is dynamic (any number of rows runs); the other axes keep the example's
    sizes, as the zoo's inputs do. The graph is exported with ``dynamo=True`` and the exporter's
    own graph optimisation (constant folding, dead-code removal). Per-node debug metadata (the
    PyTorch stack and FX node each op came from) is dropped: it is a quarter to a third of a
    small model's file and no runtime reads it.

    Args:
        model: the module; it is not modified.
        example: a batch in the PyTorch layout as the zoo gives it (NCHW floats or int64 ids);
            a single row is repeated, since ``torch.export`` specialises a batch of one.
        opset: the ai.onnx opset; ``None`` takes the exporter's default.

    Raises:
        ExportError: the exporter failed; its message is the first meaningful line.
    """
    import torch

    example = np.asarray(example)
    if len(example) == 0:
        raise ValueError("export_onnx needs at least one example row")
    if len(example) == 1:
        example = np.concatenate([example, example])
    batch = torch.export.Dim("batch")
    # Per-op chatter at WARNING: "torchvision is not installed. Skipping torchvision::nms",
    # "Skipping constant folding for op SequenceEmpty", "Skipped deduplication of initializer".
    quieted = {name: logging.getLogger(name) for name in _EXPORT_LOGGERS}
    levels = {name: log.level for name, log in quieted.items()}
    for log in quieted.values():
        log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation chatter from torch.export internals
            program = torch.onnx.export(
                model.eval(),
                (torch.as_tensor(example),),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),
                opset_version=opset,
                optimize=True,
                verbose=False,
            )
    except Exception as error:  # the exporter wraps torch.export / translation errors in many types
        raise ExportError(first_line(error)) from error
    finally:
        for name, log in quieted.items():
            log.setLevel(levels[name])
    proto = program.model_proto
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    return proto.SerializeToString()


def first_line(error: BaseException) -> str:
    """An error's key message: the exporter's "Exception summary" (it opens with steps to report
    a bug), else the first non-empty line; ``<class 'x.Y'>: msg`` becomes ``Y: msg``."""
    text = _ANSI_ESCAPE.sub("", str(error))
    if _SUMMARY in text:
        text = text.split(_SUMMARY, 1)[1]
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if line:
            match = _CLASS_PREFIX.match(line)
            return f"{match['name']}: {match['message']}" if match else line
    return type(error).__name__


@functools.lru_cache(maxsize=4)
def _session(model_bytes: bytes, num_threads: int | None) -> Any:
    """One InferenceSession per model bytes. Building a session parses and optimises the graph
    (seconds for a MiniLM), and ``run`` is thread-safe, so repeated predictions share one; four
    sessions at most stay alive. Keyed on the bytes themselves: equal bytes, same session."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: ORT warns about unused initializers etc.
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


def predict_onnx(
    model_bytes: bytes, inputs: np.ndarray, batch_size: int = 256, *, num_threads: int | None = None
) -> np.ndarray:
    """The model's outputs on ``inputs`` (PyTorch layout, as the zoo stores them), as float32 numpy.

    Args:
        model_bytes: the ``.onnx`` model.
        inputs: NCHW float images or (N, L) integer ids, cast to the graph input's dtype
            (int64 ids stay int64).
        batch_size: examples per ``run``.
        num_threads: ONNX Runtime intra-op threads; ``None`` lets it decide (one per core).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    session = _session(model_bytes, num_threads)
    graph_inputs, graph_outputs = session.get_inputs(), session.get_outputs()
    if len(graph_inputs) != 1 or len(graph_outputs) != 1:
        raise ValueError(
            f"predict_onnx runs single-input, single-output models; this one has "
            f"{len(graph_inputs)} inputs and {len(graph_outputs)} outputs"
        )
    source = graph_inputs[0]
    dtype = _ORT_DTYPES.get(source.type)
    if dtype is None:
        raise ValueError(f"predict_onnx: unsupported input type {source.type} of {source.name!r}")
    inputs = np.asarray(inputs)
    outputs = [
        np.asarray(
            session.run(None, {source.name: inputs[start : start + batch_size].astype(dtype, copy=False)})[0],
            dtype=np.float32,
        )
        for start in range(0, len(inputs), batch_size)
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0,), dtype=np.float32)


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
