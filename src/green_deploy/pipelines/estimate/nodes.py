"""Estimate nodes: thin calls into ``green_deploy.estimate``."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from green_deploy.config import check_keys
from green_deploy.errors import ConfigError
from green_deploy.estimate.counts import ModelCount, UncoveredModelError, example_input
from green_deploy.estimate.horowitz import costs_from_config
from green_deploy.estimate.study import count_variant, layer_rows, predict
from green_deploy.evaluate.summary import markdown_table

logger = logging.getLogger(__name__)


def count_variants(
    variants: pd.DataFrame, zoo: dict[str, Any]
) -> tuple[pd.DataFrame, dict[tuple[str, str], ModelCount]]:
    """Every ok variant counted layer by layer; the counts table, and the counts by variant for
    the next node (the ones that cannot be counted are logged with the reason)."""
    rows = variants.to_dict("records")
    usable = [r for r in rows if r.get("status") == "ok"]
    if not usable:
        raise ConfigError("the variants table has no ok variant: run `kedro run --pipeline=optimize` first")
    examples: dict[str, Any] = {}
    counts, table = {}, []
    for row in usable:
        model_id = str(row["model_id"])
        if model_id not in examples:
            examples[model_id] = example_input(zoo, model_id)
        try:
            count = count_variant(row, rows, examples[model_id])
        except UncoveredModelError as why:
            logger.warning("%s/%s: not counted: %s", model_id, row["variant_id"], why)
            continue
        counts[(model_id, str(row["variant_id"]))] = count
        table += layer_rows(model_id, str(row["variant_id"]), count)
    return pd.DataFrame(table), counts


def estimate_energy(
    counts: dict[Any, Any], results: pd.DataFrame, estimate: dict[str, Any]
) -> tuple[pd.DataFrame, str, dict[str, Any]]:
    """Predictions beside the study's measurements, the summary, and the agreement as metrics."""
    estimate = check_keys("estimate", estimate, ("costs", "layer_benchmarks", "device_label"))
    if results.empty:
        raise ConfigError("the results table is empty: run `kedro run --pipeline=evaluate` first")
    costs = costs_from_config(estimate.get("costs"))
    predictor, device = None, ""
    benchmarks = estimate.get("layer_benchmarks") or []
    if benchmarks:
        from green_deploy.estimate.benchmarks import load_predictor

        predictor, meta = load_predictor(benchmarks)
        device = str(estimate.get("device_label") or meta.get("device", "device")).replace(" ", "_")
    predictions = predict(counts, results, costs, predictor, device)
    fit = predictions.theoretical
    provenance = "measured" if predictions.measured else "ESTIMATED (no hardware meter): a smoke check only"
    lines = [
        "# Energy predicted before running",
        "",
        f"{len(counts)} variants counted layer by layer; {len(predictions.table)} cells of the study compared.",
        f"The study's energy is {provenance}.",
        "",
        f"Theoretical model (Horowitz 45 nm), calibrated per term on the other models (per batch size): "
        f"MAPE {fit.mape_percent:.1f}%, R² {fit.r2:.3f} over {fit.n} cells.",
    ]
    if predictor is not None:
        lines.append(
            f"Learned layer-wise predictor for {device} (from {', '.join(map(str, benchmarks))}): predicted J/inference "
            f"in column learned_{device}_j; it is checked against that device's counter in bench/results/estimate.md."
        )
    lines += [
        "",
        "## Per model (held-out calibrated |error| %)",
        "",
        markdown_table(predictions.per_model),
        "",
    ]
    metrics = {
        "estimate.theoretical_calibrated_mape_pct": {"value": fit.mape_percent, "step": 0},
        "estimate.theoretical_calibrated_r2": {"value": fit.r2, "step": 0},
    }
    metrics = {k: v for k, v in metrics.items() if v["value"] == v["value"]}  # NaN is not a metric
    return predictions.table, "\n".join(lines), metrics
