"""Byte-level language-modelling text: the CPython standard library's source files.

One example per file, split by file so no module is seen in training and evaluated on. Each
split has a byte budget; files are taken in sha1 order until it is spent, the last one cut.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from green_deploy.zoo.data.base import RawDataset, RawSplit
from green_deploy.zoo.data.manifest import STDLIB_ROOT
from green_deploy.zoo.data.settings import require_fractions, require_non_negative
from green_deploy.zoo.data.splitting import SPLITS, SplitName, order_key, split_of
from green_deploy.zoo.data.stdlib_files import stdlib_python_files

NAME = "stdlib_bytes"


@dataclass(frozen=True)
class StdlibBytesSettings:
    """Budgets in bytes per split (None = every file of the split)."""

    max_train_bytes: int | None = 4_000_000
    max_val_bytes: int | None = 200_000
    max_test_bytes: int | None = 400_000
    val_fraction: float = 0.05
    test_fraction: float = 0.1

    def __post_init__(self) -> None:
        require_non_negative(NAME, max_train_bytes=self.max_train_bytes, max_val_bytes=self.max_val_bytes)
        require_non_negative(NAME, max_test_bytes=self.max_test_bytes)
        require_fractions(NAME, self.val_fraction, self.test_fraction)

    def budget_bytes(self, split: SplitName) -> int | None:
        return {"train": self.max_train_bytes, "val": self.max_val_bytes, "test": self.max_test_bytes}[split]


def take_budget(files: Sequence[tuple[str, bytes]], budget_bytes: int | None) -> list[tuple[str, bytes]]:
    """Files in the given order until ``budget_bytes`` is reached, the last one truncated."""
    taken = []
    left = budget_bytes
    for path, data in files:
        if left is not None and left <= 0:
            break
        chunk = data if left is None else data[:left]
        if chunk:
            taken.append((path, chunk))
        if left is not None:
            left -= len(chunk)
    return taken


class _StdlibBytes:
    name = NAME
    root = STDLIB_ROOT
    settings_class = StdlibBytesSettings
    subset_keys: tuple[str, ...] = ()
    at_most_keys: tuple[str, ...] = ()

    def scan(self, settings: StdlibBytesSettings, root_path: Path) -> list[str]:
        return stdlib_python_files(root_path)

    def scan_settings(self, settings: StdlibBytesSettings) -> dict[str, Any]:
        return {}

    def needs(self, settings: StdlibBytesSettings) -> dict[str, Any]:
        return self.scan_settings(settings)

    def wanted(self, paths: Sequence[str], settings: StdlibBytesSettings) -> list[str]:
        return list(paths)

    def build(self, files: Mapping[str, bytes], settings: StdlibBytesSettings) -> RawDataset:
        by_split: dict[SplitName, list[tuple[str, bytes]]] = {split: [] for split in SPLITS}
        for path in sorted(files, key=order_key):
            by_split[split_of(path, settings.val_fraction, settings.test_fraction)].append(
                (path, files[path])
            )
        splits = {}
        paths = {}
        for split in SPLITS:
            taken = take_budget(by_split[split], settings.budget_bytes(split))
            splits[split] = RawSplit([data for _, data in taken])
            paths[split] = [path for path, _ in taken]
        n_bytes = {split: sum(len(x) for x in splits[split].x) for split in SPLITS}
        return RawDataset(
            name=NAME,
            train=splits["train"],
            val=splits["val"],
            test=splits["test"],
            extra={"files": paths, "n_bytes": n_bytes},
        )

    def describe(self, settings: StdlibBytesSettings) -> str:
        return "CPython standard library .py files as bytes, one example per file, split by file"


SOURCE = _StdlibBytes()
