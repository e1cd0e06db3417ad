"""The local target with real server processes on loopback: deploy, health, predict, teardown;
stale servers reused, replaced or cleaned up through the state file; the bound on servers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from green_deploy.deploy import Deployer, DeploymentError, Variant
from green_deploy.deploy.local import (
    COMMAND_FILE,
    STATE_FILE,
    LocalDeployer,
    LocalSettings,
    ServerState,
    read_state,
    teardown_all,
)
from green_deploy.deploy.processes import process_alive, rss_bytes
from green_deploy.serving.model import InputSpec, load_model_files, predictor

pytestmark = pytest.mark.timeout(300)


def deployer(work_dir: Path, **settings) -> LocalDeployer:
    return LocalDeployer(LocalSettings(gpu_energy=False, stop_timeout_s=10.0, **settings), work_dir)


def copy_variant(tiny, folder: Path, scale: float | None = None) -> Variant:
    """A copy of the tiny variant in ``folder``; with ``scale``, its weights changed."""
    target = folder / "tiny_vit" / tiny.variant.variant_id
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(tiny.variant.folder, target)
    if scale is not None:
        from safetensors.torch import load_file, save_file

        tensors = load_file(target / "model.safetensors")
        tensors = {k: v * scale if v.is_floating_point() else v for k, v in tensors.items()}
        save_file(tensors, str(target / "model.safetensors"))
    return Variant.from_folder(target, tiny.variant.input_spec)


def in_process(variant: Variant, batch: np.ndarray) -> np.ndarray:
    return predictor(variant.runtime, load_model_files(variant.folder, variant.runtime))(batch)


def wait_dead(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_deploy_health_predict_teardown(tiny, tmp_path):
    local = LocalDeployer(
        LocalSettings(gpu_energy=False, cost_per_hour_usd=0.25, pue=1.3), tmp_path / "deploy"
    )
    assert isinstance(local, Deployer)
    deployment = local.deploy(tiny.variant)
    pid = int(deployment.resources["pid"])
    try:
        assert deployment.target == "local" and deployment.status == "in_service"
        assert deployment.endpoint_url.startswith("http://127.0.0.1:")
        assert deployment.endpoint_url.endswith("/v1/models/pt_prune50/predict")
        assert (deployment.cost_per_hour_usd, deployment.pue) == (0.25, 1.3)
        assert process_alive(pid) and rss_bytes(pid) > 50 * 2**20
        health = local.health(deployment)
        assert (health["model"], health["runtime"], health["input"]) == (
            "pt_prune50",
            "pytorch",
            tiny.variant.input_spec.to_dict(),
        )
        state = read_state(tmp_path / "deploy/tiny_vit/pt_prune50/local" / STATE_FILE)
        assert state.pid == pid and state.deployment == deployment and state.startup_s > 0
        outputs, energy = local.predict(deployment, tiny.batch)
        np.testing.assert_array_equal(outputs, tiny.expected)
        assert energy.energy_j > 0 and energy.components and not energy.measured
        with pytest.raises(DeploymentError, match="wrong_shape"):
            local.predict(deployment, tiny.batch[:, :, :14])
    finally:
        local.teardown(deployment)
    assert wait_dead(pid)
    assert not (tmp_path / "deploy/tiny_vit/pt_prune50/local" / STATE_FILE).exists()
    local.teardown(deployment)  # already gone: not an error


def test_a_stale_server_of_the_same_variant_is_reused_not_duplicated(tiny, tmp_path):
    variant = copy_variant(tiny, tmp_path / "variants")
    first = deployer(tmp_path / "deploy").deploy(variant)
    try:
        later_run = deployer(tmp_path / "deploy")  # e.g. the next `kedro run`, same work dir
        again = later_run.deploy(variant)
        assert again.resources["pid"] == first.resources["pid"]
        assert later_run.state(again).reused
        assert [s.pid for s in later_run.running()] == [int(first.resources["pid"])]
        outputs, _ = later_run.predict(again, tiny.batch)
        np.testing.assert_array_equal(outputs, tiny.expected)
    finally:
        teardown_all(tmp_path / "deploy")
    assert wait_dead(int(first.resources["pid"]))


def test_a_stale_server_of_a_changed_variant_is_replaced(tiny, tmp_path):
    variant = copy_variant(tiny, tmp_path / "variants")
    local = deployer(tmp_path / "deploy")
    old = local.deploy(variant)
    try:
        changed = copy_variant(tiny, tmp_path / "variants", scale=0.5)
        new = deployer(tmp_path / "deploy").deploy(changed)
        assert new.resources["pid"] != old.resources["pid"]
        assert wait_dead(int(old.resources["pid"]))
        assert [s.pid for s in local.running()] == [int(new.resources["pid"])]
        outputs, _ = local.predict(new, tiny.batch)
        expected = in_process(changed, tiny.batch)
        np.testing.assert_array_equal(outputs, expected)
        assert np.abs(expected - tiny.expected).max() > 1e-3  # the change shows in the outputs
    finally:
        teardown_all(tmp_path / "deploy")


def test_a_dead_or_recycled_pid_in_the_state_file_is_replaced_and_never_killed(tiny, tmp_path):
    local = deployer(tmp_path / "deploy")
    first = local.deploy(tiny.variant)
    os.kill(int(first.resources["pid"]), signal.SIGKILL)  # an interrupted run's server died
    assert wait_dead(int(first.resources["pid"]))
    second = deployer(tmp_path / "deploy").deploy(tiny.variant)
    try:
        assert second.resources["pid"] != first.resources["pid"]
        np.testing.assert_array_equal(local.predict(second, tiny.batch)[0], tiny.expected)
    finally:
        local.teardown(second)
    # the recorded PID now belongs to another process (here: this test): replaced, not killed
    state_file = tmp_path / "deploy/tiny_vit/pt_prune50/local" / STATE_FILE
    recorded = state_dict(second)
    recorded.update(pid=os.getpid(), process_start="1")
    state_file.write_text(json.dumps(recorded))
    third = local.deploy(tiny.variant)
    try:
        assert int(third.resources["pid"]) != os.getpid()
        assert read_state(state_file).pid == int(third.resources["pid"])
    finally:
        local.teardown(third)


def state_dict(deployment) -> dict:
    return ServerState(
        deployment=deployment,
        pid=int(deployment.resources["pid"]),
        process_start=deployment.resources["process_start"],
        fingerprint=deployment.resources["fingerprint"],
        base_url=deployment.resources["base_url"],
        command=("python",),
        startup_s=1.0,
        deployed_at_s=time.time(),
    ).to_dict()


def test_teardown_all_stops_every_recorded_server(tiny, tmp_path):
    local = deployer(tmp_path / "deploy")
    a = local.deploy(tiny.variant)
    other = copy_variant(tiny, tmp_path / "variants", scale=2.0)
    other = Variant("tiny_vit_2", other.variant_id, other.folder, other.runtime, other.input_spec)
    b = local.deploy(other)
    pids = [int(a.resources["pid"]), int(b.resources["pid"])]
    stopped = teardown_all(tmp_path / "deploy")
    assert sorted(d.endpoint_name for d in stopped) == ["tiny_vit/pt_prune50", "tiny_vit_2/pt_prune50"]
    assert all(wait_dead(pid) for pid in pids)
    assert not list((tmp_path / "deploy").glob(f"*/*/local/{STATE_FILE}"))
    assert teardown_all(tmp_path / "deploy") == []


def test_the_unbatched_local_target_keeps_its_servers_apart_and_undeploy_stops_them(tiny, tmp_path):
    """``local`` and ``local_unbatched`` serve the same variant side by side (different server
    options, recorded under their own names); ``teardown_all`` stops both."""
    batched = deployer(tmp_path / "deploy")
    unbatched = LocalDeployer(
        LocalSettings(gpu_energy=False, stop_timeout_s=10.0, max_batch_items=0),
        tmp_path / "deploy",
        target="local_unbatched",
    )
    a, b = batched.deploy(tiny.variant), unbatched.deploy(tiny.variant)
    assert (a.target, b.target) == ("local", "local_unbatched") and a.resources["pid"] != b.resources["pid"]
    assert "--max-batch-items 0" in " ".join(unbatched.state(b).command)
    assert "--max-batch-items 32" in " ".join(batched.state(a).command)
    outputs, _ = unbatched.predict(b, tiny.batch)
    np.testing.assert_allclose(outputs, tiny.expected, atol=1e-5)
    stopped = teardown_all(tmp_path / "deploy")
    assert sorted(d.target for d in stopped) == ["local", "local_unbatched"]
    assert wait_dead(int(a.resources["pid"])) and wait_dead(int(b.resources["pid"]))


def test_max_servers_stops_the_least_recently_deployed(tiny, tmp_path):
    local = deployer(tmp_path / "deploy", max_servers=1)
    a = local.deploy(tiny.variant)
    other = copy_variant(tiny, tmp_path / "variants")
    other = Variant("tiny_vit_2", other.variant_id, other.folder, other.runtime, other.input_spec)
    b = local.deploy(other)
    try:
        assert wait_dead(int(a.resources["pid"]))
        assert [s.deployment.endpoint_name for s in local.running()] == ["tiny_vit_2/pt_prune50"]
        np.testing.assert_array_equal(local.predict(b, tiny.batch)[0], tiny.expected)
    finally:
        teardown_all(tmp_path / "deploy")


def test_a_server_that_dies_while_starting_is_an_error_with_its_log(tiny, tmp_path):
    variant = copy_variant(tiny, tmp_path / "variants")
    (variant.folder / "model.safetensors").write_bytes(b"not a safetensors file")
    local = deployer(tmp_path / "deploy")
    with pytest.raises(DeploymentError, match=r"exited (with code 1 )?while starting(.|\n)*corrupt"):
        local.deploy(variant)
    assert local.states() == []
    fresh = deployer(tmp_path / "deploy", prefork=False)
    with pytest.raises(DeploymentError, match=r"exited with code 1 while starting(.|\n)*corrupt"):
        fresh.deploy(variant)


def test_dry_run_writes_the_command_and_starts_nothing(tiny, tmp_path):
    local = LocalDeployer(LocalSettings(device="cuda"), tmp_path / "deploy", dry_run=True)
    deployment = local.deploy(replace(tiny.variant, example=tiny.batch[:1]))
    assert deployment.dry_run and deployment.endpoint_url == ""
    command = json.loads((tmp_path / "deploy/tiny_vit/pt_prune50/local" / COMMAND_FILE).read_text())[
        "command"
    ]
    assert command[1:3] == ["-m", "green_deploy.serving"] and "--ready-file" in command
    assert command[command.index("--device") + 1] == "cuda"
    np.testing.assert_array_equal(np.load(command[command.index("--warmup-input") + 1]), tiny.batch[:1])
    assert local.states() == []
    with pytest.raises(DeploymentError, match="dry run"):
        local.predict(deployment, tiny.batch)


def test_an_onnx_runtime_variant_is_served_as_in_process(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    weights = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(weights, "w")],
    )
    folder = tmp_path / "tiny_mlp" / "pt_onnx_fp32"
    folder.mkdir(parents=True)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    variant = Variant("tiny_mlp", "pt_onnx_fp32", folder, "onnxruntime", InputSpec("float32", (1, 2, 2)))
    x = np.random.default_rng(0).random((5, 1, 2, 2)).astype(np.float32)
    local = deployer(tmp_path / "deploy")
    deployment = local.deploy(variant)
    try:
        outputs, energy = local.predict(deployment, x)
        np.testing.assert_array_equal(outputs, in_process(variant, x))
        np.testing.assert_allclose(outputs, x.reshape(5, 4) @ weights, rtol=1e-6)
        assert energy.energy_j >= 0
    finally:
        local.teardown(deployment)


def _parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.parametrize("prefork", [True, False])
def test_a_server_forked_by_the_zygote_serves_as_a_new_interpreter_does(tiny, tmp_path, prefork):
    local = deployer(tmp_path / "deploy", prefork=prefork)
    deployment = local.deploy(tiny.variant)
    pid = int(deployment.resources["pid"])
    try:
        outputs, energy = local.predict(deployment, tiny.batch)
        np.testing.assert_array_equal(outputs, tiny.expected)
        assert energy.energy_j > 0
        # forked by the zygote (its own session, not this process's child) or started anew
        assert (_parent_pid(pid) != os.getpid()) == prefork
        assert os.getsid(pid) == pid
    finally:
        local.teardown(deployment)
    assert wait_dead(pid)


def test_a_keras_variant_is_forked_safely_and_served_as_a_graph(tmp_path):
    import tf_keras

    inputs = tf_keras.Input((2, 2, 1))
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(3)(tf_keras.layers.Flatten()(inputs)))
    folder = tmp_path / "tiny_mlp" / "tensorflow_baseline"
    folder.mkdir(parents=True)
    model.save(str(folder / "model.keras"))
    variant = Variant("tiny_mlp", "tensorflow_baseline", folder, "keras", InputSpec("float32", (1, 2, 2)))
    x = np.random.default_rng(0).random((5, 1, 2, 2)).astype(np.float32)
    local = deployer(tmp_path / "deploy")
    deployments = [local.deploy(variant), local.deploy(replace(variant, variant_id="tf_copy"))]
    try:
        for deployment in deployments:
            outputs, _ = local.predict(deployment, x)
            np.testing.assert_allclose(outputs, in_process(variant, x), rtol=1e-6, atol=1e-6)
            assert deployment.resources["serving_path"] == "tf.function graph"
            assert _parent_pid(int(deployment.resources["pid"])) != os.getpid()
    finally:
        for deployment in deployments:
            local.teardown(deployment)


_STUDY = """
import sys, time
from pathlib import Path
from green_deploy.deploy import Variant
from green_deploy.deploy.local import LocalDeployer, LocalSettings
from green_deploy.serving.model import InputSpec
folder, work, tied, prefork = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "tied", sys.argv[4] == "prefork"
variant = Variant.from_folder(folder, InputSpec("float32", (1, 28, 28)))
deployment = LocalDeployer(LocalSettings(gpu_energy=False, prefork=prefork), work, tied=tied).deploy(variant)
print(deployment.resources["pid"], flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("prefork", [True, False])
def test_a_killed_studys_servers_end_with_it_and_deployed_ones_stay(tiny, tmp_path, prefork):
    import subprocess
    import sys

    servers = {}
    for mode in ("tied", "untied"):
        study = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _STUDY,
                str(tiny.variant.folder),
                str(tmp_path / mode),
                mode,
                "prefork" if prefork else "new",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        servers[mode] = int(study.stdout.readline())
        assert process_alive(servers[mode])
        study.kill()  # kill -9: nothing of the study runs after this
        study.wait()
    try:
        assert wait_dead(servers["tied"], 15.0), "a study's server outlived the study"
        time.sleep(1.0)
        assert process_alive(servers["untied"]), "a deployed server ended with the process that deployed it"
    finally:
        teardown_all(tmp_path / "untied")
