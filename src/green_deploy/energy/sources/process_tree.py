"""Estimates for a server green-deploy did not write: the CPU time and memory of its process tree.

A provider's serving stack (TorchServe's Java frontend and Python workers, Azure ML's gunicorn
workers) reports no energy per request, and its work is spread over several processes. The
harness therefore meters the server's whole tree (the process it started and every descendant)
around each repetition, with the same rates as this process's own estimates
(``estimate.CpuTimeEstimate``, ``estimate.RamEstimate``), so every stack is costed alike:

- CPU time: the run time of every thread of every process in the tree, from
  ``/proc/<pid>/task/<tid>/schedstat`` (nanoseconds, read live; ``/proc/<pid>/stat`` counts in
  10 ms ticks, too coarse for a 0.1 s repetition). A thread's time is counted from the first read
  that saw it (from zero for one born after the tree was opened); the time a thread ran after the
  last read before it ended is lost, which long-lived server threads make rare.
- Memory: the tree's proportional set size (``Pss`` of ``/proc/<pid>/smaps_rollup``), so pages that
  forked workers share are counted once, not once per worker as their resident sets would be.

Linux only (``/proc``); reading a tree of ~100 threads costs about a millisecond, paid twice per
repetition, outside nothing the server does.
"""

from __future__ import annotations

import os
from pathlib import Path

from green_deploy.energy.sources.base import EnergySource, SourceError, SourceUnavailableError
from green_deploy.energy.sources.estimate import CpuPowerModel, CpuTimeEstimate, RamEstimate

PROC = Path("/proc")


class ProcessTree:
    """The processes of one server: ``root_pid`` and its descendants, found again at every read."""

    def __init__(self, root_pid: int, proc: Path = PROC) -> None:
        self.root_pid = root_pid
        self.proc = proc
        if not (proc / str(root_pid) / "task").is_dir():
            raise SourceUnavailableError(f"process {root_pid} does not exist or {proc} is not readable")
        # every thread running now counts from what it has run so far
        self._thread_ns = self._run_times_ns()
        self._counted_ns = 0

    def pids(self) -> list[int]:
        """The root and its descendants, root first; a root that ended is a ``SourceError``."""
        return list(self._threads())

    def _threads(self) -> dict[int, list[int]]:
        """pid -> its thread ids, for the root and every descendant (each task folder read once)."""
        found: dict[int, list[int]] = {}
        queue = [self.root_pid]
        while queue:
            pid = queue.pop()
            tasks = self._tasks(pid)
            if tasks is None:
                if pid == self.root_pid:
                    raise SourceError(f"the server process {pid} has ended")
                continue
            found[pid] = tasks
            for tid in tasks:
                children = _read(self.proc / str(pid) / "task" / str(tid) / "children")
                queue.extend(int(child) for child in (children or "").split())
        return found

    def cpu_time_s(self) -> float:
        """CPU seconds the tree's threads ran since the tree was opened (see the module docstring)."""
        run_times = self._run_times_ns()
        for thread, ran_ns in run_times.items():
            self._counted_ns += ran_ns - self._thread_ns.get(thread, 0)
        self._thread_ns = run_times
        return self._counted_ns / 1e9

    def _run_times_ns(self) -> dict[tuple[int, int], int]:
        """(pid, tid) -> nanoseconds that thread has run, for every thread of the tree."""
        run_times = {}
        for pid, tids in self._threads().items():
            for tid in tids:
                schedstat = _read(self.proc / str(pid) / "task" / str(tid) / "schedstat")
                if schedstat:
                    run_times[(pid, tid)] = int(schedstat.split()[0])
        return run_times

    def pss_bytes(self) -> int:
        """The tree's proportional set size in bytes."""
        total_kib = 0
        for pid in self.pids():
            rollup = _read(self.proc / str(pid) / "smaps_rollup") or ""
            for line in rollup.splitlines():
                if line.startswith("Pss:"):
                    total_kib += int(line.split()[1])
                    break
        return total_kib * 1024

    def _tasks(self, pid: int) -> list[int] | None:
        try:
            return [int(tid) for tid in os.listdir(self.proc / str(pid) / "task")]
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            return None


def process_tree_sources(root_pid: int, model: CpuPowerModel | None = None) -> list[EnergySource]:
    """The CPU and DRAM estimates of the server whose process is ``root_pid``."""
    tree = ProcessTree(root_pid)
    return [
        CpuTimeEstimate(model, tree.cpu_time_s, label="process_tree_cpu_time_tdp_estimate"),
        RamEstimate(memory_bytes=tree.pss_bytes, label="process_tree_ram_pss_estimate"),
    ]


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
