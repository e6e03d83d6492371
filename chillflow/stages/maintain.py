"""The maintain stage: compact, re-cluster and VACUUM every lake table under its writers' locks."""

from __future__ import annotations

import time
from typing import Any

from pyspark.sql import SparkSession

from chillflow.database_url import DatabaseUrl
from chillflow.errors import ConfigError
from chillflow.logs import bound_run, new_run_id
from chillflow.schemas import CLUSTER_BY, MONTH_PARTITION
from chillflow.settings import Settings
from chillflow.storage import ledger
from chillflow.storage.delta import table_exists
from chillflow.storage.ledger import MAINTAIN_JOB
from chillflow.storage.locks import KPI_LOCK, TABLE_LOCK, AdvisoryLocks, hold, holder, lake_locks
from chillflow.storage.maintenance import (
    DEFAULT_RETENTION_HOURS,
    cluster_slice,
    compact,
    retention_floor_hours,
    slices_to_cluster,
    table_usage,
    vacuum,
)

#: Tables whose slices the curate lays out by pickup time: a plain compaction would merge a
#: month's day files into one, so only slices that lack the layout are rewritten, clustered.
_CLUSTERED = ("curated", "quarantine")


def maintain(
    spark: SparkSession,
    settings: Settings,
    database_url: DatabaseUrl,
    retain_hours: float = DEFAULT_RETENTION_HOURS,
    *,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Compact, re-cluster and VACUUM the curated, quarantine, DQ-metrics and KPI tables.

    Holds the curated tables' lock and the KPI lock for the whole run, recorded in the ledger.
    VACUUM deletes files no version of the last ``retain_hours`` needs.

    Returns:
        run_id, retain_hours, duration_sec and per table (``tables``): path, before and after
        (:func:`table_usage`), files_compacted, clustered_slices.

    Raises:
        ConfigError: ``retain_hours`` is below a table's ``delta.deletedFileRetentionDuration``.
        BusyError: A curate or an aggregate holds one of the tables.
    """
    run_id = run_id or new_run_id()
    started = time.monotonic()
    present = {
        name: path
        for name in ("curated", "quarantine", "dq_metrics", "kpis")
        if table_exists(spark, path := getattr(settings.tables, name))
    }
    for name, path in present.items():
        floor = retention_floor_hours(spark, path)
        if not retain_hours >= floor:  # NaN too, which is neither below nor above
            raise ConfigError(
                f"--retain-hours {retain_hours:g} is below the {floor:g} h the {name} table "
                f"{path} keeps removed files for (delta.deletedFileRetentionDuration): VACUUM "
                f"would delete files that readers of recent versions need; use {floor:g} or more"
            )
    name_run = holder(MAINTAIN_JOB, f"run {run_id}")
    lake = lake_locks(settings.tables.curated, database_url, name_run)
    kpi = AdvisoryLocks(database_url, name_run)
    with (
        bound_run(MAINTAIN_JOB, run_id, retain_hours=retain_hours) as log,
        hold(lake, [(TABLE_LOCK, False)], what="the curated tables", writer=True),
        hold(kpi, [(KPI_LOCK, False)], what="the KPI table", writer=True),
        ledger.recorded_run(database_url, MAINTAIN_JOB, "lake", run_id) as record,
    ):
        results = {}
        for name, path in present.items():
            before = table_usage(spark, path)
            clustered, compacted = [], 0
            if name in _CLUSTERED:
                for slice_, rows, size in slices_to_cluster(spark, path, MONTH_PARTITION):
                    cluster_slice(spark, path, slice_, CLUSTER_BY, (rows, size))
                    clustered.append(slice_)
            else:
                compacted = compact(spark, path)
            vacuum(spark, path, retain_hours)
            after = table_usage(spark, path)
            results[name] = {
                "path": str(path),
                "before": before,
                "after": after,
                "files_compacted": compacted,
                "clustered_slices": clustered,
            }
            log.info("maintain.table", table=name, **results[name])
        duration = round(time.monotonic() - started, 3)
        stats = {
            "run_id": run_id,
            "retain_hours": retain_hours,
            "tables": results,
            "duration_sec": duration,
        }
        record.succeeded(stats, rows_read=None, rows_written=None)
        log.info("maintain.finished", duration_sec=duration)
        return stats
