"""Hourly pickup-zone KPIs, summed exactly as integers of fixed units (docs/decisions.md)."""

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
    """Aggregate trips to one row per pickup zone and UTC hour (``zone_id``, ``hour_ts``).

    Rows without a pickup time or zone are left out. Averages are over the trips where the value
    is known; pct_card counts unknown payment types as not card; outlier_rate is the percent of
    the zone-hour's rows (curated plus ``quarantined``) quarantined, null without ``quarantined``.
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
    """hour_ts: the start of the tumbling ``window(pickup_ts, '1 hour')``."""
    return F.window("pickup_ts", HOUR)["start"].alias("hour_ts")


def _has_pickup_zone() -> Column:
    return F.col("pu_zone_id").isNotNull() & F.col("pickup_ts").isNotNull()


def _units(column: str, per_unit: int) -> Column:
    """``column`` in whole fixed units (cents), rounded half up without ``round``'s decimals."""
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
