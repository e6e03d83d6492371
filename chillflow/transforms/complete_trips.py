"""Curated trips -> rows of PostgreSQL's ``stg.complete_trip``.

A curated row is loadable with a pickup inside its ``month`` partition: otherwise a rerun of
another month's slice would delete it. Rule sets that let such rows through get declared skips.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from chillflow.schemas import COMPLETE_TRIP_DDL, struct

SKIP_REASON = "skip_reason"
PICKUP_MISSING = "pickup_ts_missing"
PICKUP_OUTSIDE_MONTH = "pickup_outside_month"
SKIP_REASONS = (PICKUP_MISSING, PICKUP_OUTSIDE_MONTH)

#: Columns of stg.complete_trip named differently in the curated table.
_RENAMED = {"pickup_month": "month", "curated_run_id": "run_id"}


def with_skip_reason(trips: DataFrame) -> DataFrame:
    """Add ``skip_reason``: why a curated row cannot be loaded (:data:`SKIP_REASONS`) or NULL."""
    pickup, month_start = F.col("pickup_ts"), F.to_timestamp(F.concat("month", F.lit("-01")))
    # A range on the month's first instant, as in the curate rule: no per-row formatting.
    in_month = (pickup >= month_start) & (pickup < F.add_months(month_start, 1))
    reason = F.when(pickup.isNull(), F.lit(PICKUP_MISSING)).when(
        ~F.coalesce(in_month, F.lit(False)), F.lit(PICKUP_OUTSIDE_MONTH)
    )
    return trips.withColumn(SKIP_REASON, reason)


def to_complete_trips(keyed: DataFrame) -> DataFrame:
    """Select and cast keyed, loadable trips to ``COMPLETE_TRIP_DDL``, in the table's order."""
    return keyed.select(
        *(
            F.col(_RENAMED.get(field.name, field.name)).cast(field.dataType).alias(field.name)
            for field in struct(COMPLETE_TRIP_DDL).fields
        )
    )
