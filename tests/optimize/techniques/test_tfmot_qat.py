"""tfmot quantization-aware training: an int8 flatbuffer close to the Keras baseline and smaller
than its fp32 conversion, the baseline untouched, weight-free custom layers kept in float with
quantized outputs, NotApplicable for text models (their Embedding, LayerNormalization and
attention layers hold weights tfmot cannot quantize), for tasks without labels and for converter
failures, and settings checks.

Tolerances are relative to the Keras baseline's largest absolute output ("logit scale"), measured
on these tiny models seeded with ``tf_keras.utils.set_random_seed(0)`` (seeds 1 to 3 gave the
same or smaller errors), fine-tuned at learning rate 1e-6 so that the error is the quantization's,
not training drift's; the bounds are about 3x the measured error: ResNet CNN 0.0089 (bound 0.03),
ScaleOffset + Conv toy 0.014 (bound 0.045). The ResNet flatbuffer measured 0.551 of the fp32
conversion's bytes.
"""

from __future__ import annotations

import numpy as np
import pytest

from green_deploy.errors import ConfigError
from green_deploy.optimize.base import NotApplicable, OptimizationContext
from green_deploy.optimize.spec import parse_variant
from green_deploy.optimize.techniques.tflite import TECHNIQUE as TFLITE
from green_deploy.optimize.techniques.tfmot_qat import TECHNIQUE
from green_deploy.runtimes.tflite import interpreter, predict_tflite, tflite_tensor_stats
from green_deploy.zoo.families import get_family
from green_deploy.zoo.inference import predict_keras

rng = np.random.default_rng(0)
IMAGES = rng.random((32, 1, 28, 28)).astype(np.float32)
LABELS = rng.integers(0, 10, 32)
CNN_ARCH = {"widths": [8, 16]}
LM_ARCH = {"context": 16, "dim": 16, "depth": 1, "heads": 2, "mlp_dim": 32}
WINDOWS = rng.integers(0, 256, (16, 17))
# learning rate 1e-6: the comparison with the baseline then measures quantization, not training
FAST = {"finetune_steps": 4, "batch_size": 8, "learning_rate": 1e-6}


def _context(family: str = "resnet_cnn", **overrides) -> OptimizationContext:
    values = {"finetune_x": IMAGES, "finetune_y": LABELS, **overrides}
    return OptimizationContext(family, family, "classification", CNN_ARCH, 10, IMAGES[:8], **values)


def _relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    scale = float(np.abs(expected).max())
    assert scale > 0  # not a vacuous comparison of zeros
    return float(np.abs(actual - expected).max()) / scale


@pytest.fixture(scope="module")
def cnn():
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    return get_family("resnet_cnn").build_keras(CNN_ARCH, 10)


@pytest.fixture(scope="module")
def qat_cnn(cnn):
    before = [weight.copy() for weight in cnn.get_weights()]
    return TECHNIQUE.apply(cnn, FAST, _context()), before


def test_cnn_becomes_an_int8_flatbuffer_close_to_keras(cnn, qat_cnn):
    result, _ = qat_cnn
    assert (result.framework, result.runtime, result.devices) == ("tensorflow", "tflite", ("cpu",))
    assert isinstance(result.model, bytes)
    stats = tflite_tensor_stats(result.model)
    # int8 kernels and int32 biases: no float weight is left
    assert set(stats["parameters_by_dtype"]) == {"int8", "int32"}
    assert result.extra["int8_parameter_fraction"] > 0.95
    assert result.extra["float_layers"] == []
    assert result.extra["min_max_range_quantizers"] > 0 and result.extra["frozen_batch_norms"] == 6
    assert np.isfinite(result.extra["final_loss"])
    assert "quantize_apply" in result.notes and "optimizations=[DEFAULT]" in result.notes
    (source,), (target,) = (
        interpreter(result.model).get_input_details(),
        interpreter(result.model).get_output_details(),
    )
    assert np.dtype(source["dtype"]) == np.float32 == np.dtype(target["dtype"])
    outputs = predict_tflite(result.model, IMAGES, batch_size=5)
    assert outputs.shape == (32, 10)
    assert _relative_error(outputs, predict_keras(cnn, IMAGES)) < 0.03


def test_flatbuffer_is_smaller_than_the_fp32_conversion(cnn, qat_cnn):
    result, _ = qat_cnn
    fp32 = TFLITE.apply(cnn, {}, _context()).model
    assert len(result.model) < 0.6 * len(fp32)  # measured 0.551: the graph itself is not shrunk
    assert result.extra["flatbuffer_bytes"] == len(result.model)


def test_baseline_is_unchanged(cnn, qat_cnn):
    import tf_keras

    _, before = qat_cnn
    assert all(np.array_equal(a, b) for a, b in zip(before, cnn.get_weights(), strict=True))
    batch_norms = [layer for layer in cnn.layers if isinstance(layer, tf_keras.layers.BatchNormalization)]
    assert batch_norms and all(layer.trainable for layer in batch_norms)  # frozen only in the clone


