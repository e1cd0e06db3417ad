"""Deploying variants: local servers on loopback (the default), in process, and cloud endpoints,
all running the same serving core.

A plain library (no Kedro); cloud SDKs (boto3, azure-ai-ml) are imported only inside functions,
so importing this package costs no SDK import.

    variant = Variant.from_folder("data/06_models/variants/vit_fmnist/pt_fp16", InputSpec("float32", (1, 28, 28)))
    deployer = SageMakerDeployer(SageMakerSettings.parse(params["sagemaker"]), "data/07_deploy", credentials["aws"])
    deployment = deployer.deploy(variant)
    outputs, energy = deployer.predict(deployment, batch)   # energy: the provider-side joules
    deployer.teardown(deployment)

Modules: ``targets`` (the registry: each target's name, settings, deployer, credentials and
provider), ``base`` (``Variant``, ``Deployment``, ``Deployer``, ``ServerEnergy``), ``local`` (a
server process per variant, its state file, ``teardown_all``), ``processes`` (``/proc`` reads,
starting and stopping servers, locks, atomic writes), ``http_client`` (the local target's
requests), ``inprocess`` (the metered worker without HTTP), ``compare`` (latency and energy per request of two deployments), ``packaging``
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
from green_deploy.deploy.compare import DeploymentComparison, compare_deployments
from green_deploy.deploy.credentials import Credentials, RedactingFilter, redact, redacting_logs
from green_deploy.deploy.inprocess import InProcessDeployer
from green_deploy.deploy.local import LocalDeployer, LocalSettings, teardown_all
from green_deploy.deploy.sagemaker import SageMakerDeployer, SageMakerSettings

__all__ = [
    "AzureMLDeployer",
    "AzureMLSettings",
    "Credentials",
    "Deployer",
    "Deployment",
    "DeploymentComparison",
    "DeploymentError",
    "DeploymentTimeoutError",
    "InProcessDeployer",
    "LocalDeployer",
    "LocalSettings",
    "RedactingFilter",
    "SageMakerDeployer",
    "SageMakerSettings",
    "ServerEnergy",
    "Variant",
    "compare_deployments",
    "parse_prediction",
    "redact",
    "redacting_logs",
    "teardown_all",
]
