"""Hopper-native techniques on hub-size models, through the variant file, measured by the NVML counter.

For BERT-base (sequence 128) and ViT-B/16 (random weights from the model's configuration:
fidelity to fp32 is reported, accuracy is not applicable) and ResNet-50, each variant is built by
the project's techniques on the CPU, written as the optimize pipeline writes it (its tensors in
safetensors), rebuilt from its recorded steps (``optimize.structure.replay_structure``) and placed
on the GPU by the PyTorch runtime (``runtimes.pytorch.place``: fp8 and int4 layers pick their
kernels, 2:4 layers switch to the sparse kernels) — the path a served variant takes. Per
variant and batch size (1, 32, 256): J/inference from the edge-corrected NVML counter over
repeated windows after warm-up, its CV, batch latency, GPU memory, and pJ/FLOP against the bf16
matmul floor measured in the same run; per variant: the output's relative L2 error and top-1
agreement against fp32 on one batch of 32.

    python bench/hopper_techniques.py --out bench/results      # on the GPU machine
    python bench/hopper_techniques.py --render bench/results/hopper_techniques_h100.json

It changes no GPU setting.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

from green_deploy.energy.monitor import EnergyMonitor  # noqa: E402
from green_deploy.energy.sources.nvml import NvmlEdgeCorrectedCounter  # noqa: E402
from green_deploy.optimize.base import NotApplicable, OptimizationContext  # noqa: E402
from green_deploy.optimize.macs import count_macs  # noqa: E402
from green_deploy.optimize.structure import replay_structure  # noqa: E402
from green_deploy.optimize.techniques import get_technique  # noqa: E402
from green_deploy.runtimes.pytorch import place, variant_tensors  # noqa: E402
from green_deploy.zoo.hub import load_hub_model, parse_hub_entry  # noqa: E402

logger = logging.getLogger("hopper_techniques")

MODELS = {
    "bert_base": ("google-bert/bert-base-uncased", "AutoModelForSequenceClassification", "bert", "text"),
    "vit_b16": ("google/vit-base-patch16-224", "AutoModelForImageClassification", "vit", "image"),
    "resnet50": ("microsoft/resnet-50", "AutoModelForImageClassification", "resnet", "image"),
}
BF16 = ("half_precision", {"dtype": "bfloat16"})
VARIANTS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "fp32": [],
    "bf16": [BF16],
    "bf16_graph": [BF16, ("cuda_graph", {})],
    "fp8": [("fp8", {})],
    "fp8_graph": [("fp8", {}), ("cuda_graph", {})],
    "int8_wo": [("weight_only", {"bits": 8})],
    "int8_wo_dequant": [("weight_only", {"bits": 8, "kernel": "dequantize"})],
    "int4_wo": [("weight_only", {"bits": 4, "group_size": 128})],
    "int8_dynamic": [("int8_dynamic", {})],
    "int8_dynamic_graph": [("int8_dynamic", {}), ("cuda_graph", {})],
    "sparse24_bf16": [("semi_structured_sparsity", {}), BF16],
}
# ResNet-50 is convolutions with one Linear (its classifier, kept): only precision and graphs apply
CONV_VARIANTS = ("fp32", "bf16", "bf16_graph")
BATCHES = (1, 32, 256)


def logits_only(model: Any) -> Any:
    from torch import nn

    class LogitsOnly(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            return self.inner(x).logits

    return LogitsOnly(model).eval()


def base_model(name: str) -> Any:
    repo_id, auto_class, model_type, kind = MODELS[name]
    entry = parse_hub_entry(
        name,
        {
            "repo_id": repo_id,
            "auto_class": auto_class,
            "model_type": model_type,
            "domain": "cv" if kind == "image" else "nlp",
            "task": "classification",
            "architecture_only": True,
        },
    )
    return logits_only(load_hub_model(entry).model)


def inputs(torch: Any, name: str, n: int, seed: int) -> Any:
    generator = torch.Generator().manual_seed(seed)
    if MODELS[name][3] == "image":
        return torch.randn(n, 3, 224, 224, generator=generator)
    return torch.randint(1000, 5000, (n, 128), generator=generator)


def through_artifact(base: Any, model: Any, steps: list[dict[str, Any]]) -> Any:
    """The variant as a served one is: its tensors written to safetensors and read back into a
    structure rebuilt from its steps (on a copy of the baseline: every tensor is then loaded)."""
    import copy

    from safetensors.torch import load, save

    stored = load(save(variant_tensors(model)))
    fresh = copy.deepcopy(base)
    for step in steps:
        fresh = replay_structure(fresh, step)
    fresh.load_state_dict(stored, strict=True)
    return fresh.eval()


def build(
    torch: Any, name: str, base: Any, variant: str, context: OptimizationContext
) -> tuple[Any, dict[str, Any]]:
    """(the variant rebuilt from its file, on the CPU; what the build recorded)."""
    import copy

    model, steps, notes = copy.deepcopy(base), [], []
    start_s = time.perf_counter()
    for technique, settings in VARIANTS[variant]:
        optimized = get_technique(technique).apply(model, settings, context)
        model = optimized.model
        steps.append(
            {"technique": technique, "settings": settings, "recipe": optimized.extra.get("rebuild_recipe")}
        )
        notes.append(optimized.notes)
    record = {"build_s": time.perf_counter() - start_s, "notes": " | ".join(notes)}
    return through_artifact(base, model, steps), record


def matmul_floor_pj_per_flop(torch: Any, monitor: EnergyMonitor, seconds: float) -> float:
    """GPU energy per FLOP of back-to-back 8192^3 bf16 matmuls (the floor cells are read against)."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(20):
        a @ b
    m = monitor.measure("matmul_floor", lambda: a @ b, min_duration_s=seconds)
    return 1e12 * m.gpu_energy_j / (m.n_items * 2 * 8192**3)


