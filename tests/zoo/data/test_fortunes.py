"""Fortune categories: deduplicated texts, split by text hash, labels from the category file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from green_deploy.zoo.data import RawDataset, load_dataset
from green_deploy.zoo.data.fortunes import ROOT, normalize, parse_fortunes

SETTINGS = {"max_per_class": 120, "max_chars": 150}


@pytest.fixture(scope="module")
def dataset() -> RawDataset:
    return load_dataset("fortunes", SETTINGS)


def test_splits_are_disjoint_and_deduplicated(dataset: RawDataset) -> None:
    seen: set[str] = set()
    for split in (dataset.train, dataset.val, dataset.test):
        keys = [normalize(text) for text in split.x]
        assert len(set(keys)) == len(keys)
        assert not seen & set(keys)
        seen |= set(keys)


def test_labels_come_from_the_category_file(dataset: RawDataset) -> None:
    entries = {c: {e[:150] for e in parse_fortunes(Path(ROOT, c).read_bytes())} for c in dataset.classes}
    for split in (dataset.train, dataset.val, dataset.test):
        assert split.y is not None and split.y.dtype == np.int64
        for text, label in zip(split.x, split.y, strict=True):
            assert text in entries[dataset.classes[label]]
            assert 20 <= len(text) <= 150


def test_sizes_follow_the_caps(dataset: RawDataset) -> None:
    counts = sum(
        np.bincount(s.y, minlength=len(dataset.classes)) for s in (dataset.train, dataset.val, dataset.test)
    )
    assert len(dataset.classes) == 8
    assert counts.max() <= 120 and counts.min() > 100
    assert len(dataset.train) > len(dataset.test) > len(dataset.val) > 0


def test_loads_are_identical(dataset: RawDataset) -> None:
    again = load_dataset("fortunes", SETTINGS)
    assert again.train.x == dataset.train.x and np.array_equal(again.test.y, dataset.test.y)


def test_parse_handles_overstrike_and_separators() -> None:
    data = b"first\nline\n%\n_\x08u_\x08n_\x08d_\x08e_\x08r\n%\n%\nlast"
    assert parse_fortunes(data) == ["first\nline", "under", "last"]
