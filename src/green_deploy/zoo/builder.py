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
from dataclasses import asdict, astuple, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from green_deploy.errors import ArtifactError, ConfigError
from green_deploy.zoo import artifacts
from green_deploy.zoo.data import RawDataset, load_dataset
from green_deploy.zoo.families import Family, get_family
from green_deploy.zoo.inference import KerasPredictor, ParityError, ParityTolerance, predict_torch
from green_deploy.zoo.metrics import (
    ClassificationEvidence,
    Evidence,
    LanguageModelEvidence,
    RetrievalEvidence,
    metric_values,
    subset_indices,
)
from green_deploy.zoo.spec import ZooEntry
from green_deploy.zoo.training import Objective, train

logger = logging.getLogger(__name__)

CARD_FILE = "card.json"
TORCH_DIR = "torch"


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
    keras_metrics: dict[str, float] | None  # None: no Keras twin (a user's own model)
    val_metrics: dict[str, float]
    parity_max_abs_diff: float | None
    parity_bound: float | None
    training: dict[str, Any]
    size_on_disk_bytes: dict[str, int]
    artifact_sha256: dict[str, str]
    config_sha256: str
    manifest_sha256: str
    built_at: str
    build_duration_s: float
    classes: list[str] = field(default_factory=list)
    n_test_split: int | None = None  # the whole test split, of which ``n_test`` items were scored
    test_max_items: int | None = None  # how they were drawn (``ScoredItems``); None/None: not recorded
    test_seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def has_keras_twin(self) -> bool:
        """Whether a Keras twin was built beside the PyTorch model (a user's own model has none)."""
        return self.keras_metrics is not None


@dataclass(frozen=True)
class ScoredItems:
    """Which test items the zoo scores both frameworks on (and checks parity on): at most
    ``max_items`` (``None``: the whole split), drawn as ``zoo.metrics.subset_indices`` draws
    them, so the evaluate pipeline's accuracy subset is the same items."""

    max_items: int | None = None
    seed: int = 0


def encoded_splits(entry: ZooEntry, dataset_settings: Mapping[str, Any]) -> TaskData:
    """A zoo entry's dataset loaded and its splits encoded as its models take them: what every
    runner that feeds a zoo model starts from."""
    return prepare_task_data(entry, load_dataset(entry.dataset, dataset_settings), get_family(entry.family))


def prepare_task_data(entry: ZooEntry, raw: RawDataset, family: Family) -> TaskData:
    arch = entry.architecture
    if entry.task == "language_modeling":
        windows = [family.encode(split.x, arch) for split in (raw.train, raw.val, raw.test)]
        (train_x, train_y), (val_x, val_y), (test_x, test_y) = ((w[:, :-1], w[:, 1:]) for w in windows)
        return TaskData(train_x, train_y, val_x, val_y, test_x, test_y)
    if entry.task == "retrieval":
        assert raw.val.pairs is not None and raw.test.pairs is not None  # retrieval splits hold pairs
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


def score_items(
    task: str,
    predict: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray | None,
    pairs: np.ndarray | None = None,
    answers: np.ndarray | None = None,
    chunk: int = 1024,
) -> tuple[Evidence, list[np.ndarray]]:
    """The per-item evidence (``zoo.metrics``) of one model on one split (examples, queries or
    byte windows), from which every task metric and its interval is computed, and the model's
    raw outputs by chunk (for parity).

    Language-model logits are large (windows x length x 256), so they are reduced chunk by chunk.
    Retrieval ranks every document of ``pairs`` for each query; query i's answer is document
    ``answers[i]`` (default: i).
    """
    if task == "classification":
        assert y is not None  # classification splits hold labels
        logits = predict(x)
        return ClassificationEvidence(logits, y), [logits]
    if task == "retrieval":
        assert pairs is not None  # retrieval splits hold pairs
        queries, documents = predict(x), predict(pairs)
        return RetrievalEvidence.from_embeddings(queries, documents, answers), [queries, documents]
    assert y is not None  # language-model windows hold their next bytes
    parts, outputs = [], []
    for start in range(0, len(x), chunk):
        logits = predict(x[start : start + chunk])
        parts.append(LanguageModelEvidence.from_logits(logits, y[start : start + chunk]))
        outputs.append(logits)
    return LanguageModelEvidence.concatenate(parts), outputs


def evaluate(
    task: str,
    predict: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray | None,
    pairs: np.ndarray | None = None,
    chunk: int = 1024,
) -> tuple[dict[str, float], list[np.ndarray]]:
    """Task metrics of one model on one split, and its raw outputs."""
    evidence, outputs = score_items(task, predict, x, y, pairs, chunk=chunk)
    return _means(evidence), outputs


