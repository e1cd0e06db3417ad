"""Building a zoo model: data, training, Keras twin, parity check, evaluation, artifacts, card.

A build is cached in its folder: it is reused while the entry's configuration, the dataset's
manifest and the saved artifacts are unchanged, and rebuilt (with a log line saying why)
otherwise.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from green_deploy.errors import ArtifactError, GreenDeployError
from green_deploy.zoo import artifacts
from green_deploy.zoo.data import RawDataset, load_dataset
from green_deploy.zoo.families import Family, get_family
from green_deploy.zoo.inference import predict_keras, predict_torch
from green_deploy.zoo.metrics import accuracy, language_model_metrics, retrieval_metrics
from green_deploy.zoo.spec import ZooEntry
from green_deploy.zoo.training import train

logger = logging.getLogger(__name__)

CARD_FILE = "card.json"
TORCH_DIR = "torch"


class ParityError(GreenDeployError):
    """The Keras twin's outputs differ from the PyTorch model's beyond the stated tolerance."""


@dataclass(frozen=True)
class ParityTolerance:
    """Outputs agree when max |torch - keras| <= atol + rtol * max |torch| over the test set."""

    atol: float = 1e-4
    rtol: float = 1e-5


@dataclass(frozen=True)
class TaskData:
    """Encoded arrays of one entry; ``test_pairs`` only for retrieval (the documents)."""

    train_x: np.ndarray
    train_y: np.ndarray | None
    val_x: np.ndarray
    val_y: np.ndarray | None
    test_x: np.ndarray
    test_y: np.ndarray | None
    val_pairs: np.ndarray | None = None
    test_pairs: np.ndarray | None = None


@dataclass(frozen=True)
class ZooCard:
    """Everything known about one built zoo model; saved as ``card.json`` beside the artifacts."""

    model_id: str
    domain: str
    family: str
    source: str
    task: str
    dataset: str
    metric: str
    n_outputs: int
    n_parameters: int
    n_train: int
    n_val: int
    n_test: int
    torch_metrics: dict[str, float]
    keras_metrics: dict[str, float]
    val_metrics: dict[str, float]
    parity_max_abs_diff: float
    parity_bound: float
    training: dict[str, Any]
    size_on_disk_bytes: dict[str, int]
    artifact_sha256: dict[str, str]
    config_sha256: str
    manifest_sha256: str
    built_at: str
    build_duration_s: float
    classes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prepare_task_data(entry: ZooEntry, raw: RawDataset, family: Family) -> TaskData:
    arch = entry.architecture
    if entry.task == "language_modeling":
        windows = [family.encode(split.x, arch) for split in (raw.train, raw.val, raw.test)]
        (train_x, train_y), (val_x, val_y), (test_x, test_y) = ((w[:, :-1], w[:, 1:]) for w in windows)
        return TaskData(train_x, train_y, val_x, val_y, test_x, test_y)
    if entry.task == "retrieval":
        return TaskData(
            train_x=family.encode(raw.train.x, arch)
            if entry.training.mode != "none"
            else np.zeros((0, 1), np.int64),
            train_y=None,
            val_x=family.encode(raw.val.x, arch),
            val_y=None,
            test_x=family.encode(raw.test.x, arch),
            test_y=None,
            val_pairs=family.encode(raw.val.pairs, arch),
            test_pairs=family.encode(raw.test.pairs, arch),
        )
    return TaskData(
        family.encode(raw.train.x, arch),
        raw.train.y,
        family.encode(raw.val.x, arch),
        raw.val.y,
        family.encode(raw.test.x, arch),
        raw.test.y,
    )


def _n_outputs(entry: ZooEntry, raw: RawDataset) -> int:
    return len(raw.classes) if entry.task == "classification" else 0


def evaluate(
    task: str,
    predict: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray | None,
    pairs: np.ndarray | None = None,
    chunk: int = 1024,
) -> tuple[dict[str, float], list[np.ndarray]]:
    """Task metrics of one model on one split, and its raw outputs by chunk (for parity).

    Language-model logits are large (windows x length x 256), so they are scored chunk by chunk
    and only their per-chunk maximum outputs are kept for the parity comparison.
    """
    if task == "classification":
        logits = predict(x)
        return {"accuracy": accuracy(logits, y)}, [logits]
    if task == "retrieval":
        queries, documents = predict(x), predict(pairs)
        return retrieval_metrics(queries, documents), [queries, documents]
    correct, nll_bits, count, outputs = 0.0, 0.0, 0, []
    for start in range(0, len(x), chunk):
        logits = predict(x[start : start + chunk])
        part = language_model_metrics(logits, y[start : start + chunk])
        n = y[start : start + chunk].size
        correct += part["next_byte_accuracy"] * n
        nll_bits += part["bits_per_byte"] * n
        count += n
        outputs.append(logits)
    return {"next_byte_accuracy": correct / count, "bits_per_byte": nll_bits / count}, outputs


def _max_abs_diff(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[float, float]:
    diff = max(float(np.max(np.abs(x - y))) if x.size else 0.0 for x, y in zip(a, b, strict=True))
    scale = max(float(np.max(np.abs(x))) if x.size else 0.0 for x in a)
    return diff, scale


def load_cached_card(folder: Path, config_sha256: str, manifest_sha256: str) -> ZooCard | None:
    """The saved card if the build in ``folder`` is complete and current, else ``None`` (with the reason logged)."""
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        return None
    try:
        card = ZooCard(**json.loads(card_path.read_text()))
    except (json.JSONDecodeError, TypeError) as error:
        logger.warning("%s: unreadable card (%s); rebuilding", folder, error)
        return None
    if card.config_sha256 != config_sha256:
        logger.info("%s: configuration changed since the last build; rebuilding", card.model_id)
        return None
    if card.manifest_sha256 != manifest_sha256:
        logger.info("%s: dataset manifest changed since the last build; rebuilding", card.model_id)
        return None
    for relative, expected in card.artifact_sha256.items():
        path = folder / relative
        if not path.is_file() or artifacts.file_sha256(path) != expected:
            logger.warning("%s: artifact %s missing or modified; rebuilding", card.model_id, path)
            return None
    return card


def build_zoo_model(
    entry: ZooEntry,
    dataset_settings: Mapping[str, Any],
    folder: Path,
    tolerance: ParityTolerance = ParityTolerance(),
    manifest_dir: Path | None = None,
) -> ZooCard:
    """Build (or reuse) ``entry`` in ``folder``: ``torch/`` and ``model.keras`` and ``card.json``."""
    start_s = time.perf_counter()
    raw = load_dataset(entry.dataset, dataset_settings, manifest_dir)
    config_sha256 = entry.config_sha256(dataset_settings)
    cached = load_cached_card(folder, config_sha256, raw.manifest_sha256)
    if cached is not None:
        logger.info("%s: reusing the build in %s", entry.model_id, folder)
        return cached

    family = get_family(entry.family)
    data = prepare_task_data(entry, raw, family)
    n_outputs = _n_outputs(entry, raw)
    torch_model = family.build_torch(entry.architecture, n_outputs)
    objective = "language_modeling" if entry.task == "language_modeling" else "classification"
    logger.info("%s: training (%s) on %d examples", entry.model_id, entry.training.mode, len(data.train_x))
    report = train(torch_model, data.train_x, data.train_y, entry.training, objective)

    keras_model = family.build_keras(entry.architecture, n_outputs)
    family.port_weights(torch_model, keras_model)
    torch_metrics, torch_outputs = evaluate(
        entry.task, lambda x: predict_torch(torch_model, x), data.test_x, data.test_y, data.test_pairs
    )
    keras_metrics, keras_outputs = evaluate(
        entry.task, lambda x: predict_keras(keras_model, x), data.test_x, data.test_y, data.test_pairs
    )
    val_metrics, _ = evaluate(
        entry.task, lambda x: predict_torch(torch_model, x), data.val_x, data.val_y, data.val_pairs
    )
    max_diff, scale = _max_abs_diff(torch_outputs, keras_outputs)
    bound = tolerance.atol + tolerance.rtol * scale
    if not max_diff <= bound:
        raise ParityError(
            f"{entry.model_id}: Keras twin differs from PyTorch by {max_diff:.3g} > {bound:.3g} on the test set"
        )

    artifacts.save_torch_model(torch_model, entry.family, entry.architecture, n_outputs, folder / TORCH_DIR)
    artifacts.save_keras_model(keras_model, folder / artifacts.KERAS_FILE)
    files = [
        f"{TORCH_DIR}/{artifacts.TORCH_WEIGHTS}",
        f"{TORCH_DIR}/{artifacts.TORCH_CONFIG}",
        artifacts.KERAS_FILE,
    ]
    card = ZooCard(
        model_id=entry.model_id,
        domain=entry.domain,
        family=entry.family,
        source=entry.source,
        task=entry.task,
        dataset=entry.dataset,
        metric=entry.metric,
        n_outputs=n_outputs,
        n_parameters=sum(p.numel() for p in torch_model.parameters()),
        n_train=len(data.train_x),
        n_val=len(data.val_x),
        n_test=len(data.test_x),
        torch_metrics=torch_metrics,
        keras_metrics=keras_metrics,
        val_metrics=val_metrics,
        parity_max_abs_diff=max_diff,
        parity_bound=bound,
        training=asdict(report),
        size_on_disk_bytes={
            "torch": artifacts.directory_size_bytes(folder / TORCH_DIR),
            "keras": artifacts.directory_size_bytes(folder / artifacts.KERAS_FILE),
        },
        artifact_sha256={name: artifacts.file_sha256(folder / name) for name in files},
        config_sha256=config_sha256,
        manifest_sha256=raw.manifest_sha256,
        built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        build_duration_s=time.perf_counter() - start_s,
        classes=list(raw.classes),
    )
    (folder / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2))
    logger.info(
        "%s: %s %s (torch) / %s (keras), parity %.2g",
        entry.model_id,
        entry.metric,
        torch_metrics[entry.metric],
        keras_metrics[entry.metric],
        max_diff,
    )
    return card


def load_card(folder: Path) -> ZooCard:
    path = folder / CARD_FILE
    if not path.is_file():
        raise ArtifactError(f"no zoo build in {folder}; run `kedro run --pipeline=zoo` first")
    return ZooCard(**json.loads(path.read_text()))
