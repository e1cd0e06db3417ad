"""Hub loaders with the real transformers code, from a local folder in the hub's own format."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from green_deploy.errors import ConfigError, HubUnavailableError, ModelNotFoundError
from green_deploy.zoo.hub import has_random_weights, load_hub_model, parse_hub_entry
from green_deploy.zoo.spec import ZooEntry

PROJECT = Path(__file__).resolve().parents[2]
TINY_BERT = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "num_labels": 3,
}


@pytest.fixture
def local_bert(tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model("bert", **TINY_BERT)).eval()
    model.save_pretrained(tmp_path)
    return model, tmp_path


def _entry(**overrides):
    raw = {
        "repo_id": "google-bert/bert-base-uncased",
        "auto_class": "AutoModelForSequenceClassification",
        "domain": "nlp",
        "task": "classification",
        **overrides,
    }
    return parse_hub_entry("bert", raw)


def test_loads_pretrained_weights_from_a_local_hub_folder(local_bert):
    original, folder = local_bert
    loaded = load_hub_model(_entry(local_dir=str(folder)))
    ids = torch.tensor([[101, 2023, 2003, 102]])
    with torch.no_grad():
        np.testing.assert_allclose(loaded.model(ids).logits.numpy(), original(ids).logits.numpy(), atol=1e-6)
    assert loaded.weights == "pretrained" and loaded.accuracy_applicable


def test_unreachable_hub_is_a_clear_error_not_a_traceback():
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE=1.*local_dir.*architecture_only"):
        load_hub_model(_entry(repo_id="green-deploy/not-a-real-model"))


def test_local_folder_without_a_model_is_named(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        load_hub_model(_entry(local_dir=str(tmp_path)))


def test_architecture_only_builds_random_weights_and_disowns_accuracy():
    loaded = load_hub_model(_entry(architecture_only=True, model_type="bert", config_overrides=TINY_BERT))
    assert loaded.weights == "random (architecture only)"
    assert not loaded.accuracy_applicable
    assert loaded.n_parameters > 0


def test_bad_entries_are_rejected():
    with pytest.raises(ConfigError, match="unknown key"):
        _entry(revision="main")
    with pytest.raises(ConfigError, match="model_type"):
        _entry(architecture_only=True)
    with pytest.raises(ConfigError, match="Auto class"):
        load_hub_model(_entry(auto_class="BertModel", local_dir="."))


def test_every_configured_hub_entry_has_a_known_architecture():
    from transformers import AutoConfig

    hub = yaml.safe_load((PROJECT / "conf/base/parameters_zoo.yml").read_text())["zoo"]["hub"]
    sizes = {}
    for model_id, raw in hub.items():
        entry = parse_hub_entry(model_id, raw)
        config = AutoConfig.for_model(entry.model_type, **entry.config_overrides)
        sizes[model_id] = config.model_type
    assert {"resnet50", "vit_b16", "bert_base", "codet5_small"} <= set(sizes)


@pytest.mark.parametrize("domain", ["nlp", "cv"])
def test_an_architecture_folder_is_an_own_model_with_random_weights_that_says_so(tmp_path, domain):
    """What the GPU study measures where no weights can be had: the folder loads through the
    own-model path with its own head as wide as the classes, and says its weights are random."""
    import json

    from green_deploy.zoo.families.huggingface import FAMILY
    from green_deploy.zoo.hub import RANDOM_WEIGHTS, save_architecture_folder

    tokenizer_dir = tmp_path / "tokenizer"
    _word_piece_tokenizer(tokenizer_dir)
    if domain == "nlp":
        entry = _entry(architecture_only=True, model_type="bert", config_overrides=TINY_BERT)
        examples = ["a short text", "another"]
    else:
        tiny_vit = {
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        }
        entry = parse_hub_entry(
            "vit",
            {"repo_id": "google/vit-base-patch16-224", "auto_class": "AutoModelForImageClassification",
             "domain": "cv", "task": "classification", "model_type": "vit", "architecture_only": True,
             "config_overrides": tiny_vit},
        )  # fmt: skip
        examples = [np.zeros((28, 28), np.uint8), np.full((28, 28), 200, np.uint8)]
    folder = save_architecture_folder(entry, tmp_path / "model", ["x", "y", "z", "w"], tokenizer_dir)
    assert json.loads((folder / "config.json").read_text())["green_deploy_weights"] == RANDOM_WEIGHTS
    arch = (
        {"path": str(folder), "head": "present", "max_length": 8}
        if domain == "nlp"
        else {"path": str(folder)}
    )
    own = ZooEntry("own", domain, "huggingface", "test", "classification", "files", "accuracy", arch)
    assert has_random_weights(own)  # evaluate marks its accuracy not applicable
    trained = tmp_path / "trained"
    trained.mkdir()
    (trained / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert not has_random_weights(replace(own, architecture={"path": str(trained)}))
    assert not has_random_weights(replace(own, family="torchvision"))
    model = FAMILY.build_torch(arch, 4)
    assert FAMILY.uses_folder_head(arch, 4)
    with torch.inference_mode():
        logits = model(torch.as_tensor(FAMILY.encode(examples, arch)))
    assert logits.shape == (2, 4)
    again = save_architecture_folder(entry, tmp_path / "again", ["x", "y", "z", "w"], tokenizer_dir)
    assert (again / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()  # seeded


def test_a_text_architecture_needs_a_tokenizer(tmp_path):
    from green_deploy.zoo.hub import save_architecture_folder

    entry = _entry(architecture_only=True, model_type="bert", config_overrides=TINY_BERT)
    with pytest.raises(ConfigError, match="tokenizer"):
        save_architecture_folder(entry, tmp_path / "model", ["x", "y"])


def _word_piece_tokenizer(folder: Path) -> None:
    from transformers import BertTokenizerFast

    folder.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "short", "text", "another"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(str(folder))
