"""``python -m green_deploy.zoo.data``: freeze manifests, check datasets, list Debian packages.

python -m green_deploy.zoo.data freeze <name|all> [--settings JSON]
python -m green_deploy.zoo.data check <name|all> [--settings JSON]
python -m green_deploy.zoo.data debian-packages

``all`` is every dataset built from what the machine has installed; a user's own data needs its
path: ``freeze files --settings '{"path": "data/01_raw/reviews.csv"}'``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from green_deploy.errors import ConfigError, GreenDeployError
from green_deploy.zoo.data import (
    freeze_manifest,
    known_datasets,
    load_dataset,
    required_debian_packages,
    system_datasets,
)


def _names(name: str) -> list[str]:
    return system_datasets() if name == "all" else [name]


def _settings(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ConfigError(f"--settings is not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise ConfigError("--settings must be a JSON object")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m green_deploy.zoo.data", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--manifest-dir", type=Path, default=None, help="default: conf/base/manifests")
    commands = parser.add_subparsers(dest="command", required=True)
    for command, help_text in (
        ("freeze", "scan this machine and write the manifest"),
        ("check", "load and print split sizes"),
    ):
        sub = commands.add_parser(command, help=help_text)
        sub.add_argument("name", choices=[*known_datasets(), "all"])
        sub.add_argument(
            "--settings", default=None, help="JSON object of dataset settings (one dataset only)"
        )
    commands.add_parser("debian-packages", help="print the Debian packages the manifests need, one per line")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "debian-packages":
            sys.stdout.write(
                "".join(f"{package}\n" for package in required_debian_packages(args.manifest_dir))
            )
            return 0
        settings = _settings(args.settings)
        if settings is not None and args.name == "all":
            raise ConfigError("--settings applies to one dataset, not 'all'")
        for name in _names(args.name):
            if args.command == "freeze":
                path = freeze_manifest(name, settings, args.manifest_dir)
                sys.stdout.write(f"{name}: wrote {path} ({path.stat().st_size} bytes)\n")
            else:
                started_s = time.perf_counter()
                dataset = load_dataset(name, settings, args.manifest_dir)
                duration_s = time.perf_counter() - started_s
                sys.stdout.write(
                    f"{name}: train {len(dataset.train)}, val {len(dataset.val)}, test {len(dataset.test)}, "
                    f"classes {len(dataset.classes)}, loaded in {duration_s:.2f} s; {dataset.source}\n"
                )
    except GreenDeployError as error:
        sys.stderr.write(f"{type(error).__name__}: {error}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
