"""Counting rules for the PyTorch modules a rule knows (Linear, Conv, LSTM, MultiheadAttention,
Embedding, norms, pooling, activations): one ``LayerCount`` from one call of the module, its
inputs, outputs and stored weights (quantized packed weights and pruning masks included)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from green_deploy.estimate.counts.records import (
    COPIES,
    ELEMENTWISE,
    FREE,
    POOL_KINDS,
    RNN_GATES,
    LayerCount,
    Weights,
    bits_of_dtype,
    elementwise_ops,
    first_input_bits,
    layer_count,
    pool_ops,
    unique,
)

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
_TORCH_NAMED = set(ELEMENTWISE) | COPIES | FREE | {"Embedding", "EmbeddingBag", "MultiheadAttention"}


def torch_kind(module: Any) -> str | None:
    """The vocabulary kind of a module a rule counts, or None (a container, or unknown)."""
    name = type(module).__name__
    if name in _TORCH_LINEAR or _is_transformers_conv1d(module):
        return "Linear"
    if name in _TORCH_CONV or name.startswith("Conv2dStatic") or name.startswith("Conv2dDynamic"):
        return f"Conv{_conv_dims(module)}d"
    if name in _TORCH_CONV_T:
        return name
    if name in RNN_GATES or name in POOL_KINDS or name in _TORCH_NAMED:
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


def torch_tensors(value: Any) -> list[Any]:
    """Tensors in a forward argument or output (tuples, lists, dicts flattened)."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, tuple | list):
        return [t for item in value for t in torch_tensors(item)]
    if isinstance(value, Mapping):
        return [t for item in value.values() for t in torch_tensors(item)]
    return []


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


def weight_summary(named: list[tuple[str, Any]]) -> Weights:
    params = sum(t.numel() for _, t in named)
    nonzero = sum(_nonzero(t) for _, t in named)
    matrices = [t for _, t in named if t.ndim >= 2]
    matrix_elems = sum(t.numel() for t in matrices)
    fraction = sum(_nonzero(t) for t in matrices) / matrix_elems if matrix_elems else 1.0
    largest = max((t for _, t in named), key=lambda t: t.numel(), default=None)
    quantized = any(t.is_quantized for _, t in named)
    return Weights(
        params, nonzero, fraction, None if largest is None else bits_of_dtype(largest.dtype), quantized
    )


def torch_layer(name: str, kind: str, module: Any, args: tuple, kwargs: dict, output: Any) -> LayerCount:
    inputs = unique(torch_tensors(args) + torch_tensors(kwargs))
    outputs = unique(torch_tensors(output))
    in_elems = sum(t.numel() for t in inputs)
    out_elems = sum(t.numel() for t in outputs)
    activation_bits = bits_of_dtype(outputs[0].dtype) if outputs else 32
    weights = weight_summary(_torch_weights(module)) if kind not in FREE else Weights(0, 0, 1.0, None, False)
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
        muls, extra = elementwise_ops("ReLU", out_elems) if type(module).__name__ == "LinearReLU" else (0, 0)
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
    elif kind in RNN_GATES:
        macs, hyper, covered, note = _torch_rnn(module, kind, inputs)
        muls, adds = elementwise_ops("Sigmoid", hyper.get("state_elems", 0) * RNN_GATES[kind])
    elif kind == "MultiheadAttention":
        macs, hyper = _torch_mha(module, args, kwargs)
        muls, adds = elementwise_ops("Softmax", hyper["score_elems"])
    elif kind in ("Embedding", "EmbeddingBag"):
        dim = module.embedding_dim
        lookups = inputs[0].numel() if inputs else 0
        weight_reads = lookups * dim
        if kind == "EmbeddingBag":
            adds, muls = lookups * dim, out_elems  # sum of the bag's rows, then the mean
        hyper = {"num_embeddings": module.num_embeddings, "embedding_dim": dim, "lookups": lookups}
    elif kind in POOL_KINDS:
        muls, adds, hyper = pool_ops(kind, in_elems, out_elems, getattr(module, "kernel_size", None))
    elif kind in ELEMENTWISE:
        muls, adds = elementwise_ops(kind, out_elems)
        if kind == "LayerNorm":
            hyper = {"normalized_shape": tuple(module.normalized_shape)}
        if kind.startswith("BatchNorm"):
            hyper = {"num_features": module.num_features}
    elif kind in FREE:
        in_elems = out_elems = 0
    elif kind not in COPIES:
        covered, note = False, f"no counting rule for {type(module).__name__}"
    return layer_count(
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
        input_bits=first_input_bits(inputs, activation_bits),
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
    gates, hidden, size = RNN_GATES[kind], module.hidden_size, module.input_size
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
