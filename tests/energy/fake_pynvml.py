"""A stand-in for the ``pynvml`` module on machines with no NVIDIA GPU (CPU CI).

It has the functions green-deploy calls, with the same units (energy in mJ, power in mW), and
lets a test advance time, change power, drop the energy counter (pre-Volta GPUs) or break the
driver mid-run. The same source code then runs against the real ``pynvml`` on the GPU machine
(bench/energy_validation.py).
"""

from __future__ import annotations


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

    # test controls
    def advance(self, seconds: float) -> None:
        """Let every device draw its current power for ``seconds`` (the counter integrates it)."""
        for device, power_w in enumerate(self.power_w):
            self.energy_mj[device] += round(power_w * seconds * 1000)
