"""Deterministic trip keys and hashed vehicle ids, with Spark built-ins only.

trip_key is the lowercase hex SHA-256 of
``{salt}|{vendor_id}|{pickup_iso}|{pu_zone_id}|{source_row}``
(the ChillFlow core library's formula for yellow trips); other services put their name right
after the salt, so keys never collide across services. ``pickup_iso`` is Python's
``datetime.isoformat()`` of the naive UTC timestamp, and a missing value renders as ``None``,
exactly as an f-string would.

The salt is joined in as data (a one-row frame) rather than embedded as a literal, so it never
appears in query plans, ``explain()`` output or the Spark UI.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

SALT_COL = "_cf_hash_salt"
VEHICLE_BUCKETS = 5000


def salt_frame(spark: SparkSession, salt: str) -> DataFrame:
    """A one-row frame carrying the hash salt, for :func:`with_trip_keys`."""
    return spark.createDataFrame([(salt,)], StructType([StructField(SALT_COL, StringType())]))


def isoformat(ts: str | Column) -> Column:
    """Render a timestamp like Python's ``datetime.isoformat()`` (micros only when non-zero)."""
    ts = F.col(ts) if isinstance(ts, str) else ts
    micros = F.pmod(F.unix_micros(ts), F.lit(1_000_000))
    fraction = F.when(micros != 0, F.concat(F.lit("."), F.lpad(micros.cast("string"), 6, "0")))
    return F.concat(F.date_format(ts, "yyyy-MM-dd'T'HH:mm:ss"), F.coalesce(fraction, F.lit("")))


def _text(column: Column) -> Column:
    return F.coalesce(column.cast("string"), F.lit("None"))


def with_trip_keys(trips: DataFrame, salt: DataFrame) -> DataFrame:
    """Add ``trip_key`` and ``vehicle_id_h``.

    Args:
        trips: Curated trips (service, vendor_id, pickup_ts, pu_zone_id, source_row).
        salt: The frame from :func:`salt_frame`.

    Returns:
        The trips with the two key columns appended.
    """
    salt_col = F.col(SALT_COL)
    service_part = F.when(F.col("service") != "yellow", F.concat(F.col("service"), F.lit("|")))
    trip_material = F.concat(
        salt_col,
        F.lit("|"),
        F.coalesce(service_part, F.lit("")),
        _text(F.col("vendor_id")),
        F.lit("|"),
        F.coalesce(isoformat("pickup_ts"), F.lit("None")),
        F.lit("|"),
        _text(F.col("pu_zone_id")),
        F.lit("|"),
        _text(F.col("source_row")),
    )
    vehicle_material = F.concat(
        salt_col,
        F.lit("|vehicle|"),
        _text(F.col("vendor_id")),
        F.lit("|"),
        _text(F.pmod(F.col("source_row"), F.lit(VEHICLE_BUCKETS))),
    )
    return (
        trips.crossJoin(F.broadcast(salt))
        .withColumns(
            {
                "trip_key": F.sha2(trip_material, 256),
                "vehicle_id_h": F.concat(
                    F.lit("veh_"), F.substring(F.sha2(vehicle_material, 256), 1, 12)
                ),
            }
        )
        .drop(SALT_COL)
    )
