"""Running a job's steps as child processes, each in a process group of its own, and their outcome.

A job that crashes, leaks memory or hangs cannot take the scheduler down, and cancelling it stops
spark-submit, the JVM and the Python driver together.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chillflow import errors
from chillflow.scheduler.planner import Step

#: Exit codes of failures that a retry cannot fix: the same input fails the same way again.
#: A conservation failure is retried: a raw file still being copied changes under the run.
PERMANENT_EXIT_CODES = frozenset(
    error.exit_code
    for error in (
        errors.ConfigError, errors.SchemaError, errors.DataQualityError, errors.ReconciliationError
    )
)  # fmt: skip
_ERROR_NAMES = {error.exit_code: error.__name__ for error in errors.ChillflowError.__subclasses__()}
_STDERR_TAIL_BYTES = 16_384


@dataclass(frozen=True)
class ProcessOutcome:
    """How a child process ended; a negative exit code is the signal that killed it."""

    exit_code: int
    stdout: str
    stderr_tail: str
    duration_sec: float
    cancelled: bool = False
    timed_out: bool = False


@dataclass(frozen=True)
class AttemptResult:
    """One attempt at a job's steps: status, per step its command, exit code, seconds and result."""

    status: str
    steps: tuple[dict[str, Any], ...]
    error: str | None = None
    retryable: bool = False


def run_steps(
    steps: Sequence[Step],
    runner: Callable[..., ProcessOutcome],
    *,
    env: Mapping[str, str],
    log_path: Path,
    cancel: threading.Event,
    timeout_sec: float | None,
    done: set[str],
) -> AttemptResult:
    """Run the steps not ``done`` (by an earlier attempt) in order until one does not succeed.

    ``runner`` is :func:`run_process` or a stand-in with its signature. The steps that succeed
    are added to ``done``; ``cancel`` terminates the running step.
    """
    results: list[dict[str, Any]] = []
    for step in (step for step in steps if step.name not in done):
        ran = runner(step.argv, env=env, log_path=log_path, cancel=cancel, timeout_sec=timeout_sec)
        succeeded = ran.exit_code == 0 and not (ran.cancelled or ran.timed_out)
        results.append(
            {"step": step.name, "command": shlex.join(step.argv), "exit_code": ran.exit_code,
             "duration_sec": round(ran.duration_sec, 3),
             "result": json_result(ran.stdout) if succeeded else None}
        )  # fmt: skip
        if ran.cancelled:
            return AttemptResult("cancelled", tuple(results), f"step {step.name} was cancelled")
        if ran.timed_out:
            error = f"step {step.name} timed out after {timeout_sec:g} s"
            return AttemptResult("failed", tuple(results), error, retryable=True)
        if ran.exit_code != 0:
            error = f"step {step.name} {describe_exit(ran.exit_code)}: "
            error += error_line(ran.stdout, ran.stderr_tail)
            retryable = ran.exit_code not in PERMANENT_EXIT_CODES
            return AttemptResult("failed", tuple(results), error, retryable)
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
    """Return the line of a job's output that says what went wrong, else stderr's last line.

    ChillFlow commands end with an ``error: …`` line, on stdout under spark-submit.
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
    """Return the last JSON object on stdout that is not a log event (``event`` and ``level``)."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(line)
            if isinstance(value, dict) and not {"event", "level"} <= value.keys():
                return value
    return None


def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    cancel: threading.Event,
    timeout_sec: float | None,
    poll_sec: float = 0.2,
    kill_after_sec: float = 30.0,
) -> ProcessOutcome:
    """Run ``argv`` as a child process in a session of its own, its output appended to a log.

    It is terminated on ``cancel`` or after ``timeout_sec`` (both checked every ``poll_sec``),
    and killed when it has not exited ``kill_after_sec`` later.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_path.open("ab") as log, tempfile.TemporaryFile() as stdout:
        log.write(f"$ {shlex.join(argv)}\n".encode())
        log.flush()
        step_start = log.tell()
        # A session of its own: the terminal's Ctrl-C reaches the scheduler only, which gives
        # the job its grace period, and killpg reaches every process the job started.
        process = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=stdout, stderr=log, env=dict(env),
            start_new_session=True,
        )  # fmt: skip
        cancelled = timed_out = False
        while process.poll() is None:
            cancelled = cancel.wait(poll_sec)
            timed_out = timeout_sec is not None and time.monotonic() - started > timeout_sec
            if cancelled or timed_out:
                _terminate(process, kill_after_sec)
        stdout.seek(0)
        output = stdout.read().decode(errors="replace")
        with log_path.open("rb") as written:
            end = written.seek(0, os.SEEK_END)
            written.seek(max(step_start, end - _STDERR_TAIL_BYTES))
            stderr_tail = written.read().decode(errors="replace")
        if output:
            log.write(b"--- stdout ---\n" + output.encode())
    code, duration = process.returncode, time.monotonic() - started
    timed_out = timed_out and not cancelled
    return ProcessOutcome(code, output, stderr_tail, duration, cancelled, timed_out)


def _terminate(process: subprocess.Popen, kill_after_sec: float) -> None:
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        try:
            process.wait(timeout=kill_after_sec)
            return
        except subprocess.TimeoutExpired:
            continue