def test_weight_free_custom_layer_stays_float_and_the_conv_after_it_int8():
    import tf_keras

    from green_deploy.zoo.families.keras_layers import ScaleOffset

    tf_keras.utils.set_random_seed(0)
    inputs = tf_keras.Input((28, 28, 1))
    x = ScaleOffset(2.0, -1.0, name="scale")(inputs)
    x = tf_keras.layers.Conv2D(8, 3, name="conv")(x)
    x = tf_keras.layers.BatchNormalization(name="bn")(x)
    x = tf_keras.layers.ReLU(name="relu")(x)
    x = tf_keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(10, name="head")(x))

    result = TECHNIQUE.apply(model, FAST, _context("toy"))
    assert result.extra["float_layers"] == ["scale"]
    assert "output quantized: scale" in result.notes
    # the conv (72) and head (80) kernels are int8: ScaleOffset's output is quantized for the conv
    assert result.extra["parameters_by_dtype"]["int8"] == 72 + 80
    assert _relative_error(predict_tflite(result.model, IMAGES), predict_keras(model, IMAGES)) < 0.045


@pytest.mark.parametrize(
    ("family", "arch", "named"),
    [
        (
            "byte_transformer_lm",
            LM_ARCH,
            ["byte_embedding (Embedding)", "blocks.0.attention (MultiHeadAttention)"],
        ),
        ("ngram_bag", {"max_bytes": 32, "n_buckets": 512, "dim": 16}, ["embedding (Embedding)"]),
    ],
)
def test_text_models_are_not_applicable_naming_the_layers(family, arch, named):
    model = get_family(family).build_keras(arch, 0 if family == "byte_transformer_lm" else 4)
    task = "language_modeling" if family == "byte_transformer_lm" else "classification"
    ids = WINDOWS[:, :-1] if family == "byte_transformer_lm" else rng.integers(1, 512, (16, 96))
    targets = WINDOWS[:, 1:] if family == "byte_transformer_lm" else LABELS[:16] % 4
    context = OptimizationContext(family, family, task, arch, 0, ids[:4], finetune_x=ids, finetune_y=targets)
    with pytest.raises(NotApplicable, match="cannot quantize layers that hold weights") as caught:
        TECHNIQUE.apply(model, FAST, context)
    assert all(name in str(caught.value) for name in named)


def test_an_op_the_converter_cannot_map_is_not_applicable_with_the_key_message():
    import tensorflow as tf
    import tf_keras

    # A registered layer, not a Lambda: quantize_apply clones the model, and Keras refuses to
    # deserialize a Lambda's Python function.
    @tf_keras.utils.register_keras_serializable(package="test_tfmot_qat")
    class BesselI1e(tf_keras.layers.Layer):
        def call(self, inputs):
            return tf.math.bessel_i1e(inputs)

    inputs = tf_keras.Input((8,))
    x = tf_keras.layers.Dense(8, name="dense")(inputs)
    x = BesselI1e(name="bessel")(x)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(3, name="head")(x))
    x_train = rng.random((16, 8)).astype(np.float32)
    context = OptimizationContext(
        "toy", "toy", "classification", {}, 3, x_train[:4], finetune_x=x_train, finetune_y=LABELS[:16] % 3
    )
    with pytest.raises(NotApplicable) as caught:
        TECHNIQUE.apply(model, FAST, context)
    message = str(caught.value)
    assert message.startswith("TFLite converter (QAT int8) failed:")
    assert "'tf.BesselI1e' op is neither a custom op nor a flex op" in message
    assert len(message.splitlines()) == 1


def test_retrieval_is_not_applicable(cnn):
    retrieval = OptimizationContext("r", "minilm", "retrieval", {}, 0, IMAGES[:4], finetune_x=IMAGES)
    with pytest.raises(NotApplicable, match="retrieval"):
        TECHNIQUE.apply(cnn, FAST, retrieval)


@pytest.mark.parametrize("missing", [{"finetune_x": None, "finetune_y": None}, {"finetune_x": IMAGES[:0]}])
def test_no_finetune_data_is_not_applicable(cnn, missing):
    with pytest.raises(NotApplicable, match="no fine-tune data"):
        TECHNIQUE.apply(cnn, FAST, _context(**missing))


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"finetune_step": 10}, "finetune_step"),
        ({"finetune_steps": 0}, "at least 1"),
        ({"learning_rate": 0}, "learning_rate must be positive"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"finetune_steps": "50"}, "must be an integer"),
    ],
)
def test_bad_settings_are_config_errors(cnn, settings, match):
    with pytest.raises(ConfigError, match=match):
        TECHNIQUE.apply(cnn, settings, _context())


def test_variants_take_qat_as_a_last_tensorflow_step():
    spec = parse_variant("qat", {"framework": "tensorflow", "technique": "tfmot_qat"})
    assert spec.technique == "tfmot_qat"
    with pytest.raises(ConfigError, match="last step"):
        parse_variant(
            "v", {"framework": "tensorflow", "steps": [{"technique": "tfmot_qat"}, {"technique": "tflite"}]}
        )
    with pytest.raises(ConfigError, match="must start from it"):
        parse_variant("v", {"framework": "torch", "technique": "tfmot_qat"})
