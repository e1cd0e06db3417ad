"""The study's research questions, each answered from the evaluate pipeline's results table
(one row per cell) with the design its data have.

Energy is compared on the log scale (effects are ratios), accuracy as it is.

RQ1.1 energy of applying each optimization (one value per variant; techniques compared);
RQ1.2 framework: the same models' baselines in PyTorch and TensorFlow, paired by model and batch;
RQ1.3 / RQ1.4 each technique against its own framework's baseline, paired by model and batch,
on J/inference and on accuracy; RQ1.5 the trade-off: Pareto fronts and the rank correlation of
energy saved with accuracy lost; RQ1.6 / RQ1.7 target (provider) on energy and on accuracy, the
same variants paired across targets against the reference (``local``): J/inference of each
serving stack metered alike, then the location (grid, PUE) apart from the software.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from green_deploy.tradeoff.frontier import pareto_front, relative_to_baseline
from green_deploy.tradeoff.stats import (
    MIN_PER_GROUP,
    Comparison,
    GroupComparison,
    compare_groups,
    compare_paired,
)
from green_deploy.zoo import baselines as zoo_baselines
from green_deploy.zoo.families.base import TWIN_FRAMEWORKS

BASELINES = zoo_baselines.BASELINE_VARIANT_IDS
CELL_KEYS = ["model_id", "framework", "target", "device", "batch_size"]
# a local server's energy metered from outside (its process tree), the same way for every stack
OUTSIDE_METERED = "server_energy_per_item_j"


@dataclass
class Answer:
    """One research question: a sentence with its numbers, a table, and the tests behind it."""

    question: str
    title: str
    sentence: str
    table: pd.DataFrame
    tests: Mapping[str, Comparison | GroupComparison] = field(default_factory=dict)


def answer_all(results: pd.DataFrame) -> list[Answer]:
    """Every question from the cells measured one request at a time; RQ1.6 also reads the cells
    under load (``concurrency`` > 1, ``evaluate.under_load``)."""
    results, under_load = split_by_load(results)
    return [
        optimization_energy(results),
        framework_effect(results),
        technique_effect(results, "energy_per_item_j", "RQ1.3", "J/inference"),
        _on_scored_accuracy(
            "RQ1.4",
            "Optimization and accuracy",
            results,
            lambda r: technique_effect(r, "accuracy", "RQ1.4", "accuracy"),
        ),
        _on_scored_accuracy("RQ1.5", "The energy-accuracy trade-off", results, trade_off),
        target_energy_effect(results, under_load),
        _on_scored_accuracy("RQ1.7", "Target (provider) and accuracy", results, target_accuracy_effect),
    ]


def scored_cells(results: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The cells whose accuracy says something, and the models left out: those with random weights
    (``accuracy_applicable`` false: architectures studied at their size), whose accuracy is chance."""
    if "accuracy_applicable" not in results:
        return results, []
    applicable = results.accuracy_applicable.fillna(True).astype(bool)
    return results[applicable], sorted(results.loc[~applicable, "model_id"].unique())


def _on_scored_accuracy(
    question: str, title: str, results: pd.DataFrame, answer: Callable[[pd.DataFrame], Answer]
) -> Answer:
    """``answer`` over the cells whose accuracy says something, naming the models left out."""
    scored, chance = scored_cells(results)
    if not chance:
        return answer(results)
    names = ", ".join(chance)
    if scored.empty:
        sentence = (
            f"Not applicable: every model here ({names}) has random weights, so its accuracy is chance."
        )
        return Answer(question, title, sentence, pd.DataFrame())
    found = answer(scored)
    return replace(
        found, sentence=f"{found.sentence} Left out: {names} (random weights: their accuracy is chance)."
    )


