"""Settings validation: misspelt keys and wrong kinds fail loudly, naming what is allowed."""

from __future__ import annotations

import pytest

from green_deploy.errors import ConfigError
from green_deploy.zoo.data import known_datasets, load_dataset
from green_deploy.zoo.data.code_languages import CodeLanguagesSettings
from green_deploy.zoo.data.fortunes import FortunesSettings
from green_deploy.zoo.data.settings import parse_dataset_settings


@pytest.mark.parametrize("name", known_datasets())
def test_unknown_key_names_the_key_and_the_known_ones(name: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_dataset(name, {"max_trian": 3})
    assert "max_trian" in str(raised.value)
    assert "known:" in str(raised.value)


def test_unknown_dataset_lists_known_datasets() -> None:
    with pytest.raises(ConfigError, match="fortunes"):
        load_dataset("fortune")


def test_known_datasets_are_the_six_system_ones_and_files() -> None:
    assert known_datasets() == [
        "code_languages",
        "fashion_mnist",
        "files",
        "fortunes",
        "gettext_langid",
        "stdlib_bytes",
        "stdlib_retrieval",
    ]


@pytest.mark.parametrize(
    "raw",
    [
        {"max_per_class": "600"},
        {"max_per_class": True},
        {"categories": "cookie"},
        {"categories": ["cookie"]},
        {"max_per_class": -1},
        {"val_fraction": 0.5, "test_fraction": 0.5},
        {"min_chars": 50, "max_chars": 10},
    ],
)
def test_bad_values_are_config_errors(raw: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        parse_dataset_settings(FortunesSettings, raw, "fortunes")


def test_lists_become_tuples_and_mappings_sorted_pairs() -> None:
    parsed = parse_dataset_settings(
        CodeLanguagesSettings,
        {"languages": {"python": [".py"], "c": [".c"]}, "candidate_factor": 2},
        "code_languages",
    )
    assert parsed.languages == (("c", (".c",)), ("python", (".py",)))
    assert parsed.candidate_factor == 2.0


def test_an_extension_in_two_languages_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"\.h"):
        parse_dataset_settings(
            CodeLanguagesSettings, {"languages": {"c": [".c", ".h"], "cpp": [".h"]}}, "code_languages"
        )
