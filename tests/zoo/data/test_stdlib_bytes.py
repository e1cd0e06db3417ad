"""Stdlib source as bytes: split by file, byte budgets, each example a prefix of its file."""

from __future__ import annotations

import itertools
import sysconfig
from pathlib import Path

import pytest

from green_deploy.zoo.data import RawDataset, load_dataset

SETTINGS = {"max_train_bytes": 60_000, "max_val_bytes": 10_000, "max_test_bytes": 20_000}


@pytest.fixture(scope="module")
def dataset() -> RawDataset:
    return load_dataset("stdlib_bytes", SETTINGS)


def test_no_file_in_two_splits(dataset: RawDataset) -> None:
    files = {split: set(paths) for split, paths in dataset.extra["files"].items()}
    for a, b in itertools.combinations(files, 2):
        assert not files[a] & files[b]


def test_budgets_are_met_exactly(dataset: RawDataset) -> None:
    for split, budget in ((dataset.train, 60_000), (dataset.val, 10_000), (dataset.test, 20_000)):
        assert sum(len(x) for x in split.x) == budget
        assert split.y is None and all(isinstance(x, bytes) for x in split.x)


def test_examples_are_prefixes_of_their_files(dataset: RawDataset) -> None:
    root = Path(sysconfig.get_paths()["stdlib"])
    for split in ("train", "test"):
        for path, data in zip(dataset.extra["files"][split], getattr(dataset, split).x, strict=True):
            assert (root / path).read_bytes().startswith(data)
            assert "/test/" not in f"/{path}" and not path.startswith("idlelib/")


def test_loads_are_identical(dataset: RawDataset) -> None:
    assert load_dataset("stdlib_bytes", SETTINGS).val.x == dataset.val.x
