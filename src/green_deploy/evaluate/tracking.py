"""The study in MLflow: one parent run per study, one nested run per measured cell.

The parent run is found by its tags (``green_deploy.study``, ``green_deploy.run_kind=study``) in
the experiment, so a study resumed over several ``kedro run`` calls keeps one parent. A cell's run
carries ``green_deploy.cell_hash``; before measuring, the runner asks which stored cells have no
run yet (a run killed between storing a cell and logging it) and logs them, so MLflow neither
loses nor duplicates a cell.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

STUDY_TAG = "green_deploy.study"
KIND_TAG = "green_deploy.run_kind"
CELL_TAG = "green_deploy.cell_hash"
PARENT_TAG = "mlflow.parentRunId"

# Row fields that are a cell's parameters in MLflow (the rest of the numbers are metrics).
PARAMS = (
    "study",
    "model_id",
    "variant_id",
    "domain",
    "framework",
    "runtime",
    "serving_path",
    "technique",
    "steps",
    "target",
    "device",
    "batch_size",
    "concurrency",
    "region",
    "metric",
    "accuracy_interval",
    "config_hash",
    "variant_hash",
    "protocol_hash",
    "instance_type",
)
REFERENCE_ARTIFACTS = "reference"  # the parent run's folder of the machine's reference measurements
_MAX_PARAM_CHARS = 6000
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


class StudyTracker:
    """Logs cells under the study's parent run with ``MlflowClient`` (no global active run)."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        study: str,
        params: Mapping[str, Any],
        kind: str = "study",
    ) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri)
        experiment = self.client.get_experiment_by_name(experiment_name)
        self.experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else self.client.create_experiment(experiment_name)
        )
        # MLflow 3's UI opens an experiment on its GenAI traces unless told it holds model runs
        self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        self.study = study
        self.kind = kind  # "study", or "search" (the parent of a search's trials)
        self.parent_run_id = self._parent_run(params)

    def _parent_run(self, params: Mapping[str, Any]) -> str:
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{STUDY_TAG}` = '{self.study}' and tags.`{KIND_TAG}` = '{self.kind}'",
            max_results=1,
            order_by=["attributes.start_time ASC"],
        )
        if found:
            if found[0].info.status != "RUNNING":  # a resumed study: its parent runs again
                self.client.update_run(found[0].info.run_id, status="RUNNING")
            return found[0].info.run_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{self.kind} {self.study}",
            tags={STUDY_TAG: self.study, KIND_TAG: self.kind},
        )
        from mlflow.entities import Param

        self.client.log_batch(
            run.info.run_id, params=[Param(k, _param_text(v)) for k, v in sorted(params.items())]
        )
        return run.info.run_id

    def finish(self, failed: bool = False) -> None:
        """End the parent run (FINISHED, or FAILED when some cells could not be measured); a
        later run of the same study opens it again."""
        self.client.set_terminated(self.parent_run_id, status="FAILED" if failed else "FINISHED")

    def log_reference(self, reference: Mapping[str, Any]) -> None:
        """One measurement of the machine's reference work, as an artifact of the parent run."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"{time.time_ns()}.json"
            path.write_text(json.dumps(dict(reference), default=str))
            self.client.log_artifact(self.parent_run_id, str(path), REFERENCE_ARTIFACTS)

    def log_gpu_floor(self, floor: Mapping[str, Any], step: int) -> None:
        """The GPU's bf16 matmul floor as a metric of the parent run (one step per measurement)."""
        from mlflow.entities import Metric

        median = statistics.median(float(v) for v in floor["pj_per_flop"])
        now_ms = int(time.time() * 1000)
        self.client.log_batch(
            self.parent_run_id, metrics=[Metric("gpu_matmul_floor_pj_per_flop", median, now_ms, step)]
        )

    def logged_cells(self) -> set[str]:
        """The cell hashes that already have a run under the study's parent."""
        hashes: set[str] = set()
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{PARENT_TAG}` = '{self.parent_run_id}'",
                max_results=1000,
                page_token=token,
            )
            hashes.update(r.data.tags[CELL_TAG] for r in page if CELL_TAG in r.data.tags)
            token = page.token
            if not token:
                return hashes

    def log_cell(
        self,
        row: Mapping[str, Any],
        repetitions: list[dict[str, Any]],
        *,
        kind: str = "cell",
        run_name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """A nested run for one cell (or a search trial, ``kind="trial"``, whose ``params`` are
        its choices): parameters, metrics, source tags, and the repetitions as an artifact; its
        run id. Whether its energy was measured or estimated is in its name, which the MLflow
        UI's run table always shows, and in the ``energy`` parameter."""
        from mlflow.entities import Metric, Param, RunTag

        provenance = cell_energy_provenance(row)
        run = self.client.create_run(
            self.experiment_id,
            run_name=(
                run_name
                or f"{row['model_id']}/{row['variant_id']} {row['target']} bs{row['batch_size']} {row['device']}"
            )
            + f" · energy {provenance.split(':')[0]}",
            tags={
                PARENT_TAG: self.parent_run_id,
                STUDY_TAG: self.study,
                KIND_TAG: kind,
                CELL_TAG: row["config_hash"],
                **(tags or {}),
            },
        )
        run_id = run.info.run_id
        now_ms = int(time.time() * 1000)
        logged_params = [Param(k, _param_text(row[k])) for k in PARAMS if row.get(k) not in (None, "")]
        logged_params += [Param(k, _param_text(v)) for k, v in (params or {}).items()]
        logged_params.append(Param("energy", provenance))
        metrics = [
            Metric(k, float(v), now_ms, 0)
            for k, v in row.items()
            if k not in PARAMS and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        ]
        source_tags = [
            RunTag(f"energy.{k.removesuffix('_source')}.source", str(v))
            for k, v in row.items()
            if k.endswith("_source") and v
        ]
        source_tags += [RunTag("energy.measured", str(bool(row.get("energy_measured"))).lower())]
        source_tags += [RunTag("ci_reached", str(bool(row.get("ci_reached"))).lower())]
        self.client.log_batch(run_id, metrics=metrics, params=logged_params, tags=source_tags)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "repetitions.json"
            path.write_text(json.dumps(repetitions, indent=1, default=str))
            self.client.log_artifact(run_id, str(path))
        self.client.set_terminated(run_id)
        return run_id


def active_run_tracker(study: str, params: Mapping[str, Any], kind: str = "study") -> StudyTracker | None:
    """A tracker whose parent run is in the experiment of MLflow's active run (kedro-mlflow's);
    ``None`` when there is none (tracking is off: nothing is logged)."""
    import mlflow

    active = mlflow.active_run()
    if active is None:
        logger.info(
            "no active MLflow run (kedro-mlflow tracking is off): %s %s is not logged to MLflow", kind, study
        )
        return None
    experiment = mlflow.get_experiment(active.info.experiment_id)
    return StudyTracker(mlflow.get_tracking_uri(), experiment.name, study, params, kind=kind)


def cell_energy_provenance(row: Mapping[str, Any]) -> str:
    """``measured: <sources>``, ``estimated: <sources>`` or, where some components were measured
    and others estimated, ``partly measured: gpu measured (<sources>), cpu estimated (<sources>)``."""
    import pandas as pd

    from green_deploy.evaluate.summary import component_provenance, provenance_text

    components = component_provenance(pd.DataFrame([dict(row)]))
    if not components:
        return f"{'measured' if row.get('energy_measured') else 'estimated'}: no source"
    return provenance_text(components, loud=False)


def _param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:_MAX_PARAM_CHARS]
