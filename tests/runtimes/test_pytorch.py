"""PyTorch runtime: a variant and a zoo model's folder round trip, and what a damaged one says."""

from __future__ import annotations

import json

import numpy as np
import pytest

from green_deploy.errors import ArtifactError
from green_deploy.runtimes import get_runtime
from green_deploy.runtimes.pytorch import CONFIG_FILE, FORMAT_VERSION, TORCH_FILE
from green_deploy.zoo.inference import predict_torch

ARCH = {"dim": 16, "depth": 1, "heads": 2, "mlp_dim": 32}
CONFIG = {"family": "vit", "architecture": ARCH, "n_outputs": 10, "steps": []}


@pytest.fixture(scope="module")
def tiny():
    from green_deploy.zoo.families import get_family

    family = get_family("vit")
    images = (np.random.default_rng(0).random((5, 28, 28)) * 255).astype(np.uint8)
    return family.build_torch(ARCH, 10).eval(), family.encode(images, ARCH)


def test_a_saved_variant_loads_predicts_and_counts_its_weights(tmp_path, tiny):
    model, x = tiny
    runtime = get_runtime("pytorch")
    assert runtime.save(model, tmp_path, CONFIG) == [TORCH_FILE, CONFIG_FILE]
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["format"] == FORMAT_VERSION
    loaded = runtime.load(tmp_path)
    np.testing.assert_array_equal(runtime.predictor(loaded)(x), predict_torch(model, x))
    counts = runtime.weight_counts(tmp_path)
    assert counts.n_parameters == sum(p.numel() for p in model.parameters())
    assert counts.n_matrix_zeros == 0
    assert runtime.serving_path() == "PyTorch eager (inference_mode)"


def test_each_recorded_step_is_replayed_before_the_tensors_load(tmp_path, tiny):
    model, _ = tiny
    runtime = get_runtime("pytorch")
    runtime.save(model, tmp_path, {**CONFIG, "steps": [{"technique": "a"}, {"technique": "b"}]})
    replayed: list[str] = []

    def replay(module, step):
        replayed.append(step["technique"])
        return module

    runtime.load(tmp_path, replay)
    assert replayed == ["a", "b"]


def test_a_zoo_models_torch_folder_loads_as_the_zoo_saved_it(tmp_path, tiny):
    from green_deploy.zoo.artifacts import save_torch_model

    model, x = tiny
    folder = save_torch_model(model, "vit", ARCH, 10, tmp_path / "torch")
    np.testing.assert_array_equal(
        predict_torch(get_runtime("pytorch").load(folder), x), predict_torch(model, x)
    )


def test_a_damaged_variant_names_its_rebuild(tmp_path, tiny):
    model, _ = tiny
    folder = tmp_path / "tiny_vit" / "pt_fp32"
    folder.mkdir(parents=True)
    get_runtime("pytorch").save(model, folder, CONFIG)
    (folder / TORCH_FILE).write_bytes(b"garbage")
    with pytest.raises(
        ArtifactError, match=r"corrupt .*--namespaces=tiny_vit --params \"optimize.only=pt_fp32\""
    ):
        get_runtime("pytorch").load(folder)
    (folder / TORCH_FILE).unlink()
    with pytest.raises(ArtifactError, match="model.safetensors is missing; rebuild it"):
        get_runtime("pytorch").load(folder)
