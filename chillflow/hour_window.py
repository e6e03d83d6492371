"""Hour-aligned UTC windows; SQL bounds are rendered from validated datetimes, never user text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

from chillflow.errors import ConfigError
from chillflow.sections import YEARS, check_number

_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)
_COLUMN_REF = re.compile(r"^([a-z_][a-z0-9_]*\.)?[a-z_][a-z0-9_]*$")
_SQL_TIMESTAMP = "%Y-%m-%d %H:%M:%S"


def to_utc_naive(value: datetime) -> datetime:
    """Return ``value`` as a naive UTC datetime; naive input is taken to be UTC already."""
    return value if value.tzinfo is None else value.astimezone(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True, order=True)
class HourWindow:
    """The half-open interval ``[start, end)`` of naive UTC datetimes, both on a full hour."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name, value in (("start", self.start), ("end", self.end)):
            if not isinstance(value, datetime):
                raise ConfigError(f"window {name} must be a datetime, not {type(value).__name__}")
            if value.tzinfo is not None:
                raise ConfigError(f"window {name} {value} must be naive UTC")
            if value != value.replace(minute=0, second=0, microsecond=0):
                raise ConfigError(f"window {name} {value} is not on a full hour")
        if self.start >= self.end:
            raise ConfigError(f"empty window: start {self.start} is not before end {self.end}")

    @property
    def hours(self) -> int:
        """Number of hours."""
        return int((self.end - self.start) / _HOUR)

    @property
    def first_date(self) -> date:
        """Date of the first hour."""
        return self.start.date()

    @property
    def last_date(self) -> date:
        """Date of the last hour."""
        return (self.end - _HOUR).date()

    def months(self) -> list[str]:
        """The ``YYYY-MM`` months the window overlaps, in order."""
        return month_range(f"{self.first_date:%Y-%m}", f"{self.last_date:%Y-%m}")

    def label(self) -> str:
        """A stable, compact text form, e.g. ``2025-01-01T00/2025-01-02T00``."""
        return f"{self.start:%Y-%m-%dT%H}/{self.end:%Y-%m-%dT%H}"

    def sql_range(self, column: str) -> str:
        """Render ``column >= TIMESTAMP '<start>' AND column < TIMESTAMP '<end>'``."""
        _check_column(column)
        return (
            f"{column} >= TIMESTAMP '{self.start.strftime(_SQL_TIMESTAMP)}' "
            f"AND {column} < TIMESTAMP '{self.end.strftime(_SQL_TIMESTAMP)}'"
        )

    def sql_date_range(self, column: str) -> str:
        """Render ``column BETWEEN DATE '<first date>' AND DATE '<last date>'``."""
        _check_column(column)
        return f"{column} BETWEEN DATE '{self.first_date}' AND DATE '{self.last_date}'"


def utc_date(value: date) -> date:
    """A date itself, or a datetime's UTC date (naive datetimes are taken to be UTC already)."""
    return to_utc_naive(value).date() if isinstance(value, datetime) else value


def day_end(day: date) -> datetime:
    """The midnight that ends the UTC day ``day`` (see :func:`utc_date`)."""
    return datetime.combine(utc_date(day), time()) + _DAY


def hours_until(end: datetime, lookback_hours: int) -> HourWindow:
    """The ``lookback_hours`` hours before the hour ``end``: ``[end - lookback, end)``."""
    hours = check_number("lookback_hours", lookback_hours, integer=True, positive=True)
    try:
        return HourWindow(end - timedelta(hours=hours), end)
    except OverflowError:
        raise ConfigError(f"lookback_hours={hours} before {end:%Y-%m-%dT%H}: too many") from None


def month_refresh_window(month: str) -> HourWindow:
    """The hours whose KPIs the load of a ``YYYY-MM`` month changes: it and the day either side.

    A month's file holds trips that started in the last minutes before it (or just after):
    curate quarantines them, and they count in the outlier_rate of their own hour.
    """
    first = datetime.strptime(month, "%Y-%m")
    return HourWindow(first - _DAY, (first + timedelta(days=32)).replace(day=1) + _DAY)


def month_chunks(start: date, end: date) -> list[HourWindow]:
    """Split the inclusive date range ``start..end`` into windows of at most one calendar month."""
    if end < start:
        raise ConfigError(f"backfill end {end} is before its start {start}")
    months = month_range(f"{start:%Y-%m}", f"{end:%Y-%m}")[1:]
    firsts = [datetime.strptime(month, "%Y-%m") for month in months]
    bounds = [datetime.combine(start, time()), *firsts, datetime.combine(end, time()) + _DAY]
    return [HourWindow(a, b) for a, b in pairwise(bounds)]


def month_range(first: str, last: str) -> list[str]:
    """The ``YYYY-MM`` months from ``first`` to ``last``, both included."""
    low, high = (int(m[:4]) * 12 + int(m[5:7]) - 1 for m in (first, last))
    return [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(low, high + 1)]


def yesterday(time_zone: str, now: datetime | None = None) -> date:
    """The day before today (or before the aware ``now``) on the wall clock of ``time_zone``."""
    return (now or datetime.now(timezone.utc)).astimezone(ZoneInfo(time_zone)).date() - _DAY


def parse_date(value: str, what: str = "date") -> date:
    """Parse a ``YYYY-MM-DD`` command-line date; ConfigError if it is not a valid one."""
    return _parse(value, what, r"\d{4}-\d{2}-\d{2}", "YYYY-MM-DD, e.g. 2025-01-31").date()


def parse_hour(value: str, what: str = "hour") -> datetime:
    """Parse a ``YYYY-MM-DDTHH`` command-line hour (``:00`` may follow) as a naive datetime."""
    expected = "YYYY-MM-DDTHH, e.g. 2025-03-10T10"
    return _parse(value, what, r"\d{4}-\d{2}-\d{2}T\d{2}(:00)?", expected)


def _parse(value: str, what: str, pattern: str, expected: str) -> datetime:
    """Years of :data:`YEARS` only, as months: a day or hour later must still be a date."""
    try:
        if not re.fullmatch(pattern, value, re.ASCII) or int(value[:4]) not in YEARS:
            raise ValueError(value)
        return datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"invalid {what} {value!r}: expected {expected}, years {YEARS[0]}-{YEARS[-1]}"
        ) from None


def _check_column(column: str) -> None:
    if not _COLUMN_REF.match(column):
        raise ValueError(f"unsafe column reference {column!r}")
