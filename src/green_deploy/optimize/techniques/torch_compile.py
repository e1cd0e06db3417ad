"""``torch.compile``: the same weights, run through TorchInductor's generated kernels (fused
element-wise ops, C++/OpenMP on CPU, Triton on CUDA).

Compiling is lazy, so the technique runs one calibration batch to make it happen inside the
optimization's energy window: the time and energy recorded are one compile, on the device its
check runs on (this machine's GPU where the model may run there, else the CPU). Where the model
may run on none of this machine's devices (fp8 on a CPU machine), nothing is run: the variant
is declared for its devices and compiles on its first call there. The generated kernels are not
part of the artifact (it stores the weights): a loaded variant compiles again on its first call,
faster when Inductor's on-disk cache still holds the kernels. A model that Dynamo or Inductor
cannot compile here (no C++ compiler, an unsupported op) is not applicable, with the reason.
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

        from green_deploy.runtimes import device_here
        from green_deploy.runtimes.pytorch import place

        s = self.settings(settings)
        model = copy.deepcopy(model).eval()
        compiled = compile_model(model, s.mode, s.dynamic)
        how = f"torch.compile(backend=inductor, mode={s.mode}, dynamic={s.dynamic})"
        devices = context.devices
        here = device_here(devices)  # where the runner checks the variant next
        if here is None:
            return OptimizedModel(
                "torch",
                "pytorch",
                compiled,
                devices,
                notes=f"{how}; not compiled here (the model runs on {', '.join(devices)} only): compiles on its first call there",
            )
        batch = torch.as_tensor(np.ascontiguousarray(context.calibration_x[: s.warmup_examples]))
        start_s = time.perf_counter()
        place(model, here)  # layers check their kernels here (a GPU too old for fp8 refuses)
        try:
            with torch.inference_mode():
                compiled(batch.to(here))
        except Exception as error:  # noqa: BLE001 - Dynamo/Inductor raise many types; all mean "cannot compile"
            reason = first_line(error)
            raise NotApplicable(f"torch.compile failed here: {type(error).__name__}: {reason}") from error
        finally:
            place(model, "cpu")  # the artifact is written from the CPU, like every variant's
        compile_s = time.perf_counter() - start_s
        return OptimizedModel(
            "torch",
            "pytorch",
            compiled,
            devices,
            notes=f"{how}; first call on {here} {compile_s:.1f} s; kernels are regenerated when the artifact is loaded",
            extra={"compile_s": compile_s},
        )


TECHNIQUE = TorchCompile()
