"""The harness's GPU counter read around repetitions, against a fake NVML whose counter runs in
real time (the same code reads the real counter on the H100 machine: bench/results/evaluate_h100.md)."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from green_deploy.deploy.inprocess import InProcessDeployer
from green_deploy.evaluate.harness import Client, RepetitionMeter, batches, measure_cell, summarize
from green_deploy.evaluate.study import ProtocolSettings
from tests.energy.fake_pynvml import FakeNVML


class RunningNVML(FakeNVML):
    """A counter that integrates ``power_w`` over wall time, as the real one does."""

    def __init__(self, power_w: float) -> None:
        super().__init__(power_w=power_w)
        self._last_s = time.perf_counter()
        self._energy_j = 0.0

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        now = time.perf_counter()
        self._energy_j += self.power_w[handle] * (now - self._last_s)
        self._last_s = now
        return int(self._energy_j * 1000)


def test_no_energy_counter_no_meter():
    assert RepetitionMeter.open(0.0, nvml=FakeNVML(counter_supported=False)) is None


def test_the_gpu_counter_is_read_around_each_repetition_and_added_to_the_server_figures(tiny, monkeypatch):
    monkeypatch.setattr(RepetitionMeter, "MIN_IDLE_S", 0.1)
    nvml = RunningNVML(power_w=50.0)
    meter = RepetitionMeter.open(0.0, nvml=nvml)
    assert meter is not None
    nvml.power_w[0] = 200.0  # the GPU works from here on: 150 W above idle
    deployer = InProcessDeployer(gpu_energy=False)
    deployment = deployer.deploy(tiny.variant)
    try:
        client = Client(deployer, deployment, 256)
        protocol = ProtocolSettings(repetition_s=0.1, min_repetitions=3, max_repetitions=3)
        measurement = measure_cell(client, batches(np.asarray(tiny.batch), 2, 0), protocol, meter=meter)
    finally:
        deployer.teardown(deployment)
        meter.close()
    row = summarize(measurement)
    assert (row["gpu_source"], row["gpu_measured"], row["gpu_window"]) == (
        "nvml_counter_edge_corrected",
        True,
        "repetition",
    )
    assert (row["cpu_window"], row["cpu_measured"]) == ("request", False)
    assert row["energy_measured"] is False  # the CPU is still an estimate
    expected_gpu = 200.0 * row["measured_duration_s"] / row["n_items"]
    assert row["gpu_energy_per_item_j"] == pytest.approx(expected_gpu, rel=0.1)
    assert row["energy_per_item_j"] == pytest.approx(
        row["cpu_energy_per_item_j"] + row["dram_energy_per_item_j"] + row["gpu_energy_per_item_j"]
    )
    for repetition in measurement.repetitions:
        assert repetition.component_energy_j["gpu"] == pytest.approx(200.0 * repetition.duration_s, rel=0.1)
    assert row["active_energy_per_item_j"] is None  # the in-process worker measured no idle here
    assert row["gpu_memory_peak_bytes"] == 0  # nothing was loaded onto the fake GPU


def test_the_cell_keeps_the_gpu_memory_its_model_holds_above_the_study_start(tiny, monkeypatch):
    monkeypatch.setattr(RepetitionMeter, "MIN_IDLE_S", 0.1)
    nvml = RunningNVML(power_w=50.0)
    meter = RepetitionMeter.open(0.0, nvml=nvml)  # 512 MiB in use before any model
    assert meter is not None
    sizes = iter([3 << 30, 5 << 30, 4 << 30])  # the allocator grows, then gives some back

    class Growing(InProcessDeployer):
        def predict(self, deployment, inputs):
            nvml.memory_used_bytes[0] = (512 << 20) + next(sizes, 4 << 30)
            return super().predict(deployment, inputs)

    deployer = Growing(gpu_energy=False)
    deployment = deployer.deploy(tiny.variant)
    try:
        protocol = ProtocolSettings(repetition_s=0.0, min_repetitions=3, max_repetitions=3)
        measurement = measure_cell(
            Client(deployer, deployment, 256), batches(np.asarray(tiny.batch), 2, 0), protocol, meter=meter
        )
    finally:
        deployer.teardown(deployment)
        meter.close()
    assert [r.gpu_memory_bytes for r in measurement.repetitions] == [3 << 30, 5 << 30, 4 << 30]
    assert summarize(measurement)["gpu_memory_peak_bytes"] == 5 << 30


def test_without_a_gpu_meter_no_gpu_memory_is_claimed(tiny):
    deployer = InProcessDeployer(gpu_energy=False)
    deployment = deployer.deploy(tiny.variant)
    try:
        protocol = ProtocolSettings(repetition_s=0.0, min_repetitions=2, max_repetitions=2)
        measurement = measure_cell(
            Client(deployer, deployment, 256), batches(np.asarray(tiny.batch), 2, 0), protocol
        )
    finally:
        deployer.teardown(deployment)
    assert summarize(measurement)["gpu_memory_peak_bytes"] is None


class SilentDeployer(InProcessDeployer):
    """A server that reports no energy with its answers (as TorchServe does)."""

    def predict(self, deployment, inputs):
        from green_deploy.deploy.base import ServerEnergy

        outputs, _ = super().predict(deployment, inputs)
        return outputs, ServerEnergy(energy_j=0.0, energy_per_item_j=0.0, measured=False, components=())


@pytest.mark.parametrize("silent", [True, False])
def test_a_server_is_metered_from_outside_and_that_is_its_energy_when_it_reports_none(tiny, silent):
    import subprocess
    import sys

    from green_deploy.energy import EnergyMonitor
    from green_deploy.energy.sources.estimate import CpuPowerModel
    from green_deploy.energy.sources.process_tree import process_tree_sources
    from green_deploy.evaluate.harness import ServerMeter

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # stands for the server's process
    model = CpuPowerModel("test", 100.0, "test", 10, "test")
    server_meter = ServerMeter(EnergyMonitor(process_tree_sources(busy.pid, model)))
    deployer = (SilentDeployer if silent else InProcessDeployer)(gpu_energy=False)
    deployment = deployer.deploy(tiny.variant)
    try:
        client = Client(deployer, deployment, 256)
        protocol = ProtocolSettings(repetition_s=0.1, min_repetitions=3, max_repetitions=3)
        inputs = batches(np.asarray(tiny.batch), 2, 0)
        measurement = measure_cell(client, inputs, protocol, server_meter=server_meter)
    finally:
        deployer.teardown(deployment)
        server_meter.close()
        busy.kill()
        busy.wait()
    row = summarize(measurement)
    # the busy process spins one thread: at most 10 W over the repetitions (less while it shares
    # the cores with the model)
    at_most = 10.0 * row["measured_duration_s"] / row["n_items"]
    assert 0.2 * at_most < row["server_energy_per_item_j"] < 1.1 * at_most
    assert row["server_energy_sources"].startswith("process_tree_cpu_time_tdp_estimate")
    assert row["server_energy_measured"] is False  # an estimate, and the row says so
    if silent:
        assert row["cpu_source"].startswith("process_tree_cpu_time_tdp_estimate")
        assert (row["cpu_window"], row["dram_window"]) == ("repetition", "repetition")
        assert row["energy_per_item_j"] == pytest.approx(row["server_energy_per_item_j"])
        assert row["active_energy_per_item_j"] is None
    else:  # the worker's own figures stay the cell's energy; the outside figure is kept beside
        assert row["cpu_window"] == "request" and row["cpu_source"].startswith("cpu_time_tdp_estimate")
        assert row["energy_per_item_j"] != pytest.approx(row["server_energy_per_item_j"])


def test_clients_under_load_send_at_once_and_every_answer_is_counted(tiny):
    deployer = InProcessDeployer(gpu_energy=False)
    deployment = deployer.deploy(tiny.variant)
    try:
        client = Client(deployer, deployment, 256)
        protocol = ProtocolSettings(repetition_s=0.2, min_repetitions=2, max_repetitions=2)
        measurement = measure_cell(client, batches(np.asarray(tiny.batch), 1, 0), protocol, concurrency=8)
    finally:
        deployer.teardown(deployment)
    for repetition in measurement.repetitions:
        assert repetition.n_requests == len(repetition.latencies_s) == repetition.n_items
        assert repetition.n_requests >= 8  # every client sent at least once
        assert repetition.energy_j > 0
    row = summarize(measurement)
    assert row["throughput_items_per_s"] > 0 and row["n_requests"] == sum(
        r.n_requests for r in measurement.repetitions
    )


def test_only_a_server_process_of_its_own_is_metered_from_outside(tiny):
    """The in-process worker runs in the study's process, whose tree holds every server it
    started: it keeps its own windows' figures and gets no outside meter."""
    import subprocess
    import sys

    from green_deploy.evaluate.harness import ServerMeter

    deployer = InProcessDeployer(gpu_energy=False)
    deployment = deployer.deploy(tiny.variant)
    try:
        assert ServerMeter.of(deployment) is None
    finally:
        deployer.teardown(deployment)
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        meter = ServerMeter.of(replace(deployment, resources={"pid": str(server.pid)}))
        assert meter is not None
        meter.close()
    finally:
        server.kill()
        server.wait()
