"""Count every variant's layers, then predict its energy and compare with the study."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from green_deploy.pipelines.estimate.nodes import count_variants, estimate_energy


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                count_variants,
                inputs=["variants", "params:zoo"],
                outputs=["layer_counts", "variant_counts"],
                name="count_variants",
            ),
            Node(
                estimate_energy,
                inputs=["variant_counts", "evaluation_results", "params:estimate"],
                outputs=["energy_estimates", "estimate_summary", "estimate_metrics"],
                name="estimate_energy",
            ),
        ],
        tags="estimate",
    )
