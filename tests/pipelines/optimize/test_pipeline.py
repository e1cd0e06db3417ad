"""The optimize pipeline end to end on the tiny zoo: every selected variant of every model in both
frameworks, recorded, logged, and skipped on a re-run when nothing changed."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from tests.pipelines.conftest import PROJECT, kedro

MODEL_IDS = sorted(yaml.safe_load((PROJECT / "conf/base/parameters_zoo.yml").read_text())["zoo"]["models"])
SELECTED = yaml.safe_load((PROJECT / "conf/test/parameters_optimize.yml").read_text())["optimize"]["only"]


@pytest.fixture(scope="module")
def optimized(project):
    result = kedro(project, "run", "--pipeline=optimize")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project, pd.read_parquet(project / "data/07_model_output/variants.parquet")


def test_every_model_gets_both_baselines_and_every_selected_variant(optimized):
    _, table = optimized
    assert len(table) == len(MODEL_IDS) * (2 + len(SELECTED))
    for model_id in MODEL_IDS:
        rows = table[table.model_id == model_id]
        assert set(rows.variant_id) == {"torch_baseline", "tensorflow_baseline", *SELECTED}


def test_every_row_is_a_result_or_a_reason(optimized):
    _, table = optimized
    assert set(table.status) <= {"ok", "not_applicable"}
    skipped = table[table.status == "not_applicable"]
    assert (skipped.reason.str.len() > 0).all()
    done = table[(table.status == "ok") & (table.technique != "baseline")]
    assert done.size_on_disk_bytes.gt(0).all() and done.optimization_duration_s.gt(0).all()
    # energy of optimizing carries its provenance; on this machine the CPU figure is an estimate
    assert done.optimization_cpu_source.str.startswith("cpu_time_tdp_estimate").all()
    assert (~done.optimization_cpu_measured.astype(bool)).all()
    # structured pruning physically removes channels where it applies
    structured = done[done.technique == "structured_pruning"]
    assert len(structured) > 0 and (structured.macs < structured.baseline_macs).all()


def test_the_variants_a_run_built_have_their_model_files_logged_to_mlflow(optimized):
    from mlflow import MlflowClient

    project, table = optimized
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("green_deploy")
    (run,) = client.search_runs([experiment.experiment_id], filter_string="attributes.run_name = 'optimize'")
    for model_id in MODEL_IDS:
        index = json.loads((project / f"data/07_model_output/variant_files/{model_id}.json").read_text())
        built = table[(table.model_id == model_id) & (table.status == "ok") & (table.technique != "baseline")]
        assert set(index) == set(built.variant_id)
        for variant_id in index:
            logged = {
                f.path.rsplit("/", 1)[-1]
                for f in client.list_artifacts(run.info.run_id, f"variants/{model_id}/{variant_id}")
            }
            assert logged >= {"record.json"} and logged & {
                "model.safetensors",
                "model.keras",
                "model.tflite",
                "model.onnx",
            }


def test_rerun_skips_unchanged_variants_and_redoes_a_changed_one(optimized):
    project, first = optimized
    result = kedro(
        project, "run", "--pipeline=optimize", "--params", "optimize.variants.pt_fp16.settings.dtype=bfloat16"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    second = pd.read_parquet(project / "data/07_model_output/variants.parquet")
    merged = first.merge(second, on=["model_id", "variant_id"], suffixes=("_1", "_2"))
    changed = merged[merged.config_sha256_1 != merged.config_sha256_2]
    assert set(changed.variant_id) == {"pt_fp16"}
    unchanged = merged[(merged.variant_id != "pt_fp16") & (merged.technique_1 != "baseline")]
    assert (unchanged.optimization_duration_s_1 == unchanged.optimization_duration_s_2).all()
    assert unchanged.reused_2.all()
    # only the rebuilt variant goes to this run's MLflow artifacts
    index = json.loads((project / f"data/07_model_output/variant_files/{MODEL_IDS[0]}.json").read_text())
    assert set(index) <= {"pt_fp16"}
