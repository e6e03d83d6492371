"""The aggregate stage end to end: Delta MERGE, full refresh, backfill and the PostgreSQL mart.

Trips go into ``stg.complete_trip`` directly with psycopg2 (the table schema is the contract
with the trips stage), so these tests do not depend on it.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from chispa import assert_df_equality
from psycopg2.extras import execute_values

import chillflow.stages.aggregate as aggregate_stage
from chillflow.api.aggregate import BatchAggregator
from chillflow.errors import DatabaseError
from chillflow.hour_window import HourWindow
from chillflow.schemas import HOURLY_KPIS_DDL, columns, struct
from chillflow.stages.curate import curate
from chillflow.storage.delta import read_table
from chillflow.storage.kpi_store import (
    merge_hourly_kpis,
    overwrite_hourly_kpis,
    read_hourly_kpis,
)
from chillflow.storage.postgres import connect
from chillflow.storage.trip_partitions import create_partition
from tests.conftest import REPO_ROOT
from tests.integration.rawfiles import trip as raw_trip
from tests.integration.rawfiles import write_yellow

STG_COLUMNS = (
    "trip_key",
    "vehicle_id_h",
    "service",
    "pickup_ts",
    "pickup_month",
    "pu_zone_id",
    "payment_type",
    "fare_amount",
    "tip_amount",
    "total_amount",
    "distance_km",
    "duration_min",
    "avg_speed_kmh",
)
KPI_SCHEMA_COLUMNS = columns(HOURLY_KPIS_DDL)
JAN_30 = datetime(2025, 1, 30)


def stg_trip(key, pickup, zone, *, vehicle="veh_1", payment=1, fare=12.5, tip=2.0, total=18.3,
             km=3.2, minutes=12.0, speed=16.0):  # fmt: skip
    return (
        key.ljust(64, "0"),
        vehicle,
        "yellow",
        pickup,
        f"{pickup:%Y-%m}",
        zone,
        payment,
        fare,
        tip,
        total,
        km,
        minutes,
        speed,
    )


def random_trips(prefix, count, first, days, seed):
    """``count`` trips over ``days`` days from ``first``, in four zones, with awkward values."""
    rng = random.Random(seed)
    return [
        stg_trip(
            f"{prefix}{i:05d}",
            first + timedelta(seconds=rng.randrange(days * 86_400)),
            rng.choice((4, 79, 132, 161)),
            vehicle=f"veh_{rng.randrange(40)}",
            payment=rng.choice((1, 1, 2, None)),
            fare=round(rng.uniform(3, 70), 2),
            tip=round(rng.uniform(0, 12), 2),
            total=round(rng.uniform(5, 95), 2),
            km=rng.uniform(0.3, 25),
            minutes=0.0 if i % 50 == 0 else rng.uniform(2, 55),
            speed=None if i % 50 == 0 else rng.uniform(4, 60),
        )
        for i in range(count)
    ]


def hour_of(ts):
    return ts.replace(minute=0, second=0, microsecond=0)


def insert_trips(url, rows):
    with connect(url) as conn, conn.cursor() as cur:
        for service, month in {(row[2], row[4]) for row in rows}:
            create_partition(cur, service, month)
        execute_values(
            cur, f"INSERT INTO stg.complete_trip ({', '.join(STG_COLUMNS)}) VALUES %s", rows
        )


def delete_trips(url, keys):
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM stg.complete_trip WHERE trip_key = ANY(%s)", (list(keys),))
        return cur.rowcount


def write_quarantine(spark, settings, rows):
    """A quarantine table with the columns the KPIs read (the stage selects only those)."""
    frame = spark.createDataFrame(rows, "pickup_ts TIMESTAMP, pu_zone_id INT")
    frame.write.format("delta").mode("overwrite").save(str(settings.tables.quarantine))


def kpi_table(spark, settings):
    """The KPI table's current rows, detached from the table (it may be overwritten later)."""
    rows = read_hourly_kpis(spark, settings.tables.kpis).collect()
    return spark.createDataFrame(rows, struct(HOURLY_KPIS_DDL))


def mart_table(spark, url):
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(KPI_SCHEMA_COLUMNS[:-1])}, computed_at AT TIME ZONE 'UTC'"
            " FROM mart.zone_hourly_kpis"
        )
        rows = cur.fetchall()
    return spark.createDataFrame(rows, struct(HOURLY_KPIS_DDL))


