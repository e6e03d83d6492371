"""Delta Lake tables: slice replacement, reads, and operation metrics."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_\-]+$")
_SAFE_COLUMN = re.compile(r"^[a-z_][a-z0-9_]*$")
#: Rows per file of a slice clustered by time: about a day of a 3M-row month (docs/decisions.md).
CLUSTER_ROWS_PER_FILE = 100_000


def slice_predicate(slices: Iterable[Mapping[str, str]]) -> str:
    """Build a SQL predicate selecting partition slices, e.g. ``service='yellow' AND …``.

    Raises:
        ValueError: A column or value is not plain (letters, digits, ``_``, ``-``): no injection.
    """
    clauses = []
    for slice_ in slices:
        parts = []
        for column, value in sorted(slice_.items()):
            if not _SAFE_COLUMN.match(column) or not _SAFE_VALUE.match(value):
                raise ValueError(f"unsafe partition filter {column}={value!r}")
            parts.append(f"{column} = '{value}'")
        clauses.append("(" + " AND ".join(parts) + ")")
    if not clauses:
        raise ValueError("no slice to replace")
    return " OR ".join(clauses)


def replace_slices(
    rows: DataFrame,
    path: Path | str,
    slices: Iterable[Mapping[str, str]],
    partition_by: tuple[str, ...],
    cluster_by: str | None = None,
) -> None:
    """Atomically replace the given partition slices of a Delta table with ``rows``.

    Creates the table on first write; rows outside the slices make Delta reject the commit; new
    columns are added. With ``cluster_by``, each task writes its rows sorted by that column into
    files of :data:`CLUSTER_ROWS_PER_FILE` rows, so min/max statistics skip the others.
    """
    writer = rows.write
    if cluster_by is not None:
        clustered = rows.sortWithinPartitions(*partition_by, cluster_by)
        writer = clustered.write.option("maxRecordsPerFile", CLUSTER_ROWS_PER_FILE)
    (
        writer.format("delta")
        .mode("overwrite")
        .option("replaceWhere", slice_predicate(slices))
        .option("mergeSchema", "true")
        .partitionBy(*partition_by)
        .save(str(path))
    )


def restore_slices(
    spark: SparkSession,
    path: Path | str,
    version: int | None,
    slices: Iterable[Mapping[str, str]],
    partition_by: tuple[str, ...],
    cluster_by: str | None = None,
) -> None:
    """Put the given slices back as they were at ``version`` (None: the table did not exist).

    Only those slices are rewritten: a RESTORE would undo other slices' commits made since.
    """
    slices = list(slices)
    if version is None:
        DeltaTable.forPath(spark, str(path)).delete(slice_predicate(slices))
        return
    old = read_table(spark, path, version).where(slice_predicate(slices))
    replace_slices(old, path, slices, partition_by, cluster_by)


def table_version(spark: SparkSession, path: Path | str) -> int | None:
    """Return the latest version of a Delta table, or None when there is no table."""
    if not table_exists(spark, path):
        return None
    return int(DeltaTable.forPath(spark, str(path)).history(1).first()["version"])


def table_exists(spark: SparkSession, path: Path | str) -> bool:
    """Return whether a Delta table exists at ``path``."""
    return DeltaTable.isDeltaTable(spark, str(path))


def read_table(spark: SparkSession, path: Path | str, version: int | None = None) -> DataFrame:
    """Read a Delta table at ``version``, or at its current version."""
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(str(path))


def latest_commit(spark: SparkSession, path: Path | str) -> tuple[int, dict[str, str]]:
    """Return the version and operation metrics (``numOutputRows`` …) of the latest commit."""
    latest = DeltaTable.forPath(spark, str(path)).history(1).first()
    return int(latest["version"]), dict(latest["operationMetrics"] or {})