def measure_cell(
    torch: Any, monitor: EnergyMonitor, model: Any, x: Any, args: argparse.Namespace
) -> dict[str, Any]:
    def infer() -> None:
        with torch.inference_mode():
            model(x)

    torch.cuda.reset_peak_memory_stats()
    warm_end = time.perf_counter() + args.warmup_s
    while time.perf_counter() < warm_end:
        infer()
    torch.cuda.synchronize()
    batch = len(x)
    energies, latencies = [], []
    for _ in range(args.repeats):
        m = monitor.measure("cell", infer, n_items_per_call=batch, min_duration_s=args.window_s)
        energies.append(m.gpu_energy_j / m.n_items)
        latencies.append(m.duration_s / (m.n_items / batch))
    mean_j = statistics.fmean(energies)
    return {
        "j_per_inference": mean_j,
        "cv": statistics.stdev(energies) / mean_j if len(energies) > 1 else 0.0,
        "batch_latency_ms": 1000 * statistics.fmean(latencies),
        "items_per_s": batch / statistics.fmean(latencies),
        "power_w": mean_j * batch / statistics.fmean(latencies),
        "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20,
    }


def fidelity(torch: Any, reference: Any, output: Any) -> dict[str, float]:
    reference, output = reference.float(), output.float()
    return {
        "relative_l2_error": float((output - reference).norm() / reference.norm()),
        "top1_agreement": float((output.argmax(-1) == reference.argmax(-1)).float().mean()),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.manual_seed(0)
    monitor = EnergyMonitor([NvmlEdgeCorrectedCounter()], synchronize=torch.cuda.synchronize)
    results: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "idle_power_w": monitor.measure_idle(3.0).power_w,
        "matmul_floor_pj_per_flop": matmul_floor_pj_per_flop(torch, monitor, 3.0),
        "models": {},
    }
    logger.info("floor %.3f pJ/FLOP", results["matmul_floor_pj_per_flop"])
    for name in args.models:
        base = base_model(name)
        check_x = inputs(torch, name, 32, seed=1)
        context = OptimizationContext(
            name, "hub", "classification", {}, 2, inputs(torch, name, 64, seed=2).numpy()
        )
        with torch.inference_mode():
            reference = base.cuda()(check_x.cuda()).cpu()
        base.cpu()
        record: dict[str, Any] = {"macs": count_macs(base, check_x[:1]), "variants": {}}
        variants = CONV_VARIANTS if name == "resnet50" else tuple(VARIANTS)
        for variant in (v for v in args.variants if v in variants):
            row: dict[str, Any] = {}
            try:
                model, row = build(torch, name, base, variant, context)
                model = place(model, "cuda")
                with torch.inference_mode():
                    row.update(fidelity(torch, reference, model(check_x.cuda()).cpu()))
                row["batches"] = {
                    str(batch): measure_cell(
                        torch, monitor, model, inputs(torch, name, batch, 3).cuda(), args
                    )
                    for batch in args.batches
                }
            except (NotApplicable, RuntimeError, ValueError) as error:
                row["error"] = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300]}"
            record["variants"][variant] = row
            results["models"][name] = record
            write(results, args.out)  # after every variant: a call cut off at its limit keeps what it measured
            logger.info("%s/%s: %s", name, variant, json.dumps(row, default=str)[:600])
            model = None
            torch.cuda.empty_cache()
    return results


