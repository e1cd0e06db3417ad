"""One ``optimize`` node per zoo model (namespace = model id), then the variants table."""

from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from green_deploy.pipelines.configured import zoo_model_ids
from green_deploy.pipelines.optimize.nodes import optimize_zoo_model, variants_table


def create_pipeline(**kwargs) -> Pipeline:
    model_ids = zoo_model_ids()
    nodes = [
        Node(
            update_wrapper(partial(optimize_zoo_model, model_id=model_id), optimize_zoo_model),
            inputs=["params:zoo", "params:optimize"],
            outputs=[f"{model_id}.variants", f"{model_id}.optimize_metrics", f"{model_id}.variant_files"],
            name="optimize_model",
            namespace=model_id,
        )
        for model_id in model_ids
    ]
    nodes.append(
        Node(
            variants_table,
            inputs=[f"{m}.variants" for m in model_ids],
            outputs="variants",
            name="variants_table",
        )
    )
    return Pipeline(nodes, tags="optimize")
