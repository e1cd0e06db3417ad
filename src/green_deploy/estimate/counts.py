"""Per-layer operation counts of a model on one example, in PyTorch and in Keras.

PyTorch: forward hooks on the modules a rule knows (Linear, Conv, LSTM, MultiheadAttention,
Embedding, norms, pooling, activations; their children are not visited), a
``TorchFunctionMode`` that records the matrix products run directly in a container's
``forward`` (``scaled_dot_product_attention``, ``matmul``, ``einsum``, ``F.linear``), which is
where the zoo's attention computes its scores, and a ``TorchDispatchMode`` that records the
other kernels a container launches between layers (residual additions, concatenations,
reductions, position indices: the glue, kinds ``Pointwise``, ``Copy``, ``Reduction``,
``Factory``) and how many kernels each layer launches (``hyper["kernels"]``: a tanh-GELU written
in Python is eight, ``nn.GELU`` one). The total is cross-checked with
``FlopCounterMode`` (through ``green_deploy.optimize.macs.count_macs``, the counter behind the
variants table). Keras: each layer's ``call`` is wrapped for one eager forward pass, so its
inputs, outputs and weights are seen; Keras class names map to PyTorch's (Dense -> Linear,
Conv2D and DepthwiseConv2D -> Conv2d, MultiHeadAttention -> MultiheadAttention, ...).

Counts are per example (batch 1). ``macs`` is the dense work; ``effective_macs`` scales it by
the non-zero fraction of the layer's weight matrices (what a sparse kernel could skip).
``extra_muls`` / ``extra_adds`` are rough per-element counts of the arithmetic that is not a
multiply-accumulate (bias, normalisation, pooling, activations; see ``_ELEMENTWISE``).
TFLite flatbuffers and ONNX graphs are not parsed: count the model they were converted from
(``count_artifact`` says so) and set its bit widths with ``with_bits``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from green_deploy.errors import GreenDeployError

logger = logging.getLogger(__name__)


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
_ELEMENTWISE: dict[str, tuple[int, int]] = {
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
_COPIES = {"Concatenate", "ZeroPad2d", "ZeroPad1d", "Upsample", "UpSampling2d", "Permute", "Cast"}
# Kinds that are free at inference: views or no-ops.
_FREE = {"Identity", "Dropout", "Flatten", "Unflatten", "Reshape", "Input", "QuantStub", "DeQuantStub"}


def _elementwise_ops(kind: str, elems: int) -> tuple[int, int]:
    muls, adds = _ELEMENTWISE.get(kind, (0, 0))
    return muls * elems, adds * elems


def _bits_of_dtype(dtype: Any) -> int:
    """Bit width of a torch, numpy or TensorFlow dtype (quantized int8 types are 8)."""
    name = str(getattr(dtype, "name", dtype)).removeprefix("torch.")
    if name in ("qint8", "quint8", "int8", "uint8", "bool", "quint4x2"):
        return 4 if name == "quint4x2" else 8
    if name in ("float16", "half", "bfloat16", "int16", "qint16"):
        return 16
    if name in ("float64", "double", "int64", "long", "complex64"):
        return 64
    return 32


# --- PyTorch -------------------------------------------------------------------------------------

_TORCH_LINEAR = {"Linear", "NonDynamicallyQuantizableLinear", "LinearReLU", "LazyLinear"}
_TORCH_CONV = {
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvReLU1d",
    "ConvReLU2d",
    "ConvReLU3d",
    "Conv2dStaticSamePadding",
}
_TORCH_CONV_T = {"ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"}
_TORCH_RNN = {"LSTM": 4, "GRU": 3, "RNN": 1}
_TORCH_POOL = {
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
_TORCH_NAMED = set(_ELEMENTWISE) | _COPIES | _FREE | {"Embedding", "EmbeddingBag", "MultiheadAttention"}


def _torch_kind(module: Any) -> str | None:
    """The vocabulary kind of a module a rule counts, or None (a container, or unknown)."""
    name = type(module).__name__
    if name in _TORCH_LINEAR or _is_transformers_conv1d(module):
        return "Linear"
    if name in _TORCH_CONV or name.startswith("Conv2dStatic") or name.startswith("Conv2dDynamic"):
        return f"Conv{_conv_dims(module)}d"
    if name in _TORCH_CONV_T:
        return name
    if name in _TORCH_RNN or name in _TORCH_POOL or name in _TORCH_NAMED:
        return name
    if name in ("Quantize", "DeQuantize"):
        return "Cast"
    if name.startswith("BatchNorm") or name.startswith("BNReLU"):
        return f"BatchNorm{name[-2:]}" if name[-2:] in ("1d", "2d", "3d") else "BatchNorm2d"
    if name.endswith("GELUActivation"):  # transformers' activation modules
        return "GELU"
    if name in ("MemoryEfficientSwish", "Swish", "SiLUActivation"):
        return "SiLU"
    if name in ("Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d"):
        return "Upsample"
    return None


def _conv_dims(module: Any) -> int:
    kernel = getattr(module, "kernel_size", (1, 1))
    return len(kernel) if isinstance(kernel, tuple | list) else 2


def _torch_tensors(value: Any) -> list[Any]:
    """Tensors in a forward argument or output (tuples, lists, dicts flattened)."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, tuple | list):
        return [t for item in value for t in _torch_tensors(item)]
    if isinstance(value, Mapping):
        return [t for item in value.values() for t in _torch_tensors(item)]
    return []


def _unique(tensors: Iterable[Any]) -> list[Any]:
    seen: dict[int, Any] = {}
    for tensor in tensors:
        seen.setdefault(id(tensor), tensor)
    return list(seen.values())


