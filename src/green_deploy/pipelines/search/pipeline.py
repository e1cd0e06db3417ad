"""One ``search`` node per model of ``search.models`` (namespace = model id), then the tables."""

from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from green_deploy.pipelines.configured import project_parameters
from green_deploy.pipelines.search.nodes import search_tables, search_zoo_model


def create_pipeline(**kwargs) -> Pipeline:
    model_ids = list((project_parameters().get("search") or {}).get("models") or [])
    nodes = [
        Node(
            update_wrapper(partial(search_zoo_model, model_id=model_id), search_zoo_model),
            inputs=["params:zoo", "params:optimize", "params:evaluate", "params:deploy", "params:search"],
            outputs=[f"{model_id}.search_trials", f"{model_id}.search_front"],
            name="search_model",
            namespace=model_id,
        )
        for model_id in model_ids
    ]
    nodes.append(
        Node(
            search_tables,
            inputs=[name for m in model_ids for name in (f"{m}.search_trials", f"{m}.search_front")],
            outputs=["search_trials", "search_front"],
            name="search_tables",
        )
    )
    return Pipeline(nodes, tags="search")
