"""TFLite conversion: fp32 parity, the sizes and errors of each quantization, settings checks,
NotApplicable on what the converter cannot handle, and the flatbuffer runtime and weight counts.

Tolerances are relative to the Keras model's largest absolute output ("logit scale") and were
measured on these tiny random-weight models (seeded), with a margin of about 3x:
dynamic int8 0.015, float16 0.0006 and full int8 0.026 of the scale.
"""

from __future__ import annotations

import numpy as np
import pytest

from green_deploy.errors import ConfigError
from green_deploy.optimize.base import NotApplicable, OptimizationContext
from green_deploy.optimize.techniques.tflite import TECHNIQUE, converter_reason
from green_deploy.runtimes.tflite import interpreter, predict_tflite, tflite_tensor_stats
from green_deploy.zoo.families import get_family
from green_deploy.zoo.inference import predict_keras

rng = np.random.default_rng(0)
IMAGES = rng.random((8, 1, 28, 28)).astype(np.float32)
CALIBRATION_IMAGES = rng.random((16, 1, 28, 28)).astype(np.float32)

CNN_ARCH = {"widths": [4, 8]}
NGRAM_ARCH = {"max_bytes": 32, "n_buckets": 512, "dim": 16}
NGRAM_IDS = rng.integers(1, 512, (8, 96))  # int64, as the zoo encodes them
# Dense-heavy: every weight has more than the 1024 elements below which the converter leaves
# a tensor in float32 under dynamic-range quantization.
LM_ARCH = {"context": 16, "dim": 64, "depth": 1, "heads": 2, "mlp_dim": 256}
LM_IDS = rng.integers(0, 256, (8, 16))


def _context(family: str, task: str, arch, n_outputs: int, calibration_x: np.ndarray) -> OptimizationContext:
    return OptimizationContext(family, family, task, arch, n_outputs, calibration_x)


@pytest.fixture(scope="module")
def cnn():
    return get_family("resnet_cnn").build_keras(CNN_ARCH, 10)


@pytest.fixture(scope="module")
def ngram():
    return get_family("ngram_bag").build_keras(NGRAM_ARCH, 4)


@pytest.fixture(scope="module")
def lm():
    return get_family("byte_transformer_lm").build_keras(LM_ARCH, 0)


@pytest.fixture(scope="module")
def cnn_context():
    return _context("resnet_cnn", "classification", CNN_ARCH, 10, CALIBRATION_IMAGES)


@pytest.fixture(scope="module")
def lm_flatbuffers(lm):
    """The LM converted once per quantization that keeps float activations."""
    context = _context("byte_transformer_lm", "language_modeling", LM_ARCH, 0, LM_IDS)
    return {q: TECHNIQUE.apply(lm, {"quantization": q}, context) for q in ("none", "dynamic_int8", "float16")}


def _relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    scale = float(np.abs(expected).max())
    assert scale > 0  # not a vacuous comparison of zeros
    return float(np.abs(actual - expected).max()) / scale


def test_fp32_cnn_matches_keras_in_batches(cnn, cnn_context):
    result = TECHNIQUE.apply(cnn, {}, cnn_context)
    assert (result.framework, result.runtime, result.devices) == ("tensorflow", "tflite", ("cpu",))
    assert isinstance(result.model, bytes)
    assert "from_keras_model" in result.notes and "quantization=none" in result.notes
    # batch_size 3 over 8 images: the interpreter is resized for the last, shorter batch
    outputs = predict_tflite(result.model, IMAGES, batch_size=3)
    expected = predict_keras(cnn, IMAGES)
    assert outputs.shape == expected.shape == (8, 10)
    np.testing.assert_allclose(outputs, expected, atol=1e-4)


def test_fp32_ngram_takes_int64_ids(ngram):
    context = _context("ngram_bag", "classification", NGRAM_ARCH, 4, NGRAM_IDS)
    flatbuffer = TECHNIQUE.apply(ngram, {"quantization": "none"}, context).model
    np.testing.assert_allclose(
        predict_tflite(flatbuffer, NGRAM_IDS), predict_keras(ngram, NGRAM_IDS), atol=1e-4
    )


def test_dynamic_int8_stores_int8_weights_at_a_quarter_of_the_bytes(lm, lm_flatbuffers):
    fp32, dynamic = lm_flatbuffers["none"].model, lm_flatbuffers["dynamic_int8"].model
    fp32_stats, dynamic_stats = tflite_tensor_stats(fp32), tflite_tensor_stats(dynamic)
    weight_ratio = dynamic_stats["weight_bytes"] / fp32_stats["weight_bytes"]
    assert 0.24 <= weight_ratio <= 0.27  # measured 0.254: int8 kernels, float32 biases and norms
    assert len(dynamic) < 0.35 * len(fp32)  # measured 0.324 of the file (the graph is not shrunk)
    assert dynamic_stats["parameters_by_dtype"]["int8"] > 0.99 * dynamic_stats["n_parameters"]
    assert "optimizations=[DEFAULT]" in lm_flatbuffers["dynamic_int8"].notes
    assert _relative_error(predict_tflite(dynamic, LM_IDS), predict_keras(lm, LM_IDS)) < 0.05


