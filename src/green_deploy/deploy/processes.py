"""Processes on this machine, for the local target: whether a recorded server is still the
process recorded (``/proc``), its resident memory, starting servers (a new interpreter, or a
fork of a runtime's zygote) and stopping them, a lock per folder and atomic JSON writes.

A recorded server is identified by its PID *and* its start time in ``/proc/<pid>/stat``, so a
recycled PID is never mistaken for it. Linux only for the ``/proc`` checks; elsewhere a live PID
is trusted.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from green_deploy.serving.zygote import die_with_parent

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"
# Servers this process started, by PID: waited for when stopped, so none is left a zombie.
_CHILDREN: dict[int, subprocess.Popen] = {}


def process_alive(pid: int, process_start: str | None = None) -> bool:
    """Whether ``pid`` runs and is the process recorded (same start time, when known); a zombie is dead."""
    stat = _proc_stat(pid)
    if stat is None:
        if Path("/proc/self/stat").exists():
            return False
        try:  # no /proc: a live PID is trusted
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    state, start = stat
    if state in ("Z", "X"):
        return False
    return process_start is None or start == process_start


def rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` (``VmRSS``), or ``None`` when unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks) from ``/proc/<pid>/stat``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and ')'
    return fields[0], fields[19]


def process_start_of(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot, from ``/proc``): with the PID, what
    identifies a recorded server; ``None`` when unknown."""
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


class Process(Protocol):
    """A started server: a ``subprocess.Popen`` or a ``ForkedProcess``."""

    pid: int

    def poll(self) -> int | None: ...


class ForkedProcess:
    """A server forked by a zygote: not this process's child, so its exit is seen in ``/proc``
    (the zygote's kernel reaps it; its exit code is not known here)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._start = process_start_of(pid)

    def poll(self) -> int | None:
        return None if process_alive(self.pid, self._start) else -1


class Zygote:
    """One ``python -m green_deploy.serving.zygote RUNTIME`` process and its request pipe."""

    def __init__(self, process: subprocess.Popen, timeout_s: float) -> None:
        self.process = process
        self.timeout_s = timeout_s

    def spawn(self, argv: list[str], log_file: Path, tied: bool) -> int | None:
        """The pid of a new server, or ``None`` when the zygote cannot fork one (logged)."""
        reply = self.ask({"argv": argv, "log": str(log_file), "tied": tied})
        if reply is None or "pid" not in reply:
            logger.warning("the server zygote did not fork (%s); starting a new interpreter", reply)
            return None
        return int(reply["pid"])

    def ask(self, request: dict[str, Any] | None) -> dict[str, Any] | None:
        """Send ``request`` (``None``: nothing) and read one reply line within the timeout."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        try:
            if request is not None:
                stdin.write(json.dumps(request) + "\n")
                stdin.flush()
            if not select.select([stdout], [], [], self.timeout_s)[0]:
                return None
            line = stdout.readline()
            return json.loads(line) if line else None
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(5.0)
        except subprocess.TimeoutExpired:
            self.process.kill()


# The zygotes this process started (``None``: one that failed to start); closed at exit.
_ZYGOTES: dict[tuple[str, str, str], Zygote | None] = {}


def zygote_for(
    python: str, runtime: str, env: dict[str, str], work_dir: Path, timeout_s: float
) -> Zygote | None:
    """The running zygote for ``runtime`` and this environment (started on first use; ``None``
    when it could not start, after which servers start as new interpreters)."""
    key = (python, runtime, hashlib.sha256(json.dumps(sorted(env.items())).encode()).hexdigest())
    if key in _ZYGOTES:
        zygote = _ZYGOTES[key]
        if zygote is None or zygote.process.poll() is None:
            return zygote
    work_dir.mkdir(parents=True, exist_ok=True)
    log_file = work_dir / f"zygote-{runtime}.log"
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            [python, "-m", "green_deploy.serving.zygote", runtime],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            text=True,
        )
    zygote = Zygote(process, timeout_s)
    ready = zygote.ask(None)
    if not ready or not ready.get("ready"):
        logger.warning("the %s server zygote did not start (see %s); servers start anew", runtime, log_file)
        zygote.close()
        _ZYGOTES[key] = None
        return None
    _ZYGOTES[key] = zygote
    return zygote


@atexit.register
def _close_zygotes() -> None:
    for zygote in _ZYGOTES.values():
        if zygote is not None:
            zygote.close()
    _ZYGOTES.clear()


def start_process(
    command: list[str], log_file: Path, env: dict[str, str], *, tied: bool, cwd: Path | None = None
) -> subprocess.Popen:
    """``command`` as a new interpreter in a session of its own, its output appended to
    ``log_file``; it outlives this process unless ``tied`` (then it ends with it, however this
    process ends). Waited for when stopped, so it is never left a zombie."""
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=partial(die_with_parent, signal.SIGTERM) if tied else None,  # noqa: PLW1509
        )
    _CHILDREN[process.pid] = process
    return process


def stop_process(pid: int, process_start: str | None, timeout_s: float) -> bool:
    """SIGTERM ``pid`` if it is still the recorded process, SIGKILL after ``timeout_s``; True when
    it was running."""
    child = _CHILDREN.pop(pid, None)
    if child is not None and child.poll() is not None:
        return False
    if child is None and not process_alive(pid, process_start):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, process_start, child, timeout_s):
        return True
    logger.warning("pid %d did not stop within %.0f s of SIGTERM; killing it", pid, timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _wait_gone(pid, process_start, child, 10.0)
    return True


def stop_process_group(pid: int, process_start: str | None, timeout_s: float) -> bool:
    """``stop_process`` for a server that started helpers of its own (TorchServe's Java frontend,
    gunicorn's workers): the root first, so it can stop them gracefully, then whatever of its
    session is left is killed and waited for (up to 10 s). True when the root was running."""
    was_running = stop_process(pid, process_start, timeout_s)
    deadline = time.monotonic() + 10.0
    while (left := session_members(pid)) and time.monotonic() < deadline:
        for member in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(member, signal.SIGKILL)
        time.sleep(0.05)
    return was_running


def session_members(session_id: int) -> list[int]:
    """The live processes of session ``session_id`` (zombies, already ended, left out). Looked up
    one by one, so an id no live process leads finds nothing."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ProcessLookupError, IndexError):
            if os.getsid(int(entry.name)) == session_id and _proc_state(entry) != "Z":
                members.append(int(entry.name))
    return members


def _proc_state(entry: Path) -> str:
    return (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]


def _wait_gone(pid: int, process_start: str | None, child: subprocess.Popen | None, timeout_s: float) -> bool:
    if child is not None:
        try:
            child.wait(timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process_alive(pid, process_start):
            return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def folder_lock(folder: Path, *, wait: bool = True) -> Iterator[bool]:
    """An exclusive lock on ``folder`` (a lock file, released when the process ends in any way)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / LOCK_FILE).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_json_atomically(path: Path, data: Any) -> None:
    """``data`` as JSON at ``path`` through a temporary file and a rename: a reader (another
    deploy, ``undeploy``) sees the old file or the new one, never half of one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True))
    temporary.replace(path)


LOG_TAIL_CHARS = 3000


def log_tail(path: Path) -> str:
    """The end of a server's log, quoted when it did not start."""
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError:
        return "(no log)"


def machine_description() -> str:
    """This machine as a deployment's ``instance_type`` (``x86_64, 2 CPUs``)."""
    import platform

    return f"{platform.machine()}, {os.cpu_count()} CPUs"
