"""The onnx and keras families on models the test writes: a zoo CNN exported to ONNX and a Keras
model saved by tf_keras, built into a zoo folder as they are (one framework, no training), and the
files that do not fit named with the fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from green_deploy.errors import ArtifactError, ConfigError, ModelNotFoundError
from green_deploy.zoo.builder import build_zoo_model, load_card
from green_deploy.zoo.families import get_family
from green_deploy.zoo.inference import KerasPredictor, predict_onnx
from green_deploy.zoo.spec import parse_entry

FASHION = {"max_train": 64, "max_val": 64, "max_test": 100}


def export_onnx(path, n_outputs: int = 10, dynamic_batch: bool = True, inputs: int = 1) -> torch.nn.Module:
    """The zoo's resnet_cnn exported with torch.onnx as a user would (their own input name)."""
    torch.manual_seed(0)
    model = get_family("resnet_cnn").build_torch({}, n_outputs).eval()
    module = model if inputs == 1 else _TwoInputs(model).eval()
    example = (torch.rand(4, 1, 28, 28),) * inputs
    names = ["images", "extra"][:inputs]
    shapes = tuple({0: torch.export.Dim("batch")} for _ in names) if dynamic_batch else None
    # torch.onnx's default (dynamo) exporter, which writes the weights to a .data file beside the graph
    torch.onnx.export(
        module, example, str(path), input_names=names, output_names=["logits"], dynamic_shapes=shapes
    )
    return model


