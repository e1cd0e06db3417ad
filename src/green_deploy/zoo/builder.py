"""Building a zoo model: data, training, Keras twin, parity check, evaluation, artifacts, card.

A build is cached in its folder: it is reused while the entry's configuration, the dataset's
manifest and the saved artifacts are unchanged, and rebuilt (with a log line saying why)
otherwise.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, astuple, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from green_deploy.errors import ArtifactError, ConfigError
from green_deploy.zoo import artifacts
from green_deploy.zoo.baselines import BASELINES
from green_deploy.zoo.data import RawDataset, load_dataset
from green_deploy.zoo.families import Family, get_family
from green_deploy.zoo.inference import (
    KerasPredictor,
    ParityError,
    ParityTolerance,
    predict_onnx,
    predict_torch,
)
from green_deploy.zoo.metrics import (
    ClassificationEvidence,
    Evidence,
    LanguageModelEvidence,
    RetrievalEvidence,
    metric_values,
    subset_indices,
)
from green_deploy.zoo.spec import ZooEntry
from green_deploy.zoo.training import UNTRAINED, Objective, TrainingReport, train

logger = logging.getLogger(__name__)

CARD_FILE = "card.json"


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
    """Everything known about one built zoo model; saved as ``card.json`` beside the artifacts.

    ``frameworks`` are the baselines built (``zoo.baselines``), the first the reference: a zoo
    model's PyTorch model and Keras twin, or a user's own model's one framework. ``test_metrics``,
    ``size_on_disk_bytes``: per framework; ``val_metrics``: the reference's; ``scored_on``: the
    device the metrics were computed on (``_scoring_device``).
    """

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
    frameworks: list[str]
    test_metrics: dict[str, dict[str, float]]
    val_metrics: dict[str, float]
    parity_max_abs_diff: float | None  # None: no twin to compare
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
    scored_on: str = "cpu"  # cards written before it was recorded were all scored on the CPU

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ZooCard:
        """A card as saved; one written before own models (``torch_metrics``/``keras_metrics``, sizes
        under ``keras``) is read in today's fields, so its build is reused rather than retrained."""
        card = dict(values)
        if "torch_metrics" in card:
            tests = {"torch": card.pop("torch_metrics"), "tensorflow": card.pop("keras_metrics", None)}
            card["test_metrics"] = {framework: m for framework, m in tests.items() if m is not None}
            card["frameworks"] = list(card["test_metrics"])
            sizes = card.get("size_on_disk_bytes", {})
            card["size_on_disk_bytes"] = {("tensorflow" if k == "keras" else k): v for k, v in sizes.items()}
        return cls(**card)

    @property
    def reference_metrics(self) -> dict[str, float]:
        """The test metrics of the reference framework (the model as the entry built it)."""
        return self.test_metrics[self.frameworks[0]]


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
    return metric_values(evidence), outputs


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
        card = ZooCard.from_dict(json.loads(card_path.read_text()))
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
    """Build (or reuse) ``entry`` in ``folder``: its baselines (``zoo.baselines``) and ``card.json``.

    A build whose training configuration, data and files (a user's own model files among them)
    are unchanged is reused; when only the scored test items changed (``test_subset``), its
    baselines are scored again on the new items (and checked for parity), without training."""
    start_s = time.perf_counter()
    family = get_family(entry.family)
    if entry.task not in family.tasks:
        raise ConfigError(
            f"zoo.models.{entry.model_id}.task is {entry.task!r}, but family {entry.family} serves "
            f"{', '.join(family.tasks)}; set task: {family.tasks[0]} (and a dataset of that task)"
        )
    if entry.training.mode not in family.training_modes:
        raise ConfigError(
            f"zoo.models.{entry.model_id}.training.mode is {entry.training.mode!r}, but family {entry.family} takes "
            f"{', '.join(family.training_modes)}; set training: {{mode: {family.training_modes[0]}}}"
        )
    raw = load_dataset(entry.dataset, dataset_settings, manifest_dir)
    config_sha256 = _build_key(entry, dataset_settings, family)
    cached = load_cached_card(folder, config_sha256, raw.manifest_sha256)
    if cached is not None and (cached.test_max_items, cached.test_seed) == astuple(test_subset):
        logger.info("%s: reusing the build in %s", entry.model_id, folder)
        return cached

    data = prepare_task_data(entry, raw, family)
    if cached is not None:
        logger.info(
            "%s: reusing the build in %s, scoring other test items (%s)", entry.model_id, folder, test_subset
        )
        models = {framework: _load_baseline(framework, folder) for framework in cached.frameworks}
        device = _scoring_device(models)
        card = replace(
            cached, **_score_test(entry, data, _placed(models, device), test_subset, tolerance, device)
        )
        (folder / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2))
        return card

    n_outputs = _n_outputs(entry, raw)
    _check_output_names(entry, family, raw.classes, n_outputs)
    models, report = _build_baselines(entry, family, data, n_outputs)
    device = _scoring_device(models)
    scoring = _placed(models, device)
    scores = _score_test(entry, data, scoring, test_subset, tolerance, device)
    reference, reference_model = next(iter(models.items()))
    val_metrics, _ = evaluate(
        entry.task, _predictor(reference, scoring[reference], device), data.val_x, data.val_y, data.val_pairs
    )
    for framework, model in models.items():
        _save_baseline(framework, model, entry, n_outputs, folder)
    files = [name for framework in models for name in BASELINES[framework].files]
    card = ZooCard(
        model_id=entry.model_id,
        domain=entry.domain,
        family=entry.family,
        source=entry.source,
        task=entry.task,
        dataset=entry.dataset,
        metric=entry.metric,
        n_outputs=n_outputs,
        n_parameters=_n_parameters(reference, reference_model),
        n_train=len(data.train_x),
        n_val=len(data.val_x),
        frameworks=list(models),
        val_metrics=val_metrics,
        training=asdict(report),
        size_on_disk_bytes={
            framework: sum((folder / name).stat().st_size for name in BASELINES[framework].files)
            for framework in models
        },
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


def _build_key(entry: ZooEntry, dataset_settings: Mapping[str, Any], family: Family) -> str:
    """The entry's configuration hash, and for a user's own model the sha256 of the files it is
    read from, so a model file replaced at the same path is built again rather than reused."""
    source_paths = getattr(family, "source_paths", None)  # families that read a user's files
    key = entry.config_sha256(dataset_settings)
    if source_paths is None:
        return key
    digest = hashlib.sha256(key.encode())
    for root in source_paths(entry.architecture):
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in (p for p in files if p.is_file()):
            digest.update(f"{path.relative_to(root.parent)}:{artifacts.file_sha256(path)}".encode())
    return digest.hexdigest()


def _build_baselines(
    entry: ZooEntry, family: Family, data: TaskData, n_outputs: int
) -> tuple[dict[str, Any], TrainingReport]:
    """The family's models by framework, the reference first: PyTorch trained and its Keras twin
    given its weights, or a user's own model in its one framework (used as it is)."""
    models: dict[str, Any] = {}
    report = UNTRAINED
    if "torch" in family.frameworks:
        models["torch"] = family.build_torch(entry.architecture, n_outputs)
        objective: Objective = "language_modeling" if entry.task == "language_modeling" else "classification"
        logger.info(
            "%s: training (%s) on %d examples", entry.model_id, entry.training.mode, len(data.train_x)
        )
        report = train(models["torch"], data.train_x, data.train_y, entry.training, objective)
    if "tensorflow" in family.frameworks:
        models["tensorflow"] = family.build_keras(entry.architecture, n_outputs)
        if "torch" in models:
            family.port_weights(models["torch"], models["tensorflow"])
    if "onnx" in family.frameworks:
        models["onnx"] = family.build_onnx(entry.architecture, n_outputs)
    if entry.task == "classification":
        for framework, model in models.items():
            _check_logits(entry, framework, _predictor(framework, model), data.val_x[:2], n_outputs)
    return models, report


def _check_output_names(entry: ZooEntry, family: Family, classes: Sequence[str], n_outputs: int) -> None:
    """Refuse a head whose own labels (a Hugging Face ``id2label``) are not the dataset's classes
    in the same order: scores would be computed against the wrong outputs, silently."""
    output_names = getattr(family, "output_names", None)  # families whose models name their outputs
    names = output_names(entry.architecture, n_outputs) if output_names and n_outputs else None
    if names is None or list(names) == list(classes):
        return
    where = f"zoo.models.{entry.model_id}"
    unknown = sorted(set(classes) - set(names))
    if unknown:
        raise ConfigError(
            f"{where}: the dataset's labels {unknown} are unknown to the model's head, whose outputs are "
            f"{names} (id2label); map your labels to those, or set architecture.head: new to train a head for them"
        )
    raise ConfigError(
        f"{where}: the dataset numbers its classes {list(classes)}, but the model's head gives {names} in that "
        f"order; set dataset_options.classes: {names}"
    )


def _check_logits(
    entry: ZooEntry,
    framework: str,
    predict: Callable[[np.ndarray], np.ndarray],
    rows: np.ndarray,
    n_outputs: int,
) -> None:
    """Refuse a classifier that does not run on a batch of the dataset's inputs or whose logits
    are not one per class: its accuracy would be computed on the wrong columns, silently."""
    where = f"zoo.models.{entry.model_id}"
    try:
        outputs = predict(rows)
    except Exception as error:  # frameworks raise their own types for a wrong input shape or dtype
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"{where}: the {BASELINES[framework].label} model does not run on a batch of {len(rows)} of the "
            f"dataset's inputs ({reason}); check architecture.input and that the batch dimension is dynamic"
        ) from error
    if outputs.shape != (len(rows), n_outputs):
        raise ConfigError(
            f"{where}: the {BASELINES[framework].label} model gives outputs of shape {tuple(outputs.shape)} for "
            f"{len(rows)} rows, but the dataset has {n_outputs} classes; it must return logits of shape "
            f"(batch, {n_outputs}) (or give dataset_options.classes as its outputs)"
        )


