"""PyTorch wrappers the techniques put around models; imported only inside techniques."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)


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


class CudaGraphed(nn.Module):
    """Runs ``module`` as one CUDA graph per input shape (recorded on the shape's first call,
    after three warm-up calls on a side stream), replaying it with the input copied into the
    graph's own buffer; outputs are copied out, so a caller may keep them. Graphs share one
    memory pool. Off CUDA, or past ``max_shapes`` graphs, calls run eagerly."""

    WARMUP_CALLS = 3

    def __init__(self, module: nn.Module, max_shapes: int = 64):
        super().__init__()
        self.module = module
        self.max_shapes = max_shapes
        self._graphs: dict[
            tuple[tuple[int, ...], torch.dtype], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]
        ] = {}
        self._pool: Any = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_cuda:
            return self.module(x)
        key = (tuple(x.shape), x.dtype)
        if key not in self._graphs:
            if len(self._graphs) >= self.max_shapes:
                return self.module(x)
            self._graphs[key] = self._record(x)
        graph, static_input, static_output = self._graphs[key]
        static_input.copy_(x)
        graph.replay()
        return static_output.clone()

    def _record(self, x: torch.Tensor) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        static_input = x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP_CALLS):
                self.module(static_input)
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            static_output = self.module(static_input)
        return graph, static_input, static_output


class SemiStructuredLinear(nn.Linear):
    """A Linear layer whose weight holds the 2:4 pattern: placed on a CUDA GPU of compute
    capability 8.0+ in float16 or bfloat16, its weight becomes a semi-structured sparse tensor of
    its ``sparse_backend`` (CUTLASS or cuSPARSELt sparse tensor-core kernels; ``auto``: CUTLASS on
    8.x, the only GPUs PyTorch builds them for, cuSPARSELt elsewhere); otherwise it stays a dense
    matmul over the zeros, and ``sparse_kernel`` says which one runs."""

    sparse_kernel = False
    sparse_backend: str  # auto, cutlass or cusparselt, set per layer by ``mark_semi_structured``

    def on_device(self, device: str) -> None:
        if not device.startswith("cuda") or self.sparse_kernel:
            return
        major, _ = torch.cuda.get_device_capability()
        if major < 8 or self.weight.dtype not in (torch.float16, torch.bfloat16):
            logger.warning(
                "2:4 layer %s stays dense on %s: the sparse kernels need compute capability 8.0+ and "
                "float16/bfloat16 weights (chain half_precision)",
                tuple(self.weight.shape),
                self.weight.dtype,
            )
            return
        kernel = self.sparse_backend
        if kernel == "auto":
            kernel = "cutlass" if major == 8 else "cusparselt"
        if kernel == "cutlass" and major != 8:
            logger.warning(
                "2:4 layer %s stays dense on %s: PyTorch builds CUTLASS's sparse kernels for compute "
                "capability 8.x only (kernel: auto or cusparselt runs cuSPARSELt's)",
                tuple(self.weight.shape),
                torch.cuda.get_device_name(),
            )
            return
        from torch.sparse import SparseSemiStructuredTensorCUSPARSELT, SparseSemiStructuredTensorCUTLASS

        backend = (
            SparseSemiStructuredTensorCUTLASS if kernel == "cutlass" else SparseSemiStructuredTensorCUSPARSELT
        )
        try:
            sparse = backend.from_dense(self.weight.detach())
        except (RuntimeError, ValueError, TypeError) as error:
            logger.warning(
                "2:4 layer %s stays dense: the sparse kernels refuse it (%s)", tuple(self.weight.shape), error
            )
            return
        self.weight = nn.Parameter(sparse, requires_grad=False)
        self.sparse_kernel = True