def assert_mart_equals_delta(spark, settings):
    assert_df_equality(
        mart_table(spark, settings.database_url),
        kpi_table(spark, settings),
        ignore_nullable=True,
        ignore_row_order=True,
    )


@pytest.fixture
def aggregator(spark, pg_settings):
    """A BatchAggregator on a fresh lake and an emptied stg/mart/ops."""
    with connect(pg_settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE stg.complete_trip, mart.zone_hourly_kpis, ops.job_run")
    return BatchAggregator(pg_settings, spark)


@pytest.mark.postgres
def test_any_sequence_of_runs_equals_a_full_refresh(spark, aggregator):
    settings, url = aggregator.settings, aggregator.database_url
    trips = random_trips("a", 360, JAN_30, 4, seed=1)  # 2025-01-30 .. 2025-02-02, two months
    insert_trips(url, trips)
    write_quarantine(
        spark,
        settings,
        [(t[3] + timedelta(minutes=1), t[5]) for t in trips[::9]] + [(None, 4), (JAN_30, None)],
    )

    first = aggregator.aggregate_incremental(datetime(2025, 1, 31), 24)
    assert first["rows_inserted"] == first["kpi_rows"] > 0
    assert (first["rows_updated"], first["rows_deleted"]) == (0, 0)
    assert first["window_start"] == "2025-01-31T00:00:00" and first["window_hours"] == 24
    assert_mart_equals_delta(spark, settings)

    backfill = aggregator.aggregate_backfill(date(2025, 1, 30), date(2025, 2, 2))
    assert (backfill["chunks"], backfill["chunks_skipped"]) == (2, 0)
    assert backfill["rows_updated"] == backfill["rows_deleted"] == 0
    assert_mart_equals_delta(spark, settings)

    # Late arrivals (one in a zone-hour that had no trips), and trips deleted upstream: every
    # trip of one zone-hour, so that group must disappear.
    late = random_trips("late", 40, datetime(2025, 1, 31), 2, seed=2)
    late.append(stg_trip("late_new_zone", datetime(2025, 2, 1, 3, 15), 265))
    insert_trips(url, late)
    zone, hour = trips[0][5], hour_of(trips[0][3])
    doomed_group = [t[0] for t in trips if t[5] == zone and hour_of(t[3]) == hour]
    assert delete_trips(url, doomed_group + [trips[1][0], trips[2][0]]) >= len(doomed_group)

    late_run = aggregator.aggregate_incremental(date(2025, 2, 1), 48)
    assert late_run["rows_inserted"] >= 1 and late_run["rows_updated"] >= 1
    assert_mart_equals_delta(spark, settings)
    for day in (date(2025, 1, 30), date(2025, 2, 2)):
        aggregator.aggregate_incremental(day, 24)
    incremental = kpi_table(spark, settings)

    full = aggregator.aggregate_full_refresh()

    refreshed = kpi_table(spark, settings)
    assert_df_equality(
        incremental,
        refreshed,
        ignore_nullable=True,
        ignore_row_order=True,
        ignore_columns=["computed_at"],
    )
    assert full["rows_inserted"] == full["kpi_rows"] == refreshed.count()
    assert full["rows_deleted"] == incremental.count()
    assert refreshed.where("zone_id = 265").count() == 1
    assert (
        refreshed.where(f"zone_id = {zone} AND hour_ts = '{hour:%Y-%m-%d %H:%M:%S}'").count() == 0
    )
    assert refreshed.where("outlier_rate > 0").count() > 0
    assert_mart_equals_delta(spark, settings)


@pytest.mark.postgres
def test_rerun_changes_nothing_and_keeps_computed_at(spark, aggregator):
    settings = aggregator.settings
    insert_trips(aggregator.database_url, random_trips("r", 120, JAN_30, 1, seed=3))
    first = aggregator.aggregate_incremental(JAN_30)
    before = kpi_table(spark, settings)

    again = aggregator.aggregate_incremental(JAN_30)

    assert (again["rows_inserted"], again["rows_updated"], again["rows_deleted"]) == (0, 0, 0)
    assert again["table_version"] == first["table_version"]
    assert again["kpi_rows"] == first["kpi_rows"] == before.count()
    assert_df_equality(kpi_table(spark, settings), before, ignore_row_order=True)
    assert_mart_equals_delta(spark, settings)


@pytest.mark.postgres
def test_status_on_a_missing_table_then_an_empty_window(spark, aggregator):
    empty = aggregator.status()

    assert empty["rows"] == empty["zones"] == empty["mart_rows"] == 0
    assert (empty["first_hour"], empty["last_hour"], empty["last_run"]) == (None, None, None)
    assert aggregator.get_kpi_count() == 0
    assert aggregator.get_date_range() == (None, None)

    stats = aggregator.aggregate_incremental(date(2025, 3, 1))

    assert stats["kpi_rows"] == stats["rows_inserted"] == stats["hours_processed"] == 0
    assert stats["zones_affected"] == stats["mart_rows_copied"] == 0
    after = aggregator.status()
    assert after["rows"] == 0
    assert after["last_run"]["status"] == "succeeded"
    assert after["last_run"]["period"] == "2025-03-01T00/2025-03-02T00"


@pytest.mark.postgres
def test_the_default_day_is_yesterday_on_the_data_wall_clock(spark, aggregator):
    # A zone whose date differs from UTC's now: 14 hours ahead after 10:00 UTC, 12 behind before.
    zone = ZoneInfo("Etc/GMT-14" if datetime.now(timezone.utc).hour >= 10 else "Etc/GMT+12")
    curate = replace(aggregator.settings.curate, data_time_zone=zone.key)
    settings = replace(aggregator.settings, curate=curate)
    today = datetime.now(zone).date()

    stats = BatchAggregator(settings, spark).aggregate_incremental()

    assert stats["window_end"] == f"{today}T00:00:00"
    assert stats["window_start"] == f"{today - timedelta(days=1)}T00:00:00"


def terminate_backends_running(url, text, stop):
    """End every other session of the database whose last query holds ``text``, until ``stop``."""
    with connect(url) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname ="
                    " current_database() AND pid <> pg_backend_pid() AND query LIKE %s",
                    (f"%{text}%",),
                )
                time.sleep(0.005)


