"""SageMaker's container contract run on this machine: the SageMaker deployer's own
``model.tar.gz``, extracted as SageMaker extracts it into ``/opt/ml/model``, started by its
``code/serve`` script (``sagemaker_entry``: ``/ping`` and ``/invocations`` over the serving core)
on a loopback port, as the container's ``serve`` command would start it.

What is measured is exactly what the SageMaker deployer would upload; only the machine differs
(see ``provider_stack``). Requests are JSON, as SageMaker's runtime API clients send them.
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
from pathlib import Path

from green_deploy.deploy.base import Variant
from green_deploy.deploy.provider_stack import Launch, StackDeployer
from green_deploy.deploy.sagemaker import write_model_archive

TARGET = "sagemaker_server"
MODEL_DIR = "opt_ml_model"  # stands for /opt/ml/model


class SageMakerServerDeployer(StackDeployer):
    target = TARGET
    provider = "aws"
    serving_path = "sagemaker_entry"

    def launch(self, variant: Variant, folder: Path) -> Launch:
        s = self.settings
        archive, sha256, _ = write_model_archive(
            variant, folder, s.constraints_file, s.max_items, s.max_batch_items
        )
        model_dir = folder / MODEL_DIR
        if model_dir.exists():
            shutil.rmtree(model_dir)
        with tarfile.open(archive) as package:
            package.extractall(model_dir, filter="data")
        return Launch(
            command=["/bin/sh", str(model_dir / "code" / "serve")],
            env={
                "SAGEMAKER_BIND_TO_PORT": "{port}",
                "GREEN_DEPLOY_HOST": "127.0.0.1",
                # `serve` runs `python`: this interpreter, as the image's own
                "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            },
            ready_path="/ping",
            predict_path="/invocations",
            details={"package": str(archive), "package_sha256": sha256},
        )
