"""Schedules of the batch jobs: ``conf/schedules.toml``, validated once into frozen dataclasses."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from chillflow.errors import ConfigError
from chillflow.schemas import SERVICES
from chillflow.sections import check_keys, check_number, check_time_zone
from chillflow.settings import CurateSettings, default_conf_dir, read_toml

JOB_KINDS = ("aggregate_hourly", "aggregate_daily", "monthly_pipeline", "maintain")
MISSED_RUN_POLICIES = ("skip", "run_latest")
#: The monthly pipeline's steps, in the only order that makes sense: each reads the one before.
PIPELINE_STEPS = ("curate", "process-trips", "aggregate")
#: Jobs the stages record in ``ops.job_run`` themselves: a schedule must not mix its runs in.
RESERVED_JOB_NAMES = {"curate", "process_trips", "aggregate", "aggregate_backfill", "maintain"}
_DEFAULT_LOOKBACK_HOURS = {"aggregate_hourly": 2, "aggregate_daily": 24}
_JOB_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class JobSchedule:
    """One scheduled job; ``cron`` is read in ``timezone``, periods in ``data_time_zone``."""

    name: str
    kind: str
    cron: str
    timezone: ZoneInfo
    data_time_zone: ZoneInfo
    lookback_hours: int | None
    watch_months: int | None
    retries: int
    retry_backoff_sec: float
    timeout_sec: float | None = None


@dataclass(frozen=True)
class ScheduleConfig:
    """The jobs and the scheduler's policies (see ``conf/schedules.toml``)."""

    jobs: tuple[JobSchedule, ...]
    missed_run_policy: str
    misfire_grace_sec: float
    shutdown_grace_sec: float
    landing_dir: Path
    services: tuple[str, ...]
    monthly_steps: tuple[str, ...]
    spark_submit: Path

    def job(self, name: str) -> JobSchedule:
        """Return the job called ``name``, or raise ConfigError."""
        for job in self.jobs:
            if job.name == name:
                return job
        known = ", ".join(job.name for job in self.jobs) or "none"
        raise ConfigError(f"unknown job {name!r}: expected one of {known}")


# A misspelt key (``retry`` for ``retries``) would otherwise fall back to a default silently.
_TOP_KEYS = {f.name for f in dataclasses.fields(ScheduleConfig)} | {"timezone"}
_JOB_KEYS = {f.name for f in dataclasses.fields(JobSchedule)} - {"data_time_zone"}


def load_schedule(
    conf_dir: Path | None = None,
    *,
    data_dir: Path,
    data_time_zone: str = CurateSettings.data_time_zone,
    env: Mapping[str, str] | None = None,
) -> ScheduleConfig:
    """Read and validate ``schedules.toml``; periods follow ``[curate] data_time_zone``.

    ``CHILLFLOW_LANDING_DIR`` overrides ``landing_dir``.
    """
    env = os.environ if env is None else env
    path = (conf_dir or default_conf_dir()) / "schedules.toml"
    doc = read_toml(path)
    landing = env.get("CHILLFLOW_LANDING_DIR") or doc.get("landing_dir")
    landing_dir = _path(landing, "landing_dir") if landing else data_dir / "landing"
    return parse_schedule(
        doc, source=str(path), landing_dir=landing_dir, data_time_zone=data_time_zone
    )


