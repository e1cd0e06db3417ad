"""Sensitivity, crossovers (the solver against analytic roots), the tornado plot and the summary."""

from __future__ import annotations

import copy
import io
from dataclasses import replace
from typing import Any

import pytest

from green_deploy.errors import ConfigError
from green_deploy.simulate.model import (
    centralized_compute_j,
    centralized_upload_j,
    comparison,
    energy_table,
    federated_compute_j,
    federated_transfer_j,
    numeric_parameters,
    parse_scenario,
    rounds,
    uploads_per_life,
)
from green_deploy.simulate.report import render_markdown
from green_deploy.simulate.sensitivity import (
    SWITCHES,
    crossover,
    crossover_table,
    crossovers,
    one_at_a_time,
    parse_sensitivity,
    tornado,
)
from tests.simulate import CONFIG


@pytest.fixture
def config() -> dict[str, Any]:
    return copy.deepcopy(CONFIG)


@pytest.fixture
def scenario(config):
    return parse_scenario(config)[0]


def _life_energy(s):
    """(federated, centralized) over the scenario's trainings, from the per-term functions."""
    fed = s.trainings * (federated_compute_j(s) + federated_transfer_j(s))
    cen = s.trainings * centralized_compute_j(s) + centralized_upload_j(s) * uploads_per_life(s)
    return fed, cen


def test_comparison_is_over_the_whole_life(scenario):
    assert comparison(scenario) == pytest.approx(_life_energy(scenario))


# ---- crossovers ------------------------------------------------------------------------------
def test_learners_crossover_matches_the_analytic_root(scenario):
    # federated is linear in K through the origin: K* = E_central / (federated energy per learner)
    fed, cen = _life_energy(scenario)
    analytic = cen / (fed / scenario.learners_per_round)
    found = crossover(scenario, "learners_per_round", points=200)
    assert found.values == pytest.approx((analytic,), rel=1e-9)
    assert found.federated_cheaper == "below"
    assert found.rule == f"federated costs less energy when learners_per_round < {analytic:.3g} (now 20)"


def test_j_per_batch_crossover_matches_the_analytic_root(scenario):
    # both sides are linear in e_b: fed = a1·e + c1, cen = a2·e + c2, so e* = (c2 - c1) / (a1 - a2)
    fed0, cen0 = _life_energy(replace(scenario, j_per_batch=0.0))
    fed1, cen1 = _life_energy(replace(scenario, j_per_batch=1.0))
    analytic = (cen0 - fed0) / ((fed1 - fed0) - (cen1 - cen0))
    found = crossover(scenario, "j_per_batch")
    assert len(found.values) == 1 and found.values[0] == pytest.approx(analytic, rel=1e-9)
    assert found.federated_cheaper == "above"
    at_root = replace(scenario, j_per_batch=found.values[0])
    assert comparison(at_root)[0] == pytest.approx(comparison(at_root)[1], rel=1e-9)


def test_datacenter_pue_crossover_respects_its_lower_bound(scenario):
    cheap_network = replace(
        scenario,
        network_j_per_byte=0.0,
        uplink_j_per_byte=0.0,
        downlink_j_per_byte=0.0,
        device_energy_factor=10.0,
    )
    found = crossover(cheap_network, "pue_datacenter")
    assert found.search_low == 1.0
    fed, cen = _life_energy(cheap_network)
    # centralized energy is all compute here, proportional to the PUE
    assert found.values == pytest.approx((fed / (cen / cheap_network.pue_datacenter),), rel=1e-9)
    assert found.values == pytest.approx((2.0,), rel=1e-9)  # 4000 × 3.125 × 3 J × 10 vs 62500 × 3 J × PUE


def test_no_crossover_and_no_effect_are_told_apart(scenario):
    never = crossover(scenario, "pue_device")  # federated already costs more at PUE 1
    assert never.values == () and never.federated_cheaper == "never"
    assert never.rule.startswith("federated costs more energy for any pue_device in [1, 1e+03]")
    unaffected = crossover(scenario, "device_intensity_g_per_kwh", "energy")
    assert unaffected.federated_cheaper == "unaffected"
    carbon = crossover(scenario, "device_intensity_g_per_kwh", "carbon")
    fed_g, cen_g = comparison(scenario, "carbon")
    assert len(carbon.values) == 1 and carbon.federated_cheaper == "below"
    at_root = replace(scenario, device_intensity_g_per_kwh=carbon.values[0])
    assert comparison(at_root, "carbon")[0] == pytest.approx(comparison(at_root, "carbon")[1], rel=1e-9)


