"""Single-window accuracy of GPU energy meters: green-deploy's plain and edge-corrected NVML counters,
Zeus and CodeCarbon, on the same chained windows.

Issue 20's goal: on the H200, over >= 20 single windows each of 1 s and 3 s, for items of 10 ms,
100 ms and 1 s, the worst single window within +-2% of the reference and the mean within +-1%.
Per item size, a thread runs items back to back (bf16 matmul chains sized to the item's length,
synchronized after each item, so 10 ms items carry launch gaps), while this thread:

1. measures the reference power over >= 10 s between two reads that each follow a counter update
   seen by polling (so neither edge cuts a step: the reference is exact to the polling gap);
2. cuts 20 chained windows of 1 s and 20 of 3 s; at each edge every meter closes its window and
   opens the next, in an order rotated every window so no meter always goes last, and each
   window's energy is compared with the reference power times the window's length (the time
   between that meter's two edge calls);
3. measures the reference again, to show the load's power did not drift.

The meters, all on GPU 0 and all its GPU energy only: the plain NVML counter and
``NvmlEdgeCorrectedCounter`` (differences of ``read_j``), Zeus (``ZeusMonitor`` windows) and
CodeCarbon (``OfflineEmissionsTracker`` tasks, their ``gpu_energy``). Zeus and CodeCarbon are
skipped, with a note, where they do not import or open. Per meter it reports the mean and worst
single-window error and what an edge call costs the measured thread; for the edge-corrected
counter also its ``edge_uncertainty_j`` relative to each window's energy. Run on the GPU machine,
with Zeus and CodeCarbon installed from the wheels listed in ``bench/gpu_wheels.txt``:

    python bench/energy_windows.py --out bench/results

It writes ``energy_windows_<gpu>.md`` and ``.json``. It changes no GPU setting. ``--dry-run``
runs the same code on the CPU against a fake NVML (a counter stepping every 100 ms at 300 W) and
numpy matmuls, with short windows and without Zeus and CodeCarbon, to check the script anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

import green_deploy  # noqa: E402
from green_deploy.energy.sources.nvml import NvmlEdgeCorrectedCounter, NvmlEnergyCounter  # noqa: E402

ITEMS_S = (0.01, 0.1, 1.0)
GPU = 0  # every meter and the reference read this NVML device


class FakeNvml:
    """A stand-in for ``pynvml`` in ``--dry-run``: one GPU drawing a constant ``power_w``, whose
    energy counter holds the energy up to its last update, every ``update_s``, as NVML's does; a
    counter read takes ``read_s``."""

    class NVMLError(Exception):
        pass

    def __init__(self, power_w: float = 300.0, update_s: float = 0.1, read_s: float = 0.0005):
        self.power_w, self.update_s, self.read_s = power_w, update_s, read_s
        self.start_s = time.perf_counter()

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:
        return "DRY-RUN"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        """mJ drawn up to the counter's last update."""
        time.sleep(self.read_s)
        last_update_s = (time.perf_counter() - self.start_s) // self.update_s * self.update_s
        return round(1000 * self.power_w * last_update_s)

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        """mW, as NVML gives it."""
        return round(1000 * self.power_w)


Work = tuple[Callable[[], object], Callable[[], None]]  # (one matmul, wait for the queued ones)


def gpu_work(torch: Any, size: int = 4096) -> Work:
    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    return (lambda: a @ b), torch.cuda.synchronize


def cpu_work(size: int = 256) -> Work:
    """numpy matmuls: they release the GIL as CUDA waits do, so the meters' threads still run."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, size, size), dtype=np.float32)
    return (lambda: a @ b), (lambda: None)


class Items:
    """Items of about ``item_s`` seconds, back to back in a thread until stopped: each a chain of
    matmuls, then a wait for them to finish."""

    def __init__(self, work: Work, item_s: float):
        self.matmul, self.synchronize = work
        self.per_item = max(1, round(item_s / self._matmul_s()))
        self.stop = threading.Event()
        self.count = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _matmul_s(self) -> float:
        for _ in range(20):
            self.matmul()
        self.synchronize()
        start = time.perf_counter()
        for _ in range(200):
            self.matmul()
        self.synchronize()
        return (time.perf_counter() - start) / 200

    def _run(self) -> None:
        while not self.stop.is_set():
            for _ in range(self.per_item):
                self.matmul()
            self.synchronize()
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


class Meter(Protocol):
    """A GPU energy meter cut into chained windows: each ``edge`` closes the open window and opens
    the next."""

    name: str

    def edge(self) -> float | None:
        """Joules of the window this edge closes; None at the first edge of a chain."""
        ...

    def end(self) -> None:
        """Drop the open window: the next edge starts a new chain."""
        ...

    def close(self) -> None: ...


class CounterMeter:
    """A green-deploy source: a window is the difference of its two edges' ``read_j``."""

    def __init__(self, name: str, source: NvmlEnergyCounter | NvmlEdgeCorrectedCounter):
        self.name = name
        self.source = source
        self._last_j: float | None = None

    def edge(self) -> float | None:
        value = self.source.read_j()
        window = None if self._last_j is None else value - self._last_j
        self._last_j = value
        return window

    def end(self) -> None:
        self._last_j = None

    def close(self) -> None:
        self.source.close()


