"""The energy model: analytic cases, monotonicity in every parameter, configuration errors and the
calibration of J per batch from a variants table."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from green_deploy.energy.record import JOULES_PER_KWH
from green_deploy.errors import ConfigError
from green_deploy.simulate.model import (
    calibrate_j_per_batch,
    centralized_compute_j,
    centralized_upload_j,
    energy_table,
    federated_compute_j,
    federated_transfer_j,
    numeric_parameters,
    paradigm_energies,
    parse_scenario,
)
from tests.simulate import CONFIG


def _by_name(scenario):
    return {p.paradigm: p for p in paradigm_energies(scenario)}


@pytest.fixture
def config() -> dict[str, Any]:
    return copy.deepcopy(CONFIG)


@pytest.fixture
def scenario(config):
    return parse_scenario(config)[0]


@pytest.fixture
def symmetric(scenario):
    """One learner, no transfer cost, device factor 1, equal PUEs, as many batches each way."""
    return replace(
        scenario,
        iid=True,
        rounds_iid=10,
        learners_per_round=1,
        local_epochs_per_round=1.0,
        examples_per_learner=3200,  # 100 local batches per round, 1000 in all
        examples_total=32000,
        centralized_epochs=1,  # 1000 batches
        device_energy_factor=1.0,
        pue_device=1.3,
        pue_datacenter=1.3,
        uplink_j_per_byte=0.0,
        downlink_j_per_byte=0.0,
        network_j_per_byte=0.0,
        trainings=1,
    )


# ---- analytic cases --------------------------------------------------------------------------
def test_one_learner_without_transfer_cost_equals_centralized(symmetric):
    energies = _by_name(symmetric)
    assert energies["federated"].energy_j == energies["centralized"].energy_j
    assert energies["federated"].energy_j == 1000 * 3.0 * 1.3
    assert energies["federated"].transfer_energy_j == energies["centralized"].transfer_energy_j == 0


def test_device_pue_one_against_datacenter_pue_gives_ratio_one_over_pue(symmetric):
    energies = _by_name(replace(symmetric, pue_device=1.0, pue_datacenter=1.6))
    assert energies["federated"].energy_j / energies["centralized"].energy_j == pytest.approx(
        1 / 1.6, rel=1e-12
    )


def test_formulas_term_by_term(scenario):
    s = scenario  # 200 rounds (non-IID), 20 learners, 100/32 local batches, 4e6-byte updates
    per_learner_round_compute = 100 / 32 * 3.0 * 3.0 * 1.0
    per_learner_round_transfer = 4e6 * (1e-6 + 2e-6 + 2 * 5e-6)
    assert federated_compute_j(s) == pytest.approx(200 * 20 * per_learner_round_compute)
    assert federated_transfer_j(s) == pytest.approx(200 * 20 * per_learner_round_transfer)
    assert centralized_compute_j(s) == pytest.approx(20 * 100000 / 32 * 3.0 * 1.2)
    assert centralized_upload_j(s) == pytest.approx(100000 * 10000 * (2e-6 + 5e-6))
    energies = _by_name(s)
    # continual: federated reruns everything; centralized uploads 1 + 4 × 0.2 datasets
    assert energies["federated_continual"].energy_j == pytest.approx(5 * energies["federated"].energy_j)
    assert energies["centralized_continual"].compute_energy_j == pytest.approx(5 * centralized_compute_j(s))
    assert energies["centralized_continual"].transfer_energy_j == pytest.approx(1.8 * centralized_upload_j(s))
    everything = _by_name(replace(s, upload_only_new_data=False))["centralized_continual"]
    assert everything.transfer_energy_j == pytest.approx(5 * centralized_upload_j(s))


def test_iid_data_needs_fewer_rounds(scenario):
    non_iid = _by_name(scenario)["federated"].energy_j
    iid = _by_name(replace(scenario, iid=True))["federated"].energy_j
    assert iid == pytest.approx(non_iid / 2.0)


def test_local_batches_per_round_replaces_epochs(scenario):
    given = replace(scenario, local_batches_per_round=10.0, local_epochs_per_round=99.0)
    assert federated_compute_j(given) == pytest.approx(200 * 20 * 10 * 3.0 * 3.0)
    assert "local_epochs_per_round" not in numeric_parameters(given)
    assert "local_batches_per_round" in numeric_parameters(given)


def test_carbon_uses_each_grid(scenario):
    energies = _by_name(scenario)
    cen, fed = energies["centralized"], energies["federated"]
    assert cen.carbon_g == pytest.approx(
        (cen.compute_energy_j * 100.0 + cen.transfer_energy_j * 400.0) / JOULES_PER_KWH
    )
    assert fed.carbon_g == pytest.approx(fed.energy_j * 400.0 / JOULES_PER_KWH)
    assert fed.energy_kwh == pytest.approx(fed.energy_j / 3.6e6)


def test_energy_table_ratios_compare_like_with_like(scenario, config):
    scenario, provenance = parse_scenario(config)
    table = energy_table(scenario, provenance).set_index("paradigm")
    assert list(table.index) == ["centralized", "federated", "centralized_continual", "federated_continual"]
    assert table.loc["federated", "energy_ratio_to_centralized"] == pytest.approx(
        table.loc["federated", "energy_j"] / table.loc["centralized", "energy_j"]
    )
    assert table.loc["federated_continual", "energy_ratio_to_centralized"] == pytest.approx(
        table.loc["federated_continual", "energy_j"] / table.loc["centralized_continual", "energy_j"]
    )
    assert (table.energy_kwh * 3.6e6).tolist() == pytest.approx(table.energy_j.tolist())
    assert set(table.j_per_batch_source) == {"configured"}


# ---- monotonicity: the direction of each paradigm's energy in every parameter -----------------
# parameter: (federated, centralized) direction of the energy over the scenario's life when it grows
DIRECTIONS = {
    "j_per_batch": (1, 1),
    "batch_size": (-1, -1),
    "pue_datacenter": (0, 1),
    "pue_device": (1, 0),
    "device_energy_factor": (1, 0),
    "rounds_iid": (1, 0),
    "non_iid_round_multiplier": (1, 0),
    "learners_per_round": (1, 0),
    "local_epochs_per_round": (1, 0),
    "examples_per_learner": (1, 0),
    "examples_total": (0, 1),
    "centralized_epochs": (0, 1),
    "model_parameters": (1, 0),
    "bytes_per_parameter": (1, 0),
    "raw_bytes_per_example": (0, 1),
    "trainings": (1, 1),
    "new_data_fraction": (0, 1),
    "network_j_per_byte": (1, 1),
    "uplink_j_per_byte": (1, 1),
    "downlink_j_per_byte": (1, 0),
    "device_intensity_g_per_kwh": (0, 0),
    "datacenter_intensity_g_per_kwh": (0, 0),
}


def test_every_numeric_parameter_has_a_known_direction(scenario):
    assert set(numeric_parameters(scenario)) == set(DIRECTIONS)


@pytest.mark.parametrize("parameter", sorted(DIRECTIONS))
def test_energy_is_monotone_in_each_parameter(scenario, parameter):
    base = getattr(scenario, parameter)
    grown = (
        base + 1
        if isinstance(base, int)
        else min(base * 1.5, 1.0)
        if parameter == "new_data_fraction"
        else base * 1.5
    )
    before, after = _by_name(scenario), _by_name(replace(scenario, **{parameter: grown}))
    for paradigm, direction in zip(
        ("federated_continual", "centralized_continual"), DIRECTIONS[parameter], strict=True
    ):
        change = after[paradigm].energy_j - before[paradigm].energy_j
        assert np.sign(change) == direction, (paradigm, change)


# ---- configuration ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("scenario", "learner_per_round", 3, "unknown setting(s) ['learner_per_round']"),
        ("scenario", "examples_total", -5, "examples_total must be a finite number >= 0"),
        ("scenario", "pue_datacenter", 0.9, "pue_datacenter must be a finite number >= 1"),
        ("scenario", "new_data_fraction", 1.5, "new_data_fraction must be a finite number between 0 and 1"),
        ("scenario", "learners_per_round", 0, "learners_per_round must be a finite number >= 1"),
        ("scenario", "learners_per_round", 2.5, "must be an integer"),
        ("scenario", "link", "pigeon", "link 'pigeon' is not in simulate.links; known: ['ethernet', 'wifi']"),
        (
            "carbon",
            "device_intensity_g_per_kwh",
            -1.0,
            "device_intensity_g_per_kwh must be a finite number >= 0",
        ),
        ("carbon", "grid", "FRA", "unknown setting(s) ['grid']"),
    ],
)
def test_config_errors_name_the_key(config, section, key, value, message):
    config[section][key] = value
    with pytest.raises(ConfigError) as error:
        parse_scenario(config)
    assert message in str(error.value)


def test_negative_link_energy_and_unknown_sections_are_errors(config):
    bad = {**config, "links": {"wifi": {"uplink_j_per_byte": -1e-6, "downlink_j_per_byte": 0.0}}}
    with pytest.raises(
        ConfigError, match="simulate.links.wifi: uplink_j_per_byte must be a finite number >= 0"
    ):
        parse_scenario(bad)
    with pytest.raises(ConfigError, match=r"unknown section\(s\) \['scenarios'\]"):
        parse_scenario({**config, "scenarios": {}})
    del config["scenario"]["batch_size"]
    with pytest.raises(ConfigError, match=r"missing setting\(s\) \['batch_size'\]"):
        parse_scenario(config)


def test_country_intensity_is_read_from_codecarbon(config):
    config["carbon"]["device_intensity_g_per_kwh"] = None
    scenario, provenance = parse_scenario(config)
    assert scenario.device_intensity_g_per_kwh > 0
    assert "DEU" in provenance.device_intensity and provenance.datacenter_intensity == "configured"


# ---- calibration from the optimize pipeline's variants table ----------------------------------
def _variant(model_id, variant_id, steps, energy_j, measured, status="ok"):
    return {
        "model_id": model_id,
        "variant_id": variant_id,
        "technique": "+".join(step["technique"] for step in steps) or "baseline",
        "steps": json.dumps(steps),
        "status": status,
        "optimization_total_energy_j": energy_j,
        "optimization_measured": measured,
        "optimization_duration_s": 1.0,
    }


def _ft(steps, technique="magnitude_pruning"):
    return {"technique": technique, "settings": {"amount": 0.5, "finetune_steps": steps}}


VARIANTS = pd.DataFrame(
    [
        _variant("small", "ft50", [_ft(50)], 10.0, False),  # 0.2 J per batch
        _variant("small", "ft100", [_ft(100)], 30.0, False),  # 0.3
        _variant(
            "small", "ft_then_tflite", [_ft(25), {"technique": "tflite", "settings": {}}], 10.0, False
        ),  # 0.4
        _variant("small", "no_ft", [{"technique": "dynamic_int8", "settings": {}}], 99.0, False),
        _variant("small", "failed", [_ft(50)], 500.0, False, status="not_applicable"),
        _variant("small", "baseline", [], float("nan"), None),
        _variant("big", "ft10", [_ft(10), _ft(10)], 40.0, True),  # 20 steps: 2.0
    ]
)


def test_calibration_is_fine_tune_energy_over_fine_tune_steps():
    value, source = calibrate_j_per_batch(VARIANTS, "small", 3.0)
    assert value == pytest.approx(0.3)  # median of 0.2, 0.3, 0.4
    assert source.startswith("calibrated from small fine-tune, estimated (median of 3 variants")
    assert "no_ft" not in source and "failed" not in source
    value, source = calibrate_j_per_batch(VARIANTS, "big", 3.0)
    assert value == pytest.approx(2.0)
    assert source.startswith("calibrated from big fine-tune, measured")


def test_calibration_without_a_model_takes_the_one_with_most_fine_tunes():
    assert calibrate_j_per_batch(VARIANTS, None, 3.0)[0] == pytest.approx(0.3)


def test_calibration_falls_back_to_the_configured_value_and_says_why():
    assert calibrate_j_per_batch(pd.DataFrame(), "small", 3.0) == (
        3.0,
        "configured (no fine-tuned variants measured by the optimize pipeline)",
    )
    assert calibrate_j_per_batch(None, None, 3.0)[0] == 3.0
    value, source = calibrate_j_per_batch(VARIANTS, "absent", 3.0)
    assert value == 3.0 and source.startswith(
        "configured (absent has no fine-tuned variants; big, small have)"
    )


def test_calibrated_value_and_provenance_reach_the_scenario(config):
    value, source = calibrate_j_per_batch(VARIANTS, "small", 3.0)
    scenario, provenance = parse_scenario(config, value, source)
    assert scenario.j_per_batch == pytest.approx(0.3)
    assert provenance.j_per_batch == source
