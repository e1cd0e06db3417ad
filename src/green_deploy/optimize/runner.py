"""Optimizing one zoo model: every declared variant, with what it cost and what it changed.

Per variant: the steps run inside one energy window (the energy and time of optimizing, with the
meters' provenance), the result is saved, measured on disk (size, compressed size, parameters,
non-zeros, effective sparsity), its MACs counted, and its task metric checked on the held-back
half of the validation split (the other half calibrates; the test split is never touched). A
variant is rebuilt only when the baseline's artifacts or the variant's recipe changed.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from green_deploy.energy import EnergyMonitor
from green_deploy.optimize import artifacts
from green_deploy.optimize.base import NotApplicable, OptimizationContext, OptimizedModel
from green_deploy.optimize.macs import count_macs
from green_deploy.optimize.spec import VariantSpec
from green_deploy.optimize.techniques import get_technique
from green_deploy.runtimes import device_here, get_runtime, pytorch
from green_deploy.zoo import artifacts as zoo_artifacts
from green_deploy.zoo.baselines import BASELINES, Baseline
from green_deploy.zoo.builder import TaskData, ZooCard, encoded_splits, evaluate, load_card
from green_deploy.zoo.inference import in_batches
from green_deploy.zoo.spec import ZooEntry

logger = logging.getLogger(__name__)

RECORD_FILE = "record.json"


@dataclass(frozen=True)
class RunSettings:
    """How variants are checked: sizes of the calibration / check / fine-tune slices."""

    check_examples: int = 512
    calibration_examples: int = 256
    finetune_examples: int = 2048


@dataclass(frozen=True)
class VariantRecord:
    """One row of the variants table (RQ1.1, RQ1.4)."""

    model_id: str
    variant_id: str
    framework: str
    runtime: str
    technique: str
    steps: str
    status: str  # "ok" or "not_applicable"
    reason: str
    devices: str
    notes: str
    metric: str
    val_metric: float | None
    baseline_val_metric: float | None
    metric_delta: float | None
    n_parameters: int | None
    n_nonzero_parameters: int | None
    effective_sparsity: float | None
    size_on_disk_bytes: int | None
    compressed_size_bytes: int | None
    macs: int | None
    baseline_macs: int | None  # None: counted on PyTorch models only (a Keras or ONNX own model)
    optimization_duration_s: float
    optimization_energy: dict[str, Any] = field(default_factory=dict)
    artifact_dir: str = ""
    artifact_sha256: dict[str, str] = field(default_factory=dict)
    config_sha256: str = ""
    reused: bool = False  # taken from an earlier run's cache, not built by this one

    def to_row(self) -> dict[str, Any]:
        row = {k: v for k, v in asdict(self).items() if k not in ("optimization_energy", "artifact_sha256")}
        # the files' hashes key what is measured on them (evaluate's accuracy passes)
        row["artifact_sha256"] = json.dumps(self.artifact_sha256, sort_keys=True)
        row.update(
            {
                f"optimization_{k}": v
                for k, v in self.optimization_energy.items()
                if k not in ("name", "duration_s")
            }
        )
        return row


@dataclass
class _Baselines:
    entry: ZooEntry
    folder: Path
    data: TaskData
    context: OptimizationContext
    check: tuple[np.ndarray, np.ndarray | None, np.ndarray | None]
    macs: int | None
    card: ZooCard
    _models: dict[str, Any] = field(default_factory=dict)

    def model(self, framework: str) -> Any:
        """The baseline a variant of ``framework`` starts from, loaded once."""
        if framework not in self.card.frameworks:
            built = " and ".join(BASELINES[f].label for f in self.card.frameworks)
            raise NotApplicable(
                f"{self.entry.model_id} has no {BASELINES[framework].label} baseline (family {self.entry.family} builds "
                f"{built} only)"
            )
        if framework not in self._models:
            baseline = BASELINES[framework]
            self._models[framework] = get_runtime(baseline.runtime).load(self.folder / baseline.subfolder)
        return self._models[framework]


def _predictor(runtime: str, model: Any, device: str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    """As the variant is served (a Keras model as a ``tf.function`` graph), in batches of 256."""
    predict = get_runtime(runtime).predictor(model, device=device)
    return lambda x: in_batches(predict, x)


def _prepare(
    entry: ZooEntry, dataset_settings: Mapping[str, Any], zoo_folder: Path, settings: RunSettings
) -> _Baselines:
    card = load_card(zoo_folder)
    data = encoded_splits(entry, dataset_settings)
    calibration = data.val_x[: min(len(data.val_x) // 2, settings.calibration_examples)]
    checked = check_slice(len(data.val_x), settings.check_examples)
    check = (
        data.val_x[checked],
        None if data.val_y is None else data.val_y[checked],
        None if data.val_pairs is None else data.val_pairs[checked],
    )
    train_y = data.train_y if len(data.train_x) > 0 else None  # fine-tuning needs labelled examples
    context = OptimizationContext(
        model_id=entry.model_id,
        family=entry.family,
        task=entry.task,
        architecture=entry.architecture,
        n_outputs=card.n_outputs,
        calibration_x=calibration,
        finetune_x=None if train_y is None else data.train_x[: settings.finetune_examples],
        finetune_y=None if train_y is None else train_y[: settings.finetune_examples],
    )
    baselines = _Baselines(entry, zoo_folder, data, context, check, None, card)
    if "torch" in card.frameworks:
        import torch

        baselines.macs = count_macs(baselines.model("torch"), torch.as_tensor(calibration[:1]))
    return baselines


def _check_metric(b: _Baselines, runtime: str, model: Any, devices: tuple[str, ...]) -> float | None:
    """The check metric on this machine's GPU where the model runs there (where a GPU machine
    serves it; a BERT-base variant checks in a second, not in 10-30 s on CPU cores), else on the
    CPU; None where it cannot run here (recorded as missing, not guessed)."""
    device = device_here(devices)
    if device is None:
        return None
    x, y, pairs = b.check
    metrics, _ = evaluate(b.entry.task, _predictor(runtime, model, device), x, y, pairs)
    return metrics[b.entry.metric]


def check_slice(n_validation: int, check_examples: int) -> slice:
    """The held-back half of the validation split that checks variants (the first half calibrates)."""
    half = n_validation // 2
    return slice(half, half + check_examples)


class ModelOptimizer:
    """One zoo model prepared once (data, baselines, their check metrics); builds any variant of it.

    ``variant`` reuses a variant built earlier with the same baseline artifacts and recipe (its
    record and files are checked), so a search trial retried with the same settings costs nothing.
    """

    def __init__(
        self,
        entry: ZooEntry,
        dataset_settings: Mapping[str, Any],
        zoo_folder: Path,
        monitor: EnergyMonitor,
        settings: RunSettings = RunSettings(),
    ) -> None:
        self.settings = settings
        self.monitor = monitor
        self.baselines = _prepare(entry, dataset_settings, zoo_folder, settings)  # load_card: zoo built?
        card = self.baselines.card
        self.baseline_metric = {framework: self._baseline_metric(framework) for framework in card.frameworks}
        self._base_config = {
            "family": entry.family,
            "architecture": entry.architecture,
            "n_outputs": card.n_outputs,
        }

    def _baseline_metric(self, framework: str) -> float | None:
        """The baseline's check metric on the device its variants are checked on (this machine's
        GPU where there is one: the same device on both sides of each variant's metric delta), on
        a copy there: the shared baseline stays on the CPU, where every variant starts."""
        runtime = BASELINES[framework].runtime
        devices = get_runtime(runtime).devices
        model = self.baselines.model(framework)
        if device_here(devices) != "cpu":
            model = copy.deepcopy(model)
        return _check_metric(self.baselines, runtime, model, devices)

    def baseline_records(self) -> list[VariantRecord]:
        return [
            _baseline_record(self.baselines, BASELINES[framework], metric)
            for framework, metric in self.baseline_metric.items()
        ]

    def variant(self, spec: VariantSpec, folder: Path) -> VariantRecord:
        """``spec`` built into ``folder`` (or reused from it when unchanged)."""
        key = _variant_key(self.baselines.card.artifact_sha256, spec, self.settings)
        cached = _cached(folder, key)
        if cached is not None:
            logger.info("%s/%s: reusing", self.baselines.entry.model_id, spec.variant_id)
            return replace(cached, reused=True)
        record = _run_variant(
            self.baselines,
            spec,
            folder,
            key,
            self._base_config,
            self.baseline_metric.get(spec.framework),
            self.monitor,
        )
        (folder / RECORD_FILE).parent.mkdir(parents=True, exist_ok=True)
        (folder / RECORD_FILE).write_text(json.dumps(asdict(record), indent=2, default=str))
        return record


def optimize_model(
    entry: ZooEntry,
    dataset_settings: Mapping[str, Any],
    zoo_folder: Path,
    variants: Mapping[str, VariantSpec],
    out_dir: Path,
    monitor: EnergyMonitor,
    settings: RunSettings = RunSettings(),
) -> list[VariantRecord]:
    """Baseline records for the model's frameworks, then every variant (reused when unchanged)."""
    optimizer = ModelOptimizer(entry, dataset_settings, zoo_folder, monitor, settings)
    return optimizer.baseline_records() + [
        optimizer.variant(spec, out_dir / variant_id) for variant_id, spec in variants.items()
    ]


