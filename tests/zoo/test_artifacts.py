from __future__ import annotations

import json

import numpy as np
import pytest

from green_deploy.errors import ArtifactError
from green_deploy.zoo import artifacts
from green_deploy.zoo.families import get_family
from green_deploy.zoo.inference import predict_keras, predict_torch

ARCH = {"widths": [4, 8], "blocks_per_stage": 1}
IMAGES = np.random.default_rng(1).random((3, 1, 28, 28), dtype=np.float32)


@pytest.fixture
def saved_torch(tmp_path):
    model = get_family("resnet_cnn").build_torch(ARCH, 10)
    folder = artifacts.save_torch_model(model, "resnet_cnn", ARCH, 10, tmp_path / "torch")
    return model, folder


def test_torch_model_round_trips_exactly(saved_torch):
    model, folder = saved_torch
    loaded = artifacts.load_torch_model(folder)
    np.testing.assert_array_equal(predict_torch(loaded, IMAGES), predict_torch(model, IMAGES))
    assert loaded.zoo_config == {"family": "resnet_cnn", "architecture": ARCH, "n_outputs": 10}


def test_truncated_weights_are_a_clear_error(saved_torch):
    _, folder = saved_torch
    weights = folder / artifacts.TORCH_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ArtifactError, match="corrupt"):
        artifacts.load_torch_model(folder)


def test_weights_that_do_not_fit_the_config_are_a_clear_error(saved_torch):
    _, folder = saved_torch
    config_path = folder / artifacts.TORCH_CONFIG
    config = json.loads(config_path.read_text())
    config["architecture"]["widths"] = [4, 16]
    config_path.write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="does not match"):
        artifacts.load_torch_model(folder)


def test_missing_artifacts_say_how_to_rebuild(tmp_path):
    with pytest.raises(ArtifactError, match="kedro run --pipeline=zoo"):
        artifacts.load_torch_model(tmp_path / "nothing")
    with pytest.raises(ArtifactError, match="kedro run --pipeline=zoo"):
        artifacts.load_keras_model(tmp_path / "nothing.keras")


def test_keras_model_round_trips_and_corruption_is_detected(tmp_path):
    family = get_family("resnet_cnn")
    model = family.build_keras(ARCH, 10)
    path = artifacts.save_keras_model(model, tmp_path / "model.keras")
    np.testing.assert_array_equal(
        predict_keras(artifacts.load_keras_model(path), IMAGES), predict_keras(model, IMAGES)
    )
    path.write_bytes(b"not a zip archive")
    with pytest.raises(ArtifactError, match=r"corrupt .*rebuild it with `kedro run --pipeline=zoo`"):
        artifacts.load_keras_model(path)
