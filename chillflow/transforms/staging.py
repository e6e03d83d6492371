"""Staging: map one raw TLC file's columns onto the standard trip schema (rename and cast only).

TLC files drift between vintages: column-name case (``Airport_fee``), int32/int64/double ids
and counts, Parquet null-typed columns (green ``ehail_fee``), nanosecond timestamps in files
rewritten by pandas, and columns that only newer files have. :func:`plan_layout` inspects a
file's schema once and :func:`stage_trips` applies the resulting plan.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, NullType, StructType

from chillflow.errors import SchemaError
from chillflow.schemas import STAGED_DDL, columns

#: Hidden columns the raw reader attaches from Spark's Parquet file metadata.
SOURCE_FILE_COL = "_cf_source_file"
SOURCE_ROW_COL = "_cf_source_row"

_TIMESTAMP_PREFIX = {"yellow": "tpep", "green": "lpep"}

# standard name -> (TLC column name, matched case-insensitively; Spark type; required)
_RAW_COLUMNS: dict[str, tuple[str, str, bool]] = {
    "vendor_id": ("VendorID", "int", True),
    "pickup_ts": ("{prefix}_pickup_datetime", "timestamp", True),
    "dropoff_ts": ("{prefix}_dropoff_datetime", "timestamp", True),
    "passenger_count": ("passenger_count", "int", True),
    "trip_distance": ("trip_distance", "double", True),
    "rate_code": ("RatecodeID", "int", True),
    "store_and_fwd_flag": ("store_and_fwd_flag", "string", True),
    "pu_zone_id": ("PULocationID", "int", True),
    "do_zone_id": ("DOLocationID", "int", True),
    "payment_type": ("payment_type", "int", True),
    "fare_amount": ("fare_amount", "double", True),
    "extra": ("extra", "double", True),
    "mta_tax": ("mta_tax", "double", True),
    "tip_amount": ("tip_amount", "double", True),
    "tolls_amount": ("tolls_amount", "double", True),
    "improvement_surcharge": ("improvement_surcharge", "double", True),
    "total_amount": ("total_amount", "double", True),
    "congestion_surcharge": ("congestion_surcharge", "double", False),
    "airport_fee": ("airport_fee", "double", False),
    "cbd_congestion_fee": ("cbd_congestion_fee", "double", False),
    "ehail_fee": ("ehail_fee", "double", False),
    "trip_type": ("trip_type", "int", False),
}


@dataclass(frozen=True)
class SourceColumn:
    """Where a standard column comes from in one raw file.

    Attributes:
        name: The column's name in the file (original case), or None when the file lacks it.
        target_type: Spark SQL type of the standard column.
        nanos_as_long: True for TIMESTAMP(NANOS) columns that Spark reads as int64 nanoseconds.
    """

    name: str | None
    target_type: str
    nanos_as_long: bool = False


@dataclass(frozen=True)
class RawLayout:
    """How to stage one raw file: its service and a source for every standard column."""

    service: str
    sources: tuple[tuple[str, SourceColumn], ...]


def trip_service(names: Iterable[str], path: str) -> str:
    """Return the service (yellow or green) of a raw file's column names, checking the layout.

    Pure over names, so a file's footer can be checked without Spark (the downloader does).

    Raises:
        SchemaError: If the columns are not a yellow or green TLC layout from 2016-07 on.
    """
    names = list(names)
    lower = {name.lower() for name in names}
    service = next(
        (s for s, prefix in _TIMESTAMP_PREFIX.items() if f"{prefix}_pickup_datetime" in lower),
        None,
    )
    if service is None:
        raise SchemaError(_layout_message(path, "tpep_/lpep_pickup_datetime", names))
    prefix = _TIMESTAMP_PREFIX[service]
    missing = [
        raw.format(prefix=prefix)
        for raw, _, required in _RAW_COLUMNS.values()
        if required and raw.format(prefix=prefix).lower() not in lower
    ]
    if missing:
        raise SchemaError(_layout_message(path, ", ".join(missing), names))
    return service


def plan_layout(schema: StructType, path: str) -> RawLayout:
    """Work out how a raw file's columns map onto the standard trip columns.

    Args:
        schema: The file's schema as Spark reads it.
        path: The file, for error messages.

    Returns:
        The staging plan for :func:`stage_trips`.

    Raises:
        SchemaError: If the layout is not a yellow or green TLC layout from 2016-07 on.
    """
    service = trip_service(schema.fieldNames(), path)
    prefix = _TIMESTAMP_PREFIX[service]
    fields = {field.name.lower(): field for field in schema.fields}
    sources = []
    for standard, (raw_name, target_type, _) in _RAW_COLUMNS.items():
        field = fields.get(raw_name.format(prefix=prefix).lower())
        if field is None or isinstance(field.dataType, NullType):
            sources.append((standard, SourceColumn(None, target_type)))
            continue
        nanos = target_type == "timestamp" and isinstance(field.dataType, LongType)
        sources.append((standard, SourceColumn(field.name, target_type, nanos)))
    return RawLayout(service=service, sources=tuple(sources))


def stage_trips(raw: DataFrame, layout: RawLayout, month: str) -> DataFrame:
    """Rename and cast a raw file's rows to the staged schema; one row in, one row out.

    Args:
        raw: Rows of one raw file, with the reader's source file and row columns attached.
        layout: The plan from :func:`plan_layout` for that file.
        month: The file's month (``YYYY-MM``).

    Returns:
        Rows in the staged schema (``STAGED_DDL``).
    """
    sourced = {standard: _cast(source) for standard, source in layout.sources}
    lineage = {
        "service": F.lit(layout.service),
        "month": F.lit(month),
        "source_file": F.col(SOURCE_FILE_COL),
        "source_row": F.col(SOURCE_ROW_COL).cast("bigint"),
    }
    exprs = {**sourced, **lineage}
    return raw.select(*[exprs[name].alias(name) for name in columns(STAGED_DDL)])


def _cast(source: SourceColumn) -> Column:
    if source.name is None:
        return F.lit(None).cast(source.target_type)
    column = F.col(f"`{source.name}`")
    if source.nanos_as_long:
        # Integer division: an int64 nanosecond count does not fit a double exactly.
        return F.timestamp_micros(F.expr(f"`{source.name}` div 1000"))
    if source.target_type == "timestamp":
        return column.cast("timestamp")
    # try_cast: Spark 4 runs ANSI mode, where a NaN or out-of-range double cast to int raises.
    return column.try_cast(source.target_type)


def _layout_message(path: str, expected: str, names: list[str]) -> str:
    found = ", ".join(names)
    return (
        f"{path}: not a yellow/green TLC trip layout from 2016-07 on. "
        f"Expected column(s): {expected}. Found: {found}. "
        "Files before 2016-07 (latitude/longitude) and FHV files are not supported."
    )