def test_crossovers_cover_every_parameter_and_metric(scenario):
    found = crossovers(scenario, points=100)
    table = crossover_table(found)
    assert len(table) == 2 * len(numeric_parameters(scenario))
    assert set(table.metric) == {"energy", "carbon"}
    crossed = table[table.crossover_values != ""]
    assert (
        crossed.crossover_value.notna().all()
        and table[table.crossover_values == ""].crossover_value.isna().all()
    )


# ---- one-at-a-time sensitivity and the tornado ------------------------------------------------
def test_one_at_a_time_varies_every_parameter_within_bounds(scenario):
    table = one_at_a_time(scenario, 0.5, 2.0, {"new_data_fraction": (0.05, 1.0)})
    assert set(table.parameter) == set(numeric_parameters(scenario)) | set(SWITCHES)
    rows = table.set_index("parameter")
    fed, cen = comparison(scenario)
    assert rows.base_energy_ratio.tolist() == pytest.approx([fed / cen] * len(rows))
    assert rows.loc["pue_device", "low_value"] == 1.0  # ×0.5 would break the bound
    assert rows.loc["new_data_fraction", ["low_value", "high_value"]].tolist() == [0.05, 1.0]
    assert rows.loc["learners_per_round", ["low_value", "high_value"]].tolist() == [10, 40]
    # federated energy is linear through the origin in the learners: the ratio halves and doubles
    assert rows.loc["learners_per_round", "low_energy_ratio"] == pytest.approx(fed / cen / 2)
    assert rows.loc["learners_per_round", "high_energy_ratio"] == pytest.approx(fed / cen * 2)
    assert rows.loc["device_intensity_g_per_kwh", "swing"] == 0
    assert (
        rows.loc["device_intensity_g_per_kwh", "high_carbon_ratio"]
        > rows.loc["device_intensity_g_per_kwh", "low_carbon_ratio"]
    )
    assert table.swing.is_monotonic_decreasing


def test_tornado_draws_one_bar_pair_per_parameter(scenario):
    table = one_at_a_time(scenario)
    figure = tornado(table, "energy")
    (axes,) = figure.axes
    labels = [tick.get_text() for tick in axes.get_yticklabels()]
    assert len(labels) == len(table) and "iid (false – true)" in labels
    assert labels[-1].startswith(table.parameter.iloc[0])  # the largest swing on top
    assert axes.get_xscale() == "log"
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sensitivity_settings_are_checked():
    settings, ranges, crossover_ranges = parse_sensitivity({"ranges": {"pue_datacenter": [1.05, 1.6]}})
    assert settings.low_factor == 0.5 and ranges == {"pue_datacenter": (1.05, 1.6)} and crossover_ranges == {}
    with pytest.raises(ConfigError, match="unknown setting"):
        parse_sensitivity({"low_factr": 0.5})
    with pytest.raises(ConfigError, match="unknown parameter 'learners'"):
        parse_sensitivity({"ranges": {"learners": [1, 2]}})
    with pytest.raises(ConfigError, match=r"must be \[low, high\] with low < high"):
        parse_sensitivity({"ranges": {"learners_per_round": [5, 2]}})
    with pytest.raises(ConfigError, match="0 < low_factor < 1 < high_factor"):
        parse_sensitivity({"low_factor": 2.0})


# ---- the summary -----------------------------------------------------------------------------
def test_summary_states_the_ratio_rules_and_provenance(config):
    scenario, provenance = parse_scenario(config, 0.25, "calibrated from small fine-tune, measured")
    energy = energy_table(scenario, provenance)
    found = crossover_table(crossovers(scenario, points=100))
    text = render_markdown(scenario, provenance, energy, one_at_a_time(scenario), found)
    ratio = energy.set_index("paradigm").loc["federated_continual", "energy_ratio_to_centralized"]
    assert f"federated learning uses {ratio:.3g}× the energy" in text
    assert "0.25 J (calibrated from small fine-tune, measured)" in text
    for rule in found[(found.metric == "energy") & (found.crossover_values != "")].rule:
        assert f"- {rule}" in text
    assert "federated costs less energy when learners_per_round <" in text
    assert f"for {rounds(scenario):.4g} rounds (non-IID data)" in text
