"""``torch.compile``: the same weights, run through TorchInductor's generated kernels (fused
element-wise ops, C++/OpenMP on CPU, Triton on CUDA).

Compiling is lazy, so the technique runs one calibration batch to make it happen inside the
optimization's energy window: the time and energy recorded are one compile. The generated
kernels are not part of the artifact (it stores the weights): a loaded variant compiles again on
its first call, faster when Inductor's on-disk cache still holds the kernels. A model that
Dynamo or Inductor cannot compile here (no C++ compiler, an unsupported op) is not applicable,
with the reason.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from green_deploy.config import parse_settings
from green_deploy.errors import ConfigError
from green_deploy.optimize.base import NotApplicable, OptimizationContext, OptimizedModel, first_line
from green_deploy.optimize.finetune import device_of

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class TorchCompileSettings:
    """``mode``: Inductor's preset; ``dynamic``: true compiles for any batch size at once, false
    specialises on each new shape (recompiling), null lets PyTorch decide (recompile once, then
    dynamic); ``warmup_examples``: the batch that triggers the compile."""

    mode: str = "default"
    dynamic: bool | None = None
    warmup_examples: int = 32


def compile_model(model: Any, mode: str, dynamic: bool | None) -> Any:
    import torch

    return torch.compile(model, mode=mode, dynamic=dynamic, backend="inductor")


class TorchCompile:
    name = "torch_compile"
    framework = "torch"

    def settings(self, raw: Mapping[str, Any]) -> TorchCompileSettings:
        s = parse_settings(TorchCompileSettings, raw, f"technique {self.name!r}")
        if s.mode not in MODES:
            raise ConfigError(f"technique 'torch_compile': mode must be one of {list(MODES)}, got {s.mode!r}")
        if s.warmup_examples < 1:
            raise ConfigError(
                f"technique 'torch_compile': warmup_examples must be >= 1, got {s.warmup_examples}"
            )
        return s

    def apply(self, model: Any, settings: Mapping[str, Any], context: OptimizationContext) -> OptimizedModel:
        import torch

        s = self.settings(settings)
        compiled = compile_model(copy.deepcopy(model).eval(), s.mode, s.dynamic)
        batch = torch.as_tensor(np.ascontiguousarray(context.calibration_x[: s.warmup_examples]))
        batch = batch.to(device_of(model))
        start_s = time.perf_counter()
        try:
            with torch.inference_mode():
                compiled(batch)
        except Exception as error:  # noqa: BLE001 - Dynamo/Inductor raise many types; all mean "cannot compile"
            reason = first_line(error)
            raise NotApplicable(f"torch.compile failed here: {type(error).__name__}: {reason}") from error
        compile_s = time.perf_counter() - start_s
        return OptimizedModel(
            "torch",
            "pytorch",
            compiled,
            ("cpu", "cuda"),
            notes=(
                f"torch.compile(backend=inductor, mode={s.mode}, dynamic={s.dynamic}); first call "
                f"{compile_s:.1f} s; kernels are regenerated when the artifact is loaded"
            ),
            extra={"compile_s": compile_s},
        )


TECHNIQUE = TorchCompile()
