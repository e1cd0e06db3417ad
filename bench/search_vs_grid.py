"""Optuna's search against a grid of the same budget, per model: hypervolume of the energy-accuracy
front after every trial, and the largest energy saving found within 1 point of accuracy.

Both runs go through ``green_deploy.search.runner.search_model`` exactly as
``kedro run --pipeline=search`` does (variants built by the optimize code, one cell per trial
measured by the evaluate harness with the study's protocol, scored on the held-back validation
half; the front measured again on the test split), with the project's configuration
(conf/base) and its own SQLite storage:

    python bench/search_vs_grid.py run --models resnet_fmnist lstm_langid --trials 32
    python bench/search_vs_grid.py report          # bench/results/search.md from the stored studies

Hypervolume is taken on (J/inference relative to the baseline, accuracy) up to the reference
point (1.0, baseline accuracy - 5 points): the area of savings the front dominates among
variants that cost at most the baseline's energy and lose at most 5 points.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

from green_deploy.evaluate.summary import energy_provenance, markdown_table  # noqa: E402
from green_deploy.optimize.runner import RunSettings  # noqa: E402
from green_deploy.pipelines.configured import project_parameters  # noqa: E402
from green_deploy.search.runner import search_model  # noqa: E402
from green_deploy.search.study import SearchSettings  # noqa: E402
from green_deploy.tradeoff.frontier import hypervolume_2d  # noqa: E402
from green_deploy.zoo.spec import dataset_settings, select_entry  # noqa: E402

OUT = PROJECT / "bench/results"
WORK = PROJECT / "data/07_model_output/bench_search"
REFERENCE_LOSS = 0.05
# The grid: 2 methods x 2 ratios x 4 quantizations x 2 fine-tunes = 32 points, kept layers fixed.
GRID = {
    "pruning": ["unstructured", "structured"],
    "amount": [0.3, 0.6],
    "quantization": ["none", "dynamic_int8", "static_int8", "float16"],
    "finetune_steps": [0, 50],
    "keep_layers": ["none"],
}
SPACE = {"pruning": ["unstructured", "structured"], "finetune_steps": [0, 100]}


def _settings(sampler: str, trials: int) -> SearchSettings:
    raw = dict(project_parameters(PROJECT)["search"])
    raw.update(
        study=f"bench-{sampler}",
        n_trials=trials,
        sampler=sampler,
        storage=f"sqlite:///{WORK}/optuna.db",
        work_dir=str(WORK),
        variants_dir=str(PROJECT / "data/06_models/bench_search"),
        space={**raw.get("space", {}), **SPACE},
        grid=GRID if sampler == "grid" else {},
    )
    return SearchSettings.parse(raw)


def run(models: list[str], trials: int) -> None:
    params = project_parameters(PROJECT)
    zoo = params["zoo"]
    for model_id in models:
        entry = select_entry(zoo["models"], model_id)
        for sampler in ("tpe", "grid"):
            started = time.perf_counter()
            outcome = search_model(
                entry,
                dataset_settings(zoo.get("datasets") or {}, entry),
                PROJECT / zoo["models_dir"] / model_id,
                _settings(sampler, trials),
                params["evaluate"],
                params["deploy"],
                RunSettings(**params["optimize"].get("run", {})),
            )
            WORK.mkdir(parents=True, exist_ok=True)
            outcome.trials.to_parquet(WORK / f"{model_id}-{sampler}-trials.parquet")
            pd.DataFrame(outcome.front).to_parquet(WORK / f"{model_id}-{sampler}-front.parquet")
            (WORK / f"{model_id}-{sampler}-duration.json").write_text(
                json.dumps({"duration_s": time.perf_counter() - started})
            )


def _hypervolume_curve(trials: pd.DataFrame, baseline_j: float, baseline_accuracy: float) -> list[float]:
    done = trials[trials.state == "COMPLETE"].sort_values("number")
    curve = []
    for k in range(1, len(done) + 1):
        first = done.iloc[:k]
        curve.append(
            hypervolume_2d(
                first.energy_per_item_j.to_numpy() / baseline_j,
                first.accuracy.to_numpy(),
                (1.0, baseline_accuracy - REFERENCE_LOSS),
            )
        )
    return curve


def _settings_text(trial: pd.Series) -> str:
    names = ("pruning", "amount", "finetune_steps", "keep_layers", "quantization")
    values = {n: trial.get(f"param_{n}") for n in names}
    return ", ".join(
        f"{n} {v:.2f}" if isinstance(v, float) else f"{n} {v}" for n, v in values.items() if v is not None and v == v
    )


def report() -> None:
    lines = [
        "# Optuna search vs a grid of the same budget",
        "",
        "`python bench/search_vs_grid.py run --models resnet_fmnist lstm_langid --trials 32`, then `report`.",
        "Each trial: a variant built by the optimize code, one cell (batch 32, local server, CPU) measured",
        "by the evaluate harness with the study's protocol, scored on the held-back validation half",
        f"(512 items). Hypervolume on (J/inference / baseline, accuracy) up to (1.0, baseline - {REFERENCE_LOSS:g}).",
        "TPE: Optuna 5's TPESampler (6 random start-up trials) over the default space with pruning",
        f"required and fine-tune 0-100 steps; grid: {json.dumps(GRID)}.",
        "",
    ]
    summary, best = [], []
    for path in sorted(WORK.glob("*-tpe-trials.parquet")):
        model_id = path.name.removesuffix("-tpe-trials.parquet")
        for sampler in ("tpe", "grid"):
            trials = pd.read_parquet(WORK / f"{model_id}-{sampler}-trials.parquet")
            front = pd.read_parquet(WORK / f"{model_id}-{sampler}-front.parquet")
            done = trials[trials.state == "COMPLETE"]
            base_j = float(done.baseline_energy_per_item_j.iloc[0])
            base_acc = float(done.baseline_accuracy.iloc[0])
            curve = _hypervolume_curve(trials, base_j, base_acc)
            duration = json.loads((WORK / f"{model_id}-{sampler}-duration.json").read_text())["duration_s"]
            summary.append(
                {
                    "model": model_id,
                    "sampler": sampler,
                    "completed": len(done),
                    "not applicable (pruned)": int(trials.get("not_applicable", pd.Series(dtype=str)).notna().sum()),
                    "failed": int((trials.state == "FAIL").sum()),
                    "hypervolume after 8": curve[min(7, len(curve) - 1)],
                    "after 16": curve[min(15, len(curve) - 1)],
                    "after all": curve[-1],
                    "wall time (s)": duration,
                    "energy": energy_provenance(front) if len(front) else "",
                }
            )
            within = done[done.accuracy_drop <= 0.01 + 1e-12]
            pick = within.loc[within.energy_ratio.idxmin()] if len(within) else None
            test = front[front.source == "search"] if len(front) else front
            test_base = front[front.source == "baseline"] if len(front) else front
            test_row = None
            if pick is not None and len(test):
                match = test[test.variant_id == pick.variant_id]
                test_row = match.iloc[0] if len(match) else None
            best.append(
                {
                    "model": model_id,
                    "sampler": sampler,
                    "variant": None if pick is None else pick.variant_id,
                    "recipe": None if pick is None else pick.technique,
                    "settings": None if pick is None else _settings_text(pick),
                    "validation J/inference ratio": None if pick is None else pick.energy_ratio,
                    "validation accuracy change (pp)": None if pick is None else -100 * pick.accuracy_drop,
                    "test J/inference ratio": None
                    if test_row is None or test_base.empty
                    else test_row.energy_per_item_j / test_base.energy_per_item_j.iloc[0],
                    "test accuracy change (pp)": None
                    if test_row is None or test_base.empty
                    else 100 * (test_row.accuracy - test_base.accuracy.iloc[0]),
                }
            )
            lines_curve = ", ".join(f"{v:.4f}" for v in curve)
            lines.append(f"- {model_id} {sampler}: hypervolume after each completed trial: {lines_curve}")
    table = pd.DataFrame(summary).set_index(["model", "sampler"])
    lines += ["", "## Findings", ""]
    for model_id in table.index.get_level_values("model").unique():
        tpe, grid = table.loc[(model_id, "tpe")], table.loc[(model_id, "grid")]
        lines.append(
            f"- {model_id}: after {int(tpe.completed)} trials TPE's hypervolume is {tpe['after all']:.4f} against the "
            f"grid's {grid['after all']:.4f} ({tpe['after all'] / max(grid['after all'], 1e-12):.1f}x); after 8 trials "
            f"{tpe['hypervolume after 8']:.4f} against {grid['hypervolume after 8']:.4f}."
        )
    lines += [
        "- One seed per sampler: the curves show one sequence each, not a distribution.",
        "- Trials are chosen on the validation half; the test-split figures of the same variant can differ "
        "(the last table shows both).",
    ]
    lines += [
        "",
        "## Hypervolume",
        "",
        f"The largest possible value is 1.0 x {REFERENCE_LOSS:g} = {REFERENCE_LOSS:g} (zero energy at no loss).",
        "",
        markdown_table(pd.DataFrame(summary)),
        "",
    ]
    lines += [
        "## Largest energy saving within 1 point of accuracy",
        "",
        markdown_table(pd.DataFrame(best)),
        "",
    ]
    (OUT / "search.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["run", "report"])
    parser.add_argument("--models", nargs="+", default=["resnet_fmnist", "lstm_langid"])
    parser.add_argument("--trials", type=int, default=32)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "run":
        run(args.models, args.trials)
    report()


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
