"""Per-layer counts of a Keras model: each layer's ``call`` is wrapped for one eager forward
pass, so its inputs, outputs and weights are seen; Keras class names map to PyTorch's kinds
(Dense -> Linear, Conv2D and DepthwiseConv2D -> Conv2d, MultiHeadAttention ->
MultiheadAttention, ...), so both frameworks are costed by the same rules."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from green_deploy.estimate.counts.records import (
    ELEMENTWISE,
    FREE,
    POOL_KINDS,
    RNN_GATES,
    LayerCount,
    ModelCount,
    Weights,
    bits_of_dtype,
    elementwise_ops,
    first_input_bits,
    layer_count,
    pool_ops,
    unique,
)

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

        def wrapped(*args: Any, layer_count: Any = layer, _call: Any = layer.call, **kwargs: Any) -> Any:
            output = _call(*args, **kwargs)
            seen.append((layer_count, args, kwargs, output))
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


def _keras_weights(layer: Any) -> Weights:
    arrays = [(w.name, np.asarray(w.numpy()), w.dtype) for w in layer.weights]
    params = sum(a.size for _, a, _ in arrays)
    nonzero = sum(int(np.count_nonzero(a)) for _, a, _ in arrays)
    matrices = [a for _, a, _ in arrays if a.ndim >= 2]
    matrix_elems = sum(a.size for a in matrices)
    fraction = sum(int(np.count_nonzero(a)) for a in matrices) / matrix_elems if matrix_elems else 1.0
    largest = max(arrays, key=lambda item: item[1].size, default=None)
    bits = None if largest is None else bits_of_dtype(largest[2])
    return Weights(params, nonzero, fraction, bits, bits == 8)


def _keras_layer(name: str, layer: Any, args: tuple, kwargs: dict, output: Any) -> LayerCount:
    kind = _keras_kind(layer)
    inputs = unique(_keras_tensors(args) + _keras_tensors({k: v for k, v in kwargs.items() if k != "mask"}))
    outputs = unique(_keras_tensors(output))
    in_elems = sum(_size(t) for t in inputs)
    out_elems = sum(_size(t) for t in outputs)
    activation_bits = bits_of_dtype(outputs[0].dtype) if outputs else 32
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
    elif kind in RNN_GATES:
        cell = layer.cell
        x = inputs[0]
        steps, size, hidden = int(x.shape[1]), int(x.shape[2]), int(cell.units)
        gates = RNN_GATES[kind]
        macs = steps * gates * hidden * (size + hidden)
        muls, adds = elementwise_ops("Sigmoid", steps * hidden * gates)
        hyper = {"input_size": size, "hidden_size": hidden, "num_layers": 1, "sequence_length": steps}
    elif kind == "MultiheadAttention":
        macs, hyper = _keras_mha(layer, args, kwargs)
        muls, adds = elementwise_ops("Softmax", hyper["score_elems"])
    elif kind == "Embedding":
        dim = int(layer.output_dim)
        lookups = in_elems
        weight_reads = lookups * dim
        hyper = {"num_embeddings": int(layer.input_dim), "embedding_dim": dim, "lookups": lookups}
    elif kind == "BatchNorm":
        kind = {3: "BatchNorm1d", 4: "BatchNorm2d", 5: "BatchNorm3d"}.get(
            len(outputs[0].shape), "BatchNorm1d"
        )
        muls, adds = elementwise_ops(kind, out_elems)
        hyper = {"num_features": int(outputs[0].shape[-1])}
    elif kind in POOL_KINDS:
        pool = getattr(layer, "pool_size", None)
        muls, adds, hyper = pool_ops(kind, in_elems, out_elems, tuple(pool) if pool is not None else None)
    elif kind == "MaskedMean":
        features = int(_size(inputs[0]))
        muls, adds = features + out_elems, features  # mask, sum, divide
    elif kind == "Add":
        adds = out_elems * (len(inputs) - 1)
    elif kind == "PositionEmbedding":
        adds, weight_reads = out_elems, out_elems
    elif kind in ELEMENTWISE:
        muls, adds = elementwise_ops(kind, out_elems)
    elif kind in FREE:
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
            extra_muls, extra_adds = elementwise_ops(fused, out_elems)
            muls, adds = muls + extra_muls, adds + extra_adds
            hyper["activation"] = fused
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
