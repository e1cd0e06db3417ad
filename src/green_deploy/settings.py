"""Kedro project settings (defaults otherwise); kedro-mlflow registers its hooks itself."""

from kedro.config import OmegaConfigLoader

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {"base_env": "base", "default_run_env": "local"}

# The project never sends usage data (see also .telemetry).
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-telemetry",)
