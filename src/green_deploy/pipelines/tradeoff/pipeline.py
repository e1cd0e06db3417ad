"""One node: the results table (and the search's Pareto sets and the simulation, once run) in, the answers, the report (HTML and Markdown) and the plots out."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from green_deploy.pipelines.tradeoff.nodes import report_study


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                report_study,
                inputs=[
                    "evaluation_results",
                    "search_front",
                    "simulate_energy",
                    "simulate_crossovers",
                    "params:tradeoff",
                ],
                outputs=[
                    "tradeoff_answers",
                    "tradeoff_report_html",
                    "tradeoff_report_md",
                    "tradeoff_figures",
                ],
                name="report_study",
            )
        ],
        tags="tradeoff",
    )
