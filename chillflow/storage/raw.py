"""Raw TLC monthly Parquet files: find and vet them before Spark starts, then read them."""

from __future__ import annotations

import glob
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType, TimestampNTZType, TimestampType

from chillflow.errors import ConfigError, SchemaError, error_summary, is_spark_error
from chillflow.schemas import (
    RAW_COLUMNS,
    SERVICES,
    SOURCE_FILE_COL,
    SOURCE_ROW_COL,
    raw_name,
    trip_service,
)
from chillflow.settings import parse_month

_FILE_MONTH = re.compile(r"(?P<service>[a-z_]+)_tripdata_(?P<month>\d{4}-\d{2})", re.IGNORECASE)
_PARQUET_MAGIC = b"PAR1"
_FAILED_READ = re.compile(
    r"\[FAILED_READ_FILE\.\w+\] Encountered error while reading file (\S+)\.\s"
)
_HADOOP_GLOB = re.compile(r"([\\\[\]{}*?])")
# Parquet codecs and encodings Spark reads: BROTLI and LZO need codecs it lacks, and its
# vectorized reader has no BYTE_STREAM_SPLIT.
_SPARK_READS = {
    *("UNCOMPRESSED", "SNAPPY", "GZIP", "ZSTD", "LZ4", "LZ4_RAW"),
    *("PLAIN", "PLAIN_DICTIONARY", "RLE_DICTIONARY", "RLE", "BIT_PACKED"),
    *("DELTA_BINARY_PACKED", "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY"),
}
# Names a raw column must not take: Spark's file-metadata column and the lineage columns.
_RESERVED = ("_metadata", SOURCE_FILE_COL.lower(), SOURCE_ROW_COL.lower())


@dataclass(frozen=True)
class RawFile:
    """One raw monthly file and the month its rows belong to."""

    path: Path
    month: str


def find_raw_files(location: str | Path, month: str | None = None) -> list[RawFile]:
    """Expand a file, directory or glob into raw files with their months, each one vetted.

    Every file's Parquet footer is read (no Spark), so an unusable file fails in about a second.
    ``month`` applies to every file; without it each file name gives its own.

    Raises:
        ConfigError: If nothing matches or a file's month cannot be determined.
        SchemaError: If a file is unusable, or two files hold the same service and month.
    """
    location = Path(location)
    if location.is_dir():
        paths = sorted(p for p in location.iterdir() if p.suffix.lower() == ".parquet")
    elif location.exists():
        paths = [location]
    else:
        paths = sorted(Path(p) for p in glob.glob(str(location)))
    if not paths:
        raise ConfigError(f"no raw Parquet file found at {location}")
    files = []
    slices: dict[tuple[str, str], Path] = {}
    for path in paths:
        raw = RawFile(path=path.resolve(), month=month_of(path, month))
        service = check_raw_file(path)
        first = slices.setdefault((service, raw.month), path)
        if first != path:
            raise SchemaError(
                f"{first} and {path} both hold {service} trips for {raw.month}: "
                "curating both would count the month twice; keep one if it is a copy, or merge "
                "them into one file if each holds a part"
            )
        files.append(raw)
    return files


def check_raw_file(path: Path) -> str:
    """Vet one raw file from its Parquet footer and return its service (yellow, green).

    Raises:
        SchemaError: If the file is unreadable, not Parquet, corrupt or truncated, has no
            rows, is not a TLC trip layout or not the service its name says, has trip times
            Spark would misread, a reserved column name, a codec or encoding Spark lacks, or
            a name Spark cannot open.
    """
    if ":" in path.name:
        raise SchemaError(f"{path}: Hadoop cannot open a file name containing ':'; rename it")
    if path.name.startswith((".", "_")):
        raise SchemaError(
            f"{path}: Spark reads no file whose name starts with '.' or '_' (hidden); rename "
            "it, or remove it if it is not a trip file"
        )
    if path.is_dir():
        raise SchemaError(
            f"{path}: a directory (as Spark writes a dataset, of part files); expected one "
            "Parquet file per service and month: merge its files into one"
        )
    if path.exists() and not path.is_file():
        raise SchemaError(f"{path}: not a regular file; expected a Parquet file")
    try:
        with path.open("rb") as handle:
            if handle.read(4) != _PARQUET_MAGIC:
                raise SchemaError(f"{path}: not a Parquet file (expected the PAR1 magic bytes)")
            footer = pq.ParquetFile(handle)
            meta, schema = footer.metadata, footer.schema_arrow
    except OSError as exc:
        raise SchemaError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    except pa.ArrowException as exc:
        raise SchemaError(
            f"{path}: corrupt or truncated Parquet file ({exc}); expected a complete file "
            "with its footer: copy or download it again"
        ) from None
    if meta.num_rows == 0:
        raise SchemaError(
            f"{path}: the file holds no rows; expected a month of trips (an empty file would "
            "replace the month with nothing)"
        )
    service = trip_service(schema.names, str(path))
    named = _FILE_MONTH.search(path.name)
    if named and named["service"].lower() in SERVICES and named["service"].lower() != service:
        raise SchemaError(
            f"{path}: the name says {named['service']} trips but the columns are {service}'s "
            f"({raw_name('pickup_ts', service)}); expected the trips the name says: rename or "
            "replace the file"
        )
    times = {raw_name(s, service).lower() for s, c in RAW_COLUMNS.items() if c[1] == "timestamp"}
    for field in schema:
        if field.name.lower() in _RESERVED:
            raise SchemaError(
                f"{path}: column {field.name!r} has a name Spark and ChillFlow reserve for a "
                "file's metadata and lineage; expected TLC columns: drop or rename it"
            )
        if field.name.lower() in times:
            _check_trip_times(path, field)
    for group in map(meta.row_group, range(meta.num_row_groups)):
        for chunk in map(group.column, range(meta.num_columns)):
            unreadable = set(chunk.encodings).union([chunk.compression]) - _SPARK_READS
            if unreadable:
                raise SchemaError(
                    f"{path}: column {chunk.path_in_schema} is stored with "
                    f"{', '.join(sorted(unreadable))}, which Spark cannot read; expected SNAPPY, "
                    "GZIP, ZSTD, LZ4 or no compression and PLAIN, dictionary or DELTA encodings: "
                    "rewrite the file with pyarrow's defaults"
                )
    return service


