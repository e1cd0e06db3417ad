"""Azure ML's inference server run on this machine: ``azmlinfsrv`` (azureml-inference-server-http,
what managed online endpoints run: gunicorn's sync workers under Flask) over the code folder the
Azure deployer packages (``score.py`` with ``init()``/``run()``, the vendored serving core), the
variant mounted as Azure mounts a registered model (``$AZUREML_MODEL_DIR/<name>/<version>/<folder>``).

Only the bind address differs from Azure: 1.5.1 hard-codes ``0.0.0.0``
(``azureml_inference_server_http/constants.py`` ``DEFAULT_HOST``), so the server is started by
``LAUNCHER``, which sets it to 127.0.0.1 and runs the unmodified ``amlserver.run()``. The
server's packages (it pins pydantic 2.12 and OpenTelemetry 1.33, which the project's pins
contradict) live in their own folder put first on its path, as in its own image. gunicorn binds
its port before its worker's ``init()`` has loaded the model; a request waits for it, so the
stack is ready when ``GET /`` answers.
"""

from __future__ import annotations

import sys
from pathlib import Path

from green_deploy.deploy.azureml import SCORING_SCRIPT, write_scoring_code
from green_deploy.deploy.base import Variant
from green_deploy.deploy.provider_stack import Launch, StackDeployer

TARGET = "azureml_server"
MODEL_NAME, MODEL_VERSION = "green-deploy-variant", "1"
LAUNCHER = '''"""azmlinfsrv as installed, bound to 127.0.0.1 (1.5.1 hard-codes 0.0.0.0)."""
import sys

from azureml_inference_server_http import amlserver

amlserver.DEFAULT_HOST = "127.0.0.1"
sys.argv[0] = "azmlinfsrv"
sys.exit(amlserver.run())
'''


class AzureMLServerDeployer(StackDeployer):
    target = TARGET
    provider = "azure"
    serving_path = "azureml_inference_server"

    def launch(self, variant: Variant, folder: Path) -> Launch:
        s = self.settings
        packages = self.packages_dir() / TARGET
        code_dir = write_scoring_code(variant, folder, s.constraints_file, s.max_items, s.max_batch_items)
        mounted = folder / "models" / MODEL_NAME / MODEL_VERSION
        mounted.mkdir(parents=True, exist_ok=True)
        link = mounted / variant.folder.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(variant.folder.resolve(), target_is_directory=True)
        launcher = folder / "azmlinfsrv_local.py"
        launcher.write_text(LAUNCHER)
        command = [sys.executable, str(launcher), "--entry_script", SCORING_SCRIPT, "--port", "{port}"]
        command += ["--worker_count", str(s.workers)]
        env = {
            "PYTHONPATH": str(packages),  # the server's own packages first, as in its image
            "AZUREML_MODEL_DIR": str(folder / "models" / MODEL_NAME / MODEL_VERSION),
            "AML_APP_ROOT": str(code_dir),  # no stray config.json / logging.json is read
            "GUNICORN_CMD_ARGS": "--no-control-socket",  # gunicorn 27 shares one in $HOME otherwise
        }
        if s.threads is not None:
            env["OMP_NUM_THREADS"] = str(s.threads)
        return Launch(command, env, ready_path="/", predict_path="/score", cwd=code_dir)
