"""A search worker for the distributed test: the real study, space, storage and worker loop, with
an objective that sleeps instead of building and measuring a model. It leaves a file per trial
it starts and per trial it finishes, so the test knows when to kill it and what ran."""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from pathlib import Path

from green_deploy.search.runner import machine_worker
from green_deploy.search.space import suggest_variant
from green_deploy.search.study import SearchSettings, open_study, run_worker


def main(storage: str, n_trials: int, marks: Path, trial_s: float, work_dir: Path | None = None) -> None:
    """The worker; with ``work_dir``, as ``search_model`` runs it: this machine's one worker."""
    with machine_worker(work_dir) if work_dir is not None else nullcontext():
        _work(storage, n_trials, marks, trial_s)


def _work(storage: str, n_trials: int, marks: Path, trial_s: float) -> None:
    settings = SearchSettings.parse(
        {
            "storage": storage,
            "n_trials": n_trials,
            "seed": None,
            "heartbeat_interval_s": 1,
            "grace_period_s": 3,
        }
    )
    study = open_study(settings, "distributed")

    def objective(trial) -> list[float]:
        spec = suggest_variant(trial, settings.space)
        (marks / f"started-{trial.number}").write_text(spec.variant_id)
        time.sleep(trial_s)
        (marks / f"finished-{trial.number}").write_text(spec.variant_id)
        trial.set_user_attr("variant_id", spec.variant_id)
        return [
            float(len(spec.steps)) + trial.params.get("amount", 0.0),
            1.0 - trial.params.get("amount", 0.0),
        ]

    run_worker(study, objective, n_trials, poll_s=0.2)


if __name__ == "__main__":
    main(
        sys.argv[1],
        int(sys.argv[2]),
        Path(sys.argv[3]),
        float(sys.argv[4]),
        Path(sys.argv[5]) if len(sys.argv) > 5 else None,
    )
