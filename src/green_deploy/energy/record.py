"""The measurement record: what one window cost, per component, with where each figure came from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Component = Literal["gpu", "cpu", "dram"]
COMPONENTS: tuple[Component, ...] = ("gpu", "cpu", "dram")
JOULES_PER_KWH = 3.6e6


@dataclass(frozen=True)
class ComponentEnergy:
    """Energy of one component over a window, from one source.

    ``measured`` is True only for a hardware energy counter or integrated hardware power
    readings; a figure derived from CPU time, TDP tables or memory size is an estimate.
    ``idle_power_w`` is the study's idle baseline for this component and source (``None`` when
    none was measured); ``active_energy_j`` is ``energy_j`` minus idle power over the window.
    ``uncertainty_j`` bounds what the window's two edges may be off by (a counter that updates in
    steps: at most one step each, or what its edge correction could not resolve); ``None`` where
    the source states none (estimates, whose error is their model's).
    """

    component: Component
    source: str
    measured: bool
    energy_j: float
    idle_power_w: float | None = None
    active_energy_j: float | None = None
    uncertainty_j: float | None = None

    @property
    def relative_uncertainty(self) -> float | None:
        if self.uncertainty_j is None or self.energy_j <= 0:
            return None
        return self.uncertainty_j / self.energy_j


@dataclass(frozen=True)
class EnergyMeasurement:
    """One named window: duration, energy per component (the best source each) and every other
    source's figure side by side, the number of items processed, and warnings.

    A component that no source could measure is absent (``None``), never zero.
    """

    name: str
    duration_s: float
    n_items: int
    components: tuple[ComponentEnergy, ...]
    alternatives: tuple[ComponentEnergy, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def component(self, component: Component) -> ComponentEnergy | None:
        return next((c for c in self.components if c.component == component), None)

    @property
    def gpu_energy_j(self) -> float | None:
        return _energy(self.component("gpu"))

    @property
    def cpu_energy_j(self) -> float | None:
        return _energy(self.component("cpu"))

    @property
    def dram_energy_j(self) -> float | None:
        return _energy(self.component("dram"))

    @property
    def total_energy_j(self) -> float:
        return sum(c.energy_j for c in self.components)

    @property
    def energy_per_item_j(self) -> float:
        return self.total_energy_j / self.n_items

    @property
    def idle_power_w(self) -> float | None:
        """Summed idle power of the reported components; ``None`` unless every one has a baseline."""
        powers = [c.idle_power_w for c in self.components if c.idle_power_w is not None]
        return None if not powers or len(powers) < len(self.components) else sum(powers)

    @property
    def active_energy_j(self) -> float | None:
        energies = [c.active_energy_j for c in self.components if c.active_energy_j is not None]
        return None if not energies or len(energies) < len(self.components) else sum(energies)

    @property
    def active_energy_per_item_j(self) -> float | None:
        active = self.active_energy_j
        return None if active is None else active / self.n_items

    @property
    def measured(self) -> bool:
        """True only when every reported component was measured, not estimated."""
        return bool(self.components) and all(c.measured for c in self.components)

    def to_flat_dict(self) -> dict[str, Any]:
        """One level of keys with units, for tables and MLflow: ``gpu_energy_j``, ``gpu_source``, …"""
        flat: dict[str, Any] = {"name": self.name, "duration_s": self.duration_s, "n_items": self.n_items}
        for component in COMPONENTS:
            reading = self.component(component)
            flat[f"{component}_energy_j"] = None if reading is None else reading.energy_j
            flat[f"{component}_source"] = None if reading is None else reading.source
            flat[f"{component}_measured"] = None if reading is None else reading.measured
            flat[f"{component}_idle_power_w"] = None if reading is None else reading.idle_power_w
            flat[f"{component}_active_energy_j"] = None if reading is None else reading.active_energy_j
            flat[f"{component}_uncertainty_j"] = None if reading is None else reading.uncertainty_j
        flat.update(
            total_energy_j=self.total_energy_j,
            energy_per_item_j=self.energy_per_item_j,
            active_energy_j=self.active_energy_j,
            measured=self.measured,
            warnings=" | ".join(self.warnings),
        )
        return flat

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _energy(reading: ComponentEnergy | None) -> float | None:
    return None if reading is None else reading.energy_j
