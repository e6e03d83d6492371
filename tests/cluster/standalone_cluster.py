"""A Spark standalone cluster on this machine, started from the pyspark installation's scripts.

Used by the cluster test and the cluster benchmark (bench/bench_cluster.py). The pyspark wheel
ships ``bin/spark-class`` but not ``sbin/start-master.sh``, so the master and each worker run as
``spark-class org.apache.spark.deploy.…`` processes, each in its own process group (a worker's
executors inherit it) with its log in the cluster's work directory. Everything binds to one
loopback address on free ports, so several clusters can run side by side.

``stop`` ends the process groups, workers first, and then any process still running from the
work directory (an executor that outlived its worker), so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import structlog

from chillflow.errors import ClusterError, DependencyError

_MASTER_CLASS = "org.apache.spark.deploy.master.Master"
_WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"

log = structlog.get_logger(__name__)


@dataclass
class _Daemon:
    name: str
    process: subprocess.Popen[bytes]
    log_file: IO[bytes]


class StandaloneCluster:
    """One master and ``workers`` workers on ``host``; a context manager that always stops them.

    Args:
        work_dir: Directory for logs and the workers' executor directories; it marks every
            process of this cluster, so give each cluster its own.
        workers: Number of workers.
        cores: Cores each worker offers.
        memory: Memory each worker offers to executors (``1g``, ``1536m``).
        python: Python that executors run (``PYSPARK_PYTHON``); this interpreter by default.
        host: Loopback address every daemon binds to.
        daemon_memory: Heap of the master and worker JVMs themselves.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        workers: int = 2,
        cores: int = 1,
        memory: str = "1g",
        python: str | None = None,
        host: str = "127.0.0.1",
        daemon_memory: str = "512m",
    ) -> None:
        if workers < 1 or cores < 1:
            raise ValueError("a cluster needs at least one worker with at least one core")
        self.work_dir = Path(work_dir).resolve()
        self.workers = workers
        self.cores = cores
        self.memory = memory
        self.python = python or sys.executable
        self.host = host
        self.daemon_memory = daemon_memory
        self.master_port = _free_port(host)
        self.master_web_port = _free_port(host)
        self._daemons: list[_Daemon] = []

    @property
    def master_url(self) -> str:
        """The URL to submit to: ``spark://host:port``."""
        return f"spark://{self.host}:{self.master_port}"

    @property
    def web_url(self) -> str:
        """The master's web UI, whose ``/json/`` endpoint reports workers and applications."""
        return f"http://{self.host}:{self.master_web_port}"

    def __enter__(self) -> StandaloneCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout_sec: float = 180.0) -> StandaloneCluster:
        """Start the master and the workers and wait until every worker is registered.

        Raises:
            DependencyError: If Java or pyspark's ``spark-class`` is missing.
            ClusterError: If a daemon exits or the workers do not register in time; the
                message ends with the daemons' log tails. Call :meth:`stop` afterwards.
        """
        spark_class = _spark_class()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self._spawn(
            "master",
            [
                spark_class,
                _MASTER_CLASS,
                *("--host", self.host, "--port", str(self.master_port)),
                *("--webui-port", str(self.master_web_port)),
            ],
        )
        self._wait(lambda status: status is not None, "the master to answer", timeout_sec)
        for index in range(1, self.workers + 1):
            worker_dir = self.work_dir / f"worker-{index}"
            worker_dir.mkdir(exist_ok=True)
            self._spawn(
                f"worker-{index}",
                [
                    spark_class,
                    _WORKER_CLASS,
                    self.master_url,
                    *("--host", self.host, "--port", str(_free_port(self.host))),
                    *("--webui-port", str(_free_port(self.host))),
                    *("--cores", str(self.cores), "--memory", self.memory),
                    *("--work-dir", str(worker_dir)),
                ],
            )
        self._wait(
            lambda status: status is not None and _alive_workers(status) >= self.workers,
            f"{self.workers} workers to register",
            timeout_sec - (time.monotonic() - started),
        )
        log.info(
            "cluster.started",
            master=self.master_url,
            workers=self.workers,
            cores=self.cores,
            memory=self.memory,
            sec=round(time.monotonic() - started, 1),
        )
        return self

    def status(self) -> dict[str, Any] | None:
        """Return the master's JSON status (workers, applications); None if it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.web_url}/json/", timeout=5) as response:  # noqa: S310
                return json.load(response)
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def applications(self) -> list[dict[str, Any]]:
        """Return the master's running and completed applications (id, name, state, cores…)."""
        status = self.status() or {}
        return [*status.get("activeapps", []), *status.get("completedapps", [])]

    def executor_dirs(self, app_id: str) -> list[Path]:
        """Return the executor directories that the workers created for one application."""
        return sorted(self.work_dir.glob(f"worker-*/{app_id}/*"))

    def log_tails(self, lines: int = 40) -> str:
        """Return the last lines of the master's, the workers' and every executor's log."""
        paths = sorted(self.work_dir.glob("*.log"))
        paths += sorted(self.work_dir.glob("worker-*/app-*/*/stderr"))
        sections = []
        for path in paths:
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            tail = "\n".join(text.splitlines()[-lines:])
            sections.append(f"--- {path.relative_to(self.work_dir)} (last {lines} lines)\n{tail}")
        return "\n".join(sections) or f"(no logs under {self.work_dir})"

    def stop(self, timeout_sec: float = 30.0) -> None:
        """Stop workers (with their executors) and master, then kill any leftover process.

        Safe to call more than once and on a cluster that failed to start.
        """
        for daemon in reversed(self._daemons):
            _signal_group(daemon.process, signal.SIGTERM)
        deadline = time.monotonic() + timeout_sec
        for daemon in reversed(self._daemons):
            with contextlib.suppress(subprocess.TimeoutExpired):
                daemon.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            _signal_group(daemon.process, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                daemon.process.wait(timeout=10)
            daemon.log_file.close()
        leftovers = processes_under(self.work_dir)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if self._daemons:
            log.info("cluster.stopped", master=self.master_url, leftovers_killed=len(leftovers))
        self._daemons.clear()

    def _spawn(self, name: str, command: list[str]) -> None:
        log_file = (self.work_dir / f"{name}.log").open("ab")
        env = {
            **os.environ,
            "SPARK_LOCAL_IP": self.host,
            "SPARK_DAEMON_MEMORY": self.daemon_memory,
            # Executors run the driver's pythonExec; this is the fallback when it is unset.
            "PYSPARK_PYTHON": self.python,
        }
        process = subprocess.Popen(  # noqa: S603 - fixed program, arguments built here
            command,
            cwd=self.work_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._daemons.append(_Daemon(name, process, log_file))

    def _wait(self, ready: Any, what: str, timeout_sec: float) -> None:
        deadline = time.monotonic() + max(timeout_sec, 1.0)
        while True:
            for daemon in self._daemons:
                if daemon.process.poll() is not None:
                    raise ClusterError(
                        f"{daemon.name} exited with code {daemon.process.returncode} while "
                        f"waiting for {what}\n{self.log_tails()}"
                    )
            if ready(self.status()):
                return
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"timed out after {timeout_sec:.0f} s waiting for {what} at {self.web_url}\n"
                    f"{self.log_tails()}"
                )
            time.sleep(1.0)


def _spark_class() -> str:
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise DependencyError("Java is not installed: apt-get install openjdk-17-jre-headless")
    import pyspark

    path = Path(pyspark.__file__).resolve().parent / "bin" / "spark-class"
    if not path.is_file():
        raise DependencyError(f"pyspark has no {path}: reinstall pyspark")
    return str(path)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _alive_workers(status: dict[str, Any]) -> int:
    return sum(1 for worker in status.get("workers", []) if worker.get("state") == "ALIVE")


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def processes_under(work_dir: Path) -> list[int]:
    """Return processes whose working directory or an argument lies in ``work_dir``."""
    inside = re.compile(re.escape(str(work_dir)) + r"(/|$)")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            arguments = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(inside.search(value) for value in (cwd, *arguments)):
            found.append(int(entry.name))
    return found
