"""A study of one tiny variant, measured for real through the in-process worker and a local
server: cells, intervals, accuracy, the store, MLflow, and resuming after a crash."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import f1_score

from green_deploy.deploy.inprocess import InProcessDeployer
from green_deploy.deploy.local import LocalDeployer, LocalSettings
from green_deploy.evaluate.harness import EvaluationSet
from green_deploy.evaluate.runner import StudyRunner, current_cells, plan
from green_deploy.evaluate.store import StudyStore
from green_deploy.evaluate.study import StudySettings, expand_cells
from green_deploy.evaluate.tracking import CELL_TAG, PARENT_TAG, StudyTracker
from green_deploy.zoo.artifacts import file_sha256

PROTOCOL = {
    "idle_s": 0.05,
    "warmup_s": 0.05,
    "repetition_s": 0.03,
    "min_repetitions": 2,
    "max_repetitions": 4,
    "max_cell_s": 2.0,
}


@pytest.fixture
def study(tiny, tmp_path):
    copies = 10
    x = np.concatenate([tiny.batch] * copies)
    y = np.random.default_rng(1).integers(0, 10, len(x))
    expected_accuracy = float(np.mean(np.argmax(np.concatenate([tiny.expected] * copies), axis=1) == y))
    row = {
        "model_id": "tiny_vit",
        "variant_id": "pt_prune50",
        "runtime": "pytorch",
        "framework": "torch",
        "technique": "magnitude_pruning",
        "artifact_dir": str(tiny.variant.folder),
        "config_sha256": "abc123",
        "macs": 1000.0,
    }
    data = EvaluationSet("classification", "accuracy", x, y, domain="cv")
    return row, data, expected_accuracy


def _runner(settings, row, data, deployer, store, **kwargs):
    return StudyRunner(
        settings, [row], {(settings.targets[0], "cpu"): deployer}, lambda _: data, store, **kwargs
    )


def test_every_cell_is_measured_with_its_interval_accuracy_and_footprint(study, tmp_path):
    row, data, expected_accuracy = study
    settings = StudySettings.parse({"targets": ["inprocess"], "batch_sizes": [1, 4], "protocol": PROTOCOL})
    cells = expand_cells([row], settings)
    store = StudyStore(tmp_path / "study")
    outcome = _runner(settings, row, data, InProcessDeployer(idle_s=0.05), store).run(cells)
    assert (outcome.measured, outcome.resumed, outcome.failures) == (2, 0, [])
    rows = {c["row"]["batch_size"]: c for c in current_cells(store, [row], settings)}
    assert sorted(rows) == [1, 4]
    for batch_size, stored in rows.items():
        cell = stored["row"]
        assert cell["accuracy"] == pytest.approx(expected_accuracy)
        assert cell["n_repetitions"] == len(stored["repetitions"]) >= 2
        assert cell["energy_per_item_j"] > 0 and cell["cpu_source"].startswith("cpu_time_tdp_estimate")
        assert cell["energy_measured"] is False and cell["cpu_measured"] is False
        assert (
            cell["energy_per_item_j_ci_low"]
            <= cell["energy_per_item_j_mean"]
            <= cell["energy_per_item_j_ci_high"]
        )
        assert cell["ci_reached"] == (cell["energy_ci_relative_half_width"] <= 0.05)
        assert cell["active_energy_per_item_j"] is not None
        assert cell["latency_p50_ms"] <= cell["latency_p95_ms"] <= cell["latency_p99_ms"]
        assert cell["n_items"] == sum(r["n_items"] for r in stored["repetitions"])
        assert all(r["n_items"] == r["n_requests"] * batch_size for r in stored["repetitions"])
        assert cell["carbon_g_per_1000"] == pytest.approx(
            cell["energy_per_item_j"] * 1000 / 3.6e6 * cell["pue"] * cell["intensity_g_per_kwh"]
        )
        assert (cell["technique"], cell["domain"], cell["macs"]) == ("magnitude_pruning", "cv", 1000.0)


def test_a_local_server_is_measured_and_stopped_afterwards(study, tmp_path):
    row, data, _ = study
    settings = StudySettings.parse({"targets": ["local"], "batch_sizes": [2], "protocol": PROTOCOL})
    deployer = LocalDeployer(LocalSettings(idle_s=0.05), tmp_path / "deploy")
    store = StudyStore(tmp_path / "study")
    outcome = _runner(settings, row, data, deployer, store).run(expand_cells([row], settings))
    assert outcome.measured == 1 and not outcome.failures
    (stored,) = store.cells()
    assert stored["row"]["energy_per_item_j"] > 0 and stored["row"]["active_energy_per_item_j"] is not None
    assert deployer.running() == []


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (not even ``except Exception``)."""


