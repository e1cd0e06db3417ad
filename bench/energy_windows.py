"""Single-window accuracy of the GPU energy meters: the plain NVML counter and the edge-corrected one.

Issue 20's goal: on the H200, over >= 20 single windows each of 1 s and 3 s, for items of 10 ms,
100 ms and 1 s, the worst single window within +-2% of the reference and the mean within +-1%.
Per item size, a thread runs items back to back (bf16 matmul chains sized to the item's length,
synchronized after each item, so 10 ms items carry launch gaps), while this thread:

1. measures the reference power over >= 10 s between two reads that each follow a counter update
   seen by polling (so neither edge cuts a step: the reference is exact to the polling gap);
2. cuts 20 chained windows of 1 s and 20 of 3 s, reading both meters at each edge, and compares
   each window's energy with the reference power times the window's length;
3. measures the reference again, to show the load's power did not drift.

Per meter it reports the mean and worst single-window error and the time one read costs on the
measured thread. Run on the GPU machine:

    python bench/energy_windows.py --out bench/results

It writes ``energy_windows_<gpu>.md`` and ``.json``. It changes no GPU setting.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

from green_deploy.energy.sources.nvml import NvmlEdgeCorrectedCounter, NvmlEnergyCounter  # noqa: E402

ITEMS_S = (0.01, 0.1, 1.0)
WINDOWS_S = (1.0, 3.0)


class Items:
    """Items of about ``item_s`` seconds, back to back in a thread until stopped."""

    def __init__(self, torch: Any, item_s: float, size: int = 4096):
        self.torch = torch
        self.a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
        self.b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
        self.per_item = max(1, round(item_s / self._matmul_s()))
        self.stop = threading.Event()
        self.count = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _matmul_s(self) -> float:
        for _ in range(20):
            self.a @ self.b
        self.torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(200):
            self.a @ self.b
        self.torch.cuda.synchronize()
        return (time.perf_counter() - start) / 200

    def _run(self) -> None:
        while not self.stop.is_set():
            for _ in range(self.per_item):
                self.a @ self.b
            self.torch.cuda.synchronize()
            self.count += 1

    def __enter__(self) -> Items:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def aligned_read(nvml: Any, handle: Any) -> tuple[float, float]:
    """(time, joules) just after the counter's next update, found by reading it back to back."""
    last = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    previous_s = time.perf_counter()
    while True:
        before = time.perf_counter()
        value = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        after = time.perf_counter()
        if value != last:
            return 0.5 * (previous_s + 0.5 * (before + after)), value / 1000.0
        last, previous_s = value, 0.5 * (before + after)


def reference_power_w(nvml: Any, handle: Any, seconds: float) -> float:
    start_s, start_j = aligned_read(nvml, handle)
    time.sleep(seconds)
    end_s, end_j = aligned_read(nvml, handle)
    return (end_j - start_j) / (end_s - start_s)


def timed_read(meter: Any) -> tuple[float, float, float]:
    """(time of the read, joules, seconds the read cost)."""
    before = time.perf_counter()
    value = meter.read_j()
    after = time.perf_counter()
    return 0.5 * (before + after), value, after - before


def windows(meters: dict[str, Any], window_s: float, count: int) -> dict[str, Any]:
    """Chained windows, each edge read by every meter: per meter, (joules, seconds) of each window
    and what its reads cost."""
    measured: dict[str, list[tuple[float, float]]] = {name: [] for name in meters}
    costs: dict[str, list[float]] = {name: [] for name in meters}
    previous = {name: timed_read(meter) for name, meter in meters.items()}
    for _ in range(count):
        time.sleep(window_s)
        for name, meter in meters.items():
            at, value, cost = timed_read(meter)
            start_at, start_value, _ = previous[name]
            measured[name].append((value - start_value, at - start_at))
            costs[name].append(cost)
            previous[name] = (at, value, cost)
    return {name: {"windows": measured[name], "read_costs_s": costs[name]} for name in meters}


def errors(record: dict[str, Any], power_w: float) -> dict[str, float]:
    relative = [energy / (power_w * seconds) - 1 for energy, seconds in record["windows"]]
    return {
        "mean_error": float(np.mean(relative)),
        "worst_error": float(np.max(np.abs(relative))),
        "read_cost_ms_median": 1000 * float(np.median(record["read_costs_s"])),
        "read_cost_ms_max": 1000 * float(np.max(record["read_costs_s"])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--reference-s", type=float, default=10.0)
    args = parser.parse_args()
    import pynvml as nvml
    import torch

    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    gpu = nvml.nvmlDeviceGetName(handle)
    gpu = gpu.decode() if isinstance(gpu, bytes) else gpu
    meters = {"plain counter": NvmlEnergyCounter(), "edge-corrected counter": NvmlEdgeCorrectedCounter()}
    results: dict[str, Any] = {"gpu": gpu, "at": datetime.now(UTC).isoformat(timespec="seconds"), "items": {}}
    for item_s in ITEMS_S:
        with Items(torch, item_s) as items:
            time.sleep(3.0)  # clocks and power settle
            before_w = reference_power_w(nvml, handle, args.reference_s)
            by_window = {f"{window_s:g}": windows(meters, window_s, args.windows) for window_s in WINDOWS_S}
            after_w = reference_power_w(nvml, handle, args.reference_s)
            per_item = items.per_item
        results["items"][f"{item_s:g}"] = {
            "matmuls_per_item": per_item,
            "reference_power_w": [before_w, after_w],
            "windows": by_window,
        }
        sys.stdout.write(f"item {item_s:g} s: reference {before_w:.1f} W then {after_w:.1f} W\n")
    for meter in meters.values():
        meter.close()
    lines = [
        f"# Single energy windows on {gpu}: plain vs edge-corrected NVML counter",
        "",
        f"Written by `bench/energy_windows.py` on {results['at']}; {args.windows} chained windows per length; "
        f"reference: the mean of the power between two update-aligned counter reads over {args.reference_s:g} s before the windows and "
        "again after them. "
        "No GPU setting changed.",
        "",
        "| item | window | reference W (before / after) | meter | mean error | worst single window | read cost (ms, median / max) |",
        "|---|---|---|---|---|---|---|",
    ]
    worst = {name: 0.0 for name in meters}
    for item, record in results["items"].items():
        before_w, after_w = record["reference_power_w"]
        for window, by_meter in record["windows"].items():
            for name, raw in by_meter.items():
                stats = errors(raw, 0.5 * (before_w + after_w))
                worst[name] = max(worst[name], stats["worst_error"])
                lines.append(
                    f"| {float(item) * 1000:g} ms | {window} s | {before_w:.1f} / {after_w:.1f} | {name} | "
                    f"{100 * stats['mean_error']:+.2f}% | {100 * stats['worst_error']:.2f}% | "
                    f"{stats['read_cost_ms_median']:.3f} / {stats['read_cost_ms_max']:.3f} |"
                )
    lines += [""] + [f"worst single window ({name}): {100 * value:.2f} %" for name, value in worst.items()]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "energy_windows_" + gpu.lower().replace("nvidia", "").strip().replace(" ", "_")
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1))
    sys.stdout.write("\n".join(lines) + "\n")
    nvml.nvmlShutdown()


if __name__ == "__main__":
    main()
