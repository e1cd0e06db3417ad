"""NVIDIA GPUs through NVML: the energy counter (the source of truth) and, only where a GPU lacks
it, power sampling integrated in a background thread.

Why the counter first: ``nvmlDeviceGetTotalEnergyConsumption`` (Volta and newer) integrates
power in the driver, so any window gets the energy actually drawn. ``nvmlDeviceGetPowerUsage``
is a ~1 s moving average: on an H100 a 0.7 s burst at 625 W read as 80→420 W, and polling it
sees a fraction of short kernels (published work: ~25% of runtime on A100/H100). The counter
itself advances in steps of ~100 ms, so windows shorter than that are amortised by repetition
(``EnergyMonitor.measure``), not trusted alone.

``nvml`` parameters take the ``pynvml`` module (from ``nvidia-ml-py``) or a stand-in with the
same functions; tests pass a fake, the GPU benchmark the real one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from green_deploy.energy.record import Component
from green_deploy.energy.sources.base import SourceError, SourceUnavailableError

logger = logging.getLogger(__name__)

COUNTER_RESOLUTION_S = 0.1  # the counter's update interval seen on H100 and H200 (MEASUREMENT_NOTES.md)
POWER_AVERAGING_S = 1.0  # nvmlDeviceGetPowerUsage is a moving average over about a second


def _load_nvml(nvml: Any | None) -> Any:
    if nvml is not None:
        return nvml
    try:
        import pynvml
    except ImportError as error:
        raise SourceUnavailableError("NVML is not importable: install nvidia-ml-py") from error
    return pynvml


def _open_devices(nvml: Any, device_indices: Sequence[int] | None) -> list[Any]:
    try:
        nvml.nvmlInit()
        count = nvml.nvmlDeviceGetCount()
    except nvml.NVMLError as error:
        raise SourceUnavailableError(
            f"NVML could not start (no NVIDIA GPU or driver here): {error}"
        ) from error
    indices = list(range(count)) if device_indices is None else list(device_indices)
    if not indices:
        raise SourceUnavailableError("NVML sees no GPU")
    missing = [i for i in indices if not 0 <= i < count]
    if missing:
        raise SourceUnavailableError(f"GPU indices {missing} do not exist; NVML sees {count}")
    return [nvml.nvmlDeviceGetHandleByIndex(i) for i in indices]


class _DeviceMemory:
    """The memory in use on a source's GPUs, read beside its energy (one ``nvmlDeviceGetMemoryInfo``
    per device, tens of microseconds): what a served model holds there shows as the rise over
    what was in use before it was loaded."""

    _nvml: Any
    _handles: list[Any]

    def memory_used_bytes(self) -> int:
        try:
            return sum(int(self._nvml.nvmlDeviceGetMemoryInfo(h).used) for h in self._handles)
        except self._nvml.NVMLError as error:
            raise SourceError(f"nvmlDeviceGetMemoryInfo failed: {error}") from error


class NvmlEnergyCounter(_DeviceMemory):
    """Cumulative GPU energy from the driver's counter (millijoules), summed over the devices."""

    name = "nvml_energy_counter"
    component: Component = "gpu"
    measured = True
    resolution_s = COUNTER_RESOLUTION_S

    def __init__(self, device_indices: Sequence[int] | None = None, nvml: Any | None = None):
        self._nvml = _load_nvml(nvml)
        self._handles = _open_devices(self._nvml, device_indices)
        try:
            self._origin_mj = self._read_mj()
        except SourceError as error:
            raise SourceUnavailableError(
                f"this GPU has no NVML energy counter (Volta or newer needed): {error}; use NvmlPowerSampler"
            ) from error

    def _read_mj(self) -> int:
        try:
            return sum(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles)
        except self._nvml.NVMLError as error:
            raise SourceError(f"nvmlDeviceGetTotalEnergyConsumption failed: {error}") from error

    def read_j(self) -> float:
        return (self._read_mj() - self._origin_mj) / 1000.0

    def close(self) -> None:
        self._nvml.nvmlShutdown()


