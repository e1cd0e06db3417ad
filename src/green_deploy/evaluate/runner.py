"""Running a study: every pending cell measured once, stored, logged, in a seeded random order.

Order: the variants (with their target and device) are shuffled with the protocol's seed, and
each variant's batch sizes are shuffled within it. Shuffling single cells across variants would
restart a server per cell; shuffling variants keeps slow drifts of the machine (heat, background
load) from lining up with a model or a technique, which is what randomisation is for.

Before the first cell, local servers still running (left by the deploy pipeline or a killed
study) are stopped: none may idle beside a measurement. Per variant: deploy (the local and
in-process targets start what they need; a cloud target uses the deploy pipeline's recorded
endpoint), score its evaluation items (a seeded subset of the test split, or all of it; once
per artifact, runtime and device: another target, batch size or study reuses the pass, see
``evaluate.accuracy``), then per cell warm up at its batch size and measure it, each cell stored
as soon as it is done.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from green_deploy.deploy.base import Deployer, Deployment
from green_deploy.deploy.local import LocalDeployer, teardown_all
from green_deploy.deploy.runner import DeploySettings, build_deployers, recorded_deployments, variant_of
from green_deploy.deploy.targets import DEFAULT_TARGET, DeployerOptions, cloud_targets, get_target
from green_deploy.energy import EnergyMonitor
from green_deploy.energy.carbon import (
    CarbonIntensity,
    footprint_per_1000,
    intensity_for_cloud,
    intensity_for_country,
)
from green_deploy.energy.sources import discover_sources
from green_deploy.errors import ArtifactError, ConfigError, GreenDeployError
from green_deploy.evaluate.accuracy import accuracy_key
from green_deploy.evaluate.harness import (
    AccuracyResult,
    Client,
    EvaluationSet,
    RepetitionMeter,
    ServerMeter,
    batches,
    measure_accuracy,
    measure_cell,
    summarize,
    warm_up,
)
from green_deploy.evaluate.reference import measure_gpu_floor, measure_reference
from green_deploy.evaluate.store import StudyStore
from green_deploy.evaluate.study import Cell, StudySettings, protocol_hash, variant_hash
from green_deploy.evaluate.tracking import StudyTracker
from green_deploy.serving.model import check_devices_here, serving_path
from green_deploy.zoo.metrics import task_metrics

logger = logging.getLogger(__name__)

# Columns of the variants table copied into every cell row (what the tradeoff analyses group by).
VARIANT_COLUMNS = (
    "framework",
    "runtime",
    "technique",
    "steps",
    "n_parameters",
    "n_nonzero_parameters",
    "effective_sparsity",
    "size_on_disk_bytes",
    "macs",
    "baseline_macs",
    "val_metric",
    "baseline_val_metric",
    "optimization_total_energy_j",
    "optimization_measured",
    "optimization_duration_s",
)


class EvaluationError(GreenDeployError):
    """Some cells could not be measured (the rest were, and are stored)."""


@dataclass(frozen=True)
class Failure:
    model_id: str
    variant_id: str
    target: str
    device: str
    cells: int
    reason: str


@dataclass
class StudyOutcome:
    measured: int = 0
    resumed: int = 0
    failures: list[Failure] = field(default_factory=list)


@dataclass(frozen=True)
class Group:
    """The cells of one variant on one target and device: measured through one deployment."""

    model_id: str
    variant_id: str
    target: str
    device: str
    cells: tuple[Cell, ...]


def evaluation_set(entry: Any, dataset_settings: Mapping[str, Any]) -> EvaluationSet:
    """A zoo entry's test split, encoded as its models take it."""
    from green_deploy.zoo.builder import encoded_splits

    data = encoded_splits(entry, dataset_settings)
    return EvaluationSet(
        entry.task, entry.metric, np.asarray(data.test_x), data.test_y, data.test_pairs, entry.domain
    )


def artifact_hashes(row: Mapping[str, Any]) -> dict[str, str]:
    """The sha256 of each file of a variant (the variants table's ``artifact_sha256``, JSON);
    a table written before it had them falls back on the variant's recipe hash."""
    recorded = row.get("artifact_sha256")
    if isinstance(recorded, str) and recorded:
        return dict(json.loads(recorded))
    return {
        "recipe": str(row.get("config_sha256") or ""),
        "variant": f"{row['model_id']}/{row['variant_id']}",
    }


