"""The scenario from parameters (J per batch calibrated from the optimize pipeline's fine-tunes
where measured), energy per paradigm, sensitivity with tornado plots, crossovers, the summary."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from green_deploy.pipelines.simulate.nodes import (
    compare_paradigms,
    find_crossovers,
    prepare_scenario,
    sensitivity_analysis,
    summarize,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                prepare_scenario,
                inputs=["params:simulate", "simulate_variants"],
                outputs=["simulate_scenario", "simulate_provenance"],
                name="prepare_scenario",
            ),
            Node(
                compare_paradigms,
                inputs=["simulate_scenario", "simulate_provenance"],
                outputs=["simulate_energy", "simulate_metrics"],
                name="compare_paradigms",
            ),
            Node(
                sensitivity_analysis,
                inputs=["simulate_scenario", "params:simulate"],
                outputs=["simulate_sensitivity", "simulate_figures"],
                name="sensitivity_analysis",
            ),
            Node(
                find_crossovers,
                inputs=["simulate_scenario", "params:simulate"],
                outputs="simulate_crossovers",
                name="find_crossovers",
            ),
            Node(
                summarize,
                inputs=[
                    "simulate_scenario",
                    "simulate_provenance",
                    "simulate_energy",
                    "simulate_sensitivity",
                    "simulate_crossovers",
                ],
                outputs="simulate_summary_md",
                name="summarize_simulation",
            ),
        ],
        tags="simulate",
    )
