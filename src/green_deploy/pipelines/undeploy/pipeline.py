"""``kedro run --pipeline=undeploy``: every server the deploy pipeline left running is stopped."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from green_deploy.hooks import CREDENTIALS_DATASET
from green_deploy.pipelines.undeploy.nodes import undeploy


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                undeploy, inputs=["params:deploy", CREDENTIALS_DATASET], outputs="undeployed", name="undeploy"
            )
        ],
        tags="undeploy",
    )