@dataclass
class _Steps:
    """One GPU's counter as the watcher last saw it: the value at its last update (``anchor_mj``,
    reached at ``anchor_s``), the power samples since, and half the time between the two reads
    that saw the update (how far ``anchor_s`` may be off)."""

    anchor_s: float
    anchor_mj: int
    half_gap_s: float
    samples: list[tuple[float, float]]  # (time, watts), each held until the next
    last_mj: int
    last_read_s: float

    def see(self, read_s: float, value_mj: int, power_w: float) -> bool:
        """Record one read; whether it saw an update."""
        updated = value_mj != self.last_mj
        if updated:
            self.anchor_s = 0.5 * (self.last_read_s + read_s)
            self.half_gap_s = 0.5 * (read_s - self.last_read_s)
            self.anchor_mj = value_mj
            self.samples = [(self.anchor_s, power_w)]
        else:
            self.samples.append((read_s, power_w))
        self.last_mj, self.last_read_s = value_mj, read_s
        return updated

    def energy_mj(self, now_s: float) -> float:
        """The value at the last update plus the power drawn since, to ``now_s``."""
        ends = [t for t, _ in self.samples[1:]] + [now_s]
        drawn_j = sum(
            w * max(0.0, min(end, now_s) - t) for (t, w), end in zip(self.samples, ends, strict=True)
        )
        return self.anchor_mj + 1000.0 * drawn_j

    def uncertainty_j(self) -> float:
        powers = [w for _, w in self.samples]
        return max(powers) * self.half_gap_s + (max(powers) - min(powers)) * COUNTER_RESOLUTION_S


class NvmlEdgeCorrectedCounter(_DeviceMemory):
    """The energy counter with each read completed to the moment it is taken.

    The counter holds the energy up to its last update (every ~100 ms on the H200, steps of ~69 J
    at 690 W), so a plain read misses the part of the current step already drawn, and a window's
    two reads can each be off by up to one step: single 1 s windows read up to 10% off on the H200
    although their mean was exact (bench/results/nvml_counter_steps_h200.md). A watcher thread
    reads each GPU's counter back to back (~3 ms a read) and its power before each read (~2 us);
    when the value changes, the update happened between two reads. ``read_j`` is the counter's
    value at its last update plus the power samples since, integrated to now: exact at the update,
    with power filling in less than one step. Replayed on the H200's reads this brought the worst
    single 1 s window from 10.2% to 0.36% under steady load. It costs the measured code no NVML
    call at a window's edge, and one core's NVML calls in the background.

    ``edge_uncertainty_j`` bounds what a read may still be off: the power times half the time
    between the two reads that saw the update, plus how much the power moved within a step.
    """

    name = "nvml_counter_edge_corrected"
    component: Component = "gpu"
    measured = True
    resolution_s = COUNTER_RESOLUTION_S

    def __init__(
        self,
        device_indices: Sequence[int] | None = None,
        nvml: Any | None = None,
        pause_s: float = 0.0005,
        first_update_timeout_s: float = 1.0,
    ):
        self._nvml = _load_nvml(nvml)
        self._handles = _open_devices(self._nvml, device_indices)
        self._pause_s = pause_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._error: Exception | None = None
        try:
            first = [self._read(handle) for handle in self._handles]
        except SourceError as error:
            raise SourceUnavailableError(
                f"this GPU has no NVML energy counter (Volta or newer needed): {error}; use NvmlPowerSampler"
            ) from error
        self._steps = [_Steps(t, mj, 0.0, [(t, w)], mj, t) for t, mj, w in first]
        self._seen = [threading.Event() for _ in self._handles]
        self._origin_mj = sum(mj for _, mj, _ in first)
        self._thread = threading.Thread(target=self._watch, name="nvml-counter-watch", daemon=True)
        self._thread.start()
        if not all(seen.wait(first_update_timeout_s) for seen in self._seen):
            self.close()
            raise SourceUnavailableError(
                f"the NVML energy counter did not change within {first_update_timeout_s:g} s; use NvmlEnergyCounter"
            )

    def _read(self, handle: Any) -> tuple[float, int, float]:
        """(time of the counter read, its value in mJ, the power just before it in W)."""
        try:
            power_w = self._nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
            before_s = time.perf_counter()
            value_mj = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
            return 0.5 * (before_s + time.perf_counter()), value_mj, power_w
        except self._nvml.NVMLError as error:
            raise SourceError(f"NVML read failed: {error}") from error

    def _watch(self) -> None:
        while not self._stop.is_set():
            for index, handle in enumerate(self._handles):
                try:
                    read = self._read(handle)
                except SourceError as error:
                    self._error = error
                    return
                with self._lock:
                    if self._steps[index].see(*read):
                        self._seen[index].set()
            if self._pause_s:
                self._stop.wait(self._pause_s)

    def read_j(self) -> float:
        if self._error is not None:
            raise SourceError(f"the counter watch stopped: {self._error}")
        now_s = time.perf_counter()
        with self._lock:
            return (sum(steps.energy_mj(now_s) for steps in self._steps) - self._origin_mj) / 1000.0

    @property
    def edge_uncertainty_j(self) -> float:
        """What a read now may be off by (see the class docstring)."""
        with self._lock:
            return sum(steps.uncertainty_j() for steps in self._steps)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
        self._nvml.nvmlShutdown()


