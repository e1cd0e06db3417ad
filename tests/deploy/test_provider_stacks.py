"""Each provider's serving stack started on loopback with a real variant: it answers the deploy
check (outputs equal to in-process within tolerance), its process tree is metered, and it stops
with nothing left behind."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from green_deploy.deploy.base import DeploymentError
from green_deploy.deploy.processes import process_alive, session_members
from green_deploy.deploy.provider_stack import StackSettings
from green_deploy.deploy.targets import DeployerOptions, get_target
from green_deploy.evaluate.harness import ServerMeter
from tests.deploy.conftest import REPO

STACKS = ("sagemaker_server", "azureml_server", "sagemaker_torchserve")


REGIONS = {
    "sagemaker_server": "eu-west-1",
    "azureml_server": "westeurope",
    "sagemaker_torchserve": "us-east-1",
}
PUES = {"aws": 1.15, "azure": 1.18}
PACKAGES = REPO / ".venv" / "provider-stacks"  # make setup installs them


def _deployer(name: str, tmp_path, constraints_file: str, **settings):
    target = get_target(name)
    raw = {
        "region": REGIONS[name],
        "constraints_file": constraints_file,
        "packages": str(PACKAGES),
        **settings,
    }
    return target.build(target.parse_settings(raw), DeployerOptions(tmp_path, tied=True))


@pytest.mark.parametrize("name", STACKS)
def test_stack_serves_the_variant_and_is_metered_from_outside(name, tiny, tmp_path, constraints_file):
    deployer = _deployer(name, tmp_path, constraints_file)
    deployment = deployer.deploy(tiny.variant)
    pid = int(deployment.resources["pid"])
    try:
        meter = ServerMeter.open(pid)
        assert meter is not None
        meter.monitor.begin_window("requests")
        for _ in range(20):
            outputs, _ = deployer.predict(deployment, tiny.batch)
        window = meter.monitor.end_window("requests", 20 * len(tiny.batch))
        meter.close()
        np.testing.assert_allclose(outputs, tiny.expected, atol=1e-4, rtol=1e-4)
        cpu = window.component("cpu")
        assert cpu is not None and cpu.source.startswith("process_tree_cpu_time_tdp_estimate")
        assert cpu.energy_j > 0 and not cpu.measured
        provider = get_target(name).provider
        assert deployment.region == REGIONS[name] and deployment.pue == pytest.approx(PUES[provider])
    finally:
        deployer.teardown(deployment)
    assert not process_alive(pid)
    assert not session_members(pid)  # the Java frontend, workers and helpers ended too


def test_a_stack_that_dies_while_starting_quotes_its_log(tiny, tmp_path, constraints_file):
    broken = tmp_path / "variants" / "tiny_vit" / "pt_prune50"
    broken.mkdir(parents=True)
    for item in tiny.variant.folder.iterdir():
        corrupt = item.suffix not in (".json",)
        (broken / item.name).write_bytes(b"not a model" if corrupt else item.read_bytes())
    deployer = _deployer("sagemaker_server", tmp_path, constraints_file)
    with pytest.raises(
        DeploymentError, match=r"exited with code \d+ while starting; the end of .*server.log"
    ):
        deployer.deploy(replace(tiny.variant, folder=broken))


def test_stack_settings_need_a_region():
    with pytest.raises(Exception, match="region"):
        StackSettings.parse({}, "deploy.sagemaker_server")
