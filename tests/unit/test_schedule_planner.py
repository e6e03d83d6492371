"""Fire times across daylight-saving changes, periods in the data's wall clock, the missed-run
policy and each job's commands (pure)."""

from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from chillflow.errors import ConfigError
from chillflow.scheduler.config import JobSchedule, parse_schedule
from chillflow.scheduler.planner import (
    Step,
    hourly_window_end,
    latest_fire,
    next_fire,
    parse_periods,
    periods_of,
    plan_job,
    select_due,
)
from tests.fake_clock import FakeClock

NEW_YORK = ZoneInfo("America/New_York")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def job(kind: str, cron: str, tz: ZoneInfo = NEW_YORK) -> JobSchedule:
    lookback = {"aggregate_hourly": 2, "aggregate_daily": 24}.get(kind)
    return JobSchedule(
        name="j",
        kind=kind,
        cron=cron,
        timezone=tz,
        data_time_zone=NEW_YORK,
        lookback_hours=lookback,
        watch_months=3 if kind == "monthly_pipeline" else None,
        retries=0,
        retry_backoff_sec=0,
    )


def period_of(schedule: JobSchedule, fire: datetime) -> str:
    (period,) = periods_of(schedule, fire)
    return period


def fires(schedule: JobSchedule, after: datetime, count: int) -> list[datetime]:
    found = []
    for _ in range(count):
        after = next_fire(schedule, after)
        found.append(after)
    return found


HOURLY = job("aggregate_hourly", "5 * * * *")
DAILY = job("aggregate_daily", "0 2 * * *")
MONTHLY = job("monthly_pipeline", "0 3 * * *")


def test_hourly_job_fires_every_real_hour_when_spring_skips_an_hour():
    # 2026-03-08 02:00 EST becomes 03:00 EDT (07:00 UTC): local 02:05 does not exist.
    found = fires(HOURLY, utc("2026-03-08T04:00"), 5)

    assert found == [
        utc("2026-03-08T04:05"),
        utc("2026-03-08T05:05"),
        utc("2026-03-08T06:05"),
        utc("2026-03-08T07:05"),
        utc("2026-03-08T08:05"),
    ]
    assert [f.astimezone(NEW_YORK).strftime("%H:%M%z") for f in found] == [
        "23:05-0500",
        "00:05-0500",
        "01:05-0500",
        "03:05-0400",
        "04:05-0400",
    ]
    # Each run covers the wall-clock hour that just ended; 02:00 does not exist that night.
    assert [period_of(HOURLY, f) for f in found] == [
        "2026-03-07T22:00-05:00",
        "2026-03-07T23:00-05:00",
        "2026-03-08T00:00-05:00",
        "2026-03-08T01:00-05:00",
        "2026-03-08T03:00-04:00",
    ]
    assert [hourly_window_end(period_of(HOURLY, f)) for f in found] == [
        datetime(2026, 3, 7, 23),
        datetime(2026, 3, 8, 0),
        datetime(2026, 3, 8, 1),
        datetime(2026, 3, 8, 2),
        datetime(2026, 3, 8, 4),
    ]


def test_hourly_job_fires_in_both_passes_of_the_repeated_autumn_hour():
    # 2026-11-01 02:00 EDT becomes 01:00 EST (06:00 UTC): local 01:05 happens twice.
    found = fires(HOURLY, utc("2026-11-01T03:30"), 4)

    assert found == [
        utc("2026-11-01T04:05"),
        utc("2026-11-01T05:05"),
        utc("2026-11-01T06:05"),
        utc("2026-11-01T07:05"),
    ]
    assert [f.astimezone(NEW_YORK).strftime("%H:%M%z") for f in found] == [
        "00:05-0400",
        "01:05-0400",
        "01:05-0500",
        "02:05-0500",
    ]
    # Both passes through wall-clock 01:00 run, as periods that differ by their offset; both
    # recompute wall-clock hour 01:00, which holds the trips of both passes.
    periods = [period_of(HOURLY, f) for f in found]
    assert periods == [
        "2026-10-31T23:00-04:00",
        "2026-11-01T00:00-04:00",
        "2026-11-01T01:00-04:00",
        "2026-11-01T01:00-05:00",
    ]
    assert [hourly_window_end(p) for p in periods] == [
        datetime(2026, 11, 1, 0),
        datetime(2026, 11, 1, 1),
        datetime(2026, 11, 1, 2),
        datetime(2026, 11, 1, 2),
    ]


