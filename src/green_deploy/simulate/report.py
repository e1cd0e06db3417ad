"""The simulation's Markdown summary: the scenario, energy and carbon per paradigm, the decision
rules from the crossovers and the parameters the comparison is most sensitive to."""

from __future__ import annotations

import pandas as pd

from green_deploy.evaluate.summary import markdown_table
from green_deploy.simulate.model import (
    Provenance,
    Scenario,
    centralized_batches,
    local_batches_per_round,
    raw_data_bytes,
    rounds,
    update_bytes,
)

FORMULAS = """```
E_central   = B·e_b·p_dc + D·(up + net)
E_federated = R·K·(b·e_b·x·p_dev + u·(down + up + 2·net))
continual:  E_federated·N   and   N·B·e_b·p_dc + D·(up + net)·(1 + (N-1)·f)
```
B centralized batches, D raw bytes, R rounds, K learners per round, b local batches, u update
bytes, e_b J per data-centre batch, x device energy factor, p PUE, up/down/net J per byte, N
trainings, f the fraction of new data uploaded per retraining (1 when everything is re-uploaded)."""


def render_markdown(
    s: Scenario,
    provenance: Provenance,
    energy: pd.DataFrame,
    sensitivity: pd.DataFrame,
    crossovers: pd.DataFrame,
    top: int = 10,
) -> str:
    """The summary; ``crossovers`` is ``sensitivity.crossover_table``'s table."""
    by_name = energy.set_index("paradigm")
    life = by_name.loc["federated_continual"]
    lines = [
        "# Federated vs centralized learning: simulated energy",
        "",
        _scenario_sentence(s),
        "",
        f"- Energy per training batch: {s.j_per_batch:.4g} J ({provenance.j_per_batch}).",
        f"- Devices' grid: {s.device_intensity_g_per_kwh:.4g} gCO2e/kWh ({provenance.device_intensity}).",
        f"- Data centre's grid: {s.datacenter_intensity_g_per_kwh:.4g} gCO2e/kWh ({provenance.datacenter_intensity}).",
        "",
        f"**Over {s.trainings} training(s), federated learning uses "
        f"{life.energy_ratio_to_centralized:.3g}× the energy and {life.carbon_ratio_to_centralized:.3g}× "
        "the carbon of centralized learning.**",
        "",
        "## Energy per paradigm",
        "",
        markdown_table(
            energy[
                [
                    "paradigm",
                    "trainings",
                    "energy_kwh",
                    "compute_energy_j",
                    "transfer_energy_j",
                    "carbon_g",
                    "energy_ratio_to_centralized",
                ]
            ]
        ),
        "",
        "## Decision rules",
        "",
        f"Each rule holds the rest of the scenario as it is; comparisons over {s.trainings} training(s).",
        "",
    ]
    crossed = crossovers.crossover_values.str.len() > 0
    energy_rules = crossovers[crossovers.metric == "energy"]
    lines += [f"- {rule}" for rule in crossovers[crossed & (crossovers.metric == "energy")].rule]
    steady = energy_rules[energy_rules.federated_cheaper.isin(["always", "never"])]
    if len(steady):
        lines += [
            "",
            "No crossover within the searched range (×1/span to ×span, within the parameter's bounds): "
            + "; ".join(
                f"{r.parameter} (federated {'cheaper' if r.federated_cheaper == 'always' else 'dearer'})"
                for r in steady.itertuples()
            )
            + ".",
        ]
    unaffected = set(energy_rules.parameter[energy_rules.federated_cheaper == "unaffected"])
    carbon_only = crossovers[
        (crossovers.metric == "carbon") & crossed & crossovers.parameter.isin(unaffected)
    ]
    if len(carbon_only):
        lines += ["", "Carbon (parameters that change no energy):", ""] + [
            f"- {rule}" for rule in carbon_only.rule
        ]
    lines += [
        "",
        f"## Sensitivity (the {min(top, len(sensitivity))} largest swings of the energy ratio)",
        "",
        markdown_table(
            sensitivity.head(top)[
                [
                    "parameter",
                    "low_value",
                    "base_value",
                    "high_value",
                    "low_energy_ratio",
                    "high_energy_ratio",
                ]
            ]
        ),
        "",
        "## Model",
        "",
        FORMULAS,
        "",
    ]
    return "\n".join(lines)


def _scenario_sentence(s: Scenario) -> str:
    return (
        f"Federated: {s.learners_per_round} learners per round for {rounds(s):.4g} rounds "
        f"({'IID' if s.iid else 'non-IID'} data), {local_batches_per_round(s):.4g} local batches of "
        f"{s.batch_size} each per round, {update_bytes(s):.4g}-byte updates over {s.link}. "
        f"Centralized: {centralized_batches(s):.4g} batches on {s.examples_total:.4g} examples after uploading "
        f"{raw_data_bytes(s):.4g} bytes of raw data over {s.link}. Trained {s.trainings} time(s)"
        + (
            f", re-uploading {s.new_data_fraction:.3g} of the data each time."
            if s.upload_only_new_data
            else ", re-uploading all the data each time."
        )
    )
