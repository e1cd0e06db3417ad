"""The torch_export family on programs the test exports: loaded as they are, checked on two rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from green_deploy.errors import ArtifactError, ConfigError, ModelNotFoundError
from green_deploy.zoo import artifacts
from green_deploy.zoo.families import get_family

FAMILY = get_family("torch_export")


def _export(path, n_outputs: int = 10, dynamic_batch: bool = True):
    torch.manual_seed(0)
    model = get_family("resnet_cnn").build_torch({}, n_outputs).eval()
    shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    torch.export.save(torch.export.export(model, (torch.rand(4, 1, 28, 28),), dynamic_shapes=shapes), path)
    return model


def test_a_program_runs_as_the_module_it_was_exported_from_and_saves_like_any_model(tmp_path):
    original = _export(tmp_path / "cnn.pt2")
    arch = {"path": str(tmp_path / "cnn.pt2")}
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    x = torch.as_tensor(FAMILY.encode(images, arch))
    assert x.shape == (3, 1, 28, 28) and float(x.max()) <= 1.0
    model = FAMILY.build_torch(arch, 10).eval()  # eval() is a no-op for the exported module, not an error
    with torch.inference_mode():
        np.testing.assert_allclose(model(x).numpy(), original(x).numpy(), atol=1e-5)
        artifacts.save_torch_model(model, "torch_export", arch, 10, tmp_path / "saved")
        np.testing.assert_array_equal(
            artifacts.load_torch_model(tmp_path / "saved")(x).numpy(), model(x).numpy()
        )


def test_rgb_images_become_three_channels(tmp_path):
    rgb = np.full((2, 8, 8, 3), 255, np.uint8)
    assert FAMILY.encode(rgb, {"path": str(tmp_path / "x.pt2")}).shape == (2, 3, 8, 8)


@pytest.mark.parametrize(
    ("export", "n_outputs", "error", "message"),
    [
        (
            {"n_outputs": 10},
            3,
            ConfigError,
            r"outputs of shape \(2, 10\) for 2 rows, but the dataset has 3 classes",
        ),
        ({"dynamic_batch": False}, 10, ConfigError, "does not take a batch of 2"),
    ],
)
def test_a_program_that_does_not_fit_the_data_is_named(tmp_path, export, n_outputs, error, message):
    _export(tmp_path / "cnn.pt2", **export)
    with pytest.raises(error, match=message):
        FAMILY.build_torch({"path": str(tmp_path / "cnn.pt2")}, n_outputs)


def test_a_missing_or_damaged_file_is_named(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist; set architecture.path"):
        FAMILY.build_torch({"path": str(tmp_path / "none.pt2")}, 10)
    (tmp_path / "bad.pt2").write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="is not a readable torch.export program"):
        FAMILY.build_torch({"path": str(tmp_path / "bad.pt2")}, 10)


def test_texts_need_a_tokenizer_and_images_need_image_input(tmp_path):
    with pytest.raises(ConfigError, match="input text needs tokenizer"):
        FAMILY.settings({"path": "x.pt2", "input": "text"})
    with pytest.raises(ConfigError, match="reads images, but the dataset gives texts"):
        FAMILY.encode(["a text"], {"path": "x.pt2"})


def test_texts_become_token_ids_from_the_named_tokenizer():
    from green_deploy.zoo.families.minilm import model_dir

    arch = {"path": "x.pt2", "input": "text", "tokenizer": str(model_dir()), "max_length": 8}
    ids = FAMILY.encode(["The film was superb.", "Awful"], arch)
    assert ids.dtype == np.int64 and ids.shape == (2, 8) and ids[1, -1] == 0  # padded with [PAD]
