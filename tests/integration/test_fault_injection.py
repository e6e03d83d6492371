"""kill -9 at every commit point of the pipeline; a rerun converges to the state of a clean run.

Each point kills a real ``python -m chillflow`` process group (the driver and its JVM) with
SIGKILL: a failpoint (``CHILLFLOW_FAILPOINT``) where the point lies between two commits, or the
test itself while Spark writes the curated table's files. The next run of the same stage
must leave exactly the tables of a clean reference run (one small generated month, computed
once in this process), leave no lock or ``running`` ledger row behind, and duplicate nothing.
The reruns run in this process through the stage functions: what they prove (the kernel or the
server released the dead run's locks, its ledger row is marked abandoned, the tables converge)
does not depend on a process boundary of their own.

The tests run in order on one lake and one database, each starting from the state the previous
one converged to, which is the reference state.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pytest
from chispa import assert_df_equality
from psycopg2 import sql
from pyspark.sql import DataFrame

from chillflow.database_url import DatabaseUrl
from chillflow.failpoints import ENV as FAILPOINT_ENV
from chillflow.generator import generate_month
from chillflow.settings import Settings, TablePaths
from chillflow.stages.aggregate import aggregate_backfill, aggregate_until
from chillflow.stages.curate import curate
from chillflow.stages.trips import process_trips
from chillflow.storage.delta import read_table
from chillflow.storage.kpi_mart import MART_COLUMNS
from chillflow.storage.locks import FileLocks
from chillflow.storage.postgres import connect, init_schema
from tests.conftest import REPO_ROOT, create_database, drop_database

pytestmark = pytest.mark.postgres

MONTH = "2025-02"
BACKFILL = ("--start", "2025-02-01", "--end", "2025-03-10")
KILLED = -signal.SIGKILL
CURATE_TABLES = ("curated", "quarantine", "dq_metrics")
KPI_COLUMNS = [c for c in MART_COLUMNS if c != "computed_at"]


@dataclass(frozen=True)
class Pipeline:
    """A lake and a database the pipeline runs on."""

    settings: Settings
    url: DatabaseUrl


def pipeline_settings(base: Settings, lake: Path, url: DatabaseUrl) -> Settings:
    return dataclasses.replace(
        base,
        lake_dir=lake,
        database_url=url,
        tables=TablePaths(
            curated=lake / "curated/trips",
            quarantine=lake / "curated/quarantine",
            dq_metrics=lake / "curated/dq_metrics",
            kpis=lake / "marts/zone_hourly_kpis",
        ),
    )


def new_database(server: DatabaseUrl) -> DatabaseUrl:
    url = create_database(server, "chillflow_faults")
    with connect(url) as conn:
        init_schema(conn)
    return url


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    landing = tmp_path_factory.mktemp("landing")
    return generate_month(landing / f"yellow_tripdata_{MONTH}.parquet", month=MONTH, rows=3000)


@pytest.fixture(scope="module")
def reference(spark, base_settings, database_url, raw, tmp_path_factory):
    """The clean run, in this process: curate, process trips, backfill February to 10 March."""
    url = new_database(database_url)
    ref = pipeline_settings(base_settings, tmp_path_factory.mktemp("reference") / "lake", url)
    curate(spark, ref, raw, database_url=url)
    process_trips(spark, ref, url, month=MONTH)
    aggregate_backfill(spark, ref, url, date(2025, 2, 1), date(2025, 3, 10))
    yield Pipeline(ref, url)
    drop_database(database_url, url.dbname)


@pytest.fixture(scope="module")
def faulty(base_settings, database_url, tmp_path_factory):
    """The lake and database the killed runs and their reruns share."""
    url = new_database(database_url)
    root = tmp_path_factory.mktemp("faulty")
    yield Pipeline(pipeline_settings(base_settings, root / "lake", url), url)
    drop_database(database_url, url.dbname)


def environment(pipeline: Pipeline, failpoint: str | None = None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("HASH_SALT", "CHILLFLOW_ENV", FAILPOINT_ENV)
    }
    env.update(
        CHILLFLOW_DATA_DIR=str(pipeline.settings.lake_dir.parent / "data"),
        CHILLFLOW_LAKE_DIR=str(pipeline.settings.lake_dir),
        DATABASE_URL=pipeline.url.url(),
        SPARK_MASTER="local[2]",
        LOG_LEVEL="WARNING",
    )
    if failpoint is not None:
        env[FAILPOINT_ENV] = failpoint
    return env


def chillflow(pipeline: Pipeline, *args: str, failpoint: str | None = None):
    """Run ``python -m chillflow ARGS`` in a process group of its own."""
    return subprocess.run(
        [sys.executable, "-m", "chillflow", *args, "--json"],
        cwd=REPO_ROOT,
        env=environment(pipeline, failpoint),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        start_new_session=True,
    )


def killed(pipeline: Pipeline, *args: str, at: str) -> None:
    done = chillflow(pipeline, *args, failpoint=at)
    assert done.returncode == KILLED, done.stderr[-3000:]


def comparable(frame: DataFrame) -> DataFrame:
    lineage = [c for c in frame.columns if c == "run_id" or c.endswith(("_run_id", "_at"))]
    return frame.drop(*lineage)


def assert_same_delta(spark, table: str, got: Pipeline, expected: Pipeline) -> None:
    rows = [
        comparable(read_table(spark, getattr(p.settings.tables, table))) for p in (got, expected)
    ]
    assert rows[1].count() > 0, f"{table}: the reference run wrote nothing"
    assert_df_equality(rows[0], rows[1], ignore_row_order=True)


def postgres_rows(url, table: str, order: str) -> list[tuple]:
    """A table's rows without lineage and times, which differ between runs."""
    lineage = ("created_at", "updated_at", "curated_run_id", "computed_at")
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT * FROM {} ORDER BY " + order).format(sql.SQL(table)))
        keep = [i for i, c in enumerate(cur.description) if c.name not in lineage]
        return [tuple(row[i] for i in keep) for row in cur.fetchall()]


