"""The harness's GPU counter read around repetitions, against a fake NVML whose counter runs in
real time (the same code reads the real counter on the H100 machine: bench/results/evaluate_h100.md)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from green_deploy.deploy.inprocess import InProcessDeployer
from green_deploy.evaluate.harness import Client, RepetitionMeter, batches, measure_cell, summarize
from green_deploy.evaluate.study import ProtocolSettings
from tests.energy.fake_pynvml import FakeNVML


class RunningNVML(FakeNVML):
    """A counter that integrates ``power_w`` over wall time, as the real one does."""

    def __init__(self, power_w: float) -> None:
        super().__init__(power_w=power_w)
        self._last_s = time.perf_counter()
        self._energy_j = 0.0

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        now = time.perf_counter()
        self._energy_j += self.power_w[handle] * (now - self._last_s)
        self._last_s = now
        return int(self._energy_j * 1000)


def test_no_energy_counter_no_meter():
    assert RepetitionMeter.open(0.0, nvml=FakeNVML(counter_supported=False)) is None


def test_the_gpu_counter_is_read_around_each_repetition_and_added_to_the_server_figures(tiny, monkeypatch):
    monkeypatch.setattr(RepetitionMeter, "MIN_IDLE_S", 0.1)
    nvml = RunningNVML(power_w=50.0)
    meter = RepetitionMeter.open(0.0, nvml=nvml)
    assert meter is not None
    nvml.power_w[0] = 200.0  # the GPU works from here on: 150 W above idle
    deployer = InProcessDeployer(gpu_energy=False)
    deployment = deployer.deploy(tiny.variant)
    try:
        client = Client(deployer, deployment, 256)
        protocol = ProtocolSettings(repetition_s=0.1, min_repetitions=3, max_repetitions=3)
        measurement = measure_cell(client, batches(np.asarray(tiny.batch), 2, 0), protocol, meter=meter)
    finally:
        deployer.teardown(deployment)
        meter.close()
    row = summarize(measurement)
    assert (row["gpu_source"], row["gpu_measured"], row["gpu_window"]) == (
        "nvml_energy_counter",
        True,
        "repetition",
    )
    assert (row["cpu_window"], row["cpu_measured"]) == ("request", False)
    assert row["energy_measured"] is False  # the CPU is still an estimate
    expected_gpu = 200.0 * row["measured_duration_s"] / row["n_items"]
    assert row["gpu_energy_per_item_j"] == pytest.approx(expected_gpu, rel=0.1)
    assert row["energy_per_item_j"] == pytest.approx(
        row["cpu_energy_per_item_j"] + row["dram_energy_per_item_j"] + row["gpu_energy_per_item_j"]
    )
    for repetition in measurement.repetitions:
        assert repetition.component_energy_j["gpu"] == pytest.approx(200.0 * repetition.duration_s, rel=0.1)
    assert row["active_energy_per_item_j"] is None  # the in-process worker measured no idle here