def _check_trip_times(path: Path, field: pa.Field) -> None:
    """Refuse trip times Spark would shift to other wall-clock times or make up."""
    kind = field.type
    zone = getattr(kind, "tz", None)
    # Instants of a zone other than UTC: Spark reads them as UTC, every time shifted silently.
    if zone not in (None, "UTC", "Etc/UTC", "+00:00", "Z"):
        raise SchemaError(
            f"{path}: column {field.name} holds instants in time zone {zone}, which Spark "
            "would read shifted to UTC; expected TLC wall-clock times without a time zone "
            "(pandas: .dt.tz_localize(None) before writing)"
        )
    # Spark reads int64 and durations as the int64 of nanosecond timestamps, dates as midnight.
    if pa.types.is_integer(kind) or (
        pa.types.is_temporal(kind) and not pa.types.is_timestamp(kind)
    ):
        made_up = "a number or duration has no epoch or unit"
        if pa.types.is_date(kind) or pa.types.is_time(kind):
            made_up = "a date alone would put every trip at midnight, a time alone has no date"
        raise SchemaError(
            f"{path}: column {field.name} is of type {kind}; expected timestamps (TLC "
            f"wall-clock date and time of day): {made_up}"
        )


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
    """Read one raw file with its file name and 0-based row position attached.

    The position is Parquet's ``_metadata.row_index`` (stable whatever the split); the name is
    the file's own (``_metadata.file_name`` is URL-encoded), glob characters escaped. TLC
    wall-clock TIMESTAMP_NTZ columns are read as TIMESTAMP in the UTC session, without a
    conversion per value; the schema returned is the one read.
    """
    location = _HADOOP_GLOB.sub(r"\\\1", str(raw.path))
    try:
        rows = spark.read.parquet(location)
        schema = _wall_clock_as_timestamp(rows.schema)
        if schema != rows.schema:
            rows = spark.read.schema(schema).parquet(location)
        with_lineage = rows.select(
            "*",
            F.lit(raw.path.name).alias(SOURCE_FILE_COL),
            F.col("_metadata.row_index").alias(SOURCE_ROW_COL),
        )
    except Exception as exc:
        if not is_spark_error(exc):
            raise
        # The root cause: a Hadoop ChecksumException hides under "Could not read footer".
        reason = (_causes(exc) or [error_summary(exc)])[-1]
        crc = raw.path.with_name(f".{raw.path.name}.crc")
        if "ChecksumException" in reason and crc.exists():
            reason += f"; if the file was replaced, delete {crc.name}, its stale Hadoop checksum"
        raise SchemaError(f"{raw.path}: Spark cannot read this Parquet file: {reason}") from None
    return with_lineage, schema


def unreadable_raw_file(exc: Exception, files: Sequence[RawFile]) -> SchemaError | None:
    """The SchemaError for a Spark job that could not read one of ``files``; None otherwise.

    Vetting reads the footer only: a corrupt page shows when a job first reads the rows.
    """
    match = _FAILED_READ.search(str(exc)) if is_spark_error(exc) else None
    failed = Path(unquote(urlsplit(match[1]).path)) if match else None
    if failed not in {raw.path for raw in files}:
        return None
    reason = (_causes(exc) or [error_summary(exc)])[0]
    return SchemaError(
        f"{failed}: Spark cannot read this Parquet file: {reason}; expected an intact file: "
        "copy or download it again"
    )


def _causes(exc: Exception) -> list[str]:
    """The ``Caused by:`` lines of a Spark error's JVM stack trace, outermost first."""
    lines = str(exc).splitlines()
    return [line.removeprefix("Caused by: ") for line in lines if line.startswith("Caused by: ")]


def _wall_clock_as_timestamp(schema: StructType) -> StructType:
    ntz = TimestampNTZType
    fields = [
        StructField(f.name, TimestampType(), f.nullable, f.metadata)
        if isinstance(f.dataType, ntz)
        else f
        for f in schema.fields
    ]
    return StructType(fields)
