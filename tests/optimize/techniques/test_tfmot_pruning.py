"""tfmot magnitude pruning: the sparsity asked for, a plain Keras model after stripping, the
baseline untouched, NotApplicable where there is nothing to fine-tune on, and the zeros surviving
TFLite conversion; 2:4 structured pruning: the pattern checked here independently of the technique
(every 4 consecutive weights along the input channels of each pruned kernel hold 2 zeros), the
layers it leaves dense, and its settings."""

from __future__ import annotations

import numpy as np
import pytest

from green_deploy.errors import ConfigError
from green_deploy.optimize.base import NotApplicable, OptimizationContext
from green_deploy.optimize.techniques.tflite import TECHNIQUE as TFLITE
from green_deploy.optimize.techniques.tfmot_pruning import TECHNIQUE, m_by_n_groups
from green_deploy.runtimes.tflite import tflite_tensor_stats
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
    result = TECHNIQUE.apply(model, {"sparsity": 0.75, **FAST}, _lm_context())
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


def _lm_context() -> OptimizationContext:
    return OptimizationContext(
        "lm",
        "byte_transformer_lm",
        "language_modeling",
        LM_ARCH,
        0,
        WINDOWS[:4, :-1],
        finetune_x=WINDOWS[:, :-1],
        finetune_y=WINDOWS[:, 1:],
    )