class CorrectedCounterMeter(CounterMeter):
    """The edge-corrected counter, which also says what a read may still be off by."""

    source: NvmlEdgeCorrectedCounter

    def uncertainty_j(self) -> float:
        return self.source.edge_uncertainty_j


class ZeusMeter:
    """Zeus's windows: ``end_window`` then ``begin_window`` at each edge, without synchronizing CUDA
    (the items run in another thread). On Volta and newer both read
    ``nvmlDeviceGetTotalEnergyConsumption`` (zeus/device/gpu/nvidia.py), so a window's
    ``gpu_energy[GPU]`` is the plain counter's difference, in J."""

    name = "Zeus"

    def __init__(self) -> None:
        logging.getLogger("zeus").setLevel(logging.ERROR)  # its start-up info and per-window debug lines
        from zeus.monitor import ZeusMonitor

        # cpu_indices=[]: GPU energy only, and no RAPL reads (nor their wrap-around processes) at edges
        self.monitor = ZeusMonitor(gpu_indices=[GPU], cpu_indices=[])
        self._count = 0
        self._open: str | None = None

    def edge(self) -> float | None:
        window = None
        if self._open is not None:
            window = self.monitor.end_window(self._open, sync_execution=False).gpu_energy[GPU]
        self._count += 1
        self._open = f"window {self._count}"
        self.monitor.begin_window(self._open, sync_execution=False)
        return window

    def end(self) -> None:
        if self._open is not None:
            self.monitor.end_window(self._open, sync_execution=False, cancel=True)
        self._open = None

    def close(self) -> None:
        self.end()


class CodeCarbonMeter:
    """CodeCarbon's tasks: ``stop_task`` then ``start_task`` at each edge, of a tracker started once.

    How 3.3.2 gets a task's ``gpu_energy`` (kWh): ``start_task`` reads each GPU's
    ``nvmlDeviceGetTotalEnergyConsumption`` (``GPUDevice.start``) and snapshots the tracker's totals;
    ``stop_task`` measures (``GPUDevice.delta``: the counter now minus that read, summed over
    ``gpu_ids``, times the PUE, 1 here) and returns the difference of the totals. So it is the plain
    counter's difference between a read late in one edge and one early in the next: what is drawn
    between ``stop_task``'s read and the next ``start_task``'s is in no task. Power samples only
    stand in for GPUs without the counter. Each ``stop_task`` also measures the CPU and the RAM
    (``tracking_mode="machine"``), part of its edge's cost; only ``gpu_energy`` is compared.
    """

    name = "CodeCarbon"

    def __init__(self) -> None:
        os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")  # its level at import
        with contextlib.redirect_stdout(None):  # amdsmi prints when ROCm is missing
            from codecarbon import OfflineEmissionsTracker

        self.tracker = OfflineEmissionsTracker(
            country_iso_code="USA",
            tracking_mode="machine",
            gpu_ids=[GPU],
            measure_power_secs=1,
            output_methods=[],  # writes nothing (save_to_file=False is deprecated in 3.x)
            log_level="error",
            allow_multiple_runs=True,
        )
        # it tracks NVIDIA GPUs only where `nvidia-smi --help` runs; gpu_count is len(gpu_ids) even then
        if not self.tracker.get_detected_hardware()["gpu_model"]:
            raise RuntimeError("CodeCarbon tracks no GPU (it looks for nvidia-smi)")
        self.tracker.start()
        self._count = 0
        self._open: str | None = None

    def edge(self) -> float | None:
        window = None
        if self._open is not None:
            window = self.tracker.stop_task(self._open).gpu_energy * 3.6e6
        self._count += 1
        self._open = f"window {self._count}"
        self.tracker.start_task(self._open)
        return window

    def end(self) -> None:
        if self._open is not None:
            self.tracker.stop_task(self._open)
        self._open = None

    def close(self) -> None:
        self.end()
        self.tracker.stop()


