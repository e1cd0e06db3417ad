"""Architecture families, each in its own module exposing ``FAMILY``; loaded on first use."""

from __future__ import annotations

import importlib

from green_deploy.errors import ModelNotFoundError
from green_deploy.zoo.families.base import Family

_MODULES = {
    "efficientnet_lite": "green_deploy.zoo.families.efficientnet_lite",
    "minilm": "green_deploy.zoo.families.minilm",
    "resnet_cnn": "green_deploy.zoo.families.resnet_cnn",
    "vit": "green_deploy.zoo.families.vit",
    "byte_lstm": "green_deploy.zoo.families.byte_lstm",
    "ngram_bag": "green_deploy.zoo.families.ngram_bag",
    "byte_transformer_lm": "green_deploy.zoo.families.byte_transformer_lm",
    "huggingface": "green_deploy.zoo.families.huggingface",
    "torch_export": "green_deploy.zoo.families.torch_export",
    "keras": "green_deploy.zoo.families.keras",
    "onnx": "green_deploy.zoo.families.onnx",
}


def known_families() -> list[str]:
    return sorted(_MODULES)


def get_family(name: str) -> Family:
    """The family registered under ``name``; importing it loads no framework yet."""
    if name not in _MODULES:
        raise ModelNotFoundError(
            f"unknown architecture family {name!r}; known: {', '.join(known_families())}"
        )
    return importlib.import_module(_MODULES[name]).FAMILY
