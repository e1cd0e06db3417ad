"""Energy sources, one module per meter; ``discover_sources`` opens what this machine has."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from green_deploy.energy.sources.base import EnergySource, SourceError, SourceUnavailableError, WindowTracker

logger = logging.getLogger(__name__)

__all__ = ["EnergySource", "SourceError", "SourceUnavailableError", "WindowTracker", "discover_sources"]


def discover_sources(
    gpu: bool = True,
    nvml: Any | None = None,
    powercap_root: Path = Path("/sys/class/powercap"),
    edge_corrected: bool = True,
) -> list[EnergySource]:
    """Every source this machine offers, best first per component.

    GPU: the NVML energy counter with each read completed to its moment
    (``NvmlEdgeCorrectedCounter``: on an H100, 119 of 120 single 1 s and 3 s windows within 1.0%
    of a 10 s reference where the plain counter's reads were up to 11% off, at 0.04 ms per read
    instead of 6-7 ms; bench/results/energy_validation_h100.md), else the plain counter (a GPU
    whose counter does not move within a second, or ``edge_corrected=False`` where a polling
    thread is unwanted), else NVML power sampling. CPU and DRAM: RAPL where readable, then the
    labelled estimates, which stay open as the fallback when a meter fails mid-run.
    """
    from green_deploy.energy.sources.estimate import CpuTimeEstimate, RamEstimate
    from green_deploy.energy.sources.nvml import NvmlPowerSampler, open_energy_counter
    from green_deploy.energy.sources.rapl import available_rapl_sources

    sources: list[EnergySource] = []
    if gpu:
        try:
            sources.append(open_energy_counter(nvml, edge_corrected))
        except SourceUnavailableError as no_counter:
            logger.info("no NVML energy counter: %s", no_counter)
            try:
                sources.append(NvmlPowerSampler(nvml=nvml))
            except SourceUnavailableError as reason:
                logger.info("%s not available: %s", NvmlPowerSampler.name, reason)
    sources.extend(available_rapl_sources(powercap_root))
    sources.extend([CpuTimeEstimate(), RamEstimate()])
    logger.info("energy sources: %s", ", ".join(f"{s.name} ({s.component})" for s in sources))
    return sources
