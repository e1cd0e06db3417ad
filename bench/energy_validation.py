"""Validate green-deploy's energy meters on an NVIDIA GPU against the NVML counter over long runs.

In one process (one device call) it:
1. characterises the counter: cost of one read, how often its value changes under load;
2. for workloads whose items last ~5 ms to ~1 s (bf16 matmul chains, and a ResNet-50 forward
   pass from the project's hub loader), computes the long-run reference (J/item over
   ``--reference-s`` seconds of back-to-back items in one counter window), then per-item
   energy from (a) green-deploy's counter meter with the short-window method
   (``EnergyMonitor.measure``, >= 1 s), and the naive one-item window, (b) 100 ms NVML power
   sampling side by side, (c) CodeCarbon's offline tracker;
3. a burst right after idle (where power sampling lags most);
4. per-window overhead (begin + end) of each meter.

Writes ``energy_validation.json`` (every number) and ``energy_validation.md`` (the tables) to
``--out``. ``--dry-run`` runs the same code on the CPU against the fake NVML of the test suite,
to check the script itself before spending GPU time.

    python bench/energy_validation.py --out bench/results
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))
sys.path.insert(0, str(PROJECT))

from green_deploy.energy.monitor import EnergyMonitor  # noqa: E402
from green_deploy.energy.sources.estimate import CpuTimeEstimate, RamEstimate  # noqa: E402
from green_deploy.energy.sources.nvml import NvmlEnergyCounter, NvmlPowerSampler  # noqa: E402

logger = logging.getLogger("energy_validation")


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def _error(value: float | None, reference: float) -> float | None:
    return None if value is None else (value - reference) / reference


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.results: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "args": vars(args)}
        if args.dry_run:
            self._setup_dry_run()
        else:
            self._setup_gpu()
        self.counter = NvmlEnergyCounter(nvml=self.nvml)
        self.sampler = NvmlPowerSampler(interval_s=0.1, nvml=self.nvml)

    # ---- set-up ----------------------------------------------------------------------
    def _setup_gpu(self) -> None:
        import pynvml
        import torch

        self.nvml, self.torch = pynvml, torch
        self.device = torch.device("cuda")
        self.synchronize = torch.cuda.synchronize
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        self.results["machine"] = {
            "gpu": pynvml.nvmlDeviceGetName(handle),
            "driver": pynvml.nvmlSystemGetDriverVersion(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        }

    def _setup_dry_run(self) -> None:
        import threading

        import torch
        from tests.energy.fake_pynvml import FakeNVML

        self.nvml, self.torch = FakeNVML(power_w=300.0), torch
        self.device = torch.device("cpu")
        self.synchronize = lambda: None
        self.results["machine"] = {"gpu": "fake NVML (dry run on CPU)", "torch": torch.__version__}

        def advance_forever() -> None:  # the fake counter integrates 300 W in 50 ms steps
            while True:
                time.sleep(0.05)
                self.nvml.advance(0.05)

        threading.Thread(target=advance_forever, daemon=True).start()

    # ---- workloads -------------------------------------------------------------------
    def matmul_item(self, target_s: float) -> tuple[Callable[[], None], int]:
        """A chain of bf16 matmuls lasting about ``target_s``; returns it and its matmul count."""
        torch = self.torch
        size = self.args.matmul_size
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        a = torch.randn(size, size, device=self.device, dtype=dtype)
        b = torch.randn(size, size, device=self.device, dtype=dtype)
        out = torch.empty(size, size, device=self.device, dtype=dtype)
        self.synchronize()
        start = time.perf_counter()
        for _ in range(20):
            torch.matmul(a, b, out=out)
        self.synchronize()
        one_s = (time.perf_counter() - start) / 20
        count = max(1, round(target_s / one_s))

        def item() -> None:
            for _ in range(count):
                torch.matmul(a, b, out=out)

        return item, count

    def resnet_item(self, batch: int) -> Callable[[], None]:
        torch = self.torch
        from green_deploy.zoo.hub import load_hub_model, parse_hub_entry

        entry = parse_hub_entry(
            "resnet50",
            {
                "repo_id": "microsoft/resnet-50",
                "auto_class": "AutoModelForImageClassification",
                "domain": "cv",
                "task": "classification",
                "model_type": "resnet",
                "architecture_only": True,
            },
        )
        model = load_hub_model(entry).model.to(self.device)
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        model = model.to(dtype)
        pixels = torch.randn(batch, 3, 224, 224, device=self.device, dtype=dtype)

        def item() -> None:
            with torch.inference_mode():
                model(pixel_values=pixels)

        return item

    # ---- measurements ----------------------------------------------------------------
    def counter_characterisation(self) -> None:
        reads = 200
        start = time.perf_counter()
        for _ in range(reads):
            self.counter.read_j()
        read_s = (time.perf_counter() - start) / reads
        item, _ = self.matmul_item(0.05)
        changes, last, stop = [], self.counter.read_j(), time.perf_counter() + self.args.tick_probe_s
        while time.perf_counter() < stop:
            item()
            value = self.counter.read_j()
            if value != last:
                changes.append(time.perf_counter())
                last = value
        self.synchronize()
        intervals = [b - a for a, b in zip(changes, changes[1:], strict=False)]
        self.results["counter"] = {
            "read_cost_s": read_s,
            "update_interval_s": _stats(intervals) if len(intervals) > 1 else None,
        }
        logger.info(
            "counter read %.2f ms; update interval %s",
            read_s * 1e3,
            self.results["counter"]["update_interval_s"],
        )

    def warm_up(self) -> None:
        item, _ = self.matmul_item(0.1)
        stop = time.perf_counter() + self.args.warmup_s
        while time.perf_counter() < stop:
            item()
        self.synchronize()

    def workload(self, name: str, item: Callable[[], None], details: dict[str, Any]) -> None:
        logger.info("workload %s", name)
        monitor = EnergyMonitor([self.counter, self.sampler], synchronize=self.synchronize)
        for _ in range(3):  # warm this workload's kernels
            item()
        reference = monitor.measure(f"{name}/reference", item, min_duration_s=self.args.reference_s)
        reference_j = reference.gpu_energy_j / reference.n_items
        item_s = reference.duration_s / reference.n_items
        record: dict[str, Any] = {
            **details,
            "item_duration_s": item_s,
            "reference": {
                "duration_s": reference.duration_s,
                "items": reference.n_items,
                "j_per_item": reference_j,
                "power_w": reference.gpu_energy_j / reference.duration_s,
            },
        }

        # (a) naive: one item per window
        single_counter, single_sampler, zero_windows = [], [], 0
        for _ in range(max(3, min(self.args.single_windows, int(self.args.single_windows_s / item_s)))):
            m = monitor.measure(f"{name}/single", item, min_duration_s=0.0, max_calls=1)
            single_counter.append(m.gpu_energy_j)
            zero_windows += m.gpu_energy_j == 0
            single_sampler.append(m.alternatives[0].energy_j)
        record["single_item_window"] = {
            "counter": _stats(single_counter)
            | {
                "error_of_mean": _error(statistics.fmean(single_counter), reference_j),
                "windows_with_no_counter_change": zero_windows,
            },
            "power_sampling": _stats(single_sampler)
            | {"error_of_mean": _error(statistics.fmean(single_sampler), reference_j)},
        }

        # (a) the short-window method, and (b) power sampling over the same windows
        for label, min_s, repeats in (
            ("1s", 1.0, self.args.repeats),
            ("3s", 3.0, self.args.mid_repeats),
            ("10s", 10.0, self.args.long_repeats),
        ):
            counter_errors, sampler_errors = [], []
            for _ in range(repeats):
                m = monitor.measure(f"{name}/{label}", item, min_duration_s=min_s)
                counter_errors.append(_error(m.gpu_energy_j / m.n_items, reference_j))
                sampler_errors.append(_error(m.alternatives[0].energy_j / m.n_items, reference_j))
            record[f"window_{label}"] = {
                "counter_error": _stats(counter_errors) | {"max_abs": max(abs(e) for e in counter_errors)},
                "power_sampling_error": _stats(sampler_errors)
                | {"max_abs": max(abs(e) for e in sampler_errors)},
            }

        # (c) CodeCarbon over >= 1 s windows
        record["codecarbon"] = self.codecarbon_windows(name, item, reference_j)
        self.results.setdefault("workloads", {})[name] = record
        logger.info(
            "%s: %.4f J/item reference, 1s-window counter errors %s",
            name,
            reference_j,
            record["window_1s"]["counter_error"],
        )

    def codecarbon_windows(self, name: str, item: Callable[[], None], reference_j: float) -> dict[str, Any]:
        try:
            from green_deploy.energy.sources.codecarbon import CodeCarbonTracker

            tracker = CodeCarbonTracker(country_iso_code="USA", measure_power_secs=1.0)
        except Exception as error:
            return {"unavailable": f"{type(error).__name__}: {error}"}
        monitor = EnergyMonitor([], trackers=[tracker], synchronize=self.synchronize)
        errors, overheads = [], []
        for _ in range(self.args.codecarbon_repeats):
            m = monitor.measure(f"{name}/codecarbon", item, min_duration_s=1.0)
            gpu = m.component("gpu")
            errors.append(None if gpu is None else _error(gpu.energy_j / m.n_items, reference_j))
        for _ in range(2):
            start = time.perf_counter()
            monitor.begin_window("overhead")
            monitor.end_window("overhead")
            overheads.append(time.perf_counter() - start)
        monitor.close()
        valid = [e for e in errors if e is not None]
        return {
            "gpu_error": (_stats(valid) | {"max_abs": max(abs(e) for e in valid)}) if valid else None,
            "windows_without_gpu": len(errors) - len(valid),
            "begin_end_overhead_s": _stats(overheads),
        }

    def cold_burst(self) -> None:
        """Idle, then a 0.7 s burst: the counter against power sampling right after idle."""
        item, _ = self.matmul_item(0.1)
        monitor = EnergyMonitor([self.counter, self.sampler], synchronize=self.synchronize)
        time.sleep(self.args.idle_s)
        m = monitor.measure("cold-burst", item, min_duration_s=0.7)
        sampled = m.alternatives[0].energy_j
        self.results["cold_burst"] = {
            "duration_s": m.duration_s,
            "counter_j": m.gpu_energy_j,
            "counter_power_w": m.gpu_energy_j / m.duration_s,
            "power_sampling_j": sampled,
            "power_sampling_error": _error(sampled, m.gpu_energy_j),
        }
        logger.info("cold burst: %s", self.results["cold_burst"])

    def idle_baseline(self) -> None:
        monitor = EnergyMonitor([self.counter, self.sampler], synchronize=self.synchronize)
        baseline = monitor.measure_idle(self.args.idle_s)
        self.results["idle_power_w"] = baseline.power_w

    def overheads(self) -> None:
        n = 300
        read_s = self.results["counter"]["read_cost_s"]

        def begin_end(monitor: EnergyMonitor) -> float:
            start = time.perf_counter()
            for _ in range(n):
                monitor.begin_window("o")
                monitor.end_window("o")
            return (time.perf_counter() - start) / n

        own = begin_end(EnergyMonitor([_FreeSource("gpu"), _FreeSource("cpu"), _FreeSource("dram")]))
        counter_only = begin_end(EnergyMonitor([self.counter], synchronize=self.synchronize))
        everything = begin_end(
            EnergyMonitor(
                [self.counter, self.sampler, CpuTimeEstimate(), RamEstimate()], synchronize=self.synchronize
            )
        )
        self.results["overhead"] = {
            "own_begin_end_s": own,
            "counter_read_s": read_s,
            "begin_end_counter_only_s": counter_only,
            "begin_end_all_sources_s": everything,
        }
        logger.info("overhead: %s", self.results["overhead"])

    # ---- run ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.counter_characterisation()
        self.idle_baseline()
        self.cold_burst()
        self.warm_up()
        for target_s in self.args.matmul_items_s:
            item, count = self.matmul_item(target_s)
            self.workload(
                f"matmul_{target_s * 1e3:g}ms",
                item,
                {
                    "kind": "bf16 matmul chain",
                    "matmuls_per_item": count,
                    "matmul_size": self.args.matmul_size,
                },
            )
            self._save()
        for batch in self.args.resnet_batches:
            self.workload(
                f"resnet50_b{batch}",
                self.resnet_item(batch),
                {"kind": "ResNet-50 forward (bf16, random weights)", "batch": batch},
            )
            self._save()
        self.overheads()
        self.results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        self._save()
        self.sampler.close()
        return self.results

    def _save(self) -> None:
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "energy_validation.json").write_text(json.dumps(self.results, indent=2, default=str))
        (out / "energy_validation.md").write_text(render_markdown(self.results))


class _FreeSource:
    """A source that costs nothing to read: what is left of a window's cost is green-deploy's own."""

    def __init__(self, component: str):
        self.name, self.component, self.measured, self.resolution_s = (
            f"free_{component}",
            component,
            True,
            0.0,
        )

    def read_j(self) -> float:
        return 0.0

    def close(self) -> None:
        pass


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}%"


def _abs_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{abs(value) * 100:.1f}%"


def render_markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Energy meters validated against the NVML energy counter",
        "",
        f"Machine: {r.get('machine')}. Started {r['started']}. Command: `python bench/energy_validation.py "
        f"--out bench/results` (via the device tool; raw numbers in energy_validation.json).",
        "",
        "Reference: the counter over one long window of back-to-back items (J/item). Errors are relative to it.",
        "(a) green-deploy: the counter read around one window of >= 1 s (or 10 s) of repeated items, divided by the item count;",
        "the naive one-item window is shown for contrast. (b) NVML power sampled every 100 ms and integrated, same windows.",
        "(c) CodeCarbon's OfflineEmissionsTracker (process mode) over >= 1 s windows.",
        "",
    ]
    counter = r.get("counter")
    if counter:
        interval = counter.get("update_interval_s") or {}
        lines += [
            f"Counter: one read costs {counter['read_cost_s'] * 1e3:.2f} ms; under load its value changed every "
            f"{interval.get('median', float('nan')) * 1e3:.0f} ms (median; min {interval.get('min', float('nan')) * 1e3:.0f}, "
            f"max {interval.get('max', float('nan')) * 1e3:.0f}).",
            "",
        ]
    if "idle_power_w" in r:
        lines += [f"Idle power: {', '.join(f'{k} {v:.1f} W' for k, v in r['idle_power_w'].items())}.", ""]
    lines += [
        "| workload | item (ms) | reference J/item | power (W) | (a) 1 s windows: mean / worst error | (a) 3 s windows | (a) 10 s window | "
        "(a) one-item windows: error of mean, windows with no change | (b) sampling, 1 s windows: mean / worst | (c) CodeCarbon GPU: mean / worst |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, w in r.get("workloads", {}).items():
        one, three, ten, single = w["window_1s"], w["window_3s"], w["window_10s"], w["single_item_window"]
        cc = w["codecarbon"]
        cc_text = (
            cc.get("unavailable", "n/a")
            if cc.get("gpu_error") is None
            else (f"{_pct(cc['gpu_error']['mean'])} / {_abs_pct(cc['gpu_error']['max_abs'])}")
        )
        lines.append(
            f"| {name} | {w['item_duration_s'] * 1e3:.1f} | {w['reference']['j_per_item']:.4g} | {w['reference']['power_w']:.0f} | "
            f"{_pct(one['counter_error']['mean'])} / {_abs_pct(one['counter_error']['max_abs'])} | "
            f"{_pct(three['counter_error']['mean'])} / {_abs_pct(three['counter_error']['max_abs'])} | "
            f"{_pct(ten['counter_error']['mean'])} | "
            f"{_pct(single['counter']['error_of_mean'])}, {single['counter']['windows_with_no_counter_change']}/{single['counter']['n']} | "
            f"{_pct(one['power_sampling_error']['mean'])} / {_abs_pct(one['power_sampling_error']['max_abs'])} | {cc_text} |"
        )
    if "cold_burst" in r:
        c = r["cold_burst"]
        lines += [
            "",
            f"Burst after idle: {c['duration_s']:.2f} s at {c['counter_power_w']:.0f} W by the counter "
            f"({c['counter_j']:.1f} J); 100 ms power sampling read {c['power_sampling_j']:.1f} J "
            f"({_pct(c['power_sampling_error'])}).",
        ]
    if "overhead" in r:
        o = r["overhead"]
        lines += [
            "",
            "Per-window overhead (begin + end):",
            "",
            f"- green-deploy's own work (three sources that cost nothing to read): {o['own_begin_end_s'] * 1e3:.3f} ms;",
            f"- with the NVML counter: {o['begin_end_counter_only_s'] * 1e3:.3f} ms, i.e. two counter reads "
            f"({o['counter_read_s'] * 1e3:.3f} ms each on this virtual machine) and two synchronisations;",
            f"- counter + power sampler + CPU and RAM estimates: {o['begin_end_all_sources_s'] * 1e3:.3f} ms.",
        ]
        cc = next(
            (
                w["codecarbon"]
                for w in r.get("workloads", {}).values()
                if "begin_end_overhead_s" in w["codecarbon"]
            ),
            None,
        )
        if cc:
            lines.append(f"- CodeCarbon begin + end: {cc['begin_end_overhead_s']['mean'] * 1e3:.0f} ms.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(PROJECT / "bench/results"))
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU and the fake NVML: check the script, measure nothing"
    )
    parser.add_argument("--matmul-size", type=int, default=8192)
    parser.add_argument("--matmul-items-s", type=float, nargs="+", default=[0.005, 0.01, 0.1, 1.0])
    parser.add_argument("--resnet-batches", type=int, nargs="*", default=[1, 64])
    parser.add_argument("--reference-s", type=float, default=12.0)
    parser.add_argument("--single-windows", type=int, default=40)
    parser.add_argument(
        "--single-windows-s", type=float, default=8.0, help="time cap for the one-item windows"
    )
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--mid-repeats", type=int, default=3)
    parser.add_argument("--long-repeats", type=int, default=1)
    parser.add_argument("--codecarbon-repeats", type=int, default=2)
    parser.add_argument("--warmup-s", type=float, default=8.0)
    parser.add_argument("--idle-s", type=float, default=5.0)
    parser.add_argument("--tick-probe-s", type=float, default=2.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    Bench(args).run()
    print(render_markdown(json.loads((Path(args.out) / "energy_validation.json").read_text())))  # noqa: T201


if __name__ == "__main__":
    main()
