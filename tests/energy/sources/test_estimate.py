from __future__ import annotations

import time

import pytest

from green_deploy.energy.sources.estimate import (
    FALLBACK_TDP_W,
    CpuPowerModel,
    CpuTimeEstimate,
    RamEstimate,
    cpu_power_model,
    lookup_tdp_w,
)


def test_known_cpu_models_get_their_tdp_from_codecarbons_table():
    tdp_w, source = lookup_tdp_w("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz")
    assert tdp_w == 150.0 and "Xeon Gold 6248" in source
    assert lookup_tdp_w("AMD EPYC 7763 64-Core Processor")[0] == 280.0


def test_unknown_cpu_falls_back_and_says_so():
    tdp_w, source = lookup_tdp_w("AMD EPYC")
    assert tdp_w == FALLBACK_TDP_W and "not in CodeCarbon's CPU table" in source


def test_threads_come_from_cpuinfo_only_when_a_real_socket_is_visible(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz\nsiblings\t: 40\n")
    model = cpu_power_model(cpuinfo)
    assert model.power_per_thread_w == pytest.approx(150.0 / 40)
    cpuinfo.write_text("model name\t: AMD EPYC\nsiblings\t: 2\n")
    assert "assumed" in cpu_power_model(cpuinfo).threads_source


def test_cpu_estimate_follows_process_cpu_time_and_is_labelled():
    source = CpuTimeEstimate(CpuPowerModel("test", 100.0, "test", 10, "test"))
    start_j, start_cpu_s = source.read_j(), time.process_time()
    deadline = time.perf_counter() + 0.2
    while time.perf_counter() < deadline:
        pass
    energy_j = source.read_j() - start_j
    assert energy_j == pytest.approx((time.process_time() - start_cpu_s) * 10.0, rel=0.05)
    assert not source.measured and "10.00 W/thread" in source.name


def test_sleeping_costs_no_estimated_cpu_energy():
    source = CpuTimeEstimate(CpuPowerModel("test", 100.0, "test", 10, "test"))
    start_j = source.read_j()
    time.sleep(0.2)
    assert source.read_j() - start_j < 0.05  # 10 W/thread × a few ms of bookkeeping at most


def test_ram_estimate_integrates_resident_memory_power():
    source = RamEstimate(power_w_per_gb=1.0)
    start_j, start_s = source.read_j(), time.perf_counter()
    time.sleep(0.2)
    energy_j, duration_s = source.read_j() - start_j, time.perf_counter() - start_s
    from green_deploy.energy.sources.estimate import resident_memory_bytes

    assert energy_j == pytest.approx(resident_memory_bytes() / 1e9 * duration_s, rel=0.2)
    assert not source.measured


def test_ram_estimate_rereads_resident_memory_through_its_open_file():
    source = RamEstimate(power_w_per_gb=1.0)
    before_w = source._power_w()
    grown = b"\x01" * 200_000_000  # 200 MB, written so it is resident
    after_w = source._power_w()
    assert after_w - before_w == pytest.approx(0.2, abs=0.02)
    source.close()
    assert source._statm_fd is None
    del grown