def _scoring_device(models: Mapping[str, Any]) -> str:
    """Where the baselines are scored: this machine's GPU for a PyTorch model built alone (the GPU
    study's BERT-base scored its 256 test items in 9 s on 16 CPU cores), else the CPU, where a
    Keras twin is checked against its PyTorch model on the device the parity bound is set for."""
    if set(models) != {"torch"}:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _placed(models: Mapping[str, Any], device: str) -> dict[str, Any]:
    """The baselines to score on ``device``: the PyTorch model copied there once (the model itself
    stays on the CPU, where it is saved and optimized from), the others as they are."""
    return {
        framework: copy.deepcopy(model).to(device) if framework == "torch" and device != "cpu" else model
        for framework, model in models.items()
    }


def _predictor(framework: str, model: Any, device: str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    """How the zoo runs a baseline: PyTorch eagerly (on ``device``, where the model already is),
    Keras as a traced graph, ONNX in ONNX Runtime."""
    if framework == "torch":
        return lambda x: predict_torch(model, x, device=device)
    if framework == "tensorflow":
        return KerasPredictor(model)
    return lambda x: predict_onnx(model, x)


def _save_baseline(framework: str, model: Any, entry: ZooEntry, n_outputs: int, folder: Path) -> None:
    if framework == "torch":
        artifacts.save_torch_model(
            model, entry.family, entry.architecture, n_outputs, folder / artifacts.TORCH_DIR
        )
    elif framework == "tensorflow":
        artifacts.save_keras_model(model, folder / artifacts.KERAS_FILE)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / artifacts.ONNX_FILE).write_bytes(model)


