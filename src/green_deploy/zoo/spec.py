"""Zoo entries: the configuration that defines a model, validated into typed records.

A zoo entry is configuration, not code: adding a model of a known family is adding an entry to
``conf/base/parameters_zoo.yml``. Misspelt keys fail loudly here instead of being ignored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from green_deploy.config import check_keys, parse_settings
from green_deploy.errors import ConfigError, ModelNotFoundError
from green_deploy.zoo.metrics import METRICS

Task = Literal["classification", "retrieval", "language_modeling"]
TRAINING_MODES = ("scratch", "head", "none")

TASK_METRICS: dict[str, tuple[str, ...]] = {task: tuple(metrics) for task, metrics in METRICS.items()}


@dataclass(frozen=True)
class TrainingSettings:
    """How a zoo model is trained: ``scratch`` (all weights), ``head`` (frozen pretrained
    backbone, head trained on precomputed features) or ``none`` (used as shipped)."""

    mode: str = "scratch"  # one of TRAINING_MODES
    epochs: int = 1
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    max_steps: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model; ``metric`` is the task metric the study reports as accuracy."""

    model_id: str
    domain: Literal["cv", "nlp", "code"]
    family: str
    source: str
    task: Task
    dataset: str
    metric: str
    architecture: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    description: str = ""

    def config_sha256(self, dataset_settings: Mapping[str, Any]) -> str:
        """Hash of everything that determines the trained model: a cached build is reused only
        while this is unchanged."""
        payload = {"entry": asdict(self), "dataset_settings": dict(dataset_settings)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


# The keys of ``zoo`` in parameters_zoo.yml.
ZOO_KEYS = ("models_dir", "parity", "test_max_items", "test_seed", "datasets", "models", "hub")


def parse_entry(model_id: str, raw: Mapping[str, Any]) -> ZooEntry:
    """Validate one entry of ``zoo.models`` from configuration."""
    where = f"zoo.models.{model_id}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(raw).__name__}")
    entry_fields = {f.name for f in fields(ZooEntry)} - {"model_id"}
    check_keys(where, raw, entry_fields, {"domain", "family", "source", "task", "dataset", "metric"})
    training = parse_settings(TrainingSettings, raw.get("training"), f"{where}.training")
    if training.mode not in TRAINING_MODES:
        raise ConfigError(f"{where}.training.mode must be scratch, head or none, got {training.mode!r}")
    task = raw["task"]
    if task not in TASK_METRICS:
        raise ConfigError(f"{where}.task must be one of {sorted(TASK_METRICS)}, got {task!r}")
    if raw["metric"] not in TASK_METRICS[task]:
        raise ConfigError(
            f"{where}.metric for task {task!r} must be one of {TASK_METRICS[task]}, got {raw['metric']!r}"
        )
    if raw["domain"] not in ("cv", "nlp", "code"):
        raise ConfigError(f"{where}.domain must be cv, nlp or code, got {raw['domain']!r}")
    fields_ = {k: v for k, v in raw.items() if k != "training"}
    fields_["architecture"] = dict(fields_.get("architecture") or {})
    fields_["dataset_options"] = dict(fields_.get("dataset_options") or {})
    return ZooEntry(model_id=model_id, training=training, **fields_)


def parse_zoo(models: Mapping[str, Any]) -> dict[str, ZooEntry]:
    """All entries of ``zoo.models``, validated."""
    return {model_id: parse_entry(model_id, raw) for model_id, raw in models.items()}


def dataset_settings(datasets: Mapping[str, Any], entry: ZooEntry) -> dict[str, Any]:
    """The dataset's shared settings (``zoo.datasets.<name>``) with the entry's own options on top."""
    return {**dict(datasets.get(entry.dataset) or {}), **entry.dataset_options}


def configured_models(models: Mapping[str, Any] | None) -> dict[str, Any]:
    """``zoo.models`` without the entries an environment removed by setting them to ``null``
    (parameters merge key by key, so that is how e.g. ``conf/gpu`` leaves the base zoo out)."""
    return {model_id: entry for model_id, entry in (models or {}).items() if entry is not None}


def select_entry(models: Mapping[str, Any], model_id: str) -> ZooEntry:
    """One entry by id, with the known ids in the error when it is not there."""
    known = configured_models(models)
    if model_id not in known:
        removed = " (set to null by the environment in use)" if model_id in models else ""
        raise ModelNotFoundError(
            f"{model_id!r} is not in zoo.models (conf/base/parameters_zoo.yml){removed}; "
            f"known: {', '.join(sorted(known))}"
        )
    return parse_entry(model_id, known[model_id])


def require_known_models(where: str, model_ids: Iterable[str], zoo: Mapping[str, Any]) -> None:
    """Refuse model ids that are not zoo models, pointing a ``zoo.hub`` id (which sizes the GPU
    benches, and no pipeline builds) to the route that studies it."""
    known = configured_models(zoo.get("models"))
    unknown = sorted(set(model_ids) - set(known))
    if not unknown:
        return
    hub = [model_id for model_id in unknown if model_id in (zoo.get("hub") or {})]
    hint = (
        f"; {hub} are zoo.hub entries, which size the GPU benches and no pipeline builds: to study one, declare "
        "it under zoo.models with family: huggingface and its local folder (README: Your own model)"
        if hub
        else ""
    )
    raise ModelNotFoundError(f"{where} names unknown model(s) {unknown}; known: {sorted(known)}{hint}")
