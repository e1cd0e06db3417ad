"""A search trial, measured as a study cell is: built by the optimize code, served and metered by
the evaluate harness with the study's protocol.

Trials are scored on the held-back half of the validation split (what the optimize pipeline
checks variants on; the test split is never used to choose). The Pareto set of a finished search
is then measured again on the test split (``measure_front``), so it stands beside the declared
variants of the study in the same units. The two live in separate stores: a cell's hash names
the variant and protocol, not the data.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from green_deploy.deploy.base import Deployer
from green_deploy.errors import GreenDeployError
from green_deploy.evaluate.harness import EvaluationSet, RepetitionMeter
from green_deploy.evaluate.runner import EvaluationError, StudyRunner
from green_deploy.evaluate.store import StudyStore
from green_deploy.evaluate.study import StudySettings, expand_cells
from green_deploy.evaluate.tracking import StudyTracker
from green_deploy.optimize.runner import ModelOptimizer, VariantRecord
from green_deploy.optimize.spec import VariantSpec
from green_deploy.search.space import suggest_variant
from green_deploy.search.study import NOT_APPLICABLE_ATTR, OBJECTIVES, SearchSettings
from green_deploy.tradeoff.frontier import metric_signs, pareto_mask
from green_deploy.zoo.baselines import BASELINES
from green_deploy.zoo.metrics import better_sign

logger = logging.getLogger(__name__)


class TrialError(GreenDeployError):
    """A trial's variant could not be built or measured (the trial fails; the search goes on)."""


@dataclass(frozen=True)
class Measured:
    """A variant's record from the optimize code, its measured cell row and repetitions."""

    record: VariantRecord
    row: dict[str, Any]
    repetitions: list[dict[str, Any]]


class VariantMeasurer:
    """Builds variants of one model and measures one cell of each (the search's batch size, target
    and device) on one evaluation set, with the evaluate harness; both steps resume from disk."""

    def __init__(
        self,
        optimizer: ModelOptimizer,
        study: StudySettings,
        deployers: Mapping[tuple[str, str], Deployer],
        evaluation: EvaluationSet,
        store: StudyStore,
        variants_dir: Path,
        meter: RepetitionMeter | None = None,
    ) -> None:
        self.optimizer = optimizer
        self.study = study
        self.deployers = deployers
        self.evaluation = evaluation
        self.store = store
        self.variants_dir = variants_dir
        self.meter = meter

    def build(self, spec: VariantSpec) -> VariantRecord:
        if not spec.steps:
            baselines = {r.framework: r for r in self.optimizer.baseline_records()}
            return baselines[spec.framework]
        record = self.optimizer.variant(spec, self.variants_dir / spec.variant_id)
        if record.status != "ok":
            raise TrialError(f"{spec.technique} does not apply: {record.reason}")
        if "cpu" not in record.devices.split(",") and self.study.devices == ("cpu",):
            raise TrialError(f"{spec.variant_id} runs on {record.devices} only")
        return record

    def measure(self, record: VariantRecord) -> Measured:
        row = record.to_row()
        cells = expand_cells([row], self.study)
        if len(cells) != 1:
            raise TrialError(f"{record.variant_id} cannot be served on {self.study.devices[0]} here")
        runner = StudyRunner(
            self.study,
            [row],
            self.deployers,
            lambda _: self.evaluation,
            self.store,
            meter=self.meter,
        )
        outcome = runner.run(cells)
        stored = self.store.cell(cells[0].config_hash)
        if outcome.failures or stored is None:
            reasons = "; ".join(f.reason for f in outcome.failures) or "no cell stored"
            raise EvaluationError(f"{record.model_id}/{record.variant_id}: {reasons}")
        return Measured(record, stored["row"], stored["repetitions"])


def objective_values(row: Mapping[str, Any], objectives: Sequence[str]) -> list[float]:
    """The cell's objective values; accuracy with its sign turned where the metric is better
    lower (bits per byte, perplexity), since the study maximizes it."""
    signs = {"accuracy": better_sign(row["metric"])}
    return [float(row[OBJECTIVES[name][1]]) * signs.get(name, 1.0) for name in objectives]


def accuracy_drop(baseline: Mapping[str, Any], row: Mapping[str, Any]) -> float:
    """How much worse than its baseline a cell scores (negative: better), whichever way its
    metric is better."""
    return (float(baseline["accuracy"]) - float(row["accuracy"])) * better_sign(row["metric"])


