"""When jobs fire, which period a run covers and which commands it runs: pure functions of time.

Cron follows the wall clock across daylight-saving changes as cron does. Periods key runs in
``ops.job_run`` and follow the data's wall clock: an hourly run covers the last complete hour
with its offset (``2026-11-01T01:00-04:00``), a daily run the day before (``2026-03-07``), the
monthly pipeline each watched (month, service) (``2026-02/green``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from croniter import croniter

from chillflow.errors import ConfigError
from chillflow.hour_window import month_refresh_window
from chillflow.scheduler.config import PIPELINE_STEPS, JobSchedule, ScheduleConfig
from chillflow.settings import parse_month, tlc_file_name

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Step:
    """One command of a job; its name (``curate:yellow``) lets a retry skip what succeeded."""

    name: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class JobPlan:
    """The steps of one run; the monthly pipeline's raw file (path, size, mtime_ns) or missing."""

    steps: tuple[Step, ...]
    missing: Path | None = None
    raw_file: dict[str, Any] | None = None


def next_fire(job: JobSchedule, after: datetime) -> datetime:
    """Return the job's first fire time strictly after ``after``, in UTC."""
    fires = croniter(job.cron, after.astimezone(job.timezone))
    return _first_fire(job, lambda: fires.get_next(datetime))


def latest_fire(job: JobSchedule, at: datetime) -> datetime:
    """Return the job's last fire time at or before ``at``, in UTC."""
    # croniter's get_prev is strictly before its start; one microsecond later includes ``at``.
    fires = croniter(job.cron, (at + timedelta(microseconds=1)).astimezone(job.timezone))
    return _first_fire(job, lambda: fires.get_prev(datetime))


def _first_fire(job: JobSchedule, step: Any) -> datetime:
    """The first fire time ``step`` yields that is not a fixed-hour job's second pass."""
    wildcard_hour = croniter(job.cron).expanded[1] == ["*"]
    while True:
        local = step().astimezone(job.timezone)
        repeated = local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()
        if wildcard_hour or not repeated:
            return local.astimezone(timezone.utc)


def select_due(
    latest: datetime, handled: datetime | None, now: datetime, *, policy: str,
    misfire_grace_sec: float,
) -> datetime | None:  # fmt: skip
    """Return ``latest`` if it should run now (``skip``: only within the grace), else None."""
    if handled is not None and latest <= handled:
        return None
    if policy == "run_latest" or (now - latest).total_seconds() <= misfire_grace_sec:
        return latest
    return None


def periods_of(job: JobSchedule, fire: datetime, services: Sequence[str] = ()) -> list[str]:
    """Return the periods the job's run at ``fire`` covers, oldest first."""
    local = fire.astimezone(job.data_time_zone)
    if job.kind == "aggregate_hourly":
        hour = local.replace(minute=0, second=0, microsecond=0).astimezone(timezone.utc)
        return [(hour - _HOUR).astimezone(job.data_time_zone).isoformat(timespec="minutes")]
    if job.kind == "aggregate_daily":
        return [(local.date() - timedelta(days=1)).isoformat()]
    if job.kind == "maintain":
        return [local.date().isoformat()]
    months, first = [], local.date().replace(day=1)
    for _ in range(job.watch_months or 0):
        first = (first - timedelta(days=1)).replace(day=1)
        months.insert(0, f"{first:%Y-%m}")
    return [f"{month}/{service}" for month in months for service in services]


def parse_periods(job: JobSchedule, text: str, services: Sequence[str] = ()) -> list[str]:
    """Return a period given by hand in the form of :func:`periods_of`, or raise ConfigError.

    An hour without an offset is read in the data's time zone; a month alone means each service.
    """
    if job.kind == "monthly_pipeline":
        month, _, service = text.partition("/")
        month = parse_month(month)
        if service and service not in services:
            raise ConfigError(
                f"invalid period {text!r} for {job.name}: service {service!r} is not one of the "
                f"schedule's services ({', '.join(services)})"
            )
        return [f"{month}/{name}" for name in ([service] if service else services)]
    if job.kind in ("aggregate_daily", "maintain"):
        try:
            if _DAY.match(text):
                return [date.fromisoformat(text).isoformat()]
        except ValueError:
            pass
        raise ConfigError(f"invalid period {text!r} for daily job {job.name}: expected YYYY-MM-DD")
    return [_parse_hour(job, text)]


