"""Energy of single layers and of whole models on the GPU, from the NVML energy counter: the
training data of the layer-wise predictor and the measurements its predictions are checked on.

    python bench/estimate_gpu.py pack --bundle .gpu_bundle           # here: one encoded input per zoo model
    python bench/estimate_gpu.py run --bundle .gpu_bundle --out DIR  # GPU machine: layers.json, models.json

Every measurement is the same loop: the module called on one batch, the device synchronised after
every call (as a server answers each request), for at least ``--window-s`` after ``--warmup-s`` of
unmeasured calls; the counter is read around the window (one read costs ~3.4 ms on that machine,
and it advances in steps: windows of >= 1 s are within ~2%, MEASUREMENT_NOTES). Energy per example
is the window's total GPU energy over the examples served; the idle power measured at the start
gives the active share too. Layers: Linear, Conv2d, attention, embedding, LSTM, activations,
normalisation and pooling over a grid of sizes, fp32 and fp16, batch 1 and 32. Models: the zoo's
PyTorch baselines (from the bundle) and the hub architectures (random weights) in fp32 and fp16
at batch 1 and 32. ``--dry-run`` runs a few of each on the CPU with a fake counter.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))
sys.path.insert(0, str(PROJECT))

from green_deploy.estimate.benchmarks import LAYERS, build_layer  # noqa: E402

ZOO_MODELS = ("vit_fmnist", "resnet_fmnist", "lstm_langid", "bytelm_stdlib")
HUB_MODELS = ("resnet50", "vit_b16", "bert_base", "gpt2")
# zoo variants whose kernels run on a GPU (int8 kernels are CPU-only): "model/variant"
GPU_VARIANTS = tuple(
    f"{model}/{variant}"
    for model in ZOO_MODELS
    for variant in ("pt_prune50_global", "pt_structured30", "pt_bf16")
    + (("pt_2of4_ft",) if model in ("vit_fmnist", "bytelm_stdlib") else ())
)
BATCHES = (1, 32)
DTYPES = ("float32", "float16")


class Counter:
    """The GPU's total energy counter (mJ), or a fake one that integrates 100 W (dry run)."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run
        if not dry_run:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.device = pynvml.nvmlDeviceGetName(self._handle)
        else:
            self.device = "cpu (dry run, fake 100 W counter)"

    def energy_j(self) -> float:
        if self.dry_run:
            return time.perf_counter() * 100.0
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0


def measure(
    counter: Counter,
    call: Callable[[], Any],
    sync: Callable[[], None],
    batch: int,
    warmup_s: float,
    window_s: float,
    sync_each_call: bool = True,
) -> dict[str, float]:
    """One window of back-to-back calls after a warm-up; energy per example. ``sync_each_call``:
    wait for the device after every call (as a server answers each request); otherwise calls are
    queued as a model's layers are, and the device is waited for every 64 calls and at the end."""
    started = time.perf_counter()
    while time.perf_counter() - started < warmup_s:
        call()
        sync()
    before_j, started, calls = counter.energy_j(), time.perf_counter(), 0
    while True:
        call()
        calls += 1
        if sync_each_call or calls % 64 == 0:
            sync()
            if time.perf_counter() - started >= window_s:
                break
    sync()
    duration_s = time.perf_counter() - started
    energy_j = counter.energy_j() - before_j
    return {
        "energy_j": energy_j,
        "duration_s": duration_s,
        "calls": calls,
        "energy_per_example_j": energy_j / (calls * batch),
        "latency_s": duration_s / calls,
    }


def idle_power_w(counter: Counter, seconds: float) -> float:
    before, started = counter.energy_j(), time.perf_counter()
    time.sleep(seconds)
    return (counter.energy_j() - before) / (time.perf_counter() - started)


