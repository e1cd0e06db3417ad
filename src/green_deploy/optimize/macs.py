"""Multiply-accumulates of a PyTorch model on one example, counted by ``torch.utils.flop_counter``."""

from __future__ import annotations

from typing import Any


def count_macs(model: Any, example_inputs: Any) -> int:
    """MACs of one forward pass (FlopCounterMode counts a multiply-add as two FLOPs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(example_inputs)
    return counter.get_total_flops() // 2
