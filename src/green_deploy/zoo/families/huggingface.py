"""A user's own Hugging Face classifier: a folder in the hub's layout (``config.json``, weights,
tokenizer or image processor files), loaded offline as it is; it reads texts or images.

A folder with a sequence- or image-classification head whose width matches the dataset's classes
is used with that head (``head: auto`` or ``present``); any other encoder is pooled (a text
encoder's states over its non-padding tokens, or its first token with ``pooling: cls``; an image
encoder's pooled output or mean state) and gets a new linear head, trained on the user's training
split with the backbone frozen (``training.mode: head``), as the zoo does for its pretrained
backbones. There is no Keras twin: an own model is measured in the framework it
comes in (``frameworks``).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from green_deploy.errors import ConfigError, ModelNotFoundError
from green_deploy.zoo.families.base import parse_architecture, require_examples
from green_deploy.zoo.spec import TRAINING_MODES

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

NAME = "huggingface"
HEADS = ("auto", "present", "new")
POOLINGS = ("mean", "cls")


@dataclass(frozen=True)
class HuggingFaceSettings:
    """The ``architecture`` keys of an own Hugging Face model.

    Attributes:
        path: the model folder (relative paths are relative to the project root).
        max_length: tokens per text, truncated and padded to it.
        head: ``auto`` uses a classification head the folder has when its width matches the
            classes, else adds one; ``present`` requires the folder's; ``new`` always adds one.
        pooling: how an encoder's token states become one vector for a new head.
    """

    path: str
    max_length: int = 128
    head: str = "auto"
    pooling: str = "mean"

    def __post_init__(self) -> None:
        length = self.max_length
        if isinstance(length, bool) or not isinstance(length, int) or length < 2:
            raise ConfigError(f"huggingface max_length must be an integer >= 2; got {length!r}")
        for key, value, allowed in (("head", self.head, HEADS), ("pooling", self.pooling, POOLINGS)):
            if value not in allowed:
                raise ConfigError(f"huggingface {key} must be one of {', '.join(allowed)}; got {value!r}")


def model_folder(path: str) -> Path:
    """The folder ``path`` names, checked to hold a Hugging Face config."""
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        where = "does not exist" if not folder.exists() else "holds no config.json"
        raise ModelNotFoundError(
            f"huggingface model folder {folder.resolve()} {where}; set architecture.path to a folder in the "
            "Hugging Face hub's layout (config.json, model.safetensors or pytorch_model.bin, tokenizer files), "
            "e.g. one saved with save_pretrained"
        )
    return folder


@functools.cache
def _config(folder: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((folder / "config.json").read_text())
    return config


@functools.cache
def tokenizer_of(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as error:
        raise ModelNotFoundError(f"{folder}: no tokenizer loads from this folder ({error})") from error
    if tokenizer.pad_token_id is None:
        raise ConfigError(f"{folder}: the tokenizer has no padding token, so texts cannot be batched")
    return tokenizer


def encode_texts(folder: Path, texts: Sequence[Any] | np.ndarray, max_length: int) -> np.ndarray:
    """Texts to int64 token ids (N, max_length), truncated and padded by the folder's tokenizer."""
    tokens = tokenizer_of(folder)(
        [str(text) for text in texts],
        padding="max_length",
        truncation=True,
        max_length=max_length,
        return_tensors="np",
    )
    return np.asarray(tokens["input_ids"], dtype=np.int64)


# The Auto class head a folder's ``architectures`` names, by what the model reads
HEAD_SUFFIXES = {"text": "ForSequenceClassification", "image": "ForImageClassification"}


def modality(folder: Path) -> str:
    """``image`` for a folder with an image processor and no tokenizer, else ``text``."""
    if (folder / "preprocessor_config.json").is_file() and not (folder / "tokenizer_config.json").is_file():
        return "image"
    return "text"


@functools.cache
def _image_processor(folder: Path) -> Any:
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(str(folder))
    except (OSError, ValueError) as error:
        raise ModelNotFoundError(f"{folder}: no image processor loads from this folder ({error})") from error


def has_classification_head(folder: Path) -> bool:
    """Whether the folder's weights include a classification head for what it reads."""
    suffix = HEAD_SUFFIXES[modality(folder)]
    return any(name.endswith(suffix) for name in _config(folder).get("architectures") or ())


def _as_rgb_images(examples: Sequence[Any] | np.ndarray) -> list[np.ndarray]:
    """uint8 images (H, W) or (H, W, 3), as the files dataset gives them, to RGB (H, W, 3)."""
    images = [np.asarray(image, dtype=np.uint8) for image in examples]
    return [np.repeat(image[..., np.newaxis], 3, axis=-1) if image.ndim == 2 else image for image in images]


def as_linear_layers(model: Any) -> Any:
    """``model`` with transformers' ``Conv1D`` layers (GPT-2 and its kin: a Linear whose weight is
    stored transposed) as the ``nn.Linear`` they compute, so the techniques that swap Linear
    layers (int8, fp8, int4, 2:4, pruning) see them; the outputs are the same."""
    import torch
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                in_features, out_features = child.weight.shape
                linear = nn.Linear(in_features, out_features, dtype=child.weight.dtype)
                with torch.no_grad():
                    linear.weight.copy_(child.weight.T)
                    linear.bias.copy_(child.bias)
                setattr(parent, name, linear)
    return model


