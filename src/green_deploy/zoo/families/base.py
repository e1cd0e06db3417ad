"""What every architecture family provides, in both frameworks.

A family builds the PyTorch model, builds its Keras twin, copies the PyTorch weights into the
twin (so RQ1.2 compares frameworks on identical models) and turns raw examples into the array
the models take. Frameworks are imported inside the methods, never at module import.

Conventions shared by all families:
- Images: PyTorch takes float32 NCHW in [0, 1]; Keras takes float32 NHWC in [0, 1].
- Text and bytes: both take one integer array (N, L); 0 is padding.
- A model's output is one float array: logits (N, classes), embeddings (N, D) or
  next-token logits (N, L, vocab).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

_Settings = TypeVar("_Settings")

if TYPE_CHECKING:
    import tf_keras
    import torch


# The frameworks (``zoo.baselines``) of a family with a Keras twin; an own model has its own only
TWIN_FRAMEWORKS = ("torch", "tensorflow")


class Family(Protocol):
    """An architecture family; ``arch`` is the entry's ``architecture`` mapping from config.

    ``frameworks``: the baselines the family builds (``zoo.baselines``): ``TWIN_FRAMEWORKS``
    (a PyTorch model, trained, and its Keras twin receiving the weights), or a user's own model's
    one framework: ``("torch",)`` builds with ``build_torch`` only, ``("tensorflow",)`` with
    ``build_keras`` only (the user's Keras model), ``("onnx",)`` with ``build_onnx`` only.
    ``training_modes``: the ``training.mode`` values its models can take (``TRAINING_MODES``; a
    model file used as it is only ``none``).

    A family that reads a user's files also has ``source_paths(arch) -> list[Path]`` (the files
    a build's cache key hashes), and one whose models name their outputs ``output_names(arch,
    n_outputs) -> list[str] | None`` (checked against the dataset's classes).
    """

    name: str
    frameworks: tuple[str, ...]
    tasks: tuple[str, ...]  # the zoo tasks (``zoo.spec.TASK_METRICS``) its models serve
    training_modes: tuple[str, ...]

    def encode(self, examples: Sequence[Any] | np.ndarray, arch: Mapping[str, Any]) -> np.ndarray:
        """Raw examples (images, strings or bytes) to the model's input array (PyTorch layout)."""
        ...

    def build_torch(self, arch: Mapping[str, Any], n_outputs: int) -> torch.nn.Module:
        """The PyTorch model; pretrained families load their shipped weights here."""
        ...

    def build_keras(self, arch: Mapping[str, Any], n_outputs: int) -> tf_keras.Model:
        """The Keras model: a twin (variables created, its own initial weights), or the user's."""
        ...

    def port_weights(self, torch_model: torch.nn.Module, keras_model: tf_keras.Model) -> None:
        """Copy every PyTorch weight into the Keras twin, in place."""
        ...

    def build_onnx(self, arch: Mapping[str, Any], n_outputs: int) -> bytes:
        """The ONNX graph's bytes (an ``("onnx",)`` family only)."""
        ...


def to_keras_layout(inputs: np.ndarray) -> np.ndarray:
    """PyTorch input array to the Keras one: NCHW images become NHWC, others pass through."""
    if inputs.ndim == 4:
        return np.ascontiguousarray(inputs.transpose(0, 2, 3, 1))
    return inputs


def parse_architecture(settings_class: type[_Settings], arch: Mapping[str, Any], family: str) -> _Settings:
    """Typed architecture settings from config (see ``green_deploy.config.parse_settings``)."""
    from green_deploy.config import parse_settings

    return parse_settings(settings_class, arch, f"family {family!r}")


def require_examples(examples: Sequence[Any] | np.ndarray, reads: str, where: str, fix: str) -> None:
    """Refuse examples of the other kind than a model ``reads`` (``text`` or ``image``): texts fed to
    an image model would fail deep in a conversion, with the text as the message."""
    first = examples[0] if len(examples) else None
    given = "text" if isinstance(first, str | bytes) else "image"
    if first is not None and given != reads:
        from green_deploy.errors import ConfigError

        raise ConfigError(f"{where} reads {reads}s, but the dataset gives {given}s; {fix}")


def images_to_unit_float(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) images to float32 (N, 1, H, W) in [0, 1]: the CV families' input."""
    return (np.asarray(images, dtype=np.float32) / 255.0)[:, np.newaxis, :, :]
