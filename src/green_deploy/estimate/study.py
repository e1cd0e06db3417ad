"""Energy predicted for every variant of the study, and checked against what the study measured.

Each variant of the optimize pipeline's table is counted layer by layer (TFLite and ONNX Runtime
variants on the model they were converted from, at the widths their quantization sets: their
graphs are not parsed). Per variant and batch size: the theoretical model's energy (Horowitz 45 nm
table), the same calibrated per term to the study's measurements of the other models (leave one
model out, per batch size), and, when layer micro-benchmarks of a device are given, the learned
predictor's layer sum for that device. Predictions are compared with the evaluate pipeline's
J/inference; the comparison says whether that energy was measured or estimated.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from green_deploy.estimate.counts import ModelCount, UncoveredModelError, count_artifact, with_bits
from green_deploy.estimate.horowitz import OperationCosts
from green_deploy.estimate.predictor import LayerPredictor
from green_deploy.estimate.theoretical import FitErrors, apply_scales, errors, estimate_model, fit_scales
from green_deploy.optimize.artifacts import model_folder
from green_deploy.runtimes import get_runtime
from green_deploy.zoo.baselines import BASELINES

logger = logging.getLogger(__name__)

# Widths a converted graph's quantization sets: (weight, activation, compute) bits
QUANTIZED_BITS = {
    "none": (32, 32, 32),
    "float16": (16, 32, 32),  # fp16 weights, dequantized to fp32 for the arithmetic
    "dynamic_int8": (8, 32, 8),
    "static_int8": (8, 8, 8),
    "full_int8": (8, 8, 8),
}


def count_variant(
    row: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], example: np.ndarray
) -> ModelCount:
    """A variant's layer counts; a converted graph's are its source model's at the graph's widths."""
    runtime = str(row["runtime"])
    # A converted graph is counted on its source: its framework's baseline, in the source's runtime
    source_runtime = get_runtime(runtime).converted_from
    if source_runtime is None:
        return count_artifact(model_folder(row), runtime, example)
    baseline_id = BASELINES[get_runtime(source_runtime).framework].variant_id
    source = next(
        (r for r in rows if r["model_id"] == row["model_id"] and r["variant_id"] == baseline_id), None
    )
    if source is None:
        raise UncoveredModelError(
            f"{row['model_id']}/{row['variant_id']}: the {runtime} graph is not parsed; it is counted on its "
            f"{baseline_id}, which {row['model_id']} has not (a model given as a {runtime} file)"
        )
    steps = json.loads(str(row.get("steps") or "[]"))
    quantization = (steps[-1].get("settings") or {}).get("quantization", "none") if steps else "none"
    if quantization not in QUANTIZED_BITS:
        raise UncoveredModelError(f"{row['variant_id']}: quantization {quantization!r} has no known widths")
    count = count_artifact(model_folder(source), source_runtime, example)
    return with_bits(
        count,
        *QUANTIZED_BITS[quantization],
        note=f"counted on {baseline_id} (the {runtime} graph is not parsed) at the widths of {quantization}",
    )


def layer_rows(model_id: str, variant_id: str, count: ModelCount) -> list[dict[str, Any]]:
    """One row per layer: the operation counts table."""
    return [
        {
            "model_id": model_id,
            "variant_id": variant_id,
            "framework": count.framework,
            "layer": layer.name,
            "kind": layer.kind,
            "macs": layer.macs,
            "effective_macs": layer.effective_macs,
            "params": layer.params,
            "nonzero_params": layer.nonzero_params,
            "weight_bits": layer.weight_bits,
            "activation_bits": layer.activation_bits,
            "compute_bits": layer.compute_bits,
            "input_elems": layer.input_elems,
            "output_elems": layer.output_elems,
            "bytes_read": layer.bytes_read,
            "bytes_written": layer.bytes_written,
            "hyper": json.dumps(layer.hyper, default=str),
            "covered": layer.covered,
            "note": layer.note or count.note,
        }
        for layer in count.layers
    ]


@dataclass(frozen=True)
class Predictions:
    """Per variant and batch size: the predictions, the measurement, and the agreement."""

    table: pd.DataFrame
    theoretical: FitErrors  # calibrated, held out, against the study's figures
    per_model: pd.DataFrame
    measured: bool  # whether the study's energy was measured (else estimated: a smoke check)


def predict(
    counts: Mapping[tuple[str, str], ModelCount],
    results: pd.DataFrame,
    costs: OperationCosts,
    predictor: LayerPredictor | None = None,
    device: str = "",
) -> Predictions:
    """Predictions for every counted variant at each batch size the study measured it, beside the
    study's J/inference (``results``: the evaluate pipeline's table, one device)."""
    rows = []
    cells = results.groupby(["model_id", "variant_id", "batch_size"]).agg(
        measured_j=("energy_per_item_j", "median"), energy_measured=("energy_measured", "all")
    )
    estimates = {key: estimate_model(count.layers, costs) for key, count in counts.items()}
    for (model_id, variant_id, batch), cell in cells.iterrows():
        key = (model_id, variant_id)
        if key not in counts:
            continue
        count, estimate = counts[key], estimates[key]
        row = {
            "model_id": model_id,
            "variant_id": variant_id,
            "batch_size": int(batch),
            "macs": count.macs,
            "measured_j": float(cell.measured_j),
            "energy_measured": bool(cell.energy_measured),
            "theoretical_j": estimate.energy_j,
            "uncovered_layers": len(estimate.uncovered),
        }
        if predictor is not None:
            compute_bits = min((layer.compute_bits for layer in count.layers if layer.macs), default=32)
            learned = predictor.predict(count, int(batch), compute_bits)
            row[f"learned_{device or 'device'}_j"] = learned.energy_per_example_j if learned.covered else None
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return Predictions(table, errors([], []), pd.DataFrame(), False)
    calibrated: list[float | None] = []
    for _, row in table.iterrows():
        train = table[(table.model_id != row.model_id) & (table.batch_size == row.batch_size)]
        keys = list(zip(train.model_id, train.variant_id, strict=True))
        if len(train) < 4:
            calibrated.append(None)
            continue
        scales = fit_scales([estimates[k] for k in keys], list(train.measured_j))
        calibrated.append(apply_scales(estimates[(row.model_id, row.variant_id)], scales).energy_j)
    table["calibrated_j"] = calibrated
    fitted = table.dropna(subset=["calibrated_j"])
    table["calibrated_error_pct"] = 100 * (table.calibrated_j - table.measured_j) / table.measured_j
    per_model = (
        table.groupby("model_id")
        .calibrated_error_pct.agg(lambda v: float(np.nanmean(np.abs(v))))
        .rename("calibrated_abs_error_pct")
        .reset_index()
    )
    return Predictions(
        table,
        errors(list(fitted.calibrated_j), list(fitted.measured_j)),
        per_model,
        bool(table.energy_measured.all()),
    )