class _TwoInputs(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.model(x + y)


def save_keras(path, n_outputs: int = 10) -> None:
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential(
        [
            tf_keras.Input((28, 28, 1)),
            tf_keras.layers.Conv2D(8, 3, activation="relu"),
            tf_keras.layers.GlobalAveragePooling2D(),
            tf_keras.layers.Dense(n_outputs),
        ]
    )
    model.save(str(path))


def own_entry(family: str, path) -> dict:
    return {
        "domain": "cv",
        "family": family,
        "source": "written by the test",
        "task": "classification",
        "dataset": "fashion_mnist",
        "metric": "accuracy",
        "architecture": {"path": str(path)},
        "training": {"mode": "none"},
    }


def test_an_onnx_graph_is_built_as_the_onnx_baseline_and_gives_the_module_outputs(tmp_path):
    original = export_onnx(tmp_path / "cnn.onnx")
    assert (tmp_path / "cnn.onnx.data").is_file()  # the weights sit beside the graph
    card = build_zoo_model(
        parse_entry("own_onnx", own_entry("onnx", tmp_path / "cnn.onnx")), FASHION, tmp_path / "zoo"
    )
    assert card.frameworks == ["onnx"] and set(card.test_metrics) == {"onnx"}
    assert card.parity_max_abs_diff is None  # nothing to compare it with
    assert card.artifact_sha256.keys() == {"model.onnx"}
    # the graph's weights: the exporter folds each BatchNorm into its convolution
    assert (
        0.95 * sum(p.numel() for p in original.parameters())
        < card.n_parameters
        < sum(p.numel() for p in original.parameters())
    )
    saved = (tmp_path / "zoo/model.onnx").read_bytes()
    x = torch.rand(3, 1, 28, 28)
    with torch.inference_mode():
        np.testing.assert_allclose(predict_onnx(saved, x.numpy()), original(x).numpy(), atol=1e-4)
    assert load_card(tmp_path / "zoo").test_metrics == card.test_metrics


def test_a_model_file_replaced_at_its_path_is_built_again(tmp_path):
    entry = parse_entry("own_onnx", own_entry("onnx", tmp_path / "cnn.onnx"))
    export_onnx(tmp_path / "cnn.onnx")
    first = build_zoo_model(entry, FASHION, tmp_path / "zoo")
    assert (
        build_zoo_model(entry, FASHION, tmp_path / "zoo").build_duration_s == first.build_duration_s
    )  # reused
    weights = (tmp_path / "cnn.onnx.data").read_bytes()
    (tmp_path / "cnn.onnx.data").write_bytes(weights[:-4] + b"\x00\x00\x80\x3f")  # one weight changed
    again = build_zoo_model(entry, FASHION, tmp_path / "zoo")
    assert again.config_sha256 != first.config_sha256
    assert again.artifact_sha256 != first.artifact_sha256


def test_a_keras_model_is_built_as_the_tensorflow_baseline(tmp_path):
    save_keras(tmp_path / "cnn.keras")
    card = build_zoo_model(
        parse_entry("own_keras", own_entry("keras", tmp_path / "cnn.keras")), FASHION, tmp_path / "zoo"
    )
    assert card.frameworks == ["tensorflow"] and card.artifact_sha256.keys() == {"model.keras"}
    assert card.n_parameters == 8 * 9 + 8 + 8 * 10 + 10
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    x = get_family("keras").encode(images, {"path": "unused"})
    assert x.shape == (3, 1, 28, 28)  # the PyTorch layout; Keras gets NHWC from its predictor
    import tf_keras

    reloaded = tf_keras.models.load_model(str(tmp_path / "zoo/model.keras"))
    assert KerasPredictor(reloaded)(x).shape == (3, 10)


def test_a_savedmodel_folder_loads_too(tmp_path):
    import tf_keras

    save_keras(tmp_path / "cnn.keras")
    tf_keras.models.load_model(str(tmp_path / "cnn.keras")).save(
        str(tmp_path / "saved_model"), save_format="tf"
    )
    model = get_family("keras").build_keras({"path": str(tmp_path / "saved_model")}, 10)
    assert model.count_params() == 8 * 9 + 8 + 8 * 10 + 10


@pytest.mark.parametrize(
    ("family", "write", "error", "message"),
    [
        (
            "onnx",
            lambda p: export_onnx(p, n_outputs=7),
            ConfigError,
            r"outputs of shape \(2, 7\) for 2 rows, but the dataset has 10 classes",
        ),
        (
            "onnx",
            lambda p: export_onnx(p, dynamic_batch=False),
            ConfigError,
            "does not run on a batch of 2 .*batch dimension is dynamic",
        ),
        (
            "onnx",
            lambda p: export_onnx(p, inputs=2),
            ConfigError,
            r"must take one input \(the batch\).*\['images', 'extra'\]",
        ),
        ("onnx", lambda p: p.write_bytes(b"not a graph"), ArtifactError, "not a readable ONNX model"),
        (
            "onnx",
            lambda p: export_onnx(p) and p.with_suffix(".onnx.data").unlink(),
            ArtifactError,
            "not a readable ONNX",
        ),
        ("onnx", lambda p: None, ModelNotFoundError, "does not exist; set architecture.path"),
        ("keras", lambda p: save_keras(p, n_outputs=3), ConfigError, r"outputs of shape \(2, 3\)"),
        (
            "keras",
            lambda p: p.write_bytes(b"PK garbage"),
            ArtifactError,
            "not a Keras model tf_keras can load",
        ),
        ("keras", lambda p: None, ModelNotFoundError, "does not exist"),
    ],
)
def test_a_model_file_that_does_not_fit_is_named_with_the_fix(tmp_path, family, write, error, message):
    path = tmp_path / ("model.onnx" if family == "onnx" else "model.keras")
    write(path)
    entry = parse_entry("own", own_entry(family, path))
    with pytest.raises(error, match=message):
        build_zoo_model(entry, FASHION, tmp_path / "zoo")
    assert not (tmp_path / "zoo/card.json").exists()


def test_texts_for_an_image_model_and_training_are_refused(tmp_path):
    export_onnx(tmp_path / "cnn.onnx")
    texts = {**own_entry("onnx", tmp_path / "cnn.onnx"), "dataset": "fortunes", "domain": "nlp"}
    with pytest.raises(ConfigError, match="reads images, but the dataset gives texts"):
        build_zoo_model(parse_entry("own", texts), {"max_per_class": 20}, tmp_path / "zoo")
    trained = {**own_entry("onnx", tmp_path / "cnn.onnx"), "training": {"mode": "scratch"}}
    with pytest.raises(ConfigError, match="family onnx takes none"):
        build_zoo_model(parse_entry("own", trained), FASHION, tmp_path / "zoo")
