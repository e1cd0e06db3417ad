from __future__ import annotations

import pytest

from green_deploy.errors import ConfigError, ModelNotFoundError
from green_deploy.zoo.spec import (
    configured_models,
    dataset_settings,
    parse_entry,
    require_known_models,
    select_entry,
)

ENTRY = {
    "domain": "nlp",
    "family": "ngram_bag",
    "source": "trained here",
    "task": "classification",
    "dataset": "gettext_langid",
    "metric": "accuracy",
    "training": {"mode": "scratch", "epochs": 2},
}


def test_parses_a_valid_entry():
    entry = parse_entry("ngram", ENTRY)
    assert entry.training.epochs == 2
    assert entry.training.batch_size == 128  # default kept


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"familly": "x"}, "unknown key"),
        ({"training": {"epoch": 2}}, "unknown setting"),  # the one settings parser's wording
        ({"metric": "mrr"}, "metric"),
        ({"task": "detection"}, "task"),
        ({"domain": "audio"}, "domain"),
        ({"training": {"mode": "finetune"}}, "mode"),
    ],
)
def test_rejects_bad_entries_with_a_message_naming_the_problem(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_entry("ngram", {**ENTRY, **change})


@pytest.mark.parametrize(
    ("task", "metric"),
    [
        ("classification", "macro_f1"),
        ("classification", "top5_accuracy"),
        ("language_modeling", "perplexity"),
    ],
)
def test_an_entry_chooses_any_metric_of_its_task(task, metric):
    assert parse_entry("ngram", {**ENTRY, "task": task, "metric": metric}).metric == metric


def test_an_unknown_metric_is_refused_with_the_tasks_metrics_named():
    with pytest.raises(ConfigError, match=r"one of \('accuracy', 'macro_f1', 'top5_accuracy'\), got 'f1'"):
        parse_entry("ngram", {**ENTRY, "metric": "f1"})


def test_missing_required_key_is_named():
    raw = {k: v for k, v in ENTRY.items() if k != "dataset"}
    with pytest.raises(ConfigError, match="dataset"):
        parse_entry("ngram", raw)


def test_unknown_model_lists_known_ids():
    with pytest.raises(ModelNotFoundError, match="known: a, b"):
        select_entry({"b": ENTRY, "a": ENTRY}, "resnet")


def test_config_hash_follows_every_setting_that_changes_the_model():
    entry = parse_entry("ngram", ENTRY)
    other = parse_entry("ngram", {**ENTRY, "training": {"mode": "scratch", "epochs": 3}})
    assert entry.config_sha256({}) == parse_entry("ngram", ENTRY).config_sha256({})
    assert entry.config_sha256({}) != other.config_sha256({})
    assert entry.config_sha256({}) != entry.config_sha256({"max_train_per_language": 10})


def test_entry_dataset_options_override_shared_settings():
    entry = parse_entry("ngram", {**ENTRY, "dataset_options": {"min_chars": 5}})
    merged = dataset_settings({"gettext_langid": {"min_chars": 12, "max_chars": 100}}, entry)
    assert merged == {"min_chars": 5, "max_chars": 100}


def test_an_unknown_model_id_is_named_and_a_hub_id_gets_the_route_that_studies_it():
    zoo = {"models": {"resnet_fmnist": {}}, "hub": {"bert_base": {}}}
    require_known_models("evaluate.models", ["resnet_fmnist"], zoo)
    with pytest.raises(
        ModelNotFoundError, match=r"unknown model\(s\) \['typo'\]; known: \['resnet_fmnist'\]$"
    ):
        require_known_models("evaluate.models", ["typo"], zoo)
    with pytest.raises(ModelNotFoundError, match=r"\['bert_base'\] are zoo.hub entries.*family: huggingface"):
        require_known_models("deploy.models", ["bert_base"], zoo)


def test_an_environment_removes_a_model_by_setting_it_to_null():
    models = {"a": ENTRY, "b": None}
    assert list(configured_models(models)) == ["a"]
    with pytest.raises(ModelNotFoundError, match=r"'b' is not in zoo.models .*set to null.*known: a$"):
        select_entry(models, "b")
    with pytest.raises(ModelNotFoundError, match=r"unknown model\(s\) \['b'\]; known: \['a'\]"):
        require_known_models("evaluate.models", ["b"], {"models": models})
