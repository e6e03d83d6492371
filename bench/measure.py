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
    peak_rss_mib: float
    returncode: int
    stdout: str
    stderr: str


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


def _hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_measured(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> Run:
    """Run a command; return wall time and the largest peak RSS of any process in its tree.

    The JVM that PySpark starts is a child of the Python driver; `/usr/bin/time` would only see
    the driver, so every descendant's VmHWM is sampled from /proc while the command runs.
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = {"kib": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.25):
            for pid in _tree(proc.pid):
                peak["kib"] = max(peak["kib"], _hwm_kib(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    stop.set()
    sampler.join()
    return Run(time.monotonic() - started, peak["kib"] / 1024, proc.returncode, out, err)


def self_peak_rss_mib() -> float:
    """Peak RSS of this Python process."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def jvm_peak_rss_mib() -> float:
    """Peak RSS of this process's JVM children (PySpark's gateway)."""
    return (
        max((_hwm_kib(pid) for pid in _tree(os.getpid()) if pid != os.getpid()), default=0) / 1024
    )
