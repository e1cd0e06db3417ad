"""Typed per-dataset settings from YAML: a misspelt key is an error, never a silent default."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

from green_deploy.errors import ConfigError

_Settings = TypeVar("_Settings")


def parse_settings(settings_class: type[_Settings], raw: Mapping[str, Any] | None, dataset: str) -> _Settings:
    """Build ``settings_class`` from a YAML mapping, coercing lists to tuples by annotation.

    Raises:
        ConfigError: an unknown key, or a value of the wrong kind.
    """
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise ConfigError(f"dataset {dataset!r}: settings must be a mapping, got {type(raw).__name__}")
    declared = {f.name: f for f in fields(settings_class)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(declared))
    if unknown:
        raise ConfigError(f"dataset {dataset!r}: unknown setting(s) {unknown}; known: {sorted(declared)}")
    values = {key: _coerce(dataset, key, str(declared[key].type), value) for key, value in raw.items()}
    return settings_class(**values)


def _coerce(dataset: str, key: str, annotation: str, value: Any) -> Any:
    where = f"dataset {dataset!r}: setting {key!r}"
    if annotation.endswith(" | None"):
        return None if value is None else _coerce(dataset, key, annotation.removesuffix(" | None"), value)
    if annotation == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if annotation == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if annotation == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if annotation == "tuple[str, ...]":
        return _str_tuple(where, value)
    if annotation == "tuple[tuple[str, tuple[str, ...]], ...]":
        # A YAML mapping name -> list of strings, kept as sorted pairs so the settings stay hashable.
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping of name to a list of strings, got {value!r}")
        return tuple(
            sorted((str(name), _str_tuple(f"{where}[{name!r}]", items)) for name, items in value.items())
        )
    raise TypeError(f"settings annotation {annotation!r} of {key!r} has no coercion rule")


def _str_tuple(where: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError(f"{where} must be a list of strings, got {value!r}")
    if not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where} must hold only strings, got {value!r}")
    return tuple(value)


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
