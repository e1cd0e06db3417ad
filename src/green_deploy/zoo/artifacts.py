"""Saving and loading zoo models: safetensors for PyTorch, the ``.keras`` format for Keras.

A PyTorch artifact is a folder with ``model.safetensors`` (weights only: loading runs no
pickled code) and ``model_config.json`` (family, architecture, outputs) to rebuild the module.
Anything missing, truncated or not matching its architecture is an ``ArtifactError``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from green_deploy.errors import ArtifactError
from green_deploy.zoo.families import get_family

TORCH_DIR = "torch"  # a zoo build's PyTorch model, beside its model.keras / model.onnx
TORCH_WEIGHTS = "model.safetensors"
TORCH_CONFIG = "model_config.json"
KERAS_FILE = "model.keras"
ONNX_FILE = "model.onnx"
# the members of a .keras archive (tf_keras saving_lib)
_KERAS_CONFIG = "config.json"
_KERAS_WEIGHTS = "model.weights.h5"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def directory_size_bytes(path: Path) -> int:
    return (
        sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        if path.is_dir()
        else path.stat().st_size
    )


def save_torch_model(
    model: Any, family: str, architecture: dict[str, Any], n_outputs: int, folder: Path
) -> Path:
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / TORCH_WEIGHTS))
    config = {"family": family, "architecture": architecture, "n_outputs": n_outputs}
    (folder / TORCH_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
    return folder


def load_torch_model(folder: Path) -> Any:
    """Rebuild the module from its config and load the weights strictly (every tensor must match)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    weights, config_path = folder / TORCH_WEIGHTS, folder / TORCH_CONFIG
    for required in (weights, config_path):
        if not required.is_file():
            raise ArtifactError(
                f"PyTorch model artifact incomplete: {required} is missing; rebuild it with `kedro run --pipeline=zoo`"
            )
    try:
        config = json.loads(config_path.read_text())
        model = get_family(config["family"]).build_torch(config["architecture"], config["n_outputs"])
        load_model(model, str(weights), strict=True)
    except (SafetensorError, json.JSONDecodeError, KeyError, RuntimeError, OSError) as error:
        raise ArtifactError(
            f"PyTorch model artifact {folder} is corrupt or does not match its config ({error}); "
            "rebuild it with `kedro run --pipeline=zoo`"
        ) from error
    model.zoo_config = config  # lets a changed model be saved again with what rebuilds it
    return model.eval()


def save_keras_model(model: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(path))
    return path


def load_keras_model(path: Path, rebuild: str = "rebuild it with `kedro run --pipeline=zoo`") -> Any:
    """The Keras model of ``path``; a missing or damaged file is named with ``rebuild``, the
    command that makes it again (the zoo's by default, a variant's from optimize)."""
    import tf_keras

    import green_deploy.zoo.families.keras_layers  # noqa: F401  (registers the custom layers)

    if not path.is_file():
        raise ArtifactError(f"Keras model artifact {path} is missing; {rebuild}")
    try:
        # The same archive ``load_model`` reads, but with its weights file extracted first:
        # ``load_model`` reads the HDF5 file inside the zip through ``tf.io.gfile`` in thousands of
        # small seeks (14 s for MiniLM's 90 MB here, 0.8 s this way; the weights are equal).
        with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory() as folder:
            config = json.loads(archive.read(_KERAS_CONFIG))
            config["compile_config"] = None
            weights = archive.extract(_KERAS_WEIGHTS, folder)
            model = tf_keras.saving.deserialize_keras_object(config, safe_mode=True)
            model.load_weights(weights)
            return model
    except Exception as error:  # Keras raises many unrelated types for a damaged archive
        raise ArtifactError(f"Keras model artifact {path} is corrupt ({error}); {rebuild}") from error
