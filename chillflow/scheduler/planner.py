"""When jobs are due and which logical period a run covers; pure functions of time.

Cron expressions are evaluated by croniter in the job's time zone, so they follow the wall clock
across daylight-saving changes the way cron does: a daily job whose time falls into the skipped
spring hour runs right after the jump, and one whose time falls into the repeated autumn hour runs
once. Jobs with a wildcard hour (hourly jobs) follow real time instead: they fire every hour,
including both passes through a repeated hour, since each is a different UTC hour of data.

Periods are what a run is keyed by in ``ops.job_run``. They follow the wall clock of the data
(TLC timestamps are New York wall-clock times, and so are the KPI hours), whatever zone the cron
expression is read in: an hourly job covers the last complete wall-clock hour before its fire time,
with its UTC offset (``2026-11-01T01:00-04:00`` and ``2026-11-01T01:00-05:00`` are the two passes
through the repeated autumn hour), a daily job the day before (``2026-03-07``), the monthly
pipeline each (month, service) it watches (``2026-02/green``).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone

from croniter import croniter

from chillflow.errors import ConfigError
from chillflow.scheduler.config import JobSchedule
from chillflow.settings import parse_month

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HOUR = timedelta(hours=1)


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


def periods_of(job: JobSchedule, fire: datetime, services: Sequence[str] = ()) -> list[str]:
    """Return the logical periods that the job's run at ``fire`` covers, oldest first.

    Periods follow the data's wall clock (``job.data_timezone``): an hourly job covers the last
    complete hour (``2025-03-10T09:00-04:00``; the offset keeps the two passes through a repeated
    autumn hour apart), a daily job the day before, a monthly job each service of each of the
    ``watch_months`` months before (``2025-02/green``).

    Args:
        job: The job.
        fire: The fire time, timezone-aware.
        services: The services the monthly pipeline loads.
    """
    local = fire.astimezone(job.data_timezone)
    if job.kind == "aggregate_hourly":
        hour = local.replace(minute=0, second=0, microsecond=0).astimezone(timezone.utc)
        return [(hour - _HOUR).astimezone(job.data_timezone).isoformat(timespec="minutes")]
    if job.kind == "aggregate_daily":
        return [(local.date() - timedelta(days=1)).isoformat()]
    if job.kind == "maintain":
        return [local.date().isoformat()]
    months = []
    first = local.date().replace(day=1)
    for _ in range(job.watch_months or 0):
        first = (first - timedelta(days=1)).replace(day=1)
        months.insert(0, f"{first:%Y-%m}")
    return [f"{month}/{service}" for month in months for service in services]


def parse_periods(job: JobSchedule, text: str, services: Sequence[str] = ()) -> list[str]:
    """Validate a period given by hand and return it in the canonical form of :func:`periods_of`.

    Hourly periods accept any ISO 8601 time on the hour; without an offset it is read in the
    data's time zone. A month given to the monthly pipeline means each of its services.

    Raises:
        ConfigError: If ``text`` is not a period of the job's kind.
    """
    if job.kind == "monthly_pipeline":
        month, _, service = text.partition("/")
        month = parse_month(month)
        if not service:
            return [f"{month}/{name}" for name in services]
        if service not in services:
            raise ConfigError(
                f"invalid period {text!r} for {job.name}: service {service!r} is not one of the "
                f"schedule's services ({', '.join(services)})"
            )
        return [f"{month}/{service}"]
    if job.kind in ("aggregate_daily", "maintain"):
        if _DAY.match(text):
            try:
                return [date.fromisoformat(text).isoformat()]
            except ValueError:
                pass
        raise ConfigError(f"invalid period {text!r} for daily job {job.name}: expected YYYY-MM-DD")
    return [_parse_hour(job, text)]


def hourly_window_end(period: str) -> datetime:
    """Return the wall-clock hour (naive, as the data stores it) right after an hourly period."""
    return datetime.fromisoformat(period).replace(tzinfo=None) + _HOUR


def split_monthly_period(period: str) -> tuple[str, str]:
    """Return the month and the service of a monthly pipeline period such as ``2025-02/green``."""
    month, _, service = period.partition("/")
    return month, service


def month_days(month: str) -> tuple[date, date]:
    """Return the first and last day of a ``YYYY-MM`` month."""
    first = date.fromisoformat(f"{parse_month(month)}-01")
    return first, first.replace(day=calendar.monthrange(first.year, first.month)[1])


def _parse_hour(job: JobSchedule, text: str) -> str:
    zone = job.data_timezone
    expected = (
        f"expected an hour such as 2025-03-10T09:00-04:00 ({zone.key} wall clock unless an "
        "offset is given)"
    )
    try:
        hour = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise ConfigError(
            f"invalid period {text!r} for hourly job {job.name}: {expected}"
        ) from None
    if hour.tzinfo is None:
        first, second = (hour.replace(tzinfo=zone, fold=fold) for fold in (0, 1))
        if first.astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None) != hour:
            raise ConfigError(
                f"period {text!r}: {hour:%H:%M} does not exist in {zone.key} that day"
            )
        if first.utcoffset() != second.utcoffset():
            raise ConfigError(
                f"period {text!r}: {hour:%H:%M} occurs twice in {zone.key} that day; give the "
                f"offset: {first.isoformat(timespec='minutes')} or "
                f"{second.isoformat(timespec='minutes')}"
            )
        hour = first
    local = hour.astimezone(zone)
    if (local.minute, local.second, local.microsecond) != (0, 0, 0):
        raise ConfigError(f"invalid period {text!r} for hourly job {job.name}: {expected}")
    return local.isoformat(timespec="minutes")


def _is_repeated_wall_time(job: JobSchedule, fire: datetime) -> bool:
    """Whether ``fire`` is the second pass through a repeated wall time, for a fixed-hour job."""
    if croniter(job.cron).expanded[1] == ["*"]:
        return False
    local = fire.astimezone(job.timezone)
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()