def parse_schedule(
    doc: Mapping[str, Any],
    *,
    source: str,
    landing_dir: Path,
    data_time_zone: str = CurateSettings.data_time_zone,
) -> ScheduleConfig:
    """Validate a parsed schedule document; a ConfigError names the file and the key."""
    if "data_timezone" in doc:
        raise ConfigError(
            f"{source}: data_timezone is not a schedule setting: the data's wall clock is "
            "data_time_zone in the [curate] table of chillflow.toml"
        )
    check_keys(source, doc, _TOP_KEYS)
    default_tz = check_time_zone(doc.get("timezone", "UTC"), f"{source}: timezone")
    policy = doc.get("missed_run_policy", "run_latest")
    if policy not in MISSED_RUN_POLICIES:
        raise ConfigError(
            f"{source}: missed_run_policy {policy!r} not in {', '.join(MISSED_RUN_POLICIES)}"
        )
    services = doc.get("services", ["yellow"])
    known = isinstance(services, list) and all(service in SERVICES for service in services)
    if not services or not known or len(set(services)) != len(services):
        raise ConfigError(
            f"{source}: services {services!r} must be a non-empty list of distinct names "
            f"from {', '.join(SERVICES)}"
        )
    steps = doc.get("monthly_steps", list(PIPELINE_STEPS))
    in_order = [step for step in PIPELINE_STEPS if isinstance(steps, list) and step in steps]
    if not steps or steps != in_order:
        raise ConfigError(
            f"{source}: monthly_steps {steps!r} must list steps of "
            f"{', '.join(PIPELINE_STEPS)} once each, in that order"
        )
    spark_submit = _path(doc.get("spark_submit", _PACKAGE_ROOT / "spark-submit.sh"), "spark_submit")
    if not spark_submit.is_file() or not os.access(spark_submit, os.X_OK):
        raise ConfigError(f"{source}: spark_submit {spark_submit} is not an executable file")
    raw_jobs = doc.get("jobs", [])
    if not isinstance(raw_jobs, list) or not raw_jobs:
        raise ConfigError(f"{source}: no [[jobs]] defined")
    data_tz = ZoneInfo(data_time_zone)
    jobs = tuple(
        _job(raw, f"{source} job #{index}", default_tz, data_tz)
        for index, raw in enumerate(raw_jobs, start=1)
    )
    names = [job.name for job in jobs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"{source}: duplicate job names {', '.join(duplicates)}")
    return ScheduleConfig(
        jobs=jobs,
        missed_run_policy=policy,
        misfire_grace_sec=_number(doc, "misfire_grace_sec", 300, source),
        shutdown_grace_sec=_number(doc, "shutdown_grace_sec", 600, source),
        landing_dir=landing_dir,
        services=tuple(services),
        monthly_steps=tuple(steps),
        spark_submit=spark_submit,
    )


def _job(raw: Any, where: str, default_tz: str, data_tz: ZoneInfo) -> JobSchedule:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table")
    check_keys(where, raw, _JOB_KEYS)
    name = raw.get("name", "")
    if not isinstance(name, str) or not _JOB_NAME.match(name):
        raise ConfigError(f"{where}: name {name!r} must match {_JOB_NAME.pattern}")
    if name in RESERVED_JOB_NAMES:
        raise ConfigError(
            f"{where}: name {name!r} is taken by a stage's own run records in ops.job_run; "
            f"choose another, e.g. scheduled_{name}"
        )
    where = f"{where} ({name})"
    kind = raw.get("kind")
    if kind not in JOB_KINDS:
        raise ConfigError(f"{where}: kind {kind!r} not in {', '.join(JOB_KINDS)}")
    cron = raw.get("cron")
    # Six- and seven-field forms (seconds, years) are croniter extensions, not cron.
    if not isinstance(cron, str) or len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise ConfigError(
            f"{where}: cron {cron!r} is not a valid five-field cron expression "
            "(minute hour day-of-month month day-of-week)"
        )
    try:
        croniter(cron, datetime(2000, 1, 1, tzinfo=timezone.utc)).get_next(datetime)
    except CroniterBadDateError:
        raise ConfigError(f"{where}: cron {cron!r} never fires") from None
    monthly = kind == "monthly_pipeline"
    if "lookback_hours" in raw and kind not in _DEFAULT_LOOKBACK_HOURS:
        raise ConfigError(f"{where}: lookback_hours applies to aggregate jobs only")
    if "watch_months" in raw and not monthly:
        raise ConfigError(f"{where}: watch_months applies to the monthly pipeline only")
    count = {"integer": True, "positive": True}
    lookback = _number(raw, "lookback_hours", _DEFAULT_LOOKBACK_HOURS.get(kind), where, **count)
    watch = _number(raw, "watch_months", 3 if monthly else None, where, **count)
    return JobSchedule(
        name=name,
        kind=kind,
        cron=" ".join(cron.split()),
        timezone=ZoneInfo(check_time_zone(raw.get("timezone", default_tz), f"{where}: timezone")),
        data_time_zone=data_tz,
        lookback_hours=lookback,
        watch_months=watch,
        retries=_number(raw, "retries", 0, where, integer=True),
        retry_backoff_sec=_number(raw, "retry_backoff_sec", 60, where),
        timeout_sec=_number(raw, "timeout_sec", None, where, positive=True),
    )


def _number(table: Mapping[str, Any], key: str, default: Any, where: str, **kind: bool) -> Any:
    """The value of ``key``, ``default`` when absent (None stays None), checked as ``kind``."""
    value = table.get(key, default)
    return None if value is None else check_number(f"{where}: {key}", value, **kind)


def _path(value: Any, key: str) -> Path:
    if not isinstance(value, (str, Path)) or not str(value):
        raise ConfigError(f"{key} must be a path, got {value!r}")
    return Path(value).expanduser().resolve()
