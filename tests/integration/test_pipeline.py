"""``pipeline month``: the three stages in one Spark application, each with its result and run."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import datetime, timezone

import pytest
from chispa import assert_df_equality

from chillflow.batch import MonthlyPipeline
from chillflow.generator import generate_month
from chillflow.hour_window import HourWindow
from chillflow.stages.aggregate import aggregate_window
from chillflow.storage.delta import read_table
from chillflow.storage.locks import AdvisoryLocks
from chillflow.storage.postgres import connect
from tests.conftest import run_chillflow
from tests.integration.rawfiles import trip, write_yellow

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

#: January and the day either side, where the January file's quarantined pickups count.
JANUARY = HourWindow(datetime(2024, 12, 31), datetime(2025, 2, 2))


def _stage_runs(database_url: str, since: datetime) -> list[tuple[str, str, str]]:
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT job, period, status FROM ops.job_run WHERE started_at >= %s"
            " AND job IN ('curate', 'process_trips', 'aggregate') ORDER BY id",
            (since,),
        )
        return cur.fetchall()


def test_the_months_kpis_from_curated_equal_those_from_the_loaded_trips(
    spark, pg_settings, tmp_path
):
    raw = generate_month(tmp_path / "yellow_tripdata_2025-01.parquet", rows=3000, seed=7)
    since = datetime.now(timezone.utc)

    result = MonthlyPipeline(pg_settings, spark, pg_settings.database_url).run_month(raw)

    assert (result["month"], result["services"]) == ("2025-01", ["yellow"])
    assert set(result["timings_sec"]) == {
        "jvm_start", "curate", "process_trips", "aggregate", "total",
    }  # fmt: skip
    assert result["aggregate"]["source"] == "curated"
    assert result["aggregate"]["trips"] == result["process_trips"]["postgres_rows"] > 2500
    assert _stage_runs(pg_settings.database_url, since) == [
        ("curate", "yellow/2025-01", "succeeded"),
        ("process_trips", "yellow/2025-01", "succeeded"),
        ("aggregate", JANUARY.label(), "succeeded"),
    ]
    from_postgres = dataclasses.replace(
        pg_settings,
        tables=dataclasses.replace(pg_settings.tables, kpis=tmp_path / "kpis_from_postgres"),
    )
    aggregate_window(spark, from_postgres, pg_settings.database_url, JANUARY, source="postgres")
    expected, actual = (
        read_table(spark, s.tables.kpis).drop("computed_at").orderBy("hour_ts", "zone_id")
        for s in (from_postgres, pg_settings)
    )
    assert_df_equality(actual, expected, ignore_nullable=True)


def test_a_months_kpis_count_its_quarantined_pickups_of_the_day_before_the_month(
    spark, pg_settings, tmp_path
):
    december = [trip(datetime(2024, 12, 31, 23, 30)), trip(datetime(2024, 12, 31, 23, 40))]
    # The January file's pickup at 23:58 on New Year's Eve is quarantined (pickup_in_file_month).
    january = [trip(datetime(2025, 1, 1, 0, 10)), trip(datetime(2024, 12, 31, 23, 58))]
    pipeline = MonthlyPipeline(pg_settings, spark, pg_settings.database_url)

    for month, rows in (("2024-12", december), ("2025-01", january)):
        pipeline.run_month(write_yellow(tmp_path / f"yellow_tripdata_{month}.parquet", rows))

    kpis = read_table(spark, pg_settings.tables.kpis).collect()
    assert {(row.hour_ts, row.zone_id, row.trips): row.outlier_rate for row in kpis} == {
        (datetime(2024, 12, 31, 23), 161, 2): pytest.approx(100 / 3),
        (datetime(2025, 1, 1, 0), 161, 1): 0.0,
    }


# --- the command line: one process each ------------------------------------------------------


@pytest.fixture
def january(tmp_path):
    """Five good trips in three (hour, zone) cells and one without timestamps."""
    rows = [
        trip(datetime(2025, 1, 10, 8, 5)),
        trip(datetime(2025, 1, 10, 8, 40), pu=162),
        trip(datetime(2025, 1, 10, 8, 50)),
        trip(datetime(2025, 1, 20, 23, 15), pu=162),
        trip(datetime(2025, 1, 20, 23, 30), pu=162),
        trip(None),
    ]
    return write_yellow(tmp_path / "landing" / "yellow_tripdata_2025-01.parquet", rows)


def _run_pipeline(raw, pg_settings, tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CHILLFLOW_", "SPARK_"))},
        "DATABASE_URL": pg_settings.database_url.url(),
        "CHILLFLOW_DATA_DIR": str(tmp_path / "data"),
        "SPARK_MASTER": "local[2]",
        "LOG_LEVEL": "INFO",
    }
    return run_chillflow("pipeline", "month", str(raw), "--json", env=env, timeout=600)


def test_cli_runs_every_stage_and_prints_each_result(january, pg_settings, tmp_path):
    done = _run_pipeline(january, pg_settings, tmp_path)

    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = done.stdout.splitlines()
    result = json.loads(line)
    curate, trips, kpis = result["curate"], result["process_trips"], result["aggregate"]
    assert (curate["input_rows"], curate["output_rows"], curate["quarantined_rows"]) == (6, 5, 1)
    assert (trips["inserted"], trips["updated"], trips["postgres_rows"]) == (5, 0, 5)
    assert (kpis["trips"], kpis["kpi_rows"], kpis["hours_processed"]) == (5, 3, 2)
    assert (kpis["window_start"], kpis["window_end"]) == (
        "2024-12-31T00:00:00",
        "2025-02-02T00:00:00",
    )
    assert all(result["timings_sec"][stage] > 0 for stage in ("jvm_start", "curate", "aggregate"))
    with connect(pg_settings.database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT zone_id, hour_ts, trips FROM mart.zone_hourly_kpis"
            " WHERE hour_ts >= '2025-01-01' AND hour_ts < '2025-02-01' ORDER BY hour_ts, zone_id"
        )
        assert cur.fetchall() == [
            (161, datetime(2025, 1, 10, 8), 2),
            (162, datetime(2025, 1, 10, 8), 1),
            (162, datetime(2025, 1, 20, 23), 2),
        ]


def test_cli_names_the_failing_stage_and_runs_none_after_it(january, pg_settings, tmp_path):
    since = datetime.now(timezone.utc)
    other_load = AdvisoryLocks(pg_settings.database_url, "process_trips run other (pid 1 on h)")
    assert other_load.try_lock("process_trips|yellow/2025-01")
    try:
        done = _run_pipeline(january, pg_settings, tmp_path)
    finally:
        other_load.close()

    assert done.returncode == 10, done.stderr[-3000:]
    assert done.stdout == ""
    assert done.stderr.strip().splitlines()[-1] == (
        "error: stage process_trips failed: process-trips of yellow/2025-01 is locked by "
        "process_trips run other (pid 1 on h); retry when that run has finished"
    )
    assert _stage_runs(pg_settings.database_url, since) == [
        ("curate", "yellow/2025-01", "succeeded")
    ]
