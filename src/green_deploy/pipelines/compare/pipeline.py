"""``kedro run --pipeline=compare``: two studies, a verdict per matched cell (not in the default run)."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from green_deploy.pipelines.compare.nodes import compare


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [Node(compare, inputs="params:compare", outputs="comparison_counts", name="compare")], tags="compare"
    )
