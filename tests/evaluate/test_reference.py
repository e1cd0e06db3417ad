"""The GPU's bf16 matmul floor as the evaluate runner measures it (``evaluate.reference``): its
arithmetic against a meter with known readings. On the GPU machine the same code reads the
NVML counter (bench/results/evaluate_*.md)."""

from __future__ import annotations

import pytest

from green_deploy.energy.record import ComponentEnergy, EnergyMeasurement
from green_deploy.evaluate.reference import FLOOR_PRODUCTS, measure_gpu_floor


class KnownMeter:
    """Runs the unit ``units`` times per window and reports ``energy_j`` from ``component``."""

    def __init__(self, energy_j: float, units: int, component: str = "gpu") -> None:
        self.energy_j, self.units, self.component = energy_j, units, component
        self.sources: list[str] = []
        self.calls = 0

    def measure(self, name, fn, min_duration_s):
        for _ in range(self.units):
            fn()
            self.calls += 1
        reading = ComponentEnergy(self.component, "fake_counter", True, self.energy_j)
        return EnergyMeasurement(name, 0.5, self.units, (reading,))


def test_the_floor_is_gpu_energy_per_flop_of_the_products_run():
    meter = KnownMeter(energy_j=2.0, units=4)
    run = measure_gpu_floor(meter, repetitions=3, device="cpu", size=64)
    flop_per_unit = 2 * 64**3 * FLOOR_PRODUCTS
    assert run.pj_per_flop == pytest.approx([1e12 * 2.0 / (4 * flop_per_unit)] * 3)
    assert meter.calls == 12
    assert (run.source, run.measured, run.size, run.dtype) == ("fake_counter", True, 64, "bfloat16")
    assert run.duration_s == pytest.approx(1.5)


def test_a_meter_without_a_gpu_reading_is_refused():
    with pytest.raises(ValueError, match="no GPU energy"):
        measure_gpu_floor(KnownMeter(energy_j=2.0, units=1, component="cpu"), device="cpu", size=16)