def _chained_devices(
    spec: VariantSpec, index: int, before: tuple[str, ...], step_devices: tuple[str, ...]
) -> tuple[str, ...]:
    """Where the variant runs after step ``index``: a chain runs only where every step does
    (fp8, which is CUDA-only, stays CUDA-only when compiled)."""
    if index == 0:
        return step_devices
    common = tuple(device for device in before if device in step_devices)
    if not common:
        raise NotApplicable(
            f"step {index + 1} ({spec.steps[index].technique}) runs on {', '.join(step_devices)} only, the steps "
            f"before it on {', '.join(before)} only: no device runs the whole chain"
        )
    return common


def _run_variant(
    b: _Baselines,
    spec: VariantSpec,
    folder: Path,
    key: str,
    base_config: dict[str, Any],
    baseline_metric: float | None,
    monitor: EnergyMonitor,
) -> VariantRecord:
    optimized: OptimizedModel | None = None
    recipes: list[Any] = []
    reason = ""
    macs = b.macs  # int8 and half precision keep the count; structured pruning reports its own
    window = f"{b.entry.model_id}/{spec.variant_id}"
    start_s = time.perf_counter()
    monitor.begin_window(window)
    try:
        model: Any = b.model(spec.framework)
        devices = get_runtime(BASELINES[spec.framework].runtime).devices
        for index, step in enumerate(spec.steps):
            optimized = get_technique(step.technique).apply(
                model, step.settings, replace(b.context, devices=devices)
            )
            devices = _chained_devices(spec, index, devices, optimized.devices)
            model = optimized.model
            recipes.append(optimized.extra.get("rebuild_recipe"))
            macs = optimized.extra.get("macs_after", macs)
        if optimized is not None:
            optimized.devices = devices
    except NotApplicable as why:
        reason, optimized = str(why), None
    finally:
        energy = monitor.end_window(window)
    duration_s = time.perf_counter() - start_s
    common: dict[str, Any] = dict(
        model_id=b.entry.model_id,
        variant_id=spec.variant_id,
        framework=spec.framework,
        technique=spec.technique,
        steps=json.dumps([asdict(s) for s in spec.steps]),
        metric=b.entry.metric,
        baseline_val_metric=baseline_metric,
        baseline_macs=b.macs,
        optimization_duration_s=duration_s,
        optimization_energy=energy.to_flat_dict(),
        config_sha256=key,
    )
    if optimized is None:
        logger.info("%s/%s: not applicable: %s", b.entry.model_id, spec.variant_id, reason)
        return VariantRecord(
            **common,
            runtime="",
            status="not_applicable",
            reason=reason,
            devices="",
            notes="",
            val_metric=None,
            metric_delta=None,
            n_parameters=None,
            n_nonzero_parameters=None,
            effective_sparsity=None,
            size_on_disk_bytes=None,
            compressed_size_bytes=None,
            macs=None,
        )
    files = artifacts.save_variant(optimized, spec, base_config, folder, recipes)
    stats = artifacts.measure_artifact(folder, files, optimized.runtime)
    metric = _check_metric(b, optimized.runtime, optimized.model, optimized.devices)
    logger.info(
        "%s/%s: %s %s (baseline %s), %.1f%% sparse, %d bytes",
        b.entry.model_id,
        spec.variant_id,
        b.entry.metric,
        metric,
        baseline_metric,
        100 * stats.effective_sparsity,
        stats.size_on_disk_bytes,
    )
    return VariantRecord(
        **common,
        runtime=optimized.runtime,
        status="ok",
        reason="",
        devices=",".join(optimized.devices),
        notes=optimized.notes,
        val_metric=metric,
        metric_delta=None if metric is None or baseline_metric is None else metric - baseline_metric,
        n_parameters=stats.n_parameters,
        n_nonzero_parameters=stats.n_nonzero_parameters,
        effective_sparsity=stats.effective_sparsity,
        size_on_disk_bytes=stats.size_on_disk_bytes,
        compressed_size_bytes=stats.compressed_size_bytes,
        macs=macs,
        artifact_dir=str(folder),
        artifact_sha256={name: zoo_artifacts.file_sha256(folder / name) for name in files},
    )


