"""Deploying variants to cloud endpoints that run the same serving core as the local target.

A plain library (no Kedro); cloud SDKs (boto3, azure-ai-ml) are imported only inside functions,
so importing this package costs no SDK import.

    variant = Variant.from_folder("data/06_models/variants/vit_fmnist/pt_fp16", InputSpec("float32", (1, 28, 28)))
    deployer = SageMakerDeployer(SageMakerSettings.parse(params["sagemaker"]), "data/07_deploy", credentials["aws"])
    deployment = deployer.deploy(variant)
    outputs, energy = deployer.predict(deployment, batch)   # energy: the provider-side joules
    deployer.teardown(deployment)

Modules: ``base`` (``Variant``, ``Deployment``, ``Deployer``, ``ServerEnergy``), ``packaging``
(code folder, pinned requirements, reproducible archives), ``credentials`` (masking),
``settings``, ``sagemaker`` + ``sagemaker_entry`` (the container's ``/ping``/``/invocations``),
``azureml`` + ``azureml_score`` (``init``/``run``).
"""

from green_deploy.deploy.azureml import AzureMLDeployer, AzureMLSettings
from green_deploy.deploy.base import (
    Deployer,
    Deployment,
    DeploymentError,
    DeploymentTimeoutError,
    ServerEnergy,
    Variant,
    parse_prediction,
)
from green_deploy.deploy.credentials import Credentials, RedactingFilter, redact, redacting_logs
from green_deploy.deploy.sagemaker import SageMakerDeployer, SageMakerSettings

__all__ = [
    "AzureMLDeployer",
    "AzureMLSettings",
    "Credentials",
    "Deployer",
    "Deployment",
    "DeploymentError",
    "DeploymentTimeoutError",
    "RedactingFilter",
    "SageMakerDeployer",
    "SageMakerSettings",
    "ServerEnergy",
    "Variant",
    "parse_prediction",
    "redact",
    "redacting_logs",
]
