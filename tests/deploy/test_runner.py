"""What the deploy pipeline runs: settings, the rows it deploys or skips, the check against the
in-process outputs (a mismatch names both values), cloud dry runs, undeploying recorded
deployments, and credentials that stay masked on their way to the deployers."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest

from green_deploy.deploy import Credentials, Deployment, InProcessDeployer
from green_deploy.deploy import runner as deploy_runner
from green_deploy.deploy.runner import (
    CheckSettings,
    CloudCredentials,
    DeploySettings,
    build_deployers,
    deploy_model,
    record_deployment,
    recorded_deployments,
    select_rows,
    skip_reason,
    undeploy_all,
)
from green_deploy.deploy.targets import get_target
from green_deploy.errors import ArtifactError, ConfigError
from tests.deploy.conftest import sagemaker_settings


def row(tiny, variant_id="pt_prune50", **changes) -> dict:
    return {
        "model_id": "tiny_vit",
        "variant_id": variant_id,
        "runtime": "pytorch",
        "technique": "magnitude_pruning",
        "status": "ok",
        "reason": "",
        "devices": "cpu,cuda",
        "artifact_dir": str(tiny.variant.folder),
        **changes,
    }


def test_settings_take_lists_or_strings_and_refuse_what_they_do_not_know():
    settings = DeploySettings.parse({"targets": "local", "only": "torch_baseline pt_fp16", "models": ["m"]})
    assert (settings.targets, settings.only, settings.models) == (
        ("local",),
        ("torch_baseline", "pt_fp16"),
        ("m",),
    )
    assert settings.check == CheckSettings() and not settings.dry_run
    with pytest.raises(ConfigError, match=r"deploy: unknown key\(s\) \['onyl'\]"):
        DeploySettings.parse({"onyl": ["pt_fp16"]})
    with pytest.raises(ConfigError, match="in-process target is for measurements"):
        DeploySettings.parse({"targets": ["local", "inprocess"]})
    with pytest.raises(ConfigError, match="deploy.dry_run must be true or false"):
        DeploySettings.parse({"dry_run": "false"})
    with pytest.raises(ConfigError, match=r"deploy.check: unknown"):
        DeploySettings.parse({"check": {"exemples": 2}})
    with pytest.raises(ConfigError, match="deploy.sagemaker is not configured"):
        build_deployers(DeploySettings.parse({"targets": ["sagemaker"]}), {"targets": ["sagemaker"]})


def test_rows_are_selected_or_skipped_with_their_reason(tiny):
    table = [
        row(tiny),
        row(tiny, "tf_only_gpu", devices="gpu"),
        row(tiny, "pt_x", status="not_applicable", reason="no Linear layers"),
    ]
    assert [r["variant_id"] for r in select_rows(table, "tiny_vit", ["pt_x"])] == ["pt_x"]
    with pytest.raises(ConfigError, match=r"deploy.only names unknown variant\(s\) \['pt_y'\]"):
        select_rows(table, "tiny_vit", ["pt_y"])
    with pytest.raises(ArtifactError, match="kedro run --pipeline=optimize"):
        select_rows(table, "other_model")
    assert skip_reason(table[0]) is None
    assert "this machine serves on cpu" in skip_reason(table[1])
    assert skip_reason(table[1], ["cpu", "gpu"]) is None  # a study that serves on that device too
    assert skip_reason(table[2]) == "not_applicable: no Linear layers"


class SkewedDeployer(InProcessDeployer):
    """Answers outputs that are off by ``skew``: what a server with the wrong model would do."""

    def __init__(self, skew: float, **kwargs):
        super().__init__(**kwargs)
        self.skew = skew
        self.torn_down: list[str] = []

    def predict(self, deployment, inputs):
        outputs, energy = super().predict(deployment, inputs)
        return outputs + self.skew, energy

    def teardown(self, deployment):
        self.torn_down.append(deployment.endpoint_name)
        super().teardown(deployment)


def test_each_deployment_is_checked_against_the_in_process_outputs(tiny, tmp_path, caplog):
    right, wrong = InProcessDeployer(tmp_path, gpu_energy=False), SkewedDeployer(0.5, gpu_energy=False)
    table = [row(tiny), row(tiny, "pt_gpu_only", devices="cuda")]
    with caplog.at_level(logging.ERROR):
        results = deploy_model(
            "tiny_vit", table, tiny.batch, {"a": right, "b": wrong}, CheckSettings(examples=4)
        )
    right.teardown_all()
    by_key = {(r.variant_id, r.target): r for r in results}
    good = by_key["pt_prune50", "a"]
    assert (good.status, good.check_max_abs_diff, good.check_items) == ("in_service", 0.0, 4)
    assert good.check_energy_j > 0 and "cpu=" in good.check_energy_source
    bad = by_key["pt_prune50", "b"]
    assert bad.status == "failed" and wrong.torn_down == ["tiny_vit/pt_prune50"]
    assert "differ from the in-process outputs by 0.5" in bad.reason
    assert "first item: server [" in bad.reason and "vs in process [" in bad.reason  # both values
    assert {r.status for r in results if r.variant_id == "pt_gpu_only"} == {"skipped"}
    assert not list(tmp_path.iterdir())  # only cloud deployments are recorded


def test_a_cloud_dry_run_writes_packages_and_manifests_and_calls_nothing(tiny, tmp_path, constraints_file):
    raw = {
        "targets": ["sagemaker", "azureml"],
        "work_dir": str(tmp_path / "deploy"),
        "dry_run": True,
        "sagemaker": sagemaker_settings(constraints_file),
        "azureml": {
            "subscription_id": "00000000-0000-0000-0000-000000000000",
            "resource_group": "rg",
            "workspace": "ws",
            "constraints_file": constraints_file,
        },
    }
    settings = DeploySettings.parse(raw)
    credentials = CloudCredentials(
        {"aws": {"aws_access_key_id": "AKIAFAKE00000000", "aws_secret_access_key": "s3cr3t-value"}}
    )
    deployers = build_deployers(settings, raw, credentials)
    results = deploy_model("tiny_vit", [row(tiny)], tiny.batch, deployers, settings.check)
    assert [(r.target, r.status) for r in results] == [("sagemaker", "dry_run"), ("azureml", "dry_run")]
    folder = tmp_path / "deploy/tiny_vit/pt_prune50"
    assert (folder / "sagemaker/model.tar.gz").is_file() and (folder / "azureml/deployment.yml").is_file()
    assert recorded_deployments(tmp_path / "deploy", "sagemaker") == []  # nothing was created


def test_undeploy_deletes_recorded_cloud_deployments_of_configured_targets(tmp_path, monkeypatch, caplog):
    def deployment(target: str) -> Deployment:
        return Deployment(
            target, "m", "v", f"gd-m-v-{target}", "https://x", "r", "t", 1, "in_service", None, None
        )

    record_deployment(tmp_path, deployment("sagemaker"))
    record_deployment(tmp_path, deployment("azureml"))
    deleted = []

    class FakeCloud:
        work_dir = tmp_path

        def teardown(self, d):
            deleted.append(d.endpoint_name)

    monkeypatch.setattr(
        deploy_runner, "build_deployers", lambda settings, raw, credentials: {"sagemaker": FakeCloud()}
    )
    settings = DeploySettings(targets=("local", "sagemaker"), work_dir=str(tmp_path))
    with caplog.at_level(logging.WARNING):
        removed = undeploy_all(settings, {}, None)
    assert deleted == ["gd-m-v-sagemaker"] and [d.target for d in removed] == ["sagemaker"]
    assert recorded_deployments(tmp_path, "sagemaker") == []
    assert len(recorded_deployments(tmp_path, "azureml")) == 1  # not configured: kept, and said so
    assert "azureml is not in deploy.targets" in caplog.text


def test_cloud_credentials_stay_masked_and_in_process():
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    credentials = CloudCredentials(
        {
            "aws": {"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key": secret},
            "other": {"x": "y"},
        }
    )
    assert list(credentials) == ["aws"] and secret not in repr(credentials) and secret not in str(credentials)
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(credentials)
    sagemaker, azureml = get_target("sagemaker"), get_target("azureml")
    checked = sagemaker.credentials_from(credentials)
    assert isinstance(checked, Credentials) and checked.get("aws_secret_access_key") == secret
    with pytest.raises(ConfigError, match=r"unknown credential key\(s\) \['aws_secret_key'\]"):
        sagemaker.credentials_from(CloudCredentials({"aws": {"aws_secret_key": secret}}))
    assert azureml.credentials_from(credentials) is None  # the SDK's default chain


def test_a_default_kedro_run_neither_deploys_nor_undeploys():
    import subprocess
    import sys

    from tests.deploy.conftest import REPO

    code = (
        "from kedro.framework.startup import bootstrap_project; from pathlib import Path; "
        "bootstrap_project(Path.cwd()); from kedro.framework.project import pipelines; "
        "print(sorted(pipelines)); print(sorted({t for n in pipelines['__default__'].nodes for t in n.tags}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=300
    ).stdout.splitlines()
    assert out[-2] == (
        "['__default__', 'compare', 'deploy', 'estimate', 'evaluate', 'optimize', 'search', 'simulate', 'tradeoff', "
        "'undeploy', 'zoo']"
    )
    assert out[-1] == "['evaluate', 'optimize', 'tradeoff', 'zoo']"


@pytest.mark.parametrize("expected", [np.array([[1.0, np.nan]])])
def test_nan_where_in_process_gives_nan_is_a_match(expected):
    diff, tolerance = deploy_runner._compare("m/v on local", expected.copy(), expected, CheckSettings())
    assert diff == 0.0 and tolerance == pytest.approx(1e-4 + 1e-4)
    with pytest.raises(deploy_runner.DeploymentCheckError, match="server nan vs in process 1;"):
        deploy_runner._compare("m/v on local", np.array([[np.nan, np.nan]]), expected, CheckSettings())
