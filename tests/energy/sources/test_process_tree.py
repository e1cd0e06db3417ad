"""The process-tree estimates against real processes: a server with a busy child and grandchild,
threads that come and go, and a server that ends."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from green_deploy.energy.sources.base import SourceError, SourceUnavailableError
from green_deploy.energy.sources.estimate import CpuPowerModel
from green_deploy.energy.sources.process_tree import ProcessTree, process_tree_sources

# a root that starts a child, which starts a busy grandchild; the root itself sleeps
SERVER = """
import subprocess, sys, time
code = "import subprocess, sys, time\\nsubprocess.Popen([sys.executable, '-c', 'while True: pass'])\\ntime.sleep(60)"
subprocess.Popen([sys.executable, "-c", code])
time.sleep(60)
"""
# a root whose threads each spin 0.2 s, one after another, then end
THREADS = """
import threading, time
def spin():
    end = time.perf_counter() + 0.2
    while time.perf_counter() < end:
        pass
time.sleep(0.3)
for _ in range(3):
    thread = threading.Thread(target=spin)
    thread.start()
    thread.join()
time.sleep(60)
"""


@pytest.fixture
def server():
    started = []

    def start(code: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
        started.append(process)
        return process

    yield start
    import os
    import signal

    for process in started:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def _wait_for(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_tree_counts_every_descendant_busy_or_not(server):
    root = server(SERVER)
    tree = ProcessTree(root.pid)
    _wait_for(lambda: len(tree.pids()) == 3)
    before, started = tree.cpu_time_s(), time.perf_counter()
    time.sleep(0.5)
    ran_s, wall_s = tree.cpu_time_s() - before, time.perf_counter() - started
    # the grandchild spins on one core; the root and child sleep
    assert 0.6 * wall_s < ran_s < 1.3 * wall_s
    assert tree.pss_bytes() > 1_000_000


def test_threads_that_end_are_counted_while_they_ran_and_the_count_never_falls(server):
    root = server(THREADS)
    tree = ProcessTree(root.pid)
    readings = []
    for _ in range(20):
        readings.append(tree.cpu_time_s())
        time.sleep(0.05)
    assert readings == sorted(readings)  # a thread ending takes nothing back
    assert readings[-1] > 0.3  # most of the three threads' 0.6 s, seen while they ran


def test_the_sources_are_labelled_estimates_and_a_server_that_ended_is_an_error(server):
    root = server(SERVER)
    cpu, ram = process_tree_sources(root.pid, CpuPowerModel("test", 100.0, "test", 10, "test"))
    assert cpu.name == "process_tree_cpu_time_tdp_estimate(10.00 W/thread)" and not cpu.measured
    assert ram.name.startswith("process_tree_ram_pss_estimate") and ram.component == "dram"
    first = cpu.read_j()
    time.sleep(0.3)
    assert cpu.read_j() - first > 0.5  # ~0.3 s of one spinning thread x 10 W
    root.kill()
    root.wait()
    with pytest.raises(SourceError, match="has ended"):
        cpu.read_j()


def test_a_process_that_does_not_exist_is_unavailable():
    with pytest.raises(SourceUnavailableError, match="does not exist"):
        ProcessTree(2**22 + 12345)