def check_artifact_files(row: Mapping[str, Any]) -> None:
    """Refuse a variant whose files differ from what the optimize pipeline recorded (truncated,
    edited, rebuilt by hand): its measurements would be credited to the recorded variant."""
    recorded = row.get("artifact_sha256")
    if not isinstance(recorded, str) or not recorded:
        return
    from green_deploy.runtimes.base import rebuild_command
    from green_deploy.zoo.artifacts import file_sha256

    folder = Path(str(row["artifact_dir"]))
    name = f"{row['model_id']}/{row['variant_id']}"
    rebuild = (
        f"rebuild it with `kedro run --pipeline=zoo --namespaces={row['model_id']}`"
        if str(row.get("technique")) == "baseline"
        else rebuild_command(folder)
    )
    for file, expected in json.loads(recorded).items():
        path = folder / file
        if not path.is_file():
            raise ArtifactError(f"{name}: {path} is missing; {rebuild}")
        if file_sha256(path) != expected:
            raise ArtifactError(
                f"{name}: {path} is not the file the optimize pipeline recorded (sha256 {expected[:12]}...): "
                f"corrupt or changed by hand; {rebuild}"
            )


def plan(cells: Sequence[Cell], seed: int) -> list[Group]:
    """The cells grouped by deployment, groups and cells within them in a seeded random order."""
    grouped: dict[tuple[str, str, str, str], list[Cell]] = {}
    for cell in cells:
        grouped.setdefault((cell.model_id, cell.variant_id, cell.target, cell.device), []).append(cell)
    rng = random.Random(seed)
    keys = sorted(grouped)
    rng.shuffle(keys)
    groups = []
    for key in keys:
        members = sorted(grouped[key], key=lambda c: c.batch_size)
        rng.shuffle(members)
        groups.append(Group(*key, cells=tuple(members)))
    return groups


def max_items_of(deployer: Deployer) -> int:
    """The most items one request may carry on this target."""
    limit = getattr(deployer, "max_items", None) or getattr(
        getattr(deployer, "settings", None), "max_items", None
    )
    return int(limit or 256)


def check_batch_sizes(settings: StudySettings, deployers: Mapping[tuple[str, str], Deployer]) -> None:
    for (target, _), deployer in deployers.items():
        limit = max_items_of(deployer)
        too_big = [b for b in settings.batch_sizes if b > limit]
        if too_big:
            raise ConfigError(
                f"evaluate.batch_sizes {too_big} exceed what one request to {target} may carry ({limit}; "
                f"deploy.{target}.max_items)"
            )


