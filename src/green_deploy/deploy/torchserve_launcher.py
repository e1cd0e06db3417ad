"""The SageMaker PyTorch container's ``serve`` (``sagemaker_pytorch_serving_container.serving.main``)
on this machine, run as a script: ``python torchserve_launcher.py`` with the stack's packages on
``PYTHONPATH``, their ``bin`` on ``PATH`` and ``SM_INSTANCE_DIR`` set (``sagemaker_torchserve``).

What it changes of sagemaker-pytorch-inference 2.0.25 (and why), nothing else:

- ``torchserve.TS_CONFIG_FILE`` is hard-coded to ``/etc/sagemaker-ts.properties``: written in the
  instance folder instead, and ``torchserve.MODEL_STORE`` (``cwd/.sagemaker/ts/models`` at import)
  lands there too, so several servers run side by side;
- ``torchserve._retrieve_ts_server_process`` takes any TorchServe frontend on the machine and
  refuses a second one: it looks for the one started with this instance's config file;
- the toolkit's ``default-ts.properties`` lacks its final newline, so the generated file reads
  ``enable_model_api=truedefault_response_timeout=60`` (the model API off, the timeout lost, in
  the real container too): the newline is added;
- ``pkg_resources`` (gone from setuptools 81+) is imported for ``resource_filename`` only: a
  stand-in gives it;
- TorchServe's ``--start`` daemonizes its Java frontend (re-parented to init): this process
  becomes a child subreaper, so the frontend and its Python workers stay in its process tree,
  where the study meters them and ``teardown`` stops them.

The handler service is found by path rather than by importing ``serving`` (which imports torch
into a process that only waits: 245 instead of 62 MB).
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import types

PR_SET_CHILD_SUBREAPER = 36


def _prepare_instance() -> str:
    instance = os.path.abspath(os.environ.get("SM_INSTANCE_DIR") or os.getcwd())
    os.makedirs(instance, exist_ok=True)
    os.chdir(instance)  # before the toolkit's import computes MODEL_STORE from the cwd
    # TMPDIR: TorchServe's pid file; TEMP: the JVM's tmpdir, where the workers' Unix sockets live,
    # whose paths may not exceed 107 bytes: a short folder of this instance's own under /tmp
    scratch = tempfile.mkdtemp(prefix="gd-ts-", dir="/tmp")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    os.environ["TMPDIR"] = os.environ["TEMP"] = scratch
    for variable in ("LOG_LOCATION", "METRICS_LOCATION"):
        os.environ.setdefault(variable, os.path.join(instance, "logs"))
        os.makedirs(os.environ[variable], exist_ok=True)
    if importlib.util.find_spec("pkg_resources") is None:
        shim = types.ModuleType("pkg_resources")

        def resource_filename(package: str, resource: str) -> str:
            spec = importlib.util.find_spec(package)
            assert spec is not None and spec.origin is not None
            return os.path.join(os.path.dirname(spec.origin), *resource.split("/"))

        shim.resource_filename = resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    return instance


def main() -> None:
    instance = _prepare_instance()
    from subprocess import CalledProcessError

    import psutil
    from retrying import retry
    from sagemaker_inference import utils
    from sagemaker_pytorch_serving_container import torchserve

    torchserve.TS_CONFIG_FILE = os.path.join(instance, "sagemaker-ts.properties")

    def read_file(path: str, mode: str = "r") -> str:
        text = utils.read_file(path, mode)
        return text if text.endswith("\n") else text + "\n"

    torchserve.utils = types.SimpleNamespace(read_file=read_file, write_file=utils.write_file)

    def own_frontend(timeout_s: float = 30.0) -> psutil.Process:
        deadline = time.time() + timeout_s
        while True:
            found = [
                process
                for process in psutil.process_iter(["cmdline", "status"])
                if process.info["status"] != psutil.STATUS_ZOMBIE
                and torchserve.TS_NAMESPACE in (process.info["cmdline"] or [])
                and torchserve.TS_CONFIG_FILE in (process.info["cmdline"] or [])
            ]
            if len(found) == 1:
                return found[0]
            if len(found) > 1 or time.time() > deadline:
                raise RuntimeError(f"{len(found)} TorchServe frontends use {torchserve.TS_CONFIG_FILE}")
            time.sleep(0.05)

    torchserve._retrieve_ts_server_process = own_frontend
    spec = importlib.util.find_spec("sagemaker_pytorch_serving_container.handler_service")
    assert spec is not None and spec.origin is not None

    # as sagemaker_pytorch_serving_container/serving.py's main()
    @retry(stop_max_delay=1000 * 30, retry_on_exception=lambda e: isinstance(e, CalledProcessError))
    def start() -> None:
        torchserve.start_torchserve(handler_service=spec.origin)

    start()


if __name__ == "__main__":
    main()
