"""CodeCarbon, the tool the field knows, side by side with green-deploy's own meters.

Always ``OfflineEmissionsTracker``: the online tracker calls out to geolocation services and a
cloud metadata address. ``tracking_mode="process"`` counts this process only, like the other
sources. CodeCarbon measures one task at a time (``start_task``/``stop_task``), so windows that
overlap while CodeCarbon is on get its figure only for the first one.

Its figures are flagged by what CodeCarbon actually did: CPU energy is measured only in its
RAPL / Windows EMI / powermetrics modes (otherwise a TDP or load model), GPU energy comes from
NVML (measured), RAM energy is always its model (estimated).
"""

from __future__ import annotations

import logging
from typing import Any

from green_deploy.energy.record import JOULES_PER_KWH, ComponentEnergy
from green_deploy.energy.sources.base import SourceUnavailableError

logger = logging.getLogger(__name__)

_MEASURING_CPU_MODES = {"intel_rapl", "windows_emi", "apple_powermetrics", "intel_power_gadget"}


class CodeCarbonTracker:
    """Adapter from CodeCarbon's tasks to the monitor's windows (``WindowTracker``)."""

    name = "codecarbon"

    def __init__(
        self, country_iso_code: str = "USA", measure_power_secs: float = 1.0, tracker: Any | None = None
    ):
        if tracker is None:
            try:
                from codecarbon import OfflineEmissionsTracker
            except ImportError as error:
                raise SourceUnavailableError(
                    "CodeCarbon is not installed (pip install codecarbon)"
                ) from error
            tracker = OfflineEmissionsTracker(
                country_iso_code=country_iso_code,
                tracking_mode="process",
                measure_power_secs=measure_power_secs,
                save_to_file=False,
                log_level="error",
                allow_multiple_runs=True,
            )
        self._tracker = tracker
        self._active: str | None = None
        self._tasks_started = 0

    def begin(self, window: str) -> None:
        if self._active is not None:
            raise RuntimeError(f"CodeCarbon measures one task at a time; {self._active!r} is still open")
        # CodeCarbon renames a repeated task name behind our back, and stopping by the old name
        # then stops the wrong task (a zero delta): every task gets a unique name instead.
        self._tasks_started += 1
        self._tracker.start_task(f"{window}#{self._tasks_started}")
        self._active = window

    def end(self, window: str) -> list[ComponentEnergy]:
        if self._active != window:
            return []  # this window overlapped another that CodeCarbon was measuring
        self._active = None
        data = self._tracker.stop_task()  # the active task
        if data is None:
            raise RuntimeError("CodeCarbon returned no data for the task")
        cpu_measured = self._cpu_mode() in _MEASURING_CPU_MODES
        readings = [
            ComponentEnergy("cpu", self.name, cpu_measured, data.cpu_energy * JOULES_PER_KWH),
            ComponentEnergy("dram", self.name, False, data.ram_energy * JOULES_PER_KWH),
        ]
        if getattr(data, "gpu_count", 0):
            readings.append(ComponentEnergy("gpu", self.name, True, data.gpu_energy * JOULES_PER_KWH))
        return readings

    def _cpu_mode(self) -> str | None:
        for hardware in getattr(self._tracker, "_hardware", []):
            if type(hardware).__name__ == "CPU":
                return getattr(hardware, "_mode", None)
        return None

    def close(self) -> None:
        try:
            self._tracker.stop()
        except Exception as error:  # stopping a tracker that only ran tasks may complain
            logger.debug("CodeCarbon stop: %s", error)
