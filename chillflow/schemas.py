"""Declared schemas (Spark DDL) of every dataset ChillFlow writes.

The curated schema is the contract between the curate stage and everything downstream: one
schema for every TLC vintage since 2016-07 and both services.
"""

from collections.abc import Iterable, Sequence
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

#: Standardised trip columns, in order.
TRIP_DDL = """
    service STRING,
    vendor_id INT,
    pickup_ts TIMESTAMP,
    dropoff_ts TIMESTAMP,
    passenger_count INT,
    trip_distance DOUBLE,
    rate_code INT,
    store_and_fwd_flag STRING,
    pu_zone_id INT,
    do_zone_id INT,
    payment_type INT,
    fare_amount DOUBLE,
    extra DOUBLE,
    mta_tax DOUBLE,
    tip_amount DOUBLE,
    tolls_amount DOUBLE,
    improvement_surcharge DOUBLE,
    total_amount DOUBLE,
    congestion_surcharge DOUBLE,
    airport_fee DOUBLE,
    cbd_congestion_fee DOUBLE,
    ehail_fee DOUBLE,
    trip_type INT,
    month STRING,
    source_file STRING,
    source_row BIGINT
"""

#: What staging produces: the trip columns and, per row, the present raw values that could not
#: be converted to their column's type (``fare_amount='abc'``), which then hold NULL; NULL for
#: a row without any.
STAGED_DDL = f"""
    {TRIP_DDL},
    parse_errors ARRAY<STRING>
"""

#: Columns derived from the staged ones.
DERIVED_DDL = """
    distance_km DOUBLE,
    duration_min DOUBLE,
    avg_speed_kmh DOUBLE
"""

#: The curated Delta table: trip + derived columns + data-quality warnings + run lineage.
CURATED_DDL = f"""
    {TRIP_DDL},
    {DERIVED_DDL},
    dq_warnings ARRAY<STRING>,
    run_id STRING,
    curated_at TIMESTAMP
"""

#: The quarantine Delta table: the staged and derived columns plus every rule a row failed.
QUARANTINE_DDL = f"""
    {STAGED_DDL},
    {DERIVED_DDL},
    failed_rules ARRAY<STRING>,
    run_id STRING,
    quarantined_at TIMESTAMP
"""

#: One row per curate run and rule.
DQ_METRICS_DDL = """
    run_id STRING,
    service STRING,
    month STRING,
    rule STRING,
    action STRING,
    predicate STRING,
    evaluated BIGINT,
    failed BIGINT,
    failure_rate DOUBLE,
    max_failure_rate DOUBLE,
    status STRING,
    input_rows BIGINT,
    output_rows BIGINT,
    quarantined_rows BIGINT,
    started_at TIMESTAMP,
    finished_at TIMESTAMP
"""

#: Partition columns shared by the curate tables: a rerun replaces one (service, month) slice.
MONTH_PARTITION = ("service", "month")

#: Trips as loaded into PostgreSQL's stg.complete_trip (which adds created_at and updated_at).
#: Timestamps are naive UTC wall-clock times, as in the table's ``timestamp`` columns.
COMPLETE_TRIP_DDL = """
    trip_key STRING,
    vehicle_id_h STRING,
    service STRING,
    vendor_id INT,
    pickup_ts TIMESTAMP_NTZ,
    dropoff_ts TIMESTAMP_NTZ,
    pickup_month STRING,
    passenger_count INT,
    pu_zone_id INT,
    do_zone_id INT,
    payment_type INT,
    rate_code INT,
    trip_distance DOUBLE,
    distance_km DOUBLE,
    duration_min DOUBLE,
    avg_speed_kmh DOUBLE,
    fare_amount DOUBLE,
    tip_amount DOUBLE,
    tolls_amount DOUBLE,
    total_amount DOUBLE,
    congestion_surcharge DOUBLE,
    airport_fee DOUBLE,
    source_file STRING,
    source_row BIGINT,
    curated_run_id STRING
"""

#: Hourly pickup-zone KPIs: the KPI Delta table and mart.zone_hourly_kpis, keyed (zone_id, hour_ts).
HOURLY_KPIS_DDL = """
    zone_id INT NOT NULL,
    hour_ts TIMESTAMP NOT NULL,
    trips BIGINT,
    avg_fare DOUBLE,
    avg_tip DOUBLE,
    avg_speed_kmh DOUBLE,
    avg_distance_km DOUBLE,
    avg_duration_min DOUBLE,
    pct_card DOUBLE,
    unique_vehicles BIGINT,
    total_revenue DOUBLE,
    outlier_rate DOUBLE,
    computed_at TIMESTAMP
"""


def struct(ddl: str) -> StructType:
    """Parse a DDL column list into a StructType (needs an active SparkSession)."""
    return StructType.fromDDL(" ".join(ddl.split()))


def columns(ddl: str) -> list[str]:
    """Return the column names of a DDL column list, in order (no Spark session needed)."""
    return [item.split()[0] for item in ddl.replace("\n", " ").split(",") if item.strip()]


def local_frame(spark: SparkSession, rows: Iterable[Sequence[Any]], ddl: str) -> DataFrame:
    """Return a small DataFrame of driver-side rows in the declared schema, built in the JVM.

    ``spark.createDataFrame`` on a Python list runs through Python workers, whose first start
    costs a fresh process about 1.5 s; these rows are literals instead.

    Args:
        spark: The session.
        rows: Tuples in the order of ``ddl``'s columns.
        ddl: A DDL column list.

    Returns:
        The rows, with the declared column types.
    """
    schema = struct(ddl)

    def record(values: Sequence[Any]) -> Any:
        return F.struct(
            *[
                F.lit(value).cast(field.dataType).alias(field.name)
                for value, field in zip(values, schema.fields, strict=True)
            ]
        )

    records = [record(row) for row in rows]
    if not records:
        return spark.range(0).select(*[F.lit(None).cast(f.dataType).alias(f.name) for f in schema])
    return spark.range(1).select(F.inline(F.array(*records)))
