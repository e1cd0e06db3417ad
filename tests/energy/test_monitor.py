"""The monitor's rules, on sources whose energy the test sets by hand (and on the fake NVML)."""

from __future__ import annotations

import time

import pytest

from green_deploy.energy.monitor import EnergyMonitor
from green_deploy.energy.sources import discover_sources
from green_deploy.energy.sources.base import SourceError
from green_deploy.energy.sources.nvml import NvmlEnergyCounter
from tests.energy.fake_pynvml import FakeNVML


class ManualSource:
    """A source whose cumulative energy the test sets; ``fail`` makes the next read raise."""

    def __init__(self, name, component, measured=True, resolution_s=0.0, power_w=None):
        self.name, self.component, self.measured, self.resolution_s = name, component, measured, resolution_s
        self.energy_j, self.fail, self.power_w = 0.0, False, power_w
        self._origin_s = time.perf_counter()

    def read_j(self):
        if self.fail:
            raise SourceError(f"{self.name} broke")
        if self.power_w is not None:  # a constant draw, for idle-baseline tests
            return self.power_w * (time.perf_counter() - self._origin_s)
        return self.energy_j

    def close(self):
        pass


def test_nested_and_overlapping_windows_each_get_their_own_energy():
    gpu = ManualSource("counter", "gpu")
    monitor = EnergyMonitor([gpu])
    monitor.begin_window("outer")
    gpu.energy_j = 10.0
    monitor.begin_window("inner")
    gpu.energy_j = 25.0
    inner = monitor.end_window("inner", n_items=3)
    monitor.begin_window("overlapping")
    gpu.energy_j = 40.0
    outer = monitor.end_window("outer")
    gpu.energy_j = 41.0
    overlapping = monitor.end_window("overlapping")
    assert (inner.gpu_energy_j, outer.gpu_energy_j, overlapping.gpu_energy_j) == (15.0, 40.0, 16.0)
    assert inner.energy_per_item_j == pytest.approx(5.0)
    assert inner.cpu_energy_j is None and inner.component("gpu").source == "counter"


def test_window_names_are_checked():
    monitor = EnergyMonitor([ManualSource("counter", "gpu")])
    monitor.begin_window("a")
    with pytest.raises(ValueError, match="already open"):
        monitor.begin_window("a")
    with pytest.raises(ValueError, match="never begun"):
        monitor.end_window("b")


def test_a_failing_meter_hands_over_to_the_next_with_a_warning():
    counter, sampler = ManualSource("counter", "gpu"), ManualSource("sampler", "gpu")
    monitor = EnergyMonitor([counter, sampler])
    monitor.begin_window("w")
    counter.energy_j, sampler.energy_j = 10.0, 9.5
    counter.fail = True
    measurement = monitor.end_window("w")
    assert measurement.gpu_energy_j == 9.5
    assert measurement.component("gpu").source == "sampler"
    assert any("counter (gpu) failed" in w for w in measurement.warnings)
    assert any("gpu energy from sampler, not counter" in w for w in measurement.warnings)


def test_a_component_nothing_could_measure_is_missing_not_zero():
    gpu, cpu = ManualSource("counter", "gpu"), ManualSource("estimate", "cpu", measured=False)
    monitor = EnergyMonitor([gpu, cpu])
    monitor.begin_window("w")
    gpu.fail, cpu.energy_j = True, 2.0
    measurement = monitor.end_window("w")
    assert measurement.gpu_energy_j is None
    assert measurement.total_energy_j == 2.0
    assert not measurement.measured  # only an estimate is left
    assert any("gpu energy is missing, not zero" in w for w in measurement.warnings)


def test_short_windows_are_flagged_and_measure_repeats_until_long_enough():
    monitor = EnergyMonitor([ManualSource("counter", "gpu", resolution_s=0.1)])
    monitor.begin_window("one call")
    assert any("shorter than counter's update interval" in w for w in monitor.end_window("one call").warnings)

    calls = []
    measurement = monitor.measure(
        "repeated", lambda: (calls.append(1), time.sleep(0.01)), n_items_per_call=8, min_duration_s=0.15
    )
    assert measurement.duration_s >= 0.15
    assert measurement.n_items == 8 * len(calls) and len(calls) >= 5
    assert not any("update interval" in w for w in measurement.warnings)


