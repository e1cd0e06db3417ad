"""CPU package and DRAM energy from the Linux powercap RAPL counters (``/sys/class/powercap``).

RAPL (Running Average Power Limit) is the hardware energy counter of Intel CPUs since Sandy
Bridge and of AMD CPUs since Zen; the kernel exposes it as one powercap zone per package and
subzones for its parts. Reading a counter costs a file read and no sampling thread, so this is
the preferred CPU and DRAM source wherever it can be read.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from green_deploy.energy.record import Component
from green_deploy.energy.sources.base import SourceError, SourceUnavailableError

logger = logging.getLogger(__name__)

RaplComponent = Literal["cpu", "dram"]
POWERCAP_ROOT = Path("/sys/class/powercap")

# Zones are ``<type>-rapl:N`` (a package, or psys) and ``<type>-rapl:N:M`` (its parts). AMD's
# kernels expose their RAPL through the ``intel-rapl`` control type too; some name it
# ``amd-rapl``. ``intel-rapl-mmio:N`` is deliberately not matched: it is a second interface to
# the same package counter, and summing it as well would count the package twice.
_ZONE_DIR = re.compile(r"^(?P<control_type>[a-z]+-rapl):(?P<index>\d+(?::\d+)*)$")
# Multi-die CPUs name their zones ``package-0-die-0``, ``package-0-die-1``: one counter per die,
# all summed. ``psys`` (the whole platform), ``core`` and ``uncore`` are skipped: the package
# already includes core and uncore, and psys includes the package.
_PACKAGE_NAME = re.compile(r"^package-\d+(-die-\d+)?$")
_DRAM_NAME = "dram"

# The counters update about every 1 ms (Intel SDM Vol. 3B, "Platform Specific Power Management
# Support", RAPL energy status; measured at ~1 ms by Khan et al., "RAPL in Action", ACM TOMPECS
# 2018). A window shorter than a few milliseconds is mostly update jitter.
_RESOLUTION_S = 0.001


@dataclass
class _ZoneCounter:
    """One zone's counter and the last raw value seen, to detect wrap-around."""

    energy_path: Path
    max_range_uj: int
    last_uj: int


class RaplSource:
    """Cumulative CPU-package or DRAM energy, summed over every socket's RAPL zone.

    ``component="cpu"`` sums the ``package-*`` zones; ``component="dram"`` sums the ``dram``
    zones (subzones such as ``intel-rapl:0:1``). Each zone's ``energy_uj`` wraps to zero after
    ``max_energy_range_uj``; one wrap between two reads is corrected exactly, but two are not
    detectable, so ``read_j`` must be called more often than once per wrap period,
    ``max_energy_range_uj / power``. With Intel's usual 61 µJ energy unit the range is 2^32 units,
    about 262 kJ, i.e. about 12 minutes at 350 W; AMD's 15.3 µJ unit (and Intel's DRAM unit)
    gives about 65.5 kJ, i.e. about 3 minutes for a 360 W EPYC at full load. ``wrap_period_s``
    computes it for a given power.

    Raises:
        SourceUnavailableError: no RAPL zone for the component, or ``energy_uj`` not readable.
    """

    name: str = "rapl"
    measured: bool = True
    resolution_s: float = _RESOLUTION_S

    def __init__(self, component: RaplComponent, root: Path = POWERCAP_ROOT) -> None:
        if component not in get_args(RaplComponent):
            raise ValueError(f"RAPL measures 'cpu' or 'dram', not {component!r}")
        self.component: Component = component
        self.root = root
        zones = discover(root)[component]
        if not zones:
            where = f"under {root}" if root.is_dir() else f"({root} does not exist)"
            raise SourceUnavailableError(
                f"no RAPL zones for {component} {where}; RAPL needs an Intel or AMD CPU with the "
                "intel_rapl/amd-rapl driver; virtual machines usually hide it"
                + ("; many CPUs (most desktops, AMD) have no DRAM domain" if component == "dram" else "")
            )
        self._counters = tuple(self._open_zone(zone) for zone in zones)
        self._total_uj = 0
        logger.debug("RAPL %s opened on %s", component, ", ".join(z.name for z in zones))

    @property
    def zones(self) -> tuple[Path, ...]:
        """The zone directories summed, e.g. ``intel-rapl:0`` and ``intel-rapl:1`` for two sockets."""
        return tuple(c.energy_path.parent for c in self._counters)

    def read_j(self) -> float:
        """Joules since the source was opened, summed over its zones.

        Raises:
            SourceError: a counter could not be read or held garbage; no state is changed then.
        """
        raw_uj = [_read_uj(c.energy_path, after_open=True) for c in self._counters]
        for counter, new_uj in zip(self._counters, raw_uj, strict=True):
            if new_uj > counter.max_range_uj:
                raise SourceError(
                    f"{counter.energy_path} reads {new_uj} µJ, above max_energy_range_uj "
                    f"{counter.max_range_uj}"
                )
        # Only once every zone has been read does any state change, so a failed read can be retried.
        for counter, new_uj in zip(self._counters, raw_uj, strict=True):
            if new_uj >= counter.last_uj:
                self._total_uj += new_uj - counter.last_uj
            else:
                # One wrap. The true modulus is max_energy_range_uj plus one counter unit (the
                # range is (2^32 - 1) units), so each wrap undercounts by one unit, 15-61 µJ.
                self._total_uj += counter.max_range_uj - counter.last_uj + new_uj
            counter.last_uj = new_uj
        return self._total_uj / 1e6

    def wrap_period_s(self, power_w: float) -> float:
        """Seconds until the fastest-wrapping zone wraps at ``power_w`` per zone: the longest safe
        interval between two ``read_j`` calls."""
        if power_w <= 0:
            raise ValueError(f"power_w must be positive, got {power_w}")
        return min(c.max_range_uj for c in self._counters) / 1e6 / power_w

    def close(self) -> None:
        """Nothing to release: every read opens and closes its file."""

    def __repr__(self) -> str:
        return f"RaplSource({self.component!r}, zones={[z.name for z in self.zones]})"

    @staticmethod
    def _open_zone(zone: Path) -> _ZoneCounter:
        energy_path = zone / "energy_uj"
        try:
            max_range_uj = _read_uj(zone / "max_energy_range_uj", after_open=False)
            last_uj = _read_uj(energy_path, after_open=False)
        except PermissionError as exc:
            raise SourceUnavailableError(_permission_message(zone, exc)) from exc
        if max_range_uj <= 0:
            raise SourceUnavailableError(
                f"{zone / 'max_energy_range_uj'} reads {max_range_uj}: wrap-around cannot be corrected"
            )
        return _ZoneCounter(energy_path=energy_path, max_range_uj=max_range_uj, last_uj=last_uj)


