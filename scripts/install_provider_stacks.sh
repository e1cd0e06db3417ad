#!/usr/bin/env bash
# The provider stacks' own packages (deploy.<stack>.packages), each in a folder of its own that
# its server puts first on its path, as the provider's image holds them: they pin versions the
# project's constraints contradict (Azure ML's server: pydantic 2.12, OpenTelemetry 1.33).
#   scripts/install_provider_stacks.sh .venv/bin/python .venv/provider-stacks
set -euo pipefail
PYTHON="$1"
ROOT="$2"
mkdir -p "$ROOT"

install() {  # install FOLDER PIP-ARGS...: into a fresh folder, then swapped in whole
  local folder="$ROOT/$1"; shift
  rm -rf "$folder.tmp"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-warn-conflicts --target "$folder.tmp" "$@"
  rm -rf "$folder" && mv "$folder.tmp" "$folder"
}

# Azure ML's inference server with its dependencies and pins.
install azureml_server azureml-inference-server-http==1.5.1
# The venv's azure.monitor.opentelemetry is a regular package, which beats this folder's namespace
# package of the same name: make this one regular too, so the server's exporter matches its
# OpenTelemetry.
touch "$ROOT/azureml_server/azure/monitor/opentelemetry/__init__.py"

# SageMaker's PyTorch inference toolkit on TorchServe (its Java frontend runs on Debian's JDK,
# installed by scripts/install_system_data.sh); the rest of what it imports is in the venv.
install sagemaker_torchserve --no-deps sagemaker-inference==1.10.1 sagemaker-pytorch-inference==2.0.25 \
  torchserve==0.12.0 torch-model-archiver==0.12.0 enum-compat==0.0.3 retrying==1.3.7
