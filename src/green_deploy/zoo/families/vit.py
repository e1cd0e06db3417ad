"""A tiny Vision Transformer trained from scratch (Dosovitskiy et al. 2021), mean-pooled.

Mean pooling over patch tokens replaces the class token: same accuracy at this size, and no
extra learned token to carry across frameworks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from green_deploy.zoo.families.base import (
    TWIN_FRAMEWORKS,
    images_to_unit_float,
    parse_architecture,
)
from green_deploy.zoo.spec import TRAINING_MODES


@dataclass(frozen=True)
class ViTSettings:
    image_size: int = 28
    patch_size: int = 4
    dim: int = 64
    depth: int = 4
    heads: int = 4
    mlp_dim: int = 128

    @property
    def n_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class ViTFamily:
    name = "vit"
    frameworks = TWIN_FRAMEWORKS
    tasks = ("classification",)
    training_modes = TRAINING_MODES

    def settings(self, arch: Mapping[str, Any]) -> ViTSettings:
        return parse_architecture(ViTSettings, arch, self.name)

    def encode(self, examples: np.ndarray, arch: Mapping[str, Any]) -> np.ndarray:
        return images_to_unit_float(examples)

    def build_torch(self, arch: Mapping[str, Any], n_outputs: int) -> Any:
        from green_deploy.zoo.families.torch_models import ViT

        s = self.settings(arch)
        return ViT(s.n_patches, s.patch_size, s.dim, s.depth, s.heads, s.mlp_dim, n_outputs)

    def build_keras(self, arch: Mapping[str, Any], n_outputs: int) -> Any:
        import tf_keras

        from green_deploy.zoo.families.keras_blocks import transformer_block
        from green_deploy.zoo.families.keras_layers import PositionEmbedding
        from green_deploy.zoo.families.torch_models import LAYER_NORM_EPS

        layers = tf_keras.layers
        s = self.settings(arch)
        inputs = tf_keras.Input((s.image_size, s.image_size, 1), name="image")
        x = layers.Conv2D(s.dim, s.patch_size, s.patch_size, name="patch_embedding")(inputs)
        x = layers.Reshape((s.n_patches, s.dim), name="tokens")(x)
        x = PositionEmbedding(s.n_patches, name="position_embedding")(x)
        for index in range(s.depth):
            x = transformer_block(x, s.dim, s.heads, s.mlp_dim, causal=False, name=f"blocks.{index}")
        x = layers.LayerNormalization(epsilon=LAYER_NORM_EPS, name="norm")(x)
        x = layers.GlobalAveragePooling1D(name="pool")(x)
        outputs = layers.Dense(n_outputs, name="classifier")(x)
        return tf_keras.Model(inputs, outputs, name=self.name)

    def port_weights(self, torch_model: Any, keras_model: Any) -> None:
        from green_deploy.zoo.families.keras_blocks import (
            port_conv2d,
            port_dense,
            port_layer_norm,
            port_transformer_block,
            to_numpy,
        )

        port_conv2d(torch_model.patch_embedding, keras_model.get_layer("patch_embedding"))
        keras_model.get_layer("position_embedding").set_weights([to_numpy(torch_model.position_embedding)[0]])
        for index, block in enumerate(torch_model.blocks):
            port_transformer_block(block, keras_model, f"blocks.{index}")
        port_layer_norm(torch_model.norm, keras_model.get_layer("norm"))
        port_dense(torch_model.classifier, keras_model.get_layer("classifier"))


FAMILY = ViTFamily()