def discover(root: Path = POWERCAP_ROOT) -> dict[RaplComponent, list[Path]]:
    """Zone directories per component under ``root``: ``{"cpu": [...], "dram": [...]}``.

    Missing or unreadable trees give empty lists; whether that matters is the caller's to say.
    When two control types (``intel-rapl`` and ``amd-rapl``) both offer zones, only the first
    is kept: they would be two views of the same counters.
    """
    found: dict[RaplComponent, dict[str, list[Path]]] = {"cpu": {}, "dram": {}}
    try:
        entries = sorted(root.iterdir(), key=_zone_sort_key)
    except OSError:
        return {"cpu": [], "dram": []}
    for entry in entries:
        match = _ZONE_DIR.match(entry.name)
        if match is None or not entry.is_dir():
            continue
        try:
            zone_name = (entry / "name").read_text().strip()
        except OSError as exc:
            logger.debug("skipping RAPL zone %s: %s", entry, exc)
            continue
        component: RaplComponent | None = (
            "cpu" if _PACKAGE_NAME.match(zone_name) else "dram" if zone_name == _DRAM_NAME else None
        )
        if component is not None:
            found[component].setdefault(match["control_type"], []).append(entry)
    result: dict[RaplComponent, list[Path]] = {}
    for component, by_type in found.items():
        control_types = sorted(by_type, key=lambda t: (t != "intel-rapl", t))
        if len(control_types) > 1:
            logger.warning(
                "RAPL %s zones under both %s; using %s only, to avoid counting twice",
                component,
                " and ".join(control_types),
                control_types[0],
            )
        result[component] = by_type[control_types[0]] if control_types else []
    return result


def available_rapl_sources(root: Path = POWERCAP_ROOT) -> list[RaplSource]:
    """The RAPL sources (cpu, dram) that open on this machine; logs at INFO why any does not."""
    sources: list[RaplSource] = []
    for component in get_args(RaplComponent):
        try:
            sources.append(RaplSource(component, root))
        except SourceUnavailableError as exc:
            logger.info("RAPL %s not available: %s", component, exc)
    return sources


def _read_uj(path: Path, *, after_open: bool) -> int:
    """An integer microjoule file. After opening, any failure is a ``SourceError`` naming the
    file; while opening, ``PermissionError`` is let through to become advice."""
    try:
        text = path.read_text()
    except PermissionError:
        if not after_open:
            raise
        raise SourceError(f"cannot read {path}: permission denied (it was readable when opened)") from None
    except OSError as exc:
        error = SourceError if after_open else SourceUnavailableError
        raise error(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        value = int(text.strip())
    except ValueError:
        error = SourceError if after_open else SourceUnavailableError
        raise error(f"{path} holds {text.strip()[:40]!r}, not an integer of microjoules") from None
    if value < 0:
        error = SourceError if after_open else SourceUnavailableError
        raise error(f"{path} holds a negative count, {value}")
    return value


def _permission_message(zone: Path, exc: PermissionError) -> str:
    control_type = zone.name.split(":", 1)[0]
    pattern = f"{zone.parent}/{control_type}:*"
    return (
        f"cannot read {zone / 'energy_uj'}: {exc.strerror or 'permission denied'}. Since Linux 5.10 "
        "(and stable kernels patched in November 2020) energy_uj is readable by root only, against "
        "the PLATYPUS power side channel (CVE-2020-8694). Until reboot: "
        f"sudo chmod o+r {pattern}/energy_uj {pattern}:*/energy_uj . To persist it, a udev rule, "
        "e.g. /etc/udev/rules.d/99-rapl-read.rules: "
        'SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chmod o+r /sys%p/energy_uj" . '
        "Trade-off: every local user can then read the counters PLATYPUS uses to infer secrets "
        "such as keys; on a shared machine grant one group instead (chgrp + chmod g+r)."
    )


def _zone_sort_key(path: Path) -> tuple[str, tuple[int, ...]]:
    """``intel-rapl:2`` before ``intel-rapl:10``: numeric, not lexical, order."""
    control_type, _, index = path.name.partition(":")
    parts = index.split(":")
    numbers = tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (-1,)
    return control_type, numbers
