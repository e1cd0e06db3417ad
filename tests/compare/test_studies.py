"""Two study folders compared: the machine's drift between the runs (measured by the reference
work) is divided out of every cell; without references the summary says it could not be; a
10% regression is found on top of a 30% drift; unmatched cells are listed; studies measured
with different meters are refused unless allowed."""

from __future__ import annotations

import re

import numpy as np
import pytest

from green_deploy.compare.studies import Study, compare_studies, markdown_summary
from green_deploy.compare.verdicts import EQUIVALENT, REGRESSED
from green_deploy.errors import ArtifactError, ConfigError
from green_deploy.evaluate.reference import VERSION
from green_deploy.evaluate.store import StudyStore

ROW = {
    "model_id": "m",
    "technique": "half_precision",
    "steps": "[]",
    "target": "local",
    "device": "cpu",
    "instance_type": "this machine",
    "cpu_source": "cpu_time_tdp_estimate(5 W/thread)",
    "gpu_source": None,
    "dram_source": "ram_rss_estimate(0.375 W/GB)",
    "protocol_hash": "p1",
    "accuracy": 0.9,
    "accuracy_ci_low": 0.88,
    "accuracy_ci_high": 0.92,
    "metric": "accuracy",
}


def _study(folder, rng, scale, changed=None, references=True, variants=("a", "b", "c"), **row_changes):
    """A study of 3 variants x 2 batch sizes at ``scale`` x their energy (the machine's state),
    ``changed`` variants costing more on top."""
    store = StudyStore(folder)
    for index, (variant, batch) in enumerate((v, b) for v in variants for b in (1, 32)):
        factor = scale * (changed or {}).get(variant, 1.0)
        energies = 0.01 * (1 + index) * factor * np.exp(rng.normal(0, 0.01, 8))
        row = {**ROW, **row_changes, "variant_id": variant, "batch_size": batch}
        store.save_cell(f"h{variant}{batch}", row, [{"energy_per_item_j": float(e)} for e in energies])
    if references:
        for _ in range(3):
            units = 0.002 * scale * np.exp(rng.normal(0, 0.01, 3))
            store.save_reference({"version": VERSION, "energy_per_unit_j": units.tolist()})
    return Study.from_folder(folder)


def test_the_machines_drift_is_divided_out_and_a_real_regression_still_found(tmp_path):
    rng = np.random.default_rng(0)
    baseline = _study(tmp_path / "base", rng, 1.0)
    drifted = _study(tmp_path / "drifted", rng, 1.3)  # the same code on a machine 30% hungrier
    comparison = compare_studies(baseline, drifted)
    assert {v.verdict for v in comparison.verdicts} == {EQUIVALENT}
    assert comparison.drift["ratio"] == pytest.approx(1.3, rel=0.02)
    assert comparison.drift["low"] < 1.3 < comparison.drift["high"]
    assert re.search(
        r"Machine drift divided out: the same reference work cost 1\.\d{3}x \[", markdown_summary(comparison)
    )

    worse = _study(tmp_path / "worse", rng, 1.3, changed={"b": 1.1})
    verdicts = {v.key: v for v in compare_studies(baseline, worse).verdicts}
    regressed = sorted(key for key, v in verdicts.items() if v.verdict == REGRESSED)
    assert regressed == [key for key in sorted(verdicts) if "variant_id=b " in key]
    assert all(v.ratio == pytest.approx(1.1, rel=0.03) for k, v in verdicts.items() if k in regressed)


def test_without_references_drift_reads_as_change_and_the_summary_says_so(tmp_path):
    rng = np.random.default_rng(1)
    baseline = _study(tmp_path / "base", rng, 1.0, references=False)
    drifted = _study(tmp_path / "drifted", rng, 1.3)
    comparison = compare_studies(baseline, drifted)
    assert comparison.drift is None
    assert {v.verdict for v in comparison.verdicts} == {REGRESSED}
    assert "Machine drift not separated" in markdown_summary(comparison)


def test_unmatched_cells_are_listed_and_other_meters_refused_unless_allowed(tmp_path):
    rng = np.random.default_rng(2)
    baseline = _study(tmp_path / "base", rng, 1.0)
    fewer = _study(tmp_path / "fewer", rng, 1.0, variants=("a", "b"))
    comparison = compare_studies(baseline, fewer)
    assert len(comparison.only_baseline) == 2 and all("variant_id=c " in k for k in comparison.only_baseline)
    other = _study(tmp_path / "rapl", rng, 1.0, cpu_source="rapl(package-0)")
    with pytest.raises(ConfigError, match="measured differently.*cpu_source"):
        compare_studies(baseline, other)
    assert compare_studies(baseline, other, allow_differences=True).differences["meters"]


def test_a_study_logged_to_mlflow_reads_back_as_its_folder_does(tmp_path):
    from green_deploy.evaluate.tracking import StudyTracker

    rng = np.random.default_rng(3)
    folder = _study(tmp_path / "study", rng, 1.0)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = StudyTracker(uri, "green-deploy", "nightly", {"targets": "local"})
    store = StudyStore(tmp_path / "study")
    for index, stored in enumerate(store.cells()):
        tracker.log_cell({**stored["row"], "config_hash": f"h{index}"}, stored["repetitions"])
    for reference in store.references():
        tracker.log_reference(reference)
    tracker.finish()

    for run in ("nightly", tracker.parent_run_id):
        logged = Study.load(f"mlflow:{run}", uri)
        assert logged.cells.keys() == folder.cells.keys()
        for key, (row, energies) in logged.cells.items():
            assert energies == pytest.approx(folder.cells[key][1])
            assert row["cpu_source"] == ROW["cpu_source"] and row["protocol_hash"] == "p1"
        assert sorted(map(sorted, logged.reference)) == sorted(map(sorted, folder.reference))
        assert {v.verdict for v in compare_studies(folder, logged).verdicts} == {EQUIVALENT}
    with pytest.raises(ArtifactError, match="no study run named 'weekly'"):
        Study.load("mlflow:weekly", uri)


def test_a_disturbed_reference_measurement_is_left_out_of_the_drift(tmp_path):
    rng = np.random.default_rng(4)
    baseline = _study(tmp_path / "base", rng, 1.0)
    disturbed = Study(
        baseline.name, baseline.cells, [[0.024, 0.025, 0.024], *baseline.reference]
    )  # 12x: a burst
    comparison = compare_studies(disturbed, _study(tmp_path / "again", rng, 1.0))
    assert comparison.drift["ratio"] == pytest.approx(1.0, abs=0.02)
    assert {v.verdict for v in comparison.verdicts} == {EQUIVALENT}
