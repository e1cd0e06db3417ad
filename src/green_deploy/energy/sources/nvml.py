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
from typing import Any

from green_deploy.energy.record import Component
from green_deploy.energy.sources.base import SourceError, SourceUnavailableError

logger = logging.getLogger(__name__)

COUNTER_RESOLUTION_S = 0.1  # the counter's update interval seen on H100 (MEASUREMENT_NOTES.md)
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


class NvmlEnergyCounter:
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
