"""fp8 (e4m3) weights and activations in PyTorch, on Hopper's and Ada's fp8 tensor cores.

Every eligible Linear becomes a ``Float8Linear``: its weight in e4m3 with one scale, its input
cast to e4m3 with a **static** scale calibrated on the validation split (the largest |input|
seen, over 448), then one ``torch._scaled_mm``. Static scales are what makes fp8 pay: measured on
an H200, a dynamic per-call scale (amax, divide and cast as separate kernels around the matmul)
cost 2.0x bf16's energy at batch 256. The rest of the model runs in bfloat16.

Runs on CUDA GPUs of compute capability 8.9+ (the layers refuse older ones when placed there),
so the variant is declared for ``cuda`` only: PyTorch's CPU ``_scaled_mm`` computes the same
numbers as a reference emulation (41 s for one 128x768x3072 layer on this 2-core CPU), which
tests use on tiny layers and a study must not serve. The kernels need both
widths divisible by 16; other Linear layers, and the classifier by default, stay in bfloat16.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from green_deploy.config import parse_settings
from green_deploy.errors import ConfigError
from green_deploy.optimize.base import NotApplicable, OptimizationContext, OptimizedModel

TILE = 16


@dataclass(frozen=True)
class Fp8Settings:
    """``calibration_batch``: examples per forward pass while calibrating the input scales;
    ``margin``: the calibrated range is widened by this factor (head-room for unseen inputs)."""

    keep_output_layer: bool = True
    calibration_batch: int = 32
    margin: float = 1.0


def fp8_structure(model: Any, layers: list[str], input_amax: Mapping[str, float]) -> Any:
    """``model`` in bfloat16 with the named Linear layers as ``Float8Linear`` (scales from
    ``input_amax``; a replayed structure gets placeholders that its stored tensors overwrite)."""
    import torch

    from green_deploy.optimize.quantized_linear import Float8Linear, bfloat16_with

    names = {id(module): name for name, module in model.named_modules()}
    return bfloat16_with(
        model,
        layers,
        lambda linear: Float8Linear.from_linear(
            linear, input_amax.get(names[id(linear)], 1.0), torch.bfloat16
        ),
    )


def input_ranges(model: Any, layers: list[str], inputs: np.ndarray, batch: int) -> dict[str, float]:
    """The largest |input| each named layer sees over ``inputs`` (the model in bfloat16)."""
    import torch

    from green_deploy.optimize.finetune import device_of

    seen = dict.fromkeys(layers, 0.0)
    modules = dict(model.named_modules())

    def recorder(name: str) -> Any:
        def hook(module: Any, args: tuple[Any, ...]) -> None:
            seen[name] = max(seen[name], float(args[0].detach().abs().max()))

        return hook

    handles = [modules[name].register_forward_pre_hook(recorder(name)) for name in layers]
    try:
        with torch.inference_mode():
            for start in range(0, len(inputs), batch):
                x = torch.as_tensor(np.ascontiguousarray(inputs[start : start + batch])).to(device_of(model))
                model(x.to(torch.bfloat16) if x.is_floating_point() else x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


class Fp8:
    name = "fp8"
    framework = "torch"

    def settings(self, raw: Mapping[str, Any]) -> Fp8Settings:
        s = parse_settings(Fp8Settings, raw, f"technique {self.name!r}")
        if s.calibration_batch < 1 or s.margin < 1.0:
            raise ConfigError(
                f"technique 'fp8': calibration_batch must be >= 1 and margin >= 1.0, got {s.calibration_batch}, {s.margin}"
            )
        return s

    def apply(self, model: Any, settings: Mapping[str, Any], context: OptimizationContext) -> OptimizedModel:
        import torch

        from green_deploy.optimize.quantized_linear import eligible_linears
        from green_deploy.runtimes import device_here

        s = self.settings(settings)
        layers = eligible_linears(model, s.keep_output_layer, TILE, TILE)
        if not layers:
            raise NotApplicable("no Linear layer with both widths divisible by 16 for the fp8 kernels")
        bf16 = copy.deepcopy(model).to(torch.bfloat16).eval()
        # calibrated where fp8 runs, when this machine has it (a BERT-base's 128 examples: seconds
        # of CPU cores), then back on the CPU, where every variant is saved from
        device = device_here(("cpu", "cuda"))
        amax = input_ranges(bf16.to(device), layers, context.calibration_x, s.calibration_batch)
        bf16.to("cpu")
        fp8 = fp8_structure(bf16, layers, {name: value * s.margin for name, value in amax.items()}).eval()
        return OptimizedModel(
            "torch",
            "pytorch",
            fp8,
            ("cuda",),
            notes=(
                f"{len(layers)} Linear layers in fp8 e4m3 (per-tensor weight scale, static input scale from "
                f"{len(context.calibration_x)} validation examples), torch._scaled_mm; the rest bfloat16. fp8 tensor "
                "cores on CUDA 8.9+ (Ada, Hopper); declared for cuda only (PyTorch's CPU _scaled_mm is a slow emulation)"
            ),
            extra={"fp8_layers": len(layers), "rebuild_recipe": {"layers": layers}},
        )


TECHNIQUE = Fp8()
