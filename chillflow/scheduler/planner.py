"""When jobs are due and which logical period a run covers; pure functions of time.

Cron expressions are evaluated by croniter in the job's time zone, so they follow the wall clock
across daylight-saving changes the way cron does: a daily job whose time falls into the skipped
spring hour runs right after the jump, and one whose time falls into the repeated autumn hour runs
once. Jobs with a wildcard hour (hourly jobs) follow real time instead: they fire every hour,
including both passes through a repeated hour, since each is a different UTC hour of data.

Periods are what a run is keyed by in ``ops.job_run``: an hourly job covers the last complete UTC
hour before its fire time (``2026-03-08T06:00Z``; UTC keeps the two repeated autumn hours apart),
a daily job the day before its fire time in the job's time zone (``2026-03-07``), a monthly job the
month before (``2026-02``).
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timedelta, timezone

from croniter import croniter

from chillflow.errors import ConfigError
from chillflow.scheduler.config import JobSchedule
from chillflow.settings import parse_month

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HOURLY_FORMAT = "%Y-%m-%dT%H:00Z"


def next_fire(job: JobSchedule, after: datetime) -> datetime:
    """Return the job's first fire time strictly after ``after``, in UTC.

    Args:
        job: The job.
        after: A timezone-aware instant.
    """
    fires = croniter(job.cron, after.astimezone(job.timezone))
    while True:
        fire = fires.get_next(datetime)
        if not _is_repeated_wall_time(job, fire):
            return fire.astimezone(timezone.utc)


def latest_fire(job: JobSchedule, at: datetime) -> datetime:
    """Return the job's last fire time at or before ``at``, in UTC.

    Args:
        job: The job.
        at: A timezone-aware instant.
    """
    # croniter's get_prev is strictly before its start; one microsecond later includes ``at``.
    fires = croniter(job.cron, (at + timedelta(microseconds=1)).astimezone(job.timezone))
    while True:
        fire = fires.get_prev(datetime)
        if not _is_repeated_wall_time(job, fire):
            return fire.astimezone(timezone.utc)


def select_due(
    latest: datetime,
    handled: datetime | None,
    now: datetime,
    *,
    policy: str,
    misfire_grace_sec: float,
) -> datetime | None:
    """Decide whether a job's latest fire time should run now.

    Runs are coalesced: however many fire times passed since the last one handled, at most the
    latest runs.

    Args:
        latest: The job's latest fire time at or before ``now``.
        handled: The latest fire time already run or skipped; None when there is none.
        now: The current time.
        policy: ``skip`` runs ``latest`` only if it is at most ``misfire_grace_sec`` old;
            ``run_latest`` runs it however late.
        misfire_grace_sec: How late a run may start and still count as on time.

    Returns:
        ``latest`` when it should run, else None.
    """
    if handled is not None and latest <= handled:
        return None
    if policy == "run_latest" or (now - latest).total_seconds() <= misfire_grace_sec:
        return latest
    return None


def period_of(job: JobSchedule, fire: datetime) -> str:
    """Return the logical period that the job's run at ``fire`` covers.

    Args:
        job: The job.
        fire: The fire time, timezone-aware.

    Returns:
        ``YYYY-MM-DDTHH:00Z`` (hourly), ``YYYY-MM-DD`` (daily) or ``YYYY-MM`` (monthly).
    """
    if job.kind == "aggregate_hourly":
        hour = fire.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
        return (hour - timedelta(hours=1)).strftime(_HOURLY_FORMAT)
    local_day = fire.astimezone(job.timezone).date()
    if job.kind == "aggregate_daily":
        return (local_day - timedelta(days=1)).isoformat()
    return (local_day.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")


def parse_period(job: JobSchedule, text: str) -> str:
    """Validate a period given by hand and return it in the canonical form of :func:`period_of`.

    Hourly periods accept any ISO 8601 time on the hour; without an offset it is read as UTC.

    Raises:
        ConfigError: If ``text`` is not a period of the job's kind.
    """
    if job.kind == "monthly_pipeline":
        return parse_month(text)
    if job.kind == "aggregate_daily":
        if _DAY.match(text):
            try:
                return date.fromisoformat(text).isoformat()
            except ValueError:
                pass
        raise ConfigError(f"invalid period {text!r} for daily job {job.name}: expected YYYY-MM-DD")
    try:
        hour = datetime.fromisoformat(text)
    except ValueError:
        hour = None
    if hour is None or (hour.minute, hour.second, hour.microsecond) != (0, 0, 0):
        raise ConfigError(
            f"invalid period {text!r} for hourly job {job.name}: expected an hour such as "
            "2026-03-08T06:00Z (UTC unless an offset is given)"
        )
    if hour.tzinfo is None:
        hour = hour.replace(tzinfo=timezone.utc)
    return hour.astimezone(timezone.utc).strftime(_HOURLY_FORMAT)


def hour_start(period: str) -> datetime:
    """Return the start of an hourly period as an aware UTC datetime."""
    return datetime.strptime(period, _HOURLY_FORMAT).replace(tzinfo=timezone.utc)


def month_days(month: str) -> tuple[date, date]:
    """Return the first and last day of a ``YYYY-MM`` month."""
    first = date.fromisoformat(f"{parse_month(month)}-01")
    return first, first.replace(day=calendar.monthrange(first.year, first.month)[1])


def _is_repeated_wall_time(job: JobSchedule, fire: datetime) -> bool:
    """Whether ``fire`` is the second pass through a repeated wall time, for a fixed-hour job."""
    if croniter(job.cron).expanded[1] == ["*"]:
        return False
    local = fire.astimezone(job.timezone)
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()
