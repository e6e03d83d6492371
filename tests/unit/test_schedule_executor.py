"""How step outcomes become an attempt's status, and reading a job's output (pure)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from chillflow.scheduler.executor import (
    ProcessOutcome,
    describe_exit,
    error_line,
    json_result,
    run_steps,
)
from chillflow.scheduler.planner import Step


class ScriptedRunner:
    """Plays back outcomes in order and records the commands it was given."""

    def __init__(self, *outcomes: ProcessOutcome):
        self.outcomes = list(outcomes)
        self.commands: list[tuple[str, ...]] = []

    def __call__(self, argv, *, env, log_path, cancel, timeout_sec):
        self.commands.append(tuple(argv))
        return self.outcomes.pop(0)


def outcome(exit_code=0, stdout="", stderr="", **flags):
    return ProcessOutcome(exit_code, stdout, stderr, duration_sec=1.25, **flags)


STEPS = (Step("curate:yellow", ("submit", "curate")), Step("aggregate", ("submit", "aggregate")))


def run(runner, done=None):
    return run_steps(
        STEPS,
        runner,
        env={},
        log_path=Path("unused.log"),
        cancel=threading.Event(),
        timeout_sec=60,
        done=set() if done is None else done,
    )


def test_all_steps_succeed_and_their_json_becomes_the_stats():
    runner = ScriptedRunner(
        outcome(
            stdout='Ivy says hi\n{"input_rows": 10, "output_rows": 9}\n'
            '{"event": "session.stopped", "level": "info"}\n'
        ),
        outcome(stdout='{"hours_processed": 24}'),
    )
    done: set[str] = set()

    result = run(runner, done)

    assert result.status == "succeeded" and result.error is None
    assert [step["result"] for step in result.steps] == [
        {"input_rows": 10, "output_rows": 9},
        {"hours_processed": 24},
    ]
    assert result.steps[0] == {
        "step": "curate:yellow",
        "command": "submit curate",
        "exit_code": 0,
        "duration_sec": 1.25,
        "result": {"input_rows": 10, "output_rows": 9},
    }
    assert done == {"curate:yellow", "aggregate"}


def test_a_transient_failure_stops_the_attempt_and_may_be_retried():
    runner = ScriptedRunner(
        outcome(),
        outcome(1, stderr="25/03/01 WARN noise\nerror: Spark failed: executor lost\nbye\n"),
    )

    result = run(runner)

    assert result.status == "failed" and result.retryable
    assert result.error == "step aggregate exited with code 1: Spark failed: executor lost"


def test_a_retry_resumes_after_the_steps_that_succeeded():
    runner = ScriptedRunner(outcome())

    result = run(runner, done={"curate:yellow"})

    assert runner.commands == [("submit", "aggregate")]
    assert result.status == "succeeded"


@pytest.mark.parametrize(
    ("process", "status", "error", "retryable"),
    [
        (
            outcome(3, stderr="error: raw.parquet: not a Parquet file\n"),
            "failed",
            "step curate:yellow exited with code 3 (SchemaError): raw.parquet: not a Parquet file",
            False,
        ),
        (
            outcome(2, stderr="spark-submit.sh: unknown job 'process-trips'\n"),
            "failed",
            "step curate:yellow exited with code 2 (ConfigError): spark-submit.sh: unknown job",
            False,
        ),
        (
            outcome(6, stderr="error: cannot connect to PostgreSQL\n"),
            "failed",
            "step curate:yellow exited with code 6 (DatabaseError): cannot connect to PostgreSQL",
            True,
        ),
        (
            # A file still being copied: the next attempt may see all its rows.
            outcome(5, stderr="error: raw.parquet: 10 raw rows but 9 curated + 0 quarantined\n"),
            "failed",
            "step curate:yellow exited with code 5 (ConservationError): raw.parquet: 10 raw rows",
            True,
        ),
        (
            # Another run holds the slice: the next attempt finds it free.
            outcome(
                10, stderr="error: curate of yellow/2025-01 in /lake is locked by curate run a\n"
            ),
            "failed",
            "step curate:yellow exited with code 10 (BusyError): curate of yellow/2025-01 in /lake",
            True,
        ),
        (outcome(-9), "failed", "step curate:yellow was killed by SIGKILL: no output", True),
        (
            # Under spark-submit the driver's stderr, logs included, reaches stdout.
            outcome(
                1,
                stdout='{"event": "command.failed", "level": "error"}\n'
                "error: Spark failed: [PACKAGE_NOT_INSTALLED] Pandas >= 2.2.0 must be installed\n",
                stderr="26/11/29 03:04:20 WARN SparkStringUtils: Truncated the string\n",
            ),
            "failed",
            "step curate:yellow exited with code 1: Spark failed: [PACKAGE_NOT_INSTALLED] Pandas",
            True,
        ),
        (outcome(-15, cancelled=True), "cancelled", "step curate:yellow was cancelled", False),
        (outcome(-15, timed_out=True), "failed", "step curate:yellow timed out after 60 s", True),
    ],
)
def test_how_a_failed_step_ends_the_attempt(process, status, error, retryable):
    result = run(ScriptedRunner(process))

    assert (result.status, result.retryable) == (status, retryable)
    assert result.error.startswith(error)
    assert len(result.steps) == 1
    assert result.steps[0]["result"] is None


def test_exit_descriptions_and_output_parsing():
    assert describe_exit(4) == "exited with code 4 (DataQualityError)"
    assert describe_exit(42) == "exited with code 42"
    assert describe_exit(-15) == "was killed by SIGTERM"
    assert error_line("", "") == "no output"
    assert error_line("", "a\n\nlast line  \n") == "last line"
    assert error_line("stdout line\n", "") == "stdout line"
    assert json_result('{"a": 1}\n[1, 2]\n{broken\n') == {"a": 1}
    assert json_result("no json here") is None