def _means(evidence: Evidence) -> dict[str, float]:
    """Every metric of the task on all the items (macro-F1 is no mean; the name is kept for callers)."""
    return metric_values(evidence)


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
    test_subset: ScoredItems = ScoredItems(),
) -> ZooCard:
    """Build (or reuse) ``entry`` in ``folder``: ``torch/`` and ``model.keras`` and ``card.json``.

    A build whose training configuration, data and files are unchanged is reused; when only the
    scored test items changed (``test_subset``), both frameworks are scored again on the new
    items (and checked for parity), without training."""
    start_s = time.perf_counter()
    raw = load_dataset(entry.dataset, dataset_settings, manifest_dir)
    config_sha256 = entry.config_sha256(dataset_settings)
    cached = load_cached_card(folder, config_sha256, raw.manifest_sha256)
    if cached is not None and (cached.test_max_items, cached.test_seed) == astuple(test_subset):
        logger.info("%s: reusing the build in %s", entry.model_id, folder)
        return cached

    family = get_family(entry.family)
    if entry.training.mode not in family.training_modes:
        raise ConfigError(
            f"zoo.models.{entry.model_id}.training.mode is {entry.training.mode!r}, but a {entry.family} model can "
            f"take {', '.join(family.training_modes)}; set training: {{mode: {family.training_modes[0]}}}"
        )
    data = prepare_task_data(entry, raw, family)
    if cached is not None:
        logger.info(
            "%s: reusing the build in %s, scoring other test items (%s)", entry.model_id, folder, test_subset
        )
        torch_model = artifacts.load_torch_model(folder / TORCH_DIR)
        keras_model = (
            artifacts.load_keras_model(folder / artifacts.KERAS_FILE) if cached.has_keras_twin else None
        )
        scores = _score_test(entry, data, torch_model, keras_model, test_subset, tolerance)
        card = replace(cached, **scores)
        (folder / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2))
        return card

    n_outputs = _n_outputs(entry, raw)
    torch_model = family.build_torch(entry.architecture, n_outputs)
    objective: Objective = "language_modeling" if entry.task == "language_modeling" else "classification"
    logger.info("%s: training (%s) on %d examples", entry.model_id, entry.training.mode, len(data.train_x))
    report = train(torch_model, data.train_x, data.train_y, entry.training, objective)

    keras_model = None
    if "keras" in family.frameworks:
        keras_model = family.build_keras(entry.architecture, n_outputs)
        family.port_weights(torch_model, keras_model)
    scores = _score_test(entry, data, torch_model, keras_model, test_subset, tolerance)
    val_metrics, _ = evaluate(
        entry.task, lambda x: predict_torch(torch_model, x), data.val_x, data.val_y, data.val_pairs
    )
    artifacts.save_torch_model(torch_model, entry.family, entry.architecture, n_outputs, folder / TORCH_DIR)
    files = [f"{TORCH_DIR}/{artifacts.TORCH_WEIGHTS}", f"{TORCH_DIR}/{artifacts.TORCH_CONFIG}"]
    sizes = {"torch": artifacts.directory_size_bytes(folder / TORCH_DIR)}
    if keras_model is not None:
        artifacts.save_keras_model(keras_model, folder / artifacts.KERAS_FILE)
        files.append(artifacts.KERAS_FILE)
        sizes["keras"] = artifacts.directory_size_bytes(folder / artifacts.KERAS_FILE)
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
        val_metrics=val_metrics,
        training=asdict(report),
        size_on_disk_bytes=sizes,
        artifact_sha256={name: artifacts.file_sha256(folder / name) for name in files},
        config_sha256=config_sha256,
        manifest_sha256=raw.manifest_sha256,
        built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        build_duration_s=time.perf_counter() - start_s,
        classes=list(raw.classes),
        **scores,
    )
    (folder / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2))
    return card


def _score_test(
    entry: ZooEntry,
    data: TaskData,
    torch_model: Any,
    keras_model: Any | None,
    test_subset: ScoredItems,
    tolerance: ParityTolerance,
) -> dict[str, Any]:
    """Both frameworks' metrics on the scored test items, refused beyond the parity tolerance
    (PyTorch's alone without a twin); the card's fields that depend on which items were scored."""
    scored = subset_indices(
        len(data.test_x),
        test_subset.max_items,
        test_subset.seed,
        data.test_y if entry.task == "classification" else None,
    )
    test = (
        data.test_x[scored],
        None if data.test_y is None else data.test_y[scored],
        data.test_pairs,
        scored if data.test_pairs is not None else None,
    )
    torch_scores, torch_outputs = score_items(entry.task, lambda x: predict_torch(torch_model, x), *test)
    torch_metrics = _means(torch_scores)
    keras_metrics: dict[str, float] | None = None
    max_diff: float | None = None
    bound: float | None = None
    if keras_model is not None:
        keras_scores, keras_outputs = score_items(entry.task, KerasPredictor(keras_model), *test)
        max_diff, scale = _max_abs_diff(torch_outputs, keras_outputs)
        bound = tolerance.atol + tolerance.rtol * scale
        if not max_diff <= bound:
            raise ParityError(
                f"{entry.model_id}: Keras twin differs from PyTorch by {max_diff:.3g} > {bound:.3g} on the test set"
            )
        keras_metrics = _means(keras_scores)
    logger.info(
        "%s: %s %s (torch) / %s (keras) on %d of %d test items, parity %s",
        entry.model_id,
        entry.metric,
        torch_metrics[entry.metric],
        "no twin" if keras_metrics is None else keras_metrics[entry.metric],
        len(scored),
        len(data.test_x),
        "-" if max_diff is None else f"{max_diff:.2g}",
    )
    return {
        "torch_metrics": torch_metrics,
        "keras_metrics": keras_metrics,
        "n_test": len(scored),
        "n_test_split": len(data.test_x),
        "parity_max_abs_diff": max_diff,
        "parity_bound": bound,
        "test_max_items": test_subset.max_items,
        "test_seed": test_subset.seed,
    }


def load_card(folder: Path) -> ZooCard:
    path = folder / CARD_FILE
    if not path.is_file():
        raise ArtifactError(f"no zoo build in {folder}; run `kedro run --pipeline=zoo` first")
    return ZooCard(**json.loads(path.read_text()))
