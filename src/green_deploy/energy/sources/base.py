"""What every energy source provides: a cumulative reading in joules for one component.

Each source is one module beside this one (NVML energy counter, NVML power sampling, RAPL,
estimates); a new meter is a new module, not a branch in an ``if``. Window-based tools that
cannot give a cumulative reading (CodeCarbon's tasks) implement ``WindowTracker`` instead.
"""

from __future__ import annotations

from typing import Protocol

from green_deploy.energy.record import Component, ComponentEnergy
from green_deploy.errors import GreenDeployError


class SourceError(GreenDeployError):
    """A source could not be read (driver error, file unreadable); the monitor falls back."""


class SourceUnavailableError(SourceError):
    """A source does not exist on this machine (no GPU, no powercap, no permission to read it).

    The message says why and, where something can be done, what (e.g. how to grant read access).
    """


class EnergySource(Protocol):
    """A cumulative energy reading for one component (summed over its devices).

    ``read_j`` returns joules since an arbitrary origin fixed when the source was opened; only
    differences between two reads mean anything. ``resolution_s`` is how often the underlying
    value updates: a window shorter than that is not trusted alone. A measured source whose reads
    may be off by part of a step may say by how much a read taken now can be off
    (``edge_uncertainty_j``, see ``edge_uncertainty``); one that does not is taken to be off by
    up to one step (its power times ``resolution_s``) at each edge.
    """

    name: str
    component: Component
    measured: bool
    resolution_s: float

    def read_j(self) -> float:
        """Cumulative joules; raises ``SourceError`` when the reading fails."""
        ...

    def close(self) -> None: ...


def edge_uncertainty(source: EnergySource) -> float | None:
    """What a read of ``source`` taken now may be off by, where the source can say (``None``)."""
    value = getattr(source, "edge_uncertainty_j", None)
    return float(value) if value is not None else None


class WindowTracker(Protocol):
    """A tool that measures one window at a time itself (CodeCarbon's ``start_task``/``stop_task``)."""

    name: str

    def begin(self, window: str) -> None: ...

    def end(self, window: str) -> list[ComponentEnergy]:
        """Energy per component of the window that ``begin`` opened."""
        ...

    def close(self) -> None: ...
