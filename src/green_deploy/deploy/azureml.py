"""Azure ML managed online endpoints (azure-ai-ml), serving a variant with the green-deploy serving core.

One variant is one ``ManagedOnlineEndpoint`` with one ``ManagedOnlineDeployment``: the variant
folder as a ``Model``, an ``Environment`` (base image from configuration + a conda file whose pip
packages are pinned from ``constraints.txt``), and a ``CodeConfiguration`` whose ``score.py`` runs
the serving core in process (``azureml_score``: same validation, same metered worker).

``plan`` writes ``endpoint.yml`` and ``deployment.yml`` with the SDK's own serializers and reads
them back with ``load_online_endpoint`` / ``load_online_deployment``: what is deployed is what
the manifests say (and a dry run stops there). ``deploy`` creates the endpoint, the deployment,
then routes all traffic to it; ``predict`` goes through ``online_endpoints.invoke``;
``teardown`` deletes the endpoint (Azure deletes its deployments with it).

``MLClient`` is injected (tests pass an autospecced one) or built on first use from the
credentials mapping (a service principal) or ``DefaultAzureCredential``; azure-ai-ml is imported
only inside functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from green_deploy.deploy.base import (
    STATUS_DRY_RUN,
    STATUS_IN_SERVICE,
    Deployment,
    DeploymentError,
    DeploymentTimeoutError,
    ServerEnergy,
    Variant,
    parse_prediction,
)
from green_deploy.deploy.credentials import Credentials, redacting_logs
from green_deploy.deploy.packaging import (
    REQUIREMENTS_FILE,
    SERVING_CONFIG,
    ServingConfig,
    read_constraints,
    resource_name,
    write_code_dir,
)
from green_deploy.deploy.settings import DEPLOYED_BATCH_ITEMS, check_positive, parse_target_settings
from green_deploy.errors import ConfigError

logger = logging.getLogger(__name__)

TARGET = "azureml"
AZURE_CREDENTIAL_KEYS = ("tenant_id", "client_id", "client_secret")
_ENDPOINT_NAME_LENGTH = 32  # Azure ML online endpoint and deployment names: 3-32 characters
ENDPOINT_MANIFEST = "endpoint.yml"
DEPLOYMENT_MANIFEST = "deployment.yml"
CONDA_FILE = "conda.yml"
CODE_FOLDER = "code"
SCORING_SCRIPT = "score.py"

# azureml-inference-server-http 1.5.1 pins pydantic~=2.12.0 (and its pydantic-core): with the
# project's own pins beside it the environment cannot be resolved, so the server's pins decide
# (the serving core runs on both).
SERVER_PINNED = ("pydantic", "pydantic-core")

SCORE_SCRIPT = '''"""Azure ML scoring script: the green-deploy serving core in process.

Azure ML calls init() once and run(raw_data) per request; see green_deploy.deploy.azureml_score.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the vendored green_deploy package beside this file

from green_deploy.deploy import azureml_score  # noqa: E402


def init():
    azureml_score.init(HERE)


def run(raw_data):
    return azureml_score.run(raw_data)
