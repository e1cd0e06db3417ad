"""The shared records: variants from their folder, deployments to dict and back, responses parsed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from green_deploy.deploy import Deployer, Deployment, DeploymentError, ServerEnergy, Variant, parse_prediction
from green_deploy.deploy.azureml import AzureMLDeployer, AzureMLSettings
from green_deploy.deploy.sagemaker import SageMakerDeployer, SageMakerSettings
from green_deploy.errors import ArtifactError, ConfigError
from green_deploy.serving.model import InputSpec

SPEC = InputSpec("float32", (1, 28, 28))
ENERGY = {
    "joules": 0.5,
    "joules_per_item": 0.25,
    "active_joules": None,
    "measured": False,
    "components": [
        {"component": "cpu", "source": "cpu_time_tdp_estimate", "measured": False, "energy_j": 0.5}
    ],
    "window": {"duration_s": 0.01, "items": 2, "requests": 1, "share": 1.0},
    "warnings": [],
}


def test_a_variant_reads_its_ids_and_runtime_from_the_record_or_its_files(tmp_path):
    folder = tmp_path / "resnet_fmnist" / "tf_tflite_fp16"
    folder.mkdir(parents=True)
    (folder / "model.tflite").write_bytes(b"x")
    variant = Variant.from_folder(folder, SPEC)
    assert (variant.model_id, variant.variant_id, variant.runtime) == (
        "resnet_fmnist",
        "tf_tflite_fp16",
        "tflite",
    )
    (folder / "record.json").write_text(
        json.dumps({"model_id": "m", "variant_id": "v", "runtime": "onnxruntime"})
    )
    assert Variant.from_folder(folder, SPEC).runtime == "onnxruntime"
    with pytest.raises(ArtifactError, match="does not exist"):
        Variant.from_folder(tmp_path / "missing", SPEC)
    with pytest.raises(ConfigError, match="unknown runtime"):
        Variant("m", "v", folder, "jax", SPEC)


def test_a_deployment_survives_a_round_trip_through_json():
    deployment = Deployment(
        "sagemaker",
        "m",
        "v",
        "gd-m-v",
        "https://x/invocations",
        "eu-west-1",
        "ml.m5.large",
        1,
        "in_service",
        0.115,
        1.2,
        resources={"model_name": "gd-m-v"},
    )
    assert Deployment.from_dict(json.loads(json.dumps(deployment.to_dict()))) == deployment
    assert not deployment.dry_run


def test_the_serving_core_answer_is_parsed_and_its_errors_raised():
    outputs, energy = parse_prediction(json.dumps({"outputs": [[1.0, None]], "energy": ENERGY, "model": "v"}))
    assert outputs.shape == (1, 2) and np.isnan(outputs[0, 1])
    assert energy == ServerEnergy(0.5, 0.25, False, tuple(ENERGY["components"]))
    with pytest.raises(DeploymentError, match="wrong_shape: expected"):
        parse_prediction(json.dumps({"error": {"code": "wrong_shape", "message": "expected (N, 1, 28, 28)"}}))
    with pytest.raises(DeploymentError, match="not JSON"):
        parse_prediction(b"<html>502</html>")
    with pytest.raises(DeploymentError, match="lacks outputs or energy"):
        parse_prediction("{}")
    with pytest.raises(DeploymentError, match="not the serving core's"):
        parse_prediction(json.dumps({"outputs": [], "energy": {"joules": "many"}}))


def test_both_cloud_deployers_are_deployers(tmp_path):
    sagemaker = SageMakerDeployer(
        SageMakerSettings.parse(
            {"region": "eu-west-1", "role_arn": "arn:aws:iam::1:role/r", "image_uri": "i", "bucket": "b"}
        ),
        tmp_path,
    )
    azure = AzureMLDeployer(
        AzureMLSettings.parse({"subscription_id": "s", "resource_group": "g", "workspace": "w"}), tmp_path
    )
    assert isinstance(sagemaker, Deployer) and isinstance(azure, Deployer)


def test_importing_the_package_imports_no_cloud_sdk():
    import subprocess
    import sys

    code = (
        "import sys, green_deploy.deploy, green_deploy.deploy.sagemaker_entry, green_deploy.deploy.azureml_score;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore', 'azure', 'torch', 'kedro'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
