"""bench/results/estimate.md: both estimators against the H100's counter-measured energy of whole
models, on architectures held out of every fit.

    python bench/estimate_report.py      # reads bench/results/estimate_*.json

Counts come from ``green_deploy.estimate.counts`` (here, on the CPU: the same architectures the
GPU ran). The learned predictor is trained on the layer micro-benchmarks only; its correction and
the theoretical model's calibration are fitted on the other architectures' whole-model
measurements (leave one architecture out: the predicted one is never in the fit).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))
sys.path.insert(0, str(PROJECT))

from bench.estimate_gpu import HUB_MODELS, ZOO_MODELS  # noqa: E402

from green_deploy.estimate.benchmarks import BITS, layer_samples  # noqa: E402
from green_deploy.estimate.counts import count_torch, with_bits  # noqa: E402
from green_deploy.estimate.horowitz import HOROWITZ_45NM  # noqa: E402
from green_deploy.estimate.predictor import Correction, LayerPredictor  # noqa: E402
from green_deploy.estimate.theoretical import apply_scales, errors, estimate_model, fit_scales  # noqa: E402
from green_deploy.evaluate.summary import markdown_table  # noqa: E402

RESULTS = PROJECT / "bench/results"


def model_counts() -> dict[str, Any]:
    from bench.evaluate_gpu import hub_model

    from green_deploy.zoo.artifacts import load_torch_model

    counts = {}
    with np.load(PROJECT / ".gpu_bundle/examples.npz") as examples:
        for name in ZOO_MODELS:
            model = load_torch_model(PROJECT / "data/06_models/zoo" / name / "torch").eval()
            counts[name] = count_torch(model, examples[name])
    for name in HUB_MODELS:
        model, example, _ = hub_model(name, False)
        counts[name] = count_torch(model.eval(), example)
    return counts


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    # sync: the device waited for after every call (the first run, attention scores and glue later);
    # queued: calls queued back to back as a model's layers are (the second run, glue later)
    glue_rows = json.loads((RESULTS / "estimate_layers_glue.json").read_text())["rows"]
    synced_rows = json.loads((RESULTS / "estimate_layers.json").read_text())["rows"]
    synced_rows += json.loads((RESULTS / "estimate_layers_sdpa.json").read_text())["rows"]
    synced_rows += [row for row in glue_rows if row["mode"] == "sync"]
    queued_rows = json.loads((RESULTS / "estimate_layers_queued.json").read_text())["rows"]
    queued_rows += [row for row in glue_rows if row["mode"] == "queued"]
    models = json.loads((RESULTS / "estimate_models.json").read_text())
    repeats = json.loads((RESULTS / "estimate_models_repeats.json").read_text())
    windows = pd.DataFrame(models["rows"] + repeats["rows"])
    measured = (
        windows.groupby(["model", "dtype", "batch"], sort=False)["energy_per_example_j"]
        .agg(measured_j="mean", windows="size", spread_pct=lambda v: 100 * (v.max() - v.min()) / v.mean())
        .reset_index()
    )
    window_vs_mean = errors(
        list(windows.energy_per_example_j),
        list(windows.merge(measured, on=["model", "dtype", "batch"]).measured_j),
    )
    profiled = {
        (row["model"], row["dtype"], row["batch"]): row["kernels"]
        for row in json.loads((RESULTS / "estimate_profile.json").read_text())["rows"]
    }
    predictors, layer_fits, n_samples = {}, {}, {}
    for mode, rows in (("sync", synced_rows), ("queued", queued_rows)):
        samples = layer_samples(rows)
        predictors[mode] = LayerPredictor.fit(samples)
        n_samples[mode] = len(samples)
        layer_fits[mode] = errors(
            [predictors[mode].layer_energy_j(s.layer, s.batch, s.compute_bits) / s.batch for s in samples],
            [s.energy_per_example_j for s in samples],
        )
    counts = model_counts()
    table = []
    for row in measured.to_dict("records"):
        bits = BITS[row["dtype"]]
        count = counts[row["model"]] if bits == 32 else with_bits(counts[row["model"]], 16)
        predictions = {
            mode: predictor.predict(count, row["batch"], bits) for mode, predictor in predictors.items()
        }
        theoretical = estimate_model(count.layers, HOROWITZ_45NM)
        table.append(
            {
                "model": row["model"],
                "dtype": row["dtype"],
                "batch": row["batch"],
                "measured_j": row["measured_j"],
                "windows": row["windows"],
                "spread_pct": row["spread_pct"],
                "macs": sum(layer.macs for layer in count.layers),
                "layers": predictions["queued"].layers,
                "kernels_profiled": profiled.get((row["model"], row["dtype"], row["batch"])),
                "uncovered": ", ".join(
                    sorted({u.split(" (")[1][:-1] for u in predictions["queued"].uncovered})
                ),
                "sync_sum_j": predictions["sync"].energy_per_example_j,
                "queued_sum_j": predictions["queued"].energy_per_example_j,
                "horowitz_j": theoretical.energy_j,
                "_theoretical": theoretical,
            }
        )
    frame = pd.DataFrame(table)
    predicted: dict[str, list[float]] = {"sync_learned_j": [], "queued_learned_j": [], "calibrated_j": []}
    for _, row in frame.iterrows():
        train = frame[frame.model != row.model]  # leave the architecture out
        for mode in ("sync", "queued"):
            correction = Correction.fit(train[f"{mode}_sum_j"], train.batch, train.measured_j)
            predicted[f"{mode}_learned_j"].append(correction.apply(row[f"{mode}_sum_j"], row.batch))
        same_batch = train[train.batch == row.batch]
        scales = fit_scales(list(same_batch._theoretical), list(same_batch.measured_j))
        predicted["calibrated_j"].append(apply_scales(row._theoretical, scales).energy_j)
    frame = frame.assign(**predicted).drop(columns="_theoretical")
    estimators = {
        "learned, layers measured synced: layer sum alone": "sync_sum_j",
        "learned, layers measured synced: + correction (held out)": "sync_learned_j",
        "learned, layers measured queued: layer sum alone": "queued_sum_j",
        "learned, layers measured queued: + correction (held out)": "queued_learned_j",
        "theoretical: Horowitz 45 nm, uncalibrated": "horowitz_j",
        "theoretical: calibrated per term and batch size (held out)": "calibrated_j",
    }
    for column in estimators.values():
        frame[column.replace("_j", "_error_pct")] = (
            100 * (frame[column] - frame.measured_j) / frame.measured_j
        )

    def fit_line(column: str, subset: pd.DataFrame) -> dict[str, Any]:
        fit = errors(list(subset[column]), list(subset.measured_j))
        return {"MAPE (%)": fit.mape_percent, "R²": fit.r2, "runs": fit.n}

    summary = []
    for label, column in estimators.items():
        for scope, subset in (
            ("all", frame),
            ("batch 1", frame[frame.batch == 1]),
            ("batch 32", frame[frame.batch == 32]),
        ):
            summary.append({"estimator": label, "scope": scope, **fit_line(column, subset)})
    error_columns = {
        "sync_learned_error_pct": "learned (synced layers) |error| %",
        "queued_learned_error_pct": "learned (queued layers) |error| %",
        "calibrated_error_pct": "calibrated theoretical |error| %",
    }
    per_model = (
        frame.groupby("model")[list(error_columns)]
        .agg(lambda v: float(np.mean(np.abs(v))))
        .reset_index()
        .rename(columns=error_columns)
    )
    meta = models["meta"]
    judged = fit_line("queued_learned_j", frame)  # chosen before the second round was measured
    others = {
        "synced layers, layer sum alone": fit_line("sync_sum_j", frame),
        "synced layers + correction": fit_line("sync_learned_j", frame),
        "queued layers, layer sum alone": fit_line("queued_sum_j", frame),
    }
    lines = [
        "# Energy predicted before running, against the H100's energy counter",
        "",
        f"{meta['device']}, torch {meta['torch']}, sessions of {meta['started']} and {repeats['meta']['started']}; "
        f"idle {meta['idle_power_w']:.0f} W. "
        "Commands: `python bench/estimate_gpu.py run --bundle .gpu_bundle --out DIR` (GPU machine), then "
        "`python bench/estimate_report.py` here.",
        "",
        "Measured: total GPU energy per example from `nvmlDeviceGetTotalEnergyConsumption` around windows of "
        f">= {meta['window_s']:g} s of back-to-back synchronised calls (after {meta['warmup_s']:g} s of warm-up), "
        "PyTorch eager, fp32 and fp16, batch 1 and 32. Whole models: the zoo's four PyTorch baselines that fit "
        "a device call and ResNet-50, ViT-B/16, BERT-base, GPT-2 (random weights). Each figure is the mean of "
        f"{int(frame.windows.min())} windows from two device sessions (`estimate_models.json`, "
        "`estimate_models_repeats.json`); one window against that mean is itself off by "
        f"**{window_vs_mean.mape_percent:.1f}%** (MAPE), up to {frame.spread_pct.max():.0f}% apart at batch 1: "
        "there the GPU idles between kernels (125-150 W) and the energy is the host's Python time, which "
        "differs between machines of the same kind (ResNet-50 fp32: 4.1 ms per call in one session, 9.3 ms in "
        "the other). No estimator can be closer than that noise.",
        "",
        "The learned predictor is fitted on layer windows only, measured two ways: synced (the device waited "
        f"for after every call; {n_samples['sync']} windows, layer-level fit MAPE {layer_fits['sync'].mape_percent:.1f}%) "
        f"and queued (calls queued back to back as inside a model; {n_samples['queued']} windows, "
        f"{layer_fits['queued'].mape_percent:.1f}%). Layers include the glue kernels a model launches between "
        "them (residual additions, concatenations, reductions, position indices), and an elementwise layer "
        "costs its kernels (transformers' tanh-GELU in GPT-2 launches eight). Its correction "
        "(scale × layer sum + a per-call constant) and the theoretical model's per-term calibration (per batch "
        "size) are fitted on the other seven architectures for each prediction: every figure below is for an "
        "architecture held out of the fit.",
        "",
        "**Target MAPE <= 15% on held-out architectures, judged on the estimator chosen before the second "
        f"round was measured (queued layers + correction): {judged['MAPE (%)']:.1f}% (R² {judged['R²']:.3f}, "
        f"{judged['runs']} runs): {'met' if judged['MAPE (%)'] <= 15 else 'NOT met'}.** Others: "
        + "; ".join(f"{name} {fit['MAPE (%)']:.1f}% (R² {fit['R²']:.3f})" for name, fit in others.items())
        + ". The theoretical model is far from it (calibrated "
        f"{fit_line('calibrated_j', frame)['MAPE (%)']:.0f}%): it costs operations only, and at batch 1 "
        "the energy is mostly the time a model keeps the GPU powered, which no operation count carries.",
        "",
        "## How this evaluation came about",
        "",
        "A first round (same layer windows, one window per model, no glue kernels and one kernel per "
        "activation) reached 15.9% for the synced layer sum alone, 18.3% with the correction and 21.7% for "
        "queued layers + correction. Its largest misses were counting gaps, not regression error: GPT-2's "
        "activation (`NewGELUActivation`, eight kernels counted as one) and the residual additions, "
        "concatenations and index ops that containers run between layers, which no layer counted. The second "
        "round was decided before it was measured and run once: count those kernels (`counts.count_torch`'s "
        "`TorchDispatchMode`), benchmark seven glue ops, measure every model twice more, and judge queued "
        "layers + correction (a model's layers run queued and it waits once per request, which the per-call "
        "term is for). Nothing was tuned on the held-out errors afterwards. The gain is the counting's: on "
        "these same averaged measurements the first round's counter (commit 8b4661d) scores 19.3% (synced "
        "layer sum) and 23.2% (queued layers + correction).",
        "",
        "`kedro run --pipeline=estimate` predicts every variant with the synced layer sum (no whole-model fit "
        "needed; `estimate.layer_benchmarks`).",
        "",
        "## Errors",
        "",
        markdown_table(pd.DataFrame(summary)),
        "",
        "## Per architecture (mean |error| over dtype and batch)",
        "",
        markdown_table(per_model),
        "",
        "## Every run",
        "",
        markdown_table(
            frame[
                [
                    "model",
                    "dtype",
                    "batch",
                    "measured_j",
                    "spread_pct",
                    "sync_sum_j",
                    "sync_learned_j",
                    "queued_sum_j",
                    "queued_learned_j",
                    "horowitz_j",
                    "calibrated_j",
                    "layers",
                    "kernels_profiled",
                    "uncovered",
                ]
            ]
        ),
        "",
        "Uncovered layer kinds (not in the micro-benchmarks) are left out of the layer sum and named above, "
        "not costed as zero silently. `layers`: layers and glue kernels counted; `kernels_profiled`: device "
        "kernels one forward launched on the H100 (torch.profiler; cuDNN adds layout transposes in fp16). "
        "The uncalibrated Horowitz figures are 45 nm arithmetic and SRAM/DRAM "
        "access energies: they leave out everything a GPU spends besides them (idle and static power, launch "
        "and synchronisation, clocks), which is why they are orders of magnitude below the counter.",
    ]
    (RESULTS / "estimate.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
