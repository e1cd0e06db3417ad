"""A small ResNet-style CNN trained from scratch (He et al. 2016 basic blocks, few channels).

Stride-2 convolutions pad one pixel on every side as PyTorch does; Keras' ``padding='same'``
would pad asymmetrically, so the twin pads explicitly and convolves ``valid``.
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

BATCH_NORM_EPS = 1e-5


@dataclass(frozen=True)
class ResNetSettings:
    widths: tuple[int, ...] = (16, 32, 64)
    blocks_per_stage: int = 1
    image_size: int = 28


class ResNetCNNFamily:
    name = "resnet_cnn"
    frameworks = TWIN_FRAMEWORKS
    tasks = ("classification",)
    training_modes = TRAINING_MODES

    def settings(self, arch: Mapping[str, Any]) -> ResNetSettings:
        return parse_architecture(ResNetSettings, arch, self.name)

    def encode(self, examples: np.ndarray, arch: Mapping[str, Any]) -> np.ndarray:
        return images_to_unit_float(examples)

    def _stages(self, s: ResNetSettings) -> list[tuple[int, int, int]]:
        """(in_channels, out_channels, stride) of every block, in the order ``ResNetCNN`` builds them."""
        plan, channels = [], s.widths[0]
        for stage, width in enumerate(s.widths):
            for index in range(s.blocks_per_stage):
                plan.append((channels, width, 2 if stage > 0 and index == 0 else 1))
                channels = width
        return plan

    def build_torch(self, arch: Mapping[str, Any], n_outputs: int) -> Any:
        from green_deploy.zoo.families.torch_models import ResNetCNN

        s = self.settings(arch)
        return ResNetCNN(s.widths, s.blocks_per_stage, n_outputs, BATCH_NORM_EPS)

    def build_keras(self, arch: Mapping[str, Any], n_outputs: int) -> Any:
        import tf_keras

        layers = tf_keras.layers
        s = self.settings(arch)

        def conv_bn(x, filters, kernel, stride, name):
            if stride > 1 and kernel > 1:
                x = layers.ZeroPadding2D(kernel // 2, name=f"{name}.pad")(x)
                padding = "valid"
            else:
                padding = "same" if kernel > 1 else "valid"
            x = layers.Conv2D(filters, kernel, stride, padding=padding, use_bias=False, name=f"{name}.conv")(
                x
            )
            return layers.BatchNormalization(epsilon=BATCH_NORM_EPS, name=f"{name}.bn")(x)

        inputs = tf_keras.Input((s.image_size, s.image_size, 1), name="image")
        x = layers.ReLU(name="stem.relu")(conv_bn(inputs, s.widths[0], 3, 1, "stem"))
        for index, (cin, cout, stride) in enumerate(self._stages(s)):
            name = f"blocks.{index}"
            out = layers.ReLU(name=f"{name}.relu1")(conv_bn(x, cout, 3, stride, f"{name}.1"))
            out = conv_bn(out, cout, 3, 1, f"{name}.2")
            shortcut = conv_bn(x, cout, 1, stride, f"{name}.shortcut") if stride != 1 or cin != cout else x
            x = layers.ReLU(name=f"{name}.relu2")(layers.Add(name=f"{name}.add")([out, shortcut]))
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        outputs = layers.Dense(n_outputs, name="classifier")(x)
        return tf_keras.Model(inputs, outputs, name=self.name)

    def port_weights(self, torch_model: Any, keras_model: Any) -> None:
        from green_deploy.zoo.families.keras_blocks import port_batch_norm, port_conv2d, port_dense

        def port_conv_bn(conv, bn, name):
            port_conv2d(conv, keras_model.get_layer(f"{name}.conv"))
            port_batch_norm(bn, keras_model.get_layer(f"{name}.bn"))

        port_conv_bn(torch_model.stem[0], torch_model.stem[1], "stem")
        for index, block in enumerate(torch_model.blocks):
            port_conv_bn(block.conv1, block.bn1, f"blocks.{index}.1")
            port_conv_bn(block.conv2, block.bn2, f"blocks.{index}.2")
            if len(list(block.shortcut.children())) == 2:  # a projection shortcut, not Identity
                port_conv_bn(block.shortcut[0], block.shortcut[1], f"blocks.{index}.shortcut")
        port_dense(torch_model.classifier, keras_model.get_layer("classifier"))


FAMILY = ResNetCNNFamily()
