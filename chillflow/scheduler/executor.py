"""Running a job: its ``spark-submit.sh`` commands, each as a child process, and their outcome.

Every step is a process of its own, in a process group of its own: a job that crashes, leaks
memory or hangs cannot take the scheduler down, and cancelling it stops spark-submit, the JVM
and the Python driver together.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from chillflow.errors import (
    ChillflowError,
    ConfigError,
    DataQualityError,
    ReconciliationError,
    SchemaError,
)
from chillflow.scheduler.config import PIPELINE_STEPS, JobSchedule, ScheduleConfig
from chillflow.scheduler.planner import hourly_window_end, month_days, split_monthly_period

#: Exit codes of failures that a retry cannot fix: the same input fails the same way again.
#: A conservation failure is retried: a raw file still being copied changes under the run.
PERMANENT_EXIT_CODES = frozenset(
    error.exit_code for error in (ConfigError, SchemaError, DataQualityError, ReconciliationError)
)
_ERROR_NAMES = {error.exit_code: error.__name__ for error in ChillflowError.__subclasses__()}
_STDERR_TAIL_BYTES = 16_384


@dataclass(frozen=True)
class Step:
    """One command of a job.

    Attributes:
        name: Stable within the job, e.g. ``curate:yellow``; a retry resumes after the steps
            that succeeded.
        argv: The command.
    """

    name: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class JobPlan:
    """What one run of a job for a period will do.

    Attributes:
        steps: The commands, in order; empty when there is nothing to run.
        missing: Raw files the monthly pipeline expected but did not find.
        raw_file: The monthly pipeline's raw file as found: path, size and mtime_ns; a run is
            due again when they change.
    """

    steps: tuple[Step, ...]
    missing: tuple[Path, ...] = ()
    raw_file: dict[str, Any] | None = None


@dataclass(frozen=True)
class ProcessOutcome:
    """How a child process ended.

    Attributes:
        exit_code: Its exit status; negative for the signal that killed it.
        stdout: Everything it printed on stdout.
        stderr_tail: The end of its stderr.
        duration_sec: Wall-clock seconds it ran.
        cancelled: It was terminated because the scheduler is shutting down.
        timed_out: It was terminated for running longer than its timeout.
    """

    exit_code: int
    stdout: str
    stderr_tail: str
    duration_sec: float
    cancelled: bool = False
    timed_out: bool = False


@dataclass(frozen=True)
class AttemptResult:
    """The outcome of one attempt at a job's steps.

    Attributes:
        status: ``succeeded``, ``failed`` or ``cancelled``.
        steps: Per step: name, command, exit code, seconds and the step's ``--json`` result.
        error: What failed, for ``ops.job_run.error``.
        retryable: Whether another attempt could succeed.
    """

    status: str
    steps: tuple[dict[str, Any], ...]
    error: str | None = None
    retryable: bool = False


class Runner(Protocol):
    """Runs one command to its end."""

    def __call__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cancel: threading.Event,
        timeout_sec: float | None,
    ) -> ProcessOutcome:
        """Run ``argv``, appending its output to ``log_path``; stop it when ``cancel`` is set."""
        ...


def plan_job(job: JobSchedule, period: str, schedule: ScheduleConfig) -> JobPlan:
    """Return the commands that run ``job`` for ``period``.

    The daily job runs ``aggregate run`` for its day with the job's lookback; the hourly job the
    ``lookback_hours`` wall-clock hours up to the end of its hour. The monthly pipeline, when the
    period's raw file has arrived, runs ``pipeline`` on it (curate, load its trips, the month's
    KPIs, in one Spark application); when ``monthly_steps`` names only some stages, one
    process per stage.

    Args:
        job: The job.
        period: Its period in canonical form (see :mod:`chillflow.scheduler.planner`).
        schedule: Landing directory, steps and the ``spark-submit.sh`` to use.

    Returns:
        The plan; its steps are empty when the raw file has not arrived.
    """
    submit = str(schedule.spark_submit)
    if job.kind == "aggregate_daily":
        argv = (submit, "aggregate", "run", "--date", period)
        return JobPlan(steps=(Step("aggregate", _with_lookback(argv, job.lookback_hours)),))
    if job.kind == "aggregate_hourly":
        until = f"{hourly_window_end(period):%Y-%m-%dT%H}"
        argv = (submit, "aggregate", "run", "--until", until)
        return JobPlan(steps=(Step("aggregate", _with_lookback(argv, job.lookback_hours)),))
    month, service = split_monthly_period(period)
    raw = raw_path(schedule, month, service)
    try:
        found = raw.stat()
    except FileNotFoundError:
        return JobPlan(steps=(), missing=(raw,))
    steps: list[Step] = []
    if schedule.monthly_steps == PIPELINE_STEPS:
        argv = (submit, "pipeline", str(raw), "--month", month, "--json")
        steps.append(Step(f"pipeline:{service}", argv))
    else:
        if "curate" in schedule.monthly_steps:
            argv = (submit, "curate", str(raw), "--month", month, "--json")
            steps.append(Step(f"curate:{service}", argv))
        if "process-trips" in schedule.monthly_steps:
            argv = (submit, "process-trips", "--month", month, "--service", service, "--json")
            steps.append(Step(f"process-trips:{service}", argv))
        if "aggregate" in schedule.monthly_steps:
            first, last = month_days(month)
            argv = (submit, "aggregate", "backfill", "--start", str(first), "--end", str(last))
            steps.append(Step("aggregate", (*argv, "--json")))
    raw_file = {"path": str(raw), "size": found.st_size, "mtime_ns": found.st_mtime_ns}
    return JobPlan(steps=tuple(steps), raw_file=raw_file)


def raw_path(schedule: ScheduleConfig, month: str, service: str) -> Path:
    """Where the raw file of one service's month arrives."""
    return schedule.landing_dir / f"{service}_tripdata_{month}.parquet"