def _torch_weights(module: Any) -> list[tuple[str, Any]]:
    """(name, tensor) of the module's stored values: parameters and buffers of its subtree, the
    packed weights of quantized modules, pruning masks applied (``weight_orig`` * ``weight_mask``)."""
    import torch

    out: list[tuple[str, Any]] = []

    def add(key: str, value: Any) -> None:
        if isinstance(value, tuple | list):
            for index, item in enumerate(value):
                add(f"{key}.{index}", item)
        elif isinstance(value, torch.Tensor) and value.ndim > 0:
            out.append((key, value))

    for key, value in module.state_dict(keep_vars=True).items():
        if key.endswith("_mask"):
            continue
        if key.endswith("_orig"):  # torch.nn.utils.prune reparametrisation: use the masked tensor
            owner = module.get_submodule(key.rsplit(".", 1)[0]) if "." in key else module
            add(key, getattr(owner, key.rsplit(".", 1)[-1].removesuffix("_orig")))
        else:
            add(key, value)
    if not out and callable(getattr(module, "_weight_bias", None)):  # dynamic quantized RNNs
        for key, value in module._weight_bias().items():
            add(key, value)
    return out


def _nonzero(tensor: Any) -> int:
    import torch

    if tensor.is_quantized:
        return int(torch.count_nonzero(tensor.int_repr().int() - _zero_points(tensor)))
    return int(torch.count_nonzero(tensor.detach()))


def _zero_points(tensor: Any) -> Any:
    import torch

    if tensor.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return tensor.q_zero_point()
    shape = [1] * tensor.ndim
    shape[tensor.q_per_channel_axis()] = -1
    return tensor.q_per_channel_zero_points().reshape(shape)


@dataclass
class _Weights:
    params: int
    nonzero: int
    matrix_fraction: float
    bits: int | None
    quantized: bool


def _weight_summary(named: list[tuple[str, Any]]) -> _Weights:
    params = sum(t.numel() for _, t in named)
    nonzero = sum(_nonzero(t) for _, t in named)
    matrices = [t for _, t in named if t.ndim >= 2]
    matrix_elems = sum(t.numel() for t in matrices)
    fraction = sum(_nonzero(t) for t in matrices) / matrix_elems if matrix_elems else 1.0
    largest = max((t for _, t in named), key=lambda t: t.numel(), default=None)
    quantized = any(t.is_quantized for _, t in named)
    return _Weights(
        params, nonzero, fraction, None if largest is None else _bits_of_dtype(largest.dtype), quantized
    )


