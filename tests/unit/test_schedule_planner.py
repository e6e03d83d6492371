"""Fire times across daylight-saving changes, periods and the missed-run policy (pure)."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from chillflow.errors import ConfigError
from chillflow.scheduler.config import JobSchedule
from chillflow.scheduler.planner import (
    latest_fire,
    month_days,
    next_fire,
    parse_period,
    period_of,
    select_due,
)
from tests.fake_clock import FakeClock

pytestmark = pytest.mark.unit

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
        lookback_hours=lookback,
        retries=0,
        retry_backoff_sec=0,
    )


def fires(schedule: JobSchedule, after: datetime, count: int) -> list[datetime]:
    found = []
    for _ in range(count):
        after = next_fire(schedule, after)
        found.append(after)
    return found


HOURLY = job("aggregate_hourly", "5 * * * *")
DAILY = job("aggregate_daily", "0 2 * * *")
MONTHLY = job("monthly_pipeline", "0 3 1 * *")


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
    assert [period_of(HOURLY, f) for f in found] == [
        "2026-03-08T03:00Z",
        "2026-03-08T04:00Z",
        "2026-03-08T05:00Z",
        "2026-03-08T06:00Z",
        "2026-03-08T07:00Z",
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
    periods = [period_of(HOURLY, f) for f in found]
    assert periods == [
        "2026-11-01T03:00Z",
        "2026-11-01T04:00Z",
        "2026-11-01T05:00Z",
        "2026-11-01T06:00Z",
    ]


def test_daily_job_in_the_skipped_spring_hour_runs_right_after_the_jump():
    found = fires(DAILY, utc("2026-03-06T12:00"), 3)

    assert found == [
        utc("2026-03-07T07:00"),  # 02:00 EST
        utc("2026-03-08T07:00"),  # 02:00 does not exist: 03:00 EDT
        utc("2026-03-09T06:00"),  # 02:00 EDT
    ]
    assert [period_of(DAILY, f) for f in found] == ["2026-03-06", "2026-03-07", "2026-03-08"]


def test_daily_job_runs_once_on_the_autumn_day():
    found = fires(DAILY, utc("2026-10-31T00:00"), 3)

    assert found == [
        utc("2026-10-31T06:00"),  # 02:00 EDT
        utc("2026-11-01T07:00"),  # 02:00 EST, once
        utc("2026-11-02T07:00"),
    ]


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


def test_monthly_job_covers_the_previous_month_in_its_time_zone():
    found = fires(MONTHLY, utc("2025-12-15T00:00"), 4)

    assert found == [
        utc("2026-01-01T08:00"),  # 03:00 EST
        utc("2026-02-01T08:00"),
        utc("2026-03-01T08:00"),
        utc("2026-04-01T07:00"),  # 03:00 EDT
    ]
    assert [period_of(MONTHLY, f) for f in found] == ["2025-12", "2026-01", "2026-02", "2026-03"]


def test_periods_at_day_boundaries():
    assert period_of(HOURLY, utc("2026-03-09T00:05")) == "2026-03-08T23:00Z"
    assert period_of(HOURLY, utc("2026-03-09T01:00")) == "2026-03-09T00:00Z"
    # 21:30 in New York is already the next UTC day; "yesterday" is New York's.
    evening = job("aggregate_daily", "30 21 * * *")
    assert period_of(evening, utc("2026-06-10T01:30")) == "2026-06-08"
    evening_utc = job("aggregate_daily", "30 21 * * *", ZoneInfo("UTC"))
    assert period_of(evening_utc, utc("2026-06-10T01:30")) == "2026-06-09"
    assert period_of(MONTHLY, datetime(2026, 3, 1, 0, 30, tzinfo=NEW_YORK)) == "2026-02"


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
        (HOURLY, "2026-03-08T06", "2026-03-08T06:00Z"),
        (HOURLY, "2026-03-08T06:00Z", "2026-03-08T06:00Z"),
        (HOURLY, "2026-03-08T01:00-05:00", "2026-03-08T06:00Z"),
        (DAILY, "2026-03-07", "2026-03-07"),
        (MONTHLY, "2026-02", "2026-02"),
    ],
)
def test_parse_period_returns_the_canonical_form(schedule, text, expected):
    assert parse_period(schedule, text) == expected


@pytest.mark.parametrize(
    ("schedule", "text", "message"),
    [
        (HOURLY, "2026-03-08T06:30", "expected an hour such as 2026-03-08T06:00Z"),
        (HOURLY, "yesterday", "invalid period 'yesterday' for hourly job j"),
        (DAILY, "2026-02-30", "invalid period '2026-02-30' for daily job j: expected YYYY-MM-DD"),
        (DAILY, "20260307", "expected YYYY-MM-DD"),
        (MONTHLY, "2026-13", "invalid month '2026-13'"),
    ],
)
def test_parse_period_rejects_other_forms(schedule, text, message):
    with pytest.raises(ConfigError, match=message):
        parse_period(schedule, text)


def test_month_days():
    assert month_days("2024-02") == (date(2024, 2, 1), date(2024, 2, 29))
    assert month_days("2026-12") == (date(2026, 12, 1), date(2026, 12, 31))


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
