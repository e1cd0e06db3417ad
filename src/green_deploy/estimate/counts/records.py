"""What a count is: one layer's and one model's records, the shared vocabulary of layer kinds
and the per-element cost rules both frameworks apply (``torch_layers``, ``keras``).

Counts are per example (batch 1). ``macs`` is the dense work; ``effective_macs`` scales it by
the non-zero fraction of the layer's weight matrices (what a sparse kernel could skip).
``extra_muls`` / ``extra_adds`` are rough per-element counts of the arithmetic that is not a
multiply-accumulate (bias, normalisation, pooling, activations; see ``ELEMENTWISE``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from green_deploy.errors import GreenDeployError


class UncoveredModelError(GreenDeployError):
    """The model's format cannot be counted here (TFLite, ONNX): count its source model instead."""


@dataclass(frozen=True)
class LayerCount:
    """Operation counts of one layer (one call of it) on one example.

    ``macs``: multiply-accumulates; ``effective_macs``: ``macs`` times the non-zero fraction of
    the layer's weight matrices. ``params`` / ``nonzero_params``: the layer's stored values
    (weights, biases, normalisation statistics). ``weight_reads``: weight values read per example
    (all of them, except an embedding, which reads the looked-up rows). ``*_bits``: widths of the
    weights, activations and the arithmetic (8 for int8 kernels). ``input_elems`` /
    ``output_elems``: activation values in and out. ``bytes_read`` / ``bytes_written``: weights
    read plus inputs, and outputs, at their widths. ``covered`` is False when no rule counts the
    layer; ``note`` then says why.
    """

    name: str
    kind: str
    macs: int = 0
    effective_macs: float = 0.0
    params: int = 0
    nonzero_params: int = 0
    weight_bits: int = 32
    activation_bits: int = 32
    compute_bits: int = 32
    input_elems: int = 0
    output_elems: int = 0
    weight_reads: int = 0
    bytes_read: float = 0.0
    bytes_written: float = 0.0
    extra_muls: int = 0
    extra_adds: int = 0
    hyper: dict[str, Any] = field(default_factory=dict)
    covered: bool = True
    note: str = ""


@dataclass(frozen=True)
class ModelCount:
    """A model's layer counts. ``reference_macs``: the whole model counted by
    ``FlopCounterMode`` (FLOPs / 2), when available; ``note`` says where the count comes from."""

    framework: str
    layers: tuple[LayerCount, ...]
    reference_macs: int | None = None
    note: str = ""

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def effective_macs(self) -> float:
        return float(sum(layer.effective_macs for layer in self.layers))

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def uncovered(self) -> tuple[LayerCount, ...]:
        return tuple(layer for layer in self.layers if not layer.covered)


# Rough non-MAC arithmetic per output element (muls, adds): compares count as adds; exp, erf
# and tanh as a short polynomial. Kinds not listed here and not counted by a rule are uncovered.
_TRANSCENDENTAL = (4, 4)
ELEMENTWISE: dict[str, tuple[int, int]] = {
    "ReLU": (0, 1),
    "ReLU6": (0, 2),
    "LeakyReLU": (1, 1),
    "Hardtanh": (0, 2),
    "GELU": _TRANSCENDENTAL,
    "SiLU": _TRANSCENDENTAL,
    "Sigmoid": _TRANSCENDENTAL,
    "Tanh": _TRANSCENDENTAL,
    "ELU": _TRANSCENDENTAL,
    "Hardswish": (2, 2),
    "Hardsigmoid": (1, 2),
    "Softmax": _TRANSCENDENTAL,
    "Mish": _TRANSCENDENTAL,
    "BatchNorm1d": (1, 1),  # inference: folded into one scale and one shift
    "BatchNorm2d": (1, 1),
    "BatchNorm3d": (1, 1),
    "LayerNorm": (3, 4),  # mean, variance, normalise, affine
    "GroupNorm": (3, 4),
    "L2Normalize": (2, 1),
    "ScaleOffset": (1, 1),
    "Mul": (1, 0),
    "AttentionMask": (0, 1),
    "PositionEmbedding": (0, 1),
    "Add": (0, 1),
}
# Kinds that move data but do no arithmetic (copies, padding, resampling).
COPIES = {"Concatenate", "ZeroPad2d", "ZeroPad1d", "Upsample", "UpSampling2d", "Permute", "Cast"}
# Kinds that are free at inference: views or no-ops.
FREE = {"Identity", "Dropout", "Flatten", "Unflatten", "Reshape", "Input", "QuantStub", "DeQuantStub"}


