"""A fake ``/sys/class/powercap`` tree under a temporary directory, for tests of RAPL readers.

Usage::

    fake = FakePowercap(tmp_path / "powercap", monkeypatch)
    fake.add_zone("intel-rapl:0", "package-0", energy_uj=1_000)
    fake.add_zone("intel-rapl:0:1", "dram", max_range_uj=65_532_610_987)
    source = RaplSource("cpu", root=fake.root)
    fake.advance("intel-rapl:0", 5_000_000)  # +5 J, wrapping like the hardware does
"""

from __future__ import annotations

import builtins
import errno
import io
import os
from pathlib import Path
from typing import Any

import pytest

# What a current Intel package zone reports: 2^32 - 1 units of 61.04 µJ.
INTEL_MAX_RANGE_UJ = 262_143_328_850


class FakePowercap:
    """Writes zone directories as the kernel lays them out (``name``, ``energy_uj``,
    ``max_energy_range_uj``, plus the control-type directory ``intel-rapl`` with ``enabled``).

    ``monkeypatch`` is needed only by ``make_unreadable``.
    """

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch | None = None) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._monkeypatch = monkeypatch
        self._denied: set[str] = set()

    def add_zone(
        self, zone: str, name: str, *, max_range_uj: int = INTEL_MAX_RANGE_UJ, energy_uj: int = 0
    ) -> Path:
        """A zone such as ``add_zone("intel-rapl:0:1", "dram")``; returns its directory."""
        control_type = self.root / zone.split(":", 1)[0]
        control_type.mkdir(exist_ok=True)
        (control_type / "enabled").write_text("1\n")
        directory = self.root / zone
        directory.mkdir()
        (directory / "name").write_text(f"{name}\n")
        (directory / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
        (directory / "energy_uj").write_text(f"{energy_uj}\n")
        return directory

    def energy(self, zone: str) -> int:
        return int((self.root / zone / "energy_uj").read_text())

    def set_energy(self, zone: str, energy_uj: int) -> None:
        """Set the raw counter, as the hardware would after some work (no wrap logic)."""
        self.write(zone, "energy_uj", f"{energy_uj}\n")

    def advance(self, zone: str, delta_uj: int) -> None:
        """Add ``delta_uj`` to the counter, wrapping at ``max_energy_range_uj`` as RAPL readers
        model it (``delta_uj`` must be below the range: one wrap at most)."""
        max_range_uj = int((self.root / zone / "max_energy_range_uj").read_text())
        assert 0 <= delta_uj < max_range_uj, "a fake advance of a full range or more is undetectable"
        self.set_energy(zone, (self.energy(zone) + delta_uj) % max_range_uj)

    def write(self, zone: str, filename: str, text: str) -> None:
        """Raw content, e.g. garbage, for error paths."""
        (self.root / zone / filename).write_text(text)

    def remove(self, zone: str) -> None:
        """The zone disappears, as when the driver is unloaded."""
        directory = self.root / zone
        for child in directory.iterdir():
            child.unlink()
        directory.rmdir()

    def make_unreadable(self, zone: str) -> None:
        """Reading ``energy_uj`` raises ``PermissionError``, as for a non-root user since Linux 5.10.

        ``chmod 000`` alone does not stop root (the test suite runs as root here), so opening the
        file is also refused through ``open``; both pathlib and ``open()`` go through it.
        """
        if self._monkeypatch is None:
            raise RuntimeError("FakePowercap needs a monkeypatch to make a file unreadable")
        path = self.root / zone / "energy_uj"
        path.chmod(0)
        if not self._denied:
            self._install_denial(self._monkeypatch)
        self._denied.add(os.path.abspath(path))

    def _install_denial(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_open = io.open
        denied = self._denied

        def guarded_open(file: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(file, str | bytes | os.PathLike) and os.path.abspath(os.fsdecode(file)) in denied:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(io, "open", guarded_open)
        monkeypatch.setattr(builtins, "open", guarded_open)