def test_idle_baseline_is_reported_and_subtracted():
    gpu = ManualSource("counter", "gpu", power_w=50.0)
    monitor = EnergyMonitor([gpu])
    baseline = monitor.measure_idle(0.1)
    assert baseline.power_w["counter"] == pytest.approx(50.0, rel=0.01)
    gpu.power_w = 80.0  # cumulative energy now grows faster: a busy device
    gpu._origin_s = time.perf_counter()
    monitor.begin_window("busy")
    time.sleep(0.1)
    measurement = monitor.end_window("busy")
    reading = measurement.component("gpu")
    assert reading.idle_power_w == pytest.approx(50.0, rel=0.01)
    assert reading.active_energy_j == pytest.approx(30.0 * measurement.duration_s, rel=0.05)
    assert measurement.active_energy_j == reading.active_energy_j  # both figures kept
    assert measurement.gpu_energy_j == pytest.approx(80.0 * measurement.duration_s, rel=0.05)


def test_measured_sources_that_disagree_are_flagged_side_by_side():
    counter, sampler = ManualSource("counter", "gpu"), ManualSource("sampler", "gpu")
    monitor = EnergyMonitor([counter, sampler])
    monitor.begin_window("w")
    counter.energy_j, sampler.energy_j = 10.0, 7.0
    measurement = monitor.end_window("w")
    assert [a.source for a in measurement.alternatives] == ["sampler"]
    assert any("sources disagree on gpu" in w and "-30%" in w for w in measurement.warnings)


def test_synchronize_runs_at_both_edges_before_reading():
    order = []
    gpu = ManualSource("counter", "gpu")
    gpu.read_j = lambda: order.append("read") or 0.0
    monitor = EnergyMonitor([gpu], synchronize=lambda: order.append("sync"))
    monitor.begin_window("w")
    monitor.end_window("w")
    assert order == ["sync", "read", "sync", "read"]


def test_flat_record_carries_units_sources_and_flags():
    gpu, cpu = ManualSource("counter", "gpu"), ManualSource("estimate", "cpu", measured=False)
    monitor = EnergyMonitor([gpu, cpu])
    monitor.begin_window("w")
    gpu.energy_j, cpu.energy_j = 3.0, 1.0
    flat = monitor.end_window("w", n_items=2).to_flat_dict()
    assert flat["gpu_energy_j"] == 3.0 and flat["gpu_source"] == "counter" and flat["gpu_measured"] is True
    assert flat["cpu_measured"] is False and flat["dram_energy_j"] is None
    assert flat["energy_per_item_j"] == 2.0 and flat["measured"] is False


def test_discovery_prefers_the_nvml_counter_and_keeps_estimates_as_fallback(tmp_path):
    nvml = FakeNVML(power_w=250.0)
    sources = discover_sources(nvml=nvml, powercap_root=tmp_path / "no-powercap")
    assert isinstance(sources[0], NvmlEnergyCounter)
    assert [s.component for s in sources] == ["gpu", "cpu", "dram"]
    assert [s.measured for s in sources] == [True, False, False]
    monitor = EnergyMonitor(sources)
    monitor.begin_window("w")
    nvml.advance(0.5)
    measurement = monitor.end_window("w")
    assert measurement.gpu_energy_j == pytest.approx(125.0)
    assert measurement.component("cpu").source.startswith("cpu_time_tdp_estimate")


def test_discovery_takes_the_edge_corrected_counter_where_the_counter_moves(tmp_path):
    from green_deploy.energy.sources.nvml import NvmlEdgeCorrectedCounter
    from tests.energy.fake_pynvml import SteppedNVML

    sources = discover_sources(nvml=SteppedNVML([(0.0, 300.0)]), powercap_root=tmp_path)
    try:
        assert isinstance(sources[0], NvmlEdgeCorrectedCounter) and sources[0].measured
    finally:
        sources[0].close()
    plain = discover_sources(nvml=SteppedNVML([(0.0, 300.0)]), powercap_root=tmp_path, edge_corrected=False)
    assert isinstance(plain[0], NvmlEnergyCounter)  # a server's choice: no polling thread


