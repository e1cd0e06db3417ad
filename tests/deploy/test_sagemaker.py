"""SageMaker end to end against moto's server on loopback: deploy, InService, predict, teardown."""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.request
from unittest import mock

import numpy as np
import pytest

from green_deploy.deploy import DeploymentError, DeploymentTimeoutError
from green_deploy.deploy.sagemaker import SageMakerDeployer, SageMakerSettings, wait_for_endpoint
from green_deploy.errors import ConfigError
from tests.deploy.conftest import sagemaker_settings

KEY_ID = "AKIAGREENDEPLOYTEST1"
SECRET = "gd-secret/never+logged/7Hq2vXk9"
REGION = "us-east-1"


@pytest.fixture(scope="module")
def moto_url():
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as patch:
        # the default chain's credentials: dummies, distinct from the mapping's
        patch.setenv("AWS_ACCESS_KEY_ID", "env-dummy-key-id")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "env-dummy-secret")
        patch.delenv("AWS_PROFILE", raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
        server.stop()


@pytest.fixture
def aws(moto_url):
    """Clean moto state, the bucket, and clients to check what the deployer left."""
    import boto3

    _post(f"{moto_url}/moto-api/reset", {})
    session = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="y", region_name=REGION)
    clients = {name: session.client(name, endpoint_url=moto_url) for name in ("s3", "sagemaker")}
    clients["s3"].create_bucket(Bucket="green-deploy-models")
    return clients


def _post(url: str, payload: dict) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in (200, 201)


def _queue_answers(moto_url: str, *bodies: bytes) -> None:
    """moto's invoke_endpoint answers from this queue (moto/sagemakerruntime/models.py)."""
    results = [{"Body": body.decode(), "ContentType": "application/json"} for body in bodies]
    _post(f"{moto_url}/moto-api/static/sagemaker/endpoint-results", {"region": REGION, "results": results})


def test_deploy_predict_teardown_with_credentials_never_logged(
    tiny, serving_answer, moto_url, aws, tmp_path, caplog, constraints_file
):
    # at DEBUG botocore logs each request's Authorization header, whose Credential= names the
    # access key id: without the deployer's redacting_logs this test fails
    caplog.set_level(logging.DEBUG)
    settings = SageMakerSettings.parse(
        sagemaker_settings(
            constraints_file,
            endpoint_url=moto_url,
            instance_type="ml.c5.xlarge",
            cost_per_hour_usd=0.204,
            pue=1.135,
            delete_s3_on_teardown=True,
        )
    )
    credentials = {"aws_access_key_id": KEY_ID, "aws_secret_access_key": SECRET}
    deployer = SageMakerDeployer(settings, tmp_path, credentials)

    deployment = deployer.deploy(tiny.variant)

    assert deployment.status == "in_service" and deployment.target == "sagemaker"
    assert (deployment.instance_type, deployment.cost_per_hour_usd, deployment.pue) == (
        "ml.c5.xlarge",
        0.204,
        1.135,
    )
    assert deployment.endpoint_url == f"{moto_url}/endpoints/{deployment.endpoint_name}/invocations"
    sagemaker, s3 = aws["sagemaker"], aws["s3"]
    assert sagemaker.describe_endpoint(EndpointName=deployment.endpoint_name)["EndpointStatus"] == "InService"
    model = sagemaker.describe_model(ModelName=deployment.resources["model_name"])
    assert model["ExecutionRoleArn"] == settings.role_arn
    assert model["PrimaryContainer"]["Image"] == settings.image_uri
    assert model["PrimaryContainer"]["ModelDataUrl"] == deployment.resources["s3_uri"]
    config = sagemaker.describe_endpoint_config(
        EndpointConfigName=deployment.resources["endpoint_config_name"]
    )
    variant = config["ProductionVariants"][0]
    assert (variant["ModelName"], variant["InstanceType"], variant["InitialInstanceCount"]) == (
        deployment.resources["model_name"],
        "ml.c5.xlarge",
        1,
    )
    bucket, key = deployment.resources["s3_uri"].removeprefix("s3://").split("/", 1)
    uploaded = s3.get_object(Bucket=bucket, Key=key)
    assert hashlib.sha256(uploaded["Body"].read()).hexdigest() == deployment.resources["package_sha256"]
    assert uploaded["Metadata"]["sha256"] == deployment.resources["package_sha256"]

    _queue_answers(moto_url, serving_answer)
    outputs, energy = deployer.predict(deployment, tiny.batch)
    answer = json.loads(serving_answer)
    np.testing.assert_allclose(outputs, tiny.expected, rtol=1e-5, atol=1e-6)
    assert energy.energy_j == answer["energy"]["joules"] > 0
    assert energy.measured is answer["energy"]["measured"]
    assert [c["source"] for c in energy.components] == [c["source"] for c in answer["energy"]["components"]]

    deployer.teardown(deployment)
    assert sagemaker.list_endpoints()["Endpoints"] == []
    assert sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
    assert sagemaker.list_models()["Models"] == []
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    deployer.teardown(deployment)  # what is gone stays gone, without an error

    assert any(record.name.startswith("botocore") for record in caplog.records)
    for record in caplog.records:
        line = caplog.handler.format(record)
        assert KEY_ID not in line and SECRET not in line, line
    shown = repr(deployer) + repr(settings) + repr(deployment) + json.dumps(deployment.to_dict())
    assert KEY_ID not in shown and SECRET not in shown


