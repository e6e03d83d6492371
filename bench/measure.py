"""Measurement helpers shared by the benchmarks: wall time and peak RSS of process trees."""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Run:
    seconds: float
    peak_rss_mib: float  # the largest VmHWM of any one process of the tree
    returncode: int
    stdout: str
    stderr: str
    tree_peak_mib: float = 0.0  # the largest sampled sum of the tree's VmRSS (driver + JVM …)


def _tree(pid: int) -> list[int]:
    children_of: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children_of.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children_of.get(current, []))
    return found


def _status_kib(pid: int, field: str = "VmHWM:") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_measured(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> Run:
    """Run a command; return wall time and the peak RSS of its process tree.

    The JVM that PySpark starts is a child of the Python driver; `/usr/bin/time` would only see
    the driver, so every descendant's VmHWM and VmRSS are sampled from /proc every 0.25 s while
    the command runs (the tree's sum never below its largest single peak).
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = {"kib": 0, "tree_kib": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.25):
            pids = _tree(proc.pid)
            peak["kib"] = max([peak["kib"], *(_status_kib(pid) for pid in pids)])
            tree = sum(_status_kib(pid, "VmRSS:") for pid in pids)
            peak["tree_kib"] = max(peak["tree_kib"], tree, peak["kib"])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    stop.set()
    sampler.join()
    seconds = time.monotonic() - started
    return Run(seconds, peak["kib"] / 1024, proc.returncode, out, err, peak["tree_kib"] / 1024)


def self_peak_rss_mib() -> float:
    """Peak RSS of this Python process."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def jvm_peak_rss_mib() -> float:
    """Peak RSS of this process's JVM children (PySpark's gateway)."""
    return (
        max((_status_kib(pid) for pid in _tree(os.getpid()) if pid != os.getpid()), default=0)
        / 1024
    )
