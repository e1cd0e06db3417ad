"""The study's results on disk: one JSON file per measured cell and per accuracy pass.

Cells belong to a study (``<work_dir>/<study>/cells/``), and so do the measurements of the
machine's reference work (``<study>/reference/``, ``evaluate.reference``); accuracy passes are
keyed by what they depend on (``evaluate.accuracy.accuracy_key``), so studies share them
(``<work_dir>/accuracy/``).

A file is written whole (temporary file, fsync, rename) as soon as its measurement ends, so a
run killed at any point (``kill -9`` included) leaves finished cells intact and no half cell;
the next run skips what is there. A file is never overwritten: the name is the configuration
hash, and a changed configuration gets a new name. A file that cannot be read (edited by hand,
a broken disk) is moved aside under ``*.corrupt`` with a warning and measured again.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from green_deploy.errors import ArtifactError

logger = logging.getLogger(__name__)

CELLS = "cells"
ACCURACY = "accuracy"
REFERENCE = "reference"
GPU_FLOOR = "gpu_floor"


class StudyStore:
    """``<folder>/cells/<hash>.json`` and ``<accuracy_dir>/<key>.json`` (default
    ``<folder>/accuracy``)."""

    def __init__(self, folder: Path | str, accuracy_dir: Path | str | None = None) -> None:
        self.folder = Path(folder)
        self.accuracy_dir = self.folder / ACCURACY if accuracy_dir is None else Path(accuracy_dir)

    def remove_partial_writes(self) -> int:
        """Delete the temporary files of writes that a killed run left unfinished; how many."""
        partial = [*self.folder.glob(f"{CELLS}/*.tmp"), *self.accuracy_dir.glob("*.tmp")]
        for path in partial:
            path.unlink(missing_ok=True)
        return len(partial)

    def cell(self, config_hash: str) -> dict[str, Any] | None:
        """The stored cell (``{"row": ..., "repetitions": [...]}``) or ``None``."""
        return self._read(self.folder / CELLS / f"{config_hash}.json", ("row", "repetitions"))

    def save_cell(self, config_hash: str, row: dict[str, Any], repetitions: list[dict[str, Any]]) -> Path:
        return self._write(
            self.folder / CELLS / f"{config_hash}.json", {"row": row, "repetitions": repetitions}
        )

    def accuracy(self, key: str) -> dict[str, Any] | None:
        return self._read(self.accuracy_dir / f"{key}.json", ("metrics", "intervals"))

    def save_accuracy(self, key: str, accuracy: dict[str, Any]) -> Path:
        return self._write(self.accuracy_dir / f"{key}.json", accuracy)

    def save_reference(self, reference: dict[str, Any]) -> Path:
        """One measurement of the machine's reference (``evaluate.reference``), named by when."""
        return self._write(self.folder / REFERENCE / f"{time.time_ns()}.json", reference)

    def references(self) -> list[dict[str, Any]]:
        """Every readable reference measurement of the study, oldest first."""
        paths = sorted((self.folder / REFERENCE).glob("*.json"))
        found = (self._read(path, ("version", "energy_per_unit_j")) for path in paths)
        return [reference for reference in found if reference is not None]

    def save_gpu_floor(self, floor: dict[str, Any]) -> Path:
        """One measurement of the GPU's bf16 matmul floor (``evaluate.reference.FloorRun``)."""
        return self._write(self.folder / GPU_FLOOR / f"{time.time_ns()}.json", floor)

    def gpu_floors(self) -> list[dict[str, Any]]:
        """Every readable floor measurement of the study, oldest first."""
        paths = sorted((self.folder / GPU_FLOOR).glob("*.json"))
        return [
            floor for floor in (self._read(path, ("pj_per_flop",)) for path in paths) if floor is not None
        ]

    def cells(self) -> list[dict[str, Any]]:
        """Every readable stored cell, oldest first."""
        paths = sorted((self.folder / CELLS).glob("*.json"), key=lambda p: p.stat().st_mtime)
        found = (self._read(path, ("row", "repetitions")) for path in paths)
        return [cell for cell in found if cell is not None]

    def _read(self, path: Path, required: tuple[str, ...]) -> dict[str, Any] | None:
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or any(key not in data for key in required):
                raise ValueError(f"not a stored result (needs {list(required)})")
        except (ValueError, UnicodeDecodeError) as error:
            aside = path.with_suffix(f".corrupt-{os.getpid()}")
            path.rename(aside)
            logger.warning(
                "%s cannot be read (%s); moved to %s, it will be measured again", path, error, aside
            )
            return None
        return data

    @staticmethod
    def _write(path: Path, data: dict[str, Any]) -> Path:
        if path.exists():
            raise ArtifactError(
                f"{path} exists: a finished result is never overwritten (delete it to measure again)"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
            json.dump(data, handle, indent=1, allow_nan=True, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
        return path
