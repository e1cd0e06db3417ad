"""The machine's reference: one fixed piece of CPU work, measured by the study's own CPU meters
at the start of every run, between groups of cells and at the end.

Why: on a shared VM the energy a meter gives for the same work moves between runs (two runs of
the quick study an hour apart on this project's CI machine differed by a median 1.35x in
estimated J/inference), and a cell's repetitions, taken minutes apart, cannot see that. The
reference is the same work in every study, so the ratio of its energy between two studies is
the machine's drift; ``compare`` divides each cell's ratio by it (with its uncertainty).

The work is the serving core's kind of work, in one thread: float32 matrix products of a
small network's sizes, then a JSON round trip of its outputs. Its energy per unit comes from
the same sources a served variant's CPU and DRAM energy come from (RAPL where readable, else
the CPU-time and memory estimates), in this process. A changed work is a new ``VERSION``:
references of different versions are never compared.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from green_deploy.energy import EnergyMonitor

VERSION = 1
MATRIX_ROWS, MATRIX_WIDTH, PRODUCTS = 32, 256, 8


@dataclass(frozen=True)
class ReferenceRun:
    """One measurement of the reference: J per unit of work in each repetition."""

    version: int
    at_unix_s: float
    energy_per_unit_j: list[float]
    duration_s: float
    sources: str
    measured: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ReferenceWork:
    """The fixed work (deterministic inputs; one ``unit`` call is one unit)."""

    def __init__(self) -> None:
        rng = np.random.default_rng(VERSION)
        self.x = rng.standard_normal((MATRIX_ROWS, MATRIX_WIDTH), dtype=np.float32)
        self.weights = [
            rng.standard_normal((MATRIX_WIDTH, MATRIX_WIDTH), dtype=np.float32) / 16 for _ in range(PRODUCTS)
        ]

    def unit(self) -> None:
        h = self.x
        for weight in self.weights:
            h = np.tanh(h @ weight)
        json.loads(json.dumps(h.tolist()))


def measure_reference(
    monitor: EnergyMonitor, repetitions: int = 3, repetition_s: float = 0.5
) -> ReferenceRun:
    """``repetitions`` windows of at least ``repetition_s`` of the reference work."""
    work = ReferenceWork()
    work.unit()  # first-call costs (allocation, BLAS start-up) outside the windows
    energies, duration_s, sources, measured = [], 0.0, "", True
    for index in range(repetitions):
        m = monitor.measure(f"reference/{index}", work.unit, min_duration_s=repetition_s)
        energies.append(m.total_energy_j / m.n_items)
        duration_s += m.duration_s
        sources = ", ".join(f"{c.component}: {c.source}" for c in m.components)
        measured = measured and m.measured
    return ReferenceRun(VERSION, time.time(), energies, duration_s, sources, measured)


FLOOR_SIZE, FLOOR_PRODUCTS = 8192, 16  # one unit: 16 bf16 products of 8192x8192 matrices, ~17.6 TFLOP


@dataclass(frozen=True)
class FloorRun:
    """One measurement of the GPU's bf16 matmul floor: energy per FLOP of large dense bf16 products,
    the least a model's FLOP can cost on this GPU, so a cell's pJ/FLOP reads as a multiple of it.
    Measured in the study's own run (the same GPU, its temperature and clocks as they are), by the
    counter the cells are read with."""

    at_unix_s: float
    pj_per_flop: list[float]
    duration_s: float
    source: str
    measured: bool
    size: int = FLOOR_SIZE
    dtype: str = "bfloat16"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_gpu_floor(
    monitor: EnergyMonitor,
    repetitions: int = 3,
    repetition_s: float = 1.0,
    device: str = "cuda",
    size: int = FLOOR_SIZE,
) -> FloorRun:
    """``repetitions`` windows of at least ``repetition_s`` of bf16 products on ``device``, read by
    ``monitor``'s GPU source (queued work is waited for inside each unit). Its matrices are freed
    and PyTorch's cache emptied after, so no cell's GPU memory counts them."""
    import torch

    run = _floor_run(torch, monitor, repetitions, repetition_s, device, size)
    torch.cuda.empty_cache()
    return run


def _floor_run(
    torch: Any, monitor: EnergyMonitor, repetitions: int, repetition_s: float, device: str, size: int
) -> FloorRun:
    generator = torch.Generator(device=device).manual_seed(VERSION)
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16, generator=generator)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16, generator=generator)

    def unit() -> None:
        for _ in range(FLOOR_PRODUCTS):
            torch.mm(a, b)
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)

    unit()  # kernel selection and clocks ramping up, outside the windows
    flop_per_unit = 2.0 * size**3 * FLOOR_PRODUCTS
    values, duration_s, source, measured = [], 0.0, "", True
    for index in range(repetitions):
        m = monitor.measure(f"gpu_floor/{index}", unit, min_duration_s=repetition_s)
        gpu = m.component("gpu")
        if gpu is None:
            raise ValueError(f"the floor's meter read no GPU energy (sources: {monitor.sources})")
        values.append(1e12 * gpu.energy_j / (m.n_items * flop_per_unit))
        duration_s += m.duration_s
        source, measured = gpu.source, measured and gpu.measured
    return FloorRun(time.time(), values, duration_s, source, measured, size)
