"""Staging: map one raw TLC file's columns onto the standard trip schema (rename and cast only).

A present raw value its column's type cannot hold becomes NULL and is listed in ``parse_errors``
(``fare_amount='abc'``); only casts that can lose a value are checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    AtomicType,
    LongType,
    NullType,
    NumericType,
    StringType,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from chillflow.errors import SchemaError
from chillflow.schemas import (
    RAW_COLUMNS,
    SOURCE_FILE_COL,
    SOURCE_ROW_COL,
    STAGED_DDL,
    columns,
    raw_name,
    trip_service,
)

# Spark type of a standard column -> raw types it is cast from (int64 timestamps: nanoseconds).
_CASTABLE_FROM = {
    "int": (NumericType, StringType),
    "double": (NumericType, StringType),
    "timestamp": (TimestampType, TimestampNTZType, LongType, StringType),
    "string": (AtomicType,),
}
_EXACT_INTS = ("tinyint", "smallint", "int")
# Timestamp text Spark may read: a date and a time of day, no zone. Spark would read '2025-01-15'
# as midnight and shift '08:30-05:00' to UTC: a made-up time and a moved wall clock.
_WALL_CLOCK_TEXT = r"^\d{4}-\d{1,2}-\d{1,2}[T ]\d{1,2}:\d{1,2}(:\d{1,2}(\.\d{1,9})?)?$"


@dataclass(frozen=True)
class SourceColumn:
    """Where a standard column comes from in one raw file (``name`` None: the file lacks it)."""

    name: str | None
    target_type: str
    source_type: str | None = None


@dataclass(frozen=True)
class RawLayout:
    """How to stage one raw file: its service and a source for every standard column."""

    service: str
    sources: tuple[tuple[str, SourceColumn], ...]


def plan_layout(schema: StructType, path: str) -> RawLayout:
    """Work out how a raw file's columns map onto the standard trip columns.

    Raises:
        SchemaError: If the layout is not a yellow or green TLC layout from 2016-07 on, or a
            column's type cannot be cast to its standard type.
    """
    service = trip_service(schema.fieldNames(), path)
    fields = {field.name.lower(): field for field in schema.fields}
    sources = []
    for standard, (_, target_type, _) in RAW_COLUMNS.items():
        field = fields.get(raw_name(standard, service).lower())
        if field is None or isinstance(field.dataType, NullType):
            sources.append((standard, SourceColumn(None, target_type)))
            continue
        if not isinstance(field.dataType, _CASTABLE_FROM[target_type]):
            raise SchemaError(
                f"{path}: column {field.name} is of type {field.dataType.simpleString()}; "
                f"expected {target_type}, or a number, string or timestamp convertible to it"
            )
        source_type = field.dataType.simpleString()
        sources.append((standard, SourceColumn(field.name, target_type, source_type)))
    return RawLayout(service=service, sources=tuple(sources))


def stage_trips(raw: DataFrame, layout: RawLayout, month: str) -> DataFrame:
    """Rename and cast a raw file's rows to ``STAGED_DDL``; one row in, one row out."""
    casts = {standard: _cast(source) for standard, source in layout.sources}
    checked = [
        (lost, F.format_string(f"{standard}='%s'", F.col(f"`{source.name}`")))
        for (standard, source), (_, lost) in zip(layout.sources, casts.values(), strict=True)
        if lost is not None
    ]
    parse_errors = F.lit(None).cast("array<string>")
    if checked:
        # NULL on clean rows, an array only where a value was lost. array_except, not
        # array_compact: a lambda would take the whole projection out of generated code.
        entries = F.array(*[F.when(lost, text) for lost, text in checked])
        listed = F.array_except(entries, F.array(F.lit(None).cast("string")))
        parse_errors = F.when(reduce(Column.__or__, [lost for lost, _ in checked]), listed)
    exprs = {
        **{standard: value for standard, (value, _) in casts.items()},
        "service": F.lit(layout.service),
        "month": F.lit(month),
        "source_file": F.col(SOURCE_FILE_COL),
        "source_row": F.col(SOURCE_ROW_COL).cast("bigint"),
        "parse_errors": parse_errors,
    }
    return raw.select(*[exprs[name].alias(name) for name in columns(STAGED_DDL)])


def _cast(source: SourceColumn) -> tuple[Column, Column | None]:
    """The standard column's value and, for a cast that can lose a value, where it did."""
    target, kind = source.target_type, source.source_type
    if source.name is None:
        return F.lit(None).cast(target), None
    column = F.col(f"`{source.name}`")
    if target == "timestamp" and kind == "bigint":
        # TIMESTAMP(NANOS) read as int64; integer division: a double cannot hold it exactly.
        return F.timestamp_micros(F.expr(f"`{source.name}` div 1000")), None
    if kind == "string" and target != "string":
        present = F.nullif(F.trim(column), F.lit(""))  # a blank string is a missing value
    elif target == "int" and kind not in _EXACT_INTS:
        present = column
    else:
        return column.cast(target), None
    if target == "int" and kind == "bigint":
        value = present.try_cast(target)
    elif target == "int":
        # Through a double: '2.0' and 2.0 are 2; 2.5, NaN and values beyond int are lost.
        number = present.try_cast("double")
        whole = number.try_cast("int")
        value = F.when(whole == number, whole)
    elif target == "timestamp":
        value = F.when(present.rlike(_WALL_CLOCK_TEXT), present.try_cast(target))
    else:
        value = present.try_cast(target)
    return value, present.isNotNull() & value.isNull()
