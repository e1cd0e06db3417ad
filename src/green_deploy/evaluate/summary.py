"""The one-screen summary of a study: per model and framework, the baseline against the variant
that spends the least energy per inference, at the study's smallest batch size."""

from __future__ import annotations

import math

import pandas as pd

from green_deploy.evaluate.harness import COMPONENTS


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per model x framework (and target, device when the study has several)."""
    if results.empty:
        return pd.DataFrame()
    batch_size = int(results.batch_size.min())
    rows = []
    at_batch = results[results.batch_size == batch_size]
    keys = ["model_id", "framework", "target", "device"]
    for key, group in at_batch.groupby(keys, sort=True):
        baseline = group[group.technique == "baseline"]
        best = group.loc[group.energy_per_item_j.idxmin()]
        base = baseline.iloc[0] if len(baseline) else None
        every = results.merge(
            group[["model_id", "variant_id"]].drop_duplicates(), on=["model_id", "variant_id"]
        )
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "metric": best.metric,
                "baseline mJ/inf": None if base is None else base.energy_per_item_j * 1e3,
                "baseline acc": None if base is None else base.accuracy,
                "lowest-energy variant": best.variant_id,
                "mJ/inf": best.energy_per_item_j * 1e3,
                "saving %": None
                if base is None
                else (1 - best.energy_per_item_j / base.energy_per_item_j) * 100,
                "Δacc (pp)": None if base is None else (best.accuracy - base.accuracy) * 100,
                "cells": len(every),
                "CI reached": int(every.ci_reached.sum()),
            }
        )
    table = pd.DataFrame(rows)
    for column in ("target", "device"):
        if table[column].nunique() == 1:
            table = table.drop(columns=column)
    return table


def summary_markdown(results: pd.DataFrame, measured: int, resumed: int, failed: int) -> str:
    table = summary_table(results)
    lines = [
        f"{len(results)} cells in the results table; this run measured {measured}, found {resumed} "
        f"already measured, failed {failed}.",
    ]
    if not table.empty:
        lines += [
            f"Energy per inference at batch size {int(results.batch_size.min())}, {energy_provenance(results)}; "
            f"accuracy {accuracy_provenance(results)}.",
            "",
            markdown_table(table),
        ]
    return "\n".join(lines) + "\n"


def energy_provenance(results: pd.DataFrame) -> str:
    """Whether a results table's energy was measured, and the sources behind it; where some
    components were measured and others estimated (a GPU's counter beside an estimated CPU), each
    component says which it was."""
    return provenance_text(component_provenance(results), loud=True)


def provenance_text(components: list[tuple[str, str, list[str]]], loud: bool) -> str:
    """``component_provenance`` in words: ``measured: <sources>``, ``estimated: <sources>``, or
    ``partly measured: `` and each component's state and sources. ``loud`` (a table's headline)
    writes estimates in capitals and says that no hardware meter was read."""
    estimated = "ESTIMATED" if loud else "estimated"
    sources = ", ".join(source for _, _, names in components for source in names)
    states = {state for _, state, _ in components}
    if states == {"measured"}:
        return f"measured: {sources}"
    if states <= {"estimated"}:
        return f"{estimated}{' (no hardware meter)' if loud else ''}: {sources}"
    return "partly measured: " + ("; " if loud else ", ").join(
        f"{component} {estimated if state == 'estimated' else state} ({', '.join(names)})"
        for component, state, names in components
    )


def component_provenance(results: pd.DataFrame) -> list[tuple[str, str, list[str]]]:
    """Per energy component with a source in ``results``: (component, "measured", "estimated" or
    "partly measured", its sources)."""
    found = []
    for component in COMPONENTS:
        if f"{component}_source" not in results:
            continue
        source = results[f"{component}_source"].fillna("").astype(str)
        present = source != ""
        if not present.any():
            continue
        measured_column = f"{component}_measured"
        measured = (
            results.loc[present, measured_column].fillna(False).astype(bool)
            if measured_column in results
            else pd.Series(False, index=source[present].index)
        )
        state = "measured" if measured.all() else "estimated" if not measured.any() else "partly measured"
        found.append((component, state, sorted(set(source[present]))))
    return found


def accuracy_provenance(results: pd.DataFrame) -> str:
    """On which items accuracy was scored (a subset of which splits, or whole splits) and with
    which intervals: "on whole test splits, ..."."""
    if "accuracy_split_items" not in results or results.accuracy_split_items.isna().all():
        return "on whole test splits"
    splits = results.drop_duplicates("model_id").set_index("model_id")
    subset = splits[splits.accuracy_n_items < splits.accuracy_split_items]
    confidence = f"{100 * float(results.ci_confidence.iloc[0]):g}%" if "ci_confidence" in results else "95%"
    methods = " and ".join(sorted(results.accuracy_interval.dropna().unique()))
    intervals = f"{confidence} intervals ({methods}; columns accuracy_ci_low, accuracy_ci_high)"
    if subset.empty:
        return f"on whole test splits, with {intervals}"
    return (
        f"on a seeded, stratified subset of {len(subset)} of {len(splits)} models' test splits "
        f"({', '.join(f'{m} {int(r.accuracy_n_items):,} of {int(r.accuracy_split_items):,}' for m, r in subset.iterrows())}; "
        f"the other splits whole; column accuracy_n_items), with {intervals}"
    )


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub Markdown table; numbers with 4 significant digits, missing values blank."""

    def cell(value: object) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)
