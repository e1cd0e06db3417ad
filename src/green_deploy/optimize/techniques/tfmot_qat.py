"""Quantization-aware training with tensorflow-model-optimization, converted to an int8 TFLite model.

tfmot wraps each layer in fake quantization (int8 weights per channel, int8 activations with
ranges tracked during training), a short fine-tune lets the weights adapt to the rounding, and
the TFLite converter turns the fake-quantized graph into a flatbuffer with int8 kernels.

Which models: the whole model or nothing. Every layer that holds weights must be one tfmot's
default 8-bit scheme can quantize (Conv2D, DepthwiseConv2D, Dense, and BatchNormalization after a
convolution, which tfmot folds into it). Weight-free layers it does not know (the zoo's
``ScaleOffset`` preprocessing, for example) compute in float with their output quantized, so the
layer after them still gets int8 inputs. A model with Embedding, LayerNormalization,
MultiHeadAttention, LSTM or custom layers holding weights is not applicable, with those layers
named. Annotating only the supported layers of such models was tried on the zoo's text and
transformer models: the flatbuffers kept every weight in float32 (the converter makes a Dense
int8 only when its input is quantized, and the LayerNormalization or Embedding before it is not),
so there was no int8 model to call QAT.

Two departures from tfmot's defaults, both because the fine-tune is short (tens of steps):
activation ranges track the running min/max of the fine-tune batches (``track_min_max_ranges``)
instead of an exponential moving average from [-6, 6] that such a fine-tune barely moves, and
BatchNormalization is frozen on its inference statistics so those batches produce the
activations inference will. The fine-tune needs integer targets (classification and language
modelling), as tfmot_pruning's does.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from green_deploy.config import parse_settings
from green_deploy.optimize.base import NotApplicable, OptimizationContext, OptimizedModel
from green_deploy.optimize.keras_finetune import (
    check_finetune_settings,
    finetune_keras,
    freeze_batch_norm,
    require_labelled_finetune,
)
from green_deploy.optimize.techniques.tflite import converter_reason

logger = logging.getLogger(__name__)

_NEEDS_TRAINING = "quantization-aware training adapts weights and activation ranges only in training steps"


@dataclass(frozen=True)
class TfmotQatSettings:
    """``finetune_steps`` optimizer steps of ``batch_size`` examples with Adam at ``learning_rate``
    on the fake-quantized model. The default rate is ten times below tfmot_pruning's: QAT starts
    from a trained model and only nudges it to the rounding; on the zoo's EfficientNet-Lite0,
    1e-4 lost 3 to 5 points of accuracy in 50 steps where 1e-5 lost 1."""

    finetune_steps: int = 50
    learning_rate: float = 1e-5
    batch_size: int = 32


def parse_qat_settings(raw: Mapping[str, Any] | None) -> TfmotQatSettings:
    where = "technique 'tfmot_qat'"
    s = parse_settings(TfmotQatSettings, raw, where)
    check_finetune_settings(where, s.finetune_steps, s.learning_rate, s.batch_size)
    return s


def _first_line(error: BaseException) -> str:
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__


def _output_only_config_class() -> type:
    """A QuantizeConfig that quantizes a layer's output only (weight-free layers tfmot does not know)."""
    import tensorflow_model_optimization as tfmot

    keras_quantization = tfmot.quantization.keras

    class OutputOnlyQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
        def get_weights_and_quantizers(self, layer: Any) -> list[Any]:
            return []

        def get_activations_and_quantizers(self, layer: Any) -> list[Any]:
            return []

        def set_quantize_weights(self, layer: Any, quantize_weights: Any) -> None:
            pass

        def set_quantize_activations(self, layer: Any, quantize_activations: Any) -> None:
            pass

        def get_output_quantizers(self, layer: Any) -> list[Any]:
            return [
                keras_quantization.quantizers.AllValuesQuantizer(
                    num_bits=8, per_axis=False, symmetric=False, narrow_range=False
                )
            ]

        def get_config(self) -> dict[str, Any]:
            return {}

    return OutputOnlyQuantizeConfig


