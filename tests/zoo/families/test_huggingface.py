"""The huggingface family on real folders: the all-MiniLM-L6-v2 encoder a pinned package ships,
and a sequence classifier the test saves from it with save_pretrained."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from green_deploy.errors import ConfigError, ModelNotFoundError
from green_deploy.zoo import artifacts
from green_deploy.zoo.families import get_family
from green_deploy.zoo.families.minilm import model_dir

TEXTS = ["The film was superb.", "What an awful meal!", "A book I found boring from start to end."]
FAMILY = get_family("huggingface")


@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory):
    """A folder with a 2-label sequence-classification head, as a user's fine-tuned model has."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path_factory.mktemp("classifier")
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(str(model_dir()), num_labels=2).save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(model_dir())).save_pretrained(folder)
    return folder


def _logits(model, arch) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.as_tensor(FAMILY.encode(TEXTS, arch))).numpy()


def test_a_folder_with_a_head_as_wide_as_the_classes_is_used_as_it_is(classifier_folder):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    arch = {"path": str(classifier_folder), "max_length": 16}
    model = FAMILY.build_torch(arch, 2)
    assert type(model).__name__ == "TokenClassifier"
    tokens = AutoTokenizer.from_pretrained(str(classifier_folder))(
        TEXTS, padding="max_length", truncation=True, max_length=16, return_tensors="pt"
    )
    reference = AutoModelForSequenceClassification.from_pretrained(str(classifier_folder)).eval()
    with torch.inference_mode():
        expected = reference(**tokens).logits.numpy()
    np.testing.assert_allclose(_logits(model, arch), expected, atol=1e-5)


def test_a_head_of_another_width_is_refused_or_replaced(classifier_folder):
    arch = {"path": str(classifier_folder), "max_length": 16}
    with pytest.raises(ConfigError, match="has 2 outputs but the dataset has 3 classes; set head: new"):
        FAMILY.build_torch({**arch, "head": "present"}, 3)
    model = FAMILY.build_torch(arch, 3)  # auto: a new head for these classes
    assert type(model).__name__ == "BackboneHead" and _logits(model, arch).shape == (3, 3)


def test_an_encoder_gets_a_new_head_on_pooled_states():
    arch = {"path": str(model_dir()), "max_length": 16}
    mean = FAMILY.build_torch(arch, 4)
    cls = FAMILY.build_torch({**arch, "pooling": "cls"}, 4)
    assert mean.head.in_features == 384 and mean.head.out_features == 4
    assert _logits(mean, arch).shape == _logits(cls, arch).shape == (3, 4)
    with pytest.raises(ConfigError, match="no sequence-classification head"):
        FAMILY.build_torch({**arch, "head": "present"}, 4)


def test_a_saved_model_loads_back_with_the_same_outputs(tmp_path):
    arch = {"path": str(model_dir()), "max_length": 16}
    model = FAMILY.build_torch(arch, 2)
    artifacts.save_torch_model(model, "huggingface", arch, 2, tmp_path)
    np.testing.assert_array_equal(_logits(artifacts.load_torch_model(tmp_path), arch), _logits(model, arch))


def test_texts_are_padded_with_the_tokenizers_own_padding_id():
    ids = FAMILY.encode(TEXTS, {"path": str(model_dir()), "max_length": 24})
    assert ids.dtype == np.int64 and ids.shape == (3, 24)
    assert (ids[:, -1] == 0).all()  # BERT pads with [PAD] = 0


@pytest.mark.parametrize(
    ("arch", "error", "message"),
    [
        ({"path": "no/such/folder"}, ModelNotFoundError, "does not exist; set architecture.path"),
        ({"path": str(model_dir()), "head": "always"}, ConfigError, "head must be one of auto, present, new"),
        ({"path": str(model_dir()), "pooling": "max"}, ConfigError, "pooling must be one of mean, cls"),
        ({"path": str(model_dir()), "max_length": 1}, ConfigError, "max_length must be an integer >= 2"),
        ({"max_length": 16}, ConfigError, "path"),
        ({"path": str(model_dir()), "lenght": 16}, ConfigError, "unknown setting"),
    ],
)
def test_bad_architecture_settings_are_named(arch, error, message):
    with pytest.raises(error, match=message):
        FAMILY.build_torch(arch, 2)


def test_a_folder_without_a_config_is_named(tmp_path):
    with pytest.raises(ModelNotFoundError, match="holds no config.json"):
        FAMILY.encode(["x"], {"path": str(tmp_path)})
