"""A provider's serving stack run on this machine: the software a cloud endpoint runs around a
model, started on loopback so that it is measured on the same hardware as every other target.

What can be measured without a cloud account is the serving software, which is public: Azure ML's
inference server over the ``score.py`` the Azure deployer packages (``azureml_server``), the
SageMaker container entry the SageMaker deployer packages (``sagemaker_server``), and the
SageMaker inference toolkit on TorchServe that SageMaker's prebuilt PyTorch containers run
(``sagemaker_torchserve``). Each is a subclass of ``StackDeployer`` that writes what its
provider would receive and says how to start it (``Launch``); this module starts it in a session
of its own, waits until its readiness URL answers, sends requests and stops the whole session.

The hardware is this machine's, not the provider's: a cell of a stack costs the stack's software
here. Its region, PUE and instance price are the provider's (configured), so facility energy,
carbon and cost follow the provider's location while the joules stay comparable with the local
target's. None of these servers reports energy per request the way the green-deploy core does
over its own HTTP answer (the Azure ``score.py`` and the SageMaker entry carry the core's
in-process figure in their JSON, TorchServe nothing): the study meters each one's process tree
around every repetition instead (``evaluate.harness.ServerMeter``), the same way for all.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from green_deploy.deploy.base import (
    STATUS_DRY_RUN,
    STATUS_IN_SERVICE,
    Deployment,
    DeploymentError,
    DeploymentTimeoutError,
    ServerEnergy,
    Variant,
    parse_prediction,
)
from green_deploy.deploy.http_client import http_request, post
from green_deploy.deploy.processes import (
    log_tail,
    machine_description,
    process_start_of,
    start_process,
    stop_process_group,
    write_json_atomically,
)
from green_deploy.deploy.settings import DEPLOYED_BATCH_ITEMS, check_positive, parse_target_settings
from green_deploy.errors import ConfigError
from green_deploy.runtimes import DEVICES

logger = logging.getLogger(__name__)

LOG_FILE = "server.log"
COMMAND_FILE = "command.json"
JSON_TYPE = "application/json"


@dataclass(frozen=True)
class StackSettings:
    """``deploy.<stack>`` of a provider's stack run on this machine.

    Attributes:
        region: the provider region the cells are costed in (its grid carbon intensity from
            CodeCarbon's cloud table); the hardware stays this machine's.
        instance_type: the provider instance the stack stands for (recorded beside this
            machine's description; its price is ``cost_per_hour_usd``).
        cost_per_hour_usd: that instance's hourly price (``None``: unknown).
        pue: the provider's PUE; ``None``: its published figure (``energy.carbon.DEFAULT_PUE``).
        packages: the folder holding the stack's own Python packages (its server and their pins,
            installed by ``make setup``: ``scripts/install_provider_stacks.sh``), put first on
            the server's path as the provider's image would hold them.
        workers: server worker processes (gunicorn workers, TorchServe model workers).
        threads: intra-op threads of each worker (``None``: the runtime decides).
        max_items, max_batch_items: the serving core's limits where the stack runs it.
        constraints_file: where the package's pinned requirements come from.
        start_timeout_s, stop_timeout_s: waiting for readiness; for SIGTERM before SIGKILL.
        device, gpu_energy, idle_s: as ``deploy.local`` (the study sets them per cell).
    """

    region: str
    instance_type: str = ""
    cost_per_hour_usd: float | None = None
    pue: float | None = None
    packages: str = ".venv/provider-stacks"
    workers: int = 1
    threads: int | None = None
    max_items: int = 256
    max_batch_items: int = DEPLOYED_BATCH_ITEMS
    constraints_file: str = "constraints.txt"
    start_timeout_s: float = 180.0
    stop_timeout_s: float = 20.0
    device: str = "cpu"
    gpu_energy: bool = True
    idle_s: float = 0.0

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None, where: str) -> StackSettings:
        return parse_target_settings(cls, raw, where)

    def check(self, where: str) -> None:
        check_positive(
            where,
            workers=self.workers,
            threads=self.threads,
            max_items=self.max_items,
            start_timeout_s=self.start_timeout_s,
            stop_timeout_s=self.stop_timeout_s,
            cost_per_hour_usd=self.cost_per_hour_usd,
        )
        if self.device not in DEVICES:
            raise ConfigError(f"{where}: device must be one of {list(DEVICES)}, got {self.device!r}")
        if self.max_batch_items < 0:
            raise ConfigError(f"{where}: max_batch_items must be >= 0, got {self.max_batch_items}")
        if self.pue is not None and self.pue < 1.0:
            raise ConfigError(f"{where}: pue must be >= 1.0 (facility energy / IT energy), got {self.pue}")


@dataclass(frozen=True)
class Launch:
    """How to start one stack for one variant: the command, its environment additions, and the
    paths it answers on once started. ``ports`` free ports are chosen: ``{port}`` in the command
    and environment is the first (where it serves), ``{port1}``, ``{port2}``... the others
    (metrics, gRPC). Ready: ``ready_path`` answers 200, with ``ready_marker`` in its body if given."""

    command: list[str]
    env: dict[str, str]
    ready_path: str
    predict_path: str
    request_type: str = JSON_TYPE
    cwd: Path | None = None
    ports: int = 1
    ready_marker: str = ""
    details: dict[str, str] = field(default_factory=dict)

    def filled(self, ports: list[int]) -> tuple[list[str], dict[str, str]]:
        """The command and environment with the ports filled in."""
        names = {"{port}": ports[0], **{f"{{port{i}}}": port for i, port in enumerate(ports) if i}}

        def fill(text: str) -> str:
            for name, port in names.items():
                text = text.replace(name, str(port))
            return text

        return [fill(part) for part in self.command], {key: fill(value) for key, value in self.env.items()}


class StackDeployer:
    """Starts, calls and stops one provider stack per variant on 127.0.0.1; see the module docstring.

    A subclass sets ``target``, ``provider`` and ``serving_path`` and writes its package in
    ``launch``. ``runtimes`` names the runtimes the stack can serve (empty: all), and
    ``runtimes_reason`` says why the others cannot be.
    """

    target: str
    provider: ClassVar[str]
    serving_path: ClassVar[str]
    runtimes: ClassVar[tuple[str, ...]] = ()
    runtimes_reason: ClassVar[str] = ""

    def __init__(
        self,
        settings: StackSettings,
        work_dir: Path | str = "data/07_model_output/deploy",
        *,
        dry_run: bool = False,
        tied: bool = False,
    ) -> None:
        from green_deploy.energy.carbon import pue_for

        self.settings = settings
        self.work_dir = Path(work_dir)
        self.dry_run = dry_run
        self.tied = tied
        self.pue = pue_for(self.provider, settings.pue)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(region={self.settings.region!r}, work_dir={str(self.work_dir)!r})"

    # ---- what a stack provides -----------------------------------------------------------
    def launch(self, variant: Variant, folder: Path) -> Launch:
        """Write the package the provider would receive into ``folder``; how to start it."""
        raise NotImplementedError

    # ---- Deployer protocol -----------------------------------------------------------------
    def deploy(self, variant: Variant) -> Deployment:
        """The stack serving ``variant`` on a free loopback port, once its readiness URL answers."""
        self.check_runtime(variant.runtime)
        folder = (self.work_dir / variant.model_id / variant.variant_id / self.target).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        launch = self.launch(variant, folder)
        if self.dry_run:
            write_json_atomically(folder / COMMAND_FILE, {"command": launch.command, "env": launch.env})
            return self._record(variant, STATUS_DRY_RUN, "", {"command_file": str(folder / COMMAND_FILE)})
        ports = free_ports(launch.ports)
        command, env_added = launch.filled(ports)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **env_added}
        log_file = folder / LOG_FILE
        base_url = f"http://127.0.0.1:{ports[0]}"
        started = time.perf_counter()
        process = start_process(command, log_file, env, tied=self.tied, cwd=launch.cwd)
        try:
            self._wait_until_ready(
                process, f"{base_url}{launch.ready_path}", launch.ready_marker, log_file, variant
            )
        except BaseException:
            stop_process_group(process.pid, None, self.settings.stop_timeout_s)
            raise
        startup_s = time.perf_counter() - started
        logger.info(
            "%s/%s on %s serves at %s (pid %d), up in %.1f s",
            variant.model_id,
            variant.variant_id,
            self.target,
            base_url,
            process.pid,
            startup_s,
        )
        resources = {
            "pid": str(process.pid),
            "process_start": process_start_of(process.pid) or "",
            "base_url": base_url,
            "log_file": str(log_file),
            "request_type": launch.request_type,
            "serving_path": self.serving_path,
            "startup_s": f"{startup_s:.3f}",
            **launch.details,
        }
        return self._record(variant, STATUS_IN_SERVICE, f"{base_url}{launch.predict_path}", resources)

    def predict(self, deployment: Deployment, inputs: np.ndarray) -> tuple[np.ndarray, ServerEnergy]:
        """One request as the provider's clients send it; the outputs, and the energy the stack
        reported (none for most: see the module docstring)."""
        if deployment.dry_run:
            raise DeploymentError(f"{deployment.endpoint_name} is a dry run: nothing serves it")
        request_type = deployment.resources.get("request_type", JSON_TYPE)
        if request_type == JSON_TYPE:
            body = json.dumps({"inputs": np.asarray(inputs).tolist()}).encode()
        else:
            from green_deploy.serving.validation import encode_npy

            body = encode_npy(np.asarray(inputs))
        _, payload = post(
            deployment.endpoint_name,
            deployment.endpoint_url,
            body,
            {"Content-Type": request_type, "Accept": JSON_TYPE},
            timeout_s=max(60.0, self.settings.start_timeout_s),
        )
        return parse_answer(payload)

    def teardown(self, deployment: Deployment) -> None:
        """Stop the stack's whole session (its server, workers and any Java frontend)."""
        if deployment.dry_run:
            return
        pid = int(deployment.resources["pid"])
        stop_process_group(
            pid, deployment.resources.get("process_start") or None, self.settings.stop_timeout_s
        )
        logger.info("stopped %s on %s (pid %d)", deployment.endpoint_name, self.target, pid)

    # ---- helpers ------------------------------------------------------------------------------
    def check_runtime(self, runtime: str) -> None:
        """A ``DeploymentError`` naming why this stack cannot serve ``runtime`` here."""
        if self.runtimes and runtime not in self.runtimes:
            raise DeploymentError(
                f"{self.target} cannot serve {runtime} variants: {self.runtimes_reason} "
                f"(it serves {', '.join(self.runtimes)})"
            )
        if self.settings.device != "cpu":
            raise DeploymentError(
                f"{self.target} is measured on the CPU only: its server would open the GPU's "
                "counter itself, beside the study's"
            )

    def packages_dir(self) -> Path:
        """The stack's own packages; a ``DeploymentError`` says how to install them."""
        folder = Path(self.settings.packages).resolve()
        if not folder.is_dir():
            raise DeploymentError(
                f"{self.target}: the stack's packages are not installed at {folder} "
                f"(deploy.{self.target}.packages); `make setup` installs them "
                "(scripts/install_provider_stacks.sh)"
            )
        return folder

    def _wait_until_ready(
        self, process: Any, url: str, marker: str, log_file: Path, variant: Variant
    ) -> None:
        name = f"{variant.model_id}/{variant.variant_id} on {self.target}"
        deadline = time.monotonic() + self.settings.start_timeout_s
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                raise DeploymentError(
                    f"the server for {name} exited with code {code} while starting; "
                    f"the end of {log_file}:\n{log_tail(log_file)}"
                )
            try:
                status, _, body = http_request("GET", url, timeout_s=5.0)
                if status == 200 and marker.encode() in body:
                    return
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.1)
        raise DeploymentTimeoutError(
            f"{name} did not answer {url} within {self.settings.start_timeout_s:.0f} s "
            f"(deploy.{self.target}.start_timeout_s); the end of {log_file}:\n{log_tail(log_file)}"
        )

    def _record(self, variant: Variant, status: str, url: str, resources: dict[str, str]) -> Deployment:
        here = machine_description()
        stands_for = self.settings.instance_type
        return Deployment(
            target=self.target,
            model_id=variant.model_id,
            variant_id=variant.variant_id,
            endpoint_name=f"{variant.model_id}/{variant.variant_id}",
            endpoint_url=url,
            region=self.settings.region,
            instance_type=f"{here} (standing for {stands_for})" if stands_for else here,
            instance_count=1,
            status=status,
            cost_per_hour_usd=self.settings.cost_per_hour_usd,
            pue=self.pue,
            resources=resources,
        )


def parse_answer(payload: bytes) -> tuple[np.ndarray, ServerEnergy]:
    """Outputs of a stack's JSON answer, with the serving core's energy when it carries one;
    otherwise an energy that names no component (the stack reported none)."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DeploymentError(f"the stack answered something that is not JSON: {payload[:200]!r}") from error
    if isinstance(body, dict) and "energy" in body:
        return parse_prediction(payload)
    outputs = body.get("outputs") if isinstance(body, dict) else body
    try:
        array = np.asarray(outputs, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DeploymentError(f"the stack's outputs are not a numeric array: {error}") from error
    return array, ServerEnergy(energy_j=0.0, energy_per_item_j=0.0, measured=False, components=())


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 now (stacks take port numbers, not 0)."""
    probes = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()
