from __future__ import annotations

import torch

from green_deploy.energy.monitor import EnergyMonitor
from green_deploy.sync import no_synchronize, tensorflow_synchronize, torch_synchronize


def test_hooks_run_at_window_edges_on_this_machine():
    for hook in (torch_synchronize(), tensorflow_synchronize(), no_synchronize()):
        monitor = EnergyMonitor([], synchronize=hook)
        monitor.begin_window("w")
        torch.ones(8) @ torch.ones(8)
        assert monitor.end_window("w").duration_s > 0


def test_torch_hook_waits_for_cuda_only_when_there_is_cuda():
    hook = torch_synchronize()
    assert (hook.__name__ == "_nothing") == (not torch.cuda.is_available())
