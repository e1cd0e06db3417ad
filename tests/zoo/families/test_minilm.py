"""all-MiniLM-L6-v2: real weights load offline, and the Keras twin computes what PyTorch computes."""

from __future__ import annotations

import numpy as np
import pytest

from green_deploy.errors import ConfigError
from green_deploy.zoo.families.minilm import FAMILY, model_dir

ARCH = {"max_length": 32, "normalize": True}
PARITY_ATOL = 1e-4  # measured max |torch - keras|: ~2e-7 on normalised embeddings
SENTENCES = [
    "A man is playing a guitar.",
    "Someone is playing an acoustic guitar.",
    "The central bank raised interest rates again to fight persistent inflation in the euro area, "
    "surprising markets that had expected a pause after months of slowing growth and weak hiring.",
    "Cats sleep.",
]


@pytest.fixture(scope="module")
def ids() -> np.ndarray:
    return FAMILY.encode(SENTENCES, ARCH)


@pytest.fixture(scope="module")
def models():
    torch_model = FAMILY.build_torch(ARCH, 0)
    keras_model = FAMILY.build_keras(ARCH, 0)
    FAMILY.port_weights(torch_model, keras_model)
    return torch_model, keras_model


def _torch(module, ids: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return module(torch.from_numpy(ids)).numpy()


def test_encode_pads_with_zero_and_truncates(ids):
    assert ids.dtype == np.int64
    assert ids.shape == (4, 32)
    lengths = (ids != 0).sum(axis=1)
    assert lengths[2] == 32  # the long sentence is truncated...
    assert lengths[3] < lengths[0] < 32  # ...the others padded, each to its own length
    for row, length in zip(ids, lengths, strict=True):
        assert (row[length:] == 0).all()
        assert row[0] == 101 and row[length - 1] == 102  # [CLS] ... [SEP] survive truncation


@pytest.mark.parametrize(
    ("arch", "match"),
    [
        ({**ARCH, "pooling": "cls"}, "unknown setting"),
        ({**ARCH, "max_length": 1}, "max_length"),
        ({**ARCH, "max_length": "128"}, "max_length"),
        ({**ARCH, "normalize": "yes"}, "normalize"),
    ],
)
def test_bad_arch_is_a_config_error(arch, match):
    with pytest.raises(ConfigError, match=match):
        FAMILY.encode(SENTENCES[:1], arch)
    with pytest.raises(ConfigError, match=match):
        FAMILY.build_keras(arch, 0)


def test_max_length_beyond_the_position_table_is_a_config_error():
    with pytest.raises(ConfigError, match="512 positions"):
        FAMILY.build_keras({**ARCH, "max_length": 513}, 0)


def test_paraphrases_are_closer_than_unrelated_sentences(models, ids):
    torch_model, _ = models
    embeddings = _torch(torch_model, ids)
    assert embeddings.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > 0.6
    assert similarity[0, 1] > similarity[0, 2] + 0.4
    assert similarity[0, 1] > similarity[1, 3] + 0.4


def test_padding_does_not_change_the_embedding(models):
    torch_model, _ = models
    short = FAMILY.encode(SENTENCES[:2], {**ARCH, "max_length": 16})
    long = FAMILY.encode(SENTENCES[:2], ARCH)
    np.testing.assert_allclose(_torch(torch_model, short), _torch(torch_model, long), atol=1e-5)


def test_matches_sentence_transformers(models, ids):
    from sentence_transformers import SentenceTransformer

    torch_model, _ = models
    reference = SentenceTransformer(str(model_dir()), device="cpu").encode(SENTENCES[:2])
    np.testing.assert_allclose(_torch(torch_model, ids[:2]), reference, rtol=0, atol=1e-4)


@pytest.mark.slow
def test_keras_twin_matches_torch_embeddings(models, ids):
    torch_model, keras_model = models
    np.testing.assert_allclose(
        keras_model.predict(ids, verbose=0), _torch(torch_model, ids), rtol=0, atol=PARITY_ATOL
    )


@pytest.mark.slow
def test_keras_twin_matches_torch_with_a_classifier_head(ids):
    arch = {"max_length": 32, "normalize": False}
    torch_model = FAMILY.build_torch(arch, 3)
    keras_model = FAMILY.build_keras(arch, 3)
    FAMILY.port_weights(torch_model, keras_model)
    logits = _torch(torch_model, ids)
    assert logits.shape == (4, 3)
    assert not np.allclose(np.linalg.norm(logits, axis=1), 1.0)
    np.testing.assert_allclose(keras_model.predict(ids, verbose=0), logits, rtol=0, atol=PARITY_ATOL)


@pytest.mark.slow
def test_keras_twin_survives_save_and_load(models, ids, keras_roundtrip):
    _, keras_model = models
    loaded = keras_roundtrip(keras_model)
    np.testing.assert_array_equal(loaded.predict(ids, verbose=0), keras_model.predict(ids, verbose=0))


@pytest.mark.slow
def test_tfmot_prunes_attention_and_dense_layers(models):
    from tensorflow_model_optimization.sparsity import keras as sparsity

    _, keras_model = models
    pruned = sparsity.prune_low_magnitude(keras_model)
    wrapped = {
        layer.layer.name: layer for layer in pruned.layers if type(layer).__name__ == "PruneLowMagnitude"
    }
    assert wrapped
    assert wrapped["encoder.layer.0.attention"].prunable_weights  # q, k, v and output kernels
    assert not wrapped["embeddings.position_embeddings"].prunable_weights


@pytest.mark.slow
def test_tflite_conversion_keeps_the_outputs(models, ids, tflite_predict):
    _, keras_model = models
    np.testing.assert_allclose(
        tflite_predict(keras_model, ids[:1]), keras_model.predict(ids[:1], verbose=0), atol=1e-4
    )
