"""Batched inference in either framework, returning numpy, for evaluation, parity checks and serving.

PyTorch models run eagerly (what PyTorch serving containers run; ``torch.compile`` is a variant
of its own). Keras models run the way TensorFlow deploys them: one traced graph with a fixed
input signature (``KerasPredictor``), as TensorFlow Serving runs a SavedModel's serving
signature. Calling a Keras model eagerly per batch is mostly Python overhead: measured on 2 CPU
cores, one thread, the graph took 0.79 instead of 11.0 ms per call for the zoo's ResNet-CNN at
batch 1 and 1.7 instead of 71 ms for its LSTM, so an eager TensorFlow baseline would compare
Python dispatch, not frameworks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from green_deploy.errors import ConfigError, GreenDeployError
from green_deploy.zoo.families.base import to_keras_layout

# How a Keras model is called: a traced graph (the default), the same graph compiled by XLA,
# or eagerly layer by layer (the reference the graph is checked against).
KERAS_MODES = ("graph", "xla", "eager")


class ParityError(GreenDeployError):
    """Two ways of running one model disagree beyond the stated tolerance."""


@dataclass(frozen=True)
class ParityTolerance:
    """Outputs agree when max |reference - other| <= atol + rtol * max |reference|."""

    atol: float = 1e-4
    rtol: float = 1e-5

    def bound(self, reference: np.ndarray) -> float:
        scale = float(np.max(np.abs(reference))) if reference.size else 0.0
        return self.atol + self.rtol * scale


def predict_torch(model: Any, inputs: np.ndarray, batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    """Outputs as float32 numpy; on ``device`` the model must already be there (inputs are moved,
    and copying the outputs back waits for the device to finish)."""
    import torch

    model.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            batch = torch.as_tensor(inputs[start : start + batch_size]).to(device)
            outputs.append(model(batch).float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0,), dtype=np.float32)


def keras_inputs(inputs: np.ndarray) -> np.ndarray:
    """PyTorch-layout inputs as the Keras twins take them (NHWC images, int32 token ids)."""
    converted = to_keras_layout(np.asarray(inputs))
    return converted.astype(np.int32) if converted.dtype == np.int64 else converted


def predict_keras(model: Any, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Eager calls per batch (``model.predict`` adds a dataset pipeline and callbacks we do not
    need): the reference the graph is checked against, and the ``eager`` serving mode."""
    converted = keras_inputs(inputs)
    outputs = [
        np.asarray(model(converted[start : start + batch_size], training=False))
        for start in range(0, len(converted), batch_size)
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0,), dtype=np.float32)


class KerasPredictor:
    """A Keras model called through one ``tf.function`` whose input signature is fixed on the
    first batch (any batch size, that item shape and dtype), so it is traced once.

    The first call also runs the batch eagerly and refuses a graph whose outputs differ beyond
    ``tolerance`` (``ParityError``): a server checks its graph on its warm-up call. ``mode``
    ``xla`` compiles the graph with XLA (``jit_compile``); ``eager`` skips the graph. Call it
    from one thread.
    """

    def __init__(
        self,
        model: Any,
        mode: str = "graph",
        batch_size: int = 256,
        tolerance: ParityTolerance = ParityTolerance(),
    ) -> None:
        if mode not in KERAS_MODES:
            raise ConfigError(f"unknown Keras mode {mode!r}; known: {', '.join(KERAS_MODES)}")
        self.model = model
        self.mode = mode
        self.batch_size = batch_size
        self.tolerance = tolerance
        self.parity_max_abs_diff: float | None = None
        self._graph: Any = None

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        if self.mode == "eager":
            return predict_keras(self.model, inputs, self.batch_size)
        converted = keras_inputs(inputs)
        if self._graph is None:
            self._graph = self._traced(converted)
        outputs = [
            self._graph(converted[start : start + self.batch_size]).numpy()
            for start in range(0, len(converted), self.batch_size)
        ]
        return np.concatenate(outputs) if outputs else np.zeros((0,), dtype=np.float32)

    def _traced(self, example: np.ndarray) -> Any:
        import tensorflow as tf

        model = self.model
        signature = [tf.TensorSpec((None, *example.shape[1:]), tf.as_dtype(example.dtype), name="inputs")]
        graph = tf.function(
            lambda x: model(x, training=False), input_signature=signature, jit_compile=self.mode == "xla"
        )
        batch = example[: self.batch_size]
        reference = np.asarray(model(batch, training=False))
        traced = graph(batch).numpy()
        difference = float(np.max(np.abs(reference - traced))) if reference.size else 0.0
        bound = self.tolerance.bound(reference)
        if not difference <= bound:
            raise ParityError(
                f"the {self.mode} graph of Keras model {model.name!r} differs from its eager outputs by "
                f"{difference:.3g} > {bound:.3g} (atol {self.tolerance.atol:g} + rtol {self.tolerance.rtol:g} "
                "x max|output|); serve it with keras_mode: eager, or report the model"
            )
        self.parity_max_abs_diff = difference
        return graph


def in_batches(
    predict: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """``predict`` over ``inputs`` in slices of ``batch_size`` rows, as float outputs."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    outputs = [predict(inputs[start : start + batch_size]) for start in range(0, len(inputs), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0,), dtype=np.float32)


@functools.lru_cache(maxsize=4)
def onnx_session(model_bytes: bytes, num_threads: int | None) -> Any:
    """One InferenceSession per model bytes. Building a session parses and optimises the graph
    (seconds for a MiniLM), and ``run`` is thread-safe, so repeated predictions share one; four
    sessions at most stay alive. Keyed on the bytes themselves: equal bytes, same session."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: ORT warns about unused initializers etc.
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


ORT_DTYPES = {
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
    session = onnx_session(model_bytes, num_threads)
    graph_inputs, graph_outputs = session.get_inputs(), session.get_outputs()
    if len(graph_inputs) != 1 or len(graph_outputs) != 1:
        raise ValueError(
            f"predict_onnx runs single-input, single-output models; this one has "
            f"{len(graph_inputs)} inputs and {len(graph_outputs)} outputs"
        )
    source = graph_inputs[0]
    dtype = ORT_DTYPES.get(source.type)
    if dtype is None:
        raise ValueError(f"predict_onnx: unsupported input type {source.type} of {source.name!r}")

    def run(batch: np.ndarray) -> np.ndarray:
        return np.asarray(
            session.run(None, {source.name: batch.astype(dtype, copy=False)})[0], dtype=np.float32
        )

    return in_batches(run, np.asarray(inputs), batch_size)
