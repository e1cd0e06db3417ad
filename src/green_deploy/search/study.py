"""An Optuna study per model, shared by every worker that names the same storage.

Storage: ``sqlite:///`` in ``data/`` by default (one machine); a PostgreSQL URL lets
``kedro run --pipeline=search`` processes on many machines share one study (``load_if_exists``).
Every worker sends heartbeats while a trial runs; a trial whose worker died (no heartbeat for
``grace_period_s``) is failed by the next worker that looks, and queued again with the same
settings (``RetryHeartbeatStaleTrialCallback``). ``run_worker`` stops the study at exactly
``n_trials`` completed trials however many workers share it (see its docstring).
"""

from __future__ import annotations

import logging
import socket
import time
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from green_deploy.deploy.targets import DEFAULT_TARGET, local_targets
from green_deploy.errors import ConfigError, GreenDeployError
from green_deploy.search.space import SearchSpace

logger = logging.getLogger(__name__)

SAMPLERS = ("tpe", "nsga2", "gp", "random", "grid")
Direction = Literal["minimize", "maximize"]
OBJECTIVES: dict[str, tuple[Direction, str]] = {  # name: (direction, column of the cell row)
    "energy": ("minimize", "energy_per_item_j"),
    # the model's metric, times -1 where it is better lower (trial.objective_values)
    "accuracy": ("maximize", "accuracy"),
    "latency": ("minimize", "latency_p50_ms"),
    "size": ("minimize", "size_on_disk_bytes"),
}
SCHEMA_ATTEMPTS = 5
MAX_FAILURES_PER_TRIAL = 3  # a study failing this often for its budget is misconfigured
SURPLUS_ATTR = "surplus"  # a trial asked for beyond n_trials by a worker that lost the race
NOT_APPLICABLE_ATTR = "not_applicable"  # why a trial's choices could not be built (the trial is pruned)


class SearchError(GreenDeployError):
    """A study that cannot reach its budget (its trials keep failing)."""


@dataclass(frozen=True)
class SearchSettings:
    """``search`` in ``parameters_search.yml``."""

    study: str = "default"
    models: tuple[str, ...] = ()
    n_trials: int = 20
    storage: str = "sqlite:///data/07_model_output/search/optuna.db"
    sampler: str = "tpe"
    seed: int | None = 0
    n_startup_trials: int = 6
    objectives: tuple[str, ...] = ("energy", "accuracy")
    max_accuracy_drop: float = 0.02
    batch_size: int = 32
    target: str = DEFAULT_TARGET
    device: str = "cpu"
    heartbeat_interval_s: int = 30
    grace_period_s: int = 120
    max_retry: int = 2
    poll_s: float = 2.0
    work_dir: str = "data/07_model_output/search"
    variants_dir: str = "data/06_models/search"
    space: SearchSpace = field(default_factory=SearchSpace)
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> SearchSettings:
        raw = dict(raw or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"search: unknown key(s) {unknown}; allowed: {sorted(known)}")
        space = SearchSpace.parse(raw.pop("space", None))
        for key in ("models", "objectives"):
            if isinstance(raw.get(key), str):
                raw[key] = raw[key].replace(",", " ").split()
            if raw.get(key) is not None:
                raw[key] = tuple(raw[key])
            else:
                raw.pop(key, None)
        settings = replace(cls(**raw), space=space, grid=dict(raw.get("grid") or {}))
        settings.check()
        return settings

    def check(self) -> None:
        problems = []
        if self.sampler not in SAMPLERS:
            problems.append(f"sampler must be one of {list(SAMPLERS)}, got {self.sampler!r}")
        if self.sampler == "grid" and not self.grid:
            problems.append("sampler grid needs search.grid: the values of each parameter")
        unknown = sorted(set(self.objectives) - set(OBJECTIVES))
        if unknown or not {"energy", "accuracy"} <= set(self.objectives):
            problems.append(
                f"objectives must include energy and accuracy (optionally latency, size); got {list(self.objectives)}"
            )
        if self.n_trials < 1:
            problems.append(f"n_trials must be >= 1, got {self.n_trials}")
        if not 0 <= self.max_accuracy_drop <= 1:
            problems.append(
                f"max_accuracy_drop is a fraction of the metric in [0, 1], got {self.max_accuracy_drop}"
            )
        if self.target not in local_targets():
            problems.append(f"target must be {' or '.join(local_targets())}, got {self.target!r}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if self.heartbeat_interval_s < 1 or self.grace_period_s <= self.heartbeat_interval_s:
            problems.append(
                f"heartbeat_interval_s must be >= 1 and grace_period_s above it; got "
                f"{self.heartbeat_interval_s} and {self.grace_period_s}"
            )
        if not self.storage.startswith(("sqlite:///", "postgresql", "mysql")):
            problems.append(
                f"storage must be an SQLAlchemy URL (sqlite:///..., postgresql+psycopg://...); got {self.storage!r}"
            )
        if problems:
            raise ConfigError("search: " + "; ".join(problems))

    @property
    def directions(self) -> list[Direction]:
        return [OBJECTIVES[name][0] for name in self.objectives]

    def study_name(self, model_id: str) -> str:
        return f"{self.study}-{model_id}"


def sampler_seed(settings: SearchSettings, trials_so_far: int) -> int | None:
    """The seed of a worker that joins a study holding ``trials_so_far`` trials: the configured
    seed moved on by that count and this machine's name, so a worker resumed after a crash
    continues the sequence instead of replaying it, and two machines joining at once draw
    different trials; the same study resumed on the same machine draws the same ones again."""
    if settings.seed is None:
        return None
    salt = zlib.crc32(socket.gethostname().encode())
    return (settings.seed * 1_000_003 + trials_so_far * 7_919 + salt) % 2**32


def make_sampler(settings: SearchSettings, trials_so_far: int = 0) -> Any:
    """The configured sampler; the accuracy-drop constraint reaches it through ``Trial.set_constraint``."""
    import optuna

    seed = sampler_seed(settings, trials_so_far)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if settings.sampler == "tpe":
            return optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=settings.n_startup_trials, constant_liar=True
            )
        if settings.sampler == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(settings.n_startup_trials, 2))
        if settings.sampler == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=settings.n_startup_trials)
        if settings.sampler == "grid":
            return optuna.samplers.GridSampler(dict(settings.grid), seed=seed)
        return optuna.samplers.RandomSampler(seed=seed)


