"""Fashion-MNIST: the official test set, and val carved from train by a seeded permutation."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from green_deploy.zoo.data import RawDataset, load_dataset
from green_deploy.zoo.data.fashion_mnist import FILES, ROOT, read_idx


@pytest.fixture(scope="module")
def full() -> RawDataset:
    return load_dataset("fashion_mnist")


def _digests(images: np.ndarray) -> list[str]:
    return sorted(hashlib.sha1(image.tobytes()).hexdigest() for image in images)


def test_train_and_val_partition_the_training_file(full: RawDataset) -> None:
    raw = read_idx(Path(ROOT, FILES["train_images"]).read_bytes(), 3, "train")
    assert (len(full.train), len(full.val)) == (55_000, 5_000)
    assert _digests(np.concatenate([full.train.x, full.val.x])) == _digests(raw)


def test_test_is_the_official_t10k_set(full: RawDataset) -> None:
    raw = read_idx(Path(ROOT, FILES["test_images"]).read_bytes(), 3, "test")
    labels = read_idx(Path(ROOT, FILES["test_labels"]).read_bytes(), 1, "labels")
    assert np.array_equal(full.test.x, raw)
    assert np.array_equal(full.test.y, labels.astype(np.int64))


def test_types_and_labels(full: RawDataset) -> None:
    assert full.classes[0] == "T-shirt/top" and full.classes[9] == "Ankle boot"
    for split in (full.train, full.val, full.test):
        assert split.x.dtype == np.uint8 and split.x.shape[1:] == (28, 28)
        assert split.y is not None and split.y.dtype == np.int64
        assert set(np.unique(split.y)) == set(range(10))


def test_caps_and_seed() -> None:
    small = load_dataset("fashion_mnist", {"max_train": 100, "max_val": 50, "max_test": 30})
    again = load_dataset("fashion_mnist", {"max_train": 100, "max_val": 50, "max_test": 30})
    other_seed = load_dataset("fashion_mnist", {"max_val": 50, "max_train": 0, "max_test": 0, "seed": 1})
    assert (len(small.train), len(small.val), len(small.test)) == (100, 50, 30)
    assert np.array_equal(small.val.x, again.val.x) and np.array_equal(small.train.y, again.train.y)
    assert not np.array_equal(small.val.x, other_seed.val.x)