def test_the_hourly_run_at_ten_past_in_new_york_covers_the_new_york_hour_that_just_ended():
    fire = datetime.fromisoformat("2025-03-10T10:05:00-04:00")

    assert period_of(HOURLY, fire) == "2025-03-10T09:00-04:00"
    assert hourly_window_end(period_of(HOURLY, fire)) == datetime(2025, 3, 10, 10)
    # A UTC cron changes when the job fires, not what an hour of the data is.
    utc_cron = job("aggregate_hourly", "5 * * * *", ZoneInfo("UTC"))
    assert period_of(utc_cron, fire) == "2025-03-10T09:00-04:00"


def test_daily_job_in_the_skipped_spring_hour_runs_right_after_the_jump():
    found = fires(DAILY, utc("2026-03-06T12:00"), 3)

    assert found == [
        utc("2026-03-07T07:00"),  # 02:00 EST
        utc("2026-03-08T07:00"),  # 02:00 does not exist: 03:00 EDT
        utc("2026-03-09T06:00"),  # 02:00 EDT
    ]
    # 2026-03-08 has 23 real hours; its period is still the whole wall-clock day.
    assert [period_of(DAILY, f) for f in found] == ["2026-03-06", "2026-03-07", "2026-03-08"]


def test_daily_job_runs_once_on_the_autumn_day():
    found = fires(DAILY, utc("2026-10-31T00:00"), 3)

    assert found == [
        utc("2026-10-31T06:00"),  # 02:00 EDT
        utc("2026-11-01T07:00"),  # 02:00 EST, once
        utc("2026-11-02T07:00"),
    ]
    # 2026-11-01 has 25 real hours; one run covers that wall-clock day, 01:00 twice included.
    assert [period_of(DAILY, f) for f in found] == ["2026-10-30", "2026-10-31", "2026-11-01"]


def test_daily_job_in_the_repeated_autumn_hour_runs_only_in_the_first_pass():
    at_0130 = job("aggregate_daily", "30 1 * * *")

    found = fires(at_0130, utc("2026-10-31T12:00"), 2)

    assert found == [utc("2026-11-01T05:30"), utc("2026-11-02T06:30")]  # 01:30 EDT, 01:30 EST
    assert latest_fire(at_0130, utc("2026-11-01T06:45")) == utc("2026-11-01T05:30")


def test_latest_fire_includes_the_instant_itself_and_crosses_dst():
    assert latest_fire(DAILY, utc("2026-03-08T07:00")) == utc("2026-03-08T07:00")
    assert latest_fire(DAILY, utc("2026-03-08T06:59:59")) == utc("2026-03-07T07:00")
    assert latest_fire(HOURLY, utc("2026-03-08T07:04")) == utc("2026-03-08T06:05")
    assert latest_fire(HOURLY, utc("2026-11-01T06:30")) == utc("2026-11-01T06:05")


def test_monthly_job_checks_each_service_of_the_watched_months_every_day():
    found = fires(MONTHLY, utc("2026-02-27T12:00"), 3)

    assert found == [
        utc("2026-02-28T08:00"),  # 03:00 EST
        utc("2026-03-01T08:00"),
        utc("2026-03-02T08:00"),
    ]
    assert periods_of(MONTHLY, found[0], ("yellow", "green")) == [
        "2025-11/yellow",
        "2025-11/green",
        "2025-12/yellow",
        "2025-12/green",
        "2026-01/yellow",
        "2026-01/green",
    ]
    assert periods_of(MONTHLY, found[1], ("yellow",)) == [
        "2025-12/yellow",
        "2026-01/yellow",
        "2026-02/yellow",
    ]


def test_periods_at_day_and_month_boundaries_follow_the_data_wall_clock():
    assert period_of(HOURLY, utc("2026-03-09T04:05")) == "2026-03-08T23:00-04:00"
    assert period_of(HOURLY, utc("2026-03-09T05:00")) == "2026-03-09T00:00-04:00"
    # 21:30 in New York is already the next UTC day; "yesterday" is New York's.
    evening = job("aggregate_daily", "30 21 * * *")
    assert period_of(evening, utc("2026-06-10T01:30")) == "2026-06-08"
    # The same instant from a UTC cron: New York's 2026-06-09 has not ended, so it is not due.
    evening_utc = job("aggregate_daily", "30 1 * * *", ZoneInfo("UTC"))
    assert period_of(evening_utc, utc("2026-06-10T01:30")) == "2026-06-08"
    # 23:30 in New York on the last of the month: that month has not ended yet.
    month_end = datetime(2026, 2, 28, 23, 30, tzinfo=NEW_YORK)
    assert periods_of(MONTHLY, month_end, ("yellow",))[-1] == "2026-01/yellow"