def open_storage(settings: SearchSettings) -> Any:
    """The RDB storage with heartbeats and retry of trials whose worker died."""
    import optuna

    if settings.storage.startswith("sqlite:///"):
        path = settings.storage.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    from sqlalchemy.exc import DBAPIError

    # Workers started together on an empty database race to create its tables; the losers' CREATE
    # fails on what the winner made, and their next attempt finds the schema there.
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    settings.storage,
                    engine_kwargs={"pool_pre_ping": True},
                    heartbeat_interval=settings.heartbeat_interval_s,
                    grace_period=settings.grace_period_s,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=settings.max_retry
                    ),
                )
        except DBAPIError:
            if attempt == SCHEMA_ATTEMPTS - 1:
                raise
            logger.info("another worker is creating the study's tables; trying again")
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def open_study(settings: SearchSettings, model_id: str, storage: Any | None = None) -> Any:
    """The model's study, created by the first worker and joined by the others; its sampler is
    seeded for where the study stands (``sampler_seed``)."""
    import optuna

    study = optuna.create_study(
        storage=storage if storage is not None else open_storage(settings),
        sampler=make_sampler(settings),
        study_name=settings.study_name(model_id),
        directions=settings.directions,
        load_if_exists=True,
    )
    study.sampler = make_sampler(settings, len(study.get_trials(deepcopy=False)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(settings.objectives))  # optuna-dashboard's axis names
    return study


@dataclass
class WorkerOutcome:
    completed: int = 0  # trials this worker completed
    failed: int = 0  # trials whose objective raised here
    surplus: int = 0  # trials asked for beyond n_trials (told pruned, never run)


def run_worker(
    study: Any,
    objective: Callable[[Any], Sequence[float]],
    n_trials: int,
    poll_s: float = 2.0,
    catch: tuple[type[Exception], ...] = (Exception,),
) -> WorkerOutcome:
    """Run trials of ``study`` until it has ``n_trials`` completed ones, with any number of
    workers beside this one.

    Trial numbers are handed out in order by the storage, so a trial is within budget when fewer
    than ``n_trials`` trials numbered below it are alive (complete, running or waiting); a trial
    asked for beyond that (two workers racing for the last slot) is told pruned at once with the
    user attribute ``surplus`` and never runs. While the budget is taken by running trials, a
    worker waits and fails stale ones (their workers died): their retries are queued and taken
    by the next ``ask``. A trial whose objective raises is failed (logged) and the worker goes on.
    """
    import optuna
    from optuna.storages import fail_stale_trials
    from optuna.trial import TrialState

    alive = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
    outcome = WorkerOutcome()

    def within_budget(trial: Any) -> Sequence[float]:
        earlier = [t for t in study.get_trials(deepcopy=False, states=alive) if t.number < trial.number]
        if len(earlier) >= n_trials:
            trial.set_user_attr(SURPLUS_ATTR, True)
            outcome.surplus += 1
            raise optuna.TrialPruned(f"beyond the study's {n_trials} trials")
        try:
            values = objective(trial)
        except catch as error:
            if not isinstance(error, optuna.TrialPruned):
                trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:1000])
                outcome.failed += 1
            raise
        outcome.completed += 1
        return values

    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False, states=alive)
        if sum(t.state == TrialState.COMPLETE for t in trials) >= n_trials:
            return outcome
        failed = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL, TrialState.PRUNED))
            if not t.user_attrs.get(SURPLUS_ATTR)
        ]
        if len(failed) >= MAX_FAILURES_PER_TRIAL * n_trials:
            last = failed[-1].user_attrs
            raise SearchError(
                f"study {study.study_name}: {len(failed)} trials failed or could not apply for {n_trials} "
                f"wanted; the last: {last.get('error') or last.get(NOT_APPLICABLE_ATTR) or 'its worker died'}. "
                "Check search.space"
            )
        if len(trials) >= n_trials and not any(t.state == TrialState.WAITING for t in trials):
            time.sleep(poll_s)  # the rest of the budget is running elsewhere
            continue
        # optimize runs one trial with heartbeats, failing it (logged) when the objective raises
        study.optimize(within_budget, n_trials=1, catch=catch, gc_after_trial=False)
