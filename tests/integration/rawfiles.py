"""Hand-built raw TLC files written with pyarrow, for exact expectations in curate tests."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

YELLOW_2025 = pa.schema(
    [
        ("VendorID", pa.int32()),
        ("tpep_pickup_datetime", pa.timestamp("us")),
        ("tpep_dropoff_datetime", pa.timestamp("us")),
        ("passenger_count", pa.int64()),
        ("trip_distance", pa.float64()),
        ("RatecodeID", pa.int64()),
        ("store_and_fwd_flag", pa.string()),
        ("PULocationID", pa.int32()),
        ("DOLocationID", pa.int32()),
        ("payment_type", pa.int64()),
        ("fare_amount", pa.float64()),
        ("extra", pa.float64()),
        ("mta_tax", pa.float64()),
        ("tip_amount", pa.float64()),
        ("tolls_amount", pa.float64()),
        ("improvement_surcharge", pa.float64()),
        ("total_amount", pa.float64()),
        ("congestion_surcharge", pa.float64()),
        ("Airport_fee", pa.float64()),
        ("cbd_congestion_fee", pa.float64()),
    ]
)


def trip(pickup, minutes=10.0, miles=2.0, pu=161, do=236, total=20.0, passengers=1):
    """One raw yellow row as a dict; ``pickup`` None makes a row without timestamps."""
    dropoff = None
    if pickup is not None:
        dropoff = pickup + timedelta(minutes=minutes)
    return {
        "VendorID": 2,
        "tpep_pickup_datetime": pickup,
        "tpep_dropoff_datetime": dropoff,
        "passenger_count": passengers,
        "trip_distance": miles,
        "RatecodeID": 1,
        "store_and_fwd_flag": "N",
        "PULocationID": pu,
        "DOLocationID": do,
        "payment_type": 1,
        "fare_amount": total - 5.0,
        "extra": 1.0,
        "mta_tax": 0.5,
        "tip_amount": 2.0,
        "tolls_amount": 0.0,
        "improvement_surcharge": 1.0,
        "total_amount": total,
        "congestion_surcharge": 2.5,
        "Airport_fee": 0.0,
        "cbd_congestion_fee": 0.75,
    }


def write_yellow(path: Path, rows: list[dict], schema: pa.Schema = YELLOW_2025) -> Path:
    """Write rows (dicts keyed by TLC column names) as a yellow Parquet file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=YELLOW_2025).cast(schema)
    pq.write_table(table, path)
    return path


GREEN_2025 = pa.schema(
    [
        ("VendorID", pa.int64()),
        ("lpep_pickup_datetime", pa.timestamp("us")),
        ("lpep_dropoff_datetime", pa.timestamp("us")),
        *[(f.name, f.type) for f in YELLOW_2025 if f.name != "VendorID" and "tpep" not in f.name],
        ("ehail_fee", pa.null()),
        ("trip_type", pa.float64()),
    ]
)


def retyped(schema: pa.Schema, **types: pa.DataType) -> pa.Schema:
    """``schema`` with the named columns' types replaced."""
    return pa.schema([(f.name, types.get(f.name, f.type)) for f in schema])


def as_green(row: dict) -> dict:
    """A yellow row (from :func:`trip`) in the green layout."""
    green = {key.replace("tpep_", "lpep_"): value for key, value in row.items()}
    return {**green, "ehail_fee": None, "trip_type": 1.0}


def write_rows(path: Path, rows: list[dict], schema: pa.Schema) -> Path:
    """Write rows exactly as given, in ``schema`` (no conversion from the yellow layout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def read_rows(path: Path) -> list[dict]:
    """A raw file's rows as dicts, nanosecond timestamps truncated to microseconds."""
    table = pq.read_table(path)
    for index, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type) and field.type.unit == "ns":
            column = table.column(index).cast(pa.timestamp("us"), safe=False)
            table = table.set_column(index, field.name, column)
    return table.to_pylist()
