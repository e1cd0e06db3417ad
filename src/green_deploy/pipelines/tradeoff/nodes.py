"""Thin node over ``green_deploy.tradeoff``: answers, report and plots of the measured study."""

from __future__ import annotations

from typing import Any

import pandas as pd

from green_deploy.config import check_keys
from green_deploy.errors import ConfigError
from green_deploy.evaluate.summary import accuracy_provenance, energy_provenance
from green_deploy.tradeoff.questions import (
    answer_all,
    scored_cells,
    search_answer,
    simulation_answer,
    split_by_load,
)
from green_deploy.tradeoff.report import figures, render_html, render_markdown


def report_study(
    results: pd.DataFrame,
    search_front: pd.DataFrame,
    simulate_energy: pd.DataFrame,
    simulate_crossovers: pd.DataFrame,
    tradeoff: dict[str, Any],
) -> tuple[pd.DataFrame, str, str, dict[str, Any]]:
    """The answer to every research question (one row each), to the search and the simulation once
    they have run,
    the HTML report, its Markdown twin and the plots (PNG files, logged to MLflow with the reports)."""
    tradeoff = check_keys("tradeoff", tradeoff, ("title",))
    if results.empty:
        raise ConfigError("the results table is empty: run `kedro run --pipeline=evaluate` first")
    one_at_a_time, _ = split_by_load(results)  # cells under load are RQ1.6's alone
    extra = [
        search_answer(one_at_a_time, search_front),
        simulation_answer(simulate_energy, simulate_crossovers),
    ]
    answers = answer_all(results) + [answer for answer in extra if answer is not None]
    plots = figures(one_at_a_time, search_front)
    preamble = _provenance(results)
    title = str(tradeoff.get("title") or "green-deploy: what optimizing and deploying saves")
    table = pd.DataFrame([{"question": a.question, "title": a.title, "answer": a.sentence} for a in answers])
    return (
        table,
        render_html(answers, plots, title, preamble),
        render_markdown(answers, title, preamble),
        {f"{plot.name}.png": plot.figure for plot in plots},
    )


def _provenance(results: pd.DataFrame) -> str:
    """What the figures rest on: cells, studies, targets, and whether energy was measured."""
    return (
        f"{len(results)} cells of {results.model_id.nunique()} models ({', '.join(sorted(results.framework.unique()))}) "
        f"on {', '.join(sorted(results.target.unique()))}, study {', '.join(sorted(results.study.unique()))}. "
        f"Energy {energy_provenance(results)}. Accuracy {accuracy_provenance(results)}{_chance(results)}. "
        "Tests at p < 0.05; energy compared on the log scale."
    )


def _chance(results: pd.DataFrame) -> str:
    _, chance = scored_cells(results)
    return (
        f"; not applicable to {', '.join(chance)} (random weights), left out of its questions"
        if chance
        else ""
    )
