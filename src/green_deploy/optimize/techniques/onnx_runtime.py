"""PyTorch model to ONNX, run in ONNX Runtime, in fp32 or with ONNX Runtime's own int8 quantization.

Exporter choice (measured here, torch 2.13 CPU, onnxscript 0.7, on the nine zoo models):
``torch.onnx.export(dynamo=True)`` (``torch.export`` graph translated by onnxscript, the
default and maintained path since torch 2.9) exported all nine, while the TorchScript exporter
(``dynamo=False``, deprecated) failed on three: ``EmbeddingBag`` with ``padding_idx`` (both
n-gram bags) and ``upsample_nearest_exact2d`` (EfficientNet-Lite). Where both export, outputs
agree equally well, so this technique uses dynamo only.

Quantization uses ``onnxruntime.quantization`` on the exported graph, after its pre-processing
(``quant_pre_process``: symbolic shape inference and graph clean-up, which the quantizer needs
to place quantize nodes; when symbolic inference fails, as on the n-gram bag's loop, it is
retried without it, and then skipped, all noted in ``extra``):

- ``dynamic_int8``: ``quantize_dynamic``, int8 weights and activations quantized per batch at
  run time (MatMulInteger, ConvInteger, DynamicQuantizeLSTM, int8 embedding tables). ORT's
  default op set; no calibration.
- ``static_int8``: ``quantize_static`` in QDQ format with MinMax calibration on
  ``context.calibration_x`` (validation inputs), int8 activations and weights, weights per
  channel by default, on the ops that carry weights and the activations ORT fuses into them
  (``STATIC_OP_TYPES``). ORT's own default also quantizes element-wise ops (Add, Mul, Where,
  Softmax), and then the attention mask (-inf or float32 min, added to the scores) gets an int8
  scale that wipes out the scores: measured on the zoo's real validation data, the causal byte
  LM fell from 0.684 to 0.259 next-byte accuracy and MiniLM-fortunes from 0.634 to 0.313
  accuracy, while the weight-op set gave 0.680 and 0.617 and matched ORT's default on the CNNs
  and the ViT (ResNet 0.906 vs 0.908, EfficientNet-Lite 0.867 vs 0.867, ViT 0.857 vs 0.857).
  ORT's QDQ op set has no LSTM, so a byte LSTM keeps its recurrent weights in float32
  (``extra["int8_parameter_fraction"]`` says how much was quantized).

Measured through the optimize runner on the nine zoo models (check half of the validation split,
512 examples; this CPU): every model exports and quantizes in both modes. fp32 gives the PyTorch
metric exactly; int8 files are 25-38% of fp32 (the small models carry the most graph overhead;
static int8 on the byte LSTM 92%, its LSTM stays float). Static int8 is within 0.017 of the
baseline everywhere (MiniLM-fortunes -0.017, others within 0.008). Dynamic int8 is within 0.004
except EfficientNet-Lite (0.875 -> 0.748; ConvInteger quantizes each activation per tensor at
run time, probably too coarse for its depthwise convolutions, not investigated further) and
MiniLM code search (MRR 0.845 -> 0.810); ORT's documentation, too, recommends static
quantization for CNNs.

The result is the ``.onnx`` bytes a deployment would ship; ``devices`` is ``("cpu",)`` for
every mode because the installed ``onnxruntime`` package has the CPU execution provider only.
The quantized model is run once on calibration inputs before it is returned, so a graph ORT
cannot load or run (no kernel for a dtype or op) is not applicable, with ORT's reason.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from green_deploy.config import parse_settings
from green_deploy.errors import ConfigError
from green_deploy.optimize.base import Framework, NotApplicable, OptimizationContext, OptimizedModel

logger = logging.getLogger(__name__)

QUANTIZATIONS = ("none", "dynamic_int8", "static_int8")
# Ops static_int8 quantizes by default: those with weights, and the activations ORT fuses into
# them (QLinearConv with a clipped output); see the module docstring for why not ORT's default.
STATIC_OP_TYPES = ("Conv", "MatMul", "Gemm", "Gather", "Clip", "Relu")
MIN_OPSET = 13  # per-channel QDQ (DequantizeLinear's axis) needs opset 13
CALIBRATION_BATCH = 32  # rows per calibration run: fewer ORT calls, same min/max statistics


@dataclass(frozen=True)
class OnnxSettings:
    """``quantization``: none (fp32), dynamic_int8 or static_int8 (see the module docstring);
    ``opset``: ai.onnx opset of the export, ``None`` for the exporter's default;
    ``calibration_samples``: validation inputs static_int8 calibrates on; ``per_channel``:
    one weight scale per output channel (static_int8 and dynamic_int8); ``op_types``: the ONNX op
    types to quantize, empty for the default (``STATIC_OP_TYPES`` for static_int8, ORT's
    default integer op set for dynamic_int8)."""

    quantization: str = "none"
    opset: int | None = None
    calibration_samples: int = 256
    per_channel: bool = True
    op_types: tuple[str, ...] = ()


def parse_onnx_settings(raw: Mapping[str, Any] | None) -> OnnxSettings:
    import onnx

    settings = parse_settings(OnnxSettings, raw, "technique 'onnx'")
    if settings.quantization not in QUANTIZATIONS:
        raise ConfigError(
            f"technique 'onnx': quantization must be one of {list(QUANTIZATIONS)}, "
            f"got {settings.quantization!r}"
        )
    newest = onnx.defs.onnx_opset_version()
    if settings.opset is not None and not MIN_OPSET <= settings.opset <= newest:
        raise ConfigError(
            f"technique 'onnx': opset must be between {MIN_OPSET} and {newest} (or null for the "
            f"exporter's default), got {settings.opset}"
        )
    if settings.calibration_samples < 1:
        raise ConfigError(
            f"technique 'onnx': calibration_samples must be at least 1, got {settings.calibration_samples}"
        )
    if settings.op_types:
        if settings.quantization == "none":
            raise ConfigError("technique 'onnx': op_types needs quantization dynamic_int8 or static_int8")
        known = _quantizable_op_types(settings.quantization)
        unknown = sorted(set(settings.op_types) - known)
        if unknown:
            raise ConfigError(
                f"technique 'onnx': {settings.quantization} cannot quantize op types {unknown}; "
                f"ONNX Runtime knows {sorted(known)}"
            )
    return settings


def _quantizable_op_types(quantization: str) -> set[str]:
    from onnxruntime.quantization.registry import IntegerOpsRegistry, QDQRegistry, QLinearOpsRegistry

    if quantization == "dynamic_int8":
        return set(IntegerOpsRegistry)
    return set(QDQRegistry) | set(QLinearOpsRegistry)


def _spread(calibration_x: np.ndarray, n: int) -> np.ndarray:
    """``n`` rows spread evenly over the array (which may be sorted by class)."""
    count = min(n, len(calibration_x))
    indices = np.unique(np.linspace(0, len(calibration_x) - 1, count).round().astype(int))
    return np.asarray(calibration_x[indices])


class _QuietQuantizer(logging.Filter):
    """Moves ORT's quantization warnings (logged on the root logger, e.g. "Please consider
    pre-processing" after a failed pre-processing, or "Axis 1 is out-of-range" for every
    LayerNorm weight under per-channel) to this module's debug log, so they do not flood the run's
    log; the pre-processing outcome is in the notes anyway."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "onnxruntime" in record.pathname and "quantization" in record.pathname:
            logger.debug("onnxruntime.quantization: %s", record.getMessage())
            return False
        return True