@pytest.mark.parametrize(
    ("handled", "now", "policy", "expected"),
    [
        # Already run: nothing is due until the next fire time.
        ("2026-03-08T06:05", "2026-03-08T06:30", "skip", None),
        # On time (within the 300 s grace): both policies run it.
        ("2026-03-08T05:05", "2026-03-08T06:09", "skip", "2026-03-08T06:05"),
        ("2026-03-08T05:05", "2026-03-08T06:09", "run_latest", "2026-03-08T06:05"),
        # Ten hours of downtime: skip drops the missed runs, run_latest runs the latest once.
        ("2026-03-07T20:05", "2026-03-08T06:30", "skip", None),
        ("2026-03-07T20:05", "2026-03-08T06:30", "run_latest", "2026-03-08T06:05"),
        # Nothing handled yet (first start, or a cancelled period).
        (None, "2026-03-08T06:30", "run_latest", "2026-03-08T06:05"),
        (None, "2026-03-08T06:30", "skip", None),
    ],
)
def test_missed_run_policy(handled, now, policy, expected):
    now_utc = utc(now)
    latest = latest_fire(HOURLY, now_utc)

    due = select_due(
        latest,
        utc(handled) if handled else None,
        now_utc,
        policy=policy,
        misfire_grace_sec=300,
    )

    assert due == (utc(expected) if expected else None)


@pytest.mark.parametrize(
    ("schedule", "text", "expected"),
    [
        (HOURLY, "2025-03-10T09", ["2025-03-10T09:00-04:00"]),
        (HOURLY, "2025-03-10T13:00Z", ["2025-03-10T09:00-04:00"]),
        (HOURLY, "2025-03-10T14:00+01:00", ["2025-03-10T09:00-04:00"]),
        (HOURLY, "2026-11-01T01:00-05:00", ["2026-11-01T01:00-05:00"]),
        (HOURLY, "2026-11-01T05:00Z", ["2026-11-01T01:00-04:00"]),
        (DAILY, "2026-03-07", ["2026-03-07"]),
        (MONTHLY, "2026-02", ["2026-02/yellow", "2026-02/green"]),
        (MONTHLY, "2026-02/green", ["2026-02/green"]),
    ],
)
def test_parse_periods_returns_the_canonical_form(schedule, text, expected):
    assert parse_periods(schedule, text, ("yellow", "green")) == expected


@pytest.mark.parametrize(
    ("schedule", "text", "message"),
    [
        (HOURLY, "2026-03-08T06:30", "expected an hour such as 2025-03-10T09:00-04:00"),
        (HOURLY, "2025-03-10T09:00+05:30", "expected an hour such as"),
        (HOURLY, "yesterday", "invalid period 'yesterday' for hourly job j"),
        (HOURLY, "2026-03-08T02:00", "02:00 does not exist in America/New_York that day"),
        (
            HOURLY,
            "2026-11-01T01",
            "01:00 occurs twice in America/New_York that day; give the offset: "
            "2026-11-01T01:00-04:00 or 2026-11-01T01:00-05:00",
        ),
        (DAILY, "2026-02-30", "invalid period '2026-02-30' for daily job j: expected YYYY-MM-DD"),
        (DAILY, "20260307", "expected YYYY-MM-DD"),
        (MONTHLY, "2026-13", "invalid month '2026-13'"),
        (MONTHLY, "2026-02/fhv", "service 'fhv' is not one of the schedule's services"),
    ],
)
def test_parse_periods_rejects_other_forms(schedule, text, message):
    with pytest.raises(ConfigError, match=message):
        parse_periods(schedule, text, ("yellow", "green"))