def _baseline_record(b: _Baselines, baseline: Baseline, metric: float | None) -> VariantRecord:
    runtime = get_runtime(baseline.runtime)
    names = [Path(f).name for f in baseline.files]
    stats = artifacts.measure_artifact(b.folder / baseline.subfolder, names, baseline.runtime)
    return VariantRecord(
        model_id=b.entry.model_id,
        variant_id=baseline.variant_id,
        framework=baseline.framework,
        runtime=baseline.runtime,
        technique="baseline",
        steps="[]",
        status="ok",
        reason="",
        devices=",".join(runtime.devices),
        notes="the zoo model as built",
        metric=b.entry.metric,
        val_metric=metric,
        baseline_val_metric=metric,
        metric_delta=0.0 if metric is not None else None,
        n_parameters=stats.n_parameters,
        n_nonzero_parameters=stats.n_nonzero_parameters,
        effective_sparsity=stats.effective_sparsity,
        size_on_disk_bytes=stats.size_on_disk_bytes,
        compressed_size_bytes=stats.compressed_size_bytes,
        macs=b.macs,
        baseline_macs=b.macs,
        optimization_duration_s=0.0,
        artifact_dir=str(b.folder),
        artifact_sha256={f: b.card.artifact_sha256[f] for f in baseline.files},
        config_sha256="baseline",
    )


def _variant_key(base_sha256: Mapping[str, str], spec: VariantSpec, settings: RunSettings) -> str:
    import hashlib

    payload = {
        "base": dict(base_sha256),
        "variant": spec.config_sha256(),
        "run": asdict(settings),
        "format": pytorch.FORMAT_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _cached(folder: Path, key: str) -> VariantRecord | None:
    path = folder / RECORD_FILE
    if not path.is_file():
        return None
    try:
        record = VariantRecord(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError):
        return None
    if record.config_sha256 != key:
        return None
    for name, expected in record.artifact_sha256.items():
        if not (folder / name).is_file() or zoo_artifacts.file_sha256(folder / name) != expected:
            logger.warning(
                "%s: artifact %s missing or modified; redoing the variant", record.variant_id, name
            )
            return None
    # where the files are now (a moved cache keeps its variants)
    return replace(record, artifact_dir=str(folder)) if record.artifact_dir else record
