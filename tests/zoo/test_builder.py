"""Building a real (tiny) zoo model: training, twin parity, caching and its invalidation."""

from __future__ import annotations

import pytest

from green_deploy.zoo import builder
from green_deploy.zoo.builder import ParityError, ScoredItems, build_zoo_model, load_card
from green_deploy.zoo.families import get_family
from green_deploy.zoo.spec import parse_entry

RAW_ENTRY = {
    "domain": "nlp",
    "family": "ngram_bag",
    "source": "trained here",
    "task": "classification",
    "dataset": "gettext_langid",
    "metric": "accuracy",
    "architecture": {"max_bytes": 64, "n_buckets": 2048, "dim": 16},
    "training": {"mode": "scratch", "epochs": 3, "batch_size": 32, "learning_rate": 0.02},
}
SETTINGS = {
    "languages": ["de", "fr", "ru"],
    "max_train_per_language": 100,
    "max_val_per_language": 10,
    "max_test_per_language": 40,
}


@pytest.fixture
def entry():
    return parse_entry("tiny_langid", RAW_ENTRY)


def test_build_trains_ports_and_records_everything(entry, tmp_path):
    card = build_zoo_model(entry, SETTINGS, tmp_path)
    assert card.n_outputs == 3 and card.classes == ["de", "fr", "ru"]
    assert card.n_test == 120
    # learnt something real: three languages, chance is 1/3
    assert card.test_metrics["torch"]["accuracy"] > 0.6
    assert card.test_metrics["tensorflow"]["accuracy"] == pytest.approx(
        card.test_metrics["torch"]["accuracy"]
    )
    assert card.parity_max_abs_diff <= card.parity_bound
    assert card.training["steps"] > 0 and card.training["duration_s"] > 0
    assert card.size_on_disk_bytes["torch"] > 2048 * 16 * 4  # the embedding table alone
    assert load_card(tmp_path) == card


def test_unchanged_build_is_reused_and_changes_rebuild(entry, tmp_path):
    first = build_zoo_model(entry, SETTINGS, tmp_path)
    assert build_zoo_model(entry, SETTINGS, tmp_path).built_at == first.built_at

    changed = parse_entry("tiny_langid", {**RAW_ENTRY, "training": {**RAW_ENTRY["training"], "epochs": 1}})
    rebuilt = build_zoo_model(changed, SETTINGS, tmp_path)
    assert rebuilt.config_sha256 != first.config_sha256
    assert rebuilt.training["steps"] < first.training["steps"]


def test_other_test_items_are_scored_without_training_again(entry, tmp_path, monkeypatch):
    whole = build_zoo_model(entry, SETTINGS, tmp_path)
    monkeypatch.setattr(builder, "train", lambda *a, **k: pytest.fail("trained again"))
    subset = build_zoo_model(entry, SETTINGS, tmp_path, test_subset=ScoredItems(30, seed=0))
    assert (subset.n_test, subset.n_test_split, subset.test_max_items) == (30, 120, 30)
    assert (subset.built_at, subset.artifact_sha256, subset.training) == (
        whole.built_at,
        whole.artifact_sha256,
        whole.training,
    )
    assert subset.test_metrics["tensorflow"]["accuracy"] == pytest.approx(
        subset.test_metrics["torch"]["accuracy"]
    )
    assert load_card(tmp_path) == subset
    assert build_zoo_model(entry, SETTINGS, tmp_path, test_subset=ScoredItems(30, seed=0)) == subset


def test_a_modified_artifact_is_not_reused(entry, tmp_path):
    first = build_zoo_model(entry, SETTINGS, tmp_path)
    keras_file = tmp_path / "model.keras"
    keras_file.write_bytes(keras_file.read_bytes() + b"tampered")
    assert builder.load_cached_card(tmp_path, first.config_sha256, first.manifest_sha256) is None
    rebuilt = build_zoo_model(entry, SETTINGS, tmp_path)
    # the tampered file was replaced by a fresh build, which is then trusted again
    assert not keras_file.read_bytes().endswith(b"tampered")
    assert builder.load_cached_card(tmp_path, rebuilt.config_sha256, rebuilt.manifest_sha256) == rebuilt


def test_a_twin_that_does_not_match_fails_the_build_and_saves_nothing(entry, tmp_path, monkeypatch):
    family = get_family("ngram_bag")
    monkeypatch.setattr(type(family), "port_weights", lambda self, torch_model, keras_model: None)
    with pytest.raises(ParityError, match="differs from PyTorch"):
        build_zoo_model(entry, SETTINGS, tmp_path)
    assert not (tmp_path / builder.CARD_FILE).exists()


def test_a_macro_f1_entry_gets_macro_f1_on_its_card_from_both_frameworks(tmp_path):
    from sklearn.metrics import f1_score

    from green_deploy.zoo.artifacts import TORCH_DIR, load_torch_model
    from green_deploy.zoo.builder import encoded_splits
    from green_deploy.zoo.inference import predict_torch

    entry = parse_entry("tiny_langid", {**RAW_ENTRY, "metric": "macro_f1"})
    card = build_zoo_model(entry, SETTINGS, tmp_path)
    data = encoded_splits(entry, SETTINGS)
    predicted = predict_torch(load_torch_model(tmp_path / TORCH_DIR), data.test_x).argmax(axis=1)
    expected = f1_score(data.test_y, predicted, labels=[0, 1, 2], average="macro", zero_division=0)
    assert card.metric == "macro_f1"
    assert card.test_metrics["torch"]["macro_f1"] == pytest.approx(expected)
    assert card.test_metrics["tensorflow"]["macro_f1"] == pytest.approx(expected)
    assert set(card.val_metrics) == {"accuracy", "macro_f1", "top5_accuracy"}


def test_a_card_written_before_own_models_is_read_in_todays_fields(entry, tmp_path):
    import json

    card = build_zoo_model(entry, SETTINGS, tmp_path).to_dict()
    assert card["scored_on"] == "cpu"  # no GPU here, and a Keras twin to check on the CPU anyway
    old = {k: v for k, v in card.items() if k not in ("frameworks", "test_metrics", "scored_on")}
    old.update(
        torch_metrics=card["test_metrics"]["torch"],
        keras_metrics=card["test_metrics"]["tensorflow"],
        size_on_disk_bytes={"torch": 1, "keras": 2},
    )
    (tmp_path / builder.CARD_FILE).write_text(json.dumps(old))
    read = load_card(tmp_path)
    assert read.frameworks == ["torch", "tensorflow"] and read.test_metrics == card["test_metrics"]
    assert read.size_on_disk_bytes == {"torch": 1, "tensorflow": 2} and read.scored_on == "cpu"
    assert build_zoo_model(entry, SETTINGS, tmp_path).build_duration_s == card["build_duration_s"]  # reused


def test_a_pytorch_model_built_alone_is_scored_on_the_gpu_a_twin_and_its_model_on_the_cpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # no GPU here: where one is found
    assert builder._scoring_device({"torch": None}) == "cuda"
    assert builder._scoring_device({"torch": None, "tensorflow": None}) == "cpu"  # parity on one device
    assert builder._scoring_device({"onnx": None}) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert builder._scoring_device({"torch": None}) == "cpu"