@pytest.mark.postgres
def test_a_connection_lost_while_reading_the_trips_names_the_read_and_the_server(aggregator):
    url = aggregator.database_url
    insert_trips(url, random_trips("t", 30_000, JAN_30, 2, seed=5))
    stop = threading.Event()
    # The quoted column is in the queries reading rows, not in the one reading the schema.
    reads = (url, '"pickup_utc"', stop)
    killer = threading.Thread(target=terminate_backends_running, args=reads)
    killer.start()
    try:
        with pytest.raises(DatabaseError) as raised:
            aggregator.aggregate_incremental(JAN_30, 48)
    finally:
        stop.set()
        killer.join()

    assert str(raised.value).startswith(
        f"reading stg.complete_trip failed on PostgreSQL at {url.server()}: "
        "terminating connection due to administrator command"
    )
    assert url.password not in str(raised.value)


@pytest.mark.postgres
def test_status_reports_range_zones_and_the_last_run(spark, aggregator):
    insert_trips(
        aggregator.database_url,
        [
            stg_trip("s1", datetime(2025, 1, 30, 6, 59, 59), 4),
            stg_trip("s2", datetime(2025, 1, 30, 7, 0), 4),
            stg_trip("s3", datetime(2025, 1, 30, 22, 10), 161),
        ],
    )
    run = aggregator.aggregate_incremental(JAN_30)

    status = aggregator.status()

    assert (run["kpi_rows"], run["hours_processed"], run["zones_affected"]) == (3, 3, 2)
    assert (status["rows"], status["zones"], status["mart_rows"]) == (3, 2, 3)
    assert (status["first_hour"], status["last_hour"]) == (
        "2025-01-30T06:00:00",
        "2025-01-30T22:00:00",
    )
    assert status["last_run"]["run_id"] == run["run_id"]
    assert status["last_run"]["status"] == "succeeded"
    assert aggregator.get_date_range() == (datetime(2025, 1, 30, 6), datetime(2025, 1, 30, 22))


@pytest.mark.postgres
def test_until_refreshes_the_hours_before_it_and_nothing_after(spark, aggregator):
    insert_trips(
        aggregator.database_url,
        [
            stg_trip("u1", datetime(2025, 3, 10, 7, 59, 59), 4),
            stg_trip("u2", datetime(2025, 3, 10, 8, 0), 4),
            stg_trip("u3", datetime(2025, 3, 10, 9, 59, 59), 161),
            stg_trip("u4", datetime(2025, 3, 10, 10, 0), 161),
        ],
    )

    run = aggregator.aggregate_until(datetime(2025, 3, 10, 10), 2)

    assert (run["window_start"], run["window_end"], run["window_hours"]) == (
        "2025-03-10T08:00:00",
        "2025-03-10T10:00:00",
        2,
    )
    hours = kpi_table(spark, aggregator.settings).select("zone_id", "hour_ts", "trips").collect()
    assert sorted(tuple(row) for row in hours) == [
        (4, datetime(2025, 3, 10, 8), 1),
        (161, datetime(2025, 3, 10, 9), 1),
    ]
    assert_mart_equals_delta(spark, aggregator.settings)