def write(results: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    stem = "hopper_techniques_" + results["gpu"].lower().replace("nvidia", "").split()[0]
    path = out / f"{stem}.json"
    path.write_text(json.dumps(results, indent=1, default=str))
    path.with_suffix(".md").write_text(render(results))
    return path


def render(r: dict[str, Any]) -> str:
    floor = r["matmul_floor_pj_per_flop"]
    lines = [
        f"# Hopper-native techniques on {r['gpu']} (NVML counter, edge-corrected)",
        "",
        f"torch {r['torch']}, started {r['started']}; windows >= {r['args']['window_s']} s x {r['args']['repeats']} "
        f"after {r['args']['warmup_s']} s warm-up per cell; GPU energy **measured** (idle draw included). "
        f"bf16 matmul floor in the same run: {floor:.3f} pJ/FLOP. Idle: "
        f"{', '.join(f'{k} {v:.0f} W' for k, v in r['idle_power_w'].items())}. Random weights (architecture only): "
        "fidelity against fp32 on one batch of 32 instead of accuracy. Each variant went through its file "
        "(safetensors, structure rebuilt from its steps) and `runtimes.pytorch.place`. Command: "
        "`python bench/hopper_techniques.py --out bench/results`.",
        "",
        "| model | variant | batch | J/inference | vs bf16 | CV | batch ms | items/s | W | pJ/FLOP (x floor) | GPU MiB | rel. L2 err | top-1 agree |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, record in r["models"].items():
        bf16 = record["variants"].get("bf16", {}).get("batches", {})
        for variant, row in record["variants"].items():
            if "error" in row:
                lines.append(f"| {name} | {variant} | — | {row['error'][:160]} |" + " |" * 9)
                continue
            for batch, cell in row["batches"].items():
                ratio = cell["j_per_inference"] / bf16[batch]["j_per_inference"] if batch in bf16 else None
                pj = 1e12 * cell["j_per_inference"] / (2 * record["macs"])
                lines.append(
                    f"| {name} | {variant} | {batch} | {cell['j_per_inference']:.4g} | "
                    f"{'' if ratio is None else f'{ratio:.2f}x'} | {100 * cell['cv']:.1f}% | {cell['batch_latency_ms']:.2f} | "
                    f"{cell['items_per_s']:.0f} | {cell['power_w']:.0f} | {pj:.2f} ({pj / floor:.1f}x) | "
                    f"{cell['peak_memory_mib']:.0f} | {row['relative_l2_error']:.4f} | {row['top1_agreement']:.3f} |"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROJECT / "bench/results")
    parser.add_argument("--render", type=Path, help="rewrite the Markdown beside this JSON and stop")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--batches", nargs="*", type=int, default=list(BATCHES))
    parser.add_argument("--window-s", type=float, default=1.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup-s", type=float, default=1.0)
    args = parser.parse_args()
    if args.render:
        args.render.with_suffix(".md").write_text(render(json.loads(args.render.read_text())))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    sys.stdout.write(render(run(args)))


if __name__ == "__main__":
    main()
