"""Tests of green_deploy.simulate. ``CONFIG``: a small, fully explicit ``simulate`` configuration
(grid intensities given, so no country lookup), copied by each module's ``config`` fixture."""

from __future__ import annotations

from typing import Any

CONFIG: dict[str, Any] = {
    "scenario": {
        "j_per_batch": 3.0,
        "batch_size": 32,
        "pue_datacenter": 1.2,
        "pue_device": 1.0,
        "device_energy_factor": 3.0,
        "iid": False,
        "rounds_iid": 100,
        "non_iid_round_multiplier": 2.0,
        "learners_per_round": 20,
        "local_epochs_per_round": 1.0,
        "local_batches_per_round": None,
        "examples_per_learner": 100,
        "examples_total": 100000,
        "centralized_epochs": 20,
        "model_parameters": 1000000,
        "bytes_per_parameter": 4,
        "raw_bytes_per_example": 10000,
        "trainings": 5,
        "upload_only_new_data": True,
        "new_data_fraction": 0.2,
        "link": "wifi",
        "network_j_per_byte": 5e-6,
    },
    "links": {
        "wifi": {"uplink_j_per_byte": 2e-6, "downlink_j_per_byte": 1e-6},
        "ethernet": {"uplink_j_per_byte": 0.0, "downlink_j_per_byte": 0.0},
    },
    "carbon": {
        "device_country": "DEU",
        "datacenter_country": "DEU",
        "device_intensity_g_per_kwh": 400.0,
        "datacenter_intensity_g_per_kwh": 100.0,
    },
    "calibration": {"from_variants": False, "model_id": None},
    "sensitivity": {"low_factor": 0.5, "high_factor": 2.0, "crossover_span": 1000, "crossover_points": 200},
}
