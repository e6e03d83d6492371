"""Hourly pickup-zone KPIs: one row per (zone_id, hour_ts) with trips, averages and rates.

Sums are exact. Every money, distance, duration and speed value is rounded half up to a fixed unit
(cents, metres, milliseconds, metres per hour) and summed as a 64-bit integer; an average is
that integer sum divided by its count. A double sum depends on the order in which Spark merges
partial aggregates, which changes with partitioning and shuffle fetch order, so the same trips
could yield values a few ULPs apart: a rerun would then report groups as updated, and a table
kept by incremental runs would never equal a full refresh bit for bit. Integer sums make every
KPI a function of the group's rows alone.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from chillflow.schemas import KPI_KEY

#: TLC payment_type code of a credit-card payment.
CARD_PAYMENT = 1
HOUR = "1 hour"

_CENTS_PER_USD = 100
_METRES_PER_KM = 1000
_MS_PER_MIN = 60_000
#: (output column, input column, fixed units per input unit) of every average.
_MEANS = (
    ("avg_fare", "fare_amount", _CENTS_PER_USD),
    ("avg_tip", "tip_amount", _CENTS_PER_USD),
    ("avg_speed_kmh", "avg_speed_kmh", _METRES_PER_KM),
    ("avg_distance_km", "distance_km", _METRES_PER_KM),
    ("avg_duration_min", "duration_min", _MS_PER_MIN),
)


def hourly_zone_kpis(trips: DataFrame, quarantined: DataFrame | None = None) -> DataFrame:
    """Aggregate trips to one row per pickup zone and UTC hour.

    Args:
        trips: Trips with pickup_ts, pu_zone_id, vehicle_id_h, payment_type, fare_amount,
            tip_amount, total_amount (USD), distance_km, duration_min and avg_speed_kmh. Rows
            without a pickup time or zone cannot be keyed and are left out.
        quarantined: Rows curation quarantined (pickup_ts, pu_zone_id), or None when unknown.

    Returns:
        zone_id, hour_ts (start of ``window(pickup_ts, '1 hour')``) and :data:`KPI_VALUES`:
        trips; avg_fare, avg_tip (USD), avg_speed_kmh, avg_distance_km, avg_duration_min, each
        over the group's trips where the value is known (a zero-duration trip has no speed);
        pct_card, the percent of all the group's trips paid by card (an unknown payment type is
        not a card); unique_vehicles, distinct vehicle_id_h; total_revenue, the sum of
        total_amount (USD); outlier_rate, the percent of the zone-hour's rows (curated plus
        quarantined) that curation quarantined, null when ``quarantined`` is None.
    """
    sums = (
        trips.where(_has_pickup_zone())
        .groupBy(F.col("pu_zone_id").alias("zone_id"), _hour_start())
        .agg(
            F.count(F.lit(1)).alias("trips"),
            *(_sum_and_count(source, per_unit, name) for name, source, per_unit in _MEANS),
            F.count(F.when(F.col("payment_type") == CARD_PAYMENT, True)).alias("card_trips"),
            F.count_distinct("vehicle_id_h").alias("unique_vehicles"),
            F.sum(_units("total_amount", _CENTS_PER_USD)).alias("revenue_cents"),
        )
    )
    if quarantined is None:
        quarantined_rows = F.lit(None).cast("long")
    else:
        sums = sums.join(_quarantined_per_zone_hour(quarantined), list(KPI_KEY), how="left")
        quarantined_rows = F.coalesce(F.col("quarantined_rows"), F.lit(0))
    return sums.select(
        F.col("zone_id").cast("int").alias("zone_id"),
        "hour_ts",
        F.col("trips").cast("long").alias("trips"),
        *(_mean(name, per_unit).alias(name) for name, _, per_unit in _MEANS),
        _percent(F.col("card_trips"), F.col("trips")).alias("pct_card"),
        F.col("unique_vehicles").cast("long").alias("unique_vehicles"),
        (F.col("revenue_cents") / F.lit(float(_CENTS_PER_USD))).alias("total_revenue"),
        _percent(quarantined_rows, F.col("trips") + quarantined_rows).alias("outlier_rate"),
    )


def _hour_start() -> Column:
    """hour_ts: the start of the tumbling ``window(pickup_ts, '1 hour')``.

    Grouping on the start alone keeps the key one timestamp instead of the window's struct.
    """
    return F.window("pickup_ts", HOUR)["start"].alias("hour_ts")


def _has_pickup_zone() -> Column:
    return F.col("pu_zone_id").isNotNull() & F.col("pickup_ts").isNotNull()


def _units(column: str, per_unit: int) -> Column:
    """``column`` in whole fixed units (e.g. cents), rounded half up, as a long.

    ``floor(x + 0.5)`` stays in double arithmetic; ``round`` would go through a decimal per value,
    which made the whole aggregation about a third slower. ANSI mode fails on overflow.
    """
    return F.floor(F.col(column) * F.lit(float(per_unit)) + F.lit(0.5))


def _sum_and_count(column: str, per_unit: int, name: str) -> Column:
    units = _units(column, per_unit)
    return F.struct(F.sum(units).alias("total"), F.count(units).alias("n")).alias(name)


def _mean(name: str, per_unit: int) -> Column:
    """Exact sum / count in the input's unit; null when no row of the group has the value."""
    return F.try_divide(F.col(f"{name}.total"), F.col(f"{name}.n") * F.lit(float(per_unit)))


def _percent(part: Column, whole: Column) -> Column:
    return F.try_divide(part * F.lit(100.0), whole)


def _quarantined_per_zone_hour(quarantined: DataFrame) -> DataFrame:
    """Quarantined rows per zone and hour; rows without pickup time or zone are unattributable."""
    return (
        quarantined.where(_has_pickup_zone())
        .groupBy(F.col("pu_zone_id").cast("int").alias("zone_id"), _hour_start())
        .agg(F.count(F.lit(1)).alias("quarantined_rows"))
    )
