"""Job commands and how step outcomes become a run's status (pure; no process is started)."""

from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from chillflow.scheduler.config import parse_schedule
from chillflow.scheduler.executor import (
    ProcessOutcome,
    Step,
    describe_exit,
    error_line,
    json_result,
    plan_job,
    run_steps,
)
from chillflow.scheduler.planner import periods_of

pytestmark = pytest.mark.unit

SUBMIT = str(Path(__file__).resolve().parents[2] / "spark-submit.sh")
JOBS = [
    {"name": "hourly", "kind": "aggregate_hourly", "cron": "5 * * * *", "lookback_hours": 2},
    {"name": "daily", "kind": "aggregate_daily", "cron": "0 2 * * *", "lookback_hours": 24},
    {"name": "monthly", "kind": "monthly_pipeline", "cron": "0 3 * * *"},
]


def schedule(landing: Path, **overrides):
    doc = {"jobs": JOBS, "services": ["yellow", "green"], **overrides}
    return parse_schedule(doc, source="test", landing_dir=landing)


def window_of(argv):
    """The hours ``[start, end)`` an ``aggregate run`` recomputes, by its documented options."""
    options = dict(zip(argv[3::2], argv[4::2], strict=False))
    if "--until" in options:
        end = datetime.fromisoformat(options["--until"] + ":00")
    else:
        end = datetime.fromisoformat(options["--date"]) + timedelta(days=1)
    return end - timedelta(hours=int(options["--lookback-hours"])), end


@pytest.mark.parametrize(
    ("fire", "start", "end"),
    [
        # At 10:05 in New York: 09:00-10:00 New York time and the hour before it, nothing later.
        ("2025-03-10T10:05:00-04:00", datetime(2025, 3, 10, 8), datetime(2025, 3, 10, 10)),
        ("2025-03-11T00:05:00-04:00", datetime(2025, 3, 10, 22), datetime(2025, 3, 11, 0)),
        # Both passes through 01:00 on the autumn night recompute wall-clock 01:00 with the hour
        # before; the spring night has no 02:00 and the run after 03:00 covers 02:00 (empty).
        ("2026-11-01T01:05:00-05:00", datetime(2026, 11, 1, 0), datetime(2026, 11, 1, 2)),
        ("2026-11-01T02:05:00-05:00", datetime(2026, 11, 1, 0), datetime(2026, 11, 1, 2)),
        ("2026-03-08T03:05:00-04:00", datetime(2026, 3, 8, 0), datetime(2026, 3, 8, 2)),
        ("2026-03-08T04:05:00-04:00", datetime(2026, 3, 8, 2), datetime(2026, 3, 8, 4)),
    ],
)
def test_hourly_job_recomputes_the_wall_clock_hours_up_to_the_one_that_just_ended(
    tmp_path, fire, start, end
):
    config = schedule(tmp_path)
    hourly = config.job("hourly")
    (period,) = periods_of(hourly, datetime.fromisoformat(fire))

    (step,) = plan_job(hourly, period, config).steps

    assert step.argv[:3] == (SUBMIT, "aggregate", "run")
    assert window_of(step.argv) == (start, end)


def test_hourly_job_asks_for_its_window_with_an_end_hour(tmp_path):
    config = schedule(tmp_path)

    plan = plan_job(config.job("hourly"), "2025-03-10T09:00-04:00", config)

    assert plan.steps == (
        Step(
            "aggregate",
            (SUBMIT, "aggregate", "run", "--until", "2025-03-10T10", "--lookback-hours", "2",
             "--json"),
        ),
    )  # fmt: skip


def test_daily_job_aggregates_its_day(tmp_path):
    config = schedule(tmp_path)

    plan = plan_job(config.job("daily"), "2026-03-07", config)

    assert [step.argv for step in plan.steps] == [
        (SUBMIT, "aggregate", "run", "--date", "2026-03-07", "--lookback-hours", "24", "--json")
    ]
    assert window_of(plan.steps[0].argv) == (datetime(2026, 3, 7), datetime(2026, 3, 8))


def test_monthly_pipeline_runs_the_month_in_one_pipeline_process(tmp_path):
    config = schedule(tmp_path)
    green = tmp_path / "green_tripdata_2024-02.parquet"
    green.write_bytes(b"PAR1")
    os.utime(green, ns=(1_700_000_000_000_000_000, 1_700_000_000_123_456_789))

    plan = plan_job(config.job("monthly"), "2024-02/green", config)

    assert [(step.name, step.argv[1:]) for step in plan.steps] == [
        ("pipeline:green", ("pipeline", str(green), "--month", "2024-02", "--json")),
    ]
    assert plan.missing == ()
    assert plan.raw_file == {
        "path": str(green),
        "size": 4,
        "mtime_ns": 1_700_000_000_123_456_789,
    }


def test_some_monthly_steps_run_one_process_per_stage(tmp_path):
    config = schedule(tmp_path, monthly_steps=["process-trips", "aggregate"])
    (tmp_path / "green_tripdata_2024-02.parquet").touch()

    plan = plan_job(config.job("monthly"), "2024-02/green", config)

    assert [(step.name, step.argv[1:]) for step in plan.steps] == [
        (
            "process-trips:green",
            ("process-trips", "--month", "2024-02", "--service", "green", "--json"),
        ),
        (
            "aggregate",
            ("aggregate", "backfill", "--start", "2024-02-01", "--end", "2024-02-29", "--json"),
        ),
    ]


def test_monthly_pipeline_steps_are_configurable(tmp_path):
    config = schedule(tmp_path, monthly_steps=["curate"])
    (tmp_path / "yellow_tripdata_2026-02.parquet").touch()

    plan = plan_job(config.job("monthly"), "2026-02/yellow", config)

    assert [step.name for step in plan.steps] == ["curate:yellow"]


def test_monthly_pipeline_has_nothing_to_run_before_the_raw_file_arrives(tmp_path):
    config = schedule(tmp_path)
    (tmp_path / "yellow_tripdata_2026-02.parquet").touch()

    plan = plan_job(config.job("monthly"), "2026-02/green", config)

    assert plan.steps == ()
    assert plan.missing == (tmp_path / "green_tripdata_2026-02.parquet",)
    assert plan.raw_file is None


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
