"""Thin nodes over ``green_deploy.simulate``: parameters (and the variants table) in, tables,
tornado plots and a Markdown summary out."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from green_deploy.config import parse_settings
from green_deploy.simulate.model import (
    CalibrationSettings,
    Provenance,
    Scenario,
    calibrate_j_per_batch,
    check_sections,
    energy_table,
    parse_scenario,
)
from green_deploy.simulate.report import render_markdown
from green_deploy.simulate.sensitivity import (
    crossover_table,
    crossovers,
    one_at_a_time,
    parse_sensitivity,
    tornado,
)

logger = logging.getLogger(__name__)


def prepare_scenario(simulate: Mapping[str, Any], variants: pd.DataFrame) -> tuple[Scenario, Provenance]:
    """The scenario from ``simulate`` parameters; J per batch from the variants table's fine-tunes
    when ``calibration.from_variants`` is on and it has them, else the configured value."""
    simulate = check_sections(simulate)
    parse_sensitivity(simulate.get("sensitivity"))  # a misspelt sensitivity key fails before any work
    calibration = parse_settings(
        CalibrationSettings,
        {"from_variants": False, "model_id": None, **(simulate.get("calibration") or {})},
        "simulate.calibration",
    )
    configured, _ = parse_scenario(simulate)
    if calibration.from_variants:
        j_per_batch, source = calibrate_j_per_batch(variants, calibration.model_id, configured.j_per_batch)
    else:
        j_per_batch, source = configured.j_per_batch, "configured (calibration off)"
    scenario, provenance = parse_scenario(simulate, j_per_batch, source)
    logger.info(
        "Simulating with %.4g J per training batch: %s.", scenario.j_per_batch, provenance.j_per_batch
    )
    return scenario, provenance


def compare_paradigms(scenario: Scenario, provenance: Provenance) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Energy and carbon per paradigm, and the same as MLflow metrics."""
    table = energy_table(scenario, provenance)
    metrics = {
        f"simulate.{row.paradigm}.{column}": {"value": float(getattr(row, column)), "step": 0}
        for row in table.itertuples()
        for column in ("energy_j", "carbon_g", "energy_ratio_to_centralized")
    }
    return table, metrics


def sensitivity_analysis(scenario: Scenario, simulate: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One-at-a-time sensitivity of the federated / centralized ratios and their tornado plots."""
    settings, ranges, _ = parse_sensitivity(simulate.get("sensitivity"))
    table = one_at_a_time(scenario, settings.low_factor, settings.high_factor, ranges)
    figures = {f"tornado_{metric}_ratio.png": tornado(table, metric) for metric in ("energy", "carbon")}
    return table, figures


def find_crossovers(scenario: Scenario, simulate: dict[str, Any]) -> pd.DataFrame:
    """For every parameter, where federated and centralized cost the same (energy and carbon)."""
    settings, _, crossover_ranges = parse_sensitivity(simulate.get("sensitivity"))
    found = crossovers(
        scenario, ranges=crossover_ranges, span=settings.crossover_span, points=settings.crossover_points
    )
    return crossover_table(found)


def summarize(
    scenario: Scenario,
    provenance: Provenance,
    energy: pd.DataFrame,
    sensitivity: pd.DataFrame,
    crossover_rules: pd.DataFrame,
) -> str:
    return render_markdown(scenario, provenance, energy, sensitivity, crossover_rules)