class OnnxRuntimeConversion:
    """``nn.Module`` to ONNX bytes for ONNX Runtime, optionally int8-quantized by ONNX Runtime."""

    name = "onnx"
    framework = "torch"

    def settings(self, raw: Mapping[str, Any] | None) -> OnnxSettings:
        return parse_onnx_settings(raw)

    def apply(self, model: Any, settings: Mapping[str, Any], context: OptimizationContext) -> OptimizedModel:
        """A PyTorch module is exported first; an ONNX graph (a user's own, framework ``onnx``) is
        quantized as it is."""
        from green_deploy.optimize.onnx_export import first_line

        s = self.settings(settings)
        if len(context.calibration_x) == 0:
            raise NotApplicable(
                "ONNX export and calibration run the model on inputs, and calibration_x is empty"
            )
        extra: dict[str, Any] = {"quantization": s.quantization}
        if isinstance(model, bytes):
            framework: Framework = "onnx"
            exported = model
            notes = [f"the given ONNX graph (opset {_opset(exported)})"]
        else:
            framework = "torch"
            exported, extra["export_s"] = self._export(model, s, context)
            notes = [f"torch.onnx.export(dynamo=True, opset {_opset(exported)}), dynamic batch axis"]
        model_bytes = exported
        if s.quantization != "none":
            try:
                model_bytes, quantize_notes, quantize_extra = self._quantize(exported, s, context)
            except Exception as error:  # the quantizer raises bare errors on ops it cannot handle
                reason = first_line(error)
                logger.info("%s: ONNX Runtime %s failed: %s", context.model_id, s.quantization, reason)
                raise NotApplicable(
                    f"onnxruntime.quantization ({s.quantization}) failed: {reason}"
                ) from error
            notes += quantize_notes
            extra.update(quantize_extra)
        self._check_runs(model_bytes, context, s.quantization)
        extra["onnx_bytes"] = len(model_bytes)
        extra["exported_onnx_bytes"] = len(exported)
        notes.append("CPUExecutionProvider (the installed onnxruntime has no GPU provider)")
        logger.info(
            "%s: ONNX %s model of %d bytes (from %d bytes)",
            context.model_id,
            s.quantization,
            len(model_bytes),
            len(exported),
        )
        return OptimizedModel(
            framework=framework,
            runtime="onnxruntime",
            model=model_bytes,
            devices=("cpu",),
            notes="; ".join(notes),
            extra=extra,
        )

    def _export(self, model: Any, s: OnnxSettings, context: OptimizationContext) -> tuple[bytes, float]:
        """The module's ONNX graph and the seconds exporting took."""
        from torch import nn

        from green_deploy.optimize.onnx_export import ExportError, export_onnx

        if not isinstance(model, nn.Module):
            raise NotApplicable(f"ONNX export takes a PyTorch nn.Module, got {type(model).__name__}")
        if s.quantization != "none":
            dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
            if any(str(d) != "torch.float32" for d in dtypes):
                raise NotApplicable(
                    f"ONNX Runtime int8 quantization starts from float32 weights; this model's are "
                    f"{sorted(str(d).removeprefix('torch.') for d in dtypes)}"
                )
        start_s = time.perf_counter()
        try:
            exported = export_onnx(model, np.asarray(context.calibration_x[:2]), s.opset)
        except ExportError as error:
            logger.info("%s: ONNX export failed: %s", context.model_id, error)
            raise NotApplicable(f"torch.onnx.export (dynamo) failed: {error}") from error
        return exported, time.perf_counter() - start_s

    def _quantize(
        self, exported: bytes, s: OnnxSettings, context: OptimizationContext
    ) -> tuple[bytes, list[str], dict[str, Any]]:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

        from green_deploy.runtimes.onnxruntime import onnx_tensor_stats

        quiet = _QuietQuantizer()
        root = logging.getLogger()
        with tempfile.TemporaryDirectory(prefix="onnx_quant_") as tmp:
            folder = Path(tmp)
            (folder / "exported.onnx").write_bytes(exported)
            root.addFilter(quiet)
            for handler in root.handlers:
                handler.addFilter(quiet)
            try:
                source, preprocess = _preprocess(folder / "exported.onnx", folder / "preprocessed.onnx")
                target = folder / "quantized.onnx"
                if s.quantization == "dynamic_int8":
                    op_types = list(s.op_types) or None  # None: ORT's integer op set
                    quantize_dynamic(
                        source,
                        target,
                        op_types_to_quantize=op_types,
                        per_channel=s.per_channel,
                        weight_type=QuantType.QInt8,
                    )
                    notes = [
                        "onnxruntime.quantization.quantize_dynamic(int8 weights, activations quantized "
                        f"per batch at run time, per_channel={s.per_channel}, "
                        f"op types {op_types or 'ORT default'}): no calibration needed"
                    ]
                    extra: dict[str, Any] = {}
                else:
                    samples = _spread(context.calibration_x, s.calibration_samples)
                    op_types = list(s.op_types or STATIC_OP_TYPES)
                    quantize_static(
                        source,
                        target,
                        _CalibrationReader(samples, *_graph_input(exported)),
                        quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=op_types,
                        per_channel=s.per_channel,
                        activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8,
                    )
                    notes = [
                        "onnxruntime.quantization.quantize_static(QDQ, int8 activations and weights, "
                        f"per_channel={s.per_channel}, op types {op_types}, MinMax calibration on "
                        f"{len(samples)} validation inputs): ORT fuses QDQ pairs into integer kernels "
                        "when it loads the model"
                    ]
                    extra = {"calibration_samples": len(samples)}
                quantized = target.read_bytes()
            finally:
                root.removeFilter(quiet)
                for handler in root.handlers:
                    handler.removeFilter(quiet)
        stats = onnx_tensor_stats(quantized)
        by_dtype = stats["parameters_by_dtype"]
        int8 = sum(n for dtype, n in by_dtype.items() if dtype in ("int8", "uint8"))
        fraction = int8 / stats["n_parameters"] if stats["n_parameters"] else 0.0
        notes.append(f"quant_pre_process: {preprocess}")
        notes.append(f"{100 * fraction:.0f}% of parameters stored in 8 bits")
        extra.update({"preprocess": preprocess, "int8_parameter_fraction": fraction})
        return quantized, notes, extra

    def _check_runs(self, model_bytes: bytes, context: OptimizationContext, quantization: str) -> None:
        """Loads and runs the model on two calibration inputs; NotApplicable when ORT cannot."""
        from green_deploy.optimize.onnx_export import first_line
        from green_deploy.runtimes.onnxruntime import predict_onnx

        try:
            outputs = predict_onnx(model_bytes, np.asarray(context.calibration_x[:2]))
        except Exception as error:  # onnxruntime raises its own Fail/NotImplemented/InvalidGraph types
            reason = first_line(error)
            raise NotApplicable(f"onnxruntime cannot run the {quantization} model: {reason}") from error
        if not np.isfinite(outputs).all():
            raise NotApplicable(f"the {quantization} ONNX model gives non-finite outputs")