def open_energy_counter(
    nvml: Any | None = None, edge_corrected: bool = True
) -> NvmlEdgeCorrectedCounter | NvmlEnergyCounter:
    """The best energy counter of this machine's GPUs: edge-corrected, else plain (a counter that
    does not move within a second, or ``edge_corrected=False``); ``SourceUnavailableError`` with
    every reason where there is none."""
    classes: tuple[type[NvmlEdgeCorrectedCounter] | type[NvmlEnergyCounter], ...] = (
        (NvmlEdgeCorrectedCounter, NvmlEnergyCounter) if edge_corrected else (NvmlEnergyCounter,)
    )
    reasons = []
    for source_class in classes:
        try:
            return source_class(nvml=nvml)
        except SourceUnavailableError as reason:
            reasons.append(f"{source_class.name}: {reason}")
    raise SourceUnavailableError("; ".join(reasons))


class NvmlPowerSampler:
    """GPU energy integrated from power samples in a background thread (trapezoid rule).

    A fallback for GPUs without the energy counter. It inherits NVML power's ~1 s averaging, so
    it under-reads ramps and short bursts; its ``resolution_s`` says so and the monitor warns on
    shorter windows.
    """

    name = "nvml_power_sampling"
    component: Component = "gpu"
    measured = True

    def __init__(
        self, interval_s: float = 0.1, device_indices: Sequence[int] | None = None, nvml: Any | None = None
    ):
        self._nvml = _load_nvml(nvml)
        self._handles = _open_devices(self._nvml, device_indices)
        self.interval_s = interval_s
        self.resolution_s = max(interval_s, POWER_AVERAGING_S)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._error: Exception | None = None
        self._energy_j = 0.0
        self._last_t, self._last_w = time.perf_counter(), self._power_w()
        self._thread = threading.Thread(target=self._run, name="nvml-power-sampler", daemon=True)
        self._thread.start()

    def _power_w(self) -> float:
        try:
            return sum(self._nvml.nvmlDeviceGetPowerUsage(h) for h in self._handles) / 1000.0
        except self._nvml.NVMLError as error:
            raise SourceError(f"nvmlDeviceGetPowerUsage failed: {error}") from error

    def _sample(self) -> None:
        power_w, now = self._power_w(), time.perf_counter()
        with self._lock:
            self._energy_j += 0.5 * (power_w + self._last_w) * (now - self._last_t)
            self._last_t, self._last_w = now, power_w

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._sample()
            except SourceError as error:
                self._error = error
                return

    def read_j(self) -> float:
        """Integrated energy up to now: the last sample's power is held since it was taken."""
        if self._error is not None:
            raise SourceError(f"power sampling stopped: {self._error}")
        with self._lock:
            return self._energy_j + self._last_w * (time.perf_counter() - self._last_t)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * self.interval_s + 1.0)
        self._nvml.nvmlShutdown()
