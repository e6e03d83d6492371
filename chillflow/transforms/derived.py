"""Derived trip measures: metric distance, duration and average speed."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import NamedTuple
from zoneinfo import ZoneInfo

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from chillflow.sections import YEARS

KM_PER_MILE = 1.60934
_MICROS_PER_MINUTE = 60_000_000.0  # a double: a decimal literal made curate ~1.6x slower
_MICROS = 1_000_000


class ClockChange(NamedTuple):
    """Wall-clock microseconds ``[start_us, end_us)`` skipped or repeated (``repeat_us`` long)."""

    start_us: int
    end_us: int
    repeat_us: int


def with_derived_fields(trips: DataFrame, time_zone: str, months: Iterable[str]) -> DataFrame:
    """Add ``distance_km``, ``duration_min`` and ``avg_speed_kmh``.

    ``duration_min`` is the real elapsed time between the wall-clock times of ``time_zone``;
    only trips touching a clock change of ``months`` are converted (a dropoff in a repeated hour
    that would end the trip before it starts takes the later offset). ``avg_speed_kmh`` is null
    where the duration is not positive.
    """
    elapsed_us = _elapsed_micros(time_zone, clock_changes(time_zone, months))
    duration_min = elapsed_us / F.lit(_MICROS_PER_MINUTE)
    distance_km = F.col("trip_distance") * F.lit(KM_PER_MILE)
    speed = F.when(duration_min > 0, distance_km / (duration_min / 60.0))
    derived = {"distance_km": distance_km, "duration_min": duration_min, "avg_speed_kmh": speed}
    return trips.withColumns(derived)


def clock_changes(time_zone: str, months: Iterable[str]) -> list[ClockChange]:
    """The offset changes of ``time_zone`` from a day before to a day after each month."""
    zone = ZoneInfo(time_zone)
    changes: set[ClockChange] = set()
    for month in set(months):
        first = datetime.strptime(month, "%Y-%m").replace(tzinfo=timezone.utc)
        if first.year not in YEARS:  # 9999-12 would overflow datetime
            continue
        instant = first - timedelta(days=1)
        end = (first + timedelta(days=32)).replace(day=1) + timedelta(days=1)
        while instant < end:
            step = instant + timedelta(hours=1)
            if instant.astimezone(zone).utcoffset() != step.astimezone(zone).utcoffset():
                changes.add(_clock_change(zone, instant, step))
            instant = step
    return sorted(changes)


def _clock_change(zone: ZoneInfo, before: datetime, after: datetime) -> ClockChange:
    """Find the second the offset changes between two instants an hour apart."""
    old = before.astimezone(zone).utcoffset()
    low, high = int(before.timestamp()), int(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == old:
            low = middle
        else:
            high = middle
    new = datetime.fromtimestamp(high, zone).utcoffset()
    walls = sorted((high + int(offset.total_seconds())) * _MICROS for offset in (old, new))
    return ClockChange(walls[0], walls[1], max(int((old - new).total_seconds()), 0) * _MICROS)


def _elapsed_micros(time_zone: str, changes: list[ClockChange]) -> Column:
    pickup_us, dropoff_us = F.unix_micros("pickup_ts"), F.unix_micros("dropoff_ts")
    wall_us = dropoff_us - pickup_us
    if not changes:
        return wall_us
    earliest, latest = F.least(pickup_us, dropoff_us), F.greatest(pickup_us, dropoff_us)
    touches_change = F.lit(False)
    repeated_us = F.lit(0)  # length of the repeated hour the dropoff falls in
    for change in changes:
        touches_change |= (earliest < change.end_us) & (latest >= change.start_us)
        if change.repeat_us:
            in_repeat = (dropoff_us >= change.start_us) & (dropoff_us < change.end_us)
            repeated_us = F.when(in_repeat, F.lit(change.repeat_us)).otherwise(repeated_us)
    # to_utc_timestamp reads a repeated wall-clock time with the earlier (summer) offset.
    pickup_at = F.unix_micros(F.to_utc_timestamp("pickup_ts", time_zone))
    dropoff_at = F.unix_micros(F.to_utc_timestamp("dropoff_ts", time_zone))
    dropoff_at = F.when(dropoff_at < pickup_at, dropoff_at + repeated_us).otherwise(dropoff_at)
    return F.when(touches_change, dropoff_at - pickup_at).otherwise(wall_us)
