from __future__ import annotations

import time

import pytest

from green_deploy.energy.sources.base import SourceError, SourceUnavailableError
from green_deploy.energy.sources.nvml import NvmlEnergyCounter, NvmlPowerSampler
from tests.energy.fake_pynvml import FakeNVML


def test_counter_sums_devices_from_its_own_origin():
    nvml = FakeNVML(n_devices=2, power_w=100.0)
    nvml.advance(5.0)  # energy before the source opens is not counted
    counter = NvmlEnergyCounter(nvml=nvml)
    assert counter.read_j() == 0.0
    nvml.power_w = [300.0, 100.0]
    nvml.advance(2.0)
    assert counter.read_j() == pytest.approx(800.0)


def test_counter_can_watch_chosen_devices():
    nvml = FakeNVML(n_devices=2)
    nvml.power_w = [50.0, 400.0]
    counter = NvmlEnergyCounter(device_indices=[1], nvml=nvml)
    nvml.advance(1.0)
    assert counter.read_j() == pytest.approx(400.0)
    with pytest.raises(SourceUnavailableError, match="do not exist"):
        NvmlEnergyCounter(device_indices=[2], nvml=nvml)


def test_gpu_without_counter_points_to_power_sampling():
    with pytest.raises(SourceUnavailableError, match="NvmlPowerSampler"):
        NvmlEnergyCounter(nvml=FakeNVML(counter_supported=False))


def test_no_driver_is_unavailable_not_a_crash():
    nvml = FakeNVML()
    nvml.broken = True
    with pytest.raises(SourceUnavailableError, match="NVML could not start"):
        NvmlEnergyCounter(nvml=nvml)


def test_counter_failing_mid_run_raises_source_error():
    nvml = FakeNVML()
    counter = NvmlEnergyCounter(nvml=nvml)
    nvml.broken = True
    with pytest.raises(SourceError, match="GPU is lost"):
        counter.read_j()


def test_power_sampler_integrates_constant_power():
    nvml = FakeNVML(power_w=200.0, counter_supported=False)
    sampler = NvmlPowerSampler(interval_s=0.01, nvml=nvml)
    try:
        start_j, start_s = sampler.read_j(), time.perf_counter()
        time.sleep(0.3)
        energy_j, duration_s = sampler.read_j() - start_j, time.perf_counter() - start_s
    finally:
        sampler.close()
    assert energy_j == pytest.approx(200.0 * duration_s, rel=0.05)
    assert sampler.resolution_s >= 1.0  # it inherits NVML power's one-second averaging


def test_power_sampler_reports_a_dead_driver():
    nvml = FakeNVML(counter_supported=False)
    sampler = NvmlPowerSampler(interval_s=0.01, nvml=nvml)
    try:
        nvml.broken = True
        time.sleep(0.1)
        with pytest.raises(SourceError, match="power sampling stopped"):
            sampler.read_j()
    finally:
        nvml.broken = False
        sampler.close()
