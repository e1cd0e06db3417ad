"""AWS SageMaker real-time endpoints (boto3), serving a variant with the green-deploy serving core.

``deploy``: package (``model.tar.gz``: variant files + ``code/`` with the vendored serving core,
see ``packaging``), upload it to S3 under a content-addressed key, ``create_model`` (image, role,
model data), ``create_endpoint_config`` (instance type and count), ``create_endpoint``, then poll
``describe_endpoint`` with backoff until ``InService`` (``Failed`` or the timeout raise).
``predict``: ``invoke_endpoint`` through ``sagemaker-runtime`` asking for JSON, whose ``energy`` is
what the provider's machine spent on the request. ``teardown``: delete endpoint, endpoint config
and model (and the S3 object when configured); what is already gone is not an error.

The image (``image_uri``) must run ``code/serve`` as its ``serve`` command; the dry run writes a
``Dockerfile`` for such an image. boto3 is imported when a client is first needed, never at import
and never in a dry run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
    ServingConfig,
    archive_entries,
    read_constraints,
    resource_name,
    write_archive,
    write_code_dir,
)
from green_deploy.deploy.settings import DEPLOYED_BATCH_ITEMS, check_positive, parse_target_settings
from green_deploy.errors import ConfigError

logger = logging.getLogger(__name__)

TARGET = "sagemaker"
AWS_CREDENTIAL_KEYS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "profile_name")
JSON_TYPE = "application/json"
NPY_TYPE = "application/x-npy"
_NAME_LENGTH = 63  # SageMaker model, endpoint config and endpoint names
_VARIANT_NAME = "AllTraffic"
_NOT_FOUND = ("Could not find", "does not exist", "not found")

# SageMaker's `serve` command inside the container: ``code/serve``, beside the vendored package;
# it runs ``green_deploy.deploy.sagemaker_entry``.
SERVE_SCRIPT = """#!/bin/sh
# SageMaker runs `docker run IMAGE serve` with this archive extracted into /opt/ml/model; an image
# whose command is this script answers /ping and /invocations with the green-deploy serving core.
set -e
HERE="$(cd "$(dirname "$0")" && pwd)"
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
exec python -m green_deploy.deploy.sagemaker_entry serve --model-dir "$(dirname "$HERE")" \\
    --host "${GREEN_DEPLOY_HOST:-0.0.0.0}" --port "${SAGEMAKER_BIND_TO_PORT:-8080}"
