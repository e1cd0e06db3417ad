"""Kedro project settings (defaults otherwise); kedro-mlflow registers its hooks itself."""

from kedro.config import OmegaConfigLoader

from green_deploy.hooks import DeployHooks, ManifestHooks, RunTimingHooks

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # an environment (e.g. conf/test) overrides single keys, not whole top-level sections
    "merge_strategy": {"parameters": "soft"},
}

# Cloud credentials for the deploy pipelines; a clear error when deploy runs before optimize;
# datasets read through the manifests of the configuration in use; the time of each node and
# pipeline.
HOOKS = (DeployHooks(), ManifestHooks(), RunTimingHooks())

# The project never sends usage data (see also .telemetry).
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-telemetry",)
