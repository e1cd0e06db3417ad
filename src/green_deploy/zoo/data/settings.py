"""Typed per-dataset settings from YAML: a misspelt key is an error, never a silent default."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from green_deploy.config import parse_settings
from green_deploy.errors import ConfigError

_Settings = TypeVar("_Settings")


def parse_dataset_settings(
    settings_class: type[_Settings], raw: Mapping[str, Any] | None, dataset: str
) -> _Settings:
    """Typed settings of ``dataset`` (see ``green_deploy.config.parse_settings``)."""
    return parse_settings(settings_class, raw, f"dataset {dataset!r}")


def require(condition: bool, dataset: str, message: str) -> None:
    """Raise ``ConfigError`` for ``dataset`` unless ``condition`` holds (settings' value checks)."""
    if not condition:
        raise ConfigError(f"dataset {dataset!r}: {message}")


def require_fractions(dataset: str, val_fraction: float, test_fraction: float) -> None:
    """Split fractions must leave a non-empty train share."""
    require(0.0 < val_fraction < 1.0, dataset, f"val_fraction must be in (0, 1), got {val_fraction}")
    require(0.0 < test_fraction < 1.0, dataset, f"test_fraction must be in (0, 1), got {test_fraction}")
    require(val_fraction + test_fraction < 1.0, dataset, "val_fraction + test_fraction must be below 1")


def require_non_negative(dataset: str, **values: int | None) -> None:
    """Caps and sizes are counts: ``None`` (no cap) or >= 0."""
    for key, value in values.items():
        require(value is None or value >= 0, dataset, f"{key} must be >= 0, got {value}")