class HuggingFaceFamily:
    """A text or image classifier from a Hugging Face folder: its own head, or a new one on pooled
    states. What it reads follows the folder: a tokenizer (texts) or an image processor (images)."""

    name = NAME
    frameworks = ("torch",)
    tasks = ("classification",)  # its Auto classes: ...ForSequenceClassification, ...ForImageClassification
    training_modes = TRAINING_MODES

    def settings(self, arch: Mapping[str, Any]) -> HuggingFaceSettings:
        return parse_architecture(HuggingFaceSettings, arch, self.name)

    def uses_folder_head(self, arch: Mapping[str, Any], n_outputs: int) -> bool:
        """Whether the model is the folder's classifier as it is (else a new head is trained)."""
        s = self.settings(arch)
        folder = model_folder(s.path)
        present = has_classification_head(folder)
        width = int(_config(folder).get("num_labels") or len(_config(folder).get("id2label") or {}) or 2)
        if s.head == "present":
            if not present:
                raise ConfigError(
                    f"architecture.head is 'present' but {folder} has no {modality(folder)}-classification head "
                    f"(architectures: {_config(folder).get('architectures')}); set head: new (or auto) to train one"
                )
            if width != n_outputs:
                raise ConfigError(
                    f"{folder}'s classification head has {width} outputs but the dataset has {n_outputs} classes; "
                    "set head: new to train a head for these classes"
                )
        return s.head != "new" and present and width == n_outputs

    def output_names(self, arch: Mapping[str, Any], n_outputs: int) -> list[str] | None:
        """The labels the folder's own head gives, in output order (its ``id2label``); ``None`` for a
        new head, or names the hub's default (``LABEL_0``...) that say nothing."""
        if not self.uses_folder_head(arch, n_outputs):
            return None
        id2label = _config(model_folder(self.settings(arch).path)).get("id2label") or {}
        names = [str(id2label.get(str(index), id2label.get(index, ""))) for index in range(n_outputs)]
        return None if all(re.fullmatch(r"LABEL_\d+", name) for name in names) else names

    def source_paths(self, arch: Mapping[str, Any]) -> list[Path]:
        """The files the build reads (its key hashes them): the whole folder."""
        return [Path(self.settings(arch).path).expanduser()]

    def encode(self, examples: Sequence[Any] | np.ndarray, arch: Mapping[str, Any]) -> np.ndarray:
        """Texts to int64 token ids (N, max_length), truncated and padded by the folder's tokenizer;
        images to the float32 pixel values (N, 3, H, W) its image processor makes."""
        s = self.settings(arch)
        folder = model_folder(s.path)
        require_examples(
            examples,
            modality(folder),
            f"the Hugging Face folder {folder}",
            "pair it with a dataset of that kind (a tokenizer reads texts, an image processor images)",
        )
        if modality(folder) == "image":
            pixels = _image_processor(folder)(_as_rgb_images(examples), return_tensors="np")["pixel_values"]
            return np.asarray(pixels, dtype=np.float32)
        return encode_texts(folder, examples, s.max_length)

    def build_torch(self, arch: Mapping[str, Any], n_outputs: int) -> torch.nn.Module:
        """The folder's weights as they are, with its own head or a new linear one (eval mode)."""
        s = self.settings(arch)
        folder = model_folder(s.path)
        if n_outputs < 1:
            raise ConfigError(f"huggingface models classify here; got {n_outputs} classes")
        if modality(folder) == "image":
            return self._image_classifier(folder, arch, n_outputs)
        pad_id = int(tokenizer_of(folder).pad_token_id)
        import torch
        from torch import nn
        from transformers import AutoModel, AutoModelForSequenceClassification

        from green_deploy.zoo.families.torch_models import (
            BackboneHead,
            FirstTokenPooling,
            MaskedMeanPooling,
            TokenClassifier,
        )

        if self.uses_folder_head(arch, n_outputs):
            classifier = AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=torch.float32)
            logger.info("%s: its own classification head (%d outputs)", folder, n_outputs)
            return TokenClassifier(as_linear_layers(classifier), pad_id).eval()
        encoder = as_linear_layers(AutoModel.from_pretrained(str(folder), dtype=torch.float32))
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # unused by either pooling here; dropped so it is not counted
        backbone = (MaskedMeanPooling if s.pooling == "mean" else FirstTokenPooling)(encoder, pad_id)
        head = nn.Linear(encoder.config.hidden_size, n_outputs)
        logger.info("%s: a new %d-class head on %s-pooled states", folder, n_outputs, s.pooling)
        return BackboneHead(backbone, head).eval()

    def _image_classifier(self, folder: Path, arch: Mapping[str, Any], n_outputs: int) -> torch.nn.Module:
        import torch
        from torch import nn
        from transformers import AutoModel, AutoModelForImageClassification

        from green_deploy.zoo.families.torch_models import BackboneHead, ImageClassifier, PooledImageEncoder

        if self.uses_folder_head(arch, n_outputs):
            classifier = AutoModelForImageClassification.from_pretrained(str(folder), dtype=torch.float32)
            logger.info("%s: its own image-classification head (%d outputs)", folder, n_outputs)
            return ImageClassifier(classifier).eval()
        encoder = AutoModel.from_pretrained(str(folder), dtype=torch.float32)
        pooler = getattr(encoder, "pooler", None)
        if pooler is not None and any(True for _ in pooler.parameters()):
            encoder.pooler = None  # a learned pooler a classifier's checkpoint lacks: states are averaged
        backbone = PooledImageEncoder(encoder).eval()
        example = self.encode([np.zeros((8, 8), np.uint8)], arch)
        with torch.inference_mode():
            width = backbone(torch.as_tensor(example)).shape[-1]
        logger.info("%s: a new %d-class head on %d pooled image features", folder, n_outputs, width)
        return BackboneHead(backbone, nn.Linear(width, n_outputs)).eval()


FAMILY = HuggingFaceFamily()
