"""The one settings parser: typed settings from YAML, where a misspelt key or a value of the wrong
kind is an error naming the section and what it knows, never a silent default. Every section of
the parameters (zoo, optimize, deploy, evaluate, search, tradeoff, estimate, simulate) and every
setting of a dataset, architecture, technique or target goes through it."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import MISSING, fields
from typing import Any, TypeVar

from green_deploy.errors import ConfigError

_Settings = TypeVar("_Settings")


def parse_settings(settings_class: type[_Settings], raw: Mapping[str, Any] | None, where: str) -> _Settings:
    """Build the frozen dataclass ``settings_class`` from a YAML mapping; ``where`` names it in errors
    (e.g. ``dataset 'fortunes'``). Lists become tuples by annotation, so settings stay hashable."""
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: settings must be a mapping, got {type(raw).__name__}")
    declared = {f.name: f for f in fields(settings_class)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(declared))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {unknown}; known: {sorted(declared)}")
    missing = sorted(
        name
        for name, f in declared.items()
        if name not in raw and f.default is MISSING and f.default_factory is MISSING
    )
    if missing:
        raise ConfigError(f"{where}: missing setting(s) {missing}")
    values = {
        key: _coerce(f"{where}: setting {key!r}", str(declared[key].type), value)
        for key, value in raw.items()
    }
    return settings_class(**values)


def check_keys(
    where: str, raw: Mapping[str, Any] | None, known: Collection[str], required: Collection[str] = ()
) -> dict[str, Any]:
    """A configuration section as a dict, refused when it holds a key nobody reads (a misspelt
    ``optimize.onlyy`` would otherwise be ignored without a word) or lacks a ``required`` one."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping of settings, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    missing = sorted(set(required) - set(raw))
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")
    return dict(raw)


def parse_names(value: Any, where: str) -> tuple[str, ...]:
    """Ids from a YAML list, or from ``--params`` text separated by spaces (Kedro splits
    ``--params`` at commas) or commas; ``None`` is no id."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part for part in re.split(r"[,\s]+", value.strip()) if part)
    if isinstance(value, list | tuple):
        return tuple(str(item) for item in value)
    raise ConfigError(f"{where} must be a list of names, got {value!r}")


def _coerce(where: str, annotation: str, value: Any) -> Any:
    if annotation.endswith(" | None"):
        return None if value is None else _coerce(where, annotation.removesuffix(" | None"), value)
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
    if annotation == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if annotation == "tuple[str, ...]":
        return _tuple_of(str, "strings", where, value)
    if annotation == "tuple[int, ...]":
        return _tuple_of(int, "integers", where, value)
    if annotation == "tuple[tuple[str, tuple[str, ...]], ...]":
        # A YAML mapping name -> list of strings, kept as sorted pairs.
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping of name to a list of strings, got {value!r}")
        return tuple(
            sorted(
                (str(name), _tuple_of(str, "strings", f"{where}[{name!r}]", items))
                for name, items in value.items()
            )
        )
    raise TypeError(f"settings annotation {annotation!r} ({where}) has no coercion rule")


def _tuple_of(kind: type, noun: str, where: str, value: Any) -> tuple[Any, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError(f"{where} must be a list of {noun}, got {value!r}")
    if not all(isinstance(item, kind) and not isinstance(item, bool) for item in value):
        raise ConfigError(f"{where} must hold only {noun}, got {value!r}")
    return tuple(value)