def test_an_interrupted_study_resumes_without_losing_or_duplicating_a_cell(study, tmp_path):
    row, data, _ = study
    settings = StudySettings.parse({"targets": ["inprocess"], "batch_sizes": [1, 2, 4], "protocol": PROTOCOL})
    cells = expand_cells([row], settings)
    store = StudyStore(tmp_path / "study")
    tracker = StudyTracker(
        f"sqlite:///{tmp_path}/mlflow.db", "evaluate-test", "s1", {"batch_sizes": [1, 2, 4]}
    )
    logged = []

    def log_then_die(
        cell_row, repetitions
    ):  # the first cell is stored; the process dies before MLflow hears of it
        logged.append(cell_row["config_hash"])
        raise _Killed

    original = tracker.log_cell
    tracker.log_cell = log_then_die
    with pytest.raises(_Killed):
        _runner(settings, row, data, InProcessDeployer(), store, tracker=tracker).run(cells)
    assert len(store.cells()) == 1
    tracker.log_cell = original

    # a second process: the same study, a new tracker finding the same parent run
    resumed = StudyTracker(f"sqlite:///{tmp_path}/mlflow.db", "evaluate-test", "s1", {})
    assert resumed.parent_run_id == tracker.parent_run_id
    outcome = _runner(settings, row, data, InProcessDeployer(), store, tracker=resumed).run(cells)
    assert (outcome.measured, outcome.resumed) == (2, 1)
    assert sorted(c["row"]["config_hash"] for c in store.cells()) == sorted(c.config_hash for c in cells)
    children = resumed.client.search_runs(
        [resumed.experiment_id], f"tags.`{PARENT_TAG}` = '{resumed.parent_run_id}'"
    )
    assert sorted(r.data.tags[CELL_TAG] for r in children) == sorted(c.config_hash for c in cells)
    child = children[0]
    assert child.data.params["model_id"] == "tiny_vit" and "energy_per_item_j" in child.data.metrics
    assert child.data.tags["energy.cpu.source"].startswith("cpu_time_tdp_estimate")
    assert [a.path for a in resumed.client.list_artifacts(child.info.run_id)] == ["repetitions.json"]

    # a third run has nothing left to do
    again = _runner(settings, row, data, InProcessDeployer(), store, tracker=resumed).run(cells)
    assert (again.measured, again.resumed) == (0, 3)


def test_a_variant_that_cannot_be_deployed_is_reported_and_the_rest_is_measured(study, tmp_path):
    row, data, _ = study
    broken = {
        **row,
        "variant_id": "pt_missing",
        "artifact_dir": str(tmp_path / "nowhere"),
        "config_sha256": "x",
    }
    settings = StudySettings.parse({"targets": ["inprocess"], "batch_sizes": [1], "protocol": PROTOCOL})
    runner = StudyRunner(
        settings,
        [row, broken],
        {("inprocess", "cpu"): InProcessDeployer()},
        lambda _: data,
        StudyStore(tmp_path),
    )
    outcome = runner.run(expand_cells([row, broken], settings))
    assert outcome.measured == 1
    assert [(f.variant_id, f.cells) for f in outcome.failures] == [("pt_missing", 1)]
    assert "optimize" in outcome.failures[0].reason


def test_the_order_is_random_but_reproducible(study):
    row, _, _ = study
    rows = [{**row, "variant_id": f"v{i}", "config_sha256": str(i)} for i in range(8)]
    settings = StudySettings.parse({"batch_sizes": [1, 2, 4, 8]})
    cells = expand_cells(rows, settings)
    first, again, other = plan(cells, 0), plan(cells, 0), plan(cells, 1)
    assert first == again != other
    assert [g.variant_id for g in first] != sorted(g.variant_id for g in first)
    assert [c for g in first for c in g.cells] != cells
    assert sorted((c for g in first for c in g.cells), key=str) == sorted(cells, key=str)


