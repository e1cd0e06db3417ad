"""Multiply-accumulates of a PyTorch model, counted by ``torch.utils.flop_counter``.

FlopCounterMode counts CPU attention (SDPA) and LSTM kernels as zero in torch 2.13; formulas on
their shapes fill that gap, so transformer and recurrent models are not under-counted.
"""

from __future__ import annotations

import math
from typing import Any


def count_macs(model: Any, example_inputs: Any) -> int:
    """Multiply-accumulates of one forward pass on ``example_inputs`` (the whole batch):
    ``FlopCounterMode`` FLOPs / 2, run in eval mode without gradients (training flags restored)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    inputs = example_inputs if isinstance(example_inputs, tuple | list) else (example_inputs,)
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_cpu_flop_formulas()) as counter:
            model(*inputs)
    finally:
        for module, training in modes.items():
            module.training = training
    return int(counter.get_total_flops()) // 2


def _cpu_flop_formulas() -> dict[Any, Any]:
    """FLOP formulas (on shapes) for CPU kernels FlopCounterMode counts as zero in torch 2.13."""
    import torch
    from torch.utils.flop_counter import sdpa_flop_count

    aten = torch.ops.aten

    def sdpa_cpu(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    def lstm_layer(input_shape, weight_ih_shape, weight_hh_shape, *args, out_shape=None, **kwargs) -> int:
        # Every step multiplies the input by (4H, I) and the previous hidden state by (4H, H).
        steps = math.prod(input_shape[:-1])
        return 2 * steps * (math.prod(weight_ih_shape) + math.prod(weight_hh_shape))

    return {aten._scaled_dot_product_flash_attention_for_cpu: sdpa_cpu, aten.mkldnn_rnn_layer: lstm_layer}
