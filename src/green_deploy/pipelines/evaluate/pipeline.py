"""The study as one node (its cells are shuffled across models, so they cannot be split by
model), then its check."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from green_deploy.hooks import CREDENTIALS_DATASET
from green_deploy.pipelines.evaluate.nodes import check_evaluation, evaluate_study


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                evaluate_study,
                inputs=["variants", "params:zoo", "params:evaluate", "params:deploy", CREDENTIALS_DATASET],
                outputs=[
                    "evaluation_results",
                    "evaluation_repetitions",
                    "evaluation_summary",
                    "evaluation_outcome",
                ],
                name="evaluate_study",
            ),
            Node(check_evaluation, inputs="evaluation_outcome", outputs=None, name="check_evaluation"),
        ],
        tags="evaluate",
    )
