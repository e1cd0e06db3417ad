"""Packages that carry a variant and the serving core to a cloud machine, byte for byte reproducible.

Both clouds run the same code the local target runs: the ``green_deploy`` package source is
vendored into a ``code/`` folder (its library parts: energy, serving, optimize, zoo, deploy;
not the Kedro project parts), with

- ``serving.json``: what the entry needs to serve (runtime, input spec, limits, names);
- ``requirements.txt``: the runtime's packages, pinned from the project's ``constraints.txt``;
- the target's entry: ``serve`` (SageMaker's container command) or ``score.py`` (Azure ML).

``write_archive`` writes a ``.tar.gz`` whose bytes depend only on the files' names and contents:
entries sorted, owner and mtime fixed, gzip header without name or time, so the same variant and
code give the same sha256 (a content address for the S3 key, and a check that nothing changed).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import green_deploy
from green_deploy.deploy.base import Variant
from green_deploy.errors import ConfigError
from green_deploy.runtimes import get_runtime

CODE_DIR = "code"
SERVING_CONFIG = "serving.json"
REQUIREMENTS_FILE = "requirements.txt"
SERVING_CONFIG_FORMAT = 1
# 1980-01-01T00:00:00Z: the earliest time ZIP-based and reproducible-build tools accept.
FIXED_MTIME = 315532800

# Parts of the package the serving path never imports (they import Kedro).
_NOT_VENDORED = {"pipelines", "datasets", "pipeline_registry.py", "settings.py", "__main__.py"}
_SKIPPED = {"__pycache__", ".DS_Store"}

# What the serving core imports to answer requests, whatever the runtime.
SERVING_PACKAGES = (
    "numpy",
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic_core",
    "uvicorn",
    "h11",
    "httptools",  # the HTTP parser the server uses (serving.http)
    "anyio",
    "click",
    "prometheus_client",
)
# Families whose model structure is built by a third-party package (needed where the runtime
# rebuilds the structure, ``Runtime.rebuilds_structure``; TFLite and ONNX files carry it).
FAMILY_PACKAGES: dict[str, tuple[str, ...]] = {
    "minilm": ("transformers",),
    "efficientnet_lite": ("efficientnet-lite-pytorch",),
}
_PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@dataclass(frozen=True)
class ServingConfig:
    """``code/serving.json``: everything an entry needs besides the model files.

    ``model_folder`` is the variant folder's name: Azure ML mounts a registered folder under
    ``$AZUREML_MODEL_DIR/<model_folder>``; SageMaker extracts the archive into the model dir itself.
    """

    model_name: str
    model_id: str
    variant_id: str
    runtime: str
    input_dtype: str
    input_shape: tuple[int, ...]
    model_folder: str
    max_items: int = 256
    max_body_bytes: int = 16 * 2**20
    max_queue: int = 1024
    max_batch_items: int = 0
    num_threads: int | None = None
    format: int = SERVING_CONFIG_FORMAT

    @classmethod
    def for_variant(cls, variant: Variant, **limits: Any) -> ServingConfig:
        return cls(
            model_name=variant.variant_id,
            model_id=variant.model_id,
            variant_id=variant.variant_id,
            runtime=variant.runtime,
            input_dtype=variant.input_spec.dtype,
            input_shape=tuple(variant.input_spec.shape),
            model_folder=variant.folder.name,
            **limits,
        )

    def to_json(self) -> str:
        return (
            json.dumps({**asdict(self), "input_shape": list(self.input_shape)}, indent=2, sort_keys=True)
            + "\n"
        )

    @classmethod
    def read(cls, path: Path) -> ServingConfig:
        data = json.loads(Path(path).read_text())
        if data.get("format") != SERVING_CONFIG_FORMAT:
            raise ConfigError(
                f"{path} has format {data.get('format')}; this code reads {SERVING_CONFIG_FORMAT}"
            )
        return cls(**{**data, "input_shape": tuple(data["input_shape"])})


def _normalize(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_constraints(path: Path) -> dict[str, str]:
    """Normalized name -> pinned requirement line (``name==version``) from a constraints file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"constraints file {path} not found; it pins the packages shipped to the cloud")
    pins: dict[str, str] = {}
    for raw_line in path.read_text().splitlines():
        line = raw_line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*(\S+)", line)
        if match:
            pins[_normalize(match.group(1))] = f"{match.group(1)}=={match.group(3)}"
    return pins


def runtime_requirements(runtime: str, family: str | None, constraints: Mapping[str, str]) -> list[str]:
    """Pinned requirement lines for serving ``runtime`` (and ``family``'s structure), in a fixed order.

    A package without a pin is an error: an unpinned package in a cloud image resolves to whatever
    is newest on the day the image is built.
    """
    served = get_runtime(runtime)
    names = [*SERVING_PACKAGES, *served.image_packages]
    if family and served.rebuilds_structure:
        names.extend(FAMILY_PACKAGES.get(family, ()))
    missing = [name for name in names if _normalize(name) not in constraints]
    if missing:
        raise ConfigError(
            f"no pin for {missing} in the constraints file; add '<name>==<version>' lines for them"
        )
    lines: list[str] = []
    for name in names:
        pin = constraints[_normalize(name)]
        if pin not in lines:
            lines.append(pin)
    return lines