@pytest.mark.postgres
def test_backfill_resumes_after_a_failed_chunk(spark, aggregator, monkeypatch):
    settings, url = aggregator.settings, aggregator.database_url
    insert_trips(url, random_trips("b", 150, datetime(2025, 1, 20), 25, seed=4))
    publish = aggregate_stage.replace_mart_rows
    calls = []

    def fail_second_chunk(conn, lines, window):
        calls.append(window)
        if len(calls) == 2:
            raise RuntimeError("mart unavailable")
        return publish(conn, lines, window)

    monkeypatch.setattr(aggregate_stage, "replace_mart_rows", fail_second_chunk)
    with pytest.raises(RuntimeError, match="mart unavailable"):
        aggregator.aggregate_backfill(date(2025, 1, 20), date(2025, 2, 13))
    monkeypatch.setattr(aggregate_stage, "replace_mart_rows", publish)

    resumed = aggregator.aggregate_backfill(date(2025, 1, 20), date(2025, 2, 13))

    assert (resumed["chunks"], resumed["chunks_skipped"], resumed["attempt"]) == (2, 1, 2)
    assert [run["window_start"] for run in resumed["runs"]] == ["2025-02-01T00:00:00"]
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT job, status FROM ops.job_run ORDER BY id")
        assert cur.fetchall() == [
            ("aggregate_backfill", "succeeded"),
            ("aggregate", "succeeded"),
            ("aggregate", "failed"),
            ("aggregate", "succeeded"),
        ]
    assert_mart_equals_delta(spark, settings)

    again = aggregator.aggregate_backfill(date(2025, 1, 20), date(2025, 2, 13))

    assert again["chunks_skipped"] == 0 and again["attempt"] == 1
    assert again["rows_inserted"] == again["rows_updated"] == again["rows_deleted"] == 0


@pytest.mark.postgres
def test_curated_source_adds_vehicle_keys_and_outlier_rates(spark, aggregator, tmp_path):
    settings = aggregator.settings
    hour = datetime(2025, 1, 15, 8)
    rows = [raw_trip(hour + timedelta(minutes=m)) for m in (0, 10, 20)]  # zone 161
    rows += [
        raw_trip(hour + timedelta(minutes=5), total=-12.0),  # quarantined, zone 161
        raw_trip(hour + timedelta(hours=1), pu=4),
    ]
    curate(spark, settings, write_yellow(tmp_path / "yellow_tripdata_2025-01.parquet", rows))

    stats = aggregator.aggregate_incremental(date(2025, 1, 15), source="curated")

    assert (stats["source"], stats["kpi_rows"], stats["rows_inserted"]) == ("curated", 2, 2)
    kpis = {r["zone_id"]: r for r in read_table(spark, settings.tables.kpis).collect()}
    assert (kpis[161]["trips"], kpis[161]["outlier_rate"]) == (3, 25.0)
    assert kpis[161]["unique_vehicles"] >= 1
    assert (kpis[4]["trips"], kpis[4]["outlier_rate"]) == (1, 0.0)
    assert_mart_equals_delta(spark, settings)


