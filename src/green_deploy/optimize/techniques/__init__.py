"""Techniques, one module each exposing ``TECHNIQUE``; loaded on first use (they import frameworks)."""

from __future__ import annotations

import importlib

from green_deploy.errors import ConfigError
from green_deploy.optimize.base import Technique

_MODULES = {
    "cuda_graph": "green_deploy.optimize.techniques.cuda_graph",
    "dynamic_int8": "green_deploy.optimize.techniques.dynamic_int8",
    "fp8": "green_deploy.optimize.techniques.fp8",
    "half_precision": "green_deploy.optimize.techniques.half_precision",
    "int8_dynamic": "green_deploy.optimize.techniques.int8_dynamic",
    "magnitude_pruning": "green_deploy.optimize.techniques.magnitude_pruning",
    "onnx": "green_deploy.optimize.techniques.onnx_runtime",
    "semi_structured_sparsity": "green_deploy.optimize.techniques.semi_structured_sparsity",
    "static_int8": "green_deploy.optimize.techniques.static_int8",
    "structured_pruning": "green_deploy.optimize.techniques.structured_pruning",
    "tflite": "green_deploy.optimize.techniques.tflite",
    "torch_compile": "green_deploy.optimize.techniques.torch_compile",
    "tfmot_pruning": "green_deploy.optimize.techniques.tfmot_pruning",
    "tfmot_qat": "green_deploy.optimize.techniques.tfmot_qat",
    "weight_only": "green_deploy.optimize.techniques.weight_only",
}


def known_techniques() -> list[str]:
    return sorted(_MODULES)


def get_technique(name: str) -> Technique:
    if name not in _MODULES:
        raise ConfigError(f"unknown technique {name!r}; known: {', '.join(known_techniques())}")
    return importlib.import_module(_MODULES[name]).TECHNIQUE
