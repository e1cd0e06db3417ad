"""Raw datasets: what a zoo entry's ``dataset`` names, before any family encodes it.

Every dataset has train / val / test splits. ``val`` is the calibration and quick-check split
(later pipelines calibrate static quantization on it); ``test`` is the evaluation set, never
used for training or calibration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RawSplit:
    """One split.

    ``x`` holds the examples: a uint8 array (N, 28, 28) of images, a list of strings, or a list
    of bytes. ``y`` holds integer class ids (N,) for classification and ``None`` otherwise.
    ``pairs`` holds the second side of retrieval pairs (``x[i]`` is the query whose answer is
    ``pairs[i]``), ``None`` otherwise.
    """

    x: Any
    y: np.ndarray | None = None
    pairs: list[str] | None = None

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class RawDataset:
    """A dataset with its splits, class names and the hash of the manifest that froze it."""

    name: str
    train: RawSplit
    val: RawSplit
    test: RawSplit
    classes: tuple[str, ...] = ()
    source: str = ""
    manifest_sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