def quantize_for_training(model: Any) -> tuple[Any, list[str]]:
    """The fake-quantized training model of ``model`` (tfmot's ``quantize_apply``, which copies the
    weights), and the names of the weight-free layers left computing in float.

    Layers of tfmot's default 8-bit scheme (and BatchNormalization, folded by its layout
    transforms) are annotated with their default configs; weight-free layers with float outputs
    that the scheme does not know get their output quantized.

    Raises:
        NotApplicable: a layer holding weights cannot be quantized, or quantize_apply fails.
    """
    import tensorflow_model_optimization as tfmot
    import tf_keras

    keras_quantization = tfmot.quantization.keras
    registry = keras_quantization.default_8bit.Default8BitQuantizeRegistry()

    def in_scheme(layer: Any) -> bool:
        return registry.supports(layer) or type(layer) is tf_keras.layers.BatchNormalization

    layers = [layer for layer in model.layers if not isinstance(layer, tf_keras.layers.InputLayer)]
    unsupported = [layer for layer in layers if not in_scheme(layer)]
    with_weights = [f"{layer.name} ({type(layer).__name__})" for layer in unsupported if layer.weights]
    if with_weights:
        more = f" and {len(with_weights) - 4} more" if len(with_weights) > 4 else ""
        raise NotApplicable(
            "tfmot's default 8-bit QAT cannot quantize layers that hold weights: "
            f"{', '.join(with_weights[:4])}{more}; quantizing only the rest leaves their weights in float"
        )
    output_only = _output_only_config_class()

    def float_output(layer: Any) -> bool:
        try:
            output = layer.output
        except AttributeError:  # a layer called more than once has no single output
            return False
        return not isinstance(output, list | tuple) and output.dtype.is_floating

    def annotate(layer: Any) -> Any:
        if in_scheme(layer):
            return keras_quantization.quantize_annotate_layer(layer)
        if float_output(layer):
            return keras_quantization.quantize_annotate_layer(layer, quantize_config=output_only())
        return layer

    try:
        annotated = tf_keras.models.clone_model(model, clone_function=annotate)
        with keras_quantization.quantize_scope({output_only.__name__: output_only}):
            qat_model = keras_quantization.quantize_apply(annotated)
    except (RuntimeError, TypeError, ValueError) as error:
        raise NotApplicable(f"tfmot quantize_apply failed: {_first_line(error)}") from error
    return qat_model, [layer.name for layer in unsupported]


def track_min_max_ranges(qat_model: Any) -> int:
    """Makes every activation and output quantizer of ``qat_model`` that averages (tfmot's
    ``MovingAverageQuantizer``) track the running min/max of what it sees from an empty range
    instead (``AllValuesQuantizer``, which tfmot itself uses for model inputs); the number of
    quantizers switched.

    Why: the moving average (decay 0.999) moves 1 - 0.999**50, about 5%, of the way from [-6, 6]
    in a 50-step fine-tune, so every activation range would stay near [-6, 6], clipping larger
    values and spending most of the 256 levels on values that never occur. Running min/max is what
    TFLite's own post-training calibration records. tfmot 0.8 has no public way to choose the
    quantizers its layout transforms create, so this replaces them in the built wrappers
    (``_quantize_activations``, ``_output_quantizers``).
    """
    import tensorflow_model_optimization as tfmot

    quantizers = tfmot.quantization.keras.quantizers

    def all_values(quantizer: Any) -> Any:
        return quantizers.AllValuesQuantizer(
            num_bits=quantizer.num_bits,
            per_axis=quantizer.per_axis,
            symmetric=quantizer.symmetric,
            narrow_range=quantizer.narrow_range,
        )

    def reset(range_vars: dict[str, Any] | None) -> None:
        if range_vars:
            range_vars["min_var"].assign(0.0)
            range_vars["max_var"].assign(0.0)

    switched = 0
    for layer in qat_model.layers:
        if not isinstance(layer, tfmot.quantization.keras.QuantizeWrapper):
            continue
        for activation in layer._quantize_activations:
            if type(activation.quantizer) is quantizers.MovingAverageQuantizer:
                activation.quantizer = all_values(activation.quantizer)
                reset(getattr(activation, "_pre_activation_vars", None))
                reset(getattr(activation, "_post_activation_vars", None))
                switched += 1
        outputs = layer._output_quantizers
        if outputs and type(outputs[0]) is quantizers.MovingAverageQuantizer:
            layer._output_quantizers = [all_values(outputs[0])]
            reset(layer._output_quantizer_vars)
            switched += 1
    return switched


