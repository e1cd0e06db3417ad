"""int8 weights and int8 activations on the int8 tensor cores (``torch._int_mm``), in PyTorch.

Every eligible Linear becomes an ``Int8DynamicLinear``: its weight in int8 with one scale per
output channel, its input quantized per row (per token) at each call, the product accumulated
in int32 and scaled back; the rest of the model runs in bfloat16. Unlike ``dynamic_int8``
(``torch.ao``'s fbgemm/qnnpack modules, CPU only) this runs on CUDA GPUs of compute capability
7.5+ and on the CPU (``_int_mm``'s CPU kernel). Both widths must be multiples of 8; other Linear
layers, and the classifier by default, stay in bfloat16.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from green_deploy.config import parse_settings
from green_deploy.optimize.base import NotApplicable, OptimizationContext, OptimizedModel
from green_deploy.optimize.finetune import device_of

TILE = 8


@dataclass(frozen=True)
class Int8DynamicSettings:
    keep_output_layer: bool = True


def int8_dynamic_structure(model: Any, layers: list[str]) -> Any:
    """``model`` in bfloat16 with the named Linear layers as ``Int8DynamicLinear`` (or, for a
    replayed structure, placeholders that its stored tensors overwrite)."""
    import torch

    from green_deploy.optimize.quantized_linear import Int8DynamicLinear, bfloat16_with

    return bfloat16_with(model, layers, lambda linear: Int8DynamicLinear.from_linear(linear, torch.bfloat16))


class Int8Dynamic:
    name = "int8_dynamic"
    framework = "torch"

    def settings(self, raw: Mapping[str, Any]) -> Int8DynamicSettings:
        return parse_settings(Int8DynamicSettings, raw, f"technique {self.name!r}")

    def apply(self, model: Any, settings: Mapping[str, Any], context: OptimizationContext) -> OptimizedModel:
        import torch

        from green_deploy.optimize.quantized_linear import eligible_linears, runs_here

        s = self.settings(settings)
        layers = eligible_linears(model, s.keep_output_layer, TILE, TILE)
        if not layers:
            raise NotApplicable("no Linear layer with both widths divisible by 8 for the int8 matmul kernel")
        quantized = int8_dynamic_structure(copy.deepcopy(model), layers).eval()
        runs_here(quantized, torch.as_tensor(context.calibration_x[:2]).to(device_of(model)))
        return OptimizedModel(
            "torch",
            "pytorch",
            quantized,
            ("cpu", "cuda"),
            notes=(
                f"{len(layers)} Linear layers: int8 weights (per output channel) and int8 activations "
                "(per row, at each call), torch._int_mm (int8 tensor cores on CUDA 7.5+); the rest bfloat16"
            ),
            extra={"quantized_layers": len(layers), "rebuild_recipe": {"layers": layers}},
        )


TECHNIQUE = Int8Dynamic()
