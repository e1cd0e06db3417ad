"""Project pipelines: every folder under ``pipelines/`` is a pipeline of the same name.

``__default__`` (a plain ``kedro run``, the study) is every pipeline except ``deploy`` and
``undeploy``: deploying starts long-lived server processes (a few hundred MB each) for every
variant, which only pays off once something measures through them (the evaluate pipeline);
until a measuring pipeline joins the default, ``kedro run`` stays the zoo and optimize study and
leaves no process behind. Deploying is ``kedro run --pipeline=deploy``; the servers it leaves
running stop with ``kedro run --pipeline=undeploy``. Should ``deploy`` join the default,
``undeploy`` must join it too, with an output of the last pipeline that measures through the
servers among its inputs: Kedro orders nodes by their data only, so that is what makes it run last.
"""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# Pipelines a plain `kedro run` leaves out (see the module docstring).
NOT_IN_DEFAULT = ("deploy", "undeploy")


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(
        (pipeline for name, pipeline in pipelines.items() if name not in NOT_IN_DEFAULT), Pipeline([])
    )
    return pipelines
