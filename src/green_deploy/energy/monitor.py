"""Named measurement windows over several energy sources at once.

Windows may nest or overlap (as in Zeus): each remembers every source's reading at its start.
At each edge the ``synchronize`` hook runs first (``torch.cuda.synchronize`` and the like), so
queued GPU work is inside the window it belongs to. Per component the first source in
``sources`` that read cleanly at both edges is reported and the others are kept beside it; a
source that fails mid-run hands over to the next with a warning in the record, and a component
that nothing could measure is absent, never zero.

Short windows: a counter that updates every ~100 ms (NVML) cannot resolve a 10 ms inference;
reading it around one call gives mostly 0 or one whole step. ``measure`` therefore repeats the
work until at least ``min_duration_s`` (default 1 s) has passed inside one window and divides,
which is accurate to about the counter's step over the whole window.

Every measured window carries its uncertainty (``ComponentEnergy.uncertainty_j``): what its two
edges may be off by, as the source states it (the edge-corrected NVML counter) or one step of a
stepping counter at each edge. With ``accuracy`` set (relative, e.g. 0.02), a window whose
uncertainty exceeds it is flagged in its warnings, and ``measure`` extends the window (up to
``max_extension`` times ``min_duration_s``) until the accuracy is reached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

from green_deploy.energy.record import COMPONENTS, ComponentEnergy, EnergyMeasurement
from green_deploy.energy.sources.base import EnergySource, SourceError, WindowTracker, edge_uncertainty

logger = logging.getLogger(__name__)

DEFAULT_MIN_DURATION_S = 1.0
DEFAULT_MAX_EXTENSION = 10.0  # measure() stops extending a window at this many times min_duration_s
DISAGREEMENT_TOLERANCE = 0.10  # relative difference between two measured sources worth a warning


@dataclass(frozen=True)
class IdleBaseline:
    """Idle power per source, measured once per study over ``duration_s``."""

    duration_s: float
    power_w: dict[str, float]  # source name -> watts


@dataclass
class _OpenWindow:
    start_s: float
    readings: list[float | SourceError]
    uncertainties: list[float | None]
    tracker_errors: dict[str, str]


class EnergyMonitor:
    """Measures named windows; see the module docstring for the rules it follows."""

    def __init__(
        self,
        sources: Sequence[EnergySource],
        trackers: Sequence[WindowTracker] = (),
        synchronize: Callable[[], None] | None = None,
        accuracy: float | None = None,
        max_extension: float = DEFAULT_MAX_EXTENSION,
    ):
        if accuracy is not None and not 0 < accuracy < 1:
            raise ValueError(f"accuracy is relative (e.g. 0.02 for 2%), got {accuracy}")
        self.sources = list(sources)
        self.trackers = list(trackers)
        self.accuracy = accuracy
        self.max_extension = max_extension
        self._synchronize = synchronize or (lambda: None)
        self._open: dict[str, _OpenWindow] = {}
        self.idle: IdleBaseline | None = None

    # ---- windows -----------------------------------------------------------------------
    def begin_window(self, name: str) -> None:
        if name in self._open:
            raise ValueError(f"window {name!r} is already open")
        self._synchronize()
        readings, uncertainties = self._read_all()
        tracker_errors = {}
        for tracker in self.trackers:
            try:
                tracker.begin(name)
            except Exception as error:  # a comparison tool must never break the measurement
                tracker_errors[tracker.name] = f"{type(error).__name__}: {error}"
        self._open[name] = _OpenWindow(time.perf_counter(), readings, uncertainties, tracker_errors)

    def end_window(self, name: str, n_items: int = 1) -> EnergyMeasurement:
        if name not in self._open:
            raise ValueError(f"window {name!r} was never begun (open: {sorted(self._open)})")
        if n_items < 1:
            raise ValueError(f"n_items must be at least 1, got {n_items}")
        self._synchronize()
        end_s = time.perf_counter()
        end_readings, end_uncertainties = self._read_all()
        window = self._open.pop(name)
        duration_s = end_s - window.start_s
        warnings: list[str] = []
        readings: list[ComponentEnergy] = []
        for source, start, end, edges in zip(
            self.sources,
            window.readings,
            end_readings,
            zip(window.uncertainties, end_uncertainties, strict=True),
            strict=True,
        ):
            failure = (
                start if isinstance(start, SourceError) else end if isinstance(end, SourceError) else None
            )
            if failure is not None:
                warnings.append(f"{source.name} ({source.component}) failed: {failure}")
                continue
            energy_j = end - start  # type: ignore[operator]
            energy = ComponentEnergy(
                source.component,
                source.name,
                source.measured,
                energy_j,
                uncertainty_j=_window_uncertainty(source, energy_j, duration_s, edges),
            )
            readings.append(self._with_idle(energy, duration_s))
        for tracker in self.trackers:
            if tracker.name in window.tracker_errors:
                warnings.append(f"{tracker.name} could not start: {window.tracker_errors[tracker.name]}")
                continue
            try:
                readings.extend(self._with_idle(r, duration_s) for r in tracker.end(name))
            except Exception as error:
                warnings.append(f"{tracker.name} failed: {type(error).__name__}: {error}")
        components, alternatives = self._choose(readings, warnings)
        warnings.extend(self._resolution_warnings(components, duration_s))
        warnings.extend(self._accuracy_warnings(components))
        warnings.extend(_disagreements(components, alternatives))
        return EnergyMeasurement(
            name, duration_s, n_items, tuple(components), tuple(alternatives), tuple(warnings)
        )

    @contextmanager
    def window(self, name: str, n_items: int = 1) -> Iterator[list[EnergyMeasurement]]:
        """``with monitor.window("x", n) as result: ...``; ``result[0]`` is the measurement afterwards."""
        result: list[EnergyMeasurement] = []
        self.begin_window(name)
        try:
            yield result
        finally:
            result.append(self.end_window(name, n_items))

    def measure(
        self,
        name: str,
        work: Callable[[], object],
        n_items_per_call: int = 1,
        min_duration_s: float = DEFAULT_MIN_DURATION_S,
        max_calls: int | None = None,
    ) -> EnergyMeasurement:
        """Run ``work`` repeatedly inside one window until ``min_duration_s`` has passed (or
        ``max_calls``), so the window is long enough for the slowest source, and, with
        ``accuracy`` set, until the window's uncertainty is within it (at most ``max_extension``
        times ``min_duration_s``); ``n_items`` of the result counts every item of every call."""
        calls = 0
        self.begin_window(name)
        start_s = time.perf_counter()
        try:
            while True:
                work()
                calls += 1
                elapsed_s = time.perf_counter() - start_s
                if max_calls is not None and calls >= max_calls:
                    break
                if elapsed_s >= min_duration_s and (
                    elapsed_s >= self.max_extension * min_duration_s or self._accurate_so_far(name)
                ):
                    break
        finally:
            measurement = self.end_window(name, n_items=max(calls, 1) * n_items_per_call)
        return measurement

    # ---- idle baseline -----------------------------------------------------------------
    def measure_idle(self, duration_s: float = 5.0) -> IdleBaseline:
        """Idle power of every source over ``duration_s`` of sleep; later windows report it and
        the idle-subtracted (active) energy beside the total."""
        self.idle = None
        self.begin_window("__idle__")
        time.sleep(duration_s)
        measurement = self.end_window("__idle__")
        power = {
            r.source: r.energy_j / measurement.duration_s
            for r in (*measurement.components, *measurement.alternatives)
        }
        self.idle = IdleBaseline(measurement.duration_s, power)
        logger.info(
            "idle baseline over %.1f s: %s",
            measurement.duration_s,
            {k: f"{v:.2f} W" for k, v in power.items()},
        )
        return self.idle

    # ---- internals ---------------------------------------------------------------------
    def _read_all(self) -> tuple[list[float | SourceError], list[float | None]]:
        """Every source's reading, and what each read may be off by where the source says."""
        readings: list[float | SourceError] = []
        uncertainties: list[float | None] = []
        for source in self.sources:
            try:
                readings.append(source.read_j())
            except SourceError as error:
                readings.append(error)
            uncertainties.append(edge_uncertainty(source))
        return readings, uncertainties

    def _accurate_so_far(self, name: str) -> bool:
        """Whether the open window, were it ended now, would be within ``accuracy`` for every
        measured source that reads cleanly (without ending it)."""
        if self.accuracy is None:
            return True
        window = self._open[name]
        duration_s = time.perf_counter() - window.start_s
        for source, start, start_edge in zip(
            self.sources, window.readings, window.uncertainties, strict=True
        ):
            if isinstance(start, SourceError) or not source.measured:
                continue
            try:
                energy_j = source.read_j() - start
            except SourceError:
                continue
            bound = _window_uncertainty(source, energy_j, duration_s, (start_edge, edge_uncertainty(source)))
            if bound is not None and (energy_j <= 0 or bound / energy_j > self.accuracy):
                return False
        return True

    def _accuracy_warnings(self, components: list[ComponentEnergy]) -> list[str]:
        if self.accuracy is None:
            return []
        return [
            f"{c.component} energy from {c.source} is uncertain by ±{c.relative_uncertainty:.1%}, more than the "
            f"requested ±{self.accuracy:.1%}: lengthen the window"
            for c in components
            if c.relative_uncertainty is not None and c.relative_uncertainty > self.accuracy
        ]

    def _with_idle(self, reading: ComponentEnergy, duration_s: float) -> ComponentEnergy:
        if self.idle is None or reading.source not in self.idle.power_w:
            return reading
        idle_w = self.idle.power_w[reading.source]
        return replace(reading, idle_power_w=idle_w, active_energy_j=reading.energy_j - idle_w * duration_s)

    def _choose(
        self, readings: list[ComponentEnergy], warnings: list[str]
    ) -> tuple[list[ComponentEnergy], list[ComponentEnergy]]:
        components, alternatives = [], []
        for component in COMPONENTS:
            candidates = [r for r in readings if r.component == component]
            wanted = [s.name for s in self.sources if s.component == component]
            if not candidates:
                if wanted:
                    warnings.append(
                        f"no source could measure {component}: {component} energy is missing, not zero"
                    )
                continue
            best = candidates[0]
            if wanted and best.source != wanted[0]:
                warnings.append(f"{component} energy from {best.source}, not {wanted[0]}")
            components.append(best)
            alternatives.extend(candidates[1:])
        return components, alternatives

    def _resolution_warnings(self, components: list[ComponentEnergy], duration_s: float) -> list[str]:
        resolution = {s.name: s.resolution_s for s in self.sources}
        return [
            f"window of {duration_s * 1e3:.1f} ms is shorter than {c.source}'s update interval "
            f"(~{resolution[c.source] * 1e3:.0f} ms): not trusted alone; repeat it (EnergyMonitor.measure)"
            for c in components
            if duration_s < resolution.get(c.source, 0.0)
        ]

    def close(self) -> None:
        parts: tuple[EnergySource | WindowTracker, ...] = (*self.sources, *self.trackers)
        for part in parts:
            try:
                part.close()
            except Exception as error:
                logger.warning("closing %s failed: %s", part.name, error)


def _window_uncertainty(
    source: EnergySource, energy_j: float, duration_s: float, edges: tuple[float | None, float | None]
) -> float | None:
    """What a window of ``source`` may be off by: the two edges' stated uncertainties, or, for a
    measured source that states none, one update step (its mean power times ``resolution_s``) at
    each edge; ``None`` for estimates."""
    if not source.measured:
        return None
    if edges[0] is not None and edges[1] is not None:
        return edges[0] + edges[1]
    if duration_s <= 0:
        return None
    return 2 * max(energy_j, 0.0) / duration_s * source.resolution_s


def _disagreements(components: list[ComponentEnergy], alternatives: list[ComponentEnergy]) -> list[str]:
    warnings = []
    for best in components:
        for other in alternatives:
            if (
                other.component != best.component
                or not (best.measured and other.measured)
                or best.energy_j <= 0
            ):
                continue
            relative = (other.energy_j - best.energy_j) / best.energy_j
            if abs(relative) > DISAGREEMENT_TOLERANCE:
                warnings.append(
                    f"sources disagree on {best.component}: {best.source} {best.energy_j:.3g} J, "
                    f"{other.source} {other.energy_j:.3g} J ({relative:+.0%})"
                )
    return warnings