def test_an_error_answer_becomes_a_deployment_error(tiny, moto_url, aws, tmp_path, constraints_file, caplog):
    caplog.set_level(logging.DEBUG)
    settings = SageMakerSettings.parse(sagemaker_settings(constraints_file, endpoint_url=moto_url))
    deployer = SageMakerDeployer(settings, tmp_path)  # the default chain: the environment's dummies
    deployment = deployer.deploy(tiny.variant)
    assert "env-dummy-key-id" not in caplog.text  # resolved by boto3, masked all the same
    refusal = {"error": {"code": "wrong_shape", "message": "inputs have shape (1, 28, 28)"}}
    _queue_answers(moto_url, json.dumps(refusal).encode())
    with pytest.raises(DeploymentError, match="wrong_shape"):
        deployer.predict(deployment, tiny.batch[0])
    deployer.teardown(deployment)
    assert aws["sagemaker"].list_endpoints()["Endpoints"] == []
    assert aws["s3"].list_objects_v2(Bucket="green-deploy-models")["KeyCount"] == 1  # kept unless asked

    again = deployer.deploy(tiny.variant)  # the same package is not uploaded twice
    assert again.resources["s3_uri"] == deployment.resources["s3_uri"]
    assert "already uploaded (same sha256)" in caplog.text
    deployer.teardown(again)


def test_a_dry_run_writes_every_request_and_the_package_and_calls_nothing(tiny, tmp_path, constraints_file):
    settings = SageMakerSettings.parse(sagemaker_settings(constraints_file))
    deployer = SageMakerDeployer(settings, tmp_path, {"aws_access_key_id": KEY_ID}, dry_run=True)
    refuse = mock.Mock(side_effect=AssertionError("a dry run built an AWS client"))
    with mock.patch("boto3.client", refuse), mock.patch("boto3.session.Session", refuse):
        deployment = deployer.deploy(tiny.variant)
        deployer.teardown(deployment)
        with pytest.raises(DeploymentError, match="dry run"):
            deployer.predict(deployment, tiny.batch)
    refuse.assert_not_called()
    assert deployment.status == "dry_run"
    folder = tmp_path / "tiny_vit" / "pt_prune50" / "sagemaker"
    written = {p.name for p in folder.iterdir()}
    assert {"model.tar.gz", "put_object.json", "create_model.json", "create_endpoint_config.json"} <= written
    assert {"create_endpoint.json", "Dockerfile", "requirements.txt"} <= written
    create_model = json.loads((folder / "create_model.json").read_text())
    assert create_model["PrimaryContainer"]["ModelDataUrl"] == deployment.resources["s3_uri"]
    assert create_model["ModelName"] == deployment.endpoint_name and len(deployment.endpoint_name) <= 63
    assert "/opt/ml/model/code/serve" in (folder / "Dockerfile").read_text()


def test_waiting_backs_off_and_gives_up_at_the_timeout():
    now = [0.0]
    pauses = []

    def sleep(seconds):
        pauses.append(seconds)
        now[0] += seconds

    with pytest.raises(DeploymentTimeoutError, match="still Creating after 100 s"):
        wait_for_endpoint(
            lambda: {"EndpointStatus": "Creating"}, "e", 100.0, 10.0, 30.0, sleep=sleep, clock=lambda: now[0]
        )
    assert pauses[:4] == [10.0, 15.0, 22.5, 30.0] and sum(pauses) == pytest.approx(100.0)

    states = iter(["Creating", "Creating", "InService"])
    described = wait_for_endpoint(
        lambda: {"EndpointStatus": next(states)}, "e", 100.0, 1.0, 2.0, sleep=sleep, clock=lambda: now[0]
    )
    assert described["EndpointStatus"] == "InService"
    with pytest.raises(DeploymentError, match="is Failed: image not found"):
        wait_for_endpoint(
            lambda: {"EndpointStatus": "Failed", "FailureReason": "image not found"},
            "e",
            100.0,
            1.0,
            2.0,
            sleep=sleep,
            clock=lambda: now[0],
        )


def test_settings_are_checked_like_every_other_setting(constraints_file):
    good = sagemaker_settings(constraints_file)
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['instance_typ'\]"):
        SageMakerSettings.parse({**good, "instance_typ": "ml.m5.large"})
    with pytest.raises(ConfigError, match=r"missing required setting\(s\) \['role_arn'\]"):
        SageMakerSettings.parse({k: v for k, v in good.items() if k != "role_arn"})
    with pytest.raises(ConfigError, match="instance_count' must be an integer"):
        SageMakerSettings.parse({**good, "instance_count": "2"})
    with pytest.raises(ConfigError, match="must be positive"):
        SageMakerSettings.parse({**good, "pue": 0})
    with pytest.raises(ConfigError, match="content_type"):
        SageMakerSettings.parse({**good, "content_type": "text/csv"})
    with pytest.raises(ConfigError, match="unknown credential key"):
        SageMakerDeployer(SageMakerSettings.parse(good), ".", {"aws_secret_key": SECRET})
