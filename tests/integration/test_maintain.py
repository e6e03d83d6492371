"""Curated months clustered by pickup time, and ``maintain`` on real Delta tables."""

from __future__ import annotations

import os
from datetime import datetime

import pytest
from pyspark.errors import AnalysisException
from pyspark.sql import functions as F

from chillflow.errors import BusyError, ConfigError
from chillflow.generator import generate_month
from chillflow.stages.curate import curate
from chillflow.stages.maintain import maintain
from chillflow.storage import delta, maintenance
from chillflow.storage.delta import read_table, replace_slices, table_version
from chillflow.storage.ledger import list_runs
from chillflow.storage.locks import KPI_LOCK, TABLE_LOCK, AdvisoryLocks, hold, lake_locks
from chillflow.storage.postgres import connect
from tests.conftest import run_chillflow

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

PARTITION = ("service", "month")
JAN = {"service": "yellow", "month": "2025-01"}
FEB = {"service": "yellow", "month": "2025-02"}
#: Rows per clustered file in these tests: a tenth of the product's, with a tenth of the rows,
#: gives the same files per month, each spanning the same hours.
ROWS_PER_FILE = 10_000


@pytest.fixture(autouse=True)
def small_files(monkeypatch):
    """Cluster files of ``ROWS_PER_FILE`` rows, wherever the curate and maintain read the size."""
    for module in (delta, maintenance):
        monkeypatch.setattr(module, "CLUSTER_ROWS_PER_FILE", ROWS_PER_FILE)


def trips(spark, rows: int, month: str, tasks: int):
    """``rows`` trips spread over the month in random order, in ``tasks`` partitions."""
    start = datetime.fromisoformat(f"{month}-01")
    seconds = 28 * 86400
    return (
        spark.range(rows, numPartitions=tasks)
        .select(
            F.col("id"),
            F.lit("yellow").alias("service"),
            F.lit(month).alias("month"),
            (F.lit(start) + F.make_dt_interval(secs=F.rand(7) * seconds)).alias("pickup_ts"),
        )
        .orderBy(F.rand(11))
        .repartition(tasks)
    )


def file_ranges(spark, path, slice_=JAN):
    """Per file of a slice: rows and the hours between its first and last pickup."""
    files = (
        read_table(spark, path)
        .where((F.col("service") == slice_["service"]) & (F.col("month") == slice_["month"]))
        .groupBy("_metadata.file_path")
        .agg(F.count("*").alias("rows"), F.min("pickup_ts").alias("lo"))
        .join(
            read_table(spark, path)
            .groupBy("_metadata.file_path")
            .agg(F.max("pickup_ts").alias("hi")),
            "file_path",
        )
        .collect()
    )
    return {r["file_path"]: (r["rows"], (r["hi"] - r["lo"]).total_seconds() / 3600) for r in files}


def test_curate_writes_a_month_as_files_of_a_few_days_each(spark, settings, tmp_path):
    raw = generate_month(tmp_path / "yellow_tripdata_2025-01.parquet", rows=25_000, seed=3)

    stats = curate(spark, settings, raw)

    ranges = file_ranges(spark, settings.tables.curated)
    assert sum(rows for rows, _ in ranges.values()) == stats["output_rows"]
    assert len(ranges) == 3  # ~24,400 curated rows, 10,000 per file: a third of the month each
    assert all(rows <= ROWS_PER_FILE and hours < 14 * 24 for rows, hours in ranges.values()), ranges
    assert sum(hours for _, hours in ranges.values()) < 31 * 24


def test_maintain_compacts_clusters_and_keeps_every_row(spark, pg_settings):
    tables = pg_settings.tables
    replace_slices(trips(spark, 25_000, "2025-01", 2), tables.curated, [JAN], PARTITION)
    clustered = trips(spark, 1_000, "2025-02", 1)
    replace_slices(clustered, tables.curated, [FEB], PARTITION, "pickup_ts")
    kpis = spark.range(40).select(F.col("id"), F.lit("2025-01-15").alias("hour_date"))
    for part in range(4):
        commit = kpis.where(F.col("id") % 4 == part).coalesce(1).write.format("delta")
        commit.mode("append").partitionBy("hour_date").save(str(tables.kpis))
    curated_before = read_table(spark, tables.curated).orderBy("id").collect()
    kpis_before = read_table(spark, tables.kpis).orderBy("id").collect()
    feb_files = set(file_ranges(spark, tables.curated, FEB))

    stats = maintain(spark, pg_settings, pg_settings.database_url)

    assert set(stats["tables"]) == {"curated", "kpis"}
    kpi_stats, curated_stats = stats["tables"]["kpis"], stats["tables"]["curated"]
    assert (kpi_stats["before"]["files"], kpi_stats["after"]["files"]) == (4, 1)
    assert kpi_stats["files_compacted"] == 4
    assert curated_stats["clustered_slices"] == [JAN]
    assert curated_stats["before"]["files"] == 3
    jan = file_ranges(spark, tables.curated)
    assert len(jan) >= 3
    assert all(rows <= ROWS_PER_FILE and hours < 12 * 24 for rows, hours in jan.values()), jan
    assert set(file_ranges(spark, tables.curated, FEB)) == feb_files
    assert read_table(spark, tables.curated).orderBy("id").collect() == curated_before
    assert read_table(spark, tables.kpis).orderBy("id").collect() == kpis_before
    # Within the 168 h retention VACUUM keeps the replaced files: the old version still reads.
    assert read_table(spark, tables.kpis, version=0).count() == 10
    assert kpi_stats["after"]["stored_files"] > kpi_stats["after"]["files"]
    with connect(pg_settings.database_url) as conn:
        (run,) = [r for r in list_runs(conn, job="maintain") if r.run_id == stats["run_id"]]
    assert (run.status, run.period) == ("succeeded", "lake")


