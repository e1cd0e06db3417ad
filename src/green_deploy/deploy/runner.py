"""Deploying the variants of one zoo model to every configured target, each checked as it starts.

What the deploy pipeline calls (no Kedro here). For every ok variant of the optimize pipeline's
table (baselines included) and every target: ``deploy``, then the check: the local server's
``/health`` once more, and one prediction on a few encoded validation examples that must equal
the in-process prediction of the same files (``serving.model.load_model_files`` + ``predictor``)
within ``atol + rtol * max|in-process output|``. A failure is recorded with its reason (both
values for a mismatch), its server stopped, and the other variants go on; the pipeline fails at
its end when any row failed. A variant whose devices do not include ``cpu`` is skipped with the
reason (this machine serves on CPU), as is one the optimize pipeline found not applicable.

Cloud deployments that serve are recorded in ``<work_dir>/<model>/<variant>/<target>/
deployment.json`` so that ``undeploy`` can delete them later; local servers have their own
state files (``deploy.local``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from green_deploy.config import check_keys, parse_names, parse_settings
from green_deploy.deploy.base import (
    STATUS_DRY_RUN,
    STATUS_IN_SERVICE,
    Deployer,
    Deployment,
    DeploymentError,
    Variant,
)
from green_deploy.deploy.local import TARGET as LOCAL_TARGET
from green_deploy.deploy.local import LocalDeployer, LocalSettings, teardown_all
from green_deploy.deploy.processes import rss_bytes, write_json_atomically
from green_deploy.deploy.provider_stack import StackDeployer
from green_deploy.deploy.targets import (
    DEFAULT_TARGET,
    DeployerOptions,
    cloud_targets,
    credential_entries,
    get_target,
    pipeline_targets,
    settings_sections,
    target_names,
)
from green_deploy.errors import ArtifactError, ConfigError
from green_deploy.optimize.artifacts import model_folder
from green_deploy.runtimes import RUNTIMES
from green_deploy.serving.model import InputSpec, check_devices_here

logger = logging.getLogger(__name__)

RECORD_FILE = "deployment.json"

STATUS_SKIPPED = "skipped"
STATUS_FAILED = "failed"
# checked and answered, then stopped to stay within deploy.local.max_servers
STATUS_STOPPED = "stopped"


class DeploymentCheckError(DeploymentError):
    """A deployment did not answer, or answered outputs that differ from the in-process ones."""


@dataclass(frozen=True)
class CheckSettings:
    """``deploy.check``: how many validation examples one check sends, and the tolerance."""

    examples: int = 4
    atol: float = 1e-4
    rtol: float = 1e-4

    def tolerance(self, expected: np.ndarray) -> float:
        """``atol + rtol * max|expected|`` over the finite outputs."""
        finite = np.abs(expected[np.isfinite(expected)])
        return self.atol + self.rtol * float(finite.max()) if finite.size else self.atol


@dataclass(frozen=True)
class DeploySettings:
    """``deploy`` in ``parameters_deploy.yml`` (the targets' own sections are parsed by them)."""

    targets: tuple[str, ...] = (DEFAULT_TARGET,)
    work_dir: str = "data/07_model_output/deploy"
    dry_run: bool = False
    models: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    check: CheckSettings = field(default_factory=CheckSettings)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> DeploySettings:
        raw = check_keys(
            "deploy", raw, {"targets", "work_dir", "dry_run", "models", "only", "check", *settings_sections()}
        )
        targets = parse_names(raw.get("targets"), "deploy.targets") or (DEFAULT_TARGET,)
        known = pipeline_targets()
        bad = sorted(set(targets) - set(known))
        if bad:
            reasons = [get_target(name).not_in_deploy_pipeline for name in bad if name in target_names()]
            hint = f" ({'; '.join(reasons)})" if reasons else ""
            raise ConfigError(f"deploy.targets names unknown target(s) {bad}{hint}; known: {list(known)}")
        only, models = (parse_names(raw.get(key), f"deploy.{key}") for key in ("only", "models"))
        dry_run = raw.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise ConfigError(f"deploy.dry_run must be true or false, got {dry_run!r}")
        settings = cls(
            targets=tuple(dict.fromkeys(targets)),
            work_dir=str(raw.get("work_dir") or cls.work_dir),
            dry_run=dry_run,
            models=models,
            only=only,
            check=parse_settings(CheckSettings, raw.get("check"), "deploy.check"),
        )
        if settings.check.examples < 1 or settings.check.atol < 0 or settings.check.rtol < 0:
            raise ConfigError(
                f"deploy.check: examples must be >= 1 and tolerances >= 0; got {settings.check}"
            )
        return settings


@dataclass
class DeploymentRow:
    """One model x variant x target: what happened and what the check saw (a table row)."""

    model_id: str
    variant_id: str
    target: str
    runtime: str
    status: str
    reason: str = ""
    endpoint_name: str = ""
    url: str = ""
    pid: int | None = None
    reused: bool | None = None
    startup_s: float | None = None
    rss_bytes: int | None = None
    region: str = ""
    instance_type: str = ""
    cost_per_hour_usd: float | None = None
    pue: float | None = None
    check_items: int | None = None
    check_max_abs_diff: float | None = None
    check_tolerance: float | None = None
    check_energy_j: float | None = None
    check_energy_measured: bool | None = None
    check_energy_source: str = ""
    created_at: str = ""

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


COLUMNS = tuple(DeploymentRow.__dataclass_fields__)


def build_deployers(
    settings: DeploySettings, raw: Mapping[str, Any], credentials: Mapping[str, Any] | None = None
) -> dict[str, Deployer]:
    """One deployer per target of ``settings`` (built as its entry in ``deploy.targets`` says);
    each cloud target's credentials from its entry of ``credentials`` (absent: the SDK's default
    chain). A target on this machine must name a device this machine has (unless a dry run)."""
    credentials = credentials or {}
    deployers: dict[str, Deployer] = {}
    for name in settings.targets:
        target = get_target(name)
        target_settings = target.settings_from(raw)
        if target.local and not settings.dry_run:
            check_devices_here([target_settings.device], f"deploy.{target.section}.device")
        options = DeployerOptions(
            settings.work_dir, dry_run=settings.dry_run, credentials=target.credentials_from(credentials)
        )
        deployers[name] = target.build(target_settings, options)
    return deployers


class CloudCredentials(Mapping[str, Any]):
    """The cloud entries of ``credentials.yml`` (``aws``, ``azure``) as Kedro read them, on their
    way to the deployers: ``repr`` names the entries only, and they cannot be pickled (so never
    copied into a log, a record or another process). Each target checks its keys when built."""

    def __init__(self, conf_creds: Mapping[str, Any] | None) -> None:
        conf_creds = conf_creds or {}
        self._entries = {key: conf_creds[key] for key in credential_entries() if conf_creds.get(key)}

    def __getitem__(self, key: str) -> Any:
        return self._entries[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"CloudCredentials({', '.join(f'{key}=***' for key in self._entries)})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("credentials are not picklable: they would leave the process unmasked")


def validation_examples(entry: Any, dataset_settings: Mapping[str, Any], n_examples: int) -> np.ndarray:
    """The first ``n_examples`` encoded validation inputs of a zoo entry (what its models take)."""
    from green_deploy.zoo.builder import encoded_splits

    data = encoded_splits(entry, dataset_settings)
    return np.asarray(data.val_x[:n_examples])


def select_rows(
    table_rows: Iterable[Mapping[str, Any]], model_id: str, only: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """This model's rows of the variants table, restricted to ``only`` (variant ids) when given."""
    rows = [dict(row) for row in table_rows]
    known = {row["variant_id"] for row in rows}
    only = list(only)
    unknown = sorted(set(only) - known)
    if unknown:
        raise ConfigError(
            f"deploy.only names unknown variant(s) {unknown}; in the variants table: {sorted(known)}"
        )
    mine = [row for row in rows if row["model_id"] == model_id]
    if not mine:
        raise ArtifactError(
            f"the variants table holds no variant of {model_id!r}; run `kedro run --pipeline=optimize` first"
        )
    return [row for row in mine if not only or row["variant_id"] in only]


def variant_of(row: Mapping[str, Any], examples: np.ndarray) -> Variant:
    """The deployable variant of a variants-table row (a baseline is the zoo model's folder);
    ``examples`` (real encoded inputs) give its input spec and the servers' warm-up item."""
    folder = model_folder(row)
    if not folder.is_dir():
        raise ArtifactError(
            f"{row['model_id']}/{row['variant_id']}: {folder} does not exist; run `kedro run --pipeline=optimize`"
        )
    examples = np.asarray(examples)
    return Variant(
        str(row["model_id"]),
        str(row["variant_id"]),
        folder,
        str(row["runtime"]),
        InputSpec.from_example(examples),
        examples[:1],
    )


def skip_reason(row: Mapping[str, Any], serving_devices: Collection[str] = ("cpu",)) -> str | None:
    """Why a variants-table row is not served on any of ``serving_devices`` (the deploy pipeline
    serves on the CPU; an evaluate study on the devices it names), or ``None``."""
    if row.get("status") != "ok":
        return f"{row.get('status')}: {row.get('reason') or 'no reason recorded'}"
    if row.get("runtime") not in RUNTIMES:
        return f"runtime {row.get('runtime')!r} is not served ({', '.join(RUNTIMES)})"
    devices = [d.strip() for d in str(row.get("devices") or "").split(",") if d.strip()]
    if not set(devices) & set(serving_devices):
        return (
            f"runs on {', '.join(devices) or 'no recorded device'} only; "
            f"this machine serves on {', '.join(serving_devices)}"
        )
    return None


def in_process_outputs(variant: Variant, batch: np.ndarray) -> np.ndarray:
    """What the variant's own files predict for ``batch`` in this process (the check's reference)."""
    from green_deploy.serving.model import load_model_files, predictor

    return np.asarray(predictor(variant.runtime, load_model_files(variant.folder, variant.runtime))(batch))


def deploy_model(
    model_id: str,
    rows: list[dict[str, Any]],
    examples: np.ndarray | None,
    deployers: Mapping[str, Deployer],
    check: CheckSettings,
) -> list[DeploymentRow]:
    """Deploy and check every row of one model on every deployer; one ``DeploymentRow`` each.

    ``examples`` (encoded validation inputs) give the input spec and the check's batch; they may
    be ``None`` only when no row is deployable."""
    results: list[DeploymentRow] = []
    for row in rows:
        base: dict[str, Any] = {
            "model_id": model_id,
            "variant_id": str(row["variant_id"]),
            "runtime": str(row.get("runtime") or ""),
        }
        reason = skip_reason(row)
        if reason is not None:
            logger.info("%s/%s: skipped (%s)", model_id, row["variant_id"], reason)
            results.extend(
                DeploymentRow(**base, target=t, status=STATUS_SKIPPED, reason=reason) for t in deployers
            )
            continue
        if examples is None:
            raise ValueError(f"{model_id}: validation examples are needed to deploy {row['variant_id']}")
        try:
            variant = variant_of(row, examples)
            expected = in_process_outputs(variant, examples)
        except Exception as error:
            logger.exception("%s/%s: cannot load the variant", model_id, row["variant_id"])
            results.extend(
                DeploymentRow(**base, target=t, status=STATUS_FAILED, reason=_describe(error))
                for t in deployers
            )
            continue
        for target, deployer in deployers.items():
            results.append(_deploy_one(variant, deployer, target, examples, expected, check, base))
    return results


def _deploy_one(
    variant: Variant,
    deployer: Deployer,
    target: str,
    examples: np.ndarray,
    expected: np.ndarray,
    check: CheckSettings,
    base: dict[str, Any],
) -> DeploymentRow:
    name = f"{variant.model_id}/{variant.variant_id} on {target}"
    try:
        deployment = deployer.deploy(variant)
    except Exception as error:
        logger.exception("%s: deploy failed", name)
        return DeploymentRow(**base, target=target, status=STATUS_FAILED, reason=_describe(error))
    row = DeploymentRow(
        **base,
        target=target,
        status=deployment.status,
        endpoint_name=deployment.endpoint_name,
        url=deployment.endpoint_url,
        region=deployment.region,
        instance_type=deployment.instance_type,
        cost_per_hour_usd=deployment.cost_per_hour_usd,
        pue=deployment.pue,
        created_at=deployment.created_at,
    )
    if deployment.status == STATUS_DRY_RUN:
        return row
    _local_details(deployer, deployment, row)
    try:
        if isinstance(deployer, LocalDeployer):
            deployer.health(deployment)
        outputs, energy = deployer.predict(deployment, examples)
        diff, tolerance = _compare(name, outputs, expected, check)
    except Exception as error:
        logger.error("%s: check failed: %s", name, error)
        row.status, row.reason = STATUS_FAILED, _describe(error)
        try:
            deployer.teardown(deployment)
        except Exception:
            logger.exception("%s: teardown after the failed check failed too", name)
        return row
    row.status = STATUS_IN_SERVICE
    row.check_items, row.check_max_abs_diff, row.check_tolerance = len(examples), diff, tolerance
    row.check_energy_j, row.check_energy_measured = energy.energy_j, energy.measured
    row.check_energy_source = "; ".join(f"{c.get('component')}={c.get('source')}" for c in energy.components)
    if target in cloud_targets():
        record_deployment(deployer.work_dir, deployment)
    if isinstance(deployer, StackDeployer):  # measured by evaluate, which starts it again
        deployer.teardown(deployment)
        row.reason = "checked, then stopped: a provider stack runs only while the study measures it"
    logger.info("%s: answered %d examples, max |server - in-process| = %.3g", name, len(examples), diff)
    return row


def _local_details(deployer: Deployer, deployment: Deployment, row: DeploymentRow) -> None:
    if not isinstance(deployer, LocalDeployer):
        return
    state = deployer.state(deployment)
    row.pid = int(deployment.resources["pid"])
    row.rss_bytes = rss_bytes(row.pid)
    if state is not None:
        row.reused, row.startup_s = state.reused, state.startup_s


def _compare(
    name: str, outputs: np.ndarray, expected: np.ndarray, check: CheckSettings
) -> tuple[float, float]:
    outputs = np.asarray(outputs, np.float64)
    reference = np.asarray(expected, np.float64)
    tolerance = check.tolerance(reference)
    if outputs.shape != reference.shape:
        raise DeploymentCheckError(
            f"{name}: the server answered shape {outputs.shape}, in process the variant gives {reference.shape}"
        )
    # NaN where in process gives NaN is a match; anywhere else it is a difference
    both_nan = np.isnan(outputs) & np.isnan(reference)
    difference = np.where(both_nan, 0.0, np.abs(outputs - reference))
    difference = np.where(np.isnan(difference), np.inf, difference)
    worst = float(difference.max()) if difference.size else 0.0
    if worst > tolerance:
        index = np.unravel_index(int(np.argmax(difference)), difference.shape)
        raise DeploymentCheckError(
            f"{name}: the server's outputs differ from the in-process outputs by {worst:.6g} at {tuple(map(int, index))} "
            f"(tolerance {tolerance:.3g} = deploy.check.atol + rtol * max|output|): server {float(outputs[index]):.6g} vs "
            f"in process {float(reference[index]):.6g}; first item: server {np.array2string(outputs[0].ravel()[:8], precision=6)} "
            f"vs in process {np.array2string(reference[0].ravel()[:8], precision=6)}"
        )
    return worst, tolerance


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def record_deployment(work_dir: Path | str, deployment: Deployment) -> Path:
    """Write a cloud deployment's record where ``undeploy`` finds it (atomically)."""
    folder = Path(work_dir) / deployment.model_id / deployment.variant_id / deployment.target
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RECORD_FILE
    write_json_atomically(path, deployment.to_dict())
    return path


def recorded_deployments(work_dir: Path | str, target: str) -> list[tuple[Path, Deployment]]:
    paths = sorted(Path(work_dir).glob(f"*/*/{target}/{RECORD_FILE}"))
    return [(path, Deployment.from_dict(json.loads(path.read_text()))) for path in paths]


def still_running(work_dir: Path | str) -> set[tuple[str, str, int]]:
    """(model, variant, pid) of every local server recorded under ``work_dir`` that still runs."""
    return {
        (s.deployment.model_id, s.deployment.variant_id, s.pid)
        for s in LocalDeployer(LocalSettings(), work_dir).running()
    }


def undeploy_all(
    settings: DeploySettings, raw: Mapping[str, Any], credentials: Mapping[str, Any] | None = None
) -> list[Deployment]:
    """Stop every local server recorded under the work dir and delete every recorded cloud
    deployment of the configured cloud targets; what was removed."""
    servers = LocalSettings.parse(raw.get(LOCAL_TARGET))
    removed = teardown_all(settings.work_dir, servers.stop_timeout_s)
    clouds = [t for t in settings.targets if t in cloud_targets()]
    if clouds:
        deployers = build_deployers(
            DeploySettings(targets=tuple(clouds), work_dir=settings.work_dir), raw, credentials
        )
        for target, deployer in deployers.items():
            for path, deployment in recorded_deployments(settings.work_dir, target):
                deployer.teardown(deployment)
                path.unlink(missing_ok=True)
                removed.append(deployment)
    for target in sorted(set(cloud_targets()) - set(clouds)):
        left = recorded_deployments(settings.work_dir, target)
        if left:
            logger.warning(
                "%d %s deployment(s) are recorded under %s but %s is not in deploy.targets: not deleted (%s)",
                len(left),
                target,
                settings.work_dir,
                target,
                ", ".join(d.endpoint_name for _, d in left),
            )
    logger.info("undeployed %d deployment(s)", len(removed))
    return removed
