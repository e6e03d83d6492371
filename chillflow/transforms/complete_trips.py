"""Curated trips -> rows of PostgreSQL's ``stg.complete_trip``.

A curated row is loadable when it has a pickup inside its ``month`` partition: stg.complete_trip
requires pickup_ts, and its ``pickup_month`` (the partition value) must be the pickup's month, or
the row would belong to another month's slice and a rerun of that month would delete it. The
curate rules already quarantine both cases; a rule set without them makes such rows declared
skips here instead of silently lost trips.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from chillflow.schemas import COMPLETE_TRIP_DDL, struct

SKIP_REASON = "skip_reason"
PICKUP_MISSING = "pickup_ts_missing"
PICKUP_OUTSIDE_MONTH = "pickup_outside_month"
SKIP_REASONS = (PICKUP_MISSING, PICKUP_OUTSIDE_MONTH)

#: Columns of stg.complete_trip named differently in the curated table.
_RENAMED = {"pickup_month": "month", "curated_run_id": "run_id"}


def is_loadable() -> Column:
    """True for a row :func:`with_skip_reason` did not mark as skipped."""
    return F.col(SKIP_REASON).isNull()


def with_skip_reason(trips: DataFrame) -> DataFrame:
    """Add ``skip_reason``: why a curated row cannot be loaded, NULL when it can.

    Args:
        trips: Curated trips (``pickup_ts`` and the ``month`` partition, ``YYYY-MM``).

    Returns:
        The trips with ``skip_reason`` (one of :data:`SKIP_REASONS` or NULL) appended.
    """
    month_start = F.to_timestamp(F.concat(F.col("month"), F.lit("-01")))
    # A range on the month's first instant, as in the curate rule: no per-row formatting.
    in_month = (F.col("pickup_ts") >= month_start) & (
        F.col("pickup_ts") < F.add_months(month_start, 1)
    )
    reason = F.when(F.col("pickup_ts").isNull(), F.lit(PICKUP_MISSING)).when(
        ~F.coalesce(in_month, F.lit(False)), F.lit(PICKUP_OUTSIDE_MONTH)
    )
    return trips.withColumn(SKIP_REASON, reason)


def to_complete_trips(keyed: DataFrame) -> DataFrame:
    """Select and cast the columns of stg.complete_trip, in the table's order.

    Args:
        keyed: Loadable curated trips with ``trip_key`` and ``vehicle_id_h``.

    Returns:
        Rows in :data:`~chillflow.schemas.COMPLETE_TRIP_DDL`: ``pickup_month`` is the ``month``
        partition, ``curated_run_id`` the curate run's id, and pickup and dropoff become naive
        timestamps holding the UTC wall-clock time (the session time zone is UTC).
    """
    return keyed.select(
        *(
            F.col(_RENAMED.get(field.name, field.name)).cast(field.dataType).alias(field.name)
            for field in struct(COMPLETE_TRIP_DDL).fields
        )
    )
