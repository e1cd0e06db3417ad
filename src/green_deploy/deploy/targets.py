"""The deploy targets: one registry from a target's name to everything that differs per target.

A target is a module beside this one (``local``, ``inprocess``, ``sagemaker``, ``azureml``) plus
one ``Target`` entry below: the ``deploy.<section>`` it reads and its parser, how its deployer is
built, the ``credentials.yml`` entry it reads and the keys allowed there, the provider whose PUE
and carbon figures apply, and whether it runs on this machine. The deploy and evaluate runners,
the study and the search settings look targets up here instead of naming them, so a new target
is its module and its entry.

The cloud modules import their SDKs inside functions, so importing this registry imports none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from green_deploy.deploy import (
    azureml,
    azureml_server,
    inprocess,
    local,
    sagemaker,
    sagemaker_server,
    sagemaker_torchserve,
)
from green_deploy.deploy.base import Deployer
from green_deploy.deploy.credentials import Credentials
from green_deploy.deploy.provider_stack import StackDeployer, StackSettings
from green_deploy.errors import ConfigError


@dataclass(frozen=True)
class DeployerOptions:
    """What a deployer is built with besides its target's settings.

    Attributes:
        work_dir: where deployments write their files (state files, packages, manifests).
        dry_run: write what would be deployed; start and call nothing.
        tied: servers end with this process (a study's); untied ones outlive it (the deploy
            pipeline's, stopped by ``undeploy``).
        credentials: the target's checked credentials; ``None``: the SDK's default chain.
    """

    work_dir: Path | str
    dry_run: bool = False
    tied: bool = False
    credentials: Credentials | None = None


@dataclass(frozen=True)
class Target:
    """One deploy target.

    Attributes:
        name: what ``deploy.targets`` and ``evaluate.targets`` call it.
        section: the ``deploy.<section>`` of ``parameters_deploy.yml`` its settings come from.
        parse_settings: that section (``None`` when absent) -> the target's settings; a
            ``ConfigError`` names what is wrong.
        build: (settings, options) -> the target's ``Deployer``.
        provider: whose PUE and carbon intensity apply (``energy.carbon``'s ``local``, ``aws``,
            ``azure``).
        local: runs on this machine: the study chooses its device (its settings carry
            ``device``, ``gpu_energy`` and ``idle_s``, as ``LocalSettings`` does) and stops what
            it started after each variant. Otherwise a cloud endpoint the deploy pipeline
            creates, records and ``undeploy`` deletes; its section must be configured.
        credentials: the ``credentials.yml`` entry it reads (``None``: none).
        credential_keys: the keys allowed in that entry.
        not_in_deploy_pipeline: why ``deploy.targets`` may not name it (empty: it may).
        runtimes: the runtimes it can serve (empty: all); ``runtimes_reason`` says why not others.
        devices: the devices it can serve on (empty: all).
    """

    name: str
    section: str
    parse_settings: Callable[[Mapping[str, Any] | None], Any]
    build: Callable[[Any, DeployerOptions], Deployer]
    provider: str
    local: bool
    credentials: str | None = None
    credential_keys: tuple[str, ...] = ()
    not_in_deploy_pipeline: str = ""
    runtimes: tuple[str, ...] = ()
    runtimes_reason: str = ""
    devices: tuple[str, ...] = ()

    def cannot_serve(self, runtime: str, device: str) -> str | None:
        """Why this target cannot serve a ``runtime`` variant on ``device``; ``None``: it can."""
        if self.runtimes and runtime not in self.runtimes:
            return f"{self.name} serves {', '.join(self.runtimes)} only: {self.runtimes_reason}"
        if self.devices and device not in self.devices:
            return f"{self.name} is measured on {', '.join(self.devices)} only"
        return None

    def settings_from(self, deploy: Mapping[str, Any]) -> Any:
        """The target's settings from the ``deploy`` parameters."""
        raw = deploy.get(self.section)
        if not self.local and not raw:
            raise ConfigError(
                f"deploy.targets names {self.name!r} but deploy.{self.section} is not configured; "
                f"see the commented section in conf/base/parameters_deploy.yml"
            )
        return self.parse_settings(raw)

    def credentials_from(self, credentials: Mapping[str, Any]) -> Credentials | None:
        """This target's entry of ``credentials`` (Kedro's, or ``CloudCredentials``) checked
        against its keys; ``None`` when absent: the SDK's default chain."""
        values = credentials.get(self.credentials) if self.credentials else None
        if not values:
            return None
        if isinstance(values, Credentials):
            values = values.as_kwargs()
        return Credentials(
            values, self.credential_keys, f"credentials {self.credentials!r} (conf/local/credentials.yml)"
        )


def _local(settings: local.LocalSettings, options: DeployerOptions) -> Deployer:
    return local.LocalDeployer(settings, options.work_dir, dry_run=options.dry_run, tied=options.tied)


def _local_unbatched(settings: local.LocalSettings, options: DeployerOptions) -> Deployer:
    return local.LocalDeployer(
        settings, options.work_dir, dry_run=options.dry_run, tied=options.tied, target=local.UNBATCHED_TARGET
    )


def _unbatched_settings(raw: Mapping[str, Any] | None) -> local.LocalSettings:
    """``deploy.local`` with micro-batching off: the one serving setting it differs in."""
    return replace(local.LocalSettings.parse(raw), max_batch_items=0)


def _in_process(settings: local.LocalSettings, options: DeployerOptions) -> Deployer:
    """Configured as the local servers are (``deploy.local``); it writes nothing, so it keeps its
    default work dir."""
    return inprocess.InProcessDeployer(
        threads=settings.threads,
        device=settings.device,
        gpu_energy=settings.gpu_energy,
        max_items=settings.max_items,
        cost_per_hour_usd=settings.cost_per_hour_usd,
        pue=settings.pue,
        idle_s=settings.idle_s,
        keras_mode=settings.keras_mode,
    )


def _sagemaker(settings: sagemaker.SageMakerSettings, options: DeployerOptions) -> Deployer:
    return sagemaker.SageMakerDeployer(
        settings, options.work_dir, options.credentials, dry_run=options.dry_run
    )


def _azureml(settings: azureml.AzureMLSettings, options: DeployerOptions) -> Deployer:
    return azureml.AzureMLDeployer(
        settings, options.work_dir, credentials=options.credentials, dry_run=options.dry_run
    )


def _stack(deployer: type[StackDeployer]) -> Target:
    """A provider's serving stack run on this machine (``provider_stack``): configured in
    ``deploy.<its name>``, which must name at least the provider region it is costed in."""

    def parse(raw: Mapping[str, Any] | None) -> StackSettings:
        if not raw:
            raise ConfigError(
                f"deploy.{deployer.target} is not configured; it needs at least the provider region "
                f"its cells are costed in (see conf/base/parameters_deploy.yml)"
            )
        return StackSettings.parse(raw, f"deploy.{deployer.target}")

    def build(settings: StackSettings, options: DeployerOptions) -> Deployer:
        return deployer(settings, options.work_dir, dry_run=options.dry_run, tied=options.tied)

    return Target(
        deployer.target,
        deployer.target,
        parse,
        build,
        provider=deployer.provider,
        local=True,
        runtimes=deployer.runtimes,
        runtimes_reason=deployer.runtimes_reason,
        devices=("cpu",),
    )


TARGETS: Mapping[str, Target] = MappingProxyType(
    {
        target.name: target
        for target in (
            Target(local.TARGET, "local", local.LocalSettings.parse, _local, provider="local", local=True),
            Target(
                local.UNBATCHED_TARGET,
                "local",
                _unbatched_settings,
                _local_unbatched,
                provider="local",
                local=True,
                not_in_deploy_pipeline="it differs from local only in micro-batching, which matters under load",
            ),
            Target(
                inprocess.TARGET,
                "local",
                local.LocalSettings.parse,
                _in_process,
                provider="local",
                local=True,
                not_in_deploy_pipeline="the in-process target is for measurements inside one process",
            ),
            Target(
                sagemaker.TARGET,
                "sagemaker",
                sagemaker.SageMakerSettings.parse,
                _sagemaker,
                provider="aws",
                local=False,
                credentials="aws",
                credential_keys=sagemaker.AWS_CREDENTIAL_KEYS,
            ),
            Target(
                azureml.TARGET,
                "azureml",
                azureml.AzureMLSettings.parse,
                _azureml,
                provider="azure",
                local=False,
                credentials="azure",
                credential_keys=azureml.AZURE_CREDENTIAL_KEYS,
            ),
            _stack(sagemaker_server.SageMakerServerDeployer),
            _stack(azureml_server.AzureMLServerDeployer),
            _stack(sagemaker_torchserve.SageMakerTorchServeDeployer),
        )
    }
)
DEFAULT_TARGET = local.TARGET


def target_names() -> tuple[str, ...]:
    """Every registered target, in registration order."""
    return tuple(TARGETS)


def pipeline_targets() -> tuple[str, ...]:
    """The targets the deploy pipeline may deploy."""
    return tuple(name for name, target in TARGETS.items() if not target.not_in_deploy_pipeline)


def local_targets() -> tuple[str, ...]:
    """The targets on this machine (the study chooses their device)."""
    return tuple(name for name, target in TARGETS.items() if target.local)


def cloud_targets() -> tuple[str, ...]:
    """The cloud endpoints: created and recorded by the deploy pipeline, deleted by ``undeploy``."""
    return tuple(name for name, target in TARGETS.items() if not target.local)


def settings_sections() -> tuple[str, ...]:
    """The ``deploy.<section>`` keys the targets read."""
    return tuple(dict.fromkeys(target.section for target in TARGETS.values()))


def credential_entries() -> tuple[str, ...]:
    """The ``credentials.yml`` entries the targets read."""
    return tuple(dict.fromkeys(t.credentials for t in TARGETS.values() if t.credentials))


def get_target(name: str) -> Target:
    """The target called ``name``; a ``ConfigError`` lists the known ones."""
    try:
        return TARGETS[name]
    except KeyError:
        raise ConfigError(f"unknown deploy target {name!r}; known: {list(TARGETS)}") from None
