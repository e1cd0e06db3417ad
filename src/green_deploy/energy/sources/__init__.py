"""Energy sources, one module per meter; ``discover_sources`` opens what this machine has."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from green_deploy.energy.sources.base import EnergySource, SourceError, SourceUnavailableError, WindowTracker

logger = logging.getLogger(__name__)

__all__ = ["EnergySource", "SourceError", "SourceUnavailableError", "WindowTracker", "discover_sources"]


def discover_sources(
    gpu: bool = True, nvml: Any | None = None, powercap_root: Path = Path("/sys/class/powercap")
) -> list[EnergySource]:
    """Every source this machine offers, best first per component.

    GPU: the NVML energy counter, else NVML power sampling. (``NvmlEdgeCorrectedCounter``, which
    completes each read to its moment, is not chosen here until it has run on the GPU machine.) CPU and DRAM: RAPL where readable,
    then the labelled estimates, which stay open as the fallback when a meter fails mid-run.
    """
    from green_deploy.energy.sources.estimate import CpuTimeEstimate, RamEstimate
    from green_deploy.energy.sources.nvml import NvmlEnergyCounter, NvmlPowerSampler
    from green_deploy.energy.sources.rapl import available_rapl_sources

    sources: list[EnergySource] = []
    if gpu:
        for source_class in (NvmlEnergyCounter, NvmlPowerSampler):
            try:
                sources.append(source_class(nvml=nvml))
                break
            except SourceUnavailableError as reason:
                logger.info("%s not available: %s", source_class.name, reason)
    sources.extend(available_rapl_sources(powercap_root))
    sources.extend([CpuTimeEstimate(), RamEstimate()])
    logger.info("energy sources: %s", ", ".join(f"{s.name} ({s.component})" for s in sources))
    return sources