def _groups_of_four_along_inputs(kernel: np.ndarray) -> np.ndarray:
    """Zeros in each group of 4 consecutive input channels: Dense kernels are (in, out) and
    Conv2D kernels (h, w, in, out), so the input axis is the second to last."""
    channels_in = kernel.shape[-2]
    assert channels_in % 4 == 0
    per_output = np.moveaxis(kernel, -2, -1).reshape(-1, channels_in)
    return (per_output.reshape(per_output.shape[0], channels_in // 4, 4) == 0).sum(axis=-1)


@pytest.fixture(scope="module")
def cnn_2of4(cnn):
    before = [weight.copy() for weight in cnn.get_weights()]
    result = TECHNIQUE.apply(cnn, {"sparsity_m_by_n": [2, 4], **FAST}, _cnn_context())
    return result, before


def test_2of4_holds_on_every_pruned_cnn_kernel(cnn_2of4):
    import tf_keras

    result, _ = cnn_2of4
    layers = {layer.name: layer for layer in result.model.layers}
    # widths [4, 8]: every kernel but the stem's (1 input channel) has input channels divisible by 4
    assert set(result.extra["m_by_n_layers"]) == {
        name
        for name, layer in layers.items()
        if isinstance(layer, tf_keras.layers.Dense | tf_keras.layers.Conv2D) and name != "stem.conv"
    }
    for name in result.extra["m_by_n_layers"]:
        zeros = _groups_of_four_along_inputs(layers[name].kernel.numpy())
        # exactly 2: a random-init weight is never zero by itself
        assert (zeros == 2).all(), name
    assert result.extra["m_by_n_conforming_fraction"] == 1.0
    assert result.extra["achieved_sparsity"] == pytest.approx(0.5)
    assert result.extra["target_sparsity"] == 0.5
    assert result.extra["m_by_n_groups"] == result.extra["prunable_parameters"] // 4


def test_2of4_leaves_kernels_it_cannot_group_dense_and_says_so(cnn, cnn_2of4):
    result, before = cnn_2of4
    stem = result.model.get_layer("stem.conv").kernel.numpy()
    assert stem.shape[-2] == 1 and np.count_nonzero(stem == 0) == 0
    assert "not a multiple of 4" in result.extra["m_by_n_skipped_layers"]["stem.conv"]
    assert 0.5 < result.extra["m_by_n_model_fraction"] < 1.0
    assert "sparsity_m_by_n=(2, 4)" in result.notes and "dense ops on CPU" in result.notes
    # and the baseline is untouched
    assert all(np.array_equal(a, b) for a, b in zip(before, cnn.get_weights(), strict=True))


def test_2of4_language_model_prunes_the_mlp_and_head_not_attention():
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    model = get_family("byte_transformer_lm").build_keras(LM_ARCH, 0)
    result = TECHNIQUE.apply(model, {"sparsity_m_by_n": [2, 4], **FAST}, _lm_context())
    assert set(result.extra["m_by_n_layers"]) == {"blocks.0.mlp.0", "blocks.0.mlp.2", "lm_head"}
    assert "MultiHeadAttention" in result.extra["m_by_n_skipped_layers"]["blocks.0.attention"]
    assert "Embedding" in result.extra["m_by_n_skipped_layers"]["byte_embedding"]
    for name in result.extra["m_by_n_layers"]:
        assert (_groups_of_four_along_inputs(result.model.get_layer(name).kernel.numpy()) >= 2).all()
    outputs = predict_keras(result.model, WINDOWS[:2, :-1])
    assert outputs.shape == (2, 16, 256) and np.isfinite(outputs).all()


def test_m_by_n_groups_counts_groups_along_the_input_axis():
    kernel = np.ones((8, 3), dtype=np.float32)  # Dense (in=8, out=3): 2 groups per output
    kernel[[0, 1], 0] = 0  # output 0, first group: 2 zeros
    kernel[[4], 1] = 0  # output 1, second group: 1 zero
    kernel[[5, 6, 7], 2] = 0  # output 2, second group: 3 zeros
    assert m_by_n_groups(kernel, 2, 4) == (2, 6)
    assert m_by_n_groups(kernel, 1, 4) == (3, 6)
    with pytest.raises(ValueError, match="not a multiple of 4"):
        m_by_n_groups(np.ones((6, 2)), 2, 4)


def test_2of4_without_a_groupable_layer_is_not_applicable():
    import tf_keras

    inputs = tf_keras.Input((6,))
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(3, name="head")(inputs))
    x = rng.random((8, 6)).astype(np.float32)
    context = OptimizationContext(
        "toy", "toy", "classification", {}, 3, x, finetune_x=x, finetune_y=LABELS[:8] % 3
    )
    with pytest.raises(NotApplicable, match=r"no layer can be pruned 2:4.*head \(Dense: input channels"):
        TECHNIQUE.apply(model, {"sparsity_m_by_n": [2, 4], **FAST}, context)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({}, "'sparsity' is required"),
        ({"sparsity": 0.5, "sparsity_m_by_n": [2, 4]}, "not both"),
        ({"sparsity_m_by_n": [4, 2]}, r"0 < m < n"),
        ({"sparsity_m_by_n": [0, 4]}, r"0 < m < n"),
        ({"sparsity_m_by_n": [2]}, r"\[m, n\]"),
        ({"sparsity_m_by_n": [2, 4, 8]}, r"\[m, n\]"),
        ({"sparsity_m_by_n": "2:4"}, "list of integers"),
        ({"sparsity_m_by_n": [2, 4], "finetune_steps": 0}, "at least 1"),
        ({"sparsity": 1.0}, "strictly between 0 and 1"),
        ({"sparsity": 0.5, "finetune_step": 10}, "finetune_step"),
        ({"sparsity": 0.5, "finetune_steps": 0}, "at least 1"),
    ],
)
def test_bad_settings_are_config_errors(cnn, settings, match):
    with pytest.raises(ConfigError, match=match):
        TECHNIQUE.apply(cnn, settings, _cnn_context())


def test_batch_norm_is_frozen_for_the_fine_tune_only(cnn, pruned_cnn):
    import tf_keras

    result, _ = pruned_cnn
    assert result.extra["frozen_batch_norms"] == 6 and "6 BatchNormalization layers frozen" in result.notes
    # the stripped model keeps the baseline's flags, hence its order of get_weights
    assert all(
        layer.trainable
        for layer in result.model.layers
        if isinstance(layer, tf_keras.layers.BatchNormalization)
    )
    assert [w.shape for w in result.model.get_weights()] == [w.shape for w in cnn.get_weights()]
    # frozen BatchNormalization kept its moving statistics through the fine-tune
    for name in ("stem.bn", "blocks.1.2.bn"):
        np.testing.assert_array_equal(
            result.model.get_layer(name).moving_variance.numpy(), cnn.get_layer(name).moving_variance.numpy()
        )
