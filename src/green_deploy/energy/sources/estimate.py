"""Estimates where no energy counter exists (no RAPL, e.g. most virtual machines and CI).

Both are flagged ``measured = False`` and their ``name`` carries the rate they assume, so an
estimate can never pass for a measurement.

- CPU: this process's CPU time (user + system, all threads) × the power of one hardware thread,
  taken as the CPU package's TDP over its threads. The TDP comes from CodeCarbon's CPU table
  (``codecarbon/data/hardware/cpu_power.csv``) when the CPU model is found there; otherwise from
  CodeCarbon's own fallback TDP of 85 W. The thread count of the package is read from
  ``/proc/cpuinfo`` (``siblings``) when that shows a real socket (at least 4 threads); a virtual
  machine usually shows only its own vCPUs, so then a typical server package of 16 threads is
  assumed. Only active CPU time costs energy here: the package's idle power is not attributed
  to the process.
- DRAM: this process's resident memory × 0.375 W per GB (3 W per 8 GB, the DDR4 figure of
  CodeCarbon's RAM model before 3.x), integrated over time between reads.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from green_deploy.energy.codecarbon_data import codecarbon_data_dir
from green_deploy.energy.record import Component

logger = logging.getLogger(__name__)

FALLBACK_TDP_W = 85.0  # CodeCarbon's fallback when a CPU model is not in its table
ASSUMED_THREADS_PER_PACKAGE = 16  # when /proc/cpuinfo shows no real socket (virtual machines)
MIN_REAL_PACKAGE_THREADS = 4
RAM_POWER_W_PER_GB = 3.0 / 8.0
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class CpuPowerModel:
    """Power of one hardware thread and where each number came from."""

    cpu_model: str
    tdp_w: float
    tdp_source: str
    threads_per_package: int
    threads_source: str

    @property
    def power_per_thread_w(self) -> float:
        return self.tdp_w / self.threads_per_package


def _cpuinfo(cpuinfo_path: Path) -> tuple[str, int | None]:
    model, siblings = "unknown CPU", None
    try:
        for line in cpuinfo_path.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key == "siblings" and siblings is None:
                siblings = int(value.strip())
    except (OSError, ValueError):
        pass
    return model, siblings


def _codecarbon_cpu_table() -> Path | None:
    folder = codecarbon_data_dir()
    path = None if folder is None else folder / "hardware/cpu_power.csv"
    return path if path is not None and path.is_file() else None


def _normalise(name: str) -> str:
    name = re.sub(r"\((R|TM|tm|r)\)", " ", name)
    name = re.sub(r"@.*$", " ", name)
    name = re.sub(r"\b(CPU|Processor|\d+-Core)\b", " ", name, flags=re.IGNORECASE)
    return " ".join(name.lower().split())


def lookup_tdp_w(cpu_model: str, table: Path | None = None) -> tuple[float, str]:
    """The TDP of ``cpu_model`` from CodeCarbon's table: the longest table name contained in the
    model string (word-aligned). Falls back to CodeCarbon's 85 W, saying so."""
    table = table or _codecarbon_cpu_table()
    if table is None:
        return FALLBACK_TDP_W, "fallback 85 W (CodeCarbon's CPU table not installed)"
    target = f" {_normalise(cpu_model)} "
    best: tuple[int, float, str] | None = None
    with table.open(newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            name = _normalise(row["Name"])
            if name and f" {name} " in target and (best is None or len(name) > best[0]):
                best = (len(name), float(row["TDP"]), row["Name"])
    if best is None:
        return FALLBACK_TDP_W, f"fallback 85 W ({cpu_model!r} is not in CodeCarbon's CPU table)"
    return best[1], f"CodeCarbon CPU table: {best[2]}"


def cpu_power_model(cpuinfo_path: Path = Path("/proc/cpuinfo"), table: Path | None = None) -> CpuPowerModel:
    model, siblings = _cpuinfo(cpuinfo_path)
    tdp_w, tdp_source = lookup_tdp_w(model, table)
    if siblings is not None and siblings >= MIN_REAL_PACKAGE_THREADS:
        threads, threads_source = siblings, "/proc/cpuinfo siblings"
    else:
        threads = ASSUMED_THREADS_PER_PACKAGE
        threads_source = (
            f"assumed {ASSUMED_THREADS_PER_PACKAGE} (the package is not visible: {siblings} threads shown)"
        )
    return CpuPowerModel(model, tdp_w, tdp_source, threads, threads_source)


class CpuTimeEstimate:
    """CPU energy = CPU time × one hardware thread's share of the TDP.

    The CPU time is this process's (``time.process_time``) unless ``cpu_time_s`` reads another's
    (``process_tree.ProcessTree.cpu_time_s``: a server green-deploy did not write); ``label``
    names the reading in the source's name.
    """

    component: Component = "cpu"
    measured = False
    # process_time() is CLOCK_PROCESS_CPUTIME_ID: the scheduler's nanosecond runtime, read live
    # (not tick-sampled like /proc/stat); it advances in steps of ~0.45 µs measured here
    resolution_s = 1e-6

    def __init__(
        self,
        model: CpuPowerModel | None = None,
        cpu_time_s: Callable[[], float] = time.process_time,
        label: str = "cpu_time_tdp_estimate",
    ):
        self.model = model or cpu_power_model()
        self.name = f"{label}({self.model.power_per_thread_w:.2f} W/thread)"
        self._cpu_time_s = cpu_time_s
        self._origin_s = cpu_time_s()
        logger.info(
            "CPU energy is estimated: %s, TDP %.0f W (%s) over %d threads (%s)",
            self.model.cpu_model,
            self.model.tdp_w,
            self.model.tdp_source,
            self.model.threads_per_package,
            self.model.threads_source,
        )

    def read_j(self) -> float:
        return (self._cpu_time_s() - self._origin_s) * self.model.power_per_thread_w

    def close(self) -> None:
        pass


def resident_memory_bytes(statm_fd: int | None = None) -> int:
    """This process's resident set size, from /proc/self/statm.

    Re-reading an open ``statm_fd`` at offset 0 costs about 1 µs, opening the file about 20 µs:
    a served request reads it at both edges of its energy window.
    """
    try:
        statm = Path("/proc/self/statm").read_bytes() if statm_fd is None else os.pread(statm_fd, 128, 0)
        return int(statm.split()[1]) * _PAGE_BYTES
    except (OSError, IndexError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # peak, in KiB on Linux


class RamEstimate:
    """DRAM energy = resident memory × 0.375 W/GB, integrated between reads.

    The memory is this process's resident set unless ``memory_bytes`` reads another's
    (``process_tree.ProcessTree.pss_bytes``); ``label`` names the reading in the source's name.
    """

    component: Component = "dram"
    measured = False
    resolution_s = 0.0  # computed, not sampled: any window length works

    def __init__(
        self,
        power_w_per_gb: float = RAM_POWER_W_PER_GB,
        memory_bytes: Callable[[], int] | None = None,
        label: str = "ram_rss_estimate",
    ):
        self.power_w_per_gb = power_w_per_gb
        self.name = f"{label}({power_w_per_gb:.3f} W/GB)"
        self._energy_j = 0.0
        self._statm_fd: int | None = None
        if memory_bytes is None:
            try:
                self._statm_fd = os.open("/proc/self/statm", os.O_RDONLY)
            except OSError:
                self._statm_fd = None
        self._memory_bytes = memory_bytes or (lambda: resident_memory_bytes(self._statm_fd))
        self._last_t = time.perf_counter()
        self._last_power_w = self._power_w()

    def _power_w(self) -> float:
        return self._memory_bytes() / 1e9 * self.power_w_per_gb

    def read_j(self) -> float:
        now, power_w = time.perf_counter(), self._power_w()
        self._energy_j += 0.5 * (power_w + self._last_power_w) * (now - self._last_t)
        self._last_t, self._last_power_w = now, power_w
        return self._energy_j

    def close(self) -> None:
        if self._statm_fd is not None:
            os.close(self._statm_fd)
            self._statm_fd = None
