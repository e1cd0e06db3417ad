"""The registry of deploy targets: each entry's settings, deployer, credentials and provider; an
unknown name refused with the known ones; and the deploy and evaluate code taking every target
table from it, so that a target registered there alone is deployed, measured, costed and
undeployed."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest

from green_deploy.deploy import targets
from green_deploy.deploy.azureml import AZURE_CREDENTIAL_KEYS, AzureMLDeployer, AzureMLSettings
from green_deploy.deploy.azureml_server import AzureMLServerDeployer
from green_deploy.deploy.base import STATUS_IN_SERVICE, Deployment, ServerEnergy, Variant
from green_deploy.deploy.inprocess import InProcessDeployer
from green_deploy.deploy.local import LocalDeployer, LocalSettings
from green_deploy.deploy.provider_stack import StackSettings
from green_deploy.deploy.runner import (
    CloudCredentials,
    DeploySettings,
    build_deployers,
    record_deployment,
    undeploy_all,
)
from green_deploy.deploy.sagemaker import AWS_CREDENTIAL_KEYS, SageMakerDeployer, SageMakerSettings
from green_deploy.deploy.sagemaker_server import SageMakerServerDeployer
from green_deploy.deploy.sagemaker_torchserve import SageMakerTorchServeDeployer
from green_deploy.deploy.settings import parse_target_settings
from green_deploy.deploy.targets import (
    DeployerOptions,
    Target,
    cloud_targets,
    credential_entries,
    get_target,
    local_targets,
    pipeline_targets,
    settings_sections,
    target_names,
)
from green_deploy.energy.carbon import DEFAULT_PUE, intensity_for_cloud
from green_deploy.errors import ConfigError
from green_deploy.evaluate.harness import EvaluationSet
from green_deploy.evaluate.runner import StudyRunner, study_deployers
from green_deploy.evaluate.store import StudyStore
from green_deploy.evaluate.study import StudySettings, expand_cells
from green_deploy.search.study import SearchSettings
from tests.deploy.conftest import sagemaker_settings

# name: (section, settings, deployer, provider, on this machine, credentials entry, its keys)
ENTRIES = {
    "local": ("local", LocalSettings, LocalDeployer, "local", True, None, ()),
    "local_unbatched": ("local", LocalSettings, LocalDeployer, "local", True, None, ()),
    "inprocess": ("local", LocalSettings, InProcessDeployer, "local", True, None, ()),
    "sagemaker": (
        "sagemaker",
        SageMakerSettings,
        SageMakerDeployer,
        "aws",
        False,
        "aws",
        AWS_CREDENTIAL_KEYS,
    ),
    "azureml": ("azureml", AzureMLSettings, AzureMLDeployer, "azure", False, "azure", AZURE_CREDENTIAL_KEYS),
    "sagemaker_server": ("sagemaker_server", StackSettings, SageMakerServerDeployer, "aws", True, None, ()),
    "azureml_server": ("azureml_server", StackSettings, AzureMLServerDeployer, "azure", True, None, ()),
    "sagemaker_torchserve": (
        "sagemaker_torchserve",
        StackSettings,
        SageMakerTorchServeDeployer,
        "aws",
        True,
        None,
        (),
    ),
}
STACKS = ("sagemaker_server", "azureml_server", "sagemaker_torchserve")
CREDENTIALS = {
    "aws": {"aws_access_key_id": "AKIAFAKE00000000", "aws_secret_access_key": "s3cr3t-value"},
    "azure": {"tenant_id": "tenant-0000", "client_id": "client-0000", "client_secret": "s3cr3t-value"},
}


def deploy_params(constraints_file: str) -> dict:
    return {
        "sagemaker": sagemaker_settings(constraints_file),
        "azureml": {
            "subscription_id": "00000000-0000-0000-0000-000000000000",
            "resource_group": "rg",
            "workspace": "ws",
            "constraints_file": constraints_file,
        },
        **{stack: {"region": "eu-west-1" if "sagemaker" in stack else "westeurope"} for stack in STACKS},
    }


def test_an_unknown_target_is_refused_with_the_known_names():
    known = (
        "['local', 'local_unbatched', 'inprocess', 'sagemaker', 'azureml', 'sagemaker_server', "
        "'azureml_server', 'sagemaker_torchserve']"
    )
    with pytest.raises(ConfigError, match=re.escape(f"unknown deploy target 'gcp'; known: {known}")):
        get_target("gcp")


@pytest.mark.parametrize("name", list(ENTRIES))
def test_each_target_builds_its_own_deployer_from_its_own_section(name, tmp_path, constraints_file):
    section, settings_class, deployer_class, provider, local, entry, keys = ENTRIES[name]
    target = get_target(name)
    assert (target.name, target.section, target.provider, target.local) == (name, section, provider, local)
    assert (target.credentials, target.credential_keys) == (entry, keys)
    assert provider in DEFAULT_PUE  # the energy core has a PUE for it
    settings = target.settings_from(deploy_params(constraints_file))
    deployer = target.build(settings, DeployerOptions(tmp_path, dry_run=True))
    assert isinstance(settings, settings_class) and isinstance(deployer, deployer_class)
    assert deployer.target == name
    if name.startswith("local"):  # the same section; micro-batching is what tells them apart
        assert settings.max_batch_items == (0 if name == "local_unbatched" else 32)
    if not local or name in STACKS:
        with pytest.raises(ConfigError, match=f"deploy.{section} is not configured"):
            target.settings_from({})


def test_the_name_tables_are_read_from_the_entries():
    assert target_names() == ("local", "local_unbatched", "inprocess", "sagemaker", "azureml", *STACKS)
    assert pipeline_targets() == ("local", "sagemaker", "azureml", *STACKS)
    assert local_targets() == ("local", "local_unbatched", "inprocess", *STACKS)
    assert cloud_targets() == ("sagemaker", "azureml")
    assert settings_sections() == ("local", "sagemaker", "azureml", *STACKS)
    assert credential_entries() == ("aws", "azure")


def test_each_cloud_target_reads_and_checks_its_own_credentials_entry():
    for name in cloud_targets():
        target = get_target(name)
        checked = target.credentials_from(CREDENTIALS)
        assert checked is not None and set(checked.keys()) == set(CREDENTIALS[target.credentials])
    for name in local_targets():
        assert get_target(name).credentials_from(CREDENTIALS) is None
    with pytest.raises(ConfigError, match=r"credentials 'azure'.*unknown credential key\(s\)"):
        get_target("azureml").credentials_from({"azure": CREDENTIALS["aws"]})
    assert list(CloudCredentials({**CREDENTIALS, "gcp": {"token": "x" * 8}})) == ["aws", "azure"]


@dataclass(frozen=True)
class EndpointSettings:
    region: str


class FakeEndpoint:
    """A cloud endpoint that answers zeros at a fixed energy per item, as a provider's would."""

    target = "gcpml"
    dry_run = False

    def __init__(self, settings: EndpointSettings, options: DeployerOptions) -> None:
        self.settings = settings
        self.work_dir = Path(options.work_dir)
        self.credentials = options.credentials
        self.removed: list[str] = []

    def deploy(self, variant: Variant) -> Deployment:
        return Deployment(
            self.target,
            variant.model_id,
            variant.variant_id,
            f"gd-{variant.variant_id}",
            "https://endpoint.example/score",
            self.settings.region,
            "fake.instance",
            1,
            STATUS_IN_SERVICE,
            None,
            None,
        )

    def predict(self, deployment: Deployment, inputs: np.ndarray) -> tuple[np.ndarray, ServerEnergy]:
        items = len(inputs)
        energy = {
            "joules": 0.01 * items,
            "joules_per_item": 0.01,
            "active_joules": 0.01 * items,
            "measured": True,
            "components": [
                {"component": "cpu", "source": "provider", "measured": True, "energy_j": 0.01 * items}
            ],
        }
        return np.zeros((items, 10), np.float32), ServerEnergy.from_response(energy)

    def teardown(self, deployment: Deployment) -> None:
        self.removed.append(deployment.endpoint_name)


