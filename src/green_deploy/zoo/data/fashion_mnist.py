"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (IDX files, gzip).

``test`` is the official 10k t10k set; ``val`` is carved from the 60k training file by a seeded
permutation so the official test set stays untouched for evaluation.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from green_deploy.errors import DatasetSourceError
from green_deploy.zoo.data.base import RawDataset, RawSplit
from green_deploy.zoo.data.settings import require, require_non_negative

NAME = "fashion_mnist"
ROOT = "/usr/share/datasets/fashion-mnist"
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
_IDX_UBYTE = 0x08  # IDX type code of unsigned bytes


@dataclass(frozen=True)
class FashionMnistSettings:
    """``max_*`` cap a split's size for fast tests (None = all)."""

    val_size: int = 5000
    seed: int = 0
    max_train: int | None = None
    max_val: int | None = None
    max_test: int | None = None

    def __post_init__(self) -> None:
        require_non_negative(NAME, val_size=self.val_size, max_train=self.max_train, max_val=self.max_val)
        require_non_negative(NAME, max_test=self.max_test)
        require(self.val_size < 60_000, NAME, f"val_size must leave training examples, got {self.val_size}")


def read_idx(data: bytes, expected_dims: int, what: str) -> np.ndarray:
    """Decode a gzip-compressed IDX file of unsigned bytes into an array of its shape."""
    raw = gzip.decompress(data)
    zero, type_code, n_dims = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code != _IDX_UBYTE or n_dims != expected_dims:
        raise DatasetSourceError(f"{what}: not an unsigned-byte IDX file with {expected_dims} dimension(s)")
    shape = struct.unpack(f">{n_dims}I", raw[4 : 4 + 4 * n_dims])
    values = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * n_dims)
    if values.size != int(np.prod(shape)):
        raise DatasetSourceError(f"{what}: {values.size} values for shape {shape}")
    return values.reshape(shape)


class _FashionMnist:
    name = NAME
    root = ROOT
    settings_class = FashionMnistSettings
    subset_keys: tuple[str, ...] = ()
    at_most_keys: tuple[str, ...] = ()

    def scan(self, settings: FashionMnistSettings, root_path: Path) -> list[str]:
        return sorted(FILES.values())

    def scan_settings(self, settings: FashionMnistSettings) -> dict[str, Any]:
        return {}

    def needs(self, settings: FashionMnistSettings) -> dict[str, Any]:
        return self.scan_settings(settings)

    def wanted(self, paths: Sequence[str], settings: FashionMnistSettings) -> list[str]:
        return list(paths)

    def build(self, files: Mapping[str, bytes], settings: FashionMnistSettings) -> RawDataset:
        arrays = {
            key: read_idx(files[file], 3 if key.endswith("images") else 1, file)
            for key, file in FILES.items()
        }
        train_x, train_y = arrays["train_images"], arrays["train_labels"].astype(np.int64)
        # A seeded permutation, not the file order: the val set is a random sample of training.
        permutation = np.random.default_rng(settings.seed).permutation(len(train_x))
        val_idx = permutation[: settings.val_size][: settings.max_val]
        train_idx = permutation[settings.val_size :][: settings.max_train]
        test_x = arrays["test_images"][: settings.max_test]
        test_y = arrays["test_labels"].astype(np.int64)[: settings.max_test]
        return RawDataset(
            name=NAME,
            train=RawSplit(np.ascontiguousarray(train_x[train_idx]), train_y[train_idx]),
            val=RawSplit(np.ascontiguousarray(train_x[val_idx]), train_y[val_idx]),
            test=RawSplit(np.ascontiguousarray(test_x), test_y),
            classes=CLASSES,
        )

    def describe(self, settings: FashionMnistSettings) -> str:
        return f"Fashion-MNIST IDX files from {ROOT} (Debian dataset-fashion-mnist); val = {settings.val_size} of train, seed {settings.seed}"


SOURCE = _FashionMnist()
