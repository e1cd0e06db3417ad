"""A stand-in for the ``pynvml`` module on machines with no NVIDIA GPU (CPU CI).

It has the functions green-deploy calls, with the same units (energy in mJ, power in mW), and
lets a test advance time, change power, drop the energy counter (pre-Volta GPUs) or break the
driver mid-run. The same source code then runs against the real ``pynvml`` on the GPU machine
(bench/energy_validation.py).
"""

from __future__ import annotations

from types import SimpleNamespace


class NVMLError(Exception):
    pass


class FakeNVML:
    NVMLError = NVMLError

    def __init__(self, n_devices: int = 1, power_w: float = 100.0, counter_supported: bool = True):
        self.energy_mj = [0] * n_devices
        self.power_w = [power_w] * n_devices
        self.counter_supported = counter_supported
        self.broken = False
        self.initialised = 0
        self.memory_used_bytes = [512 << 20] * n_devices  # the driver's own reserve on an idle GPU

    # the pynvml functions green-deploy uses
    def nvmlInit(self) -> None:
        if self.broken:
            raise NVMLError("Driver Not Loaded")
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.initialised -= 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.energy_mj)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        if not self.counter_supported:
            raise NVMLError("Not Supported")
        if self.broken:
            raise NVMLError("GPU is lost")
        return self.energy_mj[handle]

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        if self.broken:
            raise NVMLError("GPU is lost")
        return round(self.power_w[handle] * 1000)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        if self.broken:
            raise NVMLError("GPU is lost")
        used = self.memory_used_bytes[handle]
        return SimpleNamespace(total=80 << 30, used=used, free=(80 << 30) - used)

    # test controls
    def advance(self, seconds: float) -> None:
        """Let every device draw its current power for ``seconds`` (the counter integrates it)."""
        for device, power_w in enumerate(self.power_w):
            self.energy_mj[device] += round(power_w * seconds * 1000)


class SteppedNVML(FakeNVML):
    """One GPU in real time whose energy counter holds the energy drawn up to its last update, as
    NVML's does (every ``update_s``, from ``phase_s``), while the power reads the present draw.

    ``power`` is a list of ``(from_s, watts)`` segments in seconds since the fake was made; a
    counter read takes ``read_s`` (the driver's latency, in which other threads run).
    """

    def __init__(
        self,
        power: list[tuple[float, float]],
        update_s: float = 0.02,
        phase_s: float = 0.007,
        read_s: float = 0.001,
    ):
        super().__init__(n_devices=1)
        import time

        self._clock = time.perf_counter
        self._sleep = time.sleep
        self.start_s = self._clock()
        self.segments = sorted(power)
        self.update_s, self.phase_s, self.read_s = update_s, phase_s, read_s

    def elapsed_s(self, at_s: float | None = None) -> float:
        return (self._clock() if at_s is None else at_s) - self.start_s

    def watts(self, elapsed_s: float) -> float:
        return next((w for start, w in reversed(self.segments) if elapsed_s >= start), 0.0)

    def true_energy_j(self, elapsed_s: float) -> float:
        """The energy drawn from the start to ``elapsed_s``: the exact answer a window is held to."""
        bounds = [start for start, _ in self.segments] + [max(elapsed_s, self.segments[-1][0])]
        return sum(
            w * max(0.0, min(end, elapsed_s) - start)
            for (start, w), end in zip(self.segments, bounds[1:], strict=True)
        )

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        if self.broken:
            raise NVMLError("GPU is lost")
        self._sleep(self.read_s / 2)
        elapsed = self.elapsed_s()
        updates = max(0, int((elapsed - self.phase_s) // self.update_s) + 1) if elapsed >= self.phase_s else 0
        last_update_s = self.phase_s + (updates - 1) * self.update_s if updates else 0.0
        self._sleep(self.read_s / 2)
        return round(1000 * self.true_energy_j(last_update_s))

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        if self.broken:
            raise NVMLError("GPU is lost")
        return round(1000 * self.watts(self.elapsed_s()))
