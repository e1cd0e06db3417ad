"""`kedro run --pipeline=simulate` end to end in a copy of the project (no zoo needed): the tables,
the tornado plots and the summary on disk and in MLflow, with J per batch calibrated from a hand-made
variants table; and the nodes as plain functions (no variants table: the configured value)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import yaml

from green_deploy.errors import ConfigError
from green_deploy.pipelines.simulate.nodes import compare_paradigms, prepare_scenario
from tests.pipelines.conftest import PROJECT, kedro

pytestmark = pytest.mark.timeout(120)

REPORTS = "data/08_reporting"
SIMULATE = yaml.safe_load((PROJECT / "conf/base/parameters_simulate.yml").read_text())["simulate"]
CALIBRATION_MODEL = SIMULATE["calibration"]["model_id"]
PARADIGMS = ["centralized", "federated", "centralized_continual", "federated_continual"]


def copy_project(target):
    target.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT / name, target / name)
    for name in ("conf", "src"):
        shutil.copytree(PROJECT / name, target / name, ignore=shutil.ignore_patterns("__pycache__", "local"))
    (target / "conf/local").mkdir()
    return target


def _variants(model_id: str) -> pd.DataFrame:
    steps = json.dumps(
        [{"technique": "magnitude_pruning", "settings": {"amount": 0.5, "finetune_steps": 40}}]
    )
    return pd.DataFrame(
        [
            {
                "model_id": model_id,
                "variant_id": "pt_prune50_local_ft",
                "technique": "magnitude_pruning",
                "steps": steps,
                "status": "ok",
                "optimization_total_energy_j": 20.0,  # 0.5 J per fine-tune step
                "optimization_measured": True,
                "optimization_duration_s": 2.0,
            }
        ]
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A copy of the project with a one-variant table, after `kedro run --pipeline=simulate`."""
    root = copy_project(tmp_path_factory.mktemp("simulate_project"))
    (root / "data/07_model_output").mkdir(parents=True)
    _variants(CALIBRATION_MODEL).to_parquet(root / "data/07_model_output/variants.parquet")
    result = kedro(root, "run", "--pipeline=simulate")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root


def test_tables_figures_and_summary_are_written(root):
    energy = pd.read_parquet(root / REPORTS / "simulate_energy.parquet")
    assert energy.paradigm.tolist() == PARADIGMS
    assert (energy.energy_j > 0).all() and (energy.carbon_g > 0).all()
    assert energy.energy_kwh.tolist() == pytest.approx((energy.energy_j / 3.6e6).tolist())
    sensitivity = pd.read_parquet(root / REPORTS / "simulate_sensitivity.parquet")
    assert {"learners_per_round", "j_per_batch", "pue_datacenter", "iid"} <= set(sensitivity.parameter)
    crossovers = pd.read_parquet(root / REPORTS / "simulate_crossovers.parquet")
    assert set(crossovers.metric) == {"energy", "carbon"}
    figures = sorted(p.name for p in (root / REPORTS / "simulate_figures").iterdir())
    assert figures == ["tornado_carbon_ratio.png", "tornado_energy_ratio.png"]

    summary = (root / REPORTS / "simulate_summary.md").read_text()
    assert summary.startswith("# Federated vs centralized learning: simulated energy")
    rules = crossovers[(crossovers.metric == "energy") & (crossovers.crossover_values != "")].rule.tolist()
    assert rules and any(
        rule.startswith("federated costs less energy when learners_per_round <") for rule in rules
    )
    assert all(f"- {rule}" in summary for rule in rules)


def test_summary_and_figures_are_logged_to_mlflow(root):
    (run,) = {p.parent for p in (root / "mlruns").glob("*/*/artifacts")}
    logged = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    assert {
        "artifacts/simulate/simulate_summary.md",
        "artifacts/simulate/simulate_figures/tornado_energy_ratio.png",
        "artifacts/simulate/simulate_figures/tornado_carbon_ratio.png",
    } <= logged


def test_j_per_batch_is_calibrated_from_the_variants_table(root):
    energy = pd.read_parquet(root / REPORTS / "simulate_energy.parquet")
    assert energy.j_per_batch.tolist() == pytest.approx([0.5] * 4)
    (source,) = set(energy.j_per_batch_source)
    assert source.startswith(f"calibrated from {CALIBRATION_MODEL} fine-tune, measured")
    summary = (root / REPORTS / "simulate_summary.md").read_text()
    assert f"0.5 J (calibrated from {CALIBRATION_MODEL} fine-tune, measured" in summary


# ---- the nodes as plain functions --------------------------------------------------------------
def test_without_a_variants_table_the_configured_value_is_used_and_said():
    scenario, provenance = prepare_scenario(SIMULATE, pd.DataFrame())
    assert scenario.j_per_batch == SIMULATE["scenario"]["j_per_batch"]
    assert provenance.j_per_batch == "configured (no fine-tuned variants measured by the optimize pipeline)"
    table, metrics = compare_paradigms(scenario, provenance)
    assert metrics["simulate.federated.energy_j"] == {"value": table.energy_j[1], "step": 0}


def test_calibration_off_keeps_the_configured_value():
    simulate = {**SIMULATE, "calibration": {"from_variants": False, "model_id": CALIBRATION_MODEL}}
    scenario, provenance = prepare_scenario(simulate, _variants(CALIBRATION_MODEL))
    assert scenario.j_per_batch == SIMULATE["scenario"]["j_per_batch"]
    assert provenance.j_per_batch == "configured (calibration off)"


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        (
            "calibration",
            {"from_variant": True},
            r"simulate.calibration: unknown setting\(s\) \['from_variant'\]",
        ),
        ("sensitivity", {"low_factr": 0.5}, r"simulate.sensitivity: unknown setting\(s\) \['low_factr'\]"),
    ],
)
def test_misspelt_sections_fail_before_any_work(section, value, message):
    with pytest.raises(ConfigError, match=message):
        prepare_scenario({**SIMULATE, section: value}, pd.DataFrame())
