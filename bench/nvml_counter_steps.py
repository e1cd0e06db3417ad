"""Where an NVIDIA GPU's energy counter updates, and what correcting a window's edges would gain.

Issue 20 asks for every single window within +-2% on the H200, whose energy counter
(``nvmlDeviceGetTotalEnergyConsumption``) moves in steps of ~100 ms: a window's two reads can each
miss up to one step. This script records what a correction needs, densely, under three loads (a
steady bf16 matmul loop, idle, and 50 ms on / 50 ms off), then replays windows of 0.1, 1 and 3 s
cut from the record and compares three estimates against the reference (the cumulative energy at
the counter's update instants, interpolated):

- ``raw``: counter at the end minus counter at the start (what every counter-based meter reports);
- ``edge``: each read plus the part of the current step it cut, power x (read time - last update),
  with the last update taken from the record (what a meter that tracks the update phase can do);
- ``phase``: the same, with the update instants predicted from a phase and period fitted on the
  first 2 s only (what a meter can do after one alignment wait per cell).

Run on the GPU machine (it needs nvidia-ml-py and a CUDA torch):

    python bench/nvml_counter_steps.py --out bench/results

It writes ``nvml_counter_steps_<gpu>.md`` (the findings) and ``nvml_counter_steps_<gpu>.json`` (the
reads). It changes no GPU setting.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

WINDOWS_S = (0.1, 1.0, 3.0)


@dataclass(frozen=True)
class Read:
    """One counter read: the instants around it, its value, and the power read just before it."""

    t_before_s: float
    t_after_s: float
    energy_mj: int
    power_mw: int


class Load:
    """A matmul loop in a thread: steady, or on for ``on_s`` and off for ``off_s`` in turn."""

    def __init__(self, torch, on_s: float | None = None, off_s: float = 0.0, size: int = 8192):
        self.torch = torch
        self.a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
        self.b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
        self.on_s, self.off_s = on_s, off_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            start = time.perf_counter()
            while not self.stop.is_set() and (self.on_s is None or time.perf_counter() - start < self.on_s):
                for _ in range(8):
                    self.a @ self.b
                self.torch.cuda.synchronize()
            if self.off_s:
                time.sleep(self.off_s)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.torch.cuda.synchronize()


def record(nvml, handle, duration_s: float) -> list[Read]:
    reads = []
    end = time.perf_counter() + duration_s
    while time.perf_counter() < end:
        power = nvml.nvmlDeviceGetPowerUsage(handle)
        before = time.perf_counter()
        energy = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        reads.append(Read(before, time.perf_counter(), int(energy), int(power)))
    return reads


def updates(reads: list[Read]) -> tuple[np.ndarray, np.ndarray]:
    """The update instants (midpoint between the last read before a change and the first after it)
    and the counter's value from each on."""
    times, values = [], []
    for previous, current in zip(reads, reads[1:], strict=False):
        if current.energy_mj != previous.energy_mj:
            times.append(0.5 * (previous.t_after_s + current.t_before_s))
            values.append(current.energy_mj)
    return np.asarray(times), np.asarray(values, dtype=np.float64)


def fitted_phase(times: np.ndarray, fit_s: float) -> tuple[float, float]:
    """Phase and period of the update instants, fitted on the first ``fit_s`` seconds."""
    first = times[times <= times[0] + fit_s]
    k = np.round((first - first[0]) / 0.1)
    period, phase = np.polyfit(k, first, 1)
    return float(phase), float(period)


def replay(reads: list[Read], window_s: float, phase: tuple[float, float]) -> dict[str, list[float]]:
    """Relative errors of raw, edge-corrected and phase-corrected windows cut from ``reads`` (each
    read as a window's start, the first read ``window_s`` later as its end)."""
    times, values = updates(reads)
    errors: dict[str, list[float]] = {"raw": [], "edge": [], "phase": []}
    if len(times) < 3:
        return errors
    at = np.asarray([0.5 * (r.t_before_s + r.t_after_s) for r in reads])
    energy = np.asarray([r.energy_mj for r in reads], dtype=np.float64)
    power = np.asarray([r.power_mw for r in reads], dtype=np.float64) / 1000.0  # W = mJ/ms
    base, period = phase

    def cut(t: np.ndarray, last_update: np.ndarray) -> np.ndarray:
        return (t - last_update) * 1000.0  # ms of the current step the read cut off

    recorded = times[np.clip(np.searchsorted(times, at) - 1, 0, None)]
    predicted = base + np.floor((at - base) / period) * period
    for i in range(len(reads)):
        j = int(np.searchsorted(at, at[i] + window_s))
        if at[i] < times[0] or j >= len(reads) or at[j] > times[-1]:
            continue
        reference = np.interp(at[j], times, values) - np.interp(at[i], times, values)
        if reference <= 0:
            continue
        raw = energy[j] - energy[i]
        for name, last in (("edge", recorded), ("phase", predicted)):
            partial = power[j] * cut(at[j], last[j]) - power[i] * cut(at[i], last[i])
            errors[name].append((raw + partial) / reference - 1)
        errors["raw"].append(raw / reference - 1)
    return errors


