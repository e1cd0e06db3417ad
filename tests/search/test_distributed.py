"""Four worker processes share one study on a real PostgreSQL server (started on loopback by the
suite); one is killed with SIGKILL in the middle of a trial. The study ends with exactly N
completed trials: none run twice, the killed one failed by heartbeat and run again by another
worker, nothing left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from green_deploy.search.study import SURPLUS_ATTR, SearchSettings, open_study

PROJECT = Path(__file__).resolve().parents[2]
N_TRIALS = 10

pytestmark = pytest.mark.timeout(300)


def _worker(
    url: str, marks: Path, trial_s: float, n_trials: int = N_TRIALS, work_dir: Path | None = None
) -> subprocess.Popen:
    """A worker process; with ``work_dir``, holding this machine's worker lock as search_model does."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.search.distributed_worker",
            url,
            str(n_trials),
            str(marks),
            str(trial_s),
            *([str(work_dir)] if work_dir is not None else []),
        ],
        cwd=PROJECT,
        env={**os.environ, "PYTHONPATH": f"{PROJECT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _numbers(marks: Path, kind: str) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in marks.glob(f"{kind}-*"))


def test_four_workers_complete_exactly_n_trials_when_one_dies_mid_trial(postgres_database, tmp_path):
    marks = tmp_path / "marks"
    (marks / "victim").mkdir(parents=True)
    victim = _worker(postgres_database, marks / "victim", 30.0)
    others = [_worker(postgres_database, marks, 0.5) for _ in range(3)]
    deadline = time.monotonic() + 120
    while not list((marks / "victim").glob("started-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list((marks / "victim").glob("started-*")), (
        victim.stderr.read() if victim.poll() is not None else ""
    )
    victim.send_signal(signal.SIGKILL)  # mid-trial: it sleeps 30 s in its objective
    victim.wait()
    for worker in others:
        _, stderr = worker.communicate(timeout=180)
        assert worker.returncode == 0, stderr[-3000:]

    settings = SearchSettings.parse({"storage": postgres_database})
    study = open_study(settings, "distributed")
    trials = study.get_trials(deepcopy=False)
    by_state = {state: [t for t in trials if t.state == state] for state in TrialState}
    complete = by_state[TrialState.COMPLETE]
    assert len(complete) == N_TRIALS
    assert not by_state[TrialState.RUNNING] and not by_state[TrialState.WAITING]

    killed = _numbers(marks / "victim", "started")
    assert len(killed) == 1 and not list((marks / "victim").glob("finished-*"))
    failed = by_state[TrialState.FAIL]
    assert [t.number for t in failed] == killed, "the killed trial is failed by its missing heartbeat"
    retried = [t for t in complete if t.system_attrs.get("failed_trial") == killed[0]]
    assert len(retried) == 1 and retried[0].params == failed[0].params, "and run again with its settings"

    finished = _numbers(marks, "finished")
    assert finished == sorted(t.number for t in complete), "every completed trial ran exactly once"
    assert _numbers(marks, "started") == finished, "no other trial was started and left"
    surplus = by_state[TrialState.PRUNED]
    assert all(t.user_attrs.get(SURPLUS_ATTR) for t in surplus)
    assert optuna.__version__.startswith("5.")


def test_a_second_worker_on_the_same_machine_is_refused_and_the_first_finishes_alone(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    marks, work_dir = tmp_path / "marks", tmp_path / "work"
    marks.mkdir()

    first = _worker(storage, marks, 0.3, n_trials=4, work_dir=work_dir)
    deadline = time.monotonic() + 60
    while not _numbers(marks, "started") and time.monotonic() < deadline:
        time.sleep(0.05)
    second = _worker(storage, marks, 0.3, n_trials=4, work_dir=work_dir)
    _, refusal = second.communicate(timeout=120)
    assert second.returncode != 0
    assert f"already runs a worker of search study 'work' (pid {first.pid} " in refusal
    assert "Check search.space" not in refusal and "ConnectionRefused" not in refusal
    _, errors = first.communicate(timeout=120)
    assert first.returncode == 0, errors[-2000:]
    study = optuna.load_study(study_name="default-distributed", storage=storage)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    # every trial ran once, in the first worker (random draws may repeat settings: 13% of runs did)
    assert _numbers(marks, "finished") == sorted(t.number for t in complete)
