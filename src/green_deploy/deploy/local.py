"""The local target (the default): one real serving process on loopback per deployed variant.

``deploy`` starts ``python -m green_deploy.serving`` for the variant on ``127.0.0.1`` with
``--port 0`` (the server picks a free port) and ``--ready-file``, waits for that file and for
``GET /health``, and records the server in a state file,
``<work_dir>/<model_id>/<variant_id>/local/deployment.json`` (written atomically: a temporary
file, then a rename). The server's output goes to ``server.log`` beside it; when a server dies
while starting, the error quotes that log's tail.

**Stale servers.** Servers outlive the process that started them (their own session: Ctrl-C on
``kedro run`` does not kill them, ``undeploy`` does), so a later ``deploy`` of the same variant
first reads the state file. The recorded server is **reused** when its process is still the one
recorded (same PID *and* same start time in ``/proc``, so a recycled PID is never mistaken for
it), the variant's *fingerprint* is unchanged (sha256 over the runtime's model files, the
runtime, the input spec and the server's options) and ``/health`` answers with the same name,
runtime and input. Otherwise the recorded server is stopped (if it is still running) and
**replaced**. A lock file per variant makes two deploys of one variant wait for each other, so a
variant never has two servers.

**How many servers at once.** Measured here (2 CPU cores, 24 GiB, while another pipeline ran;
deploy -> ``/health`` answered, then RSS): ONNX Runtime MiniLM int8 0.7 s and 0.15 GB; PyTorch
0.27 GB (the Fashion-MNIST ViT, EfficientNet-Lite0 fp16) to 0.5-0.6 GB (MiniLM fp32, int8), 1.6-4.6 s; TFLite
0.65-0.7 GB (TensorFlow is imported), 3 s; Keras MiniLM 0.85 GB, 15 s. The default study has
~130-180 ok variants: all up at once would need ~70 GB and as many processes on 2 cores. So
``max_servers`` (default 6, a few GB) bounds the servers running under one work dir: deploying
one more stops the least recently deployed first. The deploy pipeline starts, checks and keeps
each variant in turn, so at its end the last ``max_servers`` deployments run and every other one
was checked, then stopped; a later consumer (evaluate) calls ``deploy`` again, which reuses a
running server or starts the variant's in seconds. ``max_servers: null`` removes the bound.

``teardown`` sends SIGTERM (the server finishes requests in flight and exits 0), waits
``stop_timeout_s``, then SIGKILLs; ``teardown_all(work_dir)`` stops every recorded server (the
``undeploy`` pipeline). Linux only for the process checks (``/proc``); elsewhere a live PID is
trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import green_deploy
from green_deploy.deploy.base import (
    STATUS_DRY_RUN,
    STATUS_IN_SERVICE,
    Deployment,
    DeploymentError,
    DeploymentTimeoutError,
    ServerEnergy,
    Variant,
)
from green_deploy.deploy.http_client import error_text, http_request, post
from green_deploy.deploy.processes import (
    ForkedProcess,
    Process,
    folder_lock,
    log_tail,
    machine_description,
    process_alive,
    process_start_of,
    start_process,
    stop_process,
    write_json_atomically,
    zygote_for,
)
from green_deploy.deploy.settings import DEPLOYED_BATCH_ITEMS, check_positive, parse_target_settings
from green_deploy.errors import ArtifactError, ConfigError
from green_deploy.runtimes import DEVICES, get_runtime
from green_deploy.serving.model import serving_path
from green_deploy.serving.validation import encode_npy
from green_deploy.serving.zygote import PRELOADS
from green_deploy.zoo.inference import KERAS_MODES

logger = logging.getLogger(__name__)

TARGET = "local"
# the local server with micro-batching off (``max_batch_items: 0``): the serving configuration
# compared with ``local`` under concurrent load (RQ1.6); its servers are recorded under its name
UNBATCHED_TARGET = "local_unbatched"
SERVER_TARGETS = (TARGET, UNBATCHED_TARGET)
STATE_FILE = "deployment.json"
LOG_FILE = "server.log"
READY_FILE = "ready.json"
COMMAND_FILE = "command.json"
WARMUP_FILE = "warmup.npy"
STATE_FORMAT = 1
NPY_TYPE = "application/x-npy"


@dataclass(frozen=True)
class LocalSettings:
    """``deploy.local`` in ``parameters_deploy.yml``.

    Attributes:
        host: bind address of every server (loopback unless told otherwise).
        max_servers: servers kept running under one work dir; deploying one more stops the least
            recently deployed (``None``: no bound). See the module docstring for the sizes.
        start_timeout_s: how long ``deploy`` waits for the ready file and ``/health``.
        stop_timeout_s: how long ``teardown`` waits after SIGTERM before SIGKILL.
        threads: intra-op threads of each server (``None``: the runtime decides).
        device: where servers place their models (``cuda``: PyTorch variants only).
        max_items, max_batch_items: the serving core's limits (``--max-items``,
            ``--max-batch-items``).
        gpu_energy: let servers open NVML (``False`` passes ``--no-gpu-energy``).
        prefork: start servers by forking a process that imported their runtime once
            (``serving.zygote``) instead of a new interpreter each: what is served is the same,
            a server starts in 0.2-1.5 s instead of 1-3.4 s, and its resident memory (the DRAM
            estimate's input) counts only the pages it touches.
        keras_mode: how servers call Keras variants (``--keras-mode``): ``graph`` (a traced
            ``tf.function``, as TensorFlow deploys models), ``xla`` or ``eager``.
        cost_per_hour_usd: what an hour of this machine costs (``None``: unknown).
        pue: the site's power usage effectiveness; ``None`` uses the energy core's default for
            ``local`` (1.0: no facility overhead counted).
        idle_s: seconds each server measures idle power before it serves (``--idle-seconds``),
            so that every response carries active (idle-subtracted) energy; 0: not measured.
        python: the interpreter that runs the servers (default: this one).
    """

    host: str = "127.0.0.1"
    max_servers: int | None = 6
    start_timeout_s: float = 180.0
    stop_timeout_s: float = 20.0
    threads: int | None = None
    device: str = "cpu"
    max_items: int = 256
    max_batch_items: int = DEPLOYED_BATCH_ITEMS
    gpu_energy: bool = True
    prefork: bool = True
    keras_mode: str = "graph"
    cost_per_hour_usd: float | None = None
    pue: float | None = None
    idle_s: float = 0.0
    python: str | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None, where: str = "deploy.local") -> LocalSettings:
        return parse_target_settings(cls, raw, where)

    def check(self, where: str) -> None:
        check_positive(
            where,
            max_servers=self.max_servers,
            start_timeout_s=self.start_timeout_s,
            stop_timeout_s=self.stop_timeout_s,
            threads=self.threads,
            max_items=self.max_items,
            cost_per_hour_usd=self.cost_per_hour_usd,
        )
        if self.idle_s < 0:
            raise ConfigError(f"{where}: idle_s must be >= 0, got {self.idle_s}")
        if self.device not in DEVICES:
            raise ConfigError(f"{where}: device must be one of {list(DEVICES)}, got {self.device!r}")
        if self.keras_mode not in KERAS_MODES:
            raise ConfigError(
                f"{where}: keras_mode must be one of {list(KERAS_MODES)}, got {self.keras_mode!r}"
            )
        if self.max_batch_items < 0:
            raise ConfigError(f"{where}: max_batch_items must be >= 0, got {self.max_batch_items}")
        if self.pue is not None and self.pue < 1.0:
            raise ConfigError(f"{where}: pue must be >= 1.0 (facility energy / IT energy), got {self.pue}")


@dataclass(frozen=True)
class ServerState:
    """What the state file records about one running server (all a later process needs)."""

    deployment: Deployment
    pid: int
    process_start: str | None  # /proc/<pid>/stat start time (clock ticks since boot)
    fingerprint: str
    base_url: str
    command: tuple[str, ...]
    startup_s: float
    deployed_at_s: float  # time.time() of the last deploy that started or reused it
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "deployment": self.deployment.to_dict(), "format": STATE_FORMAT}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServerState:
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"state format {data.get('format')}, this code reads {STATE_FORMAT}")
        values = {k: v for k, v in data.items() if k != "format"}
        values["deployment"] = Deployment.from_dict(values["deployment"])
        values["command"] = tuple(values["command"])
        return cls(**values)


class LocalDeployer:
    """Serves variants from local processes on loopback; see the module docstring.

    Args:
        settings: ``LocalSettings.parse(params["local"])``.
        work_dir: where state files and server logs go (``<model>/<variant>/local/``).
        dry_run: write the command a server would run (``command.json``), start nothing.
        tied: the servers end with this process, however it ends (a study's, which stops them
            itself when it finishes: one killed must leave none behind); untied servers outlive
            it (the deploy pipeline's, stopped by ``undeploy``).
    """

    target: str

    def __init__(
        self,
        settings: LocalSettings | None = None,
        work_dir: Path | str = "data/07_model_output/deploy",
        *,
        dry_run: bool = False,
        tied: bool = False,
        target: str = TARGET,
    ) -> None:
        from green_deploy.energy.carbon import pue_for

        self.settings = settings or LocalSettings()
        self.work_dir = Path(work_dir)
        self.dry_run = dry_run
        self.tied = tied
        self.target = target
        self.pue = pue_for(TARGET, self.settings.pue)

    def __repr__(self) -> str:
        return f"LocalDeployer(work_dir={str(self.work_dir)!r}, max_servers={self.settings.max_servers}, dry_run={self.dry_run})"

    # ---- Deployer protocol ------------------------------------------------------------------
    def deploy(self, variant: Variant) -> Deployment:
        """A running server for ``variant``: the recorded one when it still serves this variant,
        else a new one (the recorded one, if any, stopped first)."""
        folder = self.folder(variant.model_id, variant.variant_id)
        folder.mkdir(parents=True, exist_ok=True)
        fingerprint = variant_fingerprint(variant, self._server_options())
        if self.dry_run:
            command = self._command(variant, folder / READY_FILE)
            write_json_atomically(folder / COMMAND_FILE, {"command": command, "fingerprint": fingerprint})
            logger.info(
                "dry run: %s/%s would be served by %s",
                variant.model_id,
                variant.variant_id,
                " ".join(command),
            )
            return self._record(variant, STATUS_DRY_RUN, "", {"command_file": str(folder / COMMAND_FILE)})
        with folder_lock(folder):
            state = read_state(folder / STATE_FILE)
            if state is not None:
                if self._still_serves(state, variant, fingerprint):
                    reused = _replace_state(state, deployed_at_s=time.time(), reused=True)
                    write_json_atomically(folder / STATE_FILE, reused.to_dict())
                    logger.info(
                        "%s/%s: reusing the server at %s (pid %d)",
                        variant.model_id,
                        variant.variant_id,
                        state.base_url,
                        state.pid,
                    )
                    return state.deployment
                logger.info(
                    "%s/%s: replacing the recorded server (pid %d): %s",
                    variant.model_id,
                    variant.variant_id,
                    state.pid,
                    "variant changed" if state.fingerprint != fingerprint else "not serving any more",
                )
                stop_process(state.pid, state.process_start, self.settings.stop_timeout_s)
                (folder / STATE_FILE).unlink(missing_ok=True)
            self._make_room(keep=(variant.model_id, variant.variant_id))
            state = self._start(variant, folder, fingerprint)
            write_json_atomically(folder / STATE_FILE, state.to_dict())
        return state.deployment

    def predict(self, deployment: Deployment, inputs: np.ndarray) -> tuple[np.ndarray, ServerEnergy]:
        """POST ``inputs`` as ``.npy``; the outputs (``.npy``) and the energy the server measured."""
        if deployment.dry_run:
            raise DeploymentError(f"{deployment.endpoint_name} is a dry run: nothing serves it")
        headers, payload = post(
            deployment.endpoint_name,
            deployment.endpoint_url,
            encode_npy(np.asarray(inputs)),
            {"Content-Type": NPY_TYPE, "Accept": NPY_TYPE},
            timeout_s=max(60.0, self.settings.start_timeout_s),
        )
        try:
            outputs = np.load(io.BytesIO(payload), allow_pickle=False)
            energy = {
                "joules": float(headers["x-energy-joules"]),
                "joules_per_item": float(headers["x-energy-joules-per-item"]),
                "active_joules": float(headers["x-energy-active-joules"])
                if headers.get("x-energy-active-joules")
                else None,
                "window": {"duration_s": float(headers["x-energy-window-seconds"])},
                "measured": headers["x-energy-measured"] == "true",
                "components": json.loads(headers["x-energy-components"]),
            }
        except (KeyError, ValueError, OSError) as error:
            raise DeploymentError(
                f"{deployment.endpoint_name} answered something that is not the serving core's .npy reply: {error}"
            ) from error
        return outputs, ServerEnergy.from_response(energy)

    def teardown(self, deployment: Deployment) -> None:
        """Stop the deployment's server (SIGTERM, then SIGKILL after ``stop_timeout_s``) and
        remove its state file; a server already gone is not an error."""
        if deployment.dry_run:
            return
        folder = self.folder(deployment.model_id, deployment.variant_id)
        pid = int(deployment.resources["pid"])
        with folder_lock(folder):
            stop_process(pid, deployment.resources.get("process_start") or None, self.settings.stop_timeout_s)
            state = read_state(folder / STATE_FILE)
            if state is not None and state.pid == pid:
                (folder / STATE_FILE).unlink(missing_ok=True)
        logger.info("stopped %s (pid %d)", deployment.endpoint_name, pid)

    # ---- beyond the protocol ---------------------------------------------------------------------
    def folder(self, model_id: str, variant_id: str) -> Path:
        return self.work_dir / model_id / variant_id / self.target

    def states(self) -> list[ServerState]:
        """Every recorded server under the work dir, running or not."""
        return recorded_servers(self.work_dir)

    def running(self) -> list[ServerState]:
        """The recorded servers whose process is still the one recorded."""
        return [s for s in self.states() if process_alive(s.pid, s.process_start)]

    def state(self, deployment: Deployment) -> ServerState | None:
        """The state file of ``deployment`` while it records this very server."""
        state = read_state(self.folder(deployment.model_id, deployment.variant_id) / STATE_FILE)
        if state is None or str(state.pid) != deployment.resources.get("pid"):
            return None
        return state

    def health(self, deployment: Deployment) -> dict[str, Any]:
        """``GET /health`` of the deployment's server (its JSON body); an error when it does not answer 200."""
        status, _, payload = http_request("GET", deployment.resources["health_url"], timeout_s=10.0)
        if status != 200:
            raise DeploymentError(
                f"{deployment.endpoint_name}: /health answered {status}: {error_text(payload)}"
            )
        return json.loads(payload)

    # ---- internals ---------------------------------------------------------------------------------
    def _server_options(self) -> list[str]:
        s = self.settings
        options = [
            "--host",
            s.host,
            "--max-items",
            str(s.max_items),
            "--max-batch-items",
            str(s.max_batch_items),
        ]
        if s.threads is not None:
            options += ["--threads", str(s.threads)]
        if s.device != "cpu":
            options += ["--device", s.device]
        if not s.gpu_energy:
            options.append("--no-gpu-energy")
        if s.keras_mode != "graph":
            options += ["--keras-mode", s.keras_mode]
        if s.idle_s > 0:
            options += ["--idle-seconds", str(s.idle_s)]
        return options

    def _command(self, variant: Variant, ready_file: Path) -> list[str]:
        spec = variant.input_spec
        return [
            self.settings.python or sys.executable,
            "-m",
            "green_deploy.serving",
            "--variant-dir",
            str(variant.folder),
            "--runtime",
            variant.runtime,
            "--name",
            variant.variant_id,
            "--input-shape",
            ",".join(str(d) for d in spec.shape),
            "--input-dtype",
            spec.dtype,
            "--port",
            "0",
            "--ready-file",
            str(ready_file),
            *self._warmup_option(variant, ready_file.parent),
            *self._server_options(),
        ]

    @staticmethod
    def _warmup_option(variant: Variant, folder: Path) -> list[str]:
        """A real item for the server's warm-up call, saved beside its state (not in the
        fingerprint: it does not change what is served)."""
        if variant.example is None:
            return []
        path = folder / WARMUP_FILE
        np.save(path, np.asarray(variant.example), allow_pickle=False)
        return ["--warmup-input", str(path)]

    def _start(self, variant: Variant, folder: Path, fingerprint: str) -> ServerState:
        ready_file, log_file = folder / READY_FILE, folder / LOG_FILE
        ready_file.unlink(missing_ok=True)
        command = self._command(variant, ready_file)
        # the servers import the green_deploy this process imported (a project copy's src/ too)
        source_root = str(Path(green_deploy.__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH")) if p)
        started = time.perf_counter()
        with log_file.open("ab") as log:
            log.write(f"\n--- {_now()} {' '.join(command)}\n".encode())
        process = self._spawn(variant.runtime, command, log_file, env)
        try:
            ready = self._wait_until_ready(process, ready_file, log_file, variant)
        except BaseException:
            stop_process(process.pid, None, self.settings.stop_timeout_s)
            raise
        startup_s = time.perf_counter() - started
        base_url = ready["url"]
        resources = {
            "pid": str(process.pid),
            "process_start": process_start_of(process.pid) or "",
            "base_url": base_url,
            "health_url": f"{base_url}/health",
            "state_file": str(folder / STATE_FILE),
            "log_file": str(log_file),
            "variant_dir": str(variant.folder),
            "runtime": variant.runtime,
            "serving_path": serving_path(variant.runtime, self.settings.keras_mode),
            "fingerprint": fingerprint,
        }
        deployment = self._record(
            variant, STATUS_IN_SERVICE, f"{base_url}/v1/models/{variant.variant_id}/predict", resources
        )
        logger.info(
            "%s/%s (%s) serves at %s (pid %d), up in %.1f s",
            variant.model_id,
            variant.variant_id,
            variant.runtime,
            base_url,
            process.pid,
            startup_s,
        )
        return ServerState(
            deployment=deployment,
            pid=process.pid,
            process_start=resources["process_start"] or None,
            fingerprint=fingerprint,
            base_url=base_url,
            command=tuple(command),
            startup_s=startup_s,
            deployed_at_s=time.time(),
        )

    def _spawn(self, runtime: str, command: list[str], log_file: Path, env: dict[str, str]) -> Process:
        """The server process: forked by the runtime's zygote (``prefork``), else a new interpreter;
        either way in a session of its own, so it outlives this process (stopped by teardown or
        undeploy)."""
        if self.settings.prefork and runtime in PRELOADS:
            zygote = zygote_for(command[0], runtime, env, self.work_dir, self.settings.start_timeout_s)
            if zygote is not None:
                pid = zygote.spawn(command[3:], log_file, self.tied)
                if pid is not None:
                    return ForkedProcess(pid)
        return start_process(command, log_file, env, tied=self.tied)

    def _wait_until_ready(
        self, process: Process, ready_file: Path, log_file: Path, variant: Variant
    ) -> dict[str, Any]:
        name = f"{variant.model_id}/{variant.variant_id}"
        deadline = time.monotonic() + self.settings.start_timeout_s
        ready: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                how = (
                    f"with code {code} " if code >= 0 else ""
                )  # a forked server's code is its zygote's to see
                raise DeploymentError(
                    f"the server for {name} exited {how}while starting; the end of {log_file}:\n{log_tail(log_file)}"
                )
            if ready is None and ready_file.is_file():
                with contextlib.suppress(json.JSONDecodeError, OSError):
                    ready = json.loads(ready_file.read_text())
            if ready is not None:
                with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
                    status, _, payload = http_request("GET", f"{ready['url']}/health", timeout_s=5.0)
                    if status == 200 and _health_matches(json.loads(payload), variant):
                        return ready
                    if status == 200:
                        raise DeploymentError(
                            f"the server for {name} at {ready['url']} serves something else: {payload[:300]!r}"
                        )
            time.sleep(0.05)
        raise DeploymentTimeoutError(
            f"the server for {name} did not answer /health within {self.settings.start_timeout_s:.0f} s "
            f"(deploy.local.start_timeout_s); the end of {log_file}:\n{log_tail(log_file)}"
        )

    def _still_serves(self, state: ServerState, variant: Variant, fingerprint: str) -> bool:
        if state.fingerprint != fingerprint or not process_alive(state.pid, state.process_start):
            return False
        try:
            status, _, payload = http_request("GET", f"{state.base_url}/health", timeout_s=5.0)
            return status == 200 and _health_matches(json.loads(payload), variant)
        except (OSError, http.client.HTTPException, json.JSONDecodeError):
            return False

    def _make_room(self, keep: tuple[str, str]) -> None:
        limit = self.settings.max_servers
        if limit is None:
            return
        others = [s for s in self.running() if (s.deployment.model_id, s.deployment.variant_id) != keep]
        others.sort(key=lambda s: s.deployed_at_s)
        while len(others) >= limit:
            oldest = others.pop(0)
            folder = self.folder(oldest.deployment.model_id, oldest.deployment.variant_id)
            with folder_lock(folder, wait=False) as locked:
                if not locked:  # another process is deploying or stopping it right now
                    continue
                logger.info(
                    "stopping %s (pid %d) to stay within deploy.local.max_servers=%d",
                    oldest.deployment.endpoint_name,
                    oldest.pid,
                    limit,
                )
                stop_process(oldest.pid, oldest.process_start, self.settings.stop_timeout_s)
                (folder / STATE_FILE).unlink(missing_ok=True)

    def _record(self, variant: Variant, status: str, url: str, resources: dict[str, str]) -> Deployment:
        return Deployment(
            target=self.target,
            model_id=variant.model_id,
            variant_id=variant.variant_id,
            endpoint_name=f"{variant.model_id}/{variant.variant_id}",
            endpoint_url=url,
            region="localhost",
            instance_type=machine_description(),
            instance_count=1,
            status=status,
            cost_per_hour_usd=self.settings.cost_per_hour_usd,
            pue=self.pue,
            resources=resources,
        )


def teardown_all(work_dir: Path | str, stop_timeout_s: float = 20.0) -> list[Deployment]:
    """Stop every server recorded under ``work_dir`` and remove the state files; the deployments
    that were recorded (those already gone included: their state files are cleaned up too)."""
    stopped = []
    for state_file in _state_files(work_dir):
        with folder_lock(state_file.parent):
            state = read_state(state_file)
            if state is not None:
                if stop_process(state.pid, state.process_start, stop_timeout_s):
                    logger.info("stopped %s (pid %d)", state.deployment.endpoint_name, state.pid)
                stopped.append(state.deployment)
            state_file.unlink(missing_ok=True)
    return stopped


def recorded_servers(work_dir: Path | str) -> list[ServerState]:
    states = (read_state(path) for path in _state_files(work_dir))
    return [s for s in states if s is not None]


def _state_files(work_dir: Path | str) -> list[Path]:
    """The state files of every local server target under ``work_dir``."""
    return sorted(path for name in SERVER_TARGETS for path in Path(work_dir).glob(f"*/*/{name}/{STATE_FILE}"))


def read_state(path: Path) -> ServerState | None:
    """The state file at ``path``; ``None`` when there is none (or it is unreadable: logged)."""
    if not path.is_file():
        return None
    try:
        return ServerState.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("ignoring the unreadable state file %s: %s", path, error)
        return None


def variant_fingerprint(variant: Variant, server_options: list[str] | tuple[str, ...] = ()) -> str:
    """sha256 of what a server of ``variant`` serves: the runtime's model files (by content), the
    runtime, the name, the input spec and the server's options."""
    from green_deploy.zoo.artifacts import file_sha256

    files = _model_files(variant.folder, variant.runtime)
    identity = {
        "files": {name: file_sha256(variant.folder / name) for name in files},
        "runtime": variant.runtime,
        "name": variant.variant_id,
        "input": variant.input_spec.to_dict(),
        "options": list(server_options),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


# ---- helpers ---------------------------------------------------------------------------------------
def _model_files(folder: Path, runtime: str) -> tuple[str, ...]:
    """The files the runtime loads (``Runtime.model_files``); their hashes are the variant's fingerprint."""
    for names in get_runtime(runtime).model_files:
        if all((folder / name).is_file() for name in names):
            return names
    expected = " or ".join(" + ".join(names) for names in get_runtime(runtime).model_files)
    raise ArtifactError(
        f"{folder} holds no {runtime} model ({expected}); run `kedro run --pipeline=optimize` first"
    )


def _health_matches(body: Mapping[str, Any], variant: Variant) -> bool:
    return (
        body.get("status") == "ok"
        and body.get("model") == variant.variant_id
        and body.get("runtime") == variant.runtime
        and body.get("input") == variant.input_spec.to_dict()
    )


def _replace_state(state: ServerState, **changes: Any) -> ServerState:
    from dataclasses import replace

    return replace(state, **changes)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
