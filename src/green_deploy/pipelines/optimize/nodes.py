"""Optimize nodes: thin calls into ``green_deploy.optimize``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from green_deploy.config import check_keys, parse_settings
from green_deploy.energy import EnergyMonitor, discover_sources
from green_deploy.errors import ConfigError
from green_deploy.optimize.runner import RunSettings, optimize_model
from green_deploy.optimize.spec import (
    OPTIMIZE_KEYS,
    VariantSpec,
    parse_variants,
    planned_variants,
    select_variants,
)
from green_deploy.zoo.spec import configured_models, dataset_settings, select_entry


def optimize_zoo_model(
    zoo: dict[str, Any], optimize: dict[str, Any], model_id: str
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, str]]:
    """All variants of one zoo model; their records, MLflow metrics, and the folders of the
    variants built by this run (the catalog logs those to MLflow).

    Variant artifacts go to ``<optimize.variants_dir>/<model_id>/<variant_id>/``, which is also
    the cache: unchanged variants are reused (and were logged by the run that built them).
    """
    optimize = check_keys("optimize", optimize, OPTIMIZE_KEYS)
    run = parse_settings(RunSettings, optimize.get("run"), "optimize.run")
    entry = select_entry(zoo["models"], model_id)
    monitor = EnergyMonitor(discover_sources())
    try:
        records = optimize_model(
            entry,
            dataset_settings(zoo.get("datasets") or {}, entry),
            Path(zoo["models_dir"]) / model_id,
            _variants_for(optimize, model_id, configured_models(zoo["models"])),
            Path(optimize["variants_dir"]) / model_id,
            monitor,
            run,
        )
    finally:
        monitor.close()
    metrics = {}
    for record in records:
        prefix = f"{model_id}.{record.variant_id}"
        values = {
            f"val_{record.metric}": record.val_metric,
            "size_on_disk_bytes": record.size_on_disk_bytes,
            "effective_sparsity": record.effective_sparsity,
            "macs": record.macs,
            "optimization_duration_s": record.optimization_duration_s,
            "optimization_energy_j": record.optimization_energy.get("total_energy_j"),
        }
        metrics.update(
            {f"{prefix}.{k}": {"value": float(v), "step": 0} for k, v in values.items() if v is not None}
        )
    built = {
        record.variant_id: record.artifact_dir
        for record in records
        if record.status == "ok" and record.technique != "baseline" and not record.reused
    }
    return [record.to_row() for record in records], metrics, built


def _variants_for(optimize: dict[str, Any], model_id: str, model_ids: Any) -> dict[str, VariantSpec]:
    """The planned variants of ``model_id`` (``optimize.plan``), narrowed to ``optimize.only``."""
    declared = parse_variants(optimize["variants"])
    plan = optimize.get("plan")
    planned = planned_variants(declared, plan, model_id, list(model_ids))
    if not optimize.get("only"):
        return planned
    only = select_variants(declared, optimize["only"])
    unplanned = sorted(set(only) - set(plan or declared))
    if unplanned:
        raise ConfigError(
            f"optimize.only names {unplanned}, which optimize.plan (this study's variants) leaves out; "
            "add them to the plan, or run the full study (--env full), which builds every declared variant"
        )
    return {variant_id: spec for variant_id, spec in planned.items() if variant_id in only}


def variants_table(*records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per model and variant (baselines included), for the evaluate and tradeoff pipelines."""
    return pd.DataFrame([row for rows in records for row in rows])
