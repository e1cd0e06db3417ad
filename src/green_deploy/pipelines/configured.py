"""Configuration read while pipelines are created (before any run), e.g. the zoo's model ids.

Pipelines get one node per configured model so Kedro-Viz shows every model and
``--namespaces=<model_id>`` runs one. The environment is the one ``KEDRO_ENV`` names
(``kedro run --env`` sets parameters only; set ``KEDRO_ENV`` when an environment adds models).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader
from kedro.framework.project import settings


def project_parameters(project_path: Path | None = None) -> dict[str, Any]:
    conf_source = (project_path or Path.cwd()) / settings.CONF_SOURCE
    loader = OmegaConfigLoader(
        str(conf_source),
        base_env=settings.CONFIG_LOADER_ARGS.get("base_env", "base"),
        default_run_env=settings.CONFIG_LOADER_ARGS.get("default_run_env", "local"),
        env=os.environ.get("KEDRO_ENV"),
        merge_strategy=settings.CONFIG_LOADER_ARGS.get("merge_strategy"),
    )
    return dict(loader["parameters"])


def zoo_model_ids(project_path: Path | None = None) -> list[str]:
    return sorted(project_parameters(project_path).get("zoo", {}).get("models", {}))