def windows(meters: list[Meter], window_s: float, count: int) -> dict[str, dict[str, Any]]:
    """``count`` chained windows of about ``window_s``, every meter taking every edge in an order
    rotated at each edge (so no meter always goes last): per meter, (joules, seconds) of each window,
    the seconds being those between the middles of its two edge calls, what each closing edge call
    cost the measured thread, and for the edge-corrected counter its uncertainty after each edge.
    A lead-in window comes first and is not recorded: the meters' first edges (Zeus's and
    CodeCarbon's hold the interpreter for tens of ms) disturb the load itself (on an H100 every
    meter read its first window 4.5-12% low: bench/results/energy_validation_h100.md)."""
    records: dict[str, dict[str, Any]] = {meter.name: {"windows": [], "edge_costs_s": []} for meter in meters}
    previous_at: dict[str, float] = {}
    for meter in meters:
        meter.edge()
    for index in range(count + 1):
        time.sleep(window_s)
        shift = index % len(meters)
        for meter in meters[shift:] + meters[:shift]:
            before = time.perf_counter()
            joules = meter.edge()
            after = time.perf_counter()
            at, record = 0.5 * (before + after), records[meter.name]
            if joules is not None and index:  # index 0 closes the lead-in window
                record["windows"].append((joules, at - previous_at[meter.name]))
                record["edge_costs_s"].append(after - before)
            previous_at[meter.name] = at
            if isinstance(meter, CorrectedCounterMeter):
                record.setdefault("edge_uncertainty_j", []).append(meter.uncertainty_j())
    for meter in meters:
        meter.end()
    return records


def window_uncertainties(record: dict[str, Any]) -> list[float]:
    """Each window's uncertainty (its two edges') relative to its energy."""
    edges = record["edge_uncertainty_j"]
    return [(edges[k] + edges[k + 1]) / energy for k, (energy, _) in enumerate(record["windows"])]


def stats(record: dict[str, Any], power_w: float) -> dict[str, float]:
    relative = [energy / (power_w * seconds) - 1 for energy, seconds in record["windows"]]
    result = {
        "mean_error": float(np.mean(relative)),
        "worst_error": float(np.max(np.abs(relative))),
        "edge_cost_ms_median": 1000 * float(np.median(record["edge_costs_s"])),
        "edge_cost_ms_max": 1000 * float(np.max(record["edge_costs_s"])),
    }
    if "edge_uncertainty_j" in record:
        uncertainties = window_uncertainties(record)
        result["edge_uncertainty_median"] = float(np.median(uncertainties))
        result["edge_uncertainty_max"] = float(np.max(uncertainties))
    return result


