"""Half precision in PyTorch: every floating-point weight cast to float16 or bfloat16.

Inputs stay float32 at the model's boundary (the wrapper casts them), so a served variant takes
the same requests as its baseline. Float16 kernels are a GPU matter; whether this CPU has them is
checked by running the model once, and the result decides ``devices``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from green_deploy.config import parse_settings
from green_deploy.errors import ConfigError
from green_deploy.optimize.base import NotApplicable, OptimizationContext, OptimizedModel


@dataclass(frozen=True)
class HalfPrecisionSettings:
    dtype: str = "float16"  # or "bfloat16"


class HalfPrecision:
    name = "half_precision"
    framework = "torch"

    def settings(self, raw: Mapping[str, Any]) -> HalfPrecisionSettings:
        settings = parse_settings(HalfPrecisionSettings, raw, f"technique {self.name!r}")
        if settings.dtype not in ("float16", "bfloat16"):
            raise ConfigError(
                f"technique 'half_precision': dtype must be float16 or bfloat16, got {settings.dtype!r}"
            )
        return settings

    def apply(self, model: Any, settings: Mapping[str, Any], context: OptimizationContext) -> OptimizedModel:
        import torch

        s = self.settings(settings)
        dtype = getattr(torch, s.dtype)
        from green_deploy.optimize.torch_modules import CastInputs

        half = CastInputs(copy.deepcopy(model).to(dtype), dtype).eval()
        devices = ["cuda"]
        try:
            with torch.inference_mode():
                half(torch.as_tensor(context.calibration_x[:2]))
            devices.insert(0, "cpu")
        except (RuntimeError, NotImplementedError) as error:
            if not torch.cuda.is_available():
                raise NotApplicable(f"no CPU kernels for {s.dtype} here ({error}) and no GPU") from error
        return OptimizedModel(
            "torch", "pytorch", half, tuple(devices), notes=f"weights cast to {s.dtype} (torch .to)"
        )


TECHNIQUE = HalfPrecision()
