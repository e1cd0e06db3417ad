"""Typed target settings from ``conf/base/parameters_deploy.yml``, checked like every other setting.

Each target declares a frozen dataclass; ``parse_target_settings`` builds it with
``green_deploy.config.parse_settings`` (unknown keys and wrong kinds are errors) and adds
what that helper leaves out: required keys that are missing are named in one error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any, TypeVar

from green_deploy.config import parse_settings
from green_deploy.errors import ConfigError

_Settings = TypeVar("_Settings")

# Micro-batching in deployed servers, in items (``serving.worker``): requests already waiting when
# the model is free run as one batch; nothing waits for more. Measured on this 2-core machine for
# issue 21 (resnet_fmnist, 32 concurrent clients, 10,000 requests): 601 requests/s at a median
# 49 ms with it, 127 requests/s and 254 ms without. At concurrency 1 it changes nothing.
DEPLOYED_BATCH_ITEMS = 32


def parse_target_settings(
    settings_class: type[_Settings], raw: Mapping[str, Any] | None, where: str
) -> _Settings:
    """``settings_class`` from ``raw``; ``where`` names the entry in errors (``deploy.sagemaker``)."""
    raw = {} if raw is None else raw
    if isinstance(raw, Mapping):
        required = [
            f.name
            for f in fields(settings_class)  # type: ignore[arg-type]
            if f.default is MISSING and f.default_factory is MISSING
        ]
        missing = [name for name in required if name not in raw or raw[name] in (None, "")]
        if missing:
            raise ConfigError(f"{where}: missing required setting(s) {missing}")
    settings = parse_settings(settings_class, raw, where)
    check = getattr(settings, "check", None)
    if check is not None:
        check(where)
    return settings


def check_positive(where: str, **values: float | int | None) -> None:
    """Raise a ``ConfigError`` naming each value that is not > 0 (``None`` is allowed)."""
    bad = {name: value for name, value in values.items() if value is not None and value <= 0}
    if bad:
        raise ConfigError(f"{where}: setting(s) must be positive: {bad}")
