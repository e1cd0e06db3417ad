"""The deploy and undeploy pipelines end to end: the optimize pipeline runs first in a copy of the
tiny project (so the optimize tests' project stays as they expect it), then `kedro run
--pipeline=deploy` starts, checks and keeps real servers, and `--pipeline=undeploy` stops them."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml

from green_deploy.deploy.local import STATE_FILE, teardown_all
from green_deploy.deploy.processes import process_alive
from tests.pipelines.conftest import PROJECT, kedro

MODEL_IDS = sorted(yaml.safe_load((PROJECT / "conf/base/parameters_zoo.yml").read_text())["zoo"]["models"])
DEPLOY = yaml.safe_load((PROJECT / "conf/test/parameters_deploy.yml").read_text())["deploy"]
MODELS, SELECTED = DEPLOY["models"], DEPLOY["only"]
MAX_SERVERS = DEPLOY["local"]["max_servers"]
# the cheapest PyTorch and TFLite variants: the baselines come with every optimize run
OPTIMIZED = [v for v in SELECTED if not v.endswith("_baseline")]
FAKE_SECRET = "fakeSecretKeyThatMustNeverBeLogged0123"
WORK_DIR = "data/07_model_output/deploy"

pytestmark = pytest.mark.timeout(900)


def copy_project(source, target, with_zoo: bool):
    target.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(source / name, target / name)
    for name in ("conf", "src"):
        shutil.copytree(source / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
    if with_zoo:  # read only by optimize and deploy: shared, not copied
        (target / "data/06_models").mkdir(parents=True)
        (target / "data/06_models/zoo").symlink_to(source / "data/06_models/zoo")
    return target


@pytest.fixture(scope="module")
def deployed(project, tmp_path_factory):
    root = copy_project(project, tmp_path_factory.mktemp("deploy_project"), with_zoo=True)
    (root / "conf/local/credentials.yml").write_text(
        yaml.safe_dump(
            {"aws": {"aws_access_key_id": "AKIAFAKEKEYID0000000", "aws_secret_access_key": FAKE_SECRET}}
        )
    )
    result = kedro(root, "run", "--pipeline=optimize", "--params", f"optimize.only={' '.join(OPTIMIZED)}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    try:
        result = kedro(root, "run", "--pipeline=deploy")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        yield root, pd.read_parquet(root / "data/07_model_output/deployments.parquet"), result
    finally:
        teardown_all(root / WORK_DIR)  # whatever a failed test left running


def test_deploy_before_optimize_names_the_optimize_pipeline(project, tmp_path):
    root = copy_project(project, tmp_path / "fresh", with_zoo=False)
    result = kedro(root, "run", "--pipeline=deploy")
    assert result.returncode != 0
    assert "kedro run --pipeline=optimize" in result.stdout + result.stderr


def test_every_selected_variant_answered_and_matched_in_process(deployed):
    _, table, _ = deployed
    assert len(table) == len(MODELS) * len(SELECTED)
    assert {(r.model_id, r.variant_id) for r in table.itertuples()} == {
        (m, v) for m in MODELS for v in SELECTED
    }
    assert set(table.target) == {"local"}
    assert set(table.status) == {"in_service", "stopped"}, table[["variant_id", "status", "reason"]]
    assert (table.check_max_abs_diff <= table.check_tolerance).all()
    assert (table.check_items == DEPLOY.get("check", {}).get("examples", 4)).all()
    assert table.url.str.match(r"http://127\.0\.0\.1:\d+/v1/models/\w+/predict").all()
    assert (table.pue == 1.0).all() and table.startup_s.gt(0).all() and table.rss_bytes.gt(0).all()
    assert set(table.runtime) == {"pytorch", "keras", "tflite"}


def test_at_most_max_servers_keep_running_and_answer(deployed):
    root, table, _ = deployed
    running = table[table.status == "in_service"]
    assert len(running) == MAX_SERVERS
    assert all(process_alive(int(pid)) for pid in running.pid)
    assert not any(process_alive(int(pid)) for pid in table[table.status == "stopped"].pid)
    for row in running.itertuples():
        base_url = row.url.split("/v1/")[0]
        with urllib.request.urlopen(f"{base_url}/health", timeout=10) as response:
            assert json.load(response)["model"] == row.variant_id
    assert len(list((root / WORK_DIR).glob(f"*/*/local/{STATE_FILE}"))) == MAX_SERVERS


def test_deployments_are_logged_to_mlflow_without_credentials(deployed):
    from mlflow import MlflowClient

    root, table, result = deployed
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("green_deploy")
    (run,) = client.search_runs([experiment.experiment_id], filter_string="attributes.run_name = 'deploy'")
    row = table.iloc[0]
    assert f"{row.model_id}.{row.variant_id}.local.check_max_abs_diff" in run.data.metrics
    assert run.data.params["deploy.local.max_servers"] == str(MAX_SERVERS)
    logged = json.dumps([run.data.params, run.data.tags]) + result.stdout + result.stderr
    assert FAKE_SECRET not in logged and "AKIAFAKEKEYID" not in logged
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id, "deploy")}
    assert artifacts == {f"deploy/{m}.json" for m in MODEL_IDS}  # models not selected: empty lists


def test_undeploy_stops_every_server(deployed):
    root, table, _ = deployed
    result = kedro(root, "run", "--pipeline=undeploy")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not any(process_alive(int(pid)) for pid in table.pid)
    assert not list((root / WORK_DIR).glob(f"*/*/local/{STATE_FILE}"))
    work_dir = str(root / WORK_DIR)
    left = [
        path
        for path in Path("/proc").glob("[0-9]*/cmdline")
        if _reads(path).count("green_deploy.serving") and work_dir in _reads(path)
    ]
    assert left == []


def _reads(path) -> str:
    try:
        return path.read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
