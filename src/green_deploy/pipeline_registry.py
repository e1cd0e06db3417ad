"""Project pipelines: every folder under ``pipelines/`` is a pipeline of the same name.

``__default__`` (a plain ``kedro run``, the study: zoo, optimize, evaluate, tradeoff) is every pipeline
except ``deploy``, ``undeploy``, ``search``, ``simulate`` and ``estimate``. An Optuna search runs for as long as
its budget of trials takes, on as many machines as share it (``kedro run --pipeline=search``; the
tradeoff report shows its Pareto set once there is one); ``simulate`` is a what-if model of
federated vs centralized learning on its own parameters (``kedro run --pipeline=simulate``);
``estimate`` counts every variant's layers and checks predicted energy against the study;
``compare`` gives a verdict per cell of one study against another (``compare.baseline``/``candidate``).
The evaluate pipeline starts the local servers it measures
through and stops them when their cells are done, so ``kedro run`` leaves no process behind;
``deploy`` keeps long-lived servers (a few hundred MB each) running for other clients and cloud
endpoints for the evaluate pipeline's cloud targets, which is a decision of its own:
``kedro run --pipeline=deploy``, then ``kedro run --pipeline=undeploy``.
"""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# Pipelines a plain `kedro run` leaves out (see the module docstring).
NOT_IN_DEFAULT = ("deploy", "undeploy", "search", "simulate", "estimate", "compare")


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(
        (pipeline for name, pipeline in pipelines.items() if name not in NOT_IN_DEFAULT), Pipeline([])
    )
    return pipelines
