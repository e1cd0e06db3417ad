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


def variants_section(predictors: dict[str, LayerPredictor], baselines: pd.DataFrame) -> list[str]:
    """The zoo's GPU-runnable variants (pruned, 2:4, bf16) beside their baselines, measured in one
    session: the synced layer sum, queued layers + the correction fitted on the 32 baseline runs of
    the main table, and whether the predicted saving matches the measured one."""
    from bench.estimate_gpu import _model

    stored = json.loads((RESULTS / "estimate_variants.json").read_text())
    measured = (
        pd.DataFrame(stored["rows"])
        .groupby(["model", "dtype", "batch"], sort=False)["energy_per_example_j"]
        .mean()
        .reset_index(name="measured_j")
    )
    correction = Correction.fit(baselines.queued_sum_j, baselines.batch, baselines.measured_j)
    counts = {
        name: count_torch(*_model(PROJECT / ".gpu_bundle", name, False)) for name in measured.model.unique()
    }
    rows = []
    for row in measured.to_dict("records"):
        count = with_bits(counts[row["model"]], 16) if row["dtype"] == "float16" else counts[row["model"]]
        bits = BITS[row["dtype"]]
        sync_j = predictors["sync"].predict(count, row["batch"], bits).energy_per_example_j
        queued_j = predictors["queued"].predict(count, row["batch"], bits).energy_per_example_j
        rows.append(
            {**row, "sync_sum_j": sync_j, "queued_learned_j": correction.apply(queued_j, row["batch"])}
        )
    frame = pd.DataFrame(rows)
    frame["base"] = frame.model.str.split("/").str[0]
    baseline = frame[~frame.model.str.contains("/")].set_index(["base", "batch", "dtype"])
    variants = frame[frame.model.str.contains("/")].copy()
    # a variant against its baseline at the same batch, in its own dtype (bf16 variants: the fp32 one)
    keys = list(
        zip(variants.base, variants.batch, variants.dtype.replace("bfloat16", "float32"), strict=True)
    )
    variants["measured_ratio"] = variants.measured_j.to_numpy() / baseline.loc[keys, "measured_j"].to_numpy()
    variants["predicted_ratio"] = variants.sync_sum_j.to_numpy() / baseline.loc[keys, "sync_sum_j"].to_numpy()
    fits = {
        "variants, synced layer sum (no whole-model fit)": errors(
            list(variants.sync_sum_j), list(variants.measured_j)
        ),
        "variants, queued layers + correction (fitted on the 32 runs above)": errors(
            list(variants.queued_learned_j), list(variants.measured_j)
        ),
        "their baselines in the same session, synced layer sum": errors(
            list(baseline.sync_sum_j), list(baseline.measured_j)
        ),
    }
    same_work = variants[variants.model.str.endswith("pt_prune50_global")].measured_ratio
    earlier = baselines.set_index(["model", "batch", "dtype"]).measured_j
    shift = np.abs(baseline.measured_j / earlier.loc[baseline.index].to_numpy() - 1)
    lstm_bf16 = variants[variants.model == "lstm_langid/pt_bf16"]
    return [
        "## Optimized variants",
        "",
        f"The zoo's PyTorch variants whose kernels run on a GPU ({variants.model.nunique()}: magnitude-pruned "
        "50%, structured 30%, 2:4 fine-tuned, bf16; int8 kernels are CPU-only), each beside its baseline in "
        f"one device session ({stored['meta']['started']}, 2 windows each), predicted from their own counts. "
        "Their architectures are in the correction's fit, so this checks what the counts see of an "
        "optimization, not generalisation to new architectures.",
        "",
        *(
            f"- {label}: MAPE **{fit.mape_percent:.1f}%**, R² {fit.r2:.3f} ({fit.n} runs)"
            for label, fit in fits.items()
        ),
        f"- These models take about a millisecond per call and leave the GPU near idle: their energy is "
        f"the host's time. This session's baselines differ from the means of the table above by "
        f"{100 * float(shift.mean()):.0f}% on average, and magnitude-pruned variants, which run the same dense "
        f"kernels as their baselines, measure {same_work.min():.2f}-{same_work.max():.2f}x of them. Savings "
        "smaller than that are not resolved on these models by one-second windows; the predictor says 1.00x "
        "for magnitude pruning (a zero weight costs what any weight does in a dense kernel) and "
        f"{variants[variants.model.str.contains('structured')].predicted_ratio.min():.2f}-"
        f"{variants[variants.model.str.contains('structured')].predicted_ratio.max():.2f}x for structured "
        "pruning.",
        f"- One real effect the counts miss: the bf16 LSTM costs {lstm_bf16.measured_ratio.min():.1f}-"
        f"{lstm_bf16.measured_ratio.max():.1f}x its fp32 baseline, predicted "
        f"{lstm_bf16.predicted_ratio.min():.2f}-{lstm_bf16.predicted_ratio.max():.2f}x: the 16-bit LSTM windows "
        "are fp16 only. PyTorch warned from `_VF.lstm` for this variant alone (the message was cut from the "
        "log); the cause was not established.",
        "",
        markdown_table(
            variants[
                [
                    "model",
                    "dtype",
                    "batch",
                    "measured_j",
                    "sync_sum_j",
                    "queued_learned_j",
                    "measured_ratio",
                    "predicted_ratio",
                ]
            ]
        ),
        "",
    ]


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
        "Commands (GPU machine, `python bench/estimate_gpu.py run --bundle .gpu_bundle --out DIR` plus): "
        "`--modes sync` (synced layers and models), `--layers-only --modes queued`, `--layers-only --kinds "
        "ScaledDotProductAttention --modes sync` (`_sdpa`), `--layers-only --kinds Pointwise Copy Reduction "
        "Factory` (`_glue`), `--models-only --repeats 2 --profile` (`estimate_models_repeats.json`, "
        "`estimate_profile.json`), `--models-only --models variants --repeats 2` (`estimate_variants.json`); "
        "then `python bench/estimate_report.py` here.",
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
    lines += ["", *variants_section(predictors, frame)]
    (RESULTS / "estimate.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
