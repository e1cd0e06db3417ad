"""Saving variant artifacts and measuring them on disk.

Each runtime writes and reads its own files (``green_deploy.runtimes``); a PyTorch variant's
``variant_config.json`` records the family, architecture and the steps that produced it, which
loading replays (``optimize.structure``). Sizes, zeros and parameter counts are measured on the
saved files, not taken from the technique's nominal settings.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from green_deploy.optimize.base import OptimizedModel
from green_deploy.optimize.spec import VariantSpec
from green_deploy.optimize.structure import replay_structure
from green_deploy.runtimes import get_runtime, pytorch
from green_deploy.zoo.baselines import baseline_of_variant


def model_folder(row: Mapping[str, Any]) -> Path:
    """The folder a variants-table row's runtime loads: the variant's own, or a baseline's within
    its zoo model's folder (``zoo.baselines``)."""
    folder = Path(str(row["artifact_dir"]))
    baseline = baseline_of_variant(str(row["variant_id"]))
    if baseline is not None and row.get("technique") in (None, "baseline"):
        return folder / baseline.subfolder
    return folder


@dataclass(frozen=True)
class ArtifactStats:
    """Measured on the saved files. ``effective_sparsity`` is the fraction of exact zeros among
    weight matrices (tensors of two or more dimensions); ``compressed_size_bytes`` is the files
    deflated (zlib level 6), which is where unstructured sparsity saves storage."""

    files: tuple[str, ...]
    size_on_disk_bytes: int
    compressed_size_bytes: int
    n_parameters: int
    n_nonzero_parameters: int
    effective_sparsity: float


def save_variant(
    optimized: OptimizedModel,
    spec: VariantSpec,
    base_config: dict[str, Any],
    folder: Path,
    recipes: list[Any] | None = None,
) -> list[str]:
    """Write the variant into ``folder``; the list of files written (relative names). ``recipes``:
    per step, what rebuilds the structure it made (``extra["rebuild_recipe"]``), or None."""
    folder.mkdir(parents=True, exist_ok=True)
    recipes = recipes or [None] * len(spec.steps)
    config = {
        **base_config,
        # A step's recipe says how to rebuild the structure it made (removed channels, traced graph).
        "steps": [
            {"technique": s.technique, "settings": s.settings, "recipe": recipe}
            for s, recipe in zip(spec.steps, recipes, strict=True)
        ],
    }
    return get_runtime(optimized.runtime).save(optimized.model, folder, config)


def load_torch_variant(folder: Path) -> Any:
    """Rebuild a PyTorch variant: baseline structure, each step's structural change, stored tensors."""
    return pytorch.load_variant(folder, replay_structure)


def deflated_size(data: bytes, parts: int | None = None) -> int:
    """Bytes of ``data`` deflated as zip does (zlib level 6), in ``parts`` pieces (default: one per
    CPU core this process may use) compressed in parallel threads (zlib releases the GIL; 90 MB
    took 2.5 s in one). Deflate looks back 32 KB, so cutting megabytes into pieces changes the
    size by a few bytes per cut."""
    from concurrent.futures import ThreadPoolExecutor

    parts = parts or max(2, len(os.sched_getaffinity(0)))
    step = max(1, -(-len(data) // parts))
    pieces = [data[start : start + step] for start in range(0, len(data), step)] or [b""]
    with ThreadPoolExecutor(len(pieces)) as pool:
        return sum(pool.map(lambda piece: len(zlib.compress(piece, 6)), pieces))


def measure_artifact(folder: Path, files: list[str], runtime: str) -> ArtifactStats:
    paths = [folder / name for name in files]
    data = b"".join(p.read_bytes() for p in paths)
    counts = get_runtime(runtime).weight_counts(folder)
    return ArtifactStats(
        files=tuple(files),
        size_on_disk_bytes=sum(p.stat().st_size for p in paths),
        compressed_size_bytes=deflated_size(data),
        n_parameters=counts.n_parameters,
        n_nonzero_parameters=counts.n_nonzero_parameters,
        effective_sparsity=counts.n_matrix_zeros / counts.n_matrix_parameters
        if counts.n_matrix_parameters
        else 0.0,
    )
