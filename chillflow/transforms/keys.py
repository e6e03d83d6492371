"""Deterministic trip keys and hashed vehicle ids, with Spark built-ins only.

trip_key is the hex SHA-256 of ``{salt}|{vendor_id}|{pickup_iso}|{pu_zone_id}|{source_row}`` as
an f-string renders it (other services put their name after the salt). The salt is joined in as
data, so it never appears in query plans.
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
    """Add ``trip_key`` and ``vehicle_id_h``, salted by the frame of :func:`salt_frame`."""
    salt_col, vendor = F.col(SALT_COL), _text(F.col("vendor_id"))
    # concat_ws skips the NULL service part of yellow trips.
    trip_material = F.concat_ws(
        "|",
        salt_col,
        F.when(F.col("service") != "yellow", F.col("service")),
        vendor,
        F.coalesce(isoformat("pickup_ts"), F.lit("None")),
        _text(F.col("pu_zone_id")),
        _text(F.col("source_row")),
    )
    bucket = _text(F.pmod(F.col("source_row"), F.lit(VEHICLE_BUCKETS)))
    vehicle_material = F.concat_ws("|", salt_col, F.lit("vehicle"), vendor, bucket)
    vehicle_id_h = F.concat(F.lit("veh_"), F.substring(F.sha2(vehicle_material, 256), 1, 12))
    keys = {"trip_key": F.sha2(trip_material, 256), "vehicle_id_h": vehicle_id_h}
    return trips.crossJoin(F.broadcast(salt)).withColumns(keys).drop(SALT_COL)
