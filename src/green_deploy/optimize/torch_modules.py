"""PyTorch wrappers the techniques put around models; imported only inside techniques."""

from __future__ import annotations

import torch
from torch import nn


class CastInputs(nn.Module):
    """Runs ``module`` in ``dtype``: float inputs are cast in, outputs come back as float32, so a
    half-precision variant takes the same requests as its baseline."""

    def __init__(self, module: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.module = module
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_floating_point():
            x = x.to(self.dtype)
        return self.module(x).float()
