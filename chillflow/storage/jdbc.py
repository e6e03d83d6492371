"""Spark's JDBC source and sink on PostgreSQL: the trips the KPIs read, appends to staging tables.

The password travels only as a JDBC property, which Spark redacts from plans and its UI
(``spark.redaction.regex`` matches ``password``), and nothing here logs it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

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


def read_complete_trips(
    spark: SparkSession,
    target: DatabaseUrl,
    window: HourWindow | None,
    *,
    partitions: int,
    fetch_size: int,
) -> DataFrame:
    """Read pickup_ts (UTC) and :data:`TRIP_MEASURES` of the trips inside ``window`` (None: all).

    The read is split into ``partitions`` range queries on ``pickup_ts`` between the window's
    bounds (all trips: the table's first and last pickup, from its index); the window is a
    predicate of the subquery, so PostgreSQL answers each one from the ``pickup_ts`` index and
    never ships rows outside it. ``fetch_size`` rows per round trip make the driver stream.

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
        .options(url=target.jdbc_url(), **target.jdbc_properties())
        .option("dbtable", subquery)
        .option("fetchsize", fetch_size)
    )
    if partitions > 1:
        split = (window.start, window.end) if window is not None else _pickup_range(target)
        if split is not None and split[0] < split[1]:
            reader = (
                reader.option("partitionColumn", "pickup_ts")
                .option("lowerBound", split[0].strftime(_BOUND_FORMAT))
                .option("upperBound", split[1].strftime(_BOUND_FORMAT))
                .option("numPartitions", partitions)
            )
    with reported(target, f"reading {TRIPS_TABLE}"):  # load() connects to read the schema
        trips = reader.load()
    return trips.select(F.col("pickup_utc").alias("pickup_ts"), *TRIP_MEASURES)


def _pickup_range(target: DatabaseUrl) -> tuple[datetime, datetime] | None:
    """First and last pickup_ts of the trips table (from its index), or None when it is empty."""
    with connect(target, action=f"reading {TRIPS_TABLE}") as conn, conn.cursor() as cur:
        cur.execute(f"SELECT min(pickup_ts), max(pickup_ts) FROM {TRIPS_TABLE}")
        first, last = cur.fetchone()
    return None if first is None else (first, last)


def jdbc_write_options(
    target: DatabaseUrl,
    table: str,
    *,
    partitions: int,
    batch_size: int,
    rewrite_batched_inserts: bool,
) -> dict[str, str]:
    """Return the options of a JDBC append into ``table``; they contain the password.

    Args:
        target: The database.
        table: An existing table, schema-qualified, e.g. ``stg.load_x``.
        partitions: Upper bound of parallel connections: Spark coalesces to it.
        batch_size: Rows per JDBC batch round trip.
        rewrite_batched_inserts: Let pgJDBC turn a batch into multi-row INSERTs.
    """
    return {
        "url": target.jdbc_url(),
        **target.jdbc_properties(),
        "dbtable": table,
        "numPartitions": str(partitions),
        "batchsize": str(batch_size),
        "reWriteBatchedInserts": str(rewrite_batched_inserts).lower(),
        # Every batch commits on its own, for the progress lines (docs/decisions.md).
        "isolationLevel": "NONE",
    }


def append_jdbc(rows: DataFrame, target: DatabaseUrl, table: str, **settings: Any) -> None:
    """Append ``rows`` to an existing table with Spark's JDBC writer (never creates or truncates).

    ``settings`` are the keyword arguments of :func:`jdbc_write_options`.

    Raises:
        DatabaseError: PostgreSQL refused or lost a connection (the server is named).
    """
    options = jdbc_write_options(target, table, **settings)
    with reported(target, f"appending rows to {table}"):
        rows.write.format("jdbc").mode("append").options(**options).save()