def _load_baseline(framework: str, folder: Path) -> Any:
    if framework == "torch":
        return artifacts.load_torch_model(folder / artifacts.TORCH_DIR)
    if framework == "tensorflow":
        return artifacts.load_keras_model(folder / artifacts.KERAS_FILE)
    return (folder / artifacts.ONNX_FILE).read_bytes()  # its hash was checked with the card's


def _n_parameters(framework: str, model: Any) -> int:
    if framework == "torch":
        return sum(p.numel() for p in model.parameters())
    if framework == "tensorflow":
        return int(model.count_params())
    import onnx

    return sum(int(np.prod(tensor.dims)) for tensor in onnx.load_model_from_string(model).graph.initializer)


def _score_test(
    entry: ZooEntry,
    data: TaskData,
    models: Mapping[str, Any],
    test_subset: ScoredItems,
    tolerance: ParityTolerance,
    device: str,
) -> dict[str, Any]:
    """Every baseline's metrics on the scored test items (PyTorch's on ``device``), a Keras twin
    refused beyond the parity tolerance of its PyTorch model; the card's fields that depend on
    which items were scored, and where."""
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
    metrics: dict[str, dict[str, float]] = {}
    outputs: dict[str, list[np.ndarray]] = {}
    for framework, model in models.items():
        evidence, outputs[framework] = score_items(entry.task, _predictor(framework, model, device), *test)
        metrics[framework] = metric_values(evidence)
    max_diff: float | None = None
    bound: float | None = None
    if {"torch", "tensorflow"} <= set(models):
        max_diff, scale = _max_abs_diff(outputs["torch"], outputs["tensorflow"])
        bound = tolerance.atol + tolerance.rtol * scale
        if not max_diff <= bound:
            raise ParityError(
                f"{entry.model_id}: Keras twin differs from PyTorch by {max_diff:.3g} > {bound:.3g} on the test set"
            )
    logger.info(
        "%s: %s %s on %d of %d test items (%s), parity %s",
        entry.model_id,
        entry.metric,
        ", ".join(f"{values[entry.metric]} ({framework})" for framework, values in metrics.items()),
        len(scored),
        len(data.test_x),
        device,
        "-" if max_diff is None else f"{max_diff:.2g}",
    )
    return {
        "test_metrics": metrics,
        "n_test": len(scored),
        "n_test_split": len(data.test_x),
        "parity_max_abs_diff": max_diff,
        "parity_bound": bound,
        "test_max_items": test_subset.max_items,
        "test_seed": test_subset.seed,
        "scored_on": device,
    }


def load_card(folder: Path) -> ZooCard:
    path = folder / CARD_FILE
    if not path.is_file():
        raise ArtifactError(f"no zoo build in {folder}; run `kedro run --pipeline=zoo` first")
    return ZooCard.from_dict(json.loads(path.read_text()))
