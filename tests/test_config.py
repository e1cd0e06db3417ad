"""The one settings parser: unknown and missing settings are named, lists become tuples."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from green_deploy.config import parse_settings
from green_deploy.errors import ConfigError


@dataclass(frozen=True)
class Example:
    path: str
    sizes: tuple[int, ...] = (1,)
    extra: dict[str, int] = field(default_factory=dict)


def test_a_mapping_becomes_typed_settings():
    assert parse_settings(Example, {"path": "a", "sizes": [2, 3]}, "x") == Example("a", (2, 3))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"path": "a", "size": [2]},
            r"x: unknown setting\(s\) \['size'\]; known: \['extra', 'path', 'sizes'\]",
        ),
        ({"sizes": [2]}, r"x: missing setting\(s\) \['path'\]"),
        (None, r"x: missing setting\(s\) \['path'\]"),
        (["path"], "x: settings must be a mapping, got list"),
    ],
)
def test_unknown_missing_and_malformed_settings_are_named(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_settings(Example, raw, "x")
