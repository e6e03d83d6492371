"""Trips for the aggregate stage, read from ``stg.complete_trip`` through Spark's JDBC source.

The read is split into parallel range queries on ``pickup_ts`` (``partitionColumn`` with the
window as bounds), and the window itself is a predicate of the subquery, so PostgreSQL answers
each partition from the ``pickup_ts`` index and never ships rows outside the window.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from chillflow.database_url import DatabaseUrl
from chillflow.hour_window import HourWindow
from chillflow.storage.postgres import connect, reported

TRIPS_TABLE = "stg.complete_trip"
#: Columns the KPIs need, besides pickup_ts.
TRIP_MEASURES = (
    "pu_zone_id",
    "vehicle_id_h",
    "payment_type",
    "fare_amount",
    "tip_amount",
    "total_amount",
    "distance_km",
    "duration_min",
    "avg_speed_kmh",
)
_BOUND_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def pickup_range(target: DatabaseUrl) -> tuple[datetime, datetime] | None:
    """First and last pickup_ts of the trips table (from its index), or None when it is empty."""
    with connect(target) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT min(pickup_ts), max(pickup_ts) FROM {TRIPS_TABLE}")
        first, last = cur.fetchone()
    return None if first is None else (first, last)


def read_complete_trips(
    spark: SparkSession,
    target: DatabaseUrl,
    window: HourWindow | None,
    *,
    partitions: int,
    fetch_size: int,
    bounds: tuple[datetime, datetime] | None = None,
) -> DataFrame:
    """Read pickup_ts (UTC) and :data:`TRIP_MEASURES` of the trips inside ``window`` (None: all).

    The window's bounds, else ``bounds`` (see :func:`pickup_range`), split the read into
    ``partitions`` queries; ``fetch_size`` rows per round trip make the driver stream.

    Raises:
        DatabaseError: PostgreSQL refused the connection (the server is named).
    """
    where = f"WHERE {window.sql_range('pickup_ts')}" if window is not None else ""
    # pickup_ts is a timestamp without time zone holding UTC. The JDBC driver would read it in
    # the JVM's default time zone; AT TIME ZONE 'UTC' turns it into an instant first. The raw
    # column stays for the partition predicates, which PostgreSQL then answers from its index.
    subquery = (
        f"(SELECT pickup_ts, pickup_ts AT TIME ZONE 'UTC' AS pickup_utc, "
        f"{', '.join(TRIP_MEASURES)} FROM {TRIPS_TABLE} {where}) AS trips"
    )
    reader = (
        spark.read.format("jdbc")
        .option("url", target.jdbc_url())
        .options(**target.jdbc_properties())
        .option("dbtable", subquery)
        .option("fetchsize", fetch_size)
    )
    split = (window.start, window.end) if window is not None else bounds
    if split is not None and split[0] < split[1] and partitions > 1:
        reader = (
            reader.option("partitionColumn", "pickup_ts")
            .option("lowerBound", split[0].strftime(_BOUND_FORMAT))
            .option("upperBound", split[1].strftime(_BOUND_FORMAT))
            .option("numPartitions", partitions)
        )
    with reported(target, f"reading {TRIPS_TABLE}"):  # load() connects to read the schema
        trips = reader.load()
    return trips.select(F.col("pickup_utc").alias("pickup_ts"), *TRIP_MEASURES)
