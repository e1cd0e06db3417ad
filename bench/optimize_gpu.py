"""PyTorch GPU techniques on hub-size models, with energy from the NVML counter.

For ResNet-50, ViT-B/16 and BERT-base (architecture only: random weights from the model's
configuration, so accuracy is not applicable) it applies the project's own techniques
(``half_precision`` fp16 and bf16, ``structured_pruning`` at 30%, 2:4 ``semi_structured_sparsity``
on the sparse tensor cores, ``torch_compile`` in fp32 and fp16), and measures for the baseline
and every variant: MACs per example, the time and energy of applying the technique, and the
energy per inference (batch ``--batch``) over windows of at least ``--window-s`` seconds,
repeated ``--repeats`` times, after warm-up. Writes ``optimize_gpu.json`` and ``optimize_gpu.md``.

    python bench/optimize_gpu.py --out bench/results          # on the GPU machine
    python bench/optimize_gpu.py --dry-run --out /tmp/x       # CPU, fake NVML, tiny models
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
sys.path.insert(0, str(PROJECT))


from green_deploy.energy.monitor import EnergyMonitor  # noqa: E402
from green_deploy.energy.sources.nvml import NvmlEnergyCounter  # noqa: E402
from green_deploy.optimize.base import NotApplicable, OptimizationContext  # noqa: E402
from green_deploy.optimize.macs import count_macs  # noqa: E402
from green_deploy.optimize.techniques import get_technique  # noqa: E402
from green_deploy.zoo.hub import load_hub_model, parse_hub_entry  # noqa: E402

logger = logging.getLogger("optimize_gpu")

MODELS = {
    "resnet50": (
        {
            "repo_id": "microsoft/resnet-50",
            "auto_class": "AutoModelForImageClassification",
            "model_type": "resnet",
        },
        "image",
    ),
    "vit_b16": (
        {
            "repo_id": "google/vit-base-patch16-224",
            "auto_class": "AutoModelForImageClassification",
            "model_type": "vit",
        },
        "image",
    ),
    "bert_base": (
        {
            "repo_id": "google-bert/bert-base-uncased",
            "auto_class": "AutoModelForSequenceClassification",
            "model_type": "bert",
        },
        "text",
    ),
}
TINY = {
    "resnet": {"hidden_sizes": [16, 32, 64, 128], "embedding_size": 16, "depths": [1, 1, 1, 1]},
    "vit": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "image_size": 32,
        "patch_size": 8,
    },
    "bert": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64},
}
# Each variant is a chain of the project's techniques, applied in order.
VARIANTS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "baseline": [],
    "fp16": [("half_precision", {"dtype": "float16"})],
    "bf16": [("half_precision", {"dtype": "bfloat16"})],
    "structured30": [("structured_pruning", {"amount": 0.3})],
    # 2:4 pattern, then fp16 (the sparse kernels take fp16/bf16/int8), then the sparse tensors
    "sparse24_fp16": [("semi_structured_sparsity", {}), ("half_precision", {"dtype": "float16"})],
    # specialised on the measured batch shape (compiled inside the window by the first full batch)
    "compile": [("torch_compile", {"dynamic": False, "warmup_examples": 1})],
    "fp16_compile": [
        ("half_precision", {"dtype": "float16"}),
        ("torch_compile", {"dynamic": False, "warmup_examples": 1}),
    ],
}


def infer_once(model: Any, x: Any) -> None:
    import torch

    with torch.inference_mode():
        model(x)


def logits_only(model: Any) -> Any:
    """Hugging Face models return output objects; the techniques and meters want a tensor."""
    from torch import nn

    class LogitsOnly(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x).logits

    return LogitsOnly(model).eval()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(PROJECT / "bench/results"))
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--window-s", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    import torch

    if args.dry_run:
        import threading

        from tests.energy.fake_pynvml import FakeNVML

        nvml, device, sync = FakeNVML(power_w=300.0), torch.device("cpu"), (lambda: None)

        def tick() -> None:
            while True:
                time.sleep(0.05)
                nvml.advance(0.05)

        threading.Thread(target=tick, daemon=True).start()
    else:
        import pynvml as nvml

        device, sync = torch.device("cuda"), torch.cuda.synchronize
    monitor = EnergyMonitor([NvmlEnergyCounter(nvml=nvml)], synchronize=sync)
    out = Path(args.out)
    json_path = out / "optimize_gpu.json"
    # Several calls (one per model, within the device's per-command limit) fill one result file.
    earlier = json.loads(json_path.read_text()) if json_path.is_file() else {}
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "args": vars(args),
        "models": earlier.get("models", {}),
    }
    if not args.dry_run:
        results["gpu"] = torch.cuda.get_device_name(0)
        results["torch"] = torch.__version__
    results["idle_power_w"] = monitor.measure_idle(3.0 if not args.dry_run else 0.3).power_w
    out.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        raw, kind = MODELS[name]
        overrides = TINY[raw["model_type"]] if args.dry_run else {}
        entry = parse_hub_entry(
            name,
            {
                **raw,
                "domain": "cv" if kind == "image" else "nlp",
                "task": "classification",
                "architecture_only": True,
                "config_overrides": overrides,
            },
        )
        base = logits_only(load_hub_model(entry).model).to(device)
        size = overrides.get("image_size", 224)
        if kind == "image":
            x = torch.randn(args.batch, 3, size, size, device=device)
        else:
            x = torch.randint(1000, 5000, (args.batch, 128), device=device)
        context = OptimizationContext(name, "hub", "classification", {}, 2, x[:2].cpu().numpy())
        base_macs = count_macs(base.cpu(), x[:1].cpu()) if args.dry_run else count_macs(base, x[:1])
        base = base.to(device)
        record: dict[str, Any] = results["models"].get(name, {})
        for variant in args.variants:
            recipe = VARIANTS[variant]
            row: dict[str, Any] = {}
            model = base
            if recipe:
                monitor.begin_window(f"{name}/{variant}/optimize")
                try:
                    notes = []
                    for technique, settings in recipe:
                        result = get_technique(technique).apply(model, settings, context)
                        model = result.model.to(device)
                        notes.append(result.notes)
                    if (
                        any(technique == "semi_structured_sparsity" for technique, _ in recipe)
                        and not args.dry_run
                    ):
                        from green_deploy.optimize.techniques.semi_structured_sparsity import accelerate

                        row["sparse_layers"], row["sparse_layers_refused"] = accelerate(model)
                    row["notes"] = " | ".join(notes)
                    infer_once(model, x)  # torch.compile compiles for this shape here, inside the window
                except NotApplicable as why:
                    row["not_applicable"] = str(why)
                except RuntimeError as error:  # e.g. a sparse kernel refusing a shape at run time
                    row["not_applicable"] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
                finally:
                    m = monitor.end_window(f"{name}/{variant}/optimize")
                row["optimize_s"], row["optimize_energy_j"] = m.duration_s, m.gpu_energy_j
                if "not_applicable" in row:
                    record[variant] = row
                    logger.info("%s/%s: not applicable: %s", name, variant, row["not_applicable"])
                    model = base
                    continue
            pruned = any(technique == "structured_pruning" for technique, _ in recipe)
            row["macs_per_example"] = count_macs(model, x[:1]) if pruned else base_macs

            def infer(model: Any = model, x: Any = x) -> None:
                with torch.inference_mode():
                    model(x)

            warm_end = time.perf_counter() + args.warmup_s
            while time.perf_counter() < warm_end:
                infer()
            energies, latencies = [], []
            for _ in range(args.repeats):
                m = monitor.measure(
                    f"{name}/{variant}", infer, n_items_per_call=args.batch, min_duration_s=args.window_s
                )
                energies.append(m.gpu_energy_j / m.n_items)
                latencies.append(m.duration_s / (m.n_items / args.batch))
            row["j_per_inference"] = statistics.fmean(energies)
            row["j_per_inference_cv"] = (
                statistics.stdev(energies) / row["j_per_inference"] if len(energies) > 1 else 0.0
            )
            row["batch_latency_s"] = statistics.fmean(latencies)
            row["power_w"] = row["j_per_inference"] * args.batch / row["batch_latency_s"]
            record[variant] = row
            logger.info("%s/%s: %s", name, variant, {k: v for k, v in row.items() if k != "notes"})
            del model
        results["models"][name] = record
        json_path.write_text(json.dumps(results, indent=2, default=str))
    (out / "optimize_gpu.md").write_text(render(results))
    print(render(results))  # noqa: T201


def rerender(json_path: Path) -> None:
    """Rewrite the Markdown table from a saved JSON (after the device run)."""
    json_path.with_suffix(".md").write_text(render(json.loads(json_path.read_text())))


def render(r: dict[str, Any]) -> str:
    lines = [
        "# PyTorch GPU techniques on hub-size models (NVML energy counter)",
        "",
        f"{r.get('gpu', 'dry run')}, torch {r.get('torch', '')}, started {r['started']}; batch {r['args']['batch']}, "
        f"windows >= {r['args']['window_s']} s x {r['args']['repeats']} after {r['args']['warmup_s']} s warm-up. "
        "Random weights (architecture only): accuracy not applicable. Command: `python bench/optimize_gpu.py --out bench/results`.",
        "",
        f"Idle power: {', '.join(f'{k} {v:.0f} W' for k, v in r.get('idle_power_w', {}).items())}.",
        "",
        "| model | variant | MACs / example | J / inference (CV) | vs baseline | batch latency (ms) | power (W) | optimizing: s, J |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, record in r["models"].items():
        base = record.get("baseline", {}).get("j_per_inference")
        for variant, row in record.items():
            if "not_applicable" in row:
                lines.append(
                    f"| {name} | {variant} | not applicable: {row['not_applicable'][:100]} | | | | | |"
                )
                continue
            ratio = f"{row['j_per_inference'] / base:.2f}x" if base else ""
            label = variant
            if "sparse_layers" in row:
                label = f"{variant} ({row['sparse_layers']} layers on 2:4 kernels, {row['sparse_layers_refused']} refused)"
            optimize = "—"
            if "optimize_s" in row:
                # a window shorter than the counter's ~100 ms step cannot resolve its energy
                energy = (
                    f"{row['optimize_energy_j']:.0f} J"
                    if row["optimize_s"] >= 0.1
                    else "below counter resolution"
                )
                optimize = f"{row['optimize_s']:.2f} s, {energy}"
            lines.append(
                f"| {name} | {label} | {row['macs_per_example']:,} | {row['j_per_inference']:.4f} ({row['j_per_inference_cv']:.1%}) | "
                f"{ratio} | {row['batch_latency_s'] * 1e3:.1f} | {row['power_w']:.0f} | {optimize} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
