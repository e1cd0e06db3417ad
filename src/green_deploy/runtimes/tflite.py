"""TFLite flatbuffers, run by LiteRT's interpreter, and the weights stored in them.

The flatbuffer is the deployed artifact, so accuracy and sparsity are measured on it rather than
on the Keras model it came from (``optimize.techniques.tflite`` converts it). The interpreter is
LiteRT's (``ai-edge-litert``, the runtime TensorFlow's own ``tf.lite.Interpreter`` now forwards
to): it imports in 0.1 s where TensorFlow takes seconds, which every TFLite server start and
accuracy check would otherwise pay.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from green_deploy.runtimes.base import Predict, SerializedGraphRuntime, WeightCounts
from green_deploy.zoo.families.base import to_keras_layout
from green_deploy.zoo.inference import in_batches

TFLITE_FILE = "model.tflite"
# Constant tensors of these types hold weights; constant int32/int64/bool tensors without
# quantization parameters are shapes, axes and permutations, not parameters.
_FLOAT_TYPES = (np.float32, np.float16, np.float64)


class TfliteRuntime(SerializedGraphRuntime):
    name = "tflite"
    framework = "tensorflow"
    model_file = TFLITE_FILE
    converted_from = "keras"
    preload_modules = ("ai_edge_litert.interpreter",)
    image_packages = ("tensorflow",)

    @staticmethod
    def parse(data: bytes) -> Any:
        return interpreter(data)

    def predictor(
        self, model: Any, num_threads: int | None = None, device: str = "cpu", keras_mode: str = "graph"
    ) -> Predict:
        return TflitePredictor(model, num_threads)

    def weight_counts(self, folder: Path) -> WeightCounts:
        stats = tflite_tensor_stats((folder / self.model_file).read_bytes())
        # a flatbuffer's constants are counted whole: no matrix/vector split
        return WeightCounts(
            n_parameters=stats["n_parameters"],
            n_nonzero_parameters=stats["n_parameters"] - stats["n_zeros"],
            n_matrix_parameters=stats["n_parameters"],
            n_matrix_zeros=stats["n_zeros"],
        )

    def serving_path(self, keras_mode: str = "graph") -> str:
        return "LiteRT interpreter"


def interpreter(flatbuffer: bytes, num_threads: int | None = None) -> Any:
    """A LiteRT interpreter of the flatbuffer (tensors not yet allocated)."""
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=flatbuffer, num_threads=num_threads)


def _quantization(detail: dict[str, Any]) -> tuple[float, int]:
    scale, zero_point = detail["quantization"]
    return float(scale), int(zero_point)


def to_input(batch: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """A batch in the dtype the input tensor holds: quantized when the tensor is int8/uint8 with a
    scale and the batch is float, otherwise cast (int64 token ids to int32)."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = _quantization(detail)
    if dtype in (np.int8, np.uint8, np.int16) and scale > 0 and np.issubdtype(batch.dtype, np.floating):
        info = np.iinfo(dtype)
        quantized = np.round(batch / scale) + zero_point
        return np.clip(quantized, info.min, info.max).astype(dtype)
    return batch.astype(dtype, copy=False)


def from_output(values: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """An output tensor as float32, dequantized when it is int8/uint8/int16 with a scale."""
    scale, zero_point = _quantization(detail)
    if np.dtype(detail["dtype"]) in (np.int8, np.uint8, np.int16) and scale > 0:
        return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return values


class TflitePredictor:
    """One interpreter kept between calls, reallocated only when the batch shape changes.

    Callers pass PyTorch-layout inputs (NCHW images become NHWC here) and get float outputs:
    int8 inputs and outputs are (de)quantized with the tensor's scale and zero point. Not
    thread-safe (the interpreter's tensors are shared between calls).
    """

    def __init__(self, flatbuffer: bytes, num_threads: int | None = None):
        self._tflite = interpreter(flatbuffer, num_threads)
        inputs, outputs = self._tflite.get_input_details(), self._tflite.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"only single-input, single-output TFLite models run here; this one has "
                f"{len(inputs)} inputs and {len(outputs)} outputs"
            )
        self._source, self._target = inputs[0], outputs[0]
        self._allocated: tuple[int, ...] | None = None

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        batch = to_input(to_keras_layout(np.asarray(inputs)), self._source)
        if batch.shape != self._allocated:
            self._tflite.resize_tensor_input(self._source["index"], batch.shape)
            self._tflite.allocate_tensors()
            self._allocated = batch.shape
        self._tflite.set_tensor(self._source["index"], batch)
        self._tflite.invoke()
        # get_tensor copies, so the next invoke cannot overwrite what a caller kept.
        return from_output(self._tflite.get_tensor(self._target["index"]), self._target)