def test_fake_clock_moves_on_waits_and_stops_at_a_set_event():
    clock = FakeClock(utc("2026-03-08T06:00"))
    stop = threading.Event()

    assert clock.wait(90) is False
    assert clock.wait(30, until=stop) is False
    stop.set()
    assert clock.wait(600, until=stop) is True

    assert clock.now() == utc("2026-03-08T06:00") + timedelta(seconds=120)
    assert clock.waits == [90, 30]
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2026, 1, 1))


SUBMIT = str(Path(__file__).resolve().parents[2] / "spark-submit.sh")
JOBS = [
    {"name": "hourly", "kind": "aggregate_hourly", "cron": "5 * * * *", "lookback_hours": 2},
    {"name": "daily", "kind": "aggregate_daily", "cron": "0 2 * * *", "lookback_hours": 24},
    {"name": "monthly", "kind": "monthly_pipeline", "cron": "0 3 * * *"},
]


def schedule_in(landing: Path, **overrides):
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
    config = schedule_in(tmp_path)
    hourly = config.job("hourly")
    (period,) = periods_of(hourly, datetime.fromisoformat(fire))

    (step,) = plan_job(hourly, period, config).steps

    assert step.argv[:3] == (SUBMIT, "aggregate", "run")
    assert window_of(step.argv) == (start, end)


def test_hourly_job_asks_for_its_window_with_an_end_hour(tmp_path):
    config = schedule_in(tmp_path)

    plan = plan_job(config.job("hourly"), "2025-03-10T09:00-04:00", config)

    assert plan.steps == (
        Step(
            "aggregate",
            (SUBMIT, "aggregate", "run", "--until", "2025-03-10T10", "--lookback-hours", "2",
             "--json"),
        ),
    )  # fmt: skip


def test_daily_job_aggregates_its_day(tmp_path):
    config = schedule_in(tmp_path)

    plan = plan_job(config.job("daily"), "2026-03-07", config)

    assert [step.argv for step in plan.steps] == [
        (SUBMIT, "aggregate", "run", "--date", "2026-03-07", "--lookback-hours", "24", "--json")
    ]
    assert window_of(plan.steps[0].argv) == (datetime(2026, 3, 7), datetime(2026, 3, 8))


def test_monthly_pipeline_runs_the_month_in_one_pipeline_process(tmp_path):
    config = schedule_in(tmp_path)
    green = tmp_path / "green_tripdata_2024-02.parquet"
    green.write_bytes(b"PAR1")
    os.utime(green, ns=(1_700_000_000_000_000_000, 1_700_000_000_123_456_789))

    plan = plan_job(config.job("monthly"), "2024-02/green", config)

    assert [(step.name, step.argv[1:]) for step in plan.steps] == [
        ("pipeline:green", ("pipeline", str(green), "--month", "2024-02", "--json")),
    ]
    assert plan.missing is None
    assert plan.raw_file == {
        "path": str(green),
        "size": 4,
        "mtime_ns": 1_700_000_000_123_456_789,
    }


def test_some_monthly_steps_run_one_process_per_stage(tmp_path):
    config = schedule_in(tmp_path, monthly_steps=["process-trips", "aggregate"])
    (tmp_path / "green_tripdata_2024-02.parquet").touch()

    plan = plan_job(config.job("monthly"), "2024-02/green", config)

    assert [(step.name, step.argv[1:]) for step in plan.steps] == [
        (
            "process-trips:green",
            ("process-trips", "--month", "2024-02", "--service", "green", "--json"),
        ),
        (
            "aggregate",
            # February and the day either side: the file's quarantined pickups count there.
            ("aggregate", "backfill", "--start", "2024-01-31", "--end", "2024-03-01", "--json"),
        ),
    ]


def test_monthly_pipeline_steps_are_configurable(tmp_path):
    config = schedule_in(tmp_path, monthly_steps=["curate"])
    (tmp_path / "yellow_tripdata_2026-02.parquet").touch()

    plan = plan_job(config.job("monthly"), "2026-02/yellow", config)

    assert [step.name for step in plan.steps] == ["curate:yellow"]


def test_monthly_pipeline_has_nothing_to_run_before_the_raw_file_arrives(tmp_path):
    config = schedule_in(tmp_path)
    (tmp_path / "yellow_tripdata_2026-02.parquet").touch()

    plan = plan_job(config.job("monthly"), "2026-02/green", config)

    assert plan.steps == ()
    assert plan.missing == tmp_path / "green_tripdata_2026-02.parquet"
    assert plan.raw_file is None