def test_accuracy_is_scored_once_per_artifact_across_targets_batch_sizes_and_studies(
    study, tmp_path, monkeypatch
):
    from green_deploy.evaluate import runner as runner_module

    row, data, expected_accuracy = study
    passes = []
    score = runner_module.measure_accuracy
    monkeypatch.setattr(runner_module, "measure_accuracy", lambda *a, **k: passes.append(1) or score(*a, **k))
    shared = tmp_path / "accuracy"
    deployers = {
        ("inprocess", "cpu"): InProcessDeployer(idle_s=0.05),
        ("local", "cpu"): LocalDeployer(LocalSettings(idle_s=0.05), tmp_path / "deploy"),
    }
    settings = StudySettings.parse(
        {"study": "s1", "targets": ["inprocess", "local"], "batch_sizes": [1, 4], "protocol": PROTOCOL}
    )
    first = StudyStore(tmp_path / "s1", shared)
    StudyRunner(settings, [row], deployers, lambda _: data, first).run(expand_cells([row], settings))
    other = StudySettings.parse(
        {"study": "s2", "targets": ["inprocess"], "batch_sizes": [2], "protocol": PROTOCOL}
    )
    second = StudyStore(tmp_path / "s2", shared)
    StudyRunner(other, [row], deployers, lambda _: data, second).run(expand_cells([row], other))
    cells = [c["row"] for c in first.cells() + second.cells()]
    assert len(cells) == 5 and len(passes) == 1 and len(list(shared.glob("*.json"))) == 1
    assert [c["accuracy"] for c in cells] == pytest.approx([expected_accuracy] * 5)
    # a rebuilt artifact (other file contents) is scored anew
    rebuilt = tmp_path / "rebuilt" / "pt_prune50"
    shutil.copytree(row["artifact_dir"], rebuilt)
    with (rebuilt / "variant_config.json").open("a") as config:
        config.write("\n")
    hashes = {file.name: file_sha256(file) for file in rebuilt.iterdir() if file.is_file()}
    changed = {**row, "artifact_dir": str(rebuilt), "artifact_sha256": json.dumps(hashes)}
    StudyRunner(other, [changed], deployers, lambda _: data, StudyStore(tmp_path / "s3", shared)).run(
        expand_cells([changed], other)
    )
    assert len(passes) == 2


def test_accuracy_is_scored_on_the_seeded_subset_with_its_interval(study, tmp_path):
    row, data, _ = study
    settings = StudySettings.parse(
        {"targets": ["inprocess"], "batch_sizes": [1], "accuracy_max_items": 12, "protocol": PROTOCOL}
    )
    store = StudyStore(tmp_path / "study")
    _runner(settings, row, data, InProcessDeployer(), store).run(expand_cells([row], settings))
    (stored,) = store.cells()
    cell = stored["row"]
    assert (cell["accuracy_n_items"], cell["accuracy_split_items"]) == (12, len(data.x))
    assert cell["accuracy"] * 12 == pytest.approx(round(cell["accuracy"] * 12))
    assert cell["accuracy_interval"] == "wilson"
    assert cell["accuracy_ci_low"] <= cell["accuracy"] <= cell["accuracy_ci_high"]
    assert cell["serving_path"] == "PyTorch eager (inference_mode)"


def test_a_macro_f1_entry_reports_macro_f1_with_its_bootstrap_interval(study, tiny, tmp_path):
    row, data, _ = study
    settings = StudySettings.parse({"targets": ["inprocess"], "batch_sizes": [1], "protocol": PROTOCOL})
    store = StudyStore(tmp_path / "study")
    macro = replace(data, metric="macro_f1")
    _runner(settings, row, macro, InProcessDeployer(), store).run(expand_cells([row], settings))
    (cell,) = [c["row"] for c in store.cells()]
    predicted = np.argmax(np.concatenate([tiny.expected] * 10), axis=1)
    expected = f1_score(data.y, predicted, labels=np.arange(10), average="macro", zero_division=0)
    assert (cell["metric"], cell["accuracy"]) == ("macro_f1", pytest.approx(expected))
    assert cell["accuracy"] != pytest.approx(json.loads(cell["accuracy_metrics"])["accuracy"])
    assert cell["accuracy_interval"] == "bootstrap"
    assert cell["accuracy_ci_low"] < cell["accuracy"] < cell["accuracy_ci_high"]