def test_vacuum_deletes_files_past_the_table_retention(spark, pg_settings):
    kpis = str(pg_settings.tables.kpis)
    for part in range(3):
        spark.range(part * 10, part * 10 + 10, numPartitions=1).write.format("delta").mode(
            "append"
        ).save(kpis)
    spark.sql(
        f"ALTER TABLE delta.`{kpis}` "
        "SET TBLPROPERTIES ('delta.deletedFileRetentionDuration' = 'interval 0 hours')"
    )

    stats = maintain(spark, pg_settings, pg_settings.database_url, retain_hours=0)

    before, after = stats["tables"]["kpis"]["before"], stats["tables"]["kpis"]["after"]
    assert (before["stored_files"], after["stored_files"], after["files"]) == (3, 1, 1)
    assert read_table(spark, kpis).count() == 30
    # Delta refuses time travel past the retention, whose files VACUUM may have deleted.
    with pytest.raises(AnalysisException, match="TIME_TRAVEL_BEYOND_DELETED_FILE_RETENTION"):
        read_table(spark, kpis, version=2).collect()


def test_vacuum_lists_a_table_in_a_few_tasks(spark, pg_settings):
    kpis = str(pg_settings.tables.kpis)
    for part in range(2):
        spark.range(part, part + 1).write.format("delta").mode("append").save(kpis)
    context, group = spark.sparkContext, "test-vacuum-tasks"
    context.setJobGroup(group, "VACUUM of a two-file table")
    try:
        maintenance.vacuum(spark, kpis, 168)
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)
    tracker = context.statusTracker()
    stages = [
        tracker.getStageInfo(stage)
        for job in tracker.getJobIdsForGroup(group)
        for stage in tracker.getJobInfo(job).stageIds
    ]
    tasks = [stage.numTasks for stage in stages if stage is not None]
    # Spark's default lists in 10,000 tasks: 50 s of scheduling on two cores for three files.
    assert tasks and max(tasks) <= 16, tasks


def test_a_retention_below_the_tables_is_refused_before_any_change(spark, pg_settings):
    kpis = str(pg_settings.tables.kpis)
    for part in range(2):
        spark.range(part, part + 1).write.format("delta").mode("append").save(kpis)

    with pytest.raises(ConfigError, match=r"--retain-hours 167 is below the 168 h the kpis"):
        maintain(spark, pg_settings, pg_settings.database_url, retain_hours=167)
    assert table_version(spark, kpis) == 1
    # NaN compares false with every floor: a `<` check would let it through to compaction.
    with pytest.raises(ConfigError, match=r"--retain-hours nan is below the 168 h the kpis"):
        maintain(spark, pg_settings, pg_settings.database_url, retain_hours=float("nan"))
    assert table_version(spark, kpis) == 1

    env = {
        **os.environ,
        "DATABASE_URL": pg_settings.database_url.url(),
        "CHILLFLOW_LAKE_DIR": str(pg_settings.lake_dir),
    }
    cli = run_chillflow("maintain", "--retain-hours", "24", "--json", env=env, timeout=300)
    assert cli.returncode == 2, cli.stderr[-2000:]
    assert cli.stdout == ""
    assert (
        cli.stderr.strip()
        .splitlines()[-1]
        .startswith("error: --retain-hours 24 is below the 168 h the kpis table")
    )
    assert table_version(spark, kpis) == 1


def test_maintain_waits_for_no_writer_or_reader_of_its_tables(spark, pg_settings):
    spark.range(3).write.format("delta").save(str(pg_settings.tables.kpis))
    url = pg_settings.database_url

    aggregate = AdvisoryLocks(url, "aggregate run r1 (pid 1 on h)")
    with (
        hold(aggregate, [(KPI_LOCK, False)], what="kpis", writer=True),
        pytest.raises(BusyError, match="KPI table is locked by aggregate run r1"),
    ):
        maintain(spark, pg_settings, url)
    full_refresh = lake_locks(pg_settings.tables.curated, url, "aggregate reading (pid 1)")
    with (
        hold(full_refresh, [(TABLE_LOCK, False)], what="every month", writer=False),
        pytest.raises(BusyError, match="curated tables is locked by aggregate reading"),
    ):
        maintain(spark, pg_settings, url)
    assert table_version(spark, pg_settings.tables.kpis) == 0