def elementwise_ops(kind: str, elems: int) -> tuple[int, int]:
    muls, adds = ELEMENTWISE.get(kind, (0, 0))
    return muls * elems, adds * elems


def bits_of_dtype(dtype: Any) -> int:
    """Bit width of a torch, numpy or TensorFlow dtype (quantized int8 types are 8)."""
    name = str(getattr(dtype, "name", dtype)).removeprefix("torch.")
    if name in ("qint8", "quint8", "int8", "uint8", "bool", "quint4x2"):
        return 4 if name == "quint4x2" else 8
    if name in ("float16", "half", "bfloat16", "int16", "qint16"):
        return 16
    if name in ("float64", "double", "int64", "long", "complex64"):
        return 64
    return 32


RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
POOL_KINDS = {
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
}


def unique(tensors: Iterable[Any]) -> list[Any]:
    seen: dict[int, Any] = {}
    for tensor in tensors:
        seen.setdefault(id(tensor), tensor)
    return list(seen.values())


@dataclass
class Weights:
    params: int
    nonzero: int
    matrix_fraction: float
    bits: int | None
    quantized: bool


def first_input_bits(inputs: list[Any], default: int) -> int:
    return bits_of_dtype(inputs[0].dtype) if inputs else default


def layer_count(
    name: str,
    kind: str,
    macs: int,
    weights: Weights,
    weight_bits: int,
    activation_bits: int,
    compute_bits: int,
    in_elems: int,
    out_elems: int,
    weight_reads: int,
    muls: int,
    adds: int,
    hyper: dict[str, Any],
    covered: bool,
    note: str,
    input_bits: int,
) -> LayerCount:
    return LayerCount(
        name=name,
        kind=kind,
        macs=int(macs),
        effective_macs=float(macs) * weights.matrix_fraction,
        params=int(weights.params),
        nonzero_params=int(weights.nonzero),
        weight_bits=weight_bits,
        activation_bits=activation_bits,
        compute_bits=compute_bits,
        input_elems=int(in_elems),
        output_elems=int(out_elems),
        weight_reads=int(weight_reads),
        bytes_read=weight_reads * weight_bits / 8 + in_elems * input_bits / 8,
        bytes_written=out_elems * activation_bits / 8,
        extra_muls=int(muls),
        extra_adds=int(adds),
        hyper=hyper,
        covered=covered,
        note=note,
    )


def pool_ops(kind: str, in_elems: int, out_elems: int, kernel: Any) -> tuple[int, int, dict[str, Any]]:
    if kind.startswith("Adaptive") or kernel is None:
        window = in_elems // max(out_elems, 1)
    else:
        window = math.prod(kernel) if isinstance(kernel, tuple | list) else int(kernel) ** int(kind[-2])
    muls = out_elems if "Avg" in kind else 0
    return muls, out_elems * window, {"window": int(window)}


def with_bits(
    count: ModelCount,
    weight_bits: int,
    activation_bits: int | None = None,
    compute_bits: int | None = None,
    note: str = "",
) -> ModelCount:
    """The counts with every costed layer's widths replaced: for a converted graph (e.g. a TFLite
    int8 model counted on its Keras source). Bytes are recomputed at the new widths."""
    activation_bits = activation_bits or weight_bits
    compute_bits = compute_bits or min(weight_bits, activation_bits)

    def rewidth(layer: LayerCount) -> LayerCount:
        return replace(
            layer,
            weight_bits=weight_bits,
            activation_bits=activation_bits,
            compute_bits=compute_bits,
            bytes_read=layer.weight_reads * weight_bits / 8 + layer.input_elems * activation_bits / 8,
            bytes_written=layer.output_elems * activation_bits / 8,
        )

    return ModelCount(
        count.framework, tuple(rewidth(layer) for layer in count.layers), count.reference_macs, note
    )
