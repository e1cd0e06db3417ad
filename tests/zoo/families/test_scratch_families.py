"""The from-scratch families: PyTorch and Keras twins agree, and the Keras twin accepts
tfmot pruning and TFLite conversion (what the optimize pipeline does to it)."""

from __future__ import annotations

import numpy as np
import pytest

from green_deploy.errors import ConfigError
from green_deploy.zoo.families import get_family
from green_deploy.zoo.families.base import to_keras_layout
from green_deploy.zoo.families.byte_lstm import left_padded_bytes
from green_deploy.zoo.families.byte_transformer_lm import byte_windows
from green_deploy.zoo.families.ngram_bag import hashed_ngrams
from green_deploy.zoo.inference import predict_keras, predict_torch

rng = np.random.default_rng(0)
IMAGES = (rng.random((6, 28, 28)) * 255).astype(np.uint8)
TEXTS = ["hello world", "Bonjour à tous, ça va ?", "", "def f(x):\n    return x * 2\n", "Привет мир"]

CASES = {
    "resnet_cnn": ({"widths": [8, 16], "blocks_per_stage": 1}, IMAGES, 10),
    "vit": ({"dim": 32, "depth": 2, "heads": 4, "mlp_dim": 64}, IMAGES, 10),
    "byte_lstm": ({"max_length": 32, "hidden_dim": 16}, TEXTS, 4),
    "ngram_bag": ({"max_bytes": 64, "n_buckets": 1024, "dim": 16}, TEXTS, 4),
    "byte_transformer_lm": (
        {"context": 16, "dim": 32, "depth": 2, "heads": 4, "mlp_dim": 64},
        [bytes(range(200)) * 3],
        0,
    ),
}


def _twins(name):
    arch, examples, n_outputs = CASES[name]
    family = get_family(name)
    inputs = family.encode(examples, arch)
    if name == "byte_transformer_lm":
        inputs = inputs[:, :-1]
    torch_model = family.build_torch(arch, n_outputs)
    keras_model = family.build_keras(arch, n_outputs)
    family.port_weights(torch_model, keras_model)
    return torch_model, keras_model, inputs


@pytest.mark.parametrize("name", sorted(CASES))
def test_keras_twin_matches_pytorch(name):
    torch_model, keras_model, inputs = _twins(name)
    torch_out = predict_torch(torch_model, inputs)
    keras_out = predict_keras(keras_model, inputs)
    assert torch_out.shape == keras_out.shape
    assert np.abs(torch_out - keras_out).max() <= 1e-5
    assert np.abs(torch_out).max() > 0  # not a vacuous match of zeros


@pytest.mark.parametrize("name", sorted(CASES))
def test_keras_twin_survives_save_load_tfmot_and_tflite(name, keras_roundtrip, tflite_predict):
    import tensorflow_model_optimization as tfmot

    _, keras_model, inputs = _twins(name)
    keras_inputs = to_keras_layout(inputs).astype(np.int32 if inputs.dtype == np.int64 else np.float32)
    expected = np.asarray(keras_model(keras_inputs, training=False))

    reloaded = keras_roundtrip(keras_model)
    np.testing.assert_allclose(np.asarray(reloaded(keras_inputs, training=False)), expected, atol=1e-6)

    pruned = tfmot.sparsity.keras.prune_low_magnitude(keras_model)
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

    assert any(isinstance(layer, PruneLowMagnitude) for layer in pruned.layers)

    np.testing.assert_allclose(tflite_predict(keras_model, keras_inputs), expected, atol=1e-4)


def test_unknown_architecture_key_is_rejected():
    with pytest.raises(ConfigError, match="depht"):
        get_family("vit").build_torch({"depht": 2}, 10)


def test_left_padding_keeps_the_text_at_the_end():
    ids = left_padded_bytes(["ab", ""], 4)
    assert ids.tolist() == [[0, 0, ord("a") + 1, ord("b") + 1], [0, 0, 0, 0]]


def test_ngram_hashes_are_stable_and_in_range():
    first = hashed_ngrams(TEXTS, (1, 2, 3), 64, 1024)
    second = hashed_ngrams(list(TEXTS), (1, 2, 3), 64, 1024)
    np.testing.assert_array_equal(first, second)
    assert first.min() >= 0 and first.max() < 1024
    assert (first[2] == 0).all()  # the empty text is all padding
    assert (first[0] > 0).sum() == 11 + 10 + 9  # 1-, 2- and 3-grams of "hello world"


def test_byte_windows_never_span_two_texts():
    windows = byte_windows([b"abcdefg", b"xyz", b"1234"], 3)
    assert [bytes(w.astype(np.uint8)) for w in windows] == [b"abc", b"def", b"xyz", b"123"]