def run(
    bundle: Path,
    out: Path,
    dry_run: bool,
    warmup_s: float,
    window_s: float,
    modes: tuple[str, ...],
    layers_too: bool,
    models_too: bool,
    kinds: tuple[str, ...] = (),
    repeats: int = 1,
    profile: bool = False,
    model_names: tuple[str, ...] = ZOO_MODELS + HUB_MODELS,
) -> None:
    import torch

    device = "cpu" if dry_run else "cuda"
    sync = (lambda: None) if dry_run else torch.cuda.synchronize
    counter = Counter(dry_run)
    out.mkdir(parents=True, exist_ok=True)
    # warm the GPU's clocks before the idle reading and the first window
    if not dry_run:
        x = torch.randn(4096, 4096, device=device)
        started = time.perf_counter()
        while time.perf_counter() - started < 5:
            x @ x
        sync()
        time.sleep(2)
    meta = {
        "device": counter.device,
        "torch": torch.__version__,
        "idle_power_w": idle_power_w(counter, 0.2 if dry_run else 3.0),
        "warmup_s": warmup_s,
        "window_s": window_s,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    layers = {name: spec for name, spec in LAYERS.items() if layers_too and (not kinds or spec[0] in kinds)}
    layers = dict(list(layers.items())[:4]) if dry_run else layers
    rows = []
    for name, (kind, hyper) in layers.items():
        module, make_input = build_layer(kind, hyper)
        for dtype in DTYPES if not dry_run else ("float32",):
            torch_dtype = getattr(torch, dtype)
            layer = module.to(device=device, dtype=torch_dtype).eval()
            for batch in BATCHES:
                x = make_input(batch)
                x = x.to(device) if not x.is_floating_point() else x.to(device=device, dtype=torch_dtype)
                for mode in modes:
                    with torch.inference_mode():
                        figures = measure(
                            counter,
                            lambda: layer(x),
                            sync,
                            batch,
                            warmup_s,
                            window_s,
                            mode == "sync",  # noqa: B023
                        )
                    rows.append(
                        {
                            "layer": name,
                            "kind": kind,
                            "hyper": hyper,
                            "dtype": dtype,
                            "batch": batch,
                            "mode": mode,
                            **figures,
                        }
                    )
                    print(
                        f"{name} {dtype} b{batch} {mode}: {figures['energy_per_example_j']:.3g} J/example",
                        flush=True,
                    )
        (out / "estimate_layers.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    if not (models_too or profile):
        return
    models, profiles = [], []
    for name in model_names[:2] if dry_run else model_names:
        model, example = _model(bundle, name, dry_run)
        own_dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        # a variant stored in a half precision runs in it; float32 models run in both
        dtypes = (own_dtype,) if own_dtype != "float32" else DTYPES[: 1 if dry_run else None]
        for dtype in dtypes:
            torch_dtype = getattr(torch, dtype)
            moved = model.to(device=device, dtype=torch_dtype).eval()
            for batch in BATCHES:
                x = torch.as_tensor(np.repeat(example, batch, axis=0)).to(device)
                if x.is_floating_point():
                    x = x.to(torch_dtype)
                with torch.inference_mode():
                    for repeat in range(repeats if models_too else 0):
                        figures = measure(counter, lambda: moved(x), sync, batch, warmup_s, window_s)  # noqa: B023
                        models.append(
                            {"model": name, "dtype": dtype, "batch": batch, "repeat": repeat, **figures}
                        )
                        print(
                            f"{name} {dtype} b{batch} #{repeat}: {figures['energy_per_example_j']:.3g} J/example"
                        )
                    if profile:
                        profiles.append(
                            {"model": name, "dtype": dtype, "batch": batch, **kernels(moved, x, sync)}
                        )
                        print(f"{name} {dtype} b{batch}: {profiles[-1]['kernels']} kernels", flush=True)
        if models_too:
            (out / "estimate_models.json").write_text(json.dumps({"meta": meta, "rows": models}, indent=1))
        if profile:
            (out / "estimate_profile.json").write_text(json.dumps({"meta": meta, "rows": profiles}, indent=1))


def kernels(model: Any, x: Any, sync: Callable[[], None], top: int = 8) -> dict[str, Any]:
    """The device kernels one forward launches (torch.profiler): how many, and the costliest."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        model(x)
        sync()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiled:
            model(x)
            sync()
    on_device = [event for event in profiled.key_averages() if event.device_type == DeviceType.CUDA]
    on_device.sort(key=lambda event: -event.device_time_total)
    return {
        "kernels": sum(event.count for event in on_device),
        "device_time_s": sum(event.device_time_total for event in on_device) / 1e6,
        "top": [[event.key[:90], event.count, event.device_time_total / 1e6] for event in on_device[:top]],
    }


def _model(bundle: Path, name: str, dry_run: bool) -> tuple[Any, np.ndarray]:
    if "/" in name:  # a zoo variant
        from green_deploy.optimize.artifacts import load_torch_variant

        model_id, variant = name.split("/")
        with np.load(bundle / "examples.npz") as examples:
            example = examples[model_id]
        return load_torch_variant(bundle / "data/06_models/variants" / model_id / variant), example
    if name in ZOO_MODELS:
        from green_deploy.zoo.artifacts import load_torch_model

        with np.load(bundle / "examples.npz") as examples:
            example = examples[name]
        return load_torch_model(bundle / "data/06_models/zoo" / name / "torch"), example
    from bench.evaluate_gpu import hub_model

    model, example, _ = hub_model(name, dry_run)
    return model, example


def pack(bundle: Path) -> None:
    """One encoded test input per zoo model, beside the models already in the bundle."""
    from kedro.config import OmegaConfigLoader

    from green_deploy.evaluate.runner import evaluation_set
    from green_deploy.zoo.spec import dataset_settings, select_entry

    zoo = OmegaConfigLoader(str(PROJECT / "conf"), base_env="base", default_run_env="local")["parameters"][
        "zoo"
    ]
    examples = {}
    for model_id in ZOO_MODELS:
        entry = select_entry(zoo["models"], model_id)
        examples[model_id] = np.asarray(
            evaluation_set(entry, dataset_settings(zoo.get("datasets") or {}, entry)).x[:1]
        )
    np.savez_compressed(bundle / "examples.npz", **examples)
    print({k: (v.shape, str(v.dtype)) for k, v in examples.items()})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["pack", "run"])
    parser.add_argument("--bundle", type=Path, default=PROJECT / ".gpu_bundle")
    parser.add_argument("--out", type=Path, default=PROJECT / "bench/results")
    parser.add_argument("--warmup-s", type=float, default=0.3)
    parser.add_argument("--window-s", type=float, default=1.0)
    parser.add_argument("--modes", nargs="+", default=["sync", "queued"], choices=["sync", "queued"])
    parser.add_argument("--layers-only", action="store_true")
    parser.add_argument("--models-only", action="store_true")
    parser.add_argument("--repeats", type=int, default=1, help="windows per model, dtype and batch")
    parser.add_argument("--profile", action="store_true", help="also count each model's kernels per forward")
    parser.add_argument("--kinds", nargs="*", default=[], help="only these layer kinds")
    parser.add_argument(
        "--models",
        nargs="*",
        default=list(ZOO_MODELS + HUB_MODELS),
        help="names, or 'variants': the zoo baselines and GPU_VARIANTS",
    )
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.bundle)
    else:
        run(
            args.bundle,
            args.out,
            args.dry_run,
            args.warmup_s,
            args.window_s,
            tuple(args.modes),
            not args.models_only,
            not args.layers_only,
            tuple(args.kinds),
            args.repeats,
            args.profile,
            ZOO_MODELS + GPU_VARIANTS if args.models == ["variants"] else tuple(args.models),
        )


if __name__ == "__main__":
    main()