'''


@dataclass(frozen=True)
class AzureMLSettings:
    """``deploy.azureml`` in ``parameters_deploy.yml``.

    Attributes:
        subscription_id, resource_group, workspace: the Azure ML workspace.
        location: the workspace's region, recorded with the deployment (Azure places endpoints
            in the workspace's region).
        instance_type, instance_count: the deployment's VMs (``Standard_DS3_v2``, 1).
        base_image: the environment's Docker image; ``conda.yml`` adds the pinned packages.
        inference_server_requirement: Azure's HTTP server that calls ``score.py`` (not in
            ``constraints.txt``: it is installed in the cloud image only).
        auth_mode: ``key`` or ``aml_token``.
        endpoint_prefix: first part of endpoint names.
        wait_timeout_s: the longest wait for each create or delete operation.
        cost_per_hour_usd, pue: instance-hour price (times count) and the region's PUE.
        max_items, max_batch_items: the serving core's limits in the scorer.
        constraints_file: where the pins come from; ``python_version`` the conda Python.
    """

    subscription_id: str
    resource_group: str
    workspace: str
    location: str | None = None
    instance_type: str = "Standard_DS3_v2"
    instance_count: int = 1
    base_image: str = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
    inference_server_requirement: str = "azureml-inference-server-http==1.5.1"
    auth_mode: str = "key"
    endpoint_prefix: str = "gd"
    wait_timeout_s: float = 3600.0
    cost_per_hour_usd: float | None = None
    pue: float | None = None
    max_items: int = 256
    max_batch_items: int = DEPLOYED_BATCH_ITEMS
    constraints_file: str = "constraints.txt"
    python_version: str = "3.11"

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None, where: str = "deploy.azureml") -> AzureMLSettings:
        return parse_target_settings(cls, raw, where)

    def check(self, where: str) -> None:
        check_positive(
            where,
            instance_count=self.instance_count,
            wait_timeout_s=self.wait_timeout_s,
            max_items=self.max_items,
            cost_per_hour_usd=self.cost_per_hour_usd,
            pue=self.pue,
        )
        if self.auth_mode not in ("key", "aml_token"):
            raise ConfigError(f"{where}: auth_mode must be key or aml_token, got {self.auth_mode!r}")


@dataclass(frozen=True)
class AzureMLPlan:
    """The manifests and the entities read back from them (what ``deploy`` sends)."""

    folder: Path
    endpoint_manifest: Path
    deployment_manifest: Path
    conda_file: Path
    code_dir: Path
    endpoint_name: str
    deployment_name: str
    endpoint: Any
    deployment: Any


class AzureMLDeployer:
    """Deploys variants to Azure ML managed online endpoints; see the module docstring.

    Args:
        settings: the target's settings (``AzureMLSettings.parse``).
        work_dir: where manifests and the code folder go (``<model>/<variant>/azureml/``).
        ml_client: an ``azure.ai.ml.MLClient``; ``None`` builds one on first use.
        credentials: a service principal from ``credentials.yml`` (``tenant_id``, ``client_id``,
            ``client_secret``); ``None`` uses ``DefaultAzureCredential``.
        dry_run: write everything, call nothing.
    """

    target = TARGET

    def __init__(
        self,
        settings: AzureMLSettings,
        work_dir: Path | str,
        ml_client: Any = None,
        credentials: Mapping[str, str] | Credentials | None = None,
        *,
        dry_run: bool = False,
    ) -> None:
        self.settings = settings
        self.work_dir = Path(work_dir)
        self.dry_run = dry_run
        self._ml_client = ml_client
        if credentials is None or isinstance(credentials, Credentials):
            self._credentials = credentials or Credentials({}, AZURE_CREDENTIAL_KEYS, "credentials 'azure'")
        else:
            self._credentials = Credentials(credentials, AZURE_CREDENTIAL_KEYS, "credentials 'azure'")
        if self._credentials and set(self._credentials.keys()) != set(AZURE_CREDENTIAL_KEYS):
            raise ConfigError(
                f"credentials 'azure': a service principal needs all of {list(AZURE_CREDENTIAL_KEYS)}; "
                f"got {list(self._credentials.keys())} (leave them all out to use DefaultAzureCredential)"
            )

    def __repr__(self) -> str:
        return (
            f"AzureMLDeployer(workspace={self.settings.workspace!r}, instance_type={self.settings.instance_type!r}, "
            f"dry_run={self.dry_run}, credentials={self._credentials!r})"
        )

    # ---- manifests (no service call) -------------------------------------------------------
    def plan(self, variant: Variant) -> AzureMLPlan:
        """Write the code folder, ``conda.yml``, ``endpoint.yml`` and ``deployment.yml``; read the
        manifests back with the SDK's loaders."""
        from azure.ai.ml import load_online_deployment, load_online_endpoint
        from azure.ai.ml._utils.utils import dump_yaml_to_file
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import (
            CodeConfiguration,
            Environment,
            ManagedOnlineDeployment,
            ManagedOnlineEndpoint,
            Model,
        )

        s = self.settings
        folder = (self.work_dir / variant.model_id / variant.variant_id / TARGET).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        code_dir = write_scoring_code(variant, folder, s.constraints_file, s.max_items, s.max_batch_items)
        serving = ServingConfig.read(code_dir / SERVING_CONFIG)
        conda = conda_environment(
            (code_dir / REQUIREMENTS_FILE).read_text(),
            s.python_version,
            s.inference_server_requirement,
            variant.runtime,
        )
        conda_file = folder / CONDA_FILE
        conda_file.write_text(yaml.safe_dump(conda, sort_keys=False))
        digest = hashlib.sha256(
            json.dumps([variant.model_id, variant.variant_id, serving.to_json(), conda]).encode()
        ).hexdigest()
        endpoint_name = resource_name(
            s.endpoint_prefix, variant.model_id, variant.variant_id, digest, _ENDPOINT_NAME_LENGTH
        )
        deployment_name = resource_name("d", variant.variant_id, "", digest, _ENDPOINT_NAME_LENGTH)
        tags = {"green-deploy:model": variant.model_id, "green-deploy:variant": variant.variant_id}
        endpoint = ManagedOnlineEndpoint(
            name=endpoint_name,
            auth_mode=s.auth_mode,
            description=f"green-deploy {variant.model_id}/{variant.variant_id} ({variant.runtime})",
            tags=tags,
        )
        deployment = ManagedOnlineDeployment(
            name=deployment_name,
            endpoint_name=endpoint_name,
            model=Model(
                path=str(variant.folder.resolve()),
                name=resource_name("green-deploy", variant.model_id, variant.variant_id, digest, 255),
                type=AssetTypes.CUSTOM_MODEL,
                description=f"{variant.model_id}/{variant.variant_id}: {variant.runtime} variant",
            ),
            environment=Environment(
                name=f"green-deploy-{variant.runtime}",
                version=hashlib.sha256(conda_file.read_bytes()).hexdigest()[:12],
                image=s.base_image,
                conda_file=str(conda_file),
            ),
            code_configuration=CodeConfiguration(code=CODE_FOLDER, scoring_script=SCORING_SCRIPT),
            instance_type=s.instance_type,
            instance_count=s.instance_count,
            environment_variables={"GREEN_DEPLOY_MODEL": f"{variant.model_id}/{variant.variant_id}"},
            tags=tags,
        )
        endpoint_manifest, deployment_manifest = folder / ENDPOINT_MANIFEST, folder / DEPLOYMENT_MANIFEST
        dump_yaml_to_file(endpoint_manifest, endpoint._to_dict())
        deployment_manifest.unlink(missing_ok=True)  # dump() refuses to overwrite
        deployment.dump(deployment_manifest)
        logger.info("Azure ML manifests for %s/%s in %s", variant.model_id, variant.variant_id, folder)
        return AzureMLPlan(
            folder=folder,
            endpoint_manifest=endpoint_manifest,
            deployment_manifest=deployment_manifest,
            conda_file=conda_file,
            code_dir=code_dir,
            endpoint_name=endpoint_name,
            deployment_name=deployment_name,
            endpoint=load_online_endpoint(endpoint_manifest),
            deployment=load_online_deployment(deployment_manifest),
        )

    # ---- the target protocol -----------------------------------------------------------------
    def deploy(self, variant: Variant) -> Deployment:
        plan = self.plan(variant)
        if self.dry_run:
            logger.info(
                "dry run: Azure ML endpoint %s not created; manifests in %s", plan.endpoint_name, plan.folder
            )
            return self._record(variant, plan, STATUS_DRY_RUN, "")
        client = self._client()
        timeout = self.settings.wait_timeout_s
        with redacting_logs(self._credentials.secret_values()):
            logger.info("creating Azure ML endpoint %s", plan.endpoint_name)
            _wait(
                client.online_endpoints.begin_create_or_update(plan.endpoint),
                timeout,
                f"endpoint {plan.endpoint_name}",
            )
            logger.info(
                "creating deployment %s (%s x%d)",
                plan.deployment_name,
                self.settings.instance_type,
                self.settings.instance_count,
            )
            _wait(
                client.online_deployments.begin_create_or_update(plan.deployment),
                timeout,
                f"deployment {plan.deployment_name}",
            )
            endpoint = client.online_endpoints.get(name=plan.endpoint_name)
            endpoint.traffic = {plan.deployment_name: 100}
            _wait(
                client.online_endpoints.begin_create_or_update(endpoint),
                timeout,
                f"traffic of {plan.endpoint_name}",
            )
        return self._record(variant, plan, STATUS_IN_SERVICE, endpoint.scoring_uri or "")

    def predict(self, deployment: Deployment, inputs: np.ndarray) -> tuple[np.ndarray, ServerEnergy]:
        if deployment.dry_run:
            raise DeploymentError(f"{deployment.endpoint_name} is a dry run: nothing serves it")
        client = self._client()
        requests = self.work_dir / "requests"
        requests.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", suffix=".json", dir=requests, delete=False) as file:
            json.dump({"inputs": np.asarray(inputs).tolist()}, file)
        try:
            with redacting_logs(self._credentials.secret_values()):
                answer = client.online_endpoints.invoke(
                    endpoint_name=deployment.endpoint_name,
                    deployment_name=deployment.resources["deployment_name"],
                    request_file=file.name,
                )
        finally:
            Path(file.name).unlink(missing_ok=True)
        return parse_prediction(_unwrap(answer))

    def teardown(self, deployment: Deployment) -> None:
        if deployment.dry_run:
            return
        from azure.core.exceptions import ResourceNotFoundError

        client = self._client()
        with redacting_logs(self._credentials.secret_values()):
            try:
                _wait(
                    client.online_endpoints.begin_delete(name=deployment.endpoint_name),
                    self.settings.wait_timeout_s,
                    f"deleting endpoint {deployment.endpoint_name}",
                )
            except ResourceNotFoundError:
                logger.info("Azure ML endpoint %s was already gone", deployment.endpoint_name)
        logger.info("tore down Azure ML endpoint %s", deployment.endpoint_name)

    # ---- client ------------------------------------------------------------------------------
    def _client(self) -> Any:
        if self.dry_run:
            raise DeploymentError("a dry run makes no Azure call")
        if self._ml_client is None:
            from azure.ai.ml import MLClient

            s = self.settings
            self._ml_client = MLClient(
                self._azure_credential(), s.subscription_id, s.resource_group, s.workspace
            )
        return self._ml_client

    def _azure_credential(self) -> Any:
        if self._credentials:
            from azure.identity import ClientSecretCredential

            return ClientSecretCredential(**self._credentials.as_kwargs())
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential()

    def _record(self, variant: Variant, plan: AzureMLPlan, status: str, scoring_uri: str) -> Deployment:
        s = self.settings
        return Deployment(
            target=TARGET,
            model_id=variant.model_id,
            variant_id=variant.variant_id,
            endpoint_name=plan.endpoint_name,
            endpoint_url=scoring_uri,
            region=s.location or "",
            instance_type=s.instance_type,
            instance_count=s.instance_count,
            status=status,
            cost_per_hour_usd=s.cost_per_hour_usd,
            pue=s.pue,
            resources={
                "deployment_name": plan.deployment_name,
                "workspace": s.workspace,
                "resource_group": s.resource_group,
                "manifests": str(plan.folder),
            },
        )


def write_scoring_code(
    variant: Variant, folder: Path, constraints_file: str, max_items: int, max_batch_items: int
) -> Path:
    """The code folder an Azure ML deployment receives (``folder/code``): the vendored serving
    core, ``serving.json``, the pinned ``requirements.txt`` and ``score.py``."""
    serving = ServingConfig.for_variant(variant, max_items=max_items, max_batch_items=max_batch_items)
    return write_code_dir(
        variant,
        folder / CODE_FOLDER,
        read_constraints(Path(constraints_file)),
        serving,
        {SCORING_SCRIPT: (SCORE_SCRIPT, 0o644)},
    )


def conda_environment(
    requirements: str, python_version: str, inference_server: str, runtime: str
) -> dict[str, Any]:
    """The conda file: Python, pip, and the pinned requirements (index options kept); packages
    the inference server pins itself are left to its pins (``SERVER_PINNED``)."""
    pip = [line.strip() for line in requirements.splitlines() if line.strip() and not line.startswith("#")]
    if inference_server:
        pip = [line for line in pip if _project(line) not in SERVER_PINNED]
        pip.append(inference_server)
    return {
        "name": f"green-deploy-{runtime}",
        "channels": ["conda-forge"],
        "dependencies": [f"python={python_version}", "pip", {"pip": pip}],
    }


def _project(requirement: str) -> str:
    return re.split(r"[=<>!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _wait(poller: Any, timeout_s: float, what: str) -> Any:
    """Wait for an ``LROPoller``; ``result(timeout)`` returns without raising when time is up."""
    result = poller.result(timeout=timeout_s)
    if not poller.done():
        raise DeploymentTimeoutError(
            f"Azure ML {what} did not finish within {timeout_s:.0f} s (deploy.azureml.wait_timeout_s)"
        )
    return result


def _unwrap(answer: Any) -> str:
    """``invoke`` returns the body as text; some scoring servers encode a JSON answer twice."""
    if isinstance(answer, bytes):
        answer = answer.decode()
    try:
        inner = json.loads(answer)
    except (TypeError, json.JSONDecodeError):
        return answer
    return inner if isinstance(inner, str) else answer
