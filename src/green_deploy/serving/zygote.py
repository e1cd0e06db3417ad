"""``python -m green_deploy.serving.zygote RUNTIME``: a parent that has imported a runtime once and
forks one server per request, so a study's hundred servers do not each pay for the interpreter
and the import (measured on 2 cores: a new PyTorch server took 1.1-1.5 s to answer /health, a
forked one 0.2 s; Keras 2.6-3.4 s against 0.9-1.5 s).

Every runtime has one, so every server of a study is started the same way: a forked process's
resident memory counts only the pages it touches (the library pages a new interpreter faults in
while importing are not in its page table), which the DRAM estimate (resident memory x W/GB)
sees: 210 against 269 MB for a PyTorch server, 348 against 687 MB for a Keras one here.

The zygote imports what a fresh server of that runtime imports before it loads its model (the
runtime, the serving core, the artifact loaders), and nothing more, so a child's memory is a new
server's. It never runs an operation of the runtime, so no thread pool exists when it forks:
each child starts its own, as a new process would.

Protocol, one JSON line each way: the zygote first prints ``{"ready": true, "pid": ...}``; then
for each request ``{"argv": [...], "log": "<file>", "env": {...}, "tied": bool}`` (the arguments
of ``python -m green_deploy.serving``) it forks and prints ``{"pid": <child>}`` (or
``{"error": "..."}``). The child runs in a session of its own, with its output appended to the
log. A child that is not ``tied`` outlives the zygote (a deployed server, like one started by
``subprocess`` with ``start_new_session``); a ``tied`` one is sent SIGTERM when the zygote ends
(a study's server: it must not outlive a study that was killed). The zygote ends when its
standard input closes (its parent ended, however it ended); the kernel reaps its children.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from green_deploy.runtimes import RUNTIMES

# What a new server of each runtime imports before it serves (``serving.cli``: uvicorn, the app,
# the worker, the energy core and the runtimes' loaders; then the runtime itself).
SERVING_MODULES = ("green_deploy.serving.cli",)
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
PRELOADS = {name: runtime.preload_modules for name, runtime in RUNTIMES.items()}


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 1 or arguments[0] not in PRELOADS:
        print(f"usage: python -m green_deploy.serving.zygote {{{','.join(PRELOADS)}}}", file=sys.stderr)  # noqa: T201
        return 2
    for module in (*SERVING_MODULES, *PRELOADS[arguments[0]]):
        importlib.import_module(module)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    # Ctrl-C or kill -9 on the study: its end of the pipe closes, and the loop below ends
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _reply({"ready": True, "pid": os.getpid()})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            argv_, log = list(request["argv"]), str(request["log"])
        except (ValueError, KeyError, TypeError) as error:
            _reply({"error": f"bad request {line.strip()[:200]!r}: {error}"})
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as error:
            _reply({"error": f"fork failed: {error}"})
            continue
        if pid == 0:
            _serve(argv_, log, request.get("env") or {}, bool(request.get("tied")))
        _reply({"pid": pid})
    return 0


def _reply(message: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def die_with_parent(signum: int) -> None:
    """Ask Linux to send ``signum`` to this process when its parent ends (``PR_SET_PDEATHSIG``:
    when the parent's thread that forked it ends); a parent already gone sends it now. Elsewhere
    nothing is done."""
    import ctypes
    import ctypes.util

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signum)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os.kill(os.getpid(), signum)


def _serve(argv: list[str], log: str, env: Mapping[str, str], tied: bool) -> None:
    """The child: detach, send its output to ``log``, serve, and exit with the server's code."""
    code = 1
    try:
        os.setsid()
        if tied:
            die_with_parent(signal.SIGTERM)  # graceful: requests in flight finish
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # its own subprocesses are waited for
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        output = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        nothing = os.open(os.devnull, os.O_RDONLY)
        for source, target in ((nothing, 0), (output, 1), (output, 2)):
            os.dup2(source, target)
        os.close(output)
        os.close(nothing)
        os.environ.update(env)
        from green_deploy.serving.cli import main as serve

        code = serve(argv)
    except SystemExit as stop:  # argparse and the CLI's own exits
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:  # noqa: BLE001 - whatever happens, the child must not return into the zygote
        traceback.print_exc()
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