def split_by_load(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cells measured one request at a time, and those under load (``concurrency`` > 1)."""
    if "concurrency" not in results:
        return results, results.iloc[:0]
    loaded = results.concurrency.fillna(1) > 1
    return results[~loaded], results[loaded]


def optimization_energy(results: pd.DataFrame) -> Answer:
    """RQ1.1: what applying each technique cost, per variant (not per cell)."""
    variants = results.drop_duplicates(["model_id", "variant_id"])
    variants = variants[~variants.variant_id.isin(BASELINES) & variants.optimization_total_energy_j.notna()]
    title = "Energy of applying each optimization"
    if variants.empty:
        return Answer(
            "RQ1.1", title, "No optimized variant has a recorded optimization energy.", pd.DataFrame()
        )
    groups = {t: g.optimization_total_energy_j.to_numpy() for t, g in variants.groupby("technique")}
    test = compare_groups(groups)
    table = (
        variants.groupby("technique")
        .agg(
            variants=("variant_id", "size"),
            median_j=("optimization_total_energy_j", "median"),
            max_j=("optimization_total_energy_j", "max"),
            median_s=("optimization_duration_s", "median"),
            measured=("optimization_measured", "mean"),
        )
        .sort_values("median_j")
        .reset_index()
    )
    cheapest, dearest = table.iloc[0], table.iloc[-1]
    sentence = (
        f"Applying a technique cost a median of {cheapest.median_j:.3g} J ({cheapest.technique}) to "
        f"{dearest.median_j:.3g} J ({dearest.technique}) per variant; {_verdict(test, 'techniques differ')}"
        f"{_measured_share(table)}."
    )
    return Answer("RQ1.1", title, sentence, table, {"techniques": test})


def framework_effect(results: pd.DataFrame) -> Answer:
    """RQ1.2: each model's PyTorch baseline against its TensorFlow baseline, same batch size."""
    keys = ["model_id", "target", "device", "batch_size"]
    base = results[results.variant_id.isin(BASELINES) & results.framework.isin(TWIN_FRAMEWORKS)]
    values = ["energy_per_item_j", "accuracy"]
    wide = base.pivot_table(index=keys, columns="framework", values=values)
    # a model measured in both frameworks, at the same batch size and place
    wide = wide.reindex(columns=pd.MultiIndex.from_product([values, TWIN_FRAMEWORKS])).dropna()
    alone = _one_framework_models(
        results, set(wide.index.get_level_values("model_id")) if len(wide) else set()
    )
    tests, rows = {}, []
    if len(wide):
        for metric in values:
            scale = np.log if metric == "energy_per_item_j" else np.asarray
            tests[metric] = compare_paired(
                scale(wide[(metric, "torch")]), scale(wide[(metric, "tensorflow")])
            )
        ratio = wide[("energy_per_item_j", "tensorflow")] / wide[("energy_per_item_j", "torch")]
        rows = pd.DataFrame({"tensorflow / torch J/inference": ratio}).reset_index()
    table: pd.DataFrame = rows if len(rows) else pd.DataFrame()  # rows is [] only when untested
    if not tests:
        measured = (
            "No model was measured in both PyTorch and TensorFlow"
            if base.framework.nunique() > 1
            else ("Only one framework was measured")
        )
        return Answer("RQ1.2", "Framework", f"{measured}: nothing to compare.{alone}", table)
    energy = tests["energy_per_item_j"]
    sentence = (
        f"Over {energy.n[0]} model x batch pairs, the TensorFlow baseline took a median "
        f"{float(np.median(table.iloc[:, -1])):.2f}x the J/inference of the PyTorch one "
        f"({_verdict(energy, 'different')}; Cliff's delta {energy.cliffs_delta:+.2f}, {energy.magnitude}); "
        f"accuracy {_verdict(tests['accuracy'], 'different')}.{_serving_paths(base)}{alone}"
    )
    return Answer("RQ1.2", "Framework (PyTorch vs TensorFlow, same models)", sentence, table, tests)


def _one_framework_models(results: pd.DataFrame, compared: set[str]) -> str:
    """The models left out of RQ1.2 because they were measured in one framework (a user's own
    model given as one file), named with it."""
    base = results[results.variant_id.isin(BASELINES) & ~results.model_id.isin(compared)]
    frameworks = base.groupby("model_id").framework.unique()
    if frameworks.empty:
        return ""
    named = ", ".join(
        f"{model} ({'/'.join(zoo_baselines.BASELINES[f].label for f in sorted(used))})"
        for model, used in frameworks.items()
    )
    return f" Not compared, measured in one framework only: {named}."


def technique_effect(results: pd.DataFrame, metric: str, question: str, label: str) -> Answer:
    """RQ1.3 / RQ1.4: per technique, its variants against their baseline, paired by cell."""
    relative = relative_to_baseline(results, BASELINES)
    baseline = results[results.variant_id.isin(BASELINES)].set_index(CELL_KEYS)[metric]
    optimized = relative[~relative.variant_id.isin(BASELINES)]
    change_column = "median ratio" if metric == "energy_per_item_j" else "median change (pp)"
    tests, rows = {}, []
    for technique, group in optimized.groupby("technique"):
        paired = group.join(baseline.rename("baseline"), on=CELL_KEYS).dropna(subset=["baseline", metric])
        # energy effects are multiplicative (a technique halves J/inference of big and small
        # models alike): tested on the log scale, i.e. on the ratio to the baseline
        scale = np.log if metric == "energy_per_item_j" else np.asarray
        test = compare_paired(scale(paired.baseline), scale(paired[metric]))
        tests[technique] = test
        change = (
            paired.energy_ratio.median()
            if metric == "energy_per_item_j"
            else paired.accuracy_change_pp.median()
        )
        rows.append(
            {
                "technique": technique,
                "cells": len(paired),
                change_column: change,
                "test": test.test or "not tested",
                "p": test.p_value,
                "cliffs_delta": test.cliffs_delta,
                "magnitude": test.magnitude,
            }
        )
    title = (
        "Optimization and inference energy" if metric == "energy_per_item_j" else "Optimization and accuracy"
    )
    if not rows:
        return Answer(
            question, title, "No optimized variant shares a cell with its baseline.", pd.DataFrame()
        )
    table = pd.DataFrame(rows).sort_values(change_column)
    lowered = [t for t, c in tests.items() if c.significant and (c.difference or 0) < 0]
    raised = [t for t, c in tests.items() if c.significant and (c.difference or 0) > 0]
    sentence = f"Against their own baseline, {_changes(label, lowered, raised, len(tests))} (paired tests per technique, p < 0.05)."
    return Answer(question, title, sentence, table, tests)


def trade_off(results: pd.DataFrame) -> Answer:
    """RQ1.5: who is on each model's energy-accuracy front, and whether saving energy costs accuracy."""
    from scipy import stats

    relative = relative_to_baseline(results, BASELINES).assign(
        on_front=lambda t: pareto_front(t, by=("model_id", "target", "device", "batch_size"))
    )
    table = (
        relative.groupby("technique")
        .agg(
            cells=("on_front", "size"), on_front=("on_front", "sum"), median_ratio=("energy_ratio", "median")
        )
        .assign(front_share=lambda t: t.on_front / t.cells)
        .sort_values("front_share", ascending=False)
        .reset_index()
    )
    usable = relative.dropna(subset=["energy_ratio", "accuracy_change_pp"])
    usable = usable[~usable.variant_id.isin(BASELINES)]
    if len(usable) < MIN_PER_GROUP:
        return Answer(
            "RQ1.5",
            "The energy-accuracy trade-off",
            f"{int(relative.on_front.sum())} of {len(relative)} cells are on their model's energy-accuracy front; "
            f"too few optimized cells with a baseline ({len(usable)}) to relate energy saved to accuracy lost.",
            table,
        )
    rho, p_value = stats.spearmanr(usable.energy_ratio, usable.accuracy_change_pp)
    top = table.iloc[0]
    sentence = (
        f"{int(relative.on_front.sum())} of {len(relative)} cells are on their model's energy-accuracy front; "
        f"{top.technique} most often ({top.on_front:.0f} of {top.cells:.0f}). Energy ratio and accuracy change "
        f"{'correlate' if p_value < 0.05 else 'do not correlate significantly'} (Spearman rho {rho:+.2f}, "
        f"p = {p_value:.2g}, {len(usable)} cells): "
        + (
            "variants that save more energy lose more accuracy."
            if rho > 0 and p_value < 0.05
            else "saving energy did not systematically cost accuracy."
        )
    )
    return Answer("RQ1.5", "The energy-accuracy trade-off", sentence, table)


def target_energy_effect(results: pd.DataFrame, loaded: pd.DataFrame | None = None) -> Answer:
    """RQ1.6: each target's serving stack against the reference target, the same variants at the
    same batch size and device paired, on the same metering where both have it (each server's
    process tree metered from outside); then what its location (region's grid, PUE) adds, kept
    apart from what its software costs; then, from the cells under load (``loaded``), what the
    serving configuration (micro-batching) and each stack do with concurrent clients."""
    title = "Target (provider): J/inference of its serving stack, its configuration under load, its location"
    reference = _reference_target(results)
    if reference is None:
        return Answer("RQ1.6", title, _one_target(results), pd.DataFrame())
    rows, tests, parts = _against(results, reference, with_place=True)
    if not rows:
        return Answer(
            "RQ1.6", title, f"No variant was measured both on {reference} and another target.", pd.DataFrame()
        )
    sentence = (
        f"Against {reference}: " + "; ".join(parts) + ". Software is the J/inference ratio; location is the "
        "grid and PUE ratio. The hardware is this machine's for every stack on it, not the provider's."
    )
    if loaded is not None and len(loaded) and reference in set(loaded.target):
        for concurrency, cells in loaded.groupby("concurrency"):
            load_rows, load_tests, load_parts = _against(cells, reference, with_place=False)
            rows += [{**row, "concurrency": int(concurrency)} for row in load_rows]
            tests.update({f"{target} under load": test for target, test in load_tests.items()})
            if load_parts:
                sentence += (
                    f" Under load ({int(concurrency)} clients at once): " + "; ".join(load_parts) + "."
                )
    return Answer("RQ1.6", title, sentence, pd.DataFrame(rows), tests)


def _against(
    results: pd.DataFrame, reference: str, with_place: bool
) -> tuple[list[dict[str, Any]], dict[str, Comparison], list[str]]:
    """Each other target's cells paired with ``reference``'s: rows, tests and sentences."""
    keys = ["model_id", "variant_id", "device", "batch_size"]
    mine = results[results.target == reference].set_index(keys)
    rows, tests, parts = [], {}, []
    for target in sorted(set(results.target) - {reference}):
        theirs = results[results.target == target].set_index(keys)
        metric = OUTSIDE_METERED
        if not (_has(theirs, metric) and _has(mine, metric)):
            metric = "energy_per_item_j"
        columns = [metric, "latency_p50_ms", "throughput_items_per_s"]
        pair = theirs[columns].join(mine[columns], rsuffix="_ref", how="inner").dropna()
        if not len(pair):
            continue
        test = compare_paired(np.log(pair[f"{metric}_ref"]), np.log(pair[metric]))
        tests[target] = test
        software = float(np.median(pair[metric] / pair[f"{metric}_ref"]))
        throughput = float(np.median(pair.throughput_items_per_s / pair.throughput_items_per_s_ref))
        metered = "server process trees, alike" if metric == OUTSIDE_METERED else "as each target reported it"
        row = {
            "target": target,
            "paired cells": len(pair),
            "energy compared": metered,
            f"J/inference / {reference}": software,
            "95% CI": _ratio_interval(test),
            "test": _verdict(test, "different"),
            "Cliff's delta": test.cliffs_delta,
            f"latency p50 / {reference}": float(np.median(pair.latency_p50_ms / pair.latency_p50_ms_ref)),
            f"throughput / {reference}": throughput,
        }
        part = (
            f"{target} took {software:.2f}x the J/inference of {reference} over {len(pair)} paired cells "
            f"({metered}; {_verdict(test, 'different')}; Cliff's delta {_signed(test.cliffs_delta)})"
        )
        if with_place:
            place = _place(results, target, reference)
            carbon = software * place["PUE ratio"] * place["grid ratio"]
            row.update({**place, f"gCO2e / {reference}": carbon})
            part += (
                f", and with its region's grid ({place['grid ratio']:.2f}x) and PUE ({place['PUE ratio']:.2f}x) "
                f"{carbon:.2f}x the gCO2e"
            )
        else:
            part += f" and served {throughput:.2f}x its items/s"
        rows.append(row)
        parts.append(part)
    return rows, tests, parts


def target_accuracy_effect(results: pd.DataFrame) -> Answer:
    """RQ1.7: accuracy of the same variants on each target; every variant whose accuracy differs
    between targets is named (the same files should answer alike wherever they are served)."""
    title = "Target (provider) and accuracy"
    reference = _reference_target(results)
    if reference is None:
        return Answer("RQ1.7", title, _one_target(results), pd.DataFrame())
    keys = ["model_id", "variant_id", "device"]
    wide = results.pivot_table(index=keys, columns="target", values="accuracy", aggfunc="first").dropna()
    tests, rows = {}, []
    for target in wide.columns:
        if target == reference:
            continue
        tests[target] = compare_paired(wide[reference], wide[target])
        for key, row in wide[wide[target] != wide[reference]].iterrows():
            rows.append(
                {
                    **dict(zip(keys, key, strict=True)),
                    "target": target,
                    reference: row[reference],
                    target + " accuracy": row[target],
                    "difference (pp)": 100 * (row[target] - row[reference]),
                }
            )
    if not tests:
        return Answer(
            "RQ1.7", title, f"No variant was measured both on {reference} and another target.", pd.DataFrame()
        )
    verdicts = "; ".join(f"{t}: {_verdict(test, 'different')}" for t, test in tests.items())
    named = (
        f" {len(rows)} variant(s) scored differently: "
        + ", ".join(
            f"{r['model_id']}/{r['variant_id']} on {r['target']} ({r['difference (pp)']:+.2f} pp)"
            for r in rows
        )
        + "."
        if rows
        else f" Every variant scored exactly the same on every target as on {reference} ({len(wide)} variants)."
    )
    return Answer(
        "RQ1.7", title, f"Accuracy against {reference}: {verdicts}.{named}", pd.DataFrame(rows), tests
    )


def _reference_target(results: pd.DataFrame) -> str | None:
    """The target the others are compared with: ``local`` when measured; ``None`` with one target."""
    targets = sorted(results.target.unique())
    if len(targets) < 2:
        return None
    return "local" if "local" in targets else targets[0]


def _one_target(results: pd.DataFrame) -> str:
    return (
        f"Only the {results.target.iloc[0]} target was measured: nothing to compare "
        "(add targets to evaluate.targets)."
    )


def _has(cells: pd.DataFrame, column: str) -> bool:
    return column in cells and bool(cells[column].notna().all())


def _place(results: pd.DataFrame, target: str, reference: str) -> dict[str, Any]:
    """Where ``target`` was costed (region, PUE, grid intensity) and its ratios to ``reference``'s."""

    def where(name: str) -> pd.Series:
        return results[results.target == name][["region", "pue", "intensity_g_per_kwh"]].iloc[0]

    here, there = where(target), where(reference)
    return {
        "region": here.region,
        "PUE": float(here.pue),
        "gCO2e/kWh": float(here.intensity_g_per_kwh),
        "PUE ratio": float(here.pue) / float(there.pue),
        "grid ratio": float(here.intensity_g_per_kwh) / float(there.intensity_g_per_kwh),
    }


def _ratio_interval(test: Comparison) -> str:
    """The median log-ratio's bootstrap interval as a ratio interval."""
    if test.difference_ci is None:
        return ""
    low, high = np.exp(test.difference_ci)
    return f"[{low:.2f}, {high:.2f}]"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _serving_paths(baselines: pd.DataFrame) -> str:
    """How each framework's baselines were called when served (the comparison depends on it)."""
    if "serving_path" not in baselines or baselines.serving_path.isna().all():
        return ""
    paths = baselines.dropna(subset=["serving_path"]).groupby("framework").serving_path.unique()
    return (
        " Served as: "
        + "; ".join(
            f"{zoo_baselines.BASELINES[framework].label} baselines: {', '.join(sorted(used))}"
            for framework, used in paths.items()
        )
        + "."
    )


def _verdict(test: Comparison | GroupComparison, claim: str) -> str:
    if test.p_value is None or test.test is None:
        return f"not tested ({test.note})"
    if test.significant:
        return f"{claim} ({test.test}, p = {test.p_value:.2g})"
    return f"no significant difference ({test.test}, p = {test.p_value:.2g})"


def _changes(label: str, lowered: list[str], raised: list[str], tested: int) -> str:
    """What the techniques did to ``label``, in words: who lowered it, who raised it, how many
    changed nothing significant."""
    unchanged = tested - len(lowered) - len(raised)
    if not lowered and not raised:
        return f"no technique changed {label} significantly ({tested} tested)"
    parts = []
    if lowered:
        parts.append(f"{_names(lowered)} lowered {label} significantly")
    if raised:
        parts.append(f"{_names(raised)} raised {'it' if lowered else label + ' significantly'}")
    if unchanged:
        others = "the other technique" if unchanged == 1 else f"the other {unchanged} techniques"
        parts.append(f"{others} changed it by no significant amount")
    return "; ".join(parts)


def _names(techniques: list[str]) -> str:
    return techniques[0] if len(techniques) == 1 else f"{', '.join(techniques[:-1])} and {techniques[-1]}"


def _measured_share(table: pd.DataFrame) -> str:
    share = float(np.average(table.measured, weights=table.variants))
    return (
        "" if share == 1 else f" ({100 * (1 - share):.0f}% of these figures are estimates, not measurements)"
    )


def search_answer(results: pd.DataFrame, front: pd.DataFrame, max_loss_pp: float = 1.0) -> Answer | None:
    """The Optuna search's Pareto set (measured on the test split) beside the declared variants of
    the same cell (model, target, device, batch size): per model, the largest energy saving each
    found within ``max_loss_pp`` points of the baseline's accuracy. ``None`` before any search."""
    if front.empty:
        return None
    keys = ["model_id", "target", "device", "batch_size"]
    searched = relative_to_baseline(front, BASELINES).assign(source="search")
    declared = relative_to_baseline(results, BASELINES).merge(front[keys].drop_duplicates(), on=keys)
    table = pd.concat(
        [searched[searched.variant_id.str.startswith("search_")], declared.assign(source="declared")],
        ignore_index=True,
    )
    kept = table[table.accuracy_change_pp >= -max_loss_pp].dropna(subset=["energy_ratio"])
    best = kept.loc[kept.groupby(keys + ["source"]).energy_ratio.idxmin()] if len(kept) else kept
    columns = keys + [
        "source",
        "variant_id",
        "technique",
        "energy_per_item_j",
        "energy_ratio",
        "accuracy",
        "accuracy_change_pp",
    ]
    best = best[columns].sort_values(keys + ["source"]).reset_index(drop=True)
    parts = []
    for model_id, rows in best.groupby("model_id"):
        found = {row.source: row for row in rows.itertuples()}
        text = f"{model_id}: search {_saving(found.get('search'))}"
        if "declared" in found:
            text += f", best declared variant {_saving(found['declared'])}"
        parts.append(text)
    n_front = int(searched.variant_id.str.startswith("search_").sum())
    sentence = (
        f"Optuna's search put {n_front} variants on the Pareto fronts of {front.model_id.nunique()} models "
        f"(measured again on the test split). Largest energy saving within {max_loss_pp:g} point(s) of the "
        f"baseline's accuracy: " + ("; ".join(parts) if parts else "none within that loss") + "."
    )
    return Answer("Search", "Optuna's Pareto set beside the declared variants", sentence, best)


def _saving(row: Any) -> str:
    if row is None:
        return "found none within the loss"
    return (
        f"{row.variant_id} ({row.technique}) at {row.energy_ratio:.2f}x the baseline's J/inference, "
        f"{row.accuracy_change_pp:+.1f} pp"
    )


def simulation_answer(energy: pd.DataFrame, crossovers: pd.DataFrame) -> Answer | None:
    """The simulate pipeline's verdict (federated vs centralized learning) with its decision rules;
    ``None`` before any simulation."""
    if energy.empty:
        return None
    single = energy.set_index("paradigm")
    federated, continual = single.loc["federated"], single.loc["federated_continual"]
    rules = (
        crossovers[crossovers.metric == "energy"].dropna(subset=["crossover_value"])
        if len(crossovers)
        else crossovers
    )
    sentence = (
        f"With the simulated scenario ({federated.link}, {'IID' if federated.iid else 'non-IID'} data, "
        f"J per batch {federated.j_per_batch_source}), federated learning takes {federated.energy_ratio_to_centralized:.2f}x "
        f"the energy of centralized learning for one training and {continual.energy_ratio_to_centralized:.2f}x over "
        f"{int(continual.trainings)} trainings ({federated.carbon_ratio_to_centralized:.2f}x the gCO2e). "
        + (
            f"{len(rules)} crossover points, e.g. {rules.rule.iloc[0]}."
            if len(rules)
            else "No crossover in the ranges searched."
        )
    )
    table = energy[["paradigm", "trainings", "energy_kwh", "carbon_g", "energy_ratio_to_centralized"]]
    if len(rules):
        table = rules[["parameter", "base_value", "crossover_value", "rule"]]
    return Answer(
        "Simulation", "Federated vs centralized learning (simulated)", sentence, table.reset_index(drop=True)
    )
