"""Each provider's serving stack started on loopback with a real variant: it answers the deploy
check (outputs equal to in-process within tolerance), its process tree is metered, and it stops
with nothing left behind."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

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


def test_a_study_measures_each_stack_alike_and_costs_it_in_its_region(tiny, tmp_path, constraints_file):
    """The local server and TorchServe measured by the study: both metered from outside per
    repetition (server_energy_per_item_j); TorchServe reports nothing itself, so its cells' energy
    is the repetition's share, said by the cpu window; its carbon is its region's country's grid."""
    from green_deploy.energy.carbon import intensity_for_cloud
    from green_deploy.evaluate.harness import EvaluationSet
    from green_deploy.evaluate.runner import StudyRunner, study_deployers
    from green_deploy.evaluate.store import StudyStore
    from green_deploy.evaluate.study import StudySettings, expand_cells

    deploy = {
        "work_dir": str(tmp_path / "deploy"),
        "sagemaker_torchserve": {
            "region": "eu-west-1",
            "constraints_file": constraints_file,
            "packages": str(PACKAGES),
        },
    }
    study = StudySettings.parse(
        {
            "targets": ["local", "sagemaker_torchserve"],
            "batch_sizes": [2],
            "protocol": {"idle_s": 0.0, "warmup_s": 0.05, "repetition_s": 0.05, "max_cell_s": 0.5},
        }
    )
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
    store = StudyStore(tmp_path / "study")
    runner = StudyRunner(study, [row], study_deployers(study, deploy), lambda _: data, store)
    outcome = runner.run(expand_cells([row], study))
    assert (outcome.measured, outcome.failures) == (2, [])
    cells = {c["row"]["target"]: c["row"] for c in store.cells()}
    local, stack = cells["local"], cells["sagemaker_torchserve"]
    for cell in (local, stack):
        assert cell["server_energy_per_item_j"] > 0
        assert cell["server_energy_sources"].startswith("process_tree_cpu_time_tdp_estimate")
    assert (local["cpu_window"], stack["cpu_window"]) == ("request", "repetition")
    assert stack["energy_per_item_j"] == pytest.approx(stack["server_energy_per_item_j"])
    assert stack["accuracy"] == local["accuracy"]  # the same files answer alike
    assert stack["serving_path"] == "sagemaker_pytorch_torchserve"
    ireland = intensity_for_cloud("aws", "eu-west-1")
    assert (stack["region"], stack["intensity_g_per_kwh"]) == ("eu-west-1", ireland.intensity_g_per_kwh)
    assert stack["pue"] == pytest.approx(1.15) and local["pue"] == pytest.approx(1.0)


def test_the_deploy_pipeline_checks_a_stack_then_stops_it(tiny, tmp_path, constraints_file):
    from green_deploy.deploy.runner import CheckSettings, deploy_model

    deployer = _deployer("azureml_server", tmp_path, constraints_file)
    row = {
        "model_id": tiny.variant.model_id,
        "variant_id": tiny.variant.variant_id,
        "runtime": "pytorch",
        "status": "ok",
        "devices": "cpu",
        "artifact_dir": str(tiny.variant.folder),
    }
    (result,) = deploy_model(
        tiny.variant.model_id, [row], tiny.batch, {"azureml_server": deployer}, CheckSettings(4, 1e-4, 1e-4)
    )
    assert result.status == "in_service", result.reason
    assert result.check_max_abs_diff <= result.check_tolerance
    assert result.check_energy_source.startswith("cpu=")  # score.py answers with the core's energy
    assert "checked, then stopped" in result.reason
    assert not _processes_naming(tmp_path)  # nothing of the stack is left running


def _processes_naming(folder) -> list[int]:
    left = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(folder) in command:
                left.append(int(entry.name))
    return left


def test_a_stack_whose_packages_are_missing_says_how_to_install_them(tiny, tmp_path, constraints_file):
    deployer = _deployer("sagemaker_torchserve", tmp_path, constraints_file, packages=str(tmp_path / "none"))
    with pytest.raises(DeploymentError, match=r"not installed at .*none.*make setup"):
        deployer.deploy(tiny.variant)


def test_torchserve_refuses_what_sagemaker_s_pytorch_containers_cannot_load(tiny, tmp_path, constraints_file):
    deployer = _deployer("sagemaker_torchserve", tmp_path, constraints_file)
    with pytest.raises(DeploymentError, match="cannot serve tflite variants: .*TensorFlow Serving"):
        deployer.deploy(replace(tiny.variant, runtime="tflite"))