class StudyRunner:
    """Measures the pending cells of one study; see the module docstring.

    Args:
        settings: the study.
        variant_rows: the optimize pipeline's variants table, one mapping per row.
        deployers: one per target and device of the study (``study_deployers``).
        evaluation_set: the whole evaluation split of a zoo model id (called once per model; the
            runner scores ``settings.accuracy_max_items`` of it).
        store: where cells and accuracy passes are kept.
        tracker: MLflow logging (``None``: not logged).
        deploy_work_dir: where the deploy pipeline recorded cloud endpoints.
        progress: a ``tqdm``-like factory (``total=``) for the progress bar; ``None``: none.
        meter: the GPU counter read around repetitions of cells on a GPU of this machine
            (``RepetitionMeter.open``); ``None``: the servers' own figures only.
    """

    def __init__(
        self,
        settings: StudySettings,
        variant_rows: Sequence[Mapping[str, Any]],
        deployers: Mapping[tuple[str, str], Deployer],
        evaluation_set: Callable[[str], EvaluationSet],
        store: StudyStore,
        tracker: StudyTracker | None = None,
        deploy_work_dir: Path | str = "data/07_model_output/deploy",
        progress: Callable[..., Any] | None = None,
        meter: RepetitionMeter | None = None,
    ) -> None:
        self.settings = settings
        self.rows = {(str(r["model_id"]), str(r["variant_id"])): dict(r) for r in variant_rows}
        self.deployers = deployers
        self.evaluation_set = evaluation_set
        self.store = store
        self.tracker = tracker
        self.deploy_work_dir = Path(deploy_work_dir)
        self.progress = progress
        self.meter = meter
        self._gpu_floor_pj_per_flop: float | None = None  # the latest floor measured in this run
        self._data: dict[str, EvaluationSet] = {}

    def run(self, cells: Sequence[Cell]) -> StudyOutcome:
        check_batch_sizes(self.settings, self.deployers)
        self.store.remove_partial_writes()
        self._stop_idle_servers()
        outcome = StudyOutcome()
        pending = [c for c in cells if self.store.cell(c.config_hash) is None]
        outcome.resumed = len(cells) - len(pending)
        if self.tracker is not None:
            self._log_unlogged()
        logger.info(
            "study %r: %d cells, %d already measured, %d to measure",
            self.settings.study,
            len(cells),
            outcome.resumed,
            len(pending),
        )
        bar = self.progress(total=len(pending), unit="cell") if self.progress and pending else None
        reference = self._reference_meter() if pending and self.settings.reference_every else None
        on_gpu = reference is not None and self.meter is not None and any(c.device != "cpu" for c in pending)
        try:
            for index, group in enumerate(plan(pending, self.settings.protocol.seed)):
                if reference is not None and index % self.settings.reference_every == 0:
                    self._measure_reference(reference)
                    if on_gpu:
                        self._measure_gpu_floor()
                if bar is not None:
                    bar.set_postfix_str(f"{group.model_id}/{group.variant_id}", refresh=False)
                try:
                    outcome.measured += self._measure_group(group, bar)
                except Exception as error:  # one broken variant must not end the study
                    logger.exception(
                        "%s/%s on %s: not measured", group.model_id, group.variant_id, group.target
                    )
                    done = sum(self.store.cell(c.config_hash) is not None for c in group.cells)
                    outcome.measured += done
                    outcome.failures.append(
                        Failure(
                            group.model_id,
                            group.variant_id,
                            group.target,
                            group.device,
                            len(group.cells) - done,
                            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
                        )
                    )
                    if bar is not None:
                        bar.update(len(group.cells) - done)
        finally:
            if bar is not None:
                bar.close()
            if reference is not None:
                self._measure_reference(reference)
                reference.close()
            if on_gpu:
                self._measure_gpu_floor()
        return outcome

    # ---- the machine's reference ----------------------------------------------------------------
    @staticmethod
    def _reference_meter() -> EnergyMonitor:
        """This process's CPU and DRAM sources, as a served variant's are (no GPU: the reference
        is CPU work)."""
        return EnergyMonitor(discover_sources(gpu=False))

    def _measure_reference(self, monitor: EnergyMonitor) -> None:
        """In windows as long as the cells' repetitions, as many as a cell takes at least."""
        protocol = self.settings.protocol
        run = measure_reference(monitor, max(3, protocol.min_repetitions), protocol.repetition_s)
        self.store.save_reference(run.to_dict())
        if self.tracker is not None:
            self.tracker.log_reference(run.to_dict())
        logger.info(
            "machine reference: %.4g J per unit (%s)",
            float(np.exp(np.mean(np.log(run.energy_per_unit_j)))),
            run.sources,
        )

    def _measure_gpu_floor(self) -> None:
        """The GPU's bf16 matmul floor, read by the cells' own counter, beside the reference: each
        cell's GPU pJ/FLOP reads as a multiple of it (``gpu_pj_per_flop``), and it moves with the GPU."""
        assert self.meter is not None
        floor = measure_gpu_floor(self.meter.monitor, max(3, self.settings.protocol.min_repetitions))
        self._gpu_floor_pj_per_flop = float(np.median(floor.pj_per_flop))
        self.store.save_gpu_floor(floor.to_dict())
        if self.tracker is not None:
            self.tracker.log_gpu_floor(floor.to_dict(), len(self.store.gpu_floors()))
        logger.info("GPU bf16 matmul floor: %.3f pJ/FLOP (%s)", self._gpu_floor_pj_per_flop, floor.source)

    # ---- one variant --------------------------------------------------------------------------
    def _measure_group(self, group: Group, bar: Any) -> int:
        row = self.rows[(group.model_id, group.variant_id)]
        data = self._evaluation_set(group.model_id)
        deployer = self.deployers[(group.target, group.device)]
        # a device other than the CPU is chosen for targets on this machine only (settings check)
        meter = self.meter if group.device != "cpu" else None
        if get_target(group.target).local:
            check_artifact_files(row)
        variant = variant_of(row, data.x[:1])
        started = time.perf_counter()
        deployment, stop_after = self._acquire(deployer, group, variant)
        phases_s = {"deploy": time.perf_counter() - started}
        protocol = self.settings.protocol
        measured = 0
        server_meter = ServerMeter.of(deployment)
        try:
            client = Client(deployer, deployment, max_items_of(deployer))
            path = deployment.resources.get("serving_path") or serving_path(str(row["runtime"]))
            with _timed(phases_s, "accuracy"):
                accuracy = self._accuracy(group, row, path, client, data)
            intensity = self._intensity(group.target, deployment)
            for cell in group.cells:
                inputs = batches(data.x, cell.batch_size, protocol.seed)
                with _timed(phases_s, "warm-up"):
                    # at the cell's own batch shape: a compiled model specialises on it
                    warm_up(client, inputs, protocol.warmup_s)
                with _timed(phases_s, "cells"):
                    measurement = measure_cell(
                        client,
                        inputs,
                        protocol,
                        meter=meter,
                        server_meter=server_meter,
                        concurrency=cell.concurrency,
                    )
                figures = summarize(measurement)
                cell_row = self._cell_row(cell, row, deployment, data, accuracy, figures, intensity, path)
                repetitions = [{**_cell_keys(cell), **r.to_row()} for r in measurement.repetitions]
                with _timed(phases_s, "records"):
                    self.store.save_cell(cell.config_hash, cell_row, repetitions)
                    if self.tracker is not None:
                        self.tracker.log_cell(cell_row, repetitions)
                measured += 1
                if bar is not None:
                    bar.update(1)
                if protocol.cooldown_s > 0:
                    time.sleep(protocol.cooldown_s)
        finally:
            if server_meter is not None:
                server_meter.close()
            if stop_after:
                with _timed(phases_s, "stop"):
                    deployer.teardown(deployment)
            logger.info(
                "%s/%s on %s: %s",
                group.model_id,
                group.variant_id,
                group.target,
                ", ".join(f"{phase} {duration_s:.2f} s" for phase, duration_s in phases_s.items()),
            )
        return measured

    def _stop_idle_servers(self) -> None:
        """Stop every local server recorded under the deploy work dirs before measuring: an idle
        server (left by the deploy pipeline, or by a study killed between a variant's last cell
        and its stop) would share the machine with the measurements."""
        work_dirs = {d.work_dir for d in self.deployers.values() if isinstance(d, LocalDeployer)}
        for work_dir in sorted(work_dirs):
            stopped = teardown_all(work_dir)
            if stopped:
                logger.info(
                    "stopped %d local server(s) left running under %s so that none idles beside a measurement: %s",
                    len(stopped),
                    work_dir,
                    ", ".join(d.endpoint_name for d in stopped),
                )

    def _evaluation_set(self, model_id: str) -> EvaluationSet:
        if model_id not in self._data:
            self._data[model_id] = self.evaluation_set(model_id).subset(
                self.settings.accuracy_max_items, self.settings.accuracy_seed
            )
        return self._data[model_id]

    def _acquire(self, deployer: Deployer, group: Group, variant: Any) -> tuple[Deployment, bool]:
        """The deployment to measure, and whether to stop it afterwards: a local server and the
        in-process worker are stopped when their cells are done, so a study leaves no process
        behind; a cloud endpoint is the deploy pipeline's to remove."""
        if get_target(group.target).local:
            return deployer.deploy(variant), True
        for _, deployment in recorded_deployments(self.deploy_work_dir, group.target):
            if (deployment.model_id, deployment.variant_id) == (group.model_id, group.variant_id):
                return deployment, False
        raise ArtifactError(
            f"{group.model_id}/{group.variant_id} has no recorded {group.target} endpoint under "
            f"{self.deploy_work_dir}; run `kedro run --pipeline=deploy` with {group.target} in deploy.targets first"
        )

    def _accuracy(
        self, group: Group, row: Mapping[str, Any], path: str, client: Client, data: EvaluationSet
    ) -> AccuracyResult:
        key = accuracy_key(
            artifact_hashes(row),
            str(row["runtime"]),
            path,
            group.device,
            data.items_sha256,
            tuple(task_metrics(data.task)),
        )
        stored = self.store.accuracy(key)
        if stored is not None:
            return AccuracyResult(**stored)
        accuracy = measure_accuracy(
            client, data, self.settings.accuracy_batch_size, self.settings.protocol.confidence
        )
        self.store.save_accuracy(key, accuracy.to_dict())
        logger.info(
            "%s/%s on %s: %s = %.4f [%.4f, %.4f] on %d of %d test items (%.1f s)",
            group.model_id,
            group.variant_id,
            group.target,
            data.metric,
            accuracy.metrics[data.metric],
            *accuracy.intervals[data.metric],
            accuracy.n_items,
            accuracy.n_split_items,
            accuracy.duration_s,
        )
        return accuracy

    def _intensity(self, name: str, deployment: Deployment) -> CarbonIntensity:
        target = get_target(name)
        if target.provider != "local":  # a cloud endpoint, or a provider's stack standing for one
            return intensity_for_cloud(target.provider, deployment.region)
        return intensity_for_country(self.settings.country_iso)

    def _cell_row(
        self,
        cell: Cell,
        row: Mapping[str, Any],
        deployment: Deployment,
        data: EvaluationSet,
        accuracy: AccuracyResult,
        figures: Mapping[str, Any],
        intensity: CarbonIntensity,
        path: str,
    ) -> dict[str, Any]:
        footprint = footprint_per_1000(
            figures["energy_per_item_j"],
            figures["duration_per_item_s"],
            intensity,
            deployment.pue or 1.0,
            self.settings.price_per_kwh,
            deployment.cost_per_hour_usd or 0.0,
        )
        return {
            "study": self.settings.study,
            **_cell_keys(cell),
            "variant_hash": cell.variant_hash,
            "protocol_hash": cell.protocol_hash,
            "domain": data.domain,
            **{column: _plain(row.get(column)) for column in VARIANT_COLUMNS},
            "region": deployment.region,
            "instance_type": deployment.instance_type,
            "serving_path": path,
            "metric": data.metric,
            "accuracy": accuracy.metrics[data.metric],
            "accuracy_ci_low": accuracy.intervals[data.metric][0],
            "accuracy_ci_high": accuracy.intervals[data.metric][1],
            "accuracy_interval": accuracy.methods[data.metric],
            "accuracy_metrics": json.dumps(accuracy.metrics, sort_keys=True),
            "accuracy_n_items": accuracy.n_items,
            "accuracy_split_items": accuracy.n_split_items,
            **figures,
            **self._per_flop(
                figures.get("gpu_energy_per_item_j"), row.get("baseline_macs") or row.get("macs")
            ),
            "carbon_g_per_1000": footprint.carbon_g_per_1000,
            "cost_per_1000": footprint.cost_per_1000,
            "facility_energy_per_1000_j": footprint.facility_energy_per_1000_j,
            "pue": footprint.pue,
            "intensity_g_per_kwh": intensity.intensity_g_per_kwh,
            "intensity_source": intensity.source,
            "price_per_kwh": footprint.price_per_kwh,
            "instance_hour_price": footprint.instance_hour_price,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def _per_flop(self, gpu_energy_j: float | None, macs: Any) -> dict[str, float | None]:
        """The cell's GPU energy per FLOP of the model as built (its baseline's 2 x MACs, so every
        variant of a model is divided by the same work), and as a multiple of the floor measured
        in this run; ``None`` for a cell with no GPU counter or no counted MACs."""
        if gpu_energy_j is None or not macs or self._gpu_floor_pj_per_flop is None:
            return {"gpu_pj_per_flop": None, "gpu_floor_pj_per_flop": None, "gpu_floor_multiple": None}
        pj_per_flop = 1e12 * float(gpu_energy_j) / (2.0 * float(macs))
        floor = self._gpu_floor_pj_per_flop
        return {
            "gpu_pj_per_flop": pj_per_flop,
            "gpu_floor_pj_per_flop": floor,
            "gpu_floor_multiple": pj_per_flop / floor,
        }

    def _log_unlogged(self) -> None:
        """Log stored cells that have no MLflow run (a run killed between the two)."""
        assert self.tracker is not None
        logged = self.tracker.logged_cells()
        for stored in self.store.cells():
            if (
                stored["row"]["config_hash"] not in logged
                and stored["row"].get("study") == self.settings.study
            ):
                self.tracker.log_cell(stored["row"], stored["repetitions"])


@contextmanager
def _timed(phases_s: dict[str, float], phase: str) -> Iterator[None]:
    """Add the wall time of the block to ``phases_s[phase]`` (where a study's time goes)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        phases_s[phase] = phases_s.get(phase, 0.0) + time.perf_counter() - started


def _cell_keys(cell: Cell) -> dict[str, Any]:
    return {
        "model_id": cell.model_id,
        "variant_id": cell.variant_id,
        "target": cell.target,
        "batch_size": cell.batch_size,
        "device": cell.device,
        "concurrency": cell.concurrency,
        "config_hash": cell.config_hash,
    }


def _plain(value: Any) -> Any:
    """A table value as JSON keeps it (numpy scalars to Python, NaN stays NaN)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def current_cells(
    store: StudyStore, variant_rows: Sequence[Mapping[str, Any]], settings: StudySettings
) -> list[dict[str, Any]]:
    """Every stored cell that still describes the variants and protocol of now (subsets measured
    in earlier runs included); a cell of a changed variant or protocol is left out."""
    hashes = {(str(r["model_id"]), str(r["variant_id"])): variant_hash(r) for r in variant_rows}
    shared = protocol_hash(settings)
    kept, stale = [], 0
    for stored in store.cells():
        row = stored["row"]
        if row.get("protocol_hash") == shared and hashes.get((row["model_id"], row["variant_id"])) == row.get(
            "variant_hash"
        ):
            kept.append(stored)
        else:
            stale += 1
    if stale:
        logger.info("%d stored cells describe an earlier variant or protocol; left out of the tables", stale)
    return kept


def study_deployers(
    settings: StudySettings,
    deploy: Mapping[str, Any],
    credentials: Mapping[str, Any] | None = None,
    meter: RepetitionMeter | None = None,
) -> dict[tuple[str, str], Deployer]:
    """One deployer per target and device of the study, configured by ``deploy``
    (``parameters_deploy.yml``); the targets on this machine (local servers, the in-process
    worker) measure the protocol's idle baseline first. On a GPU whose counter the harness reads
    (``meter``) they leave NVML closed, so the GPU is counted once and requests do not pay for
    counter reads. Cloud targets are built as the deploy pipeline builds them."""
    check_devices_here(settings.devices, "evaluate.devices (search.device in a search)")
    deploy = deploy or {}
    clouds = [t for t in settings.targets if t in cloud_targets()]
    deploy_settings = DeploySettings.parse(
        {**deploy, "targets": clouds or [DEFAULT_TARGET], "dry_run": False}
    )
    on_machine = {
        target: replace(target.settings_from(deploy), idle_s=settings.protocol.idle_s)
        for target in map(get_target, settings.targets)
        if target.local
    }
    options = DeployerOptions(deploy_settings.work_dir, tied=True)
    deployers: dict[tuple[str, str], Deployer] = {}
    for device in settings.devices:
        for target, own in on_machine.items():
            on_device = replace(
                own, device=device, gpu_energy=own.gpu_energy and (device == "cpu" or meter is None)
            )
            deployers[(target.name, device)] = target.build(on_device, options)
    if clouds:
        deployers.update(
            {
                (target, "cpu"): deployer
                for target, deployer in build_deployers(deploy_settings, deploy, credentials).items()
            }
        )
    return deployers
