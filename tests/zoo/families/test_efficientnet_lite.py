"""EfficientNet-Lite0: the Keras twin computes what the pretrained PyTorch model computes."""

from __future__ import annotations

import io

import numpy as np
import pytest

from green_deploy.errors import ConfigError
from green_deploy.zoo.families.base import to_keras_layout
from green_deploy.zoo.families.efficientnet_lite import FAMILY

ARCH = {"variant": "efficientnet-lite0", "image_size": 56, "dropout": 0.2}
N_CLASSES = 10
PARITY_ATOL = 1e-4  # measured max |torch - keras|: ~4e-6 on logits, ~2e-5 on features


def _images(n: int = 4) -> np.ndarray:
    """Distinct uint8 images: blank, a bright square, a gradient, noise."""
    rng = np.random.default_rng(0)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    images[1 % n, 6:20, 8:22] = 230
    images[2 % n] = np.linspace(0, 255, 28, dtype=np.uint8)[np.newaxis, :]
    images[3 % n] = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    return images


@pytest.fixture(scope="module")
def models():
    torch_model = FAMILY.build_torch(ARCH, N_CLASSES)
    keras_model = FAMILY.build_keras(ARCH, N_CLASSES)
    FAMILY.port_weights(torch_model, keras_model)
    return torch_model, keras_model


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    return FAMILY.encode(_images(), ARCH)


def _torch(module, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def test_encode_scales_to_unit_nchw(inputs):
    assert inputs.dtype == np.float32
    assert inputs.shape == (4, 1, 28, 28)
    assert inputs.min() == 0.0
    assert inputs.max() == 1.0
    with pytest.raises(ConfigError, match="28, 28"):
        FAMILY.encode(np.zeros((2, 32, 32), dtype=np.uint8), ARCH)


@pytest.mark.parametrize(
    ("arch", "match"),
    [
        ({**ARCH, "width": 2}, "unknown setting"),
        ({**ARCH, "image_size": 50}, "multiple of 28"),
        ({**ARCH, "image_size": 0}, "multiple of 28"),
        ({**ARCH, "dropout": 1.5}, "dropout"),
        ({**ARCH, "variant": "efficientnet-lite4"}, "not available offline"),
    ],
)
def test_bad_arch_is_a_config_error(arch, match):
    with pytest.raises(ConfigError, match=match):
        FAMILY.encode(_images(1), arch)
    with pytest.raises(ConfigError, match=match):
        FAMILY.build_keras(arch, N_CLASSES)


def test_torch_model_splits_into_backbone_and_head(models, inputs):
    import torch

    torch_model, _ = models
    assert not torch_model.training
    assert not any(m.training for m in torch_model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    features = _torch(torch_model.backbone, inputs)
    assert features.shape == (4, 1280)
    assert [name for name, _ in torch_model.head.named_children()] == ["dropout", "fc"]
    np.testing.assert_allclose(_torch(torch_model.head, features), _torch(torch_model, inputs), atol=1e-6)


def test_pretrained_features_vary_with_the_image(models, inputs):
    torch_model, _ = models
    features = _torch(torch_model.backbone, inputs)
    assert np.abs(features).max() > 0.1
    # Every pair of distinct images gets clearly distinct features.
    gaps = [np.abs(features[i] - features[j]).mean() for i in range(4) for j in range(i + 1, 4)]
    assert min(gaps) > 1e-2


@pytest.mark.slow
def test_keras_twin_matches_torch(models, inputs):
    import tf_keras

    torch_model, keras_model = models
    x = to_keras_layout(inputs)
    logits = _torch(torch_model, inputs)
    np.testing.assert_allclose(keras_model.predict(x, verbose=0), logits, rtol=0, atol=PARITY_ATOL)
    pooled = tf_keras.Model(keras_model.input, keras_model.get_layer("features").output)
    np.testing.assert_allclose(
        pooled.predict(x, verbose=0), _torch(torch_model.backbone, inputs), rtol=0, atol=PARITY_ATOL
    )


@pytest.mark.slow
def test_odd_feature_maps_pad_alike():
    """At 28x28 the maps go 14, 7, 4, 2, 1: SAME padding must agree on odd sizes too."""
    arch = {**ARCH, "image_size": 28}
    torch_model = FAMILY.build_torch(arch, 3)
    keras_model = FAMILY.build_keras(arch, 3)
    FAMILY.port_weights(torch_model, keras_model)
    x = FAMILY.encode(_images(2), arch)
    np.testing.assert_allclose(
        keras_model.predict(to_keras_layout(x), verbose=0), _torch(torch_model, x), rtol=0, atol=PARITY_ATOL
    )


def test_port_rejects_a_mismatched_twin(models):
    torch_model, _ = models
    other = FAMILY.build_keras(ARCH, N_CLASSES + 1)
    with pytest.raises(ValueError):
        FAMILY.port_weights(torch_model, other)


def test_torch_model_pickles(models, inputs):
    import torch

    torch_model, _ = models
    buffer = io.BytesIO()
    torch.save(torch_model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    np.testing.assert_array_equal(_torch(loaded, inputs), _torch(torch_model, inputs))


@pytest.mark.slow
def test_keras_twin_survives_save_and_load(models, inputs, keras_roundtrip):
    _, keras_model = models
    x = to_keras_layout(inputs)
    loaded = keras_roundtrip(keras_model)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), keras_model.predict(x, verbose=0))


@pytest.mark.slow
def test_tfmot_prunes_the_convolutions(models):
    from tensorflow_model_optimization.sparsity import keras as sparsity

    _, keras_model = models
    pruned = sparsity.prune_low_magnitude(keras_model)
    wrapped = [layer for layer in pruned.layers if type(layer).__name__ == "PruneLowMagnitude"]
    assert wrapped
    # Every 1x1/3x3 convolution and the dense head carry a prunable kernel.
    assert sum(1 for layer in wrapped if layer.prunable_weights) == 34


@pytest.mark.slow
def test_tflite_conversion_keeps_the_outputs(models, inputs, tflite_predict):
    _, keras_model = models
    x = to_keras_layout(inputs[:1])
    np.testing.assert_allclose(tflite_predict(keras_model, x), keras_model.predict(x, verbose=0), atol=1e-4)
