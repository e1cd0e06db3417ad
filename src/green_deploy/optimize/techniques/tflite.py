"""TFLite conversion of a Keras model, in fp32 or with one of TFLite's post-training quantizations.

The converter is TensorFlow's own ``TFLiteConverter.from_keras_model``; the result is the
flatbuffer bytes that a device would ship, run with ``green_deploy.runtimes.tflite``.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from green_deploy.config import parse_settings
from green_deploy.errors import ConfigError
from green_deploy.optimize.base import NotApplicable, OptimizationContext, OptimizedModel, first_line
from green_deploy.zoo.families.base import to_keras_layout

logger = logging.getLogger(__name__)

QUANTIZATIONS = ("none", "dynamic_int8", "float16", "full_int8")
IO_DTYPES = ("float32", "int8")


@dataclass(frozen=True)
class TFLiteSettings:
    """``quantization``: none (fp32), dynamic_int8 (int8 weights, float activations), float16
    (fp16 weights) or full_int8 (int8 weights and activations, calibrated on
    ``representative_samples`` validation inputs); ``io_dtype`` (full_int8 only) keeps float32
    model inputs/outputs or makes them int8."""

    quantization: str = "none"
    representative_samples: int = 100
    io_dtype: str = "float32"


def parse_tflite_settings(raw: Mapping[str, Any] | None) -> TFLiteSettings:
    settings = parse_settings(TFLiteSettings, raw, "technique 'tflite'")
    if settings.quantization not in QUANTIZATIONS:
        raise ConfigError(
            f"technique 'tflite': quantization must be one of {list(QUANTIZATIONS)}, "
            f"got {settings.quantization!r}"
        )
    if settings.io_dtype not in IO_DTYPES:
        raise ConfigError(
            f"technique 'tflite': io_dtype must be one of {list(IO_DTYPES)}, got {settings.io_dtype!r}"
        )
    if settings.io_dtype != "float32" and settings.quantization != "full_int8":
        raise ConfigError(
            "technique 'tflite': io_dtype int8 needs quantization full_int8 "
            f"(got quantization {settings.quantization!r})"
        )
    if settings.representative_samples < 1:
        raise ConfigError(
            "technique 'tflite': representative_samples must be at least 1, "
            f"got {settings.representative_samples}"
        )
    return settings


# MLIR diagnostics look like "<loc>: error: 'tfl.x' op ..."; the text after "error:" is the reason.
_ERROR_LINE = re.compile(r"error:\s*(?P<reason>.+)")


def converter_reason(error: BaseException) -> str:
    """The converter's key message: the first MLIR ``error:`` line, else its first non-empty line."""
    for line in str(error).splitlines():
        match = _ERROR_LINE.search(line)
        if match:
            return match.group("reason").strip()
    return first_line(error)


def _representative_inputs(calibration_x: np.ndarray, n: int, dtype: np.dtype) -> np.ndarray:
    """``n`` calibration inputs spread evenly over the array (which may be sorted by class), in
    Keras layout and the model's input dtype."""
    count = min(n, len(calibration_x))
    indices = np.unique(np.linspace(0, len(calibration_x) - 1, count).round().astype(int))
    return to_keras_layout(np.asarray(calibration_x[indices])).astype(dtype)


class TFLiteConversion:
    """Keras model to a TFLite flatbuffer, optionally quantized after training."""

    name = "tflite"
    framework = "tensorflow"

    def apply(self, model: Any, settings: Mapping[str, Any], context: OptimizationContext) -> OptimizedModel:
        import tensorflow as tf

        s = parse_tflite_settings(settings)
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        options: list[str] = [f"quantization={s.quantization}"]
        if s.quantization in ("dynamic_int8", "float16", "full_int8"):
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            options.append("optimizations=[DEFAULT]")
        if s.quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
            options.append("supported_types=[float16]")
        if s.quantization == "full_int8":
            options += self._configure_full_int8(converter, model, s, context)

        try:
            with warnings.catch_warnings():
                # full int8 with float io warns that no input statistics were given; the
                # representative dataset supplies them, so the warning is noise.
                warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
                flatbuffer = converter.convert()
        except Exception as error:  # ConverterError and friends: the model has an op it cannot map
            reason = converter_reason(error)
            logger.info("%s: TFLite %s conversion failed: %s", context.model_id, s.quantization, reason)
            raise NotApplicable(f"TFLite converter ({s.quantization}) failed: {reason}") from error

        logger.info("%s: TFLite %s flatbuffer of %d bytes", context.model_id, s.quantization, len(flatbuffer))
        return OptimizedModel(
            framework="tensorflow",
            runtime="tflite",
            model=flatbuffer,
            devices=("cpu",),
            notes="tf.lite.TFLiteConverter.from_keras_model; " + "; ".join(options),
            extra={"quantization": s.quantization, "flatbuffer_bytes": len(flatbuffer)},
        )

    def _configure_full_int8(
        self, converter: Any, model: Any, s: TFLiteSettings, context: OptimizationContext
    ) -> list[str]:
        """Sets the representative dataset and int8-only ops; returns the options for the notes."""
        import tensorflow as tf

        if len(model.inputs) != 1:
            raise NotApplicable(
                f"full int8 calibration here feeds one input; the model has {len(model.inputs)}"
            )
        input_dtype = np.dtype(model.inputs[0].dtype.as_numpy_dtype)
        integer_inputs = np.issubdtype(input_dtype, np.integer)
        if integer_inputs and s.io_dtype == "int8":
            raise NotApplicable(
                f"io_dtype int8 on a model with integer ({input_dtype.name}) token-id inputs: ids are "
                "indices, not values on a scale, so they cannot be quantized"
            )
        if len(context.calibration_x) == 0:
            raise NotApplicable("full int8 needs calibration inputs and calibration_x is empty")
        samples = _representative_inputs(context.calibration_x, s.representative_samples, input_dtype)

        def representative_dataset() -> Iterator[list[np.ndarray]]:
            for index in range(len(samples)):
                yield [samples[index : index + 1]]

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        options = [
            f"representative_dataset={len(samples)} calibration inputs",
            "supported_ops=[TFLITE_BUILTINS_INT8]",
        ]
        if s.io_dtype == "int8":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
            options.append("inference_input_type=inference_output_type=int8")
        else:
            options.append(
                "float32 inputs/outputs" if not integer_inputs else "integer id inputs, float32 outputs"
            )
        return options


TECHNIQUE = TFLiteConversion()
