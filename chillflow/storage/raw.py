"""Reading raw TLC monthly Parquet files."""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType, TimestampNTZType, TimestampType

from chillflow.errors import ConfigError, SchemaError, error_summary
from chillflow.settings import parse_month
from chillflow.transforms.staging import SOURCE_FILE_COL, SOURCE_ROW_COL

_FILE_MONTH = re.compile(r"(?P<service>[a-z_]+)_tripdata_(?P<month>\d{4}-\d{2})", re.IGNORECASE)
_PARQUET_MAGIC = b"PAR1"
_UTC_ZONES = frozenset({"UTC", "Etc/UTC", "GMT", "Etc/GMT", "Z", "+00:00"})


@dataclass(frozen=True)
class RawFile:
    """One raw monthly file and the month its rows belong to."""

    path: Path
    month: str


def find_raw_files(location: str | Path, month: str | None = None) -> list[RawFile]:
    """Expand a file, directory or glob into raw files with their months.

    Args:
        location: A Parquet file, a directory of them or a glob pattern.
        month: Month for every file (``YYYY-MM``); otherwise taken from each file name
            (``{service}_tripdata_YYYY-MM.parquet``).

    Returns:
        The files, sorted by path.

    Raises:
        ConfigError: If nothing matches or a file's month cannot be determined.
        SchemaError: If a file is not Parquet.
    """
    location = Path(location)
    if location.is_dir():
        paths = sorted(location.glob("*.parquet"))
    elif location.exists():
        paths = [location]
    else:
        paths = sorted(Path(p) for p in glob.glob(str(location)))
    if not paths:
        raise ConfigError(f"no raw Parquet file found at {location}")
    files = []
    for path in paths:
        _check_parquet(path)
        files.append(RawFile(path=path.resolve(), month=month_of(path, month)))
    return files


def month_of(path: Path, month: str | None) -> str:
    """Return the explicit month, or the one in a TLC file name."""
    if month is not None:
        return parse_month(month)
    match = _FILE_MONTH.search(path.name)
    if match is None:
        raise ConfigError(
            f"{path}: cannot tell the month from the file name; pass --month YYYY-MM "
            "or name it {service}_tripdata_YYYY-MM.parquet"
        )
    return parse_month(match["month"])


def read_raw_file(spark: SparkSession, raw: RawFile) -> tuple[DataFrame, StructType]:
    """Read one raw file with its source file name and 0-based row position attached.

    The row position comes from Spark's Parquet ``_metadata.row_index``, which is stable for a
    file whatever the split, unlike ``monotonically_increasing_id``.

    TLC timestamps are New York wall-clock times without a zone (Parquet TIMESTAMP with
    ``isAdjustedToUTC=false``, Spark TIMESTAMP_NTZ). In a UTC session (the default) they are
    read straight as TIMESTAMP: the instants staging's cast would give, without its time-zone
    conversion per value (docs/benchmarks.md). In any other session time zone they stay
    TIMESTAMP_NTZ and staging casts them in that zone, as the month rule's bounds are.

    Returns:
        The rows and their schema as read (the file's footer schema; in a UTC session,
        wall-clock timestamps as TIMESTAMP).
    """
    try:
        rows = spark.read.parquet(str(raw.path))
        schema = rows.schema
        if spark.conf.get("spark.sql.session.timeZone") in _UTC_ZONES:
            schema = _wall_clock_as_timestamp(rows.schema)
            if schema != rows.schema:
                rows = spark.read.schema(schema).parquet(str(raw.path))
        with_lineage = rows.select(
            "*",
            F.col("_metadata.file_name").alias(SOURCE_FILE_COL),
            F.col("_metadata.row_index").alias(SOURCE_ROW_COL),
        )
    except AnalysisException as exc:
        reason = error_summary(exc)
        raise SchemaError(f"{raw.path}: Spark cannot read this Parquet file: {reason}") from None
    return with_lineage, schema


def _wall_clock_as_timestamp(schema: StructType) -> StructType:
    """Return ``schema`` with every TIMESTAMP_NTZ field read as TIMESTAMP."""
    return StructType(
        [
            StructField(f.name, TimestampType(), f.nullable, f.metadata)
            if isinstance(f.dataType, TimestampNTZType)
            else f
            for f in schema.fields
        ]
    )


def _check_parquet(path: Path) -> None:
    if not path.is_file():
        raise ConfigError(f"{path}: not a file")
    with path.open("rb") as handle:
        head = handle.read(4)
    if head != _PARQUET_MAGIC:
        raise SchemaError(f"{path}: not a Parquet file (expected the PAR1 magic bytes)")
