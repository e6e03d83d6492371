"""conf/schedules.toml: the shipped defaults and every validation error."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from chillflow.errors import ConfigError
from chillflow.scheduler.config import load_schedule, parse_schedule

CONF = Path(__file__).resolve().parents[2] / "conf"
REPO_ROOT = CONF.parent

VALID_JOB = {"name": "daily", "kind": "aggregate_daily", "cron": "0 2 * * *"}


def parse(overrides=None, jobs=None, landing=Path("/landing")):
    doc = {"jobs": jobs if jobs is not None else [dict(VALID_JOB)], **(overrides or {})}
    return parse_schedule(doc, source="schedules.toml", landing_dir=landing)


def test_shipped_schedule_matches_the_issue(tmp_path):
    schedule = load_schedule(CONF, data_dir=tmp_path, env={})

    jobs = {job.name: job for job in schedule.jobs}
    assert [(j.kind, j.cron, j.lookback_hours, j.watch_months) for j in jobs.values()] == [
        ("aggregate_hourly", "5 * * * *", 2, None),
        ("aggregate_daily", "0 2 * * *", 24, None),
        ("monthly_pipeline", "0 3 * * *", None, 3),
        ("maintain", "0 4 * * 0", None, None),
    ]
    assert {job.timezone for job in schedule.jobs} == {ZoneInfo("America/New_York")}
    assert {job.data_time_zone for job in schedule.jobs} == {ZoneInfo("America/New_York")}
    assert schedule.missed_run_policy == "run_latest"
    assert schedule.monthly_steps == ("curate", "process-trips", "aggregate")
    assert schedule.services == ("yellow", "green")
    assert schedule.landing_dir == tmp_path / "landing"
    assert schedule.spark_submit == REPO_ROOT / "spark-submit.sh"
    assert all(job.retries >= 1 and job.retry_backoff_sec > 0 for job in schedule.jobs)


def test_landing_dir_from_the_environment_wins(tmp_path):
    schedule = load_schedule(
        CONF, data_dir=tmp_path, env={"CHILLFLOW_LANDING_DIR": str(tmp_path / "in")}
    )

    assert schedule.landing_dir == tmp_path / "in"


def test_defaults_of_a_minimal_schedule():
    schedule = parse()

    (daily,) = schedule.jobs
    assert daily.timezone == ZoneInfo("UTC")
    assert daily.data_time_zone == ZoneInfo("America/New_York")
    assert (daily.lookback_hours, daily.retries, daily.retry_backoff_sec) == (24, 0, 60.0)
    assert daily.timeout_sec is None
    assert schedule.job("daily") is daily
    with pytest.raises(ConfigError, match="unknown job 'hourly': expected one of daily"):
        schedule.job("hourly")


def test_a_job_may_have_its_own_time_zone():
    schedule = parse(
        {"timezone": "America/New_York"},
        [VALID_JOB, {**VALID_JOB, "name": "paris", "timezone": "Europe/Paris"}],
    )

    assert [job.timezone.key for job in schedule.jobs] == ["America/New_York", "Europe/Paris"]


@pytest.mark.parametrize(
    ("overrides", "job", "message"),
    [
        ({}, {"cron": "0 25 * * *"}, "cron '0 25 \\* \\* \\*' is not a valid five-field cron"),
        ({}, {"cron": "0 0 2 * * *"}, "not a valid five-field cron expression"),
        ({}, {"cron": "0 0 30 2 *"}, "cron '0 0 30 2 \\*' never fires"),
        ({}, {"kind": "vacuum"}, "kind 'vacuum' not in aggregate_hourly, aggregate_daily"),
        ({}, {"name": "Daily Job"}, "name 'Daily Job' must match"),
        ({}, {"name": "aggregate"}, "'aggregate' is taken by a stage's own run records"),
        ({}, {"timezone": "Mars/Olympus"}, "timezone = 'Mars/Olympus': expected an IANA time zone"),
        ({}, {"retries": -1}, "retries=-1: expected an integer >= 0"),
        ({}, {"retries": 1.5}, "retries=1.5: expected an integer >= 0"),
        ({}, {"retry_backoff_sec": "soon"}, "retry_backoff_sec='soon': expected seconds >= 0"),
        ({}, {"lookback_hours": 0}, "lookback_hours=0: expected a positive integer"),
        ({}, {"timeout_sec": 0}, "timeout_sec=0: expected seconds > 0"),
        ({}, {"retry": 3}, r"unknown keys \['retry'\]; expected \['cron', 'kind'"),
        ({"missed_run_policy": "catch_up"}, {}, "missed_run_policy 'catch_up' not in skip"),
        (
            {"services": ["yellow", "yellow"]},
            {},
            "services .* must be a non-empty list of distinct",
        ),
        ({"services": ["fhv"]}, {}, "from yellow, green$"),
        ({"monthly_steps": ["aggregate", "curate"]}, {}, "once each, in that order"),
        ({"monthly_steps": []}, {}, "monthly_steps \\[\\] must list steps"),
        ({"spark_submit": "/nonexistent/spark-submit.sh"}, {}, "is not an executable file"),
        ({"shutdown_grace_sec": -1}, {}, "shutdown_grace_sec=-1: expected seconds >= 0"),
        ({"lanidng_dir": "x"}, {}, r"unknown keys \['lanidng_dir'\]"),
        (
            {"data_timezone": "America/New_York"},
            {},
            "data_timezone is not a schedule setting: .* data_time_zone in the \\[curate\\]",
        ),
        ({}, {"watch_months": 3}, "watch_months applies to the monthly pipeline only"),
    ],
)
def test_invalid_values_name_the_file_job_and_key(overrides, job, message):
    with pytest.raises(ConfigError, match=message) as raised:
        parse(overrides, [{**VALID_JOB, **job}])

    assert "schedules.toml" in str(raised.value)


def test_lookback_hours_is_for_aggregate_jobs_only_and_watch_months_for_the_monthly_one():
    monthly = {"name": "monthly", "kind": "monthly_pipeline", "cron": "0 3 * * *"}

    with pytest.raises(ConfigError, match=r"job #1 \(monthly\): lookback_hours applies to aggre"):
        parse(jobs=[{**monthly, "lookback_hours": 24}])
    with pytest.raises(ConfigError, match=r"\(monthly\): watch_months=0: expected a positive"):
        parse(jobs=[{**monthly, "watch_months": 0}])
    assert parse(jobs=[monthly]).jobs[0].watch_months == 3


def test_job_names_are_unique_and_jobs_required():
    with pytest.raises(ConfigError, match="duplicate job names daily"):
        parse(jobs=[VALID_JOB, VALID_JOB])
    with pytest.raises(ConfigError, match=r"no \[\[jobs\]\] defined"):
        parse(jobs=[])


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="schedules.toml not found"):
        load_schedule(tmp_path, data_dir=tmp_path, env={})
    (tmp_path / "schedules.toml").write_text("jobs = [")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_schedule(tmp_path, data_dir=tmp_path, env={})