def count(url, query: str) -> int:
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchone()[0]


def test_kill_during_the_curated_write(spark, reference, faulty, raw):
    curated = faulty.settings.tables.curated
    slice_dir = curated / "service=yellow" / f"month={MONTH}"
    with open(faulty.settings.lake_dir.parent / "curate.log", "w") as log:
        run = subprocess.Popen(
            [sys.executable, "-m", "chillflow", "curate", "month", str(raw)],
            cwd=REPO_ROOT,
            env=environment(faulty),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 600
            while not any(slice_dir.glob("*.parquet")) and run.poll() is None:
                assert time.monotonic() < deadline, "the curated write never started"
                time.sleep(0.005)
            os.killpg(run.pid, signal.SIGKILL)
        finally:
            run.wait(60)
    assert run.returncode == KILLED
    assert not list((curated / "_delta_log").glob("*.json")), "killed after the commit"

    curate(spark, faulty.settings, raw, database_url=faulty.url)

    for table in CURATE_TABLES:
        assert_same_delta(spark, table, faulty, reference)


@pytest.mark.parametrize("point", ["curate.after_curated", "curate.after_quarantine"])
def test_kill_between_the_curate_commits(spark, reference, faulty, raw, point):
    killed(faulty, "curate", "month", str(raw), at=point)
    curate(spark, faulty.settings, raw, database_url=faulty.url)

    for table in CURATE_TABLES:
        assert_same_delta(spark, table, faulty, reference)


def test_kill_before_a_new_month_is_attached(faulty):
    killed(faulty, "process", "trips", "--month", MONTH, at="process_trips.before_commit")

    assert count(faulty.url, "SELECT count(*) FROM stg.complete_trip") == 0
    partition = f"complete_trip_yellow_{MONTH.replace('-', '_')}"
    assert count(faulty.url, f"SELECT count(*) FROM pg_class WHERE relname = '{partition}'") == 0


def test_kill_after_staging_the_trips(spark, reference, faulty):
    killed(faulty, "process", "trips", "--month", MONTH, at="process_trips.staged")
    assert count(faulty.url, "SELECT count(*) FROM stg.complete_trip") == 0

    process_trips(spark, faulty.settings, faulty.url, month=MONTH)

    expected = postgres_rows(reference.url, "stg.complete_trip", "trip_key")
    assert postgres_rows(faulty.url, "stg.complete_trip", "trip_key") == expected


def test_kill_inside_the_upsert_transaction(spark, reference, faulty):
    with connect(faulty.url) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM stg.complete_trip WHERE right(trip_key, 1) IN ('0', '1', '2')")
    left = count(faulty.url, "SELECT count(*) FROM stg.complete_trip")

    killed(faulty, "process", "trips", "--month", MONTH, at="process_trips.before_commit")
    assert count(faulty.url, "SELECT count(*) FROM stg.complete_trip") == left

    process_trips(spark, faulty.settings, faulty.url, month=MONTH)

    expected = postgres_rows(reference.url, "stg.complete_trip", "trip_key")
    assert postgres_rows(faulty.url, "stg.complete_trip", "trip_key") == expected


def test_kill_between_the_kpi_merge_and_the_mart_publish(spark, faulty):
    day = ("aggregate", "run", "--date", "2025-02-14")
    killed(faulty, *day, at="aggregate.after_merge")
    assert read_table(spark, faulty.settings.tables.kpis).count() > 0
    assert count(faulty.url, "SELECT count(*) FROM mart.zone_hourly_kpis") == 0

    stats = aggregate_until(spark, faulty.settings, faulty.url, datetime(2025, 2, 15))

    assert stats["rows_inserted"] == 0 and stats["mart_rows_copied"] > 0
    kpis = read_table(spark, faulty.settings.tables.kpis).select(*KPI_COLUMNS).collect()
    mart = postgres_rows(faulty.url, "mart.zone_hourly_kpis", "zone_id, hour_ts")
    assert sorted(tuple(r) for r in kpis) == sorted(mart)


def test_kill_in_the_middle_of_a_backfill(spark, reference, faulty):
    killed(faulty, "aggregate", "backfill", *BACKFILL, at="aggregate_backfill.after_chunk")

    resumed = aggregate_backfill(
        spark, faulty.settings, faulty.url, date(2025, 2, 1), date(2025, 3, 10)
    )

    assert (resumed["chunks"], resumed["chunks_skipped"], resumed["attempt"]) == (2, 1, 2)
    assert_same_delta(spark, "kpis", faulty, reference)
    expected = postgres_rows(reference.url, "mart.zone_hourly_kpis", "zone_id, hour_ts")
    assert postgres_rows(faulty.url, "mart.zone_hourly_kpis", "zone_id, hour_ts") == expected


def test_no_lock_running_run_or_duplicate_is_left(spark, faulty):
    url = faulty.settings.database_url
    assert count(url, "SELECT count(*) FROM ops.job_run WHERE status = 'running'") == 0
    # Every killed run was marked failed by the next run of its slice (or of the KPIs); the
    # killed backfill was resumed as its second attempt.
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT job, count(*), bool_and(error LIKE 'abandoned: process % exited without%')"
            " FROM ops.job_run WHERE status = 'failed' GROUP BY job ORDER BY job"
        )
        assert cur.fetchall() == [("aggregate", 1, True), ("curate", 3, True),
                                  ("process_trips", 3, True)]  # fmt: skip
    assert (
        count(
            url,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database ="
            " (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        == 0
    )
    curated = faulty.settings.tables.curated
    lock_dir = curated.parent / "_locks" / curated.name
    store = FileLocks(lock_dir, "check")
    names = [p.name.removesuffix(".lock").replace(".", "/", 1) for p in lock_dir.glob("*.lock")]
    assert {"table", f"yellow/{MONTH}"} <= set(names)  # and the slices the aggregates read
    assert all(store.try_lock(name) for name in names)
    store.close()
    kpis = read_table(spark, faulty.settings.tables.kpis)
    assert kpis.count() == kpis.select("zone_id", "hour_ts").distinct().count()


def test_no_staging_table_is_left(faulty):
    staging = "tablename LIKE 'load\\_%' OR tablename LIKE 'staged\\_%'"
    assert count(faulty.url, f"SELECT count(*) FROM pg_tables WHERE {staging}") == 0