def test_float16_halves_the_weights(lm, lm_flatbuffers):
    fp32, half = lm_flatbuffers["none"].model, lm_flatbuffers["float16"].model
    fp32_stats, half_stats = tflite_tensor_stats(fp32), tflite_tensor_stats(half)
    assert half_stats["weight_bytes"] == fp32_stats["weight_bytes"] // 2
    assert set(half_stats["parameters_by_dtype"]) == {"float16"}
    assert 0.5 <= len(half) / len(fp32) < 0.56  # measured 0.533
    assert "supported_types=[float16]" in lm_flatbuffers["float16"].notes
    assert _relative_error(predict_tflite(half, LM_IDS), predict_keras(lm, LM_IDS)) < 0.005


@pytest.mark.parametrize("io_dtype", ["float32", "int8"])
def test_full_int8_calibrates_and_quantizes_weights_and_io(cnn, cnn_context, io_dtype):
    result = TECHNIQUE.apply(
        cnn, {"quantization": "full_int8", "representative_samples": 10, "io_dtype": io_dtype}, cnn_context
    )
    assert "representative_dataset=10 calibration inputs" in result.notes
    assert "supported_ops=[TFLITE_BUILTINS_INT8]" in result.notes
    stats = tflite_tensor_stats(result.model)
    # int8 kernels and int32 biases (quantized with the kernel's scale): no float weight is left
    assert set(stats["parameters_by_dtype"]) == {"int8", "int32"}
    assert stats["parameters_by_dtype"]["int8"] > 0.9 * stats["n_parameters"]
    tflite = interpreter(result.model)
    (source,), (target,) = tflite.get_input_details(), tflite.get_output_details()
    assert np.dtype(source["dtype"]) == np.dtype(io_dtype) == np.dtype(target["dtype"])
    # predict_tflite (de)quantizes int8 io itself, so both variants are called with floats
    assert _relative_error(predict_tflite(result.model, IMAGES), predict_keras(cnn, IMAGES)) < 0.1


def test_full_int8_keeps_integer_id_inputs(ngram):
    context = _context("ngram_bag", "classification", NGRAM_ARCH, 4, NGRAM_IDS)
    result = TECHNIQUE.apply(ngram, {"quantization": "full_int8", "representative_samples": 8}, context)
    (source,) = interpreter(result.model).get_input_details()
    assert np.dtype(source["dtype"]) == np.int32
    assert np.isfinite(predict_tflite(result.model, NGRAM_IDS)).all()


def test_int8_io_on_token_ids_is_not_applicable(ngram):
    context = _context("ngram_bag", "classification", NGRAM_ARCH, 4, NGRAM_IDS)
    with pytest.raises(NotApplicable, match="cannot be quantized"):
        TECHNIQUE.apply(ngram, {"quantization": "full_int8", "io_dtype": "int8"}, context)


def test_an_op_without_a_tflite_kernel_is_not_applicable_with_the_key_message():
    import tensorflow as tf
    import tf_keras

    inputs = tf_keras.Input((8,))
    x = tf_keras.layers.Lambda(tf.math.bessel_i1e, name="bessel")(inputs)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(3)(x))
    context = _context("toy", "classification", {}, 3, rng.random((4, 8)).astype(np.float32))
    with pytest.raises(NotApplicable) as caught:
        TECHNIQUE.apply(model, {}, context)
    message = str(caught.value)
    assert "'tf.BesselI1e' op is neither a custom op nor a flex op" in message
    assert len(message.splitlines()) == 1  # the reason, not the MLIR dump


def test_converter_reason_falls_back_to_the_first_line():
    assert converter_reason(RuntimeError("\n  something broke\nmore")) == "something broke"
    assert converter_reason(RuntimeError("loc(x): error: 'tfl.foo' op bad\nnote")) == "'tfl.foo' op bad"


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"quantisation": "float16"}, "quantisation"),
        ({"quantization": "int4"}, "quantization must be one of"),
        ({"quantization": "dynamic_int8", "io_dtype": "int8"}, "needs quantization full_int8"),
        ({"quantization": "full_int8", "io_dtype": "uint8"}, "io_dtype must be one of"),
        ({"quantization": "full_int8", "representative_samples": 0}, "at least 1"),
    ],
)
def test_bad_settings_are_config_errors(cnn, cnn_context, settings, match):
    with pytest.raises(ConfigError, match=match):
        TECHNIQUE.apply(cnn, settings, cnn_context)


def test_tensor_stats_count_exact_zeros_in_weights():
    import tf_keras

    inputs = tf_keras.Input((40,))
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(50)(inputs))
    kernel = rng.standard_normal((40, 50)).astype(np.float32)
    kernel.flat[rng.choice(kernel.size, 700, replace=False)] = 0.0
    bias = np.ones(50, dtype=np.float32)
    model.set_weights([kernel, bias])
    context = _context("toy", "classification", {}, 50, rng.random((4, 40)).astype(np.float32))

    stats = tflite_tensor_stats(TECHNIQUE.apply(model, {}, context).model)
    assert stats["n_parameters"] == 40 * 50 + 50
    assert stats["n_zeros"] == 700
    assert stats["sparsity"] == pytest.approx(700 / 2050)

    # dynamic range: a zero weight quantizes to exactly zero (symmetric, zero point 0)
    quantized = tflite_tensor_stats(TECHNIQUE.apply(model, {"quantization": "dynamic_int8"}, context).model)
    assert quantized["parameters_by_dtype"] == {"int8": 2000, "float32": 50}
    assert quantized["n_zeros"] >= 700
