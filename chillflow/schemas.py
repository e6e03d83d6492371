"""Declared schemas (Spark DDL) of every dataset, and the TLC layouts since 2016-07."""

import json
from collections.abc import Iterable, Sequence
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StructType

from chillflow.errors import SchemaError

#: Standardised trip columns, in order.
TRIP_DDL = """
    service STRING, vendor_id INT, pickup_ts TIMESTAMP, dropoff_ts TIMESTAMP,
    passenger_count INT, trip_distance DOUBLE, rate_code INT, store_and_fwd_flag STRING,
    pu_zone_id INT, do_zone_id INT, payment_type INT,
    fare_amount DOUBLE, extra DOUBLE, mta_tax DOUBLE, tip_amount DOUBLE, tolls_amount DOUBLE,
    improvement_surcharge DOUBLE, total_amount DOUBLE, congestion_surcharge DOUBLE,
    airport_fee DOUBLE, cbd_congestion_fee DOUBLE, ehail_fee DOUBLE, trip_type INT,
    month STRING, source_file STRING, source_row BIGINT
"""

#: What staging produces: the trip columns and the raw values that could not be converted.
STAGED_DDL = f"{TRIP_DDL}, parse_errors ARRAY<STRING>"

#: Columns derived from the staged ones.
DERIVED_DDL = "distance_km DOUBLE, duration_min DOUBLE, avg_speed_kmh DOUBLE"

#: The curated Delta table: trip + derived columns + data-quality warnings + run lineage.
CURATED_DDL = f"""
    {TRIP_DDL}, {DERIVED_DDL},
    dq_warnings ARRAY<STRING>, run_id STRING, curated_at TIMESTAMP
"""

#: The quarantine Delta table: the staged and derived columns plus every rule a row failed.
QUARANTINE_DDL = f"""
    {STAGED_DDL}, {DERIVED_DDL},
    failed_rules ARRAY<STRING>, run_id STRING, quarantined_at TIMESTAMP
"""

#: One row per curate run and rule.
DQ_METRICS_DDL = """
    run_id STRING, service STRING, month STRING,
    rule STRING, action STRING, predicate STRING,
    evaluated BIGINT, failed BIGINT, failure_rate DOUBLE, max_failure_rate DOUBLE, status STRING,
    input_rows BIGINT, output_rows BIGINT, quarantined_rows BIGINT,
    started_at TIMESTAMP, finished_at TIMESTAMP
"""

#: Partition columns shared by the curate tables: a rerun replaces one (service, month) slice.
MONTH_PARTITION = ("service", "month")
#: Curated and quarantine files are clustered by pickup time within a month: a day's reads skip
#: the month's other files.
CLUSTER_BY = "pickup_ts"

#: Trips as loaded into stg.complete_trip; timestamps are naive wall-clock times, as in the table.
COMPLETE_TRIP_DDL = """
    trip_key STRING, vehicle_id_h STRING, service STRING, vendor_id INT,
    pickup_ts TIMESTAMP_NTZ, dropoff_ts TIMESTAMP_NTZ, pickup_month STRING,
    passenger_count INT, pu_zone_id INT, do_zone_id INT, payment_type INT, rate_code INT,
    trip_distance DOUBLE, distance_km DOUBLE, duration_min DOUBLE, avg_speed_kmh DOUBLE,
    fare_amount DOUBLE, tip_amount DOUBLE, tolls_amount DOUBLE, total_amount DOUBLE,
    congestion_surcharge DOUBLE, airport_fee DOUBLE,
    source_file STRING, source_row BIGINT, curated_run_id STRING
"""

#: Hourly pickup-zone KPIs: the KPI Delta table and mart.zone_hourly_kpis, keyed (zone_id, hour_ts).
HOURLY_KPIS_DDL = """
    zone_id INT NOT NULL, hour_ts TIMESTAMP NOT NULL,
    trips BIGINT, avg_fare DOUBLE, avg_tip DOUBLE, avg_speed_kmh DOUBLE, avg_distance_km DOUBLE,
    avg_duration_min DOUBLE, pct_card DOUBLE, unique_vehicles BIGINT, total_revenue DOUBLE,
    outlier_rate DOUBLE, computed_at TIMESTAMP
"""


#: The TLC trip services ChillFlow curates.
SERVICES = ("yellow", "green")

