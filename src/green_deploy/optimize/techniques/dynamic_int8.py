"""Dynamic int8 quantization in PyTorch: int8 weights, activations quantized on the fly.

API choice (measured here, torch 2.13 CPU, torchao 0.18): ``torch.ao.quantization.quantize_dynamic``
runs real int8 GEMMs through fbgemm on x86 CPUs, while torchao's
``Int8DynamicActivationInt8WeightConfig`` gave the same accuracy but ran 6.5x slower than float32
on this CPU (no fast CPU kernel for its tensor subclass with this torch) and its tensor subclass
cannot be stored as safetensors. So this technique uses ``torch.ao`` (deprecated upstream, still
shipped in 2.13; its deprecation warning is silenced here, not hidden from this note) and runs on
CPU only: PyTorch has no CUDA kernels for these modules, which is reported as where it can run.
Linear layers are quantized; recurrent layers and embeddings stay float.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from green_deploy.config import parse_settings
from green_deploy.errors import ConfigError
from green_deploy.optimize.base import NotApplicable, OptimizationContext, OptimizedModel


@dataclass(frozen=True)
class DynamicInt8Settings:
    backend: str = "fbgemm"  # x86; "qnnpack" for ARM
    keep_output_layer: bool = False  # leave the last Linear (the classifier head) in float32


def quantize_linear_layers(model: Any, backend: str, keep_output_layer: bool = False) -> Any:
    """``model`` (in place) with every ``nn.Linear`` (but the last when ``keep_output_layer``)
    replaced by torch.ao's dynamic int8 Linear."""
    import torch
    from torch import nn

    torch.backends.quantized.engine = backend
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    spec: Any = {nn.Linear}
    if keep_output_layer and linears:
        spec = {name: torch.ao.quantization.default_dynamic_qconfig for name in linears[:-1]}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*")
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)


class DynamicInt8:
    name = "dynamic_int8"
    framework = "torch"

    def settings(self, raw: Mapping[str, Any]) -> DynamicInt8Settings:
        import torch

        s = parse_settings(DynamicInt8Settings, raw, f"technique {self.name!r}")
        if s.backend not in torch.backends.quantized.supported_engines:
            raise ConfigError(
                f"technique 'dynamic_int8': backend {s.backend!r} not supported here; "
                f"supported: {torch.backends.quantized.supported_engines}"
            )
        return s

    def apply(self, model: Any, settings: Mapping[str, Any], context: OptimizationContext) -> OptimizedModel:
        from torch import nn

        s = self.settings(settings)
        n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
        if n_linear - int(s.keep_output_layer) < 1:
            raise NotApplicable(
                "no nn.Linear layer to quantize dynamically"
                + (" besides the output layer (keep_output_layer)" if n_linear else "")
            )
        quantized = quantize_linear_layers(
            copy.deepcopy(model).float().eval(), s.backend, s.keep_output_layer
        )
        return OptimizedModel(
            "torch",
            "pytorch",
            quantized,
            ("cpu",),
            notes=f"torch.ao.quantization.quantize_dynamic(nn.Linear -> qint8, {s.backend})"
            + ("; the output Linear kept in float32" if s.keep_output_layer else "")
            + "; CPU kernels only",
        )


TECHNIQUE = DynamicInt8()
