"""Per-layer counts of a PyTorch module from one traced forward pass.

Forward hooks on the modules a rule knows (their children are not visited), a
``TorchFunctionMode`` that records the matrix products run directly in a container's
``forward`` (``scaled_dot_product_attention``, ``matmul``, ``einsum``, ``F.linear``), which is
where the zoo's attention computes its scores, and a ``TorchDispatchMode`` that records the
other kernels a container launches between layers (residual additions, concatenations,
reductions, position indices: the glue, kinds ``Pointwise``, ``Copy``, ``Reduction``,
``Factory``) and how many kernels each layer launches (``hyper["kernels"]``: a tanh-GELU written
in Python is eight, ``nn.GELU`` one). The total is cross-checked with
``FlopCounterMode`` (through ``green_deploy.optimize.macs.count_macs``, the counter behind the
variants table).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np

from green_deploy.estimate.counts.records import (
    LayerCount,
    ModelCount,
    Weights,
    bits_of_dtype,
    elementwise_ops,
    first_input_bits,
    layer_count,
    unique,
)
from green_deploy.estimate.counts.torch_layers import torch_kind, torch_layer, torch_tensors, weight_summary

logger = logging.getLogger(__name__)


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
    inputs = torch_tensors(args) + torch_tensors(kwargs)
    outputs = unique(torch_tensors(output))
    in_elems, out_elems = sum(t.numel() for t in inputs), sum(t.numel() for t in outputs)
    bits = bits_of_dtype(outputs[0].dtype) if outputs else 32
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
    no_weights = Weights(0, 0, 1.0, None, False)
    return layer_count(
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
        first_input_bits(inputs, bits),
    )


def _numel(value: Any) -> int:
    return sum(t.numel() for t in torch_tensors(value))


class _TorchTrace:
    """What one forward pass shows the counter: the layers (forward hooks), the products a
    container runs itself (a torch function mode) and the other kernels it launches (a dispatch
    mode). A product's own kernels are not glue: the kernels of a torch function call wait in
    ``pending`` until the call is known not to be a product."""

    def __init__(self, model: Any) -> None:
        self.names = {module: name or type(model).__name__ for name, module in model.named_modules()}
        self.kinds = {module: torch_kind(module) for module in self.names}
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
                    layer = torch_layer(name, kind, module, args, kwargs, output)
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
    outputs = unique(torch_tensors(output))
    bits = bits_of_dtype(outputs[0].dtype) if outputs else 32
    named: list[tuple[str, Any]] = []
    if hyper.get("functional"):
        named = [(str(i), t) for i, t in enumerate(args[1:3]) if hasattr(t, "numel") and t.ndim > 0]
        claimed.update(id(t) for _, t in named)
    weights = weight_summary(named) if named else Weights(0, 0, 1.0, None, False)
    inputs = unique(torch_tensors(args[:1] if named else args))
    in_elems, out_elems = sum(t.numel() for t in inputs), sum(t.numel() for t in outputs)
    muls, adds = elementwise_ops("Softmax", hyper.get("score_elems", 0))
    if len(named) > 1:
        adds += out_elems  # the bias
    covered = macs >= 0
    weight_bits = weights.bits or bits
    return layer_count(
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
            weights = weight_summary(own)
            bits = weights.bits or 32
            out.append(
                layer_count(
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