"""


@dataclass(frozen=True)
class SageMakerSettings:
    """``deploy.sagemaker`` in ``parameters_deploy.yml``.

    Attributes:
        region: AWS region of the endpoint and bucket.
        role_arn: the execution role SageMaker assumes to read the model data.
        image_uri: an ECR image that runs ``code/serve`` (see the dry run's ``Dockerfile``).
        bucket: S3 bucket for ``model.tar.gz``; ``prefix`` the key prefix.
        instance_type, instance_count: the endpoint's instances (``ml.m5.large``, 1).
        content_type: request body, ``application/json`` or ``application/x-npy`` (answers are
            always JSON: SageMaker does not pass the serving core's energy headers through).
        endpoint_prefix: first part of resource names.
        wait_timeout_s: how long ``deploy`` waits for ``InService``; ``poll_interval_s`` the
            first pause between polls, growing by half each time up to ``max_poll_interval_s``.
        delete_s3_on_teardown: also delete the uploaded archive.
        endpoint_url: one URL for every AWS API (moto, LocalStack); ``None`` for AWS itself.
        cost_per_hour_usd: instance-hour price times count, for cost per inference.
        pue: the region's power usage effectiveness (facility energy / IT energy).
        max_items, max_batch_items: the serving core's limits inside the container.
        constraints_file: where the pins for ``code/requirements.txt`` come from.
        container_base_image: ``FROM`` line of the dry run's ``Dockerfile``.
    """

    region: str
    role_arn: str
    image_uri: str
    bucket: str
    prefix: str = "green-deploy"
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    content_type: str = JSON_TYPE
    endpoint_prefix: str = "gd"
    wait_timeout_s: float = 1800.0
    poll_interval_s: float = 15.0
    max_poll_interval_s: float = 60.0
    delete_s3_on_teardown: bool = False
    endpoint_url: str | None = None
    cost_per_hour_usd: float | None = None
    pue: float | None = None
    max_items: int = 256
    max_batch_items: int = DEPLOYED_BATCH_ITEMS
    constraints_file: str = "constraints.txt"
    container_base_image: str = "python:3.11-slim"

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None, where: str = "deploy.sagemaker") -> SageMakerSettings:
        return parse_target_settings(cls, raw, where)

    def check(self, where: str) -> None:
        check_positive(
            where,
            instance_count=self.instance_count,
            wait_timeout_s=self.wait_timeout_s,
            poll_interval_s=self.poll_interval_s,
            max_poll_interval_s=self.max_poll_interval_s,
            max_items=self.max_items,
            cost_per_hour_usd=self.cost_per_hour_usd,
            pue=self.pue,
        )
        if self.content_type not in (JSON_TYPE, NPY_TYPE):
            raise ConfigError(
                f"{where}: content_type must be {JSON_TYPE} or {NPY_TYPE}, got {self.content_type!r}"
            )
        if not self.role_arn.startswith("arn:"):
            raise ConfigError(
                f"{where}: role_arn must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
            )


@dataclass(frozen=True)
class SageMakerPlan:
    """Everything ``deploy`` will create, written before any call (and all a dry run does)."""

    folder: Path
    archive: Path
    sha256: str
    s3_uri: str
    model_name: str
    endpoint_config_name: str
    endpoint_name: str
    requests: dict[str, dict[str, Any]] = field(repr=False)

    @property
    def bucket(self) -> str:
        return self.s3_uri.removeprefix("s3://").split("/", 1)[0]

    @property
    def key(self) -> str:
        return self.s3_uri.removeprefix("s3://").split("/", 1)[1]


class SageMakerDeployer:
    """Deploys variants to SageMaker real-time endpoints; see the module docstring.

    Args:
        settings: the target's settings (``SageMakerSettings.parse``).
        work_dir: where packages and manifests are written (``<model>/<variant>/sagemaker/``).
        credentials: AWS keys from ``credentials.yml`` (``aws_access_key_id``,
            ``aws_secret_access_key``, optional ``aws_session_token`` or ``profile_name``);
            ``None`` uses boto3's default chain.
        dry_run: write everything, call nothing.
        sleep, clock: injected for tests of the polling.
    """

    target = TARGET

    def __init__(
        self,
        settings: SageMakerSettings,
        work_dir: Path | str,
        credentials: Mapping[str, str] | Credentials | None = None,
        *,
        dry_run: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.work_dir = Path(work_dir)
        self.dry_run = dry_run
        if credentials is None or isinstance(credentials, Credentials):
            self._credentials = credentials or Credentials({}, AWS_CREDENTIAL_KEYS, "credentials 'aws'")
        else:
            self._credentials = Credentials(credentials, AWS_CREDENTIAL_KEYS, "credentials 'aws'")
        self._sleep = sleep
        self._clock = clock
        self._session: Any = None
        self._clients: dict[str, Any] = {}

    def __repr__(self) -> str:
        return (
            f"SageMakerDeployer(region={self.settings.region!r}, instance_type={self.settings.instance_type!r}, "
            f"dry_run={self.dry_run}, credentials={self._credentials!r})"
        )

    # ---- packaging (no SDK) --------------------------------------------------------------
    def plan(self, variant: Variant) -> SageMakerPlan:
        """Write ``model.tar.gz``, the API requests as JSON and a ``Dockerfile``; call nothing."""
        s = self.settings
        folder = self.work_dir / variant.model_id / variant.variant_id / TARGET
        folder.mkdir(parents=True, exist_ok=True)
        archive, sha256, code_dir = write_model_archive(
            variant, folder, s.constraints_file, s.max_items, s.max_batch_items
        )
        name = resource_name(s.endpoint_prefix, variant.model_id, variant.variant_id, sha256, _NAME_LENGTH)
        key = "/".join(
            part
            for part in (
                s.prefix.strip("/"),
                variant.model_id,
                variant.variant_id,
                sha256[:16],
                "model.tar.gz",
            )
            if part
        )
        s3_uri = f"s3://{s.bucket}/{key}"
        tags = [
            {"Key": "green-deploy:model", "Value": variant.model_id},
            {"Key": "green-deploy:variant", "Value": variant.variant_id},
            {"Key": "green-deploy:package-sha256", "Value": sha256},
        ]
        requests: dict[str, dict[str, Any]] = {
            "put_object": {"Bucket": s.bucket, "Key": key, "Metadata": {"sha256": sha256}},
            "create_model": {
                "ModelName": name,
                "ExecutionRoleArn": s.role_arn,
                "PrimaryContainer": {
                    "Image": s.image_uri,
                    "ModelDataUrl": s3_uri,
                    "Environment": {
                        "GREEN_DEPLOY_MODEL": f"{variant.model_id}/{variant.variant_id}",
                        "GREEN_DEPLOY_PACKAGE_SHA256": sha256,
                        "GREEN_DEPLOY_LOG_LEVEL": "info",
                    },
                },
                "Tags": tags,
            },
            "create_endpoint_config": {
                "EndpointConfigName": name,
                "ProductionVariants": [
                    {
                        "VariantName": _VARIANT_NAME,
                        "ModelName": name,
                        "InitialInstanceCount": s.instance_count,
                        "InstanceType": s.instance_type,
                        "InitialVariantWeight": 1.0,
                    }
                ],
                "Tags": tags,
            },
            "create_endpoint": {"EndpointName": name, "EndpointConfigName": name, "Tags": tags},
        }
        for request, body in requests.items():
            (folder / f"{request}.json").write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
        (folder / "Dockerfile").write_text(_dockerfile(s.container_base_image))
        (folder / "requirements.txt").write_text((code_dir / "requirements.txt").read_text())
        logger.info(
            "packaged %s/%s for SageMaker: %s (sha256 %s)",
            variant.model_id,
            variant.variant_id,
            archive,
            sha256[:12],
        )
        return SageMakerPlan(folder, archive, sha256, s3_uri, name, name, name, requests)

    # ---- the target protocol -------------------------------------------------------------
    def deploy(self, variant: Variant) -> Deployment:
        plan = self.plan(variant)
        if self.dry_run:
            logger.info(
                "dry run: SageMaker endpoint %s not created; manifests in %s", plan.endpoint_name, plan.folder
            )
            return self._record(variant, plan, STATUS_DRY_RUN)
        with redacting_logs(self._secrets()):
            self._upload(plan)
            sagemaker = self._client("sagemaker")
            sagemaker.create_model(**plan.requests["create_model"])
            sagemaker.create_endpoint_config(**plan.requests["create_endpoint_config"])
            sagemaker.create_endpoint(**plan.requests["create_endpoint"])
            logger.info(
                "creating SageMaker endpoint %s (%s x%d)",
                plan.endpoint_name,
                self.settings.instance_type,
                self.settings.instance_count,
            )
            described = self.wait_in_service(plan.endpoint_name)
        return self._record(variant, plan, STATUS_IN_SERVICE, endpoint_arn=described.get("EndpointArn", ""))

    def predict(self, deployment: Deployment, inputs: np.ndarray) -> tuple[np.ndarray, ServerEnergy]:
        if deployment.dry_run:
            raise DeploymentError(f"{deployment.endpoint_name} is a dry run: nothing serves it")
        inputs = np.asarray(inputs)
        if self.settings.content_type == NPY_TYPE:
            from green_deploy.serving.validation import encode_npy

            body = encode_npy(inputs)
        else:
            body = json.dumps({"inputs": inputs.tolist()}).encode()
        with redacting_logs(self._secrets()):
            try:
                response = self._client("sagemaker-runtime").invoke_endpoint(
                    EndpointName=deployment.endpoint_name,
                    Body=body,
                    ContentType=self.settings.content_type,
                    Accept=JSON_TYPE,
                )
            except Exception as error:
                if _is_client_error(error):
                    raise DeploymentError(
                        f"invoke_endpoint on {deployment.endpoint_name} failed: {error}"
                    ) from error
                raise
            payload = response["Body"].read()
        return parse_prediction(payload)

    def teardown(self, deployment: Deployment) -> None:
        if deployment.dry_run:
            return
        resources = deployment.resources
        with redacting_logs(self._secrets()):
            sagemaker = self._client("sagemaker")
            self._delete(sagemaker.delete_endpoint, EndpointName=deployment.endpoint_name)
            self._delete(
                sagemaker.delete_endpoint_config, EndpointConfigName=resources["endpoint_config_name"]
            )
            self._delete(sagemaker.delete_model, ModelName=resources["model_name"])
            if self.settings.delete_s3_on_teardown and resources.get("s3_uri"):
                bucket, key = resources["s3_uri"].removeprefix("s3://").split("/", 1)
                self._delete(self._client("s3").delete_object, Bucket=bucket, Key=key)
        logger.info("tore down SageMaker endpoint %s", deployment.endpoint_name)

    # ---- waiting ---------------------------------------------------------------------------
    def wait_in_service(self, endpoint_name: str) -> dict[str, Any]:
        """Poll ``describe_endpoint`` until ``InService``; ``Failed`` or the timeout raise."""
        sagemaker = self._client("sagemaker")
        return wait_for_endpoint(
            lambda: sagemaker.describe_endpoint(EndpointName=endpoint_name),
            endpoint_name,
            self.settings.wait_timeout_s,
            self.settings.poll_interval_s,
            self.settings.max_poll_interval_s,
            sleep=self._sleep,
            clock=self._clock,
        )

    # ---- clients ---------------------------------------------------------------------------
    def _client(self, service: str) -> Any:
        if self.dry_run:
            raise DeploymentError("a dry run makes no AWS call")
        if service not in self._clients:
            self._clients[service] = self._boto_session().client(
                service, endpoint_url=self.settings.endpoint_url
            )
        return self._clients[service]

    def _boto_session(self) -> Any:
        if self.dry_run:
            raise DeploymentError("a dry run makes no AWS call")
        if self._session is None:
            import boto3

            self._session = boto3.session.Session(
                region_name=self.settings.region, **self._credentials.as_kwargs()
            )
        return self._session

    def _secrets(self) -> tuple[str, ...]:
        """Values to mask in logs: the mapping's, and what boto3's default chain resolved (a key
        id from the environment is logged by botocore as readily as one from the mapping)."""
        values = list(self._credentials.secret_values())
        resolved = self._boto_session().get_credentials()
        if resolved is not None:
            frozen = resolved.get_frozen_credentials()
            values.extend(value for value in (frozen.access_key, frozen.secret_key, frozen.token) if value)
        return tuple(values)

    def _upload(self, plan: SageMakerPlan) -> None:
        s3 = self._client("s3")
        try:
            head = s3.head_object(Bucket=plan.bucket, Key=plan.key)
            if head.get("Metadata", {}).get("sha256") == plan.sha256:
                logger.info("%s already uploaded (same sha256)", plan.s3_uri)
                return
        except Exception as error:
            if not _is_client_error(error):
                raise
        with plan.archive.open("rb") as body:
            s3.put_object(Body=body, **plan.requests["put_object"])
        logger.info("uploaded %s", plan.s3_uri)

    @staticmethod
    def _delete(call: Callable[..., Any], **names: str) -> None:
        try:
            call(**names)
        except Exception as error:
            if not (_is_client_error(error) and any(text in str(error) for text in _NOT_FOUND)):
                raise DeploymentError(f"{call.__name__}({names}) failed: {error}") from error
            logger.info("%s: %s was already gone", call.__name__, names)

    def _record(
        self, variant: Variant, plan: SageMakerPlan, status: str, endpoint_arn: str = ""
    ) -> Deployment:
        s = self.settings
        base = (
            s.endpoint_url.rstrip("/")
            if s.endpoint_url
            else f"https://runtime.sagemaker.{s.region}.amazonaws.com"
        )
        resources = {
            "model_name": plan.model_name,
            "endpoint_config_name": plan.endpoint_config_name,
            "s3_uri": plan.s3_uri,
            "package_sha256": plan.sha256,
            "package": str(plan.archive),
            "manifests": str(plan.folder),
        }
        if endpoint_arn:
            resources["endpoint_arn"] = endpoint_arn
        return Deployment(
            target=TARGET,
            model_id=variant.model_id,
            variant_id=variant.variant_id,
            endpoint_name=plan.endpoint_name,
            endpoint_url=f"{base}/endpoints/{plan.endpoint_name}/invocations",
            region=s.region,
            instance_type=s.instance_type,
            instance_count=s.instance_count,
            status=status,
            cost_per_hour_usd=s.cost_per_hour_usd,
            pue=s.pue,
            resources=resources,
        )


def write_model_archive(
    variant: Variant, folder: Path, constraints_file: str, max_items: int, max_batch_items: int
) -> tuple[Path, str, Path]:
    """``folder/model.tar.gz`` as SageMaker receives it (the variant's files, ``code/`` with the
    vendored serving core and ``serve``); the archive, its sha256 and the code folder."""
    serving = ServingConfig.for_variant(variant, max_items=max_items, max_batch_items=max_batch_items)
    code_dir = write_code_dir(
        variant,
        folder / "build" / "code",
        read_constraints(Path(constraints_file)),
        serving,
        {"serve": (SERVE_SCRIPT, 0o755)},
    )
    archive = folder / "model.tar.gz"
    return archive, write_archive(archive_entries(variant, code_dir), archive), code_dir


def wait_for_endpoint(
    describe: Callable[[], Mapping[str, Any]],
    endpoint_name: str,
    timeout_s: float,
    poll_interval_s: float,
    max_poll_interval_s: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll ``describe`` until ``EndpointStatus`` is ``InService``, pausing ``poll_interval_s``
    and then half as long again each time (at most ``max_poll_interval_s``)."""
    deadline = clock() + timeout_s
    pause = poll_interval_s
    while True:
        described = dict(describe())
        status = described.get("EndpointStatus")
        if status == "InService":
            return described
        if status in ("Failed", "OutOfService", "Deleting"):
            raise DeploymentError(
                f"SageMaker endpoint {endpoint_name} is {status}: {described.get('FailureReason', 'no reason given')}"
            )
        remaining = deadline - clock()
        if remaining <= 0:
            raise DeploymentTimeoutError(
                f"SageMaker endpoint {endpoint_name} still {status} after {timeout_s:.0f} s "
                f"(deploy.sagemaker.wait_timeout_s); it may still come up: check the console, then tear it down"
            )
        logger.info("endpoint %s is %s; next check in %.0f s", endpoint_name, status, min(pause, remaining))
        sleep(min(pause, remaining))
        pause = min(pause * 1.5, max_poll_interval_s)


def _is_client_error(error: BaseException) -> bool:
    """A botocore ``ClientError`` (the service answered with an error), without importing botocore."""
    return any(cls.__name__ == "ClientError" for cls in type(error).__mro__)


def _dockerfile(base_image: str) -> str:
    return f"""# An image for deploy.sagemaker.image_uri: SageMaker extracts model.tar.gz into /opt/ml/model
# and runs `docker run IMAGE serve`; code/serve starts the green-deploy serving core on :8080.
FROM {base_image}
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt
ENV PYTHONUNBUFFERED=1
ENTRYPOINT ["/bin/sh", "/opt/ml/model/code/serve"]
"""
