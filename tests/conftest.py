"""Suite-wide fixtures: MLflow state isolated per test, as kedro-mlflow's own suite does; a throwaway
PostgreSQL server on loopback (postgres_url, postgres_database) for the Optuna RDB storage tests."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")


@pytest.fixture(autouse=True)
def isolated_mlflow(tmp_path, monkeypatch):
    """Each test gets its own sqlite tracking store; no test writes to the project's mlflow.db."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield
    while mlflow.active_run():
        mlflow.end_run()


# --- PostgreSQL: a throwaway server on loopback, for the Optuna RDB storage tests ----------------

_PG_ROOT = Path("/usr/lib/postgresql")


def _postgres_bin_dir() -> Path:
    """/usr/lib/postgresql/15/bin, else the newest installed version's bin; fails (not skips) if none."""
    preferred = _PG_ROOT / "15" / "bin"
    candidates = [preferred] if (preferred / "pg_ctl").exists() else []
    if not candidates and _PG_ROOT.is_dir():
        versions = [d for d in _PG_ROOT.iterdir() if d.name.isdigit() and (d / "bin" / "pg_ctl").exists()]
        candidates = [max(versions, key=lambda d: int(d.name)) / "bin"] if versions else []
    if not candidates:
        pytest.fail(
            f"No PostgreSQL server binaries under {_PG_ROOT}/*/bin (initdb, pg_ctl): run `make test`, "
            "which installs the `postgresql` Debian package (scripts/install_system_data.sh)."
        )
    return candidates[0]


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a throwaway PostgreSQL cluster on 127.0.0.1 (a free port, trust auth, fsync off) for the
    session; yield the SQLAlchemy URL of its `postgres` database; stop it at the end, failures included.

    initdb refuses to run as root, so as root the server runs as the `postgres` system user, in a
    private dir outside pytest's base temp (pytest makes that 0700 root, which `postgres` cannot enter).
    """
    bin_dir = _postgres_bin_dir()
    as_root = os.geteuid() == 0
    if as_root:
        try:
            pg_user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("Running as root but there is no `postgres` system user: run `make test`.")
        base = Path(tempfile.mkdtemp(prefix="green-deploy-pg-"))
        os.chown(base, pg_user.pw_uid, pg_user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    else:
        base = tmp_path_factory.mktemp("postgres")
        prefix = []
    data, log = base / "data", base / "postgres.log"

    def pg(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*prefix, *args], cwd=base, capture_output=True, text=True, check=False)

    started = False
    try:
        init = pg(
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "--auth=trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        if init.returncode:
            pytest.fail(f"initdb failed ({init.returncode}):\n{init.stdout}\n{init.stderr}")
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{base}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )
        for _ in range(3):  # the port is free when picked, but another process may take it meanwhile
            port = _free_loopback_port()
            start = pg(
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-o",
                f"-p {port}",
                "-w",
                "-t",
                "60",
                "start",
            )
            if start.returncode == 0:
                started = True
                break
        if not started:
            log_text = log.read_text(errors="replace") if log.exists() else ""
            pytest.fail(f"pg_ctl start failed:\n{start.stdout}\n{start.stderr}\n{log_text}")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        if as_root:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database on the session's server (so tests share no studies); yields its
    SQLAlchemy URL and drops it afterwards (FORCE: engines the test left open do not block that)."""
    import psycopg
    from psycopg import sql

    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
