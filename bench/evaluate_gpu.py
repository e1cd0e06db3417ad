"""The evaluate study on a GPU: zoo variants (PyTorch side) and hub architectures at realistic
sizes, measured by the evaluate harness with the GPU's NVML energy counter read around every
repetition (``evaluate.harness.RepetitionMeter``).

The GPU machine has neither TensorFlow nor the zoo's raw data, and takes 64 MiB per call, so
the work is split:

    python bench/evaluate_gpu.py pack --bundle .gpu_bundle       # here: variants + test splits
    python bench/evaluate_gpu.py zoo --bundle .gpu_bundle --out bench/results   # GPU machine
    python bench/evaluate_gpu.py hub --out bench/results                        # GPU machine
    python bench/evaluate_gpu.py report --out bench/results      # evaluate_h100.md from the JSON

``zoo`` runs ``StudyRunner`` exactly as ``kedro run --pipeline=evaluate`` does (local servers,
accuracy on the full test split, adaptive repetitions) with ``devices: [cuda]``, without Kedro
and MLflow (not installed there). ``hub`` serves ResNet-50, ViT-B/16, BERT-base and GPT-2
(architecture only: random weights, accuracy not applicable) through the in-process worker in
fp32, fp16 and bf16 (the project's ``half_precision`` technique) and relates J/inference to the
model's FLOPs. ``--dry-run`` runs either on the CPU with a fake counter and tiny models.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))
sys.path.insert(0, str(PROJECT))

from green_deploy.evaluate.harness import (  # noqa: E402
    Client,
    EvaluationSet,
    RepetitionMeter,
    batches,
    measure_cell,
    summarize,
    warm_up,
)
from green_deploy.evaluate.study import ProtocolSettings, StudySettings  # noqa: E402
from green_deploy.evaluate.summary import markdown_table  # noqa: E402

logger = logging.getLogger("evaluate_gpu")

# Zoo models whose PyTorch variants fit the GPU machine's 64 MiB per call (MiniLM's are 90 MB
# each, EfficientNet's and the n-gram models' 8-13 MB each); one per domain at least.
ZOO_MODELS = ("resnet_fmnist", "vit_fmnist", "lstm_langid", "bytelm_stdlib")
PROTOCOL = {
    # windows of >= 1 s are within ~2% on this counter (MEASUREMENT_NOTES.md); the GPU ramps
    # clocks for seconds after idle, hence the longer warm-up
    "repetition_s": 1.0,
    "warmup_s": 2.0,
    "idle_s": 0.3,
    "min_repetitions": 3,
    "max_repetitions": 8,
    "max_cell_s": 10.0,
}
BATCH_SIZES = (1, 32)
# --dry-run checks the plumbing on a CPU, quickly
DRY_RUN_PROTOCOL = {**PROTOCOL, "repetition_s": 0.05, "warmup_s": 0.05, "max_repetitions": 3}
HUB_VARIANTS = {
    "fp32": [],
    "fp16": [("half_precision", {"dtype": "float16"})],
    "bf16": [("half_precision", {"dtype": "bfloat16"})],
}


# ---- pack (this machine) ----------------------------------------------------------------------
def pack(bundle: Path) -> None:
    from kedro.config import OmegaConfigLoader

    from green_deploy.evaluate.runner import evaluation_set
    from green_deploy.zoo.spec import dataset_settings, select_entry

    zoo = OmegaConfigLoader(str(PROJECT / "conf"), base_env="base", default_run_env="local")["parameters"][
        "zoo"
    ]
    variants = pd.read_parquet(PROJECT / "data/07_model_output/variants.parquet")
    rows = variants[
        (variants.status == "ok") & (variants.runtime == "pytorch") & variants.model_id.isin(ZOO_MODELS)
    ]
    if bundle.exists():
        shutil.rmtree(bundle)
    (bundle / "eval").mkdir(parents=True)
    for folder in sorted(set(rows.artifact_dir)):
        shutil.copytree(PROJECT / folder, bundle / folder)
    rows.to_parquet(bundle / "variants.parquet")
    for model_id in ZOO_MODELS:
        entry = select_entry(zoo["models"], model_id)
        data = evaluation_set(entry, dataset_settings(zoo.get("datasets") or {}, entry))
        np.savez_compressed(
            bundle / "eval" / f"{model_id}.npz",
            x=data.x,
            y=np.asarray([]) if data.y is None else data.y,
            pairs=np.asarray([]) if data.pairs is None else data.pairs,
            meta=json.dumps({"task": data.task, "metric": data.metric, "domain": data.domain}),
        )
    size_mb = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file()) / 1e6
    print(f"packed {len(rows)} variants of {len(ZOO_MODELS)} models into {bundle} ({size_mb:.1f} MB)")


def load_evaluation_set(bundle: Path, model_id: str) -> EvaluationSet:
    with np.load(bundle / "eval" / f"{model_id}.npz") as saved:
        meta = json.loads(str(saved["meta"]))
        y, pairs = saved["y"], saved["pairs"]
        return EvaluationSet(
            meta["task"],
            meta["metric"],
            saved["x"],
            y if y.size else None,
            pairs if pairs.size else None,
            meta["domain"],
        )


# ---- the GPU counter ----------------------------------------------------------------------------
def open_meter(dry_run: bool) -> RepetitionMeter:
    nvml: Any = None
    if dry_run:
        from tests.energy.fake_pynvml import FakeNVML

        nvml = FakeNVML(power_w=300.0)

        def tick() -> None:
            while True:
                time.sleep(0.01)
                nvml.advance(0.01)

        threading.Thread(target=tick, daemon=True).start()
    meter = RepetitionMeter.open(PROTOCOL["idle_s"], nvml=nvml)
    if meter is None:
        raise SystemExit("no NVML energy counter on this machine (use --dry-run on a CPU)")
    return meter


def machine() -> dict[str, Any]:
    import torch

    info = {"torch": torch.__version__, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# ---- zoo (GPU machine) --------------------------------------------------------------------------
def run_zoo(bundle: Path, out: Path, dry_run: bool, models: list[str]) -> None:

    from green_deploy.evaluate.runner import StudyRunner, current_cells, study_deployers
    from green_deploy.evaluate.store import StudyStore
    from green_deploy.evaluate.study import expand_cells

    device = "cpu" if dry_run else "cuda"
    rows = [
        r for r in pd.read_parquet(bundle / "variants.parquet").to_dict("records") if r["model_id"] in models
    ]
    for row in rows:
        row["artifact_dir"] = str(bundle / row["artifact_dir"])
    settings = StudySettings.parse(
        {
            "study": "h100",
            "targets": ["local"],
            "devices": [device],
            "batch_sizes": list(BATCH_SIZES),
            "protocol": DRY_RUN_PROTOCOL if dry_run else PROTOCOL,
        }
    )
    meter = open_meter(dry_run)
    store = StudyStore(out / "evaluate_h100_study")
    deploy = {"work_dir": str(out / "evaluate_h100_deploy"), "local": {"start_timeout_s": 300}}
    runner = StudyRunner(
        settings,
        rows,
        study_deployers(settings, deploy, meter=meter),
        lambda model_id: load_evaluation_set(bundle, model_id),
        store,
        deploy_work_dir=out / "evaluate_h100_deploy",
        meter=meter,
    )
    try:
        outcome = runner.run(expand_cells(rows, settings))
    finally:
        meter.close()
    cells = [c["row"] for c in current_cells(store, rows, settings)]
    result = {
        **machine(),
        "protocol": PROTOCOL,
        "idle_power_w": meter.monitor.idle.power_w if meter.monitor.idle else {},
        "failures": [f.__dict__ for f in outcome.failures],
        "cells": cells,
    }
    (out / "evaluate_h100_zoo.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"zoo: {outcome.measured} cells measured, {len(outcome.failures)} variants failed")


# ---- hub (GPU machine) --------------------------------------------------------------------------
def hub_model(name: str, dry_run: bool) -> tuple[Any, np.ndarray, str]:
    """A hub architecture as a module from an input batch to a logits tensor, and one input."""
    import torch
    from bench.optimize_gpu import MODELS, TINY, logits_only

    from green_deploy.zoo.hub import load_hub_model, parse_hub_entry

    raw, kind = {
        **MODELS,
        "gpt2": (
            {"repo_id": "openai-community/gpt2", "auto_class": "AutoModelForCausalLM", "model_type": "gpt2"},
            "text",
        ),
    }[name]
    tiny = {**TINY, "gpt2": {"n_embd": 32, "n_layer": 2, "n_head": 4}}
    overrides = tiny[raw["model_type"]] if dry_run else {}
    entry = parse_hub_entry(
        name,
        {
            **raw,
            "domain": "cv" if kind == "image" else ("code" if name == "gpt2" else "nlp"),
            "task": "language_modeling" if name == "gpt2" else "classification",
            "architecture_only": True,
            "config_overrides": overrides,
        },
    )
    inner = load_hub_model(entry).model
    if name == "gpt2":

        class NextTokenLogits(torch.nn.Module):
            """What a completion server returns: the next token's logits, not all positions'."""

            def __init__(self, model: torch.nn.Module):
                super().__init__()
                self.inner = model

            def forward(self, ids):
                return self.inner(ids).logits[:, -1, :]

        model = NextTokenLogits(inner).eval()
    else:
        model = logits_only(inner)
    rng = np.random.default_rng(0)
    if kind == "image":
        size = overrides.get("image_size", 224)
        example = rng.standard_normal((1, 3, size, size)).astype(np.float32)
    else:
        example = rng.integers(1000, 5000, (1, 128)).astype(np.int64)
    return model, example, entry.domain


def run_hub(out: Path, dry_run: bool, names: list[str]) -> None:
    import torch

    from green_deploy.deploy.inprocess import InProcessDeployer
    from green_deploy.optimize.base import OptimizationContext
    from green_deploy.optimize.macs import count_macs
    from green_deploy.optimize.techniques import get_technique
    from green_deploy.serving.model import InputSpec, ServedModel, predictor

    device = "cpu" if dry_run else "cuda"
    protocol = ProtocolSettings(**(DRY_RUN_PROTOCOL if dry_run else PROTOCOL))
    meter = open_meter(dry_run)
    deployer = InProcessDeployer(device=device, gpu_energy=False, max_items=max(BATCH_SIZES))
    cells = []
    try:
        for name in names:
            base, example, domain = hub_model(name, dry_run)
            macs = count_macs(base, torch.as_tensor(example))
            context = OptimizationContext(name, "hub", "classification", {}, 2, example)
            for variant, recipe in HUB_VARIANTS.items():
                model = base
                for technique, settings in recipe:
                    model = get_technique(technique).apply(model, settings, context).model
                served = ServedModel(
                    variant,
                    "pytorch",
                    predictor("pytorch", model, device=device),
                    InputSpec.from_example(example),
                )
                deployment = deployer.serve(name, served)
                try:
                    client = Client(deployer, deployment, max(BATCH_SIZES))
                    pool = np.repeat(example, max(BATCH_SIZES) * 4, axis=0)
                    if example.dtype == np.float32:
                        pool = pool + np.random.default_rng(1).standard_normal(pool.shape).astype(np.float32)
                    for batch_size in BATCH_SIZES:
                        inputs = batches(pool, batch_size, 0)
                        warm_up(client, inputs, protocol.warmup_s)
                        row = summarize(measure_cell(client, inputs, protocol, meter=meter))
                        row.update(
                            model_id=name, variant_id=variant, domain=domain, batch_size=batch_size, macs=macs
                        )
                        cells.append(row)
                        logger.info(
                            "%s/%s bs%d: %.4g J/inference (CV %.1f%%, %d reps)",
                            name,
                            variant,
                            batch_size,
                            row["energy_per_item_j"],
                            100 * (row["energy_cv"] or 0),
                            row["n_repetitions"],
                        )
                finally:
                    deployer.teardown(deployment)
                del model
            del base
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    finally:
        meter.close()
    result = {
        **machine(),
        "protocol": PROTOCOL,
        "idle_power_w": meter.monitor.idle.power_w if meter.monitor.idle else {},
        "cells": cells,
    }
    (out / "evaluate_h100_hub.json").write_text(json.dumps(result, indent=1, default=str))


# ---- report (anywhere) --------------------------------------------------------------------------
def report(out: Path) -> str:
    """``evaluate_h100.md`` from the two JSON files."""
    zoo = json.loads((out / "evaluate_h100_zoo.json").read_text())
    hub = json.loads((out / "evaluate_h100_hub.json").read_text())
    lines = [
        "# The evaluate study on an H100 (NVML energy counter)",
        "",
        f"{zoo.get('gpu', 'CPU (dry run)')}, torch {zoo['torch']}; zoo study started {zoo['started']}, hub "
        f"models {hub['started']}. Command: `python bench/evaluate_gpu.py zoo|hub` (see its docstring).",
        "",
        "GPU energy: the NVML total-energy counter, read by the harness around each repetition (>= "
        f"{PROTOCOL['repetition_s']} s of back-to-back requests), **measured**. CPU and DRAM of the server "
        "process: CPU-time and RSS estimates (this VM exposes no RAPL), **estimated**, and included in the "
        "total. Repetitions until the 95% CI of J/inference is within +-5% (at least "
        f"{PROTOCOL['min_repetitions']}, at most {PROTOCOL['max_repetitions']} or {PROTOCOL['max_cell_s']} s). "
        f"GPU idle power: {_watts(zoo['idle_power_w'])} (zoo run), "
        f"{'; '.join(_watts(run['idle_power_w']) for run in hub.get('runs', [hub]))} (hub runs); "
        "the GPU figures are totals (idle draw included), as the counter reads them.",
        "",
        _precision_line("hub", hub["cells"]),
        _precision_line("zoo", zoo["cells"]),
        "",
        "## Hub architectures at realistic sizes (random weights: accuracy not applicable)",
        "",
        "pJ/FLOP = GPU J/inference / (2 x MACs); the H100's bf16 matmul floor measured here is 1.02 pJ/FLOP.",
        "",
        markdown_table(_cell_table(hub["cells"], accuracy=False)),
    ]
    lines += ["", *_hub_findings(hub["cells"])]
    lines += [
        "",
        "## Zoo variants, PyTorch side (local servers on the GPU, accuracy on the full test split)",
        "",
        f"Models: {', '.join(ZOO_MODELS)} (the others' variants exceed what one call to the GPU machine "
        "carries). Left out on the GPU: int8 variants (PyTorch's int8 kernels are CPU-only) and the "
        "ONNX Runtime, TFLite and Keras runtimes (CPU builds; no TensorFlow there).",
        "",
        markdown_table(_cell_table(zoo["cells"], accuracy=True)),
    ]
    if zoo["failures"]:
        lines += ["", "Not measured:", ""]
        lines += [f"- {f['model_id']}/{f['variant_id']}: {f['reason']}" for f in zoo["failures"]]
    text = "\n".join(lines) + "\n"
    (out / "evaluate_h100.md").write_text(text)
    return text


def _cell_table(cells: list[dict[str, Any]], accuracy: bool) -> pd.DataFrame:
    """One row per cell: energy (total and the GPU's, per FLOP), its precision, speed."""

    c = pd.DataFrame(cells).sort_values(["model_id", "variant_id", "batch_size"], kind="stable")
    table = pd.DataFrame(
        {
            "model": c.model_id,
            "variant": c.variant_id,
            "batch": c.batch_size,
            "GMACs": c.macs / 1e9,
            "J/inference": c.energy_per_item_j,
            "GPU J/inference": c.gpu_energy_per_item_j,
            "CI ± %": c.energy_ci_relative_half_width * 100,
            "CV %": c.energy_cv * 100,
            "reps": c.n_repetitions,
            "GPU pJ/FLOP": c.gpu_energy_per_item_j / (2 * c.macs) * 1e12,
            "p50 ms": c.latency_p50_ms,
            "items/s": c.throughput_items_per_s,
        }
    )
    if accuracy:
        table.insert(9, "reached", c.ci_reached.map({True: "yes", False: "no"}))
        table.insert(10, "accuracy", c.accuracy)
    return table


def _hub_findings(cells: list[dict[str, Any]]) -> list[str]:
    """One line per hub model: what half precision and batching save, against the fp32 baseline."""
    energy = {(c["model_id"], c["variant_id"], c["batch_size"]): c["energy_per_item_j"] for c in cells}
    lines = []
    for model in dict.fromkeys(c["model_id"] for c in cells):
        base1, base32 = energy[(model, "fp32", 1)], energy[(model, "fp32", 32)]
        lines.append(
            f"- {model}: batch 32 takes {base32 / base1:.2f}x the J/inference of batch 1 in fp32; at batch 32 "
            f"fp16 takes {energy[(model, 'fp16', 32)] / base32:.2f}x and bf16 {energy[(model, 'bf16', 32)] / base32:.2f}x "
            f"of fp32, at batch 1 {energy[(model, 'fp16', 1)] / base1:.2f}x and {energy[(model, 'bf16', 1)] / base1:.2f}x."
        )
    return lines


def _precision_line(name: str, cells: list[dict[str, Any]]) -> str:
    """How precise the cells came out: repetition CVs and the share that reached the CI target."""
    cvs = sorted(c["energy_cv"] for c in cells if c.get("energy_cv") is not None)
    reached = sum(bool(c["ci_reached"]) for c in cells)
    by_batch = {
        b: float(
            np.median(
                [c["energy_cv"] for c in cells if c["batch_size"] == b and c.get("energy_cv") is not None]
            )
        )
        for b in sorted({c["batch_size"] for c in cells})
    }
    return (
        f"Repetition CV of J/inference, {name} cells: median {_pct(float(np.median(cvs)))}, max {_pct(cvs[-1])} "
        f"(median by batch size: {', '.join(f'{b}: {_pct(v)}' for b, v in by_batch.items())}); "
        f"{reached} of {len(cells)} cells reached +-5% within the cap."
    )


def _watts(power: dict[str, float]) -> str:
    return ", ".join(f"{w:.0f} W ({source})" for source, w in power.items()) or "not measured"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("step", choices=["pack", "zoo", "hub", "report"])
    parser.add_argument("--bundle", default=".gpu_bundle")
    parser.add_argument("--out", default=str(PROJECT / "bench/results"))
    parser.add_argument("--models", nargs="*", default=["resnet50", "vit_b16", "bert_base", "gpt2"])
    parser.add_argument("--zoo-models", nargs="*", default=list(ZOO_MODELS), choices=ZOO_MODELS)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.step == "pack":
        pack(Path(args.bundle))
    elif args.step == "zoo":
        run_zoo(Path(args.bundle), out, args.dry_run, args.zoo_models)
    elif args.step == "hub":
        run_hub(out, args.dry_run, args.models)
    else:
        print(report(out))


if __name__ == "__main__":
    main()
