"""Configuration read while pipelines are created (before any run), e.g. the zoo's model ids.

Pipelines get one node per configured model so Kedro-Viz shows every model and
``--namespaces=<model_id>`` runs one. The environment is the one ``KEDRO_ENV`` names
(``kedro run --env`` sets parameters only; set ``KEDRO_ENV`` when an environment adds models).

The parameters files are read as plain YAML, not through an ``OmegaConfigLoader``: a loader
registers its ``globals`` resolver for the whole process, and one made here (while ``kedro run``
finds its pipelines) replaced the run's own, so ``kedro run --env full`` resolved its parameters
and catalog with the base environment's globals. Only names are read here, which interpolate
nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from kedro.framework.project import settings

from green_deploy.zoo.spec import configured_models


def project_parameters(project_path: Path | None = None) -> dict[str, Any]:
    """The base and run environment's parameters files merged key by key (interpolations left as
    written)."""
    conf_source = (project_path or Path.cwd()) / settings.CONF_SOURCE
    base_env = settings.CONFIG_LOADER_ARGS.get("base_env", "base")
    env = os.environ.get("KEDRO_ENV") or settings.CONFIG_LOADER_ARGS.get("default_run_env", "local")
    merged: dict[str, Any] = {}
    for folder in (conf_source / base_env, conf_source / env):
        for path in sorted(folder.glob("parameters*.yml")) + sorted(folder.glob("parameters*/**/*.yml")):
            merged = _merged(merged, yaml.safe_load(path.read_text()) or {})
    return merged


def _merged(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = _merged(result[key], value)
        else:
            result[key] = value
    return result


def zoo_model_ids(project_path: Path | None = None) -> list[str]:
    return sorted(configured_models(project_parameters(project_path).get("zoo", {}).get("models")))