@pytest.fixture
def registered(monkeypatch) -> Target:
    """A cloud target that exists only as an entry of the registry."""
    target = Target(
        "gcpml",
        "gcpml",
        lambda raw: parse_target_settings(EndpointSettings, raw, "deploy.gcpml"),
        FakeEndpoint,
        provider="gcp",
        local=False,
        credentials="gcp",
        credential_keys=("token",),
    )
    monkeypatch.setattr(targets, "TARGETS", MappingProxyType({**targets.TARGETS, target.name: target}))
    return target


def test_a_target_registered_alone_is_deployed_measured_costed_and_undeployed(
    registered, tiny, tmp_path, caplog
):
    work_dir = str(tmp_path / "deploy")
    deploy = {"targets": ["gcpml"], "work_dir": work_dir, "gcpml": {"region": "europe-west9"}}
    settings = DeploySettings.parse(deploy)
    endpoint = build_deployers(settings, deploy, CloudCredentials({"gcp": {"token": "a-secret-token"}}))[
        "gcpml"
    ]
    assert endpoint.credentials.get("token") == "a-secret-token"
    record_deployment(work_dir, endpoint.deploy(tiny.variant))  # what the deploy pipeline leaves

    study = StudySettings.parse(
        {"targets": ["gcpml"], "batch_sizes": [2], "protocol": {"repetition_s": 0.01, "max_cell_s": 1.0}}
    )
    with pytest.raises(ConfigError, match="run on their instance type"):
        StudySettings.parse({"targets": ["gcpml"], "devices": ["cpu", "cuda"]})
    with pytest.raises(ConfigError, match=r"target must be local or .*, got 'gcpml'"):
        SearchSettings.parse({"target": "gcpml"})
    row = {
        "model_id": tiny.variant.model_id,
        "variant_id": tiny.variant.variant_id,
        "runtime": "pytorch",
        "technique": "magnitude_pruning",
        "artifact_dir": str(tiny.variant.folder),
        "config_sha256": "abc123",
    }
    labels = np.arange(len(tiny.batch)) % 10
    data = EvaluationSet("classification", "accuracy", tiny.batch, labels, domain="cv")
    deployers = study_deployers(study, deploy)
    assert list(deployers) == [("gcpml", "cpu")]
    store = StudyStore(tmp_path / "study")
    runner = StudyRunner(study, [row], deployers, lambda _: data, store, deploy_work_dir=work_dir)
    outcome = runner.run(expand_cells([row], study))
    assert (outcome.measured, outcome.failures) == (1, [])
    cell = store.cells()[0]["row"]
    intensity = intensity_for_cloud("gcp", "europe-west9")  # the entry's provider, the endpoint's region
    assert (cell["target"], cell["region"], cell["intensity_source"]) == (
        "gcpml",
        "europe-west9",
        intensity.source,
    )
    assert cell["intensity_g_per_kwh"] == intensity.intensity_g_per_kwh

    with caplog.at_level(logging.WARNING):
        undeploy_all(DeploySettings(work_dir=work_dir), {}, None)
    assert "gcpml is not in deploy.targets" in caplog.text  # recorded, not configured: kept
