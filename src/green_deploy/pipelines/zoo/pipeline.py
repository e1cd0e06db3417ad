"""One ``build_model`` node per configured zoo model (namespace = model id), then a summary."""

from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from green_deploy.pipelines.configured import zoo_model_ids
from green_deploy.pipelines.zoo.nodes import build_model, summarize_zoo


def _model_node(model_id: str) -> Node:
    func = update_wrapper(partial(build_model, model_id=model_id), build_model)
    return Node(
        func,
        inputs="params:zoo",
        outputs=[f"{model_id}.zoo_card", f"{model_id}.zoo_metrics"],
        name="build_model",
        namespace=model_id,
    )


def create_pipeline(**kwargs) -> Pipeline:
    model_ids = zoo_model_ids()
    return Pipeline(
        [
            *(_model_node(model_id) for model_id in model_ids),
            Node(
                summarize_zoo,
                inputs=[f"{model_id}.zoo_card" for model_id in model_ids],
                outputs=["zoo_summary", "zoo_summary_markdown"],
                name="summarize_zoo",
            ),
        ],
        tags="zoo",
    )
