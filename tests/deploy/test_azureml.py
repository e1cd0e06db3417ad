"""Azure ML offline: manifests round-trip through the SDK's loaders, calls made on an autospecced
MLClient, and the scoring script run for real as Azure runs it."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import yaml

from green_deploy.deploy import DeploymentError, DeploymentTimeoutError
from green_deploy.deploy.azureml import AzureMLDeployer, AzureMLSettings
from green_deploy.errors import ConfigError

TENANT = "0f1e2d3c-aaaa-bbbb-cccc-123456789abc"
CLIENT_ID = "9a8b7c6d-1111-2222-3333-abcdefabcdef"
CLIENT_SECRET = "azure~Secret.NeverLogged_42"
SCORING_URI = "https://gd-endpoint.westeurope.inference.ml.azure.com/score"


def _settings(constraints_file: str, **overrides) -> AzureMLSettings:
    return AzureMLSettings.parse(
        {
            "subscription_id": "00000000-0000-0000-0000-000000000000",
            "resource_group": "green-deploy-rg",
            "workspace": "green-deploy-ws",
            "location": "westeurope",
            "instance_type": "Standard_F4s_v2",
            "cost_per_hour_usd": 0.169,
            "pue": 1.185,
            "constraints_file": constraints_file,
            "wait_timeout_s": 900.0,
            **overrides,
        }
    )


@pytest.fixture
def ml_client():
    """An autospecced MLClient whose operations are autospecced too (its properties are not)."""
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import ManagedOnlineEndpoint
    from azure.ai.ml.operations import OnlineDeploymentOperations, OnlineEndpointOperations
    from azure.core.polling import LROPoller

    client = mock.create_autospec(MLClient, instance=True)
    client.online_endpoints = mock.create_autospec(OnlineEndpointOperations, instance=True)
    client.online_deployments = mock.create_autospec(OnlineDeploymentOperations, instance=True)
    poller = mock.create_autospec(LROPoller, instance=True)
    poller.done.return_value = True
    client.online_endpoints.begin_create_or_update.return_value = poller
    client.online_deployments.begin_create_or_update.return_value = poller
    client.online_endpoints.begin_delete.return_value = poller
    client.online_endpoints.get.side_effect = lambda name, **_: ManagedOnlineEndpoint(
        name=name, scoring_uri=SCORING_URI, traffic={}
    )
    client.poller = poller
    return client


@pytest.fixture(scope="module")
def scored(tiny, tmp_path_factory):
    """``score.py`` from a dry run's code folder, run in a fresh process the way Azure runs it:
    ``$AZUREML_MODEL_DIR`` holding the registered folder, ``init()`` once, ``run(text)`` per request."""
    from tests.deploy.conftest import CONSTRAINTS

    work = tmp_path_factory.mktemp("azure-work")
    plan = AzureMLDeployer(_settings(str(CONSTRAINTS)), work, dry_run=True).plan(tiny.variant)
    model_dir = tmp_path_factory.mktemp("azureml-models") / "tiny-vit" / "1"
    shutil.copytree(tiny.variant.folder, model_dir / tiny.variant.folder.name)
    driver = (
        "import importlib.util, json, sys\n"
        "spec = importlib.util.spec_from_file_location('score', sys.argv[1])\n"
        "score = importlib.util.module_from_spec(spec); spec.loader.exec_module(score)\n"
        "score.init()\n"
        "answers = [score.run(sys.stdin.read()), score.run('{\"inputs\": [[1, 2]]}'), score.run('not json')]\n"
        "import green_deploy; from green_deploy.deploy import azureml_score; azureml_score.shutdown()\n"
        "print(json.dumps({'answers': answers, 'package': green_deploy.__file__}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"AZUREML_MODEL_DIR": str(model_dir)}
    result = subprocess.run(
        [sys.executable, "-c", driver, str(plan.code_dir / "score.py")],
        check=False,
        input=json.dumps({"inputs": tiny.batch.tolist()}),
        env=env,
        cwd=model_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return plan, json.loads(result.stdout.splitlines()[-1])


def test_score_py_runs_the_vendored_serving_core_in_process(tiny, scored):
    plan, result = scored
    good, wrong_shape, malformed = result["answers"]
    np.testing.assert_allclose(good["outputs"], tiny.expected, rtol=1e-5, atol=1e-6)
    assert good["model"] == "pt_prune50" and good["runtime"] == "pytorch"
    assert good["energy"]["joules"] > 0 and good["energy"]["window"]["items"] == len(tiny.batch)
    assert wrong_shape["error"]["code"] == "wrong_shape"
    assert malformed["error"]["code"] == "malformed_json"
    assert Path(result["package"]).resolve().parent == (plan.code_dir / "green_deploy").resolve()


def test_manifests_round_trip_through_the_sdk_loaders(tiny, tmp_path, constraints_file):
    from azure.ai.ml import load_online_deployment, load_online_endpoint
    from azure.ai.ml.entities import ManagedOnlineDeployment, ManagedOnlineEndpoint

    plan = AzureMLDeployer(_settings(constraints_file), tmp_path, dry_run=True).plan(tiny.variant)
    endpoint = load_online_endpoint(plan.endpoint_manifest)
    deployment = load_online_deployment(plan.deployment_manifest)
    assert isinstance(endpoint, ManagedOnlineEndpoint) and isinstance(deployment, ManagedOnlineDeployment)
    # a fixed point: what the SDK reads back, it writes out again unchanged
    assert endpoint._to_dict() == yaml.safe_load(plan.endpoint_manifest.read_text())
    assert deployment._to_dict() == yaml.safe_load(plan.deployment_manifest.read_text())

    assert endpoint.name == plan.endpoint_name and endpoint.auth_mode == "key"
    assert 3 <= len(endpoint.name) <= 32 and 3 <= len(deployment.name) <= 32
    assert (deployment.name, deployment.endpoint_name) == (plan.deployment_name, plan.endpoint_name)
    assert (deployment.instance_type, deployment.instance_count) == ("Standard_F4s_v2", 1)
    assert Path(deployment.model.path) == tiny.variant.folder.resolve()
    assert deployment.environment.image.startswith("mcr.microsoft.com/azureml/")
    pip = deployment.environment.conda_file["dependencies"][-1]["pip"]
    assert "torch==2.13.0+cpu" in pip and "fastapi==0.165.0" in pip
    assert "azureml-inference-server-http==1.5.1" in pip
    code = Path(deployment.base_path) / deployment.code_configuration.code
    assert deployment.code_configuration.scoring_script == "score.py" and (code / "score.py").is_file()
    assert (code / "serving.json").is_file() and (code / "green_deploy" / "serving" / "app.py").is_file()


def test_deploy_predict_teardown_on_an_autospecced_client(
    tiny, scored, ml_client, tmp_path, constraints_file
):
    from azure.ai.ml.entities import ManagedOnlineDeployment, ManagedOnlineEndpoint

    deployer = AzureMLDeployer(_settings(constraints_file), tmp_path, ml_client=ml_client)
    deployment = deployer.deploy(tiny.variant)

    create_endpoint = ml_client.online_endpoints.begin_create_or_update
    assert create_endpoint.call_count == 2  # the endpoint, then its traffic
    first, second = (call.args[0] for call in create_endpoint.call_args_list)
    assert isinstance(first, ManagedOnlineEndpoint) and first.name == deployment.endpoint_name
    assert second.traffic == {deployment.resources["deployment_name"]: 100}
    ml_client.online_deployments.begin_create_or_update.assert_called_once()
    sent = ml_client.online_deployments.begin_create_or_update.call_args.args[0]
    assert isinstance(sent, ManagedOnlineDeployment)
    assert (sent.endpoint_name, sent.instance_type) == (deployment.endpoint_name, "Standard_F4s_v2")
    assert sent.environment_variables == {"GREEN_DEPLOY_MODEL": "tiny_vit/pt_prune50"}
    ml_client.poller.result.assert_called_with(timeout=900.0)
    assert deployment.status == "in_service" and deployment.endpoint_url == SCORING_URI
    assert (deployment.region, deployment.cost_per_hour_usd, deployment.pue) == ("westeurope", 0.169, 1.185)

    _, result = scored
    sent_bodies = []

    def invoke(endpoint_name, *, request_file, deployment_name, **_):
        sent_bodies.append(json.loads(Path(request_file).read_text()))
        return json.dumps(result["answers"][0])  # what the scoring script answered, as Azure returns it

    ml_client.online_endpoints.invoke.side_effect = invoke
    outputs, energy = deployer.predict(deployment, tiny.batch)
    ml_client.online_endpoints.invoke.assert_called_once_with(
        endpoint_name=deployment.endpoint_name,
        deployment_name=deployment.resources["deployment_name"],
        request_file=mock.ANY,
    )
    np.testing.assert_allclose(sent_bodies[0]["inputs"], tiny.batch)
    np.testing.assert_allclose(outputs, tiny.expected, rtol=1e-5, atol=1e-6)
    assert energy.energy_j == result["answers"][0]["energy"]["joules"] > 0
    assert not list((tmp_path / "requests").iterdir())  # request files are removed

    deployer.teardown(deployment)
    ml_client.online_endpoints.begin_delete.assert_called_once_with(name=deployment.endpoint_name)


def test_teardown_of_a_gone_endpoint_and_a_slow_operation(tiny, ml_client, tmp_path, constraints_file):
    from azure.core.exceptions import ResourceNotFoundError

    deployer = AzureMLDeployer(_settings(constraints_file), tmp_path, ml_client=ml_client)
    deployment = deployer.deploy(tiny.variant)
    ml_client.online_endpoints.begin_delete.side_effect = ResourceNotFoundError("gone")
    deployer.teardown(deployment)  # no error: nothing is left to remove

    ml_client.poller.done.return_value = False
    with pytest.raises(DeploymentTimeoutError, match="within 900 s"):
        deployer.deploy(tiny.variant)


def test_a_dry_run_writes_manifests_and_builds_no_client(tiny, tmp_path, constraints_file):
    refuse = mock.Mock(side_effect=AssertionError("a dry run built an Azure client"))
    deployer = AzureMLDeployer(_settings(constraints_file), tmp_path, dry_run=True)
    with (
        mock.patch("azure.ai.ml.MLClient", refuse),
        mock.patch("azure.identity.DefaultAzureCredential", refuse),
    ):
        deployment = deployer.deploy(tiny.variant)
        deployer.teardown(deployment)
        with pytest.raises(DeploymentError, match="dry run"):
            deployer.predict(deployment, tiny.batch)
    refuse.assert_not_called()
    folder = tmp_path / "tiny_vit" / "pt_prune50" / "azureml"
    assert {"endpoint.yml", "deployment.yml", "conda.yml", "code"} <= {p.name for p in folder.iterdir()}
    assert deployment.status == "dry_run" and deployment.endpoint_url == ""


def test_a_service_principal_builds_the_client_and_stays_out_of_logs_and_reprs(
    caplog, tmp_path, constraints_file
):
    from azure.identity import ClientSecretCredential

    caplog.set_level(logging.DEBUG)
    settings = _settings(constraints_file)
    credentials = {"tenant_id": TENANT, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    deployer = AzureMLDeployer(settings, tmp_path, credentials=credentials)
    with mock.patch("azure.ai.ml.MLClient", autospec=True) as client_class:
        assert deployer._client() is client_class.return_value
    credential, *workspace = client_class.call_args.args
    assert isinstance(credential, ClientSecretCredential)
    assert workspace == [settings.subscription_id, "green-deploy-rg", "green-deploy-ws"]
    shown = repr(deployer) + repr(settings) + "".join(caplog.handler.format(r) for r in caplog.records)
    assert CLIENT_SECRET not in shown and CLIENT_ID not in shown and TENANT not in shown

    with pytest.raises(ConfigError, match="needs all of"):
        AzureMLDeployer(settings, tmp_path, credentials={"client_secret": CLIENT_SECRET})
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['workspace_name'\]"):
        AzureMLSettings.parse(
            {"subscription_id": "s", "resource_group": "g", "workspace": "w", "workspace_name": "w"}
        )
    with pytest.raises(ConfigError, match="auth_mode"):
        _settings(constraints_file, auth_mode="password")