def requirements_text(lines: Iterable[str]) -> str:
    """A requirements file; a ``+cpu`` torch pin needs PyTorch's own index, so it is named."""
    lines = list(lines)
    header = ["# pinned from constraints.txt by green_deploy.deploy.packaging"]
    if any(line.lower().startswith("torch==") and "+cpu" in line for line in lines):
        header.append(f"--extra-index-url {_PYTORCH_CPU_INDEX}")
    return "\n".join([*header, *lines]) + "\n"


def variant_family(variant: Variant) -> str | None:
    """The zoo family of a PyTorch variant (its ``variant_config.json``), else ``None``."""
    config = variant.folder / "variant_config.json"
    if config.is_file():
        return json.loads(config.read_text()).get("family")
    return None


def vendor_package(destination: Path) -> Path:
    """Copy the library parts of the installed ``green_deploy`` source into ``destination/green_deploy``."""
    source = Path(green_deploy.__file__).resolve().parent
    target = Path(destination) / "green_deploy"
    if target.exists():
        shutil.rmtree(target)

    def ignore(folder: str, names: list[str]) -> set[str]:
        top = Path(folder).resolve() == source
        return {
            name
            for name in names
            if name in _SKIPPED or name.endswith((".pyc", ".pyo")) or (top and name in _NOT_VENDORED)
        }

    shutil.copytree(source, target, ignore=ignore)
    return target


def write_code_dir(
    variant: Variant,
    destination: Path,
    constraints: Mapping[str, str],
    serving: ServingConfig,
    entry_files: Mapping[str, tuple[str, int]],
) -> Path:
    """The ``code/`` folder: vendored package, ``serving.json``, ``requirements.txt`` and the
    target's entry files (name -> (text, file mode))."""
    destination = Path(destination)
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    vendor_package(destination)
    (destination / SERVING_CONFIG).write_text(serving.to_json())
    requirements = runtime_requirements(variant.runtime, variant_family(variant), constraints)
    (destination / REQUIREMENTS_FILE).write_text(requirements_text(requirements))
    for name, (text, mode) in entry_files.items():
        path = destination / name
        path.write_text(text)
        path.chmod(mode)
    return destination


def _entries(root: Path, prefix: str) -> list[tuple[str, Path]]:
    root = Path(root)
    return [
        (f"{prefix}{path.relative_to(root).as_posix()}", path)
        for path in root.rglob("*")
        if path.is_file() and not (set(path.relative_to(root).parts) & _SKIPPED)
    ]


def archive_entries(variant: Variant, code_dir: Path) -> list[tuple[str, Path]]:
    """What SageMaker's ``model.tar.gz`` holds: the variant's files at the top, ``code/`` beside them."""
    return [*_entries(variant.folder, ""), *_entries(code_dir, f"{CODE_DIR}/")]


def write_archive(entries: Iterable[tuple[str, Path]], archive: Path) -> str:
    """Write a reproducible ``.tar.gz`` of ``(name in archive, file)`` pairs; its sha256."""
    entries = [(name, Path(path)) for name, path in entries]
    names = [name for name, _ in entries]
    if len(set(names)) != len(names):
        raise ValueError(
            f"duplicate names in the archive: {sorted({n for n in names if names.count(n) > 1})}"
        )
    folders = {"/".join(name.split("/")[:i]) for name in names for i in range(1, name.count("/") + 1)}
    members: list[tuple[str, Path | None]] = sorted(
        [*((folder, None) for folder in folders), *entries], key=lambda member: member[0]
    )
    archive = Path(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    # filename="" and mtime=0 keep the gzip header free of the path and the time of writing
    with archive.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped:
        with tarfile.open(fileobj=zipped, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for name, path in members:
                if path is None:
                    tar.addfile(_info(name, tarfile.DIRTYPE, 0, 0o755))
                    continue
                mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
                with path.open("rb") as file:  # streamed: model files can be large
                    tar.addfile(_info(name, tarfile.REGTYPE, path.stat().st_size, mode), file)
    return sha256_file(archive)


def _info(name: str, kind: bytes, size: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode, info.mtime = kind, size, mode, FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        for block in iter(lambda: file.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def resource_name(prefix: str, model_id: str, variant_id: str, digest: str, max_length: int) -> str:
    """A cloud resource name: letters, digits and hyphens, starting with a letter, at most
    ``max_length`` long, ending in 8 hex digits of ``digest`` so truncation cannot collide."""
    base = re.sub(r"[^A-Za-z0-9]+", "-", f"{prefix}-{model_id}-{variant_id}").strip("-").lower()
    if not base or not base[0].isalpha():
        base = f"m-{base}".strip("-")
    suffix = digest[:8]
    base = base[: max_length - len(suffix) - 1].rstrip("-")
    return f"{base}-{suffix}"
