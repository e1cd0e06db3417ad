"""CodeCarbon through the monitor: the real offline tracker on this machine, and the adapter's rules."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from green_deploy.energy.monitor import EnergyMonitor
from green_deploy.energy.record import JOULES_PER_KWH
from green_deploy.energy.sources.codecarbon import CodeCarbonTracker


def test_real_offline_tracker_reports_labelled_cpu_and_ram_energy():
    tracker = CodeCarbonTracker(country_iso_code="FRA")
    monitor = EnergyMonitor([], trackers=[tracker])
    try:
        monitor.begin_window("busy")
        deadline = time.perf_counter() + 0.5
        while time.perf_counter() < deadline:
            pass
        measurement = monitor.end_window("busy")
    finally:
        monitor.close()
    cpu, dram = measurement.component("cpu"), measurement.component("dram")
    assert cpu.source == dram.source == "codecarbon"
    assert cpu.energy_j > 0 and dram.energy_j > 0
    assert not cpu.measured  # no RAPL here: CodeCarbon falls back to a TDP model
    assert not dram.measured  # CodeCarbon's RAM figure is always its model
    assert measurement.gpu_energy_j is None


class FakeCodeCarbon:
    """Records calls and returns one task's kWh; like CodeCarbon, one task at a time."""

    def __init__(self, cpu_mode="intel_rapl"):
        self._hardware = [type("CPU", (), {"_mode": cpu_mode})()]
        self.started = []

    def start_task(self, name):
        self.started.append(name)

    def stop_task(self, name=None):
        return SimpleNamespace(cpu_energy=1e-6, gpu_energy=2e-6, ram_energy=5e-7, gpu_count=1)

    def stop(self):
        pass


def test_kwh_become_joules_and_flags_follow_codecarbons_mode():
    tracker = CodeCarbonTracker(tracker=FakeCodeCarbon(cpu_mode="intel_rapl"))
    tracker.begin("w")
    readings = {r.component: r for r in tracker.end("w")}
    assert readings["cpu"].energy_j == pytest.approx(1e-6 * JOULES_PER_KWH)
    assert readings["cpu"].measured and readings["gpu"].measured and not readings["dram"].measured
    tracker = CodeCarbonTracker(tracker=FakeCodeCarbon(cpu_mode="constant"))
    tracker.begin("w")
    assert not {r.component: r for r in tracker.end("w")}["cpu"].measured


def test_repeated_window_names_get_distinct_codecarbon_tasks():
    fake = FakeCodeCarbon()
    monitor = EnergyMonitor([], trackers=[CodeCarbonTracker(tracker=fake)])
    for _ in range(2):
        monitor.begin_window("same")
        assert monitor.end_window("same").cpu_energy_j is not None
    assert fake.started == ["same#1", "same#2"]


def test_overlapping_windows_get_codecarbon_only_for_the_first():
    fake = FakeCodeCarbon()
    monitor = EnergyMonitor([], trackers=[CodeCarbonTracker(tracker=fake)])
    monitor.begin_window("first")
    monitor.begin_window("second")
    second = monitor.end_window("second")
    first = monitor.end_window("first")
    assert fake.started == ["first#1"]
    assert first.cpu_energy_j is not None
    assert second.cpu_energy_j is None
    assert any("codecarbon could not start" in w for w in second.warnings)
