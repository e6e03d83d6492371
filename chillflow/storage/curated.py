"""The curated trips as input of later stages: the Delta table, or Parquet in the curated schema."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from chillflow.errors import ConfigError
from chillflow.schemas import CURATED_DDL, struct
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
        ConfigError: Nothing readable exists at ``location``.
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
    rows = spark.read.schema(struct(CURATED_DDL)).parquet(location)
    return CuratedSource(rows, location, None)