def _torch_layer(name: str, kind: str, module: Any, args: tuple, kwargs: dict, output: Any) -> LayerCount:
    inputs = _unique(_torch_tensors(args) + _torch_tensors(kwargs))
    outputs = _unique(_torch_tensors(output))
    in_elems = sum(t.numel() for t in inputs)
    out_elems = sum(t.numel() for t in outputs)
    activation_bits = _bits_of_dtype(outputs[0].dtype) if outputs else 32
    weights = (
        _weight_summary(_torch_weights(module)) if kind not in _FREE else _Weights(0, 0, 1.0, None, False)
    )
    weight_bits = weights.bits or activation_bits
    float_bits = activation_bits if activation_bits in (16, 32, 64) else weight_bits
    compute_bits = 8 if weights.quantized or activation_bits == 8 else float_bits
    macs, muls, adds, weight_reads = 0, 0, 0, weights.params
    hyper: dict[str, Any] = {}
    covered, note = True, ""
    if kind == "Linear":
        in_f, out_f = _linear_features(module)
        macs = (in_elems // max(in_f, 1)) * in_f * out_f if inputs else 0
        adds = out_elems if _has_bias(module) else 0
        muls, extra = _elementwise_ops("ReLU", out_elems) if type(module).__name__ == "LinearReLU" else (0, 0)
        adds += extra
        hyper = {"in_features": in_f, "out_features": out_f, "bias": _has_bias(module)}
    elif kind.startswith("Conv") and not kind.startswith("ConvTranspose"):
        weight = _module_weight(module)
        macs = out_elems * math.prod(weight.shape[1:])
        adds = out_elems if _has_bias(module) else 0
        hyper = _conv_hyper(module, weight)
        if "ReLU" in type(module).__name__:
            adds += out_elems
    elif kind.startswith("ConvTranspose"):
        weight = _module_weight(module)
        macs = inputs[0].numel() * math.prod(weight.shape[1:]) if inputs else 0
        adds = out_elems if _has_bias(module) else 0
        hyper = _conv_hyper(module, weight)
    elif kind in _TORCH_RNN:
        macs, hyper, covered, note = _torch_rnn(module, kind, inputs)
        muls, adds = _elementwise_ops("Sigmoid", hyper.get("state_elems", 0) * _TORCH_RNN[kind])
    elif kind == "MultiheadAttention":
        macs, hyper = _torch_mha(module, args, kwargs)
        muls, adds = _elementwise_ops("Softmax", hyper["score_elems"])
    elif kind in ("Embedding", "EmbeddingBag"):
        dim = module.embedding_dim
        lookups = inputs[0].numel() if inputs else 0
        weight_reads = lookups * dim
        if kind == "EmbeddingBag":
            adds, muls = lookups * dim, out_elems  # sum of the bag's rows, then the mean
        hyper = {"num_embeddings": module.num_embeddings, "embedding_dim": dim, "lookups": lookups}
    elif kind in _TORCH_POOL:
        muls, adds, hyper = _pool_ops(kind, in_elems, out_elems, getattr(module, "kernel_size", None))
    elif kind in _ELEMENTWISE:
        muls, adds = _elementwise_ops(kind, out_elems)
        if kind == "LayerNorm":
            hyper = {"normalized_shape": tuple(module.normalized_shape)}
        if kind.startswith("BatchNorm"):
            hyper = {"num_features": module.num_features}
    elif kind in _FREE:
        in_elems = out_elems = 0
    elif kind not in _COPIES:
        covered, note = False, f"no counting rule for {type(module).__name__}"
    return _layer(
        name,
        kind,
        macs,
        weights,
        weight_bits,
        activation_bits,
        compute_bits,
        in_elems,
        out_elems,
        weight_reads,
        muls,
        adds,
        hyper,
        covered,
        note,
        input_bits=_input_bits(inputs, activation_bits),
    )


def _input_bits(inputs: list[Any], default: int) -> int:
    return _bits_of_dtype(inputs[0].dtype) if inputs else default


def _layer(
    name: str,
    kind: str,
    macs: int,
    weights: _Weights,
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


def _module_weight(module: Any) -> Any:
    weight = module.weight
    return weight() if callable(weight) else weight


def _has_bias(module: Any) -> bool:
    bias = getattr(module, "bias", None)
    if callable(bias):
        bias = bias()
    return bias is not None and not isinstance(bias, bool)


def _is_transformers_conv1d(module: Any) -> bool:
    """transformers' ``Conv1D`` (GPT-2's projections) is a Linear layer with a transposed weight."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "nx")


def _linear_features(module: Any) -> tuple[int, int]:
    if hasattr(module, "in_features"):
        return int(module.in_features), int(module.out_features)
    if _is_transformers_conv1d(module):
        return int(module.nx), int(module.nf)
    out_f, in_f = _module_weight(module).shape
    return int(in_f), int(out_f)


def _conv_hyper(module: Any, weight: Any) -> dict[str, Any]:
    def tup(value: Any) -> tuple[int, ...]:
        return tuple(int(v) for v in value) if isinstance(value, tuple | list) else (int(value),)

    groups = int(getattr(module, "groups", 1))
    return {
        "in_channels": int(getattr(module, "in_channels", weight.shape[1] * groups)),
        "out_channels": int(getattr(module, "out_channels", weight.shape[0])),
        "kernel_size": tuple(int(k) for k in weight.shape[2:]),
        "stride": tup(getattr(module, "stride", 1)),
        "groups": groups,
    }


def _torch_rnn(module: Any, kind: str, inputs: list[Any]) -> tuple[int, dict[str, Any], bool, str]:
    if not inputs or inputs[0].ndim not in (2, 3):
        return (
            0,
            {},
            False,
            f"{kind} input is not a (batch, seq, features) tensor (packed sequences are not counted)",
        )
    x = inputs[0]
    batch_first = getattr(module, "batch_first", False)
    steps = x.shape[-2] if (x.ndim == 2 or batch_first) else x.shape[0]
    batch = x.numel() // (steps * x.shape[-1])
    gates, hidden, size = _TORCH_RNN[kind], module.hidden_size, module.input_size
    directions = 2 if module.bidirectional else 1
    macs = 0
    for layer in range(module.num_layers):
        layer_in = size if layer == 0 else hidden * directions
        macs += directions * steps * batch * gates * hidden * (layer_in + hidden)
    hyper = {
        "input_size": size,
        "hidden_size": hidden,
        "num_layers": module.num_layers,
        "bidirectional": bool(module.bidirectional),
        "sequence_length": int(steps),
        "state_elems": int(directions * module.num_layers * steps * batch * hidden),
    }
    return macs, hyper, True, ""


def _torch_mha(module: Any, args: tuple, kwargs: dict) -> tuple[int, dict[str, Any]]:
    names = ("query", "key", "value")
    q, k, v = (args[i] if len(args) > i else kwargs[n] for i, n in enumerate(names))
    seq_axis = 1 if module.batch_first and q.ndim == 3 else 0
    lq, lk = q.shape[seq_axis], k.shape[seq_axis]
    batch = q.numel() // (lq * q.shape[-1])
    embed, heads = module.embed_dim, module.num_heads
    head_dim = embed // heads
    projections = batch * (lq * q.shape[-1] * embed + lk * k.shape[-1] * embed + lk * v.shape[-1] * embed)
    attention = batch * heads * lq * lk * head_dim * 2
    output = batch * lq * embed * embed
    hyper = {
        "embed_dim": embed,
        "num_heads": heads,
        "query_length": int(lq),
        "key_length": int(lk),
        "projection_macs": int(projections + output),
        "attention_macs": int(attention),
        "score_elems": int(batch * heads * lq * lk),
    }
    return projections + attention + output, hyper


def _pool_ops(kind: str, in_elems: int, out_elems: int, kernel: Any) -> tuple[int, int, dict[str, Any]]:
    if kind.startswith("Adaptive") or kernel is None:
        window = in_elems // max(out_elems, 1)
    else:
        window = math.prod(kernel) if isinstance(kernel, tuple | list) else int(kernel) ** int(kind[-2])
    muls = out_elems if "Avg" in kind else 0
    return muls, out_elems * window, {"window": int(window)}


# Functions whose matrix products a container's forward may run directly.
def _functional_macs(
    func: Any, args: tuple, kwargs: dict, output: Any
) -> tuple[str, int, dict[str, Any]] | None:
    import torch
    import torch.nn.functional as F  # noqa: N812

    name = getattr(func, "__name__", "")
    if func is F.scaled_dot_product_attention:
        q, k, v = args[:3]
        lq, lk, batch_heads = q.shape[-2], k.shape[-2], q.numel() // (q.shape[-2] * q.shape[-1])
        macs = batch_heads * lq * lk * (q.shape[-1] + v.shape[-1])
        causal = bool(kwargs.get("is_causal", args[5] if len(args) > 5 else False))
        hyper = {
            "heads": int(q.shape[1]) if q.ndim == 4 else 1,
            "query_length": int(lq),
            "key_length": int(lk),
        }
        hyper |= {"head_dim": int(q.shape[-1]), "causal": causal, "score_elems": int(batch_heads * lq * lk)}
        return "ScaledDotProductAttention", int(macs), hyper
    if func is F.linear:
        weight = args[1] if len(args) > 1 else kwargs["weight"]
        return "Linear", int(args[0].numel() // weight.shape[-1] * weight.numel()), {"functional": True}
    if func in (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm, torch.mm):
        a = args[0]
        return "MatMul", int(_numel(output) * a.shape[-1]), {"inner": int(a.shape[-1])}
    if func is torch.Tensor.__rmatmul__:
        return "MatMul", int(_numel(output) * args[1].shape[-1]), {"inner": int(args[1].shape[-1])}
    if func in (torch.addmm, torch.baddbmm):
        a = args[1]
        return "MatMul", int(_numel(output) * a.shape[-1]), {"inner": int(a.shape[-1])}
    if func is torch.einsum:
        equation, operands = args[0], args[1:]
        if len(operands) == 1 and isinstance(operands[0], tuple | list):
            operands = tuple(operands[0])
        if "..." in equation:
            return "Einsum", -1, {"equation": equation}
        sizes: dict[str, int] = {}
        for spec, operand in zip(equation.split("->")[0].split(","), operands, strict=False):
            sizes.update(zip(spec.strip(), (int(s) for s in operand.shape), strict=False))
        return "Einsum", int(math.prod(sizes.values())), {"equation": equation}
    if name in ("conv1d", "conv2d", "conv3d") and func in (F.conv1d, F.conv2d, F.conv3d):
        weight = args[1] if len(args) > 1 else kwargs["weight"]
        return f"Conv{name[-2]}d", int(_numel(output) * math.prod(weight.shape[1:])), {"functional": True}
    return None


# aten ops that launch no kernel: views and aliases, metadata, allocation, a scalar read back.
_NO_KERNEL = frozenset(
    {"detach", "alias", "lift_fresh", "_unsafe_view", "_local_scalar_dense", "empty", "empty_like"}
    | {"empty_strided", "new_empty", "new_empty_strided", "sym_size", "sym_stride", "sym_numel"}
)
# Ops between layers that copy data (by name: quantized namespaces carry no tags).
_GLUE_COPIES = frozenset(
    {"cat", "stack", "clone", "_to_copy", "copy_", "copy", "gather", "index", "index_select", "repeat"}
    | {"constant_pad_nd", "masked_select", "flip", "roll", "quantize_per_tensor", "dequantize"}
)
# Ops that only allocate and fill (a tensor argument gives shape and dtype, not values).
_GLUE_FACTORIES = frozenset({"new_ones", "new_zeros", "new_full", "ones_like", "zeros_like", "full_like"})
_GLUE_POINTWISE = frozenset({"add", "add_relu", "add_scalar", "mul", "mul_relu", "mul_scalar"})
# The kinds of those kernels (``_glue_layer``).
GLUE_KINDS = ("Pointwise", "Copy", "Reduction", "Factory")


def _launches_kernel(func: Any) -> bool:
    return not func.is_view and func.overloadpacket.__name__ not in _NO_KERNEL


def _glue_layer(name: str, func: Any, args: tuple, kwargs: dict, output: Any) -> LayerCount:
    """A kernel a container launched between layers. Its inputs count every tensor argument (a
    residual addition reads two activations even when they are one tensor)."""
    import torch

    op = func.overloadpacket.__name__
    inputs = _torch_tensors(args) + _torch_tensors(kwargs)
    outputs = _unique(_torch_tensors(output))
    in_elems, out_elems = sum(t.numel() for t in inputs), sum(t.numel() for t in outputs)
    bits = _bits_of_dtype(outputs[0].dtype) if outputs else 32
    muls = adds = 0
    covered, note = True, ""
    if torch.Tag.pointwise in func.tags or op in _GLUE_POINTWISE:
        kind = "Pointwise"
        muls, adds = (out_elems, 0) if op.startswith(("mul", "div")) else (0, out_elems)
    elif torch.Tag.reduction in func.tags:
        kind, adds = "Reduction", in_elems
    elif not inputs or op in _GLUE_FACTORIES:
        kind, in_elems = "Factory", 0
    elif op in _GLUE_COPIES or op.lstrip("_").startswith("upsample"):
        kind = "Copy"
    else:
        kind, covered, note = "Op", False, f"{func.name()} runs between layers and no rule counts it"
    no_weights = _Weights(0, 0, 1.0, None, False)
    return _layer(
        name,
        kind,
        0,
        no_weights,
        bits,
        bits,
        bits,
        in_elems,
        out_elems,
        0,
        muls,
        adds,
        {"op": func.name()},
        covered,
        note,
        _input_bits(inputs, bits),
    )


def _numel(value: Any) -> int:
    return sum(t.numel() for t in _torch_tensors(value))


class _TorchTrace:
    """What one forward pass shows the counter: the layers (forward hooks), the products a
    container runs itself (a torch function mode) and the other kernels it launches (a dispatch
    mode). A product's own kernels are not glue: the kernels of a torch function call wait in
    ``pending`` until the call is known not to be a product."""

    def __init__(self, model: Any) -> None:
        self.names = {module: name or type(model).__name__ for name, module in model.named_modules()}
        self.kinds = {module: _torch_kind(module) for module in self.names}
        self.stack: list[Any] = []  # modules whose forward is running
        self.inside_counted = 0  # counted layers on the stack
        self.layer_kernels = 0  # kernels the outermost counted layer has launched so far
        self.in_function = False
        self.counting = False  # the counter's own tensor work (weight statistics) is not glue
        self.pending: list[tuple[Any, tuple, dict, Any]] = []
        self.records: list[LayerCount] = []
        self.claimed: set[int] = set()  # parameters a functional F.linear / F.conv call read
        self._calls: dict[str, int] = {}

    def _unique_name(self, base: str) -> str:
        self._calls[base] = self._calls.get(base, 0) + 1
        return base if self._calls[base] == 1 else f"{base}#{self._calls[base]}"

    @contextmanager
    def _own_work(self) -> Iterator[None]:
        self.counting = True
        try:
            yield
        finally:
            self.counting = False

    def _counted(self, module: Any) -> bool:
        return self.kinds[module] is not None or not any(True for _ in module.children())

    def pre_hook(self, module: Any, args: tuple, kwargs: dict) -> None:
        self.stack.append(module)
        if self._counted(module):
            self.inside_counted += 1
            if self.inside_counted == 1:
                self.layer_kernels = 0

    def post_hook(self, module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        self.stack.pop()
        if self._counted(module):
            self.inside_counted -= 1
            if self.inside_counted == 0:  # not inside another counted module
                with self._own_work():
                    name = self._unique_name(self.names[module])
                    kind = self.kinds[module] or type(module).__name__
                    layer = _torch_layer(name, kind, module, args, kwargs, output)
                self.records.append(replace(layer, hyper={**layer.hyper, "kernels": self.layer_kernels}))

    def _glue(self, func: Any, args: tuple, kwargs: dict, output: Any) -> None:
        name = self._unique_name(f"{self.names[self.stack[-1]]}/{func.overloadpacket.__name__}")
        self.records.append(_glue_layer(name, func, args, kwargs, output))

    def function(self, func: Any, args: tuple, kwargs: dict) -> Any:
        self.in_function = True
        try:
            output = func(*args, **kwargs)
        finally:
            self.in_function = False
        kernels = list(self.pending)
        self.pending.clear()
        if self.inside_counted == 0 and self.stack:
            found = _functional_macs(func, args, kwargs, output)
            if found is None:
                for kernel in kernels:
                    self._glue(*kernel)
            else:
                with self._own_work():
                    name = self._unique_name(f"{self.names[self.stack[-1]]}/{found[0]}")
                    self.records.append(_functional_layer(name, found, args, output, self.claimed))
        return output

    def kernel(self, func: Any, args: tuple, kwargs: dict) -> Any:
        output = func(*args, **kwargs)
        if self.stack and not self.counting and _launches_kernel(func):
            if self.inside_counted:
                self.layer_kernels += 1
            elif self.in_function:
                self.pending.append((func, args, kwargs, output))
            else:
                self._glue(func, args, kwargs, output)
        return output


def count_torch(model: Any, example: Any, cross_check: bool = True) -> ModelCount:
    """Per-layer counts of a PyTorch module on one example (the first item of ``example``, a
    tensor, array or tuple of them), the glue kernels between its layers included.
    ``cross_check``: also count the whole model with ``FlopCounterMode``
    (``ModelCount.reference_macs``)."""
    import torch
    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode

    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper: hooks go on the module
    inputs = _torch_example(example)
    trace = _TorchTrace(model)

    class Functions(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            return trace.function(func, args, kwargs or {})

    class Kernels(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            return trace.kernel(func, args, kwargs or {})

    handles = []
    for module in trace.names:
        handles.append(module.register_forward_pre_hook(trace.pre_hook, with_kwargs=True))
        handles.append(module.register_forward_hook(trace.post_hook, with_kwargs=True))
    modes = {module: module.training for module in trace.names}
    model.eval()
    try:
        with torch.no_grad(), Functions(), Kernels():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    records = trace.records + _container_parameters(model, trace.names, trace.kinds, trace.claimed)
    reference = None
    if cross_check:
        from green_deploy.optimize.macs import count_macs

        try:
            reference = count_macs(model, inputs)
        except Exception as error:  # quantized kernels and compiled graphs can refuse the counter
            logger.warning("FlopCounterMode could not count %s: %s", type(model).__name__, error)
    return ModelCount("torch", tuple(records), reference)


def _functional_layer(
    name: str, found: tuple[str, int, dict[str, Any]], args: tuple, output: Any, claimed: set[int]
) -> LayerCount:
    """A matrix product run by a container's forward. For ``F.linear`` / ``F.conv*`` (how an
    FX-traced graph runs its layers) the weight and bias arguments are the layer's weights."""
    kind, macs, hyper = found
    outputs = _unique(_torch_tensors(output))
    bits = _bits_of_dtype(outputs[0].dtype) if outputs else 32
    named: list[tuple[str, Any]] = []
    if hyper.get("functional"):
        named = [(str(i), t) for i, t in enumerate(args[1:3]) if hasattr(t, "numel") and t.ndim > 0]
        claimed.update(id(t) for _, t in named)
    weights = _weight_summary(named) if named else _Weights(0, 0, 1.0, None, False)
    inputs = _unique(_torch_tensors(args[:1] if named else args))
    in_elems, out_elems = sum(t.numel() for t in inputs), sum(t.numel() for t in outputs)
    muls, adds = _elementwise_ops("Softmax", hyper.get("score_elems", 0))
    if len(named) > 1:
        adds += out_elems  # the bias
    covered = macs >= 0
    weight_bits = weights.bits or bits
    return _layer(
        name,
        kind,
        max(macs, 0),
        weights,
        weight_bits,
        bits,
        8 if weights.quantized else bits,
        in_elems,
        out_elems,
        weights.params,
        muls,
        adds,
        hyper,
        covered,
        "" if covered else "einsum with '...' is not counted",
        bits,
    )


def _container_parameters(
    model: Any, names: dict[Any, str], kinds: dict[Any, Any], claimed: set[int]
) -> list[LayerCount]:
    """Parameters held by containers themselves (e.g. learned position embeddings): read once per
    example, added to activations; their exact use is not traced."""
    out = []
    counted = [m for m in names if kinds[m] is not None]
    skip = {id(sub) for m in counted for sub in m.modules()}
    for module, name in names.items():
        if id(module) in skip:
            continue
        own = [(key, p) for key, p in module.named_parameters(recurse=False) if id(p) not in claimed]
        if own:
            weights = _weight_summary(own)
            bits = weights.bits or 32
            out.append(
                _layer(
                    f"{name}:parameters",
                    "Parameter",
                    0,
                    weights,
                    bits,
                    bits,
                    bits,
                    0,
                    weights.params,
                    weights.params,
                    0,
                    weights.params,
                    {"tensors": [k for k, _ in own]},
                    True,
                    "a container's own parameters, read once and added",
                    bits,
                )
            )
    return out


def _torch_example(example: Any) -> tuple[Any, ...]:
    import torch

    items = example if isinstance(example, tuple | list) else (example,)
    return tuple(
        torch.as_tensor(np.asarray(item) if not isinstance(item, torch.Tensor) else item)[:1]
        for item in items
    )


# --- Keras ---------------------------------------------------------------------------------------

_KERAS_KIND = {
    "Dense": "Linear",
    "EinsumDense": "Linear",
    "Conv1D": "Conv1d",
    "Conv2D": "Conv2d",
    "Conv3D": "Conv3d",
    "DepthwiseConv1D": "Conv1d",
    "DepthwiseConv2D": "Conv2d",
    "Conv1DTranspose": "ConvTranspose1d",
    "Conv2DTranspose": "ConvTranspose2d",
    "Embedding": "Embedding",
    "LSTM": "LSTM",
    "GRU": "GRU",
    "SimpleRNN": "RNN",
    "MultiHeadAttention": "MultiheadAttention",
    "MaxPooling1D": "MaxPool1d",
    "MaxPooling2D": "MaxPool2d",
    "AveragePooling1D": "AvgPool1d",
    "AveragePooling2D": "AvgPool2d",
    "GlobalAveragePooling1D": "AdaptiveAvgPool1d",
    "GlobalAveragePooling2D": "AdaptiveAvgPool2d",
    "GlobalMaxPooling1D": "AdaptiveMaxPool1d",
    "GlobalMaxPooling2D": "AdaptiveMaxPool2d",
    "LayerNormalization": "LayerNorm",
    "GroupNormalization": "GroupNorm",
    "Softmax": "Softmax",
    "LeakyReLU": "LeakyReLU",
    "ELU": "ELU",
    "Dropout": "Dropout",
    "SpatialDropout2D": "Dropout",
    "Flatten": "Flatten",
    "Reshape": "Reshape",
    "Permute": "Permute",
    "InputLayer": "Input",
    "Add": "Add",
    "Multiply": "Mul",
    "Concatenate": "Concatenate",
    "UpSampling2D": "Upsample",
    "ZeroPadding1D": "ZeroPad1d",
    "ZeroPadding2D": "ZeroPad2d",
    "Rescaling": "ScaleOffset",
    # green_deploy.zoo.families.keras_layers
    "ScaleOffset": "ScaleOffset",
    "L2Normalize": "L2Normalize",
    "PositionEmbedding": "PositionEmbedding",
    "PaddingAttentionMask": "AttentionMask",
    "MaskedMean": "MaskedMean",
}
_KERAS_ACTIVATIONS = {
    "relu": "ReLU",
    "relu6": "ReLU6",
    "gelu": "GELU",
    "swish": "SiLU",
    "silu": "SiLU",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "softmax": "Softmax",
    "elu": "ELU",
    "hard_sigmoid": "Hardsigmoid",
    "linear": "Identity",
}


def _keras_kind(layer: Any) -> str | None:
    name = type(layer).__name__
    if name == "ReLU":
        return "ReLU6" if layer.max_value is not None and float(layer.max_value) == 6.0 else "ReLU"
    if name == "Activation":
        return _activation_kind(layer.activation)
    if name == "BatchNormalization":
        return "BatchNorm"
    return _KERAS_KIND.get(name)


def _activation_kind(activation: Any) -> str | None:
    if activation is None:
        return "Identity"
    return _KERAS_ACTIVATIONS.get(getattr(activation, "__name__", str(activation)))


def _keras_layers(model: Any) -> list[Any]:
    """Layers in call order of a (possibly nested) Keras model; nested models are flattened."""
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and type(layer).__name__ in ("Functional", "Sequential", "Model"):
            out.extend(_keras_layers(layer))
        else:
            out.append(layer)
    return out


def _keras_tensors(value: Any) -> list[Any]:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return [value]
    if isinstance(value, tuple | list):
        return [t for item in value for t in _keras_tensors(item)]
    if isinstance(value, Mapping):
        return [t for item in value.values() for t in _keras_tensors(item)]
    return []


def _size(tensor: Any) -> int:
    return int(math.prod(int(d) for d in tensor.shape))


def count_keras(model: Any, example: Any) -> ModelCount:
    """Per-layer counts of a Keras model on one example (the first item of ``example``, in the
    Keras layout: NHWC images). Each layer's ``call`` is wrapped for one eager forward pass."""
    items = example if isinstance(example, tuple | list) else (example,)
    inputs = [np.asarray(item)[:1] for item in items]
    layers = _keras_layers(model)
    seen: list[tuple[Any, tuple, dict, Any]] = []
    originals = {}
    for layer in layers:
        originals[layer] = layer.__dict__.get("call")

        def wrapped(*args: Any, _layer: Any = layer, _call: Any = layer.call, **kwargs: Any) -> Any:
            output = _call(*args, **kwargs)
            seen.append((_layer, args, kwargs, output))
            return output

        layer.call = wrapped
    try:
        model(inputs[0] if len(inputs) == 1 else inputs, training=False)
    finally:
        for layer, original in originals.items():
            if original is None:
                del layer.call
            else:
                layer.call = original
    calls: dict[str, int] = {}
    records = []
    for layer, args, kwargs, output in seen:
        calls[layer.name] = calls.get(layer.name, 0) + 1
        name = layer.name if calls[layer.name] == 1 else f"{layer.name}#{calls[layer.name]}"
        records.append(_keras_layer(name, layer, args, kwargs, output))
    return ModelCount("keras", tuple(records))


def _keras_weights(layer: Any) -> _Weights:
    arrays = [(w.name, np.asarray(w.numpy()), w.dtype) for w in layer.weights]
    params = sum(a.size for _, a, _ in arrays)
    nonzero = sum(int(np.count_nonzero(a)) for _, a, _ in arrays)
    matrices = [a for _, a, _ in arrays if a.ndim >= 2]
    matrix_elems = sum(a.size for a in matrices)
    fraction = sum(int(np.count_nonzero(a)) for a in matrices) / matrix_elems if matrix_elems else 1.0
    largest = max(arrays, key=lambda item: item[1].size, default=None)
    bits = None if largest is None else _bits_of_dtype(largest[2])
    return _Weights(params, nonzero, fraction, bits, bits == 8)


def _keras_layer(name: str, layer: Any, args: tuple, kwargs: dict, output: Any) -> LayerCount:
    kind = _keras_kind(layer)
    inputs = _unique(_keras_tensors(args) + _keras_tensors({k: v for k, v in kwargs.items() if k != "mask"}))
    outputs = _unique(_keras_tensors(output))
    in_elems = sum(_size(t) for t in inputs)
    out_elems = sum(_size(t) for t in outputs)
    activation_bits = _bits_of_dtype(outputs[0].dtype) if outputs else 32
    weights = _keras_weights(layer)
    weight_bits = weights.bits or activation_bits
    compute_bits = 8 if weights.quantized else activation_bits
    macs, muls, adds, weight_reads = 0, 0, 0, weights.params
    hyper: dict[str, Any] = {}
    covered, note = True, ""
    cls = type(layer).__name__
    if kind is None:
        kind, covered, note = cls, False, f"no counting rule for Keras layer {cls}"
    elif kind == "Linear":
        kernel = layer.kernel
        if cls == "Dense":
            in_f, out_f = int(kernel.shape[0]), int(kernel.shape[1])
            macs = in_elems // in_f * in_f * out_f
            hyper = {"in_features": in_f, "out_features": out_f, "bias": bool(layer.use_bias)}
        else:  # EinsumDense: every output element sums over the kernel's contracted axes
            macs = out_elems * int(kernel.shape[0])
            hyper = {"equation": layer.equation}
        adds = out_elems if getattr(layer, "bias", None) is not None else 0
    elif kind.startswith("Conv") and not kind.startswith("ConvTranspose"):
        kernel = layer.depthwise_kernel if cls.startswith("Depthwise") else layer.kernel
        window = math.prod(int(k) for k in kernel.shape[:-2])
        channels_in = int(kernel.shape[-2])
        per_output = window if cls.startswith("Depthwise") else window * channels_in // int(layer.groups)
        macs = out_elems * per_output
        adds = out_elems if layer.use_bias else 0
        groups = channels_in if cls.startswith("Depthwise") else int(layer.groups)
        hyper = {
            "in_channels": channels_in,
            "out_channels": int(outputs[0].shape[-1]) if outputs else 0,
            "kernel_size": tuple(int(k) for k in kernel.shape[:-2]),
            "stride": tuple(int(s) for s in layer.strides),
            "groups": groups,
        }
    elif kind.startswith("ConvTranspose"):
        macs = in_elems * math.prod(int(k) for k in layer.kernel.shape[:-2]) * int(layer.kernel.shape[-2])
        adds = out_elems if layer.use_bias else 0
        hyper = {
            "kernel_size": tuple(int(k) for k in layer.kernel.shape[:-2]),
            "stride": tuple(layer.strides),
        }
    elif kind in _TORCH_RNN:
        cell = layer.cell
        x = inputs[0]
        steps, size, hidden = int(x.shape[1]), int(x.shape[2]), int(cell.units)
        gates = _TORCH_RNN[kind]
        macs = steps * gates * hidden * (size + hidden)
        muls, adds = _elementwise_ops("Sigmoid", steps * hidden * gates)
        hyper = {"input_size": size, "hidden_size": hidden, "num_layers": 1, "sequence_length": steps}
    elif kind == "MultiheadAttention":
        macs, hyper = _keras_mha(layer, args, kwargs)
        muls, adds = _elementwise_ops("Softmax", hyper["score_elems"])
    elif kind == "Embedding":
        dim = int(layer.output_dim)
        lookups = in_elems
        weight_reads = lookups * dim
        hyper = {"num_embeddings": int(layer.input_dim), "embedding_dim": dim, "lookups": lookups}
    elif kind == "BatchNorm":
        kind = {3: "BatchNorm1d", 4: "BatchNorm2d", 5: "BatchNorm3d"}.get(
            len(outputs[0].shape), "BatchNorm1d"
        )
        muls, adds = _elementwise_ops(kind, out_elems)
        hyper = {"num_features": int(outputs[0].shape[-1])}
    elif kind in _TORCH_POOL:
        pool = getattr(layer, "pool_size", None)
        muls, adds, hyper = _pool_ops(kind, in_elems, out_elems, tuple(pool) if pool is not None else None)
    elif kind == "MaskedMean":
        features = int(_size(inputs[0]))
        muls, adds = features + out_elems, features  # mask, sum, divide
    elif kind == "Add":
        adds = out_elems * (len(inputs) - 1)
    elif kind == "PositionEmbedding":
        adds, weight_reads = out_elems, out_elems
    elif kind in _ELEMENTWISE:
        muls, adds = _elementwise_ops(kind, out_elems)
    elif kind in _FREE:
        in_elems = out_elems = 0
    activation = getattr(layer, "activation", None)
    if (
        covered
        and activation is not None
        and cls not in ("Activation",)
        and kind not in ("LSTM", "GRU", "RNN")
    ):
        fused = _activation_kind(activation)
        if fused is None:
            covered, note = False, f"fused activation {activation!r} has no counting rule"
        elif fused != "Identity":
            extra_muls, extra_adds = _elementwise_ops(fused, out_elems)
            muls, adds = muls + extra_muls, adds + extra_adds
            hyper["activation"] = fused
    return _layer(
        name,
        kind,
        macs,
        weights,
        weight_bits,
        activation_bits,
        compute_bits,
        in_elems,
        out_elems,
        weight_reads,
        muls,
        adds,
        hyper,
        covered,
        note,
        input_bits=_input_bits(inputs, activation_bits),
    )


def _keras_mha(layer: Any, args: tuple, kwargs: dict) -> tuple[int, dict[str, Any]]:
    query = args[0] if args else kwargs["query"]
    value = args[1] if len(args) > 1 else kwargs.get("value", query)
    key = args[2] if len(args) > 2 else kwargs.get("key", value)
    key = value if key is None else key
    lq, lk = int(query.shape[1]), int(key.shape[1])
    heads, key_dim = int(layer._num_heads), int(layer._key_dim)
    value_dim = int(layer._value_dim or key_dim)
    out_dim = int(query.shape[-1]) if layer._output_shape is None else int(layer._output_shape[-1])
    projections = (
        lq * int(query.shape[-1]) * heads * key_dim
        + lk * int(key.shape[-1]) * heads * key_dim
        + lk * int(value.shape[-1]) * heads * value_dim
        + lq * heads * value_dim * out_dim
    )
    attention = heads * lq * lk * (key_dim + value_dim)
    hyper = {
        "embed_dim": int(query.shape[-1]),
        "num_heads": heads,
        "query_length": lq,
        "key_length": lk,
        "projection_macs": int(projections),
        "attention_macs": int(attention),
        "score_elems": int(heads * lq * lk),
    }
    return projections + attention, hyper


# --- artifacts -----------------------------------------------------------------------------------


def count_model(model: Any, example: Any) -> ModelCount:
    """``count_torch`` or ``count_keras`` by the model's type (``example`` in that framework's layout)."""
    if type(model).__module__.startswith(("tf_keras", "keras")) or hasattr(model, "get_layer"):
        return count_keras(model, example)
    return count_torch(model, example)


def count_artifact(folder: Path, runtime: str, example: Any) -> ModelCount:
    """Counts of a saved model: a zoo baseline folder (``torch/`` and ``model.keras``) or a
    variant folder. ``runtime``: ``pytorch`` or ``keras``; ``example`` in the PyTorch layout
    (images are moved to NHWC for Keras). TFLite and ONNX are not parsed: UncoveredModelError."""
    from green_deploy.zoo.families.base import to_keras_layout

    folder = Path(folder)
    if runtime in ("tflite", "onnxruntime"):
        raise UncoveredModelError(
            f"{folder}: {runtime} graphs are not counted; count the model it was converted from "
            "(count_artifact on the source) and set its widths with with_bits"
        )
    if runtime == "keras":
        from green_deploy.zoo.artifacts import load_keras_model

        return count_keras(load_keras_model(folder / "model.keras"), to_keras_layout(np.asarray(example)[:1]))
    if runtime != "pytorch":
        raise UncoveredModelError(
            f"{folder}: unknown runtime {runtime!r}; known: pytorch, keras, tflite, onnxruntime"
        )
    if (folder / "torch").is_dir():
        from green_deploy.zoo.artifacts import load_torch_model

        model = load_torch_model(folder / "torch")
    else:
        from green_deploy.optimize.artifacts import load_torch_variant

        model = load_torch_variant(folder)
    return count_torch(model, example)


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


def example_input(zoo: Mapping[str, Any], model_id: str) -> np.ndarray:
    """One test example of a zoo model, encoded as its PyTorch model takes it (batch of 1).
    ``zoo``: the ``zoo`` parameters (conf/base/parameters_zoo.yml)."""
    from green_deploy.zoo.builder import prepare_task_data
    from green_deploy.zoo.data import load_dataset
    from green_deploy.zoo.families import get_family
    from green_deploy.zoo.spec import dataset_settings, select_entry

    entry = select_entry(zoo["models"], model_id)
    settings = dataset_settings(zoo.get("datasets") or {}, entry)
    data = prepare_task_data(entry, load_dataset(entry.dataset, settings), get_family(entry.family))
    return np.asarray(data.test_x)[:1]