class TfmotQuantizationAwareTraining:
    """tfmot QAT on a clone of the model, a short fine-tune, then an int8 TFLite flatbuffer."""

    name = "tfmot_qat"
    framework = "tensorflow"

    def apply(self, model: Any, settings: Mapping[str, Any], context: OptimizationContext) -> OptimizedModel:
        s = parse_qat_settings(settings)
        require_labelled_finetune(context, _NEEDS_TRAINING)

        import tensorflow as tf
        import tf_keras

        from green_deploy.runtimes.tflite import tflite_tensor_stats

        # A clone with copied weights: freezing and fitting never touch the baseline.
        clone = tf_keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        # Frozen, BatchNormalization runs on its moving statistics in training steps too, so the
        # activation ranges recorded there are the ones inference will see.
        frozen = freeze_batch_norm(clone)
        qat_model, float_layers = quantize_for_training(clone)
        n_ranges = track_min_max_ranges(qat_model)
        final_loss = finetune_keras(qat_model, context, s.finetune_steps, s.learning_rate, s.batch_size)

        converter = tf.lite.TFLiteConverter.from_keras_model(qat_model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        try:
            with warnings.catch_warnings():
                # The QAT graph carries its own input range (tfmot's QuantizeLayer); the converter
                # still warns that no input statistics were given.
                warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
                flatbuffer = converter.convert()
        except Exception as error:  # ConverterError and friends: an op it cannot map
            reason = converter_reason(error)
            logger.info("%s: TFLite conversion of the QAT model failed: %s", context.model_id, reason)
            raise NotApplicable(f"TFLite converter (QAT int8) failed: {reason}") from error

        stats = tflite_tensor_stats(flatbuffer)
        int8_parameters = stats["parameters_by_dtype"].get("int8", 0)
        if int8_parameters == 0:
            raise NotApplicable("the TFLite converter kept every weight of the QAT model in float")
        int8_fraction = int8_parameters / stats["n_parameters"]
        logger.info(
            "%s: QAT int8 flatbuffer of %d bytes, %.1f%% of its weights int8 (loss %.4f after %d steps)",
            context.model_id,
            len(flatbuffer),
            100 * int8_fraction,
            final_loss,
            s.finetune_steps,
        )
        in_float = f"; computed in float, output quantized: {', '.join(float_layers)}" if float_layers else ""
        return OptimizedModel(
            framework="tensorflow",
            runtime="tflite",
            model=flatbuffer,
            devices=("cpu",),
            notes=(
                "tfmot.quantization.keras: quantize_annotate_layer (default 8-bit scheme) + "
                f"quantize_apply{in_float}; activation ranges as running min/max (AllValuesQuantizer "
                f"on {n_ranges} quantizers, not the moving average from [-6, 6]); {frozen} "
                f"BatchNormalization layers frozen; {s.finetune_steps} fine-tune steps (Adam "
                f"lr={s.learning_rate}, batch {s.batch_size}, sparse CE on logits); "
                "TFLiteConverter.from_keras_model, optimizations=[DEFAULT]: int8 weights and activations "
                f"({int8_fraction:.1%} of the stored weights int8, biases int32), float32 inputs/outputs"
            ),
            extra={
                "finetune_steps": s.finetune_steps,
                "final_loss": final_loss,
                "float_layers": float_layers,
                "min_max_range_quantizers": n_ranges,
                "frozen_batch_norms": frozen,
                "flatbuffer_bytes": len(flatbuffer),
                "int8_parameter_fraction": int8_fraction,
                "parameters_by_dtype": stats["parameters_by_dtype"],
            },
        )


TECHNIQUE = TfmotQuantizationAwareTraining()
