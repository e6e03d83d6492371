"""The curated trips as input of later stages: the Delta table, or Parquet in the curated schema."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession

from chillflow.errors import ConfigError, error_summary
from chillflow.schemas import CURATED_DDL, DERIVED_DDL, TRIP_DDL, columns, struct
from chillflow.storage.delta import read_table, table_version


@dataclass(frozen=True)
class CuratedSource:
    """Curated trips read from one location, at ``delta_version`` (None for Parquet)."""

    rows: DataFrame
    location: str
    delta_version: int | None


def read_curated(spark: SparkSession, location: str | Path) -> CuratedSource:
    """Read curated trips from a Delta table, at its current version, or Parquet files.

    Raises:
        ConfigError: Nothing readable exists at ``location``, or its Parquet lacks trip or
            derived columns (a raw TLC file, say).
    """
    location = str(location)
    version = table_version(spark, location)
    if version is not None:
        return CuratedSource(read_table(spark, location, version), location, version)
    if "://" not in location and not Path(location).exists():
        raise ConfigError(
            f"no curated trips at {location}: run `chillflow curate month` first, or pass the "
            "curated Delta table (or Parquet in the curated schema) as CURATED_PATH"
        )
    try:
        found = set(spark.read.parquet(location).columns)
    except AnalysisException as exc:
        reason = error_summary(exc)
        raise ConfigError(f"cannot read curated trips at {location}: {reason}") from None
    missing = [name for name in columns(f"{TRIP_DDL}, {DERIVED_DDL}") if name not in found]
    if missing:
        raise ConfigError(
            f"{location} is not curated trips: it lacks {', '.join(missing)}; pass the curated "
            "Delta table, or curate a raw file first with `chillflow curate month`"
        )
    rows = spark.read.schema(struct(CURATED_DDL)).parquet(location)
    return CuratedSource(rows, location, None)