def open_meters(nvml: Any, dry_run: bool) -> tuple[list[Meter], dict[str, str], list[str]]:
    """The meters in their order, their packages' versions, and a note for each one skipped."""
    meters: list[Meter] = [
        CounterMeter("plain counter", NvmlEnergyCounter(device_indices=[GPU], nvml=nvml)),
        CorrectedCounterMeter(
            "edge-corrected counter", NvmlEdgeCorrectedCounter(device_indices=[GPU], nvml=nvml)
        ),
    ]
    versions = {"green-deploy": green_deploy.__version__}
    notes: list[str] = []
    openers: tuple[tuple[str, Callable[[], Meter]], ...] = (
        ("zeus", ZeusMeter),
        ("codecarbon", CodeCarbonMeter),
    )
    for package, opener in openers:
        if dry_run:
            notes.append(f"{package} skipped: --dry-run (it reads the real NVML)")
            continue
        try:
            meters.append(opener())
        except Exception as error:  # not installed, or no GPU it can read: the other meters still run
            notes.append(f"{package} skipped: {type(error).__name__}: {error}")
            continue
        versions[package] = metadata.version(package)
    return meters, versions, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--windows", type=int, help="windows per length (default 20; 3 in --dry-run)")
    parser.add_argument(
        "--window-s", type=float, nargs="+", help="window lengths (default 1 3; 0.45 1.05 in --dry-run)"
    )
    parser.add_argument(
        "--reference-s", type=float, help="each reference's length (default 10; 1 in --dry-run)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="fake NVML and CPU matmuls: checks the script here"
    )
    args = parser.parse_args()
    count = args.windows or (3 if args.dry_run else 20)
    windows_s = args.window_s or ([0.45, 1.05] if args.dry_run else [1.0, 3.0])
    reference_s = args.reference_s or (1.0 if args.dry_run else 10.0)
    settle_s = 0.5 if args.dry_run else 3.0  # clocks and power settle
    if args.dry_run:
        nvml: Any = FakeNvml()
        work = cpu_work()
    else:
        import pynvml
        import torch

        nvml, work = pynvml, gpu_work(torch)

    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(GPU)
    gpu = nvml.nvmlDeviceGetName(handle)
    gpu = gpu.decode() if isinstance(gpu, bytes) else gpu
    meters, versions, notes = open_meters(nvml, args.dry_run)
    for note in notes:
        sys.stdout.write(note + "\n")
    results: dict[str, Any] = {
        "gpu": gpu,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dry_run": args.dry_run,
        "meters": [meter.name for meter in meters],
        "versions": versions,
        "notes": notes,
        "items": {},
    }
    for item_s in ITEMS_S:
        with Items(work, item_s) as items:
            time.sleep(settle_s)
            before_w = reference_power_w(nvml, handle, reference_s)
            by_window = {f"{window_s:g}": windows(meters, window_s, count) for window_s in windows_s}
            after_w = reference_power_w(nvml, handle, reference_s)
        for by_meter in by_window.values():
            for record in by_meter.values():
                record["stats"] = stats(record, 0.5 * (before_w + after_w))
        results["items"][f"{item_s:g}"] = {
            "matmuls_per_item": items.per_item,
            "reference_power_w": [before_w, after_w],
            "windows": by_window,
        }
        sys.stdout.write(f"item {item_s:g} s: reference {before_w:.1f} W then {after_w:.1f} W\n")
    for meter in meters:
        meter.close()

    corrected = [
        record
        for item in results["items"].values()
        for by_meter in item["windows"].values()
        for record in by_meter.values()
        if "edge_uncertainty_j" in record
    ]
    uncertainties = [u for record in corrected for u in window_uncertainties(record)]
    results["edge_corrected_uncertainty"] = {
        "median": float(np.median(uncertainties)),
        "max": float(np.max(uncertainties)),
    }
    load = (
        "numpy matmuls on the CPU against a fake NVML at 300 W (dry run)" if args.dry_run else "bf16 matmuls"
    )
    lines = [
        f"# Single energy windows on {gpu}: "
        + ", ".join(f"{package} {version}" for package, version in versions.items()),
        "",
        f"Written by `bench/energy_windows.py` on {results['at']}; load: {load}; {count} chained windows per length, "
        f"every edge taken by every meter ({', '.join(results['meters'])}) in an order rotated every window; "
        f"reference: the mean of the power between two update-aligned counter reads over {reference_s:g} s before "
        "the windows and again after them. Each meter's windows are its GPU energy only. No GPU setting changed.",
        *(["", *(f"- {note}" for note in notes)] if notes else []),
        "",
        "| item | window | reference W (before / after) | meter | mean error | worst single window | edge cost (ms, median / max) |",
        "|---|---|---|---|---|---|---|",
    ]
    worst = dict.fromkeys(results["meters"], 0.0)
    for item, record in results["items"].items():
        before_w, after_w = record["reference_power_w"]
        for window, by_meter in record["windows"].items():
            for name, raw in by_meter.items():
                meter_stats = raw["stats"]
                worst[name] = max(worst[name], meter_stats["worst_error"])
                lines.append(
                    f"| {float(item) * 1000:g} ms | {window} s | {before_w:.1f} / {after_w:.1f} | {name} | "
                    f"{100 * meter_stats['mean_error']:+.2f}% | {100 * meter_stats['worst_error']:.2f}% | "
                    f"{meter_stats['edge_cost_ms_median']:.3f} / {meter_stats['edge_cost_ms_max']:.3f} |"
                )
    lines += [""] + [f"worst single window ({name}): {100 * value:.2f} %" for name, value in worst.items()]
    lines.append(
        "edge-corrected counter's edge uncertainty per window (both edges, relative to the window's energy): "
        f"median {100 * results['edge_corrected_uncertainty']['median']:.2f} %, "
        f"max {100 * results['edge_corrected_uncertainty']['max']:.2f} %"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "energy_windows_" + gpu.lower().replace("nvidia", "").strip().replace(" ", "_")
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1))
    sys.stdout.write("\n".join(lines) + "\n")
    nvml.nvmlShutdown()


if __name__ == "__main__":
    main()
