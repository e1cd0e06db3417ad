"""What every deployment target shares: the variant it deploys, the record it returns, its protocol.

A target (``local``, ``sagemaker``, ``azureml``) is a ``Deployer``: ``deploy`` turns a variant
folder into a running endpoint and returns a ``Deployment`` record; ``predict`` sends a batch and
returns the outputs with the provider-side energy the serving core measured for that request;
``teardown`` removes everything ``deploy`` created. With ``dry_run`` a deployer writes every
package and manifest into its work folder and calls nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from green_deploy.errors import ArtifactError, GreenDeployError
from green_deploy.runtimes import get_runtime, runtime_of_folder
from green_deploy.serving.model import InputSpec

RECORD_FILE = "record.json"

STATUS_IN_SERVICE = "in_service"
STATUS_DRY_RUN = "dry_run"
STATUS_DELETED = "deleted"


class DeploymentError(GreenDeployError):
    """A cloud call failed, an endpoint did not come up, or a prediction was refused."""


class DeploymentTimeoutError(DeploymentError):
    """An endpoint did not reach its serving state within the configured time."""


@dataclass(frozen=True)
class Variant:
    """One optimized variant as a deployer sees it: its folder, runtime and input.

    ``folder`` is ``data/06_models/variants/<model_id>/<variant_id>/`` (model files plus
    ``variant_config.json`` and ``record.json``); ``input_spec`` is the array one request item
    carries, which the serving core validates against (a model file does not state it).
    ``example`` is one real input item for the server's warm-up call (``None``: an all-zeros
    item, which for text is all padding and can be degenerate, e.g. a division by a zero count).
    """

    model_id: str
    variant_id: str
    folder: Path
    runtime: str
    input_spec: InputSpec
    example: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        get_runtime(self.runtime)  # an unknown runtime is refused here, not when served
        object.__setattr__(self, "folder", Path(self.folder))

    @classmethod
    def from_folder(cls, folder: Path | str, input_spec: InputSpec, runtime: str | None = None) -> Variant:
        """The variant in ``folder``; ids and runtime come from its ``record.json``, else from the
        folder names and the model file present."""
        folder = Path(folder)
        if not folder.is_dir():
            raise ArtifactError(
                f"variant folder {folder} does not exist; run `kedro run --pipeline=optimize` first"
            )
        record: dict[str, Any] = {}
        if (folder / RECORD_FILE).is_file():
            record = json.loads((folder / RECORD_FILE).read_text())
        runtime = runtime or record.get("runtime") or runtime_of_folder(folder)
        return cls(
            model_id=str(record.get("model_id") or folder.parent.name),
            variant_id=str(record.get("variant_id") or folder.name),
            folder=folder,
            runtime=runtime,
            input_spec=input_spec,
        )


@dataclass(frozen=True)
class ServerEnergy:
    """The serving core's energy of one request, as the provider's machine measured it.

    ``energy_j`` is the request's share of its window in joules; ``active_energy_j`` the same
    less the server's idle power over the window (``None`` when the server measured no idle
    baseline); ``measured`` is True only when every component came from a hardware meter;
    ``components`` keeps the per-component figures (``component``, ``source``, ``measured``,
    ``energy_j``) exactly as the server sent them.
    """

    energy_j: float
    energy_per_item_j: float
    measured: bool
    components: tuple[dict[str, Any], ...]
    active_energy_j: float | None = None
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_response(cls, energy: Mapping[str, Any]) -> ServerEnergy:
        """From the ``energy`` object of the serving core's JSON response."""
        try:
            return cls(
                energy_j=float(energy["joules"]),
                energy_per_item_j=float(energy["joules_per_item"]),
                measured=bool(energy["measured"]),
                components=tuple(dict(c) for c in energy.get("components", ())),
                active_energy_j=None
                if energy.get("active_joules") is None
                else float(energy["active_joules"]),
                raw=dict(energy),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise DeploymentError(
                f"the response's energy object is not the serving core's: {energy!r}"
            ) from error


def parse_prediction(payload: bytes | str) -> tuple[np.ndarray, ServerEnergy]:
    """Outputs and energy from the serving core's JSON response; its error body becomes an error."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DeploymentError(
            f"the endpoint answered something that is not JSON: {str(payload)[:200]!r}"
        ) from error
    if not isinstance(body, dict):
        raise DeploymentError(f"the endpoint answered JSON that is not an object: {str(body)[:200]}")
    if "error" in body:
        refusal = body["error"] or {}
        raise DeploymentError(
            f"the endpoint refused the request: {refusal.get('code')}: {refusal.get('message')}"
        )
    if "outputs" not in body or "energy" not in body:
        raise DeploymentError(f"the endpoint's response lacks outputs or energy; keys: {sorted(body)}")
    try:
        # the server sends NaN/Infinity as null; float64 turns null back into NaN
        outputs = np.asarray(body["outputs"], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DeploymentError(f"the response's outputs are not a numeric array: {error}") from error
    return outputs, ServerEnergy.from_response(body["energy"])


@dataclass(frozen=True)
class Deployment:
    """One deployed variant: where it runs, what it costs, and what ``teardown`` must remove.

    ``created_at`` is ISO 8601 UTC; ``cost_per_hour_usd`` the instance-hour price and ``pue`` the
    provider's power usage effectiveness from configuration (the energy core turns them into cost
    and facility energy). ``resources`` names what the target created (model, endpoint config,
    S3 object, deployment name...), never a credential.
    """

    target: str
    model_id: str
    variant_id: str
    endpoint_name: str
    endpoint_url: str
    region: str
    instance_type: str
    instance_count: int
    status: str
    cost_per_hour_usd: float | None
    pue: float | None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    resources: dict[str, str] = field(default_factory=dict)

    @property
    def dry_run(self) -> bool:
        return self.status == STATUS_DRY_RUN

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Deployment:
        return cls(**{**data, "resources": dict(data.get("resources") or {})})


@runtime_checkable
class Deployer(Protocol):
    """A deployment target. ``dry_run``: write packages and manifests into ``work_dir``, call nothing."""

    target: str
    dry_run: bool
    work_dir: Path

    def deploy(self, variant: Variant) -> Deployment:
        """Create the endpoint serving ``variant`` and wait until it serves."""
        ...

    def predict(self, deployment: Deployment, inputs: np.ndarray) -> tuple[np.ndarray, ServerEnergy]:
        """Send one batch; the outputs and the server-side energy of that request."""
        ...

    def teardown(self, deployment: Deployment) -> None:
        """Remove everything ``deploy`` created for ``deployment``."""
        ...
