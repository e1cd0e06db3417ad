"""Weight-only integer quantization in PyTorch: int8 (one scale per output channel) or int4
(asymmetric groups), with activations in bfloat16.

Weight-only pays where serving is limited by reading weights (small batches, large layers):
the matmul reads 1/2 (int8) or about 1/4 (int4) of bf16's weight bytes and dequantizes inside
the kernel (``optimize.quantized_linear``: ``torch._weight_int8pack_mm``, or widening to bf16
for the tensor cores; ``torch._weight_int4pack_mm``, CUDA 8.0+ and its CPU twin). Both run on
this CPU and on CUDA; int4 needs input widths divisible by 128 (the CUDA kernel's tiles) and by
the group size, int8 by 8. Other Linear layers, and the classifier by default, stay in bfloat16.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from green_deploy.config import parse_settings
from green_deploy.errors import ConfigError
from green_deploy.optimize.base import NotApplicable, OptimizationContext, OptimizedModel
from green_deploy.optimize.finetune import device_of

BITS = (4, 8)
INT4_IN_TILE, INT4_OUT_TILE, INT8_TILE = 128, 8, 8


@dataclass(frozen=True)
class WeightOnlySettings:
    """``bits``: 8 or 4; ``group_size``: input weights sharing one int4 scale and zero;
    ``kernel``: ``packed``, ``dequantize`` or ``auto`` (``quantized_linear.WeightOnlyKernel``;
    ``int8pack`` is read as ``packed``)."""

    bits: int = 8
    group_size: int = 128
    kernel: str = "packed"
    keep_output_layer: bool = True


def weight_only_structure(model: Any, layers: list[str], s: WeightOnlySettings) -> Any:
    """``model`` in bfloat16 with the named Linear layers quantized (or, for a replayed structure,
    placeholders that its stored tensors overwrite)."""
    import torch

    from green_deploy.optimize.quantized_linear import (
        Int4WeightOnlyLinear,
        Int8WeightOnlyLinear,
        bfloat16_with,
    )

    if s.bits == 8:
        return bfloat16_with(
            model, layers, lambda linear: Int8WeightOnlyLinear.from_linear(linear, torch.bfloat16, s.kernel)
        )
    return bfloat16_with(
        model, layers, lambda linear: Int4WeightOnlyLinear.from_linear(linear, s.group_size, s.kernel)
    )


def kernel_note(kernel: str, packed: str, few_rows: int) -> str:
    """What a layer with this ``kernel`` setting runs, for the variant's notes."""
    widened = "widened to bf16, tensor-core matmul"
    return {
        "packed": packed,
        "dequantize": widened,
        "auto": f"{packed} on the CPU and for up to {few_rows} rows on CUDA, else {widened}",
    }[kernel]


class WeightOnly:
    name = "weight_only"
    framework = "torch"

    def settings(self, raw: Mapping[str, Any]) -> WeightOnlySettings:
        from green_deploy.optimize.quantized_linear import FORMER_KERNEL_NAMES, WEIGHT_ONLY_KERNELS

        s = parse_settings(WeightOnlySettings, raw, f"technique {self.name!r}")
        s = replace(s, kernel=FORMER_KERNEL_NAMES.get(s.kernel, s.kernel))
        if s.bits not in BITS:
            raise ConfigError(f"technique 'weight_only': bits must be 4 or 8, got {s.bits}")
        if s.bits == 4 and (s.group_size not in (32, 64, 128, 256)):
            raise ConfigError(
                f"technique 'weight_only': group_size must be 32, 64, 128 or 256, got {s.group_size}"
            )
        if s.kernel not in WEIGHT_ONLY_KERNELS:
            raise ConfigError(
                f"technique 'weight_only': kernel must be one of {', '.join(WEIGHT_ONLY_KERNELS)}, got {s.kernel!r}"
            )
        return s

    def apply(self, model: Any, settings: Mapping[str, Any], context: OptimizationContext) -> OptimizedModel:
        import torch

        from green_deploy.optimize.quantized_linear import (
            Int4WeightOnlyLinear,
            Int8WeightOnlyLinear,
            eligible_linears,
            runs_here,
        )

        s = self.settings(settings)
        if s.bits == 8:
            layers = eligible_linears(model, s.keep_output_layer, INT8_TILE, 1)
            packed = "torch._weight_int8pack_mm"
            what = f"int8 weights, one scale per output channel ({kernel_note(s.kernel, packed, Int8WeightOnlyLinear.FEW_ROWS)})"
        else:
            in_tile = max(INT4_IN_TILE, s.group_size)
            layers = eligible_linears(model, s.keep_output_layer, in_tile, INT4_OUT_TILE)
            packed = "torch._weight_int4pack_mm (tinygemm, CUDA 8.0+; its CPU twin here)"
            what = f"int4 weights in groups of {s.group_size} with scale and zero ({kernel_note(s.kernel, packed, Int4WeightOnlyLinear.FEW_ROWS)})"
        if not layers:
            raise NotApplicable(
                f"no Linear layer the int{s.bits} weight-only kernels take (input width divisible by "
                f"{INT8_TILE if s.bits == 8 else max(INT4_IN_TILE, s.group_size)})"
            )
        quantized = weight_only_structure(copy.deepcopy(model), layers, s).eval()
        runs_here(quantized, torch.as_tensor(context.calibration_x[:2]).to(device_of(model)))
        return OptimizedModel(
            "torch",
            "pytorch",
            quantized,
            ("cpu", "cuda"),
            notes=f"{len(layers)} Linear layers: {what}; activations and the rest in bfloat16",
            extra={"quantized_layers": len(layers), "rebuild_recipe": {"layers": layers}},
        )


TECHNIQUE = WeightOnly()
