"""Model datasets: safetensors folders for PyTorch, ``.keras`` files for Keras."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset

from green_deploy.zoo import artifacts


class TorchModelDataset(AbstractDataset[Any, Any]):
    """A PyTorch model saved as ``model.safetensors`` + ``model_config.json`` in ``filepath``.

    Saving needs the model to carry ``zoo_config`` (family, architecture, n_outputs), which
    ``load`` sets, so a loaded model can be saved again after it is changed in place.
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._folder = Path(filepath)
        self.metadata = metadata

    def load(self) -> Any:
        return artifacts.load_torch_model(self._folder)

    def save(self, data: Any) -> None:
        config = getattr(data, "zoo_config", None)
        if config is None:
            raise ValueError(
                "TorchModelDataset saves models that carry `zoo_config` (family, architecture, n_outputs)"
            )
        artifacts.save_torch_model(
            data, config["family"], config["architecture"], config["n_outputs"], self._folder
        )

    def _exists(self) -> bool:
        return (self._folder / artifacts.TORCH_WEIGHTS).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._folder)}


class KerasModelDataset(AbstractDataset[Any, Any]):
    """A Keras (tf-keras) model in the ``.keras`` format; custom layers are registered on load."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._path = Path(filepath)
        self.metadata = metadata

    def load(self) -> Any:
        return artifacts.load_keras_model(self._path)

    def save(self, data: Any) -> None:
        artifacts.save_keras_model(data, self._path)

    def _exists(self) -> bool:
        return self._path.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._path)}