def _with_lookback(argv: tuple[str, ...], lookback_hours: int | None) -> tuple[str, ...]:
    return (*argv, "--lookback-hours", str(lookback_hours), "--json")


def run_steps(
    steps: Sequence[Step],
    runner: Runner,
    *,
    env: Mapping[str, str],
    log_path: Path,
    cancel: threading.Event,
    timeout_sec: float | None,
    done: set[str],
) -> AttemptResult:
    """Run steps in order until one does not succeed.

    Args:
        steps: The job's steps.
        runner: Runs each command.
        env: The children's environment.
        log_path: File that collects the children's output.
        cancel: Set to terminate the running step.
        timeout_sec: Limit per step.
        done: Names of steps that succeeded in an earlier attempt; they are not run again, and
            steps that succeed now are added.

    Returns:
        The attempt's outcome.
    """
    results: list[dict[str, Any]] = []
    for step in steps:
        if step.name in done:
            continue
        outcome = runner(
            step.argv, env=env, log_path=log_path, cancel=cancel, timeout_sec=timeout_sec
        )
        succeeded = outcome.exit_code == 0 and not (outcome.cancelled or outcome.timed_out)
        results.append(
            {
                "step": step.name,
                "command": shlex.join(step.argv),
                "exit_code": outcome.exit_code,
                "duration_sec": round(outcome.duration_sec, 3),
                "result": json_result(outcome.stdout) if succeeded else None,
            }
        )
        if outcome.cancelled:
            return AttemptResult("cancelled", tuple(results), f"step {step.name} was cancelled")
        if outcome.timed_out:
            error = f"step {step.name} timed out after {timeout_sec:g} s"
            return AttemptResult("failed", tuple(results), error, retryable=True)
        if outcome.exit_code != 0:
            return AttemptResult(
                "failed",
                tuple(results),
                f"step {step.name} {describe_exit(outcome.exit_code)}: "
                f"{error_line(outcome.stdout, outcome.stderr_tail)}",
                retryable=outcome.exit_code not in PERMANENT_EXIT_CODES,
            )
        done.add(step.name)
    return AttemptResult("succeeded", tuple(results))


def describe_exit(exit_code: int) -> str:
    """Say how a process ended, e.g. ``exited with code 3 (SchemaError)``."""
    if exit_code < 0:
        try:
            return f"was killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            return f"was killed by signal {-exit_code}"
    name = _ERROR_NAMES.get(exit_code)
    return f"exited with code {exit_code}" + (f" ({name})" if name else "")


def error_line(stdout: str, stderr: str) -> str:
    """Return the line of a job's output that says what went wrong.

    ChillFlow commands end with an ``error: …`` line. Under spark-submit it is on stdout: Spark
    runs the Python driver with its stderr merged into the JVM's stdout. Without one, the last
    line of stderr (``spark-submit.sh: …``, a JVM error) says most.
    """
    for text in (stdout, stderr):
        for line in reversed(text.splitlines()):
            if line.startswith("error: "):
                return line.removeprefix("error: ").strip()[:1000]
    for text in (stderr, stdout):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1][:1000]
    return "no output"


def json_result(stdout: str) -> dict[str, Any] | None:
    """Return the JSON object a ``--json`` command printed as its result, if any.

    That is the last JSON object on stdout that is not a log event: under spark-submit, the
    driver's JSON log lines (``event``, ``level``) share stdout with the result.
    """
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and not {"event", "level"} <= value.keys():
            return value
    return None


class SubprocessRunner:
    """Run commands as child processes in their own process group.

    Args:
        poll_sec: How often to check for cancellation and timeouts.
        kill_after_sec: How long a terminated process may take to exit before it is killed.
    """

    def __init__(self, *, poll_sec: float = 0.2, kill_after_sec: float = 30.0):
        self._poll_sec = poll_sec
        self._kill_after_sec = kill_after_sec

    def __call__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cancel: threading.Event,
        timeout_sec: float | None,
    ) -> ProcessOutcome:
        """Run ``argv`` to its end, or terminate it on ``cancel`` or after ``timeout_sec``."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with log_path.open("ab") as log, tempfile.TemporaryFile() as stdout:
            log.write(f"$ {shlex.join(argv)}\n".encode())
            log.flush()
            step_start = log.tell()
            # A session of its own: the terminal's Ctrl-C reaches the scheduler only, which then
            # gives the job its grace period, and killpg reaches every process the job started.
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=log,
                env=dict(env),
                start_new_session=True,
            )
            cancelled = timed_out = False
            while process.poll() is None:
                if cancel.wait(self._poll_sec):
                    cancelled = True
                elif timeout_sec is not None and time.monotonic() - started > timeout_sec:
                    timed_out = True
                if cancelled or timed_out:
                    self._terminate(process)
            stdout.seek(0)
            output = stdout.read().decode(errors="replace")
            stderr_tail = _tail(log_path, step_start)
            if output:
                log.write(b"--- stdout ---\n" + output.encode())
        return ProcessOutcome(
            exit_code=process.returncode,
            stdout=output,
            stderr_tail=stderr_tail,
            duration_sec=time.monotonic() - started,
            cancelled=cancelled,
            timed_out=timed_out,
        )

    def _terminate(self, process: subprocess.Popen) -> None:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=self._kill_after_sec)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


def _tail(path: Path, start: int) -> str:
    with path.open("rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        handle.seek(max(start, end - _STDERR_TAIL_BYTES))
        return handle.read().decode(errors="replace")