def test_meters_failing_mid_run_degrade_to_the_next_source_never_to_zero(tmp_path):
    """The issue's rule, on the real sources: NVML breaks, a RAPL file vanishes, mid-study."""
    from tests.energy.sources.fake_powercap import FakePowercap

    powercap = FakePowercap(tmp_path)
    powercap.add_zone("intel-rapl:0", "package-0", max_range_uj=262_143_328_850, energy_uj=0)
    nvml = FakeNVML(power_w=300.0)
    monitor = EnergyMonitor(discover_sources(nvml=nvml, powercap_root=tmp_path))
    assert [s.name.split("(")[0] for s in monitor.sources] == [
        "nvml_energy_counter",
        "rapl",
        "cpu_time_tdp_estimate",
        "ram_rss_estimate",
    ]

    monitor.begin_window("healthy")
    nvml.advance(1.0)
    powercap.advance("intel-rapl:0", 20_000_000)
    healthy = monitor.end_window("healthy")
    assert (healthy.gpu_energy_j, healthy.cpu_energy_j) == (pytest.approx(300.0), pytest.approx(20.0))
    assert healthy.component("cpu").measured

    monitor.begin_window("broken")
    nvml.broken = True
    powercap.remove("intel-rapl:0")
    broken = monitor.end_window("broken")
    assert broken.gpu_energy_j is None  # nothing else measures the GPU: missing, not zero
    assert broken.component("cpu").source.startswith("cpu_time_tdp_estimate")
    assert not broken.component("cpu").measured
    text = " | ".join(broken.warnings)
    assert "nvml_energy_counter (gpu) failed" in text and "rapl (cpu) failed" in text
    assert "gpu energy is missing, not zero" in text


class EdgeSource(ManualSource):
    """A measured source that states what a read now may be off by."""

    def __init__(self, edge_uncertainty_j):
        super().__init__("corrected", "gpu", power_w=100.0)
        self.edge_uncertainty_j = edge_uncertainty_j


def test_every_measured_window_carries_its_edges_uncertainty_and_estimates_none():
    stepping = ManualSource("counter", "gpu", resolution_s=0.1)
    estimate = ManualSource("cpu_estimate", "cpu", measured=False)
    monitor = EnergyMonitor([stepping, estimate])
    monitor.begin_window("w")
    time.sleep(0.05)
    stepping.energy_j, estimate.energy_j = 50.0, 5.0
    measurement = monitor.end_window("w")
    gpu = measurement.component("gpu")
    # one step at each edge at the window's mean power
    assert gpu.uncertainty_j == pytest.approx(2 * 50.0 / measurement.duration_s * 0.1)
    assert measurement.component("cpu").uncertainty_j is None
    assert measurement.to_flat_dict()["gpu_uncertainty_j"] == gpu.uncertainty_j

    corrected = EnergyMonitor([EdgeSource(edge_uncertainty_j=0.25)])
    with corrected.window("w") as result:
        time.sleep(0.05)
    assert result[0].component("gpu").uncertainty_j == pytest.approx(0.5)  # both edges, as stated


def test_a_window_less_accurate_than_asked_is_flagged():
    monitor = EnergyMonitor([EdgeSource(edge_uncertainty_j=0.5)], accuracy=0.02)
    with monitor.window("short") as short:
        time.sleep(0.1)  # ~10 J drawn, 1 J uncertain: 10%
    assert any("uncertain by ±" in w and "requested ±2.0%" in w for w in short[0].warnings)
    with pytest.raises(ValueError, match="relative"):
        EnergyMonitor([], accuracy=2.0)


def test_measure_extends_the_window_until_the_accuracy_is_reached_or_gives_up_with_a_warning():
    calls = []
    source = EdgeSource(edge_uncertainty_j=0.5)  # 1 J per window at 100 W: 5% needs >= 0.2 s
    monitor = EnergyMonitor([source], accuracy=0.05)
    reached = monitor.measure("w", lambda: calls.append(time.sleep(0.01)), min_duration_s=0.05)
    assert reached.duration_s >= 0.19
    assert not reached.warnings
    assert reached.component("gpu").relative_uncertainty <= 0.05

    capped = EnergyMonitor([EdgeSource(edge_uncertainty_j=5.0)], accuracy=0.05, max_extension=3)
    given_up = capped.measure("w", lambda: time.sleep(0.01), min_duration_s=0.05)
    assert 0.14 <= given_up.duration_s < 0.5  # three times min_duration_s, then it stops
    assert any("lengthen the window" in w for w in given_up.warnings)

    unasked = EnergyMonitor([EdgeSource(edge_uncertainty_j=0.5)])
    assert unasked.measure("w", lambda: time.sleep(0.01), min_duration_s=0.05).duration_s < 0.15