class SearchObjective:
    """Optuna's objective for one model: the trial's variant built and measured; its objective
    values, the accuracy-drop constraint (against the framework's baseline measured the same way)
    and the figures behind them on the trial; one nested MLflow run per trial."""

    def __init__(
        self,
        settings: SearchSettings,
        measurer: VariantMeasurer,
        tracker: StudyTracker | None = None,
    ) -> None:
        self.settings = settings
        self.measurer = measurer
        self.tracker = tracker
        self._baselines: dict[str, dict[str, Any]] = {}

    @property
    def measured_baselines(self) -> dict[str, dict[str, Any]]:
        """The baseline cells measured so far, by framework."""
        return dict(self._baselines)

    def baseline(self, framework: str) -> dict[str, Any]:
        """The framework's baseline cell (measured once; stored)."""
        if framework not in self._baselines:
            record = self.measurer.build(VariantSpec(BASELINES[framework].variant_id, framework, ()))
            self._baselines[framework] = self.measurer.measure(record).row
        return self._baselines[framework]

    def __call__(self, trial: Any) -> list[float]:
        spec = suggest_variant(trial, self.settings.space)
        trial.set_user_attr("variant_id", spec.variant_id)
        trial.set_user_attr("technique", spec.technique or "baseline")
        baseline = self.baseline(spec.framework)
        try:
            record = self.measurer.build(spec)
        except TrialError as why:
            import optuna

            # Told pruned and infeasible, not failed: samplers learn from it (TPE ranks it among the
            # worst) instead of proposing the same inapplicable region again and again.
            trial.set_user_attr(NOT_APPLICABLE_ATTR, str(why))
            trial.set_constraint("accuracy_drop", 1.0)
            raise optuna.TrialPruned(str(why)) from why
        measured = self.measurer.measure(record)
        row = measured.row
        trial.set_constraint("accuracy_drop", accuracy_drop(baseline, row) - self.settings.max_accuracy_drop)
        for key, value in _trial_figures(row, baseline).items():
            trial.set_user_attr(key, value)
        if self.tracker is not None:
            self.tracker.log_cell(
                row,
                measured.repetitions,
                kind="trial",
                run_name=f"trial {trial.number} {spec.variant_id}",
                params={f"trial.{name}": value for name, value in trial.params.items()},
                tags={"optuna.study": trial.study.study_name, "optuna.trial_number": str(trial.number)},
            )
        return objective_values(row, self.settings.objectives)


def _trial_figures(row: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict[str, Any]:
    """What a trial keeps besides its objective values (shown in optuna-dashboard)."""
    energy_j = float(row["energy_per_item_j"])
    return {
        "energy_per_item_j": energy_j,
        "energy_measured": bool(row.get("energy_measured")),
        "energy_sources": ", ".join(
            f"{k.removesuffix('_source')}: {v}" for k, v in sorted(row.items()) if k.endswith("_source") and v
        ),
        "accuracy": float(row["accuracy"]),
        "metric": row["metric"],
        "latency_p50_ms": float(row["latency_p50_ms"]),
        "size_on_disk_bytes": int(row["size_on_disk_bytes"]),
        "baseline_energy_per_item_j": float(baseline["energy_per_item_j"]),
        "baseline_accuracy": float(baseline["accuracy"]),
        "energy_ratio": energy_j / float(baseline["energy_per_item_j"]),
        "accuracy_drop": accuracy_drop(baseline, row),
        "optimization_energy_j": _finite(row.get("optimization_total_energy_j")),
        "steps": row["steps"],
    }


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def trials_table(study: Any, max_accuracy_drop: float) -> pd.DataFrame:
    """Every trial of a study: number, state, parameters, objective values, figures, feasibility."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        drop = trial.user_attrs.get("accuracy_drop")
        rows.append(
            {
                "study": study.study_name,
                "number": trial.number,
                "state": trial.state.name,
                "values": None if trial.values is None else [float(v) for v in trial.values],
                **{f"param_{k}": v for k, v in trial.params.items()},
                **trial.user_attrs,
                "feasible": None if drop is None else bool(drop <= max_accuracy_drop + 1e-12),
                "duration_s": None if trial.duration is None else trial.duration.total_seconds(),
            }
        )
    return pd.DataFrame(rows)


def front_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The completed feasible trials that no other such trial beats on both J/inference and
    accuracy, one per variant, cheapest first."""
    if trials.empty or "feasible" not in trials:
        return trials.iloc[0:0]
    done = trials[(trials.state == "COMPLETE") & (trials.feasible == True)]  # noqa: E712 (None: not measured)
    done = done.drop_duplicates("variant_id")
    if done.empty:
        return done
    mask = pareto_mask(done.energy_per_item_j.to_numpy(), (done.accuracy * metric_signs(done)).to_numpy())
    return done[mask].sort_values("energy_per_item_j")


def measure_front(
    measurer: VariantMeasurer, front: pd.DataFrame, specs: Mapping[str, VariantSpec], study_name: str
) -> list[dict[str, Any]]:
    """The front's variants and their frameworks' baselines measured on ``measurer``'s evaluation
    set (the test split); each row says which trial it came from (-1: the baseline)."""
    rows = []
    for _, trial in front.iterrows():
        if not specs[trial.variant_id].steps:
            continue  # the baseline itself: measured below
        row = measurer.measure(measurer.build(specs[trial.variant_id])).row
        rows.append(
            {**row, "source": "search", "search_study": study_name, "trial_number": int(trial.number)}
        )
    for framework in sorted({specs[v].framework for v in front.variant_id}):
        row = measurer.measure(
            measurer.build(VariantSpec(BASELINES[framework].variant_id, framework, ()))
        ).row
        rows.append({**row, "source": "baseline", "search_study": study_name, "trial_number": -1})
    return rows
