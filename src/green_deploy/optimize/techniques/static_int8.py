"""Static int8 post-training quantization in PyTorch: int8 weights *and* activations, with the
activation ranges calibrated on the validation split's calibration half (never the test split).

API choice (torch 2.13 CPU, torchao 0.18): torch.ao's FX graph mode (``prepare_fx`` /
``convert_fx`` with ``get_default_qconfig_mapping``) produces modules that run real int8 kernels
(fbgemm on x86, qnnpack on ARM) in eager mode, with Conv-BN-ReLU fused. torchao's static path
(PT2E, ``prepare_pt2e``/``convert_pt2e`` with the X86 Inductor quantizer) leaves
quantize/dequantize pairs around float ops, which only become int8 kernels under
``torch.compile``; uncompiled they run slower than float32, and the exported program cannot be
stored as safetensors. So this technique uses torch.ao (deprecated upstream, still shipped in
2.13; its warnings are silenced here and named in this note). Per-channel weights, per-tensor
activations (the backend's default qconfig); ops without int8 kernels (LSTM, embeddings, SDPA)
stay float between dequantize/quantize pairs. Functional ``F.conv2d``/``F.linear`` calls stay
float too (as in efficientnet_lite_pytorch's same-padding convolutions): FX folds their weights
into packed objects outside any module, which the safetensors artifact (module state) cannot
hold. A batch norm that follows such a float convolution (no Conv-BN pair to fuse) stays float:
quantized alone it only adds a quantize/dequantize round trip. CPU only: torch.ao has no CUDA
int8 kernels.

Measured on the zoo (validation check half): ResNet-CNN 0.898 vs 0.902 float; EfficientNet-Lite
collapses to 0.12 from 0.875 even with its convolutions float (per-tensor uint8 activations of
its residual adds and ReLU6 outputs; quantizing only the head keeps 0.88): recorded as measured.

A model that ``torch.fx`` cannot trace symbolically (data-dependent control flow, as in Hugging
Face encoders) is not applicable, with the tracer's reason. Loading replays ``prepare_fx`` /
``convert_fx`` on a freshly built baseline without calibration (the structure), then loads the
stored int8 tensors and scales.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from green_deploy.config import parse_settings
from green_deploy.errors import ConfigError
from green_deploy.optimize.base import NotApplicable, OptimizationContext, OptimizedModel, first_line

_BACKEND_CONFIG = {"fbgemm": "x86", "x86": "x86", "qnnpack": "qnnpack"}


@dataclass(frozen=True)
class StaticInt8Settings:
    """``backend``: x86 (fbgemm kernels) or qnnpack (ARM); ``calibration_batches`` of
    ``batch_size`` calibration examples are run through the observers."""

    backend: str = "x86"
    calibration_batches: int = 8
    batch_size: int = 32


@contextmanager
def _quiet_torch_ao() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*must run observer before calling calculate_qparams.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao.*")
        warnings.filterwarnings("ignore", message=r".*Please use quant_min and quant_max.*")
        yield


def quantize_static(model: Any, backend: str, example: Any, batches: Iterable[Any] = ()) -> Any:
    """``model`` traced, observed on ``batches`` and converted to int8; without batches the
    structure alone (scales at their defaults, to be overwritten by stored ones)."""
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    from torch.nn import functional as F

    engine = "fbgemm" if _BACKEND_CONFIG[backend] == "x86" else "qnnpack"
    torch.backends.quantized.engine = engine
    mapping = get_default_qconfig_mapping(_BACKEND_CONFIG[backend])
    for float_op in (F.linear, F.conv1d, F.conv2d, F.conv3d, torch.nn.BatchNorm2d):
        mapping.set_object_type(float_op, None)
    with _quiet_torch_ao():
        prepared = prepare_fx(model.eval(), mapping, (example,))
        with torch.inference_mode():
            for batch in batches:
                prepared(batch)
        return convert_fx(prepared).eval()


def example_input(x: np.ndarray) -> Any:
    import torch

    return torch.as_tensor(np.ascontiguousarray(x[:1]))


class StaticInt8:
    name = "static_int8"
    framework = "torch"

    def settings(self, raw: Mapping[str, Any]) -> StaticInt8Settings:
        s = parse_settings(StaticInt8Settings, raw, f"technique {self.name!r}")
        if s.backend not in _BACKEND_CONFIG:
            raise ConfigError(
                f"technique 'static_int8': backend must be one of {sorted(_BACKEND_CONFIG)}, got {s.backend!r}"
            )
        if s.calibration_batches < 1 or s.batch_size < 1:
            raise ConfigError(
                "technique 'static_int8': calibration_batches and batch_size must be at least 1"
            )
        return s

    def apply(self, model: Any, settings: Mapping[str, Any], context: OptimizationContext) -> OptimizedModel:
        import torch

        s = self.settings(settings)
        if s.backend == "qnnpack" and "qnnpack" not in torch.backends.quantized.supported_engines:
            raise NotApplicable("the qnnpack backend is not built into this PyTorch")
        x = context.calibration_x
        if len(x) == 0:
            raise NotApplicable("no calibration examples")
        batches = (
            torch.as_tensor(np.ascontiguousarray(x[i : i + s.batch_size]))
            for i in range(0, min(len(x), s.calibration_batches * s.batch_size), s.batch_size)
        )
        try:
            quantized = quantize_static(copy.deepcopy(model).float(), s.backend, example_input(x), batches)
        except (torch.fx.proxy.TraceError, TypeError, AttributeError, NotImplementedError) as error:
            reason = first_line(error)
            raise NotApplicable(
                f"torch.fx cannot trace this model for static quantization: {reason}"
            ) from error
        n_calibrated = min(len(x), s.calibration_batches * s.batch_size)
        return OptimizedModel(
            "torch",
            "pytorch",
            quantized,
            ("cpu",),
            notes=(
                f"torch.ao FX static PTQ (prepare_fx/convert_fx, default {_BACKEND_CONFIG[s.backend]} qconfig: "
                f"per-channel int8 weights, per-tensor uint8 activations) calibrated on {n_calibrated} "
                "validation examples; CPU kernels only"
            ),
            extra={"rebuild_recipe": {"example_shape": list(x[:1].shape), "example_dtype": str(x.dtype)}},
        )


TECHNIQUE = StaticInt8()
