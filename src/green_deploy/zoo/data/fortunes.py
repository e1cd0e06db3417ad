"""Which ``fortune`` category a quotation comes from (Debian ``fortunes`` / ``fortunes-min``).

The default categories are those with at least 500 entries here (``humorists`` and
``literature`` have fewer than 300). A text found in two categories has no single true label
and is dropped from both.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from green_deploy.errors import DatasetSourceError
from green_deploy.zoo.data.base import RawDataset, RawSplit
from green_deploy.zoo.data.settings import require, require_fractions, require_non_negative
from green_deploy.zoo.data.splitting import SPLITS, SplitName, order_key, split_of, take_in_order

NAME = "fortunes"
ROOT = "/usr/share/games/fortunes"
DEFAULT_CATEGORIES = (
    "computers",
    "cookie",
    "definitions",
    "people",
    "platitudes",
    "politics",
    "science",
    "songs-poems",
)
_OVERSTRIKE = re.compile(r".\x08")  # "_\bX" underlines and bolds for old terminals


@dataclass(frozen=True)
class FortunesSettings:
    """Lengths are in characters; ``max_per_class`` caps each category before splitting."""

    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    max_per_class: int | None = 600
    min_chars: int = 20
    max_chars: int = 400
    val_fraction: float = 0.1
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        require(len(self.categories) >= 2, NAME, f"needs at least two categories, got {self.categories}")
        require(len(set(self.categories)) == len(self.categories), NAME, "categories repeat")
        for category in self.categories:
            require("/" not in category and not category.startswith("."), NAME, f"bad category {category!r}")
        require_non_negative(NAME, max_per_class=self.max_per_class, min_chars=self.min_chars)
        require(self.max_chars >= max(self.min_chars, 1), NAME, "max_chars must be >= min_chars and >= 1")
        require_fractions(NAME, self.val_fraction, self.test_fraction)


def parse_fortunes(data: bytes) -> list[str]:
    """Entries of a strfile source: blocks separated by lines holding only ``%``."""
    text = _OVERSTRIKE.sub("", data.decode("utf-8", errors="replace"))
    entries: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.strip() == "%":
            entries.append("\n".join(current).strip())
            current = []
        else:
            current.append(line.rstrip())
    entries.append("\n".join(current).strip())
    return [entry for entry in entries if entry]


def normalize(text: str) -> str:
    """The identity of a text for deduplication and splitting: case and spacing ignored."""
    return " ".join(text.split()).casefold()


class _Fortunes:
    name = NAME
    root = ROOT
    settings_class = FortunesSettings
    subset_keys = ("categories",)
    at_most_keys: tuple[str, ...] = ()

    def scan(self, settings: FortunesSettings, root_path: Path) -> list[str]:
        missing = [c for c in settings.categories if not (root_path / c).is_file()]
        if missing:
            raise DatasetSourceError(
                f"dataset {NAME!r}: fortune categories {missing} are not in {root_path}; "
                "install them with: apt-get install fortunes fortunes-min"
            )
        return sorted(settings.categories)

    def scan_settings(self, settings: FortunesSettings) -> dict[str, Any]:
        return {"categories": sorted(settings.categories)}

    def needs(self, settings: FortunesSettings) -> dict[str, Any]:
        return self.scan_settings(settings)

    def wanted(self, paths: Sequence[str], settings: FortunesSettings) -> list[str]:
        return [path for path in paths if path in settings.categories]

    def build(self, files: Mapping[str, bytes], settings: FortunesSettings) -> RawDataset:
        classes = tuple(sorted(settings.categories))
        # normalized text -> (label, first spelling); a text in two categories is ambiguous.
        seen: dict[str, tuple[int, str]] = {}
        ambiguous: set[str] = set()
        for label, category in enumerate(classes):
            for entry in parse_fortunes(files[category]):
                if len(entry) < settings.min_chars:
                    continue
                key = normalize(entry)
                if key in seen and seen[key][0] != label:
                    ambiguous.add(key)
                seen.setdefault(key, (label, entry[: settings.max_chars]))
        by_class: dict[int, list[str]] = defaultdict(list)
        for key, (label, _) in seen.items():
            if key not in ambiguous:
                by_class[label].append(key)
        split_rows: dict[SplitName, list[tuple[str, int]]] = {split: [] for split in SPLITS}
        for label in range(len(classes)):
            for key in take_in_order(by_class[label], str, settings.max_per_class):
                split = split_of(key, settings.val_fraction, settings.test_fraction)
                split_rows[split].append((key, label))
        splits = {}
        for split, rows in split_rows.items():
            rows.sort(key=lambda row: order_key(row[0]))  # shuffled, yet independent of dict order
            labels = np.array([label for _, label in rows], dtype=np.int64)
            splits[split] = RawSplit([seen[key][1] for key, _ in rows], labels)
        return RawDataset(
            name=NAME,
            train=splits["train"],
            val=splits["val"],
            test=splits["test"],
            classes=classes,
            extra={"n_ambiguous_dropped": len(ambiguous)},
        )

    def describe(self, settings: FortunesSettings) -> str:
        return f"fortune categories {', '.join(sorted(settings.categories))} from {ROOT} (Debian fortunes)"


SOURCE = _Fortunes()