def summary(errors: list[float]) -> str:
    values = np.abs(np.asarray(errors)) * 100
    if not len(values):
        return "-"
    return f"{np.mean(errors) * 100:+.2f}% mean, {np.percentile(values, 95):.2f}% p95, {values.max():.2f}% worst (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=12.0, help="recorded per load")
    args = parser.parse_args()
    import pynvml as nvml
    import torch

    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    gpu = nvml.nvmlDeviceGetName(handle)
    gpu = gpu.decode() if isinstance(gpu, bytes) else gpu
    loads = {
        "steady matmul": dict(on_s=None),
        "50 ms on / 50 ms off": dict(on_s=0.05, off_s=0.05),
        "idle (context open)": None,
    }
    recorded_reads: dict[str, list[Read]] = {}
    with Load(torch):  # warm up: clocks and power ramp for seconds after idle
        time.sleep(5.0)
    for name, settings in loads.items():
        if settings is None:
            time.sleep(2.0)
            recorded_reads[name] = record(nvml, handle, args.seconds)
            continue
        with Load(torch, **settings):
            time.sleep(1.0)
            recorded_reads[name] = record(nvml, handle, args.seconds)
    lines = [
        f"# The energy counter's steps on {gpu}, and edge corrections replayed",
        "",
        f"Written by `bench/nvml_counter_steps.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({platform.node()}); "
        f"{args.seconds:.0f} s of back-to-back reads per load; no GPU setting changed.",
        "",
        "| load | reads | read time (ms, median / p95) | updates | update interval (ms, median / min / max) | step (J, median) | mean power (W) |",
        "|---|---|---|---|---|---|---|",
    ]
    replays = {}
    for name, reads in recorded_reads.items():
        times, values = updates(reads)
        read_ms = [1000 * (r.t_after_s - r.t_before_s) for r in reads]
        intervals = np.diff(times) * 1000
        steps = np.diff(values) / 1000
        power = statistics.fmean(r.power_mw for r in reads) / 1000
        lines.append(
            f"| {name} | {len(reads)} | {np.median(read_ms):.2f} / {np.percentile(read_ms, 95):.2f} | {len(times)} | "
            + (
                f"{np.median(intervals):.1f} / {intervals.min():.1f} / {intervals.max():.1f} | {np.median(steps):.1f}"
                if len(intervals)
                else "- | -"
            )
            + f" | {power:.0f} |"
        )
        if len(times) > 12:
            phase = fitted_phase(times, 2.0)
            replays[name] = (phase, {w: replay(reads, w, phase) for w in WINDOWS_S})
    lines += ["", "## Windows cut from the record: error against the interpolated reference", ""]
    for name, (phase, by_window) in replays.items():
        lines.append(f"### {name} (period fitted on the first 2 s: {phase[1] * 1000:.2f} ms)")
        lines.append("")
        lines.append(
            "| window | raw counter | edge-corrected (recorded updates) | edge-corrected (fitted phase) |"
        )
        lines.append("|---|---|---|---|")
        for window_s, errors in by_window.items():
            lines.append(
                f"| {window_s:g} s | {summary(errors['raw'])} | {summary(errors['edge'])} | {summary(errors['phase'])} |"
            )
        lines.append("")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "nvml_counter_steps_" + gpu.lower().replace("nvidia", "").strip().replace(" ", "_")
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (args.out / f"{stem}.json").write_text(
        json.dumps({name: [asdict(r) for r in reads] for name, reads in recorded_reads.items()})
    )
    sys.stdout.write("\n".join(lines) + "\n")
    nvml.nvmlShutdown()


if __name__ == "__main__":
    main()
