"""Delta table upkeep: the files behind a table, compaction, re-clustering by time, VACUUM."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.errors import IllegalArgumentException
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from chillflow.errors import ConfigError
from chillflow.storage.delta import CLUSTER_ROWS_PER_FILE, read_table, slice_predicate

#: Delta's default ``delta.deletedFileRetentionDuration`` (1 week).
DEFAULT_RETENTION_HOURS = 168.0
_HOURS = {"week": 168.0, "day": 24.0, "hour": 1.0, "minute": 1 / 60, "second": 1 / 3600}


def retention_floor_hours(spark: SparkSession, path: Path | str) -> float:
    """The shortest retention VACUUM accepts on a table: its ``deletedFileRetentionDuration``."""
    properties = DeltaTable.forPath(spark, str(path)).detail().first()["properties"] or {}
    text = properties.get("delta.deletedFileRetentionDuration", "").lower()
    parts = re.findall(r"(\d+)\s*(week|day|hour|minute|second)s?\b", text)
    return sum(int(n) * _HOURS[unit] for n, unit in parts) if parts else DEFAULT_RETENTION_HOURS


def table_usage(spark: SparkSession, path: Path | str) -> dict[str, int]:
    """Data files and bytes of the current version, and (``stored_*``) in its directory."""
    detail = DeltaTable.forPath(spark, str(path)).detail().first()
    usage = {"files": int(detail["numFiles"]), "bytes": int(detail["sizeInBytes"])}
    root = spark._jvm.org.apache.hadoop.fs.Path(str(path))
    found = root.getFileSystem(spark._jsc.hadoopConfiguration()).listFiles(root, True)
    usage["stored_files"] = usage["stored_bytes"] = 0
    while found.hasNext():
        status = found.next()
        file = status.getPath()
        name, folder = file.getName(), file.getParent().getName()
        if name.endswith(".parquet") and not name.startswith(".") and folder != "_delta_log":
            usage["stored_files"] += 1
            usage["stored_bytes"] += int(status.getLen())
    return usage


def compact(spark: SparkSession, path: Path | str) -> int:
    """Bin-pack each partition's small files into larger ones (OPTIMIZE); files rewritten."""
    result = DeltaTable.forPath(spark, str(path)).optimize().executeCompaction().first()
    return int(result["metrics"]["numFilesRemoved"])


def slices_to_cluster(
    spark: SparkSession, path: Path | str, partition_by: tuple[str, ...]
) -> list[tuple[dict[str, str], int, int]]:
    """The slices not laid out by a clustered write (too big or too small files): rows, bytes."""
    files = read_table(spark, path).groupBy(
        *partition_by, "_metadata.file_path", "_metadata.file_size"
    )
    per_slice = (
        files.count()
        .groupBy(*partition_by)
        .agg(
            F.max("count").alias("largest"),
            F.sum("count").alias("rows"),
            F.sum("file_size").alias("bytes"),
            F.count("*").alias("files"),
        )
    )
    unclustered = (F.col("largest") > CLUSTER_ROWS_PER_FILE) | (
        (F.col("files") > 1) & (F.col("rows") * 4 < F.col("files") * CLUSTER_ROWS_PER_FILE)
    )
    found = per_slice.where(unclustered).orderBy(*partition_by).collect()
    return [({c: row[c] for c in partition_by}, row["rows"], row["bytes"]) for row in found]


def cluster_slice(
    spark: SparkSession,
    path: Path | str,
    slice_: dict[str, str],
    column: str,
    size: tuple[int, int],
) -> int:
    """Rewrite a slice (``size``: rows, bytes) into ranges of ``column``; return files written."""
    rows, size_bytes = size
    ranges = rows // CLUSTER_ROWS_PER_FILE + 1  # ZORDER makes size // maxFileSize of them
    conf = {
        "spark.databricks.delta.optimize.maxFileSize": str(max(1, size_bytes // ranges)),
        "spark.sql.files.maxRecordsPerFile": str(CLUSTER_ROWS_PER_FILE),
    }
    with _session_conf(spark, conf):
        optimize = DeltaTable.forPath(spark, str(path)).optimize()
        result = optimize.where(slice_predicate([slice_])).executeZOrderBy(column).first()
    return int(result["metrics"]["numFilesAdded"])


def vacuum(spark: SparkSession, path: Path | str, retain_hours: float) -> None:
    """Delete the files no version newer than ``retain_hours`` ago references (VACUUM).

    Raises:
        ConfigError: The retention is below the table's ``deletedFileRetentionDuration``.
    """
    try:
        # Otherwise Delta 4 ignores a retention other than 0 in favour of the table's own.
        with _session_conf(
            spark, {"spark.databricks.delta.vacuum.retentionWindowIgnore.enabled": "false"}
        ):
            DeltaTable.forPath(spark, str(path)).vacuum(retain_hours)
    except IllegalArgumentException as exc:
        raise ConfigError(f"VACUUM of {path} refused: {str(exc).splitlines()[0]}") from None


@contextmanager
def _session_conf(spark: SparkSession, values: dict[str, str]) -> Iterator[None]:
    previous = {key: spark.conf.get(key, None) for key in values}
    for key, value in values.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)