#: Hidden columns the raw reader attaches: the file's name and each row's position in it.
SOURCE_FILE_COL = "_cf_source_file"
SOURCE_ROW_COL = "_cf_source_row"

_TIMESTAMP_PREFIX = {"yellow": "tpep", "green": "lpep"}

#: TLC names (matched case-insensitively) of the standard columns named differently.
_TLC_NAMES = {
    "vendor_id": "VendorID",
    "pickup_ts": "{prefix}_pickup_datetime",
    "dropoff_ts": "{prefix}_dropoff_datetime",
    "rate_code": "RatecodeID",
    "pu_zone_id": "PULocationID",
    "do_zone_id": "DOLocationID",
}
#: Columns older files lack.
_OPTIONAL = ("congestion_surcharge", "airport_fee", "cbd_congestion_fee", "ehail_fee", "trip_type")
#: standard name -> (TLC column name; Spark type; required), in TRIP_DDL's order.
RAW_COLUMNS: dict[str, tuple[str, str, bool]] = {
    name: (_TLC_NAMES.get(name, name), kind.lower(), name not in _OPTIONAL)
    for name, kind in (item.split()[:2] for item in TRIP_DDL.split(","))
    if name not in ("service", "month", "source_file", "source_row")
}


def trip_service(names: Iterable[str], path: str) -> str:
    """Return the service (yellow or green) of a raw file's column names, checking the layout.

    Raises:
        SchemaError: Two columns differ only in case, or columns of the layout are missing.
    """
    fields: dict[str, str] = {}
    for name in names:
        if name in fields.values():
            raise SchemaError(f"{path}: column {name!r} appears twice; expected each column once")
        if name.lower() in fields:
            raise SchemaError(
                f"{path}: columns {fields[name.lower()]!r} and {name!r} differ only in case; "
                "expected one of them"
            )
        fields[name.lower()] = name
    service = next(
        (s for s, prefix in _TIMESTAMP_PREFIX.items() if f"{prefix}_pickup_datetime" in fields),
        None,
    )
    if service is None:
        raise SchemaError(_layout_message(path, "tpep_/lpep_pickup_datetime", fields.values()))
    missing = [
        raw_name(standard, service)
        for standard, (_, _, required) in RAW_COLUMNS.items()
        if required and raw_name(standard, service).lower() not in fields
    ]
    if missing:
        raise SchemaError(_layout_message(path, ", ".join(missing), fields.values()))
    return service


def raw_name(standard: str, service: str) -> str:
    """The TLC name of a standard column in ``service``'s files."""
    return RAW_COLUMNS[standard][0].format(prefix=_TIMESTAMP_PREFIX[service])


def _layout_message(path: str, expected: str, found: Iterable[str]) -> str:
    return (
        f"{path}: not a yellow/green TLC trip layout from 2016-07 on. "
        f"Expected column(s): {expected}. "
        f"Found: {', '.join(n if n == n.strip() else repr(n) for n in found)}. "
        "Files before 2016-07 (latitude/longitude) and FHV files are not supported."
    )


def struct(ddl: str) -> StructType:
    """Parse a DDL column list into a StructType (needs an active SparkSession)."""
    return StructType.fromDDL(" ".join(ddl.split()))


def columns(ddl: str) -> list[str]:
    """Return the column names of a DDL column list, in order (no Spark session needed)."""
    return [item.split()[0] for item in ddl.replace("\n", " ").split(",") if item.strip()]


#: The key of the KPI table and of mart.zone_hourly_kpis, and the KPI values in table order.
KPI_KEY = ("zone_id", "hour_ts")
KPI_VALUES = tuple(columns(HOURLY_KPIS_DDL)[len(KPI_KEY) : -1])


def local_frame(spark: SparkSession, rows: Iterable[Sequence[Any]], ddl: str) -> DataFrame:
    """Return driver-side tuples as a DataFrame of ``ddl``, parsed in the JVM from one JSON text.

    One literal for all rows: a typed literal per value would cost a Py4J call each and a plan
    whose analysis grows with the rows. No Python worker starts. Timestamps go as ISO 8601.
    """
    schema = struct(ddl)
    records = [dict(zip(schema.names, row, strict=True)) for row in rows]
    text = json.dumps(records, default=lambda value: value.isoformat())
    return spark.range(1).select(F.inline(F.from_json(F.lit(text), ArrayType(schema))))
