"""What a user's own model file reads: images in the zoo's layout, or texts as token ids.

An exported PyTorch program, an ONNX graph and a Keras model carry no preprocessing of their own,
so their entry says what they read (``input``) and, for texts, whose tokenizer makes the ids.
Images are float32 NCHW in [0, 1] (grayscale gets one channel); a Keras model receives them as
NHWC, as every Keras model here does (``families.base.to_keras_layout``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from green_deploy.errors import ConfigError
from green_deploy.zoo.families.base import images_to_unit_float, parse_architecture, require_examples

INPUTS = ("image", "text")


@dataclass(frozen=True)
class OwnFileSettings:
    """The ``architecture`` keys of a model file used as it is.

    Attributes:
        path: the model file (relative paths are relative to the project root).
        input: ``image`` (uint8 images to float32 NCHW in [0, 1]) or ``text`` (token ids).
        tokenizer: the Hugging Face folder whose tokenizer makes the token ids (``text`` only).
        max_length: tokens per text, truncated and padded to it.
    """

    path: str
    input: str = "image"
    tokenizer: str | None = None
    max_length: int = 128

    def source_paths(self) -> list[Path]:
        """The files a build reads, which its cache key hashes: the model and a tokenizer folder."""
        return [Path(self.path).expanduser()] + (
            [Path(self.tokenizer).expanduser()] if self.tokenizer else []
        )

    def __post_init__(self) -> None:
        if self.input not in INPUTS:
            raise ConfigError(f"architecture.input must be one of {', '.join(INPUTS)}; got {self.input!r}")
        if self.input == "text" and not self.tokenizer:
            raise ConfigError(
                "architecture.input text needs tokenizer: the Hugging Face folder of the model's tokenizer"
            )


def encode_own_inputs(
    examples: Sequence[Any] | np.ndarray, settings: OwnFileSettings, what: str
) -> np.ndarray:
    """Images to float32 NCHW in [0, 1], or texts to int64 token ids (N, max_length); examples of
    the other kind are refused, naming ``what`` (the model)."""
    require_examples(examples, settings.input, what, "set architecture.input (and tokenizer for texts)")
    if settings.input == "text":
        from green_deploy.zoo.families.huggingface import encode_texts, model_folder

        return encode_texts(model_folder(str(settings.tokenizer)), examples, settings.max_length)
    images = np.asarray(examples)
    if images.ndim == 4:  # RGB (N, H, W, 3)
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
    return images_to_unit_float(images)


class OwnFileFamily:
    """What the families of a model file used as it is share: their settings, the files a build
    reads, and the inputs they take. ``describes`` names the model in messages ("the ONNX model")."""

    name: str
    describes: str
    tasks = ("classification",)
    training_modes = ("none",)

    def settings(self, arch: Mapping[str, Any]) -> OwnFileSettings:
        return parse_architecture(OwnFileSettings, arch, self.name)

    def source_paths(self, arch: Mapping[str, Any]) -> list[Path]:
        return self.settings(arch).source_paths()

    def encode(self, examples: Sequence[Any] | np.ndarray, arch: Mapping[str, Any]) -> np.ndarray:
        s = self.settings(arch)
        return encode_own_inputs(examples, s, f"{self.describes} {s.path}")