def test_a_variant_whose_files_changed_is_refused_and_a_rebuilt_one_is_measured_anew(study, tmp_path):
    row, data, _ = study
    folder = tmp_path / "tiny_vit" / "pt_prune50"
    shutil.copytree(row["artifact_dir"], folder)
    hashes = {name: file_sha256(folder / name) for name in ("model.safetensors", "variant_config.json")}
    recorded = {**row, "artifact_dir": str(folder), "artifact_sha256": json.dumps(hashes)}
    settings = StudySettings.parse({"targets": ["inprocess"], "batch_sizes": [1], "protocol": PROTOCOL})
    (cell,) = expand_cells([recorded], settings)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])  # truncated after optimize recorded it
    store = StudyStore(tmp_path / "study")
    outcome = _runner(settings, recorded, data, InProcessDeployer(), store).run([cell])
    assert outcome.measured == 0 and store.cells() == []
    (failure,) = outcome.failures
    assert "is not the file the optimize pipeline recorded" in failure.reason
    assert "kedro run --pipeline=optimize --namespaces=tiny_vit" in failure.reason
    rebuilt = {**recorded, "artifact_sha256": json.dumps({**hashes, "model.safetensors": "0" * 64})}
    assert expand_cells([rebuilt], settings)[0].config_hash != cell.config_hash


def test_the_parent_run_ends_with_the_study_and_reopens_when_it_resumes(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = StudyTracker(uri, "evaluate-test", "s1", {})
    client = tracker.client
    assert (
        client.get_experiment(tracker.experiment_id).tags["mlflow.experimentKind"]
        == "custom_model_development"
    )
    run_id = tracker.log_cell(
        {"model_id": "m", "variant_id": "v", "target": "local", "batch_size": 1, "device": "cpu",
         "config_hash": "c1", "energy_measured": False, "cpu_source": "cpu_time_tdp_estimate(5 W/thread)"},
        [],
    )  # fmt: skip
    cell = client.get_run(run_id)
    assert cell.info.run_name.endswith("· energy estimated")
    assert cell.data.params["energy"] == "estimated: cpu_time_tdp_estimate(5 W/thread)"
    tracker.finish()
    assert client.get_run(tracker.parent_run_id).info.status == "FINISHED"
    resumed = StudyTracker(uri, "evaluate-test", "s1", {})
    assert resumed.parent_run_id == tracker.parent_run_id
    assert client.get_run(tracker.parent_run_id).info.status == "RUNNING"
    resumed.finish(failed=True)
    assert client.get_run(tracker.parent_run_id).info.status == "FAILED"


def test_the_machine_reference_is_measured_at_the_start_between_groups_and_at_the_end(study, tmp_path):
    row, data, _ = study
    rows = [row, {**row, "variant_id": "pt_other"}, {**row, "variant_id": "pt_third"}]
    settings = StudySettings.parse(
        {"targets": ["inprocess"], "batch_sizes": [1], "protocol": PROTOCOL, "reference_every": 2}
    )
    store = StudyStore(tmp_path / "study")
    runner = StudyRunner(
        settings, rows, {("inprocess", "cpu"): InProcessDeployer(idle_s=0.05)}, lambda _: data, store
    )
    assert runner.run(expand_cells(rows, settings)).measured == 3
    references = store.references()
    assert len(references) == 3  # before groups 1 and 3, and after the last
    for reference in references:
        assert reference["version"] == 1 and len(reference["energy_per_unit_j"]) >= 3
        assert all(value > 0 for value in reference["energy_per_unit_j"])
        assert (
            reference["sources"].startswith("cpu: cpu_time_tdp_estimate") and reference["measured"] is False
        )
    again = StudyRunner(
        settings, rows, {("inprocess", "cpu"): InProcessDeployer(idle_s=0.05)}, lambda _: data, store
    )
    assert again.run(expand_cells(rows, settings)).resumed == 3
    assert len(store.references()) == 3  # nothing to measure: no reference either