def _parse_hour(job: JobSchedule, text: str) -> str:
    zone = job.data_time_zone
    invalid = (
        f"invalid period {text!r} for hourly job {job.name}: expected an hour such as "
        f"2025-03-10T09:00-04:00 ({zone.key} wall clock unless an offset is given)"
    )
    try:
        hour = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise ConfigError(invalid) from None
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
        raise ConfigError(invalid)
    return local.isoformat(timespec="minutes")


def hourly_window_end(period: str) -> datetime:
    """Return the wall-clock hour (naive, as the data stores it) right after an hourly period."""
    return datetime.fromisoformat(period).replace(tzinfo=None) + _HOUR


def raw_path(schedule: ScheduleConfig, period: str) -> Path:
    """Where the raw file of a monthly period (``2025-02/green``) arrives."""
    month, _, service = period.partition("/")
    return schedule.landing_dir / tlc_file_name(service, month)


def plan_job(job: JobSchedule, period: str, schedule: ScheduleConfig) -> JobPlan:
    """Return the ``spark-submit.sh`` commands that run ``job`` for ``period``.

    The monthly pipeline, once its raw file has arrived, runs ``pipeline month``, or one process
    per stage when ``monthly_steps`` names only some.
    """
    submit = str(schedule.spark_submit)
    lookback = ("--lookback-hours", str(job.lookback_hours), "--json")
    if job.kind == "maintain":
        return JobPlan((Step("maintain", (submit, "maintain", "--json")),))
    if job.kind == "aggregate_daily":
        return JobPlan(
            (Step("aggregate", (submit, "aggregate", "run", "--date", period, *lookback)),)
        )
    if job.kind == "aggregate_hourly":
        end = ("--until", f"{hourly_window_end(period):%Y-%m-%dT%H}")
        return JobPlan((Step("aggregate", (submit, "aggregate", "run", *end, *lookback)),))
    month, _, service = period.partition("/")
    raw = raw_path(schedule, period)
    try:
        found = raw.stat()
    except FileNotFoundError:
        return JobPlan((), missing=raw)
    raw_file = {"path": str(raw), "size": found.st_size, "mtime_ns": found.st_mtime_ns}
    if schedule.monthly_steps == PIPELINE_STEPS:
        argv = (submit, "pipeline", str(raw), "--month", month, "--json")
        return JobPlan((Step(f"pipeline:{service}", argv),), raw_file=raw_file)
    window = month_refresh_window(month)
    first, last = window.first_date, window.last_date
    commands = {
        "curate": (f"curate:{service}", ("curate", str(raw), "--month", month)),
        "process-trips": (f"process-trips:{service}",
                          ("process-trips", "--month", month, "--service", service)),
        "aggregate": ("aggregate", ("aggregate", "backfill", "--start", str(first),
                                    "--end", str(last))),
    }  # fmt: skip
    steps = tuple(
        Step(commands[name][0], (submit, *commands[name][1], "--json"))
        for name in schedule.monthly_steps
    )
    return JobPlan(steps, raw_file=raw_file)


def plan_at(schedule: ScheduleConfig, at: datetime, *, now: datetime) -> dict[str, Any]:
    """Say what the jobs firing in the minute of ``at`` would run (periods, commands, raw files)."""
    planned = []
    for job in schedule.jobs:
        fire = latest_fire(job, at)
        if fire < at.replace(second=0, microsecond=0):
            continue
        runs = []
        for period in periods_of(job, fire, schedule.services):
            plan = plan_job(job, period, schedule)
            run: dict[str, Any] = {"period": period}
            if job.kind == "monthly_pipeline":
                run["raw_file"] = str(raw_path(schedule, period))
                run["arrived"] = plan.raw_file is not None
            runs.append({**run, "commands": [list(step.argv) for step in plan.steps]})
        fire_time = fire.astimezone(job.timezone).isoformat()
        planned.append({"job": job.name, "kind": job.kind, "fire_time": fire_time, "runs": runs})
    note = (
        f"raw files as the landing directory holds them now ({now:%Y-%m-%dT%H:%MZ}); a "
        "period whose file arrived runs only if ops.job_run has no successful load of that "
        "same file (size and mtime)"
    )
    if not any(job["kind"] == "monthly_pipeline" for job in planned):
        note = None
    return {"at": at.isoformat(), "jobs": planned, "note": note}
