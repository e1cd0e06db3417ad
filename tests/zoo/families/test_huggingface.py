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
    with pytest.raises(ConfigError, match="no text-classification head"):
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


@pytest.fixture(scope="module")
def vision_folder(tmp_path_factory):
    """A small ViT image classifier (3 labels, random weights) with its image processor."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    folder = tmp_path_factory.mktemp("vit")
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, num_labels=3,
    )  # fmt: skip
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_an_image_folder_reads_images_through_its_processor(vision_folder):
    from transformers import AutoModelForImageClassification, ViTImageProcessor

    arch = {"path": str(vision_folder)}
    images = np.random.default_rng(0).integers(
        0, 256, (4, 28, 28), dtype=np.uint8
    )  # grayscale, as files gives
    pixels = FAMILY.encode(images, arch)
    assert pixels.shape == (4, 3, 32, 32) and pixels.dtype == np.float32
    rgb = [np.repeat(image[..., None], 3, axis=-1) for image in images]
    np.testing.assert_allclose(
        pixels, ViTImageProcessor.from_pretrained(vision_folder)(rgb, return_tensors="np")["pixel_values"]
    )
    model = FAMILY.build_torch(arch, 3)
    assert type(model).__name__ == "ImageClassifier"
    reference = AutoModelForImageClassification.from_pretrained(str(vision_folder)).eval()
    with torch.inference_mode():
        expected = reference(pixel_values=torch.as_tensor(pixels)).logits.numpy()
        np.testing.assert_allclose(model(torch.as_tensor(pixels)).numpy(), expected, atol=1e-5)


def test_an_image_model_gets_a_new_head_for_other_classes_and_loads_back(vision_folder, tmp_path):
    arch = {"path": str(vision_folder)}
    model = FAMILY.build_torch(arch, 5)
    assert type(model).__name__ == "BackboneHead" and model.head.in_features == 64
    pixels = torch.as_tensor(FAMILY.encode(np.zeros((2, 28, 28), np.uint8), arch))
    artifacts.save_torch_model(model, "huggingface", arch, 5, tmp_path)
    with torch.inference_mode():
        np.testing.assert_array_equal(
            artifacts.load_torch_model(tmp_path)(pixels).numpy(), model(pixels).numpy()
        )


@pytest.fixture(scope="module")
def sentiment_folder(tmp_path_factory):
    """A classifier whose head names its outputs (id2label), as a fine-tuned hub model does."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path_factory.mktemp("sentiment")
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(
        str(model_dir()), num_labels=2, id2label={0: "negative", 1: "positive"}
    ).save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(model_dir())).save_pretrained(folder)
    return folder


def _sentiment_entry(folder, tmp_path, labels, classes=None):
    import csv

    from green_deploy.zoo.spec import parse_entry

    path = tmp_path / "reviews.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows((f"{TEXTS[k % 3]} ({k})", label) for label in labels for k in range(20))
    options = {"path": str(path), **({"classes": classes} if classes else {})}
    return parse_entry(
        "own_sentiment",
        {
            "domain": "nlp",
            "family": "huggingface",
            "source": "a test folder",
            "task": "classification",
            "dataset": "files",
            "metric": "accuracy",
            "architecture": {"path": str(folder), "max_length": 16},
            "dataset_options": options,
            "training": {"mode": "none"},
        },
    )


def test_a_head_that_names_the_dataset_labels_is_used_as_it_is(sentiment_folder, tmp_path):
    from green_deploy.zoo.builder import build_zoo_model

    entry = _sentiment_entry(sentiment_folder, tmp_path, ["negative", "positive"])
    card = build_zoo_model(entry, entry.dataset_options, tmp_path / "zoo", manifest_dir=tmp_path)
    assert card.classes == ["negative", "positive"] and card.training["mode"] == "none"


@pytest.mark.parametrize(
    ("labels", "classes", "message"),
    [
        (
            ["neg", "pos"],
            None,
            r"labels \['neg', 'pos'\] are unknown to the model's head, whose outputs are \['negative', 'positive'\]",
        ),
        (
            ["negative", "positive"],
            ["positive", "negative"],
            r"numbers its classes \['positive', 'negative'\].*set dataset_options.classes: \['negative', 'positive'\]",
        ),
    ],
)
def test_labels_the_head_does_not_give_in_that_order_are_refused(
    sentiment_folder, tmp_path, labels, classes, message
):
    from green_deploy.zoo.builder import build_zoo_model

    entry = _sentiment_entry(sentiment_folder, tmp_path, labels, classes)
    with pytest.raises(ConfigError, match=message):
        build_zoo_model(entry, entry.dataset_options, tmp_path / "zoo", manifest_dir=tmp_path)


@pytest.mark.parametrize(("task", "metric"), [("language_modeling", "bits_per_byte"), ("retrieval", "mrr")])
def test_a_task_its_auto_classes_do_not_serve_is_refused_before_any_data_is_read(tmp_path, task, metric):
    from green_deploy.zoo.builder import build_zoo_model
    from green_deploy.zoo.spec import parse_entry

    entry = parse_entry(
        "own_lm",
        {
            "domain": "nlp",
            "family": "huggingface",
            "source": "a test folder",
            "task": task,
            "dataset": "no_such_dataset",  # never reached
            "metric": metric,
            "architecture": {"path": str(model_dir())},
            "training": {"mode": "none"},
        },
    )
    with pytest.raises(ConfigError, match=f"task is '{task}', but family huggingface serves classification"):
        build_zoo_model(entry, {}, tmp_path)


def test_gpt2_conv1d_layers_become_the_linear_layers_they_compute():
    """GPT-2's projections are transformers' Conv1D; as nn.Linear the module-swapping techniques
    (int8, fp8, int4, 2:4, pruning) find them, and the logits do not move."""
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from transformers.pytorch_utils import Conv1D

    from green_deploy.optimize.quantized_linear import eligible_linears
    from green_deploy.zoo.families.huggingface import as_linear_layers

    config = AutoConfig.for_model("gpt2", n_embd=64, n_layer=2, n_head=2, num_labels=3, pad_token_id=0)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    ids = torch.randint(1, 100, (2, 12))
    with torch.inference_mode():
        expected = model(input_ids=ids).logits
        converted = as_linear_layers(model)
        logits = converted(input_ids=ids).logits
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    assert not any(isinstance(m, Conv1D) for m in converted.modules())
    assert (
        len(eligible_linears(converted, True, 16, 16)) == 2 * 4
    )  # per block: c_attn, c_proj, c_fc, mlp c_proj