class _CalibrationReader:
    """ORT's ``CalibrationDataReader`` protocol over calibration rows, ``CALIBRATION_BATCH`` at a time."""

    def __init__(self, samples: np.ndarray, input_name: str, dtype: Any):
        self._samples = samples
        self._input_name = input_name
        self._dtype = dtype
        self._batches = self._iterate()

    def _iterate(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self._samples), CALIBRATION_BATCH):
            yield {self._input_name: self._samples[start : start + CALIBRATION_BATCH].astype(self._dtype)}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:
        self._batches = self._iterate()


def _preprocess(source: Path, target: Path) -> tuple[Path, str]:
    """``quant_pre_process`` with symbolic shape inference, else without it, else none at all;
    the model to quantize and what was done."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from green_deploy.optimize.onnx_export import first_line

    try:
        quant_pre_process(str(source), str(target))
        return target, "symbolic shape inference and graph optimisation"
    except Exception as error:  # symbolic inference raises KeyError etc. on ops it cannot follow
        first = first_line(error)
    try:
        quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
        return (
            target,
            f"ONNX shape inference and graph optimisation (symbolic shape inference failed: {first})",
        )
    except Exception as error:
        return source, f"skipped (failed: {first_line(error)})"


def _graph_input(model_bytes: bytes) -> tuple[str, Any]:
    """The name and numpy dtype of the graph's input (the exporter's ``x``, or a user's own)."""
    from green_deploy.zoo.inference import ORT_DTYPES, onnx_session

    graph_input = onnx_session(model_bytes, None).get_inputs()[0]
    return str(graph_input.name), ORT_DTYPES.get(graph_input.type, np.float32)


def _opset(model_bytes: bytes) -> int | None:
    import onnx

    model = onnx.load_from_string(model_bytes)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


TECHNIQUE = OnnxRuntimeConversion()