def predict_tflite(
    flatbuffer: bytes, inputs: np.ndarray, batch_size: int = 256, *, num_threads: int | None = None
) -> np.ndarray:
    """The flatbuffer's outputs on ``inputs`` (PyTorch layout, as the zoo stores them), as numpy,
    in batches of ``batch_size`` through one ``TflitePredictor``; nothing is cached between
    calls, so a flatbuffer is freed with its caller."""
    return in_batches(TflitePredictor(flatbuffer, num_threads), inputs, batch_size)


def _constant_tensor_indices(tflite: Any) -> set[int]:
    """Indices of tensors no op writes and the caller does not feed: the flatbuffer's constants."""
    # _get_ops_details is private but is the interpreter's only view of which tensors ops write;
    # without it, activation buffers (zeros before invoke) would count as weights.
    produced = {index for op in tflite._get_ops_details() for index in op["outputs"]}
    fed = {detail["index"] for detail in tflite.get_input_details()}
    fed |= {detail["index"] for detail in tflite.get_output_details()}
    return {detail["index"] for detail in tflite.get_tensor_details()} - produced - fed


def tflite_tensor_stats(flatbuffer: bytes) -> dict[str, Any]:
    """Parameter and exactly-zero weight counts of the weights stored in a flatbuffer.

    Counted: constant tensors (neither model inputs/outputs nor written by any op) that are
    floating point (float32/float16 weights, biases, norms, embeddings) or carry quantization
    parameters (int8 weights, int32 biases of full-int8 models). Not counted: integer constants
    without quantization (reshape shapes, axes, permutations) and intermediate activations. A
    quantized weight is zero when its stored value equals its zero point. BatchNorm is folded
    into convolutions and identical constants (e.g. all-zero biases) are merged by the converter,
    so counts differ from the Keras model's.

    Returns:
        ``n_parameters``, ``n_zeros``, ``sparsity`` (zeros / parameters), ``n_weight_tensors``,
        ``weight_bytes`` (bytes the weights take in their stored dtypes) and
        ``parameters_by_dtype`` (dtype name to parameter count).
    """
    tflite = interpreter(flatbuffer)
    tflite.allocate_tensors()
    constants = _constant_tensor_indices(tflite)
    n_parameters = n_zeros = n_tensors = weight_bytes = 0
    by_dtype: dict[str, int] = {}
    for detail in tflite.get_tensor_details():
        if detail["index"] not in constants:
            continue
        dtype = np.dtype(detail["dtype"])
        scales = detail["quantization_parameters"]["scales"]
        quantized = len(scales) > 0 and np.issubdtype(dtype, np.integer)
        if not (quantized or dtype in _FLOAT_TYPES):
            continue
        try:
            values = tflite.get_tensor(detail["index"])
        except ValueError:
            # Tensors without a buffer (e.g. optional operands left empty) hold no weights.
            continue
        if values.size == 0:
            continue
        zero_value: int | np.ndarray = 0
        if quantized:
            zero_points = np.asarray(detail["quantization_parameters"]["zero_points"])
            axis = detail["quantization_parameters"]["quantized_dimension"]
            if zero_points.size > 1:
                shape = [1] * values.ndim
                shape[axis] = zero_points.size
                zero_value = zero_points.reshape(shape)
            elif zero_points.size == 1:
                zero_value = int(zero_points[0])
        n_tensors += 1
        n_parameters += values.size
        weight_bytes += values.nbytes
        n_zeros += int(np.count_nonzero(values == zero_value))
        by_dtype[dtype.name] = by_dtype.get(dtype.name, 0) + values.size
    return {
        "n_parameters": n_parameters,
        "n_zeros": n_zeros,
        "sparsity": n_zeros / n_parameters if n_parameters else 0.0,
        "n_weight_tensors": n_tensors,
        "weight_bytes": weight_bytes,
        "parameters_by_dtype": by_dtype,
    }
