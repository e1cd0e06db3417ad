"""tfmot magnitude pruning: the sparsity asked for, a plain Keras model after stripping, the
baseline untouched, NotApplicable where there is nothing to fine-tune on, and the zeros surviving
TFLite conversion."""

from __future__ import annotations

import numpy as np
import pytest

from green_deploy.errors import ConfigError
from green_deploy.optimize.base import NotApplicable, OptimizationContext
from green_deploy.optimize.techniques.tflite import TECHNIQUE as TFLITE
from green_deploy.optimize.techniques.tfmot_pruning import TECHNIQUE
from green_deploy.optimize.tflite_runtime import tflite_tensor_stats
from green_deploy.zoo.families import get_family
from green_deploy.zoo.inference import predict_keras

rng = np.random.default_rng(0)
CNN_ARCH = {"widths": [4, 8]}
IMAGES = rng.random((16, 1, 28, 28)).astype(np.float32)
LABELS = rng.integers(0, 10, 16)
LM_ARCH = {"context": 16, "dim": 16, "depth": 1, "heads": 2, "mlp_dim": 32}
WINDOWS = rng.integers(0, 256, (16, 17))
FAST = {"finetune_steps": 4, "batch_size": 8}


def _cnn_context(**overrides) -> OptimizationContext:
    values = {"finetune_x": IMAGES, "finetune_y": LABELS, **overrides}
    return OptimizationContext("cnn", "resnet_cnn", "classification", CNN_ARCH, 10, IMAGES[:4], **values)


@pytest.fixture(scope="module")
def cnn():
    return get_family("resnet_cnn").build_keras(CNN_ARCH, 10)


@pytest.fixture(scope="module")
def pruned_cnn(cnn):
    before = [weight.copy() for weight in cnn.get_weights()]
    result = TECHNIQUE.apply(cnn, {"sparsity": 0.5, **FAST}, _cnn_context())
    return result, before


def _dense_conv_kernel_sparsity(model) -> float:
    """Zeros over the Dense/Conv kernels, counted independently of the technique."""
    import tf_keras

    kernels = [
        layer.kernel.numpy()
        for layer in model.layers
        if isinstance(layer, tf_keras.layers.Dense | tf_keras.layers.Conv2D)
    ]
    return sum(int((k == 0).sum()) for k in kernels) / sum(k.size for k in kernels)


def test_cnn_is_pruned_to_the_target(pruned_cnn):
    result, _ = pruned_cnn
    assert (result.framework, result.runtime, result.devices) == ("tensorflow", "keras", ("cpu", "gpu"))
    assert result.extra["achieved_sparsity"] == pytest.approx(0.5, abs=0.02)
    assert _dense_conv_kernel_sparsity(result.model) == pytest.approx(0.5, abs=0.02)
    assert np.isfinite(result.extra["final_loss"])
    assert "ConstantSparsity(0.5" in result.notes


def test_stripped_model_is_plain_keras_and_runs(pruned_cnn):
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

    model = pruned_cnn[0].model
    assert not any(isinstance(layer, PruneLowMagnitude) for layer in model.layers)
    assert not any("prune_low_magnitude" in weight.name for weight in model.weights)
    outputs = predict_keras(model, IMAGES[:4])
    assert outputs.shape == (4, 10) and np.isfinite(outputs).all()


def test_baseline_is_unchanged(cnn, pruned_cnn):
    _, before = pruned_cnn
    after = cnn.get_weights()
    assert len(after) == len(before)
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert _dense_conv_kernel_sparsity(cnn) < 0.05


def test_zeros_survive_tflite_conversion(pruned_cnn):
    result, _ = pruned_cnn
    context = _cnn_context()
    stats = tflite_tensor_stats(TFLITE.apply(result.model, {}, context).model)
    # Every pruned kernel zero is in the flatbuffer (BatchNorm folding scales, it keeps zeros);
    # biases and folded BatchNorm shifts dilute the overall fraction a little.
    assert stats["n_zeros"] >= 0.5 * result.extra["prunable_parameters"]
    assert stats["sparsity"] >= 0.45


def test_language_model_prunes_on_next_byte_targets():
    model = get_family("byte_transformer_lm").build_keras(LM_ARCH, 0)
    context = OptimizationContext(
        "lm",
        "byte_transformer_lm",
        "language_modeling",
        LM_ARCH,
        0,
        WINDOWS[:4, :-1],
        finetune_x=WINDOWS[:, :-1],
        finetune_y=WINDOWS[:, 1:],
    )
    result = TECHNIQUE.apply(model, {"sparsity": 0.75, **FAST}, context)
    assert result.extra["achieved_sparsity"] == pytest.approx(0.75, abs=0.02)
    outputs = predict_keras(result.model, WINDOWS[:2, :-1])
    assert outputs.shape == (2, 16, 256) and np.isfinite(outputs).all()


def test_retrieval_is_not_applicable(cnn):
    retrieval = OptimizationContext("r", "minilm", "retrieval", {}, 0, IMAGES[:4], finetune_x=IMAGES)
    with pytest.raises(NotApplicable, match="retrieval"):
        TECHNIQUE.apply(cnn, {"sparsity": 0.5}, retrieval)


@pytest.mark.parametrize(
    "missing", [{"finetune_x": None, "finetune_y": None}, {"finetune_y": None}, {"finetune_x": IMAGES[:0]}]
)
def test_no_finetune_data_is_not_applicable(cnn, missing):
    with pytest.raises(NotApplicable, match="no fine-tune data"):
        TECHNIQUE.apply(cnn, {"sparsity": 0.5}, _cnn_context(**missing))


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({}, "'sparsity' is required"),
        ({"sparsity": 1.0}, "strictly between 0 and 1"),
        ({"sparsity": 0.5, "finetune_step": 10}, "finetune_step"),
        ({"sparsity": 0.5, "finetune_steps": 0}, "at least 1"),
    ],
)
def test_bad_settings_are_config_errors(cnn, settings, match):
    with pytest.raises(ConfigError, match=match):
        TECHNIQUE.apply(cnn, settings, _cnn_context())
