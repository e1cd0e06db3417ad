"""One ``deploy`` node per zoo model (namespace = model id), then the deployments table and its check.

``deploy_credentials`` (the ``aws`` and ``azure`` entries of ``credentials.yml``) is put in the
catalog by ``green_deploy.hooks``; it is never a parameter, so never logged to MLflow.
"""

from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from green_deploy.hooks import CREDENTIALS_DATASET
from green_deploy.pipelines.configured import zoo_model_ids
from green_deploy.pipelines.deploy.nodes import check_deployments, deploy_zoo_model, deployments_table


def create_pipeline(**kwargs) -> Pipeline:
    model_ids = zoo_model_ids()
    nodes = [
        Node(
            update_wrapper(partial(deploy_zoo_model, model_id=model_id), deploy_zoo_model),
            inputs=["variants", "params:zoo", "params:deploy", CREDENTIALS_DATASET],
            outputs=[f"{model_id}.deployments", f"{model_id}.deploy_metrics"],
            name="deploy_model",
            namespace=model_id,
        )
        for model_id in model_ids
    ]
    nodes.append(
        Node(
            deployments_table,
            inputs=["params:deploy", *[f"{m}.deployments" for m in model_ids]],
            outputs="deployments",
            name="deployments_table",
        )
    )
    nodes.append(Node(check_deployments, inputs="deployments", outputs=None, name="check_deployments"))
    return Pipeline(nodes, tags="deploy")