def test_merge_rewrites_only_the_files_of_changed_days(spark, settings):
    """Delta's commit metrics and log prove that a one-day MERGE leaves other days' files alone."""
    path = settings.tables.kpis
    computed = datetime(2025, 1, 1, 12)

    def kpi(zone, hour_ts, trips):
        return (zone, hour_ts, trips, 10.0, 1.0, 20.0, 3.0, 9.0, 50.0, 1, 15.0, None, computed)

    days = [datetime(2025, 1, d) for d in (1, 2, 3)]
    rows = [kpi(zone, day + timedelta(hours=h), 2) for day in days for zone in (1, 2)
            for h in (0, 13)]  # fmt: skip
    overwrite_hourly_kpis(spark, path, spark.createDataFrame(rows, struct(HOURLY_KPIS_DDL)))
    files_before = set(read_table(spark, path).inputFiles())
    assert len(files_before) == 3  # one file per day

    day2 = HourWindow(days[1], days[2])
    changed = [
        kpi(1, days[1], 5),  # updated
        kpi(1, days[1] + timedelta(hours=13), 2),  # unchanged
        kpi(2, days[1], 2),  # unchanged; (2, 13:00) is gone: deleted
        kpi(3, days[1] + timedelta(hours=7), 1),  # inserted
        kpi(1, days[0], 99),  # outside the window: ignored
    ]
    result = merge_hourly_kpis(
        spark, path, spark.createDataFrame(changed, struct(HOURLY_KPIS_DDL)), day2
    )

    assert (result.rows_inserted, result.rows_updated, result.rows_deleted) == (1, 1, 1)
    metrics = result.metrics
    assert metrics["numTargetFilesRemoved"] == "1"
    assert metrics["numTargetRowsCopied"] == "2"  # the day-2 file's unchanged rows only
    commit = Path(path) / "_delta_log" / f"{result.version:020d}.json"
    actions = [json.loads(line) for line in commit.read_text().splitlines()]
    removed = [a["remove"]["path"] for a in actions if "remove" in a]
    added = [a["add"]["path"] for a in actions if "add" in a]
    assert [p.split("/")[0] for p in removed + added] == ["hour_date=2025-01-02"] * 2
    files_after = set(read_table(spark, path).inputFiles())
    assert {f for f in files_before if "2025-01-02" not in f} <= files_after

    rerun = merge_hourly_kpis(
        spark, path, spark.createDataFrame(changed, struct(HOURLY_KPIS_DDL)), day2
    )

    assert (rerun.rows_inserted, rerun.rows_updated, rerun.rows_deleted) == (0, 0, 0)
    assert rerun.metrics.get("numTargetFilesRemoved", "0") == "0"
    table = {(r["zone_id"], r["hour_ts"]): r["trips"] for r in read_table(spark, path).collect()}
    assert table[(1, days[1])] == 5 and table[(1, days[0])] == 2
    assert (2, days[1] + timedelta(hours=13)) not in table
    assert table[(3, days[1] + timedelta(hours=7))] == 1


@pytest.mark.postgres
def test_cli_and_spark_submit_run_status_and_argument_errors(tmp_path, database_url):
    env = {
        **os.environ,
        "CHILLFLOW_DATA_DIR": str(tmp_path / "data"),
        "SPARK_MASTER": "local[2]",
        "DATABASE_URL": database_url.url(),
        "LOG_LEVEL": "WARNING",
        "PYTHON": sys.executable,
    }

    def run(*args):
        return subprocess.run(
            args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
        )

    def chillflow(*args):
        return run(sys.executable, "-m", "chillflow", "aggregate", *args)

    bad_date = chillflow("run", "--date", "2025-13-01")
    both = chillflow("run", "--full-refresh", "--date", "2025-01-01")
    bad_source = chillflow("backfill", "--start", "2025-01-01", "--end", "2025-01-02",
                           "--source", "s3")  # fmt: skip
    bad_until = chillflow("run", "--until", "2025-03-10 10")
    two_ends = chillflow("run", "--until", "2025-03-10T10", "--date", "2025-03-10")

    assert bad_date.returncode == 2 and "invalid --date '2025-13-01'" in bad_date.stderr
    assert both.returncode == 2 and "--full-refresh recomputes every hour" in both.stderr
    assert bad_source.returncode == 2 and "--source='s3'" in bad_source.stderr
    assert bad_until.returncode == 2
    assert "invalid --until '2025-03-10 10': expected YYYY-MM-DDTHH" in bad_until.stderr
    assert two_ends.returncode == 2 and "--until and --date both set" in two_ends.stderr

    done = chillflow("run", "--date", "2025-03-01", "--lookback-hours", "48", "--json")

    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads(done.stdout)
    assert (stats["window_start"], stats["window_end"]) == (
        "2025-02-28T00:00:00",
        "2025-03-02T00:00:00",
    )
    assert set(stats) >= {"hours_processed", "zones_affected", "rows_inserted", "rows_updated",
                          "rows_deleted", "duration_sec", "run_id"}  # fmt: skip

    status = run("bash", str(REPO_ROOT / "spark-submit.sh"), "aggregate", "status", "--json")

    assert status.returncode == 0, status.stderr[-3000:]
    report = json.loads(status.stdout.strip().splitlines()[-1])
    assert report["last_run"]["run_id"] == stats["run_id"]
    assert report["last_run"]["status"] == "succeeded"
