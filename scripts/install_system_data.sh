#!/usr/bin/env bash
# Install the Debian packages the project needs, if any is missing: those that hold the zoo's
# datasets (the fixed ones below plus every provider named in conf/base/manifests/), and
# Chromium, which opens the tradeoff report headless in the tests, and PostgreSQL, whose server the
# tests start on loopback for the Optuna RDB storage (tests/conftest.py's postgres_url), and a Java
# runtime, which TorchServe's frontend needs (the sagemaker_torchserve provider stack).
set -euo pipefail
python=${1:-.venv/bin/python}

packages=(dataset-fashion-mnist fortunes fortunes-min chromium postgresql openjdk-17-jre-headless)
while read -r package; do
  [[ -n "$package" ]] && packages+=("$package")
done < <("$python" -m green_deploy.zoo.data debian-packages)

missing=()
for package in $(printf '%s\n' "${packages[@]}" | sort -u); do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "Installing the Debian packages the project needs (datasets, Chromium, PostgreSQL, Java): ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
elif command -v sudo >/dev/null; then
  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "Cannot install them without root; run: apt-get install ${missing[*]}" >&2
  exit 1
fi
