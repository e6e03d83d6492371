"""One writer per slice, readers that never pin a half-written slice, ordered KPI publishes,
backfills that neither resume a running one nor keep months whose trips changed, and slices
put back when a curate fails after its first commit.

Concurrent runs are real stage calls in threads of this process (one SparkSession), made to
meet at a chosen point by events, or a lock held by the test itself; never timed sleeps.
"""

from __future__ import annotations

import os
import threading
from datetime import date, datetime

import pytest

import chillflow.report.figures as figures
import chillflow.stages.aggregate as aggregate_stage
import chillflow.stages.curate as curate_stage
from chillflow.batch import BatchAggregator
from chillflow.errors import BusyError, DatabaseError
from chillflow.report.figures import collect_figures
from chillflow.stages.curate import curate
from chillflow.storage import locks
from chillflow.storage.delta import read_table
from chillflow.storage.ledger import finish_run, insert_run
from chillflow.storage.locks import AdvisoryLocks, FileLocks
from chillflow.storage.postgres import connect
from tests.conftest import run_chillflow
from tests.integration.rawfiles import trip, write_yellow
from tests.integration.test_aggregate_job import insert_trips, random_trips, stg_trip

pytestmark = pytest.mark.postgres

JAN = datetime(2025, 1, 15, 8)


@pytest.fixture
def pg(pg_settings):
    with connect(pg_settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE stg.complete_trip, mart.zone_hourly_kpis, ops.job_run")
    return pg_settings


def january(tmp_path, name="raw", hours=(8, 9, 10), total=20.0):
    rows = [trip(JAN.replace(hour=h), total=total) for h in hours]
    rows.append(trip(JAN, total=-12.0))  # quarantined
    return write_yellow(tmp_path / name / "yellow_tripdata_2025-01.parquet", rows)


def slice_locks(settings) -> FileLocks:
    """The lock store of the settings' curated table, as a curate of another process sees it."""
    curated = settings.tables.curated
    return FileLocks(curated.parent / "_locks" / curated.name, "curate run other (pid 1 on h)")


class Paused:
    """Stops a run at a failpoint until released; the test runs its checks meanwhile."""

    def __init__(self, monkeypatch, module, point: str):
        self.reached, self.release = threading.Event(), threading.Event()
        self.failures: list[BaseException] = []
        monkeypatch.setattr(module, "failpoint", self._failpoint)
        self._point = point

    def _failpoint(self, name: str) -> None:
        if name == self._point and not self.reached.is_set():  # the first run only
            self.reached.set()
            assert self.release.wait(120), "the test never released the paused run"

    def start(self, action) -> threading.Thread:
        def run() -> None:
            try:
                action()
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.failures.append(exc)
            finally:
                self.reached.set()

        thread = threading.Thread(target=run)
        thread.start()
        assert self.reached.wait(300), "the run never reached its failpoint"
        assert self.failures == []
        return thread

    def finish(self, thread: threading.Thread) -> None:
        self.release.set()
        thread.join(300)
        assert self.failures == []


def test_curate_holds_its_slice_from_first_to_last_commit(spark, pg, tmp_path, monkeypatch):
    """Between a curate's curated and quarantine commits, a second curate of the slice refuses
    at once and a reader combining curated with quarantine cannot pin the tables."""
    pause = Paused(monkeypatch, curate_stage, "curate.after_curated")
    first = pause.start(lambda: curate(spark, pg, january(tmp_path), run_id="firstrun"))

    with pytest.raises(BusyError) as second:
        curate(spark, pg, january(tmp_path, "again"), run_id="secondrun")
    with pytest.raises(BusyError) as reader:
        BatchAggregator(pg, spark).aggregate_incremental(date(2025, 1, 15), source="curated")

    pause.finish(first)
    holder = f"curate run firstrun (pid {os.getpid()} on {os.uname().nodename})"
    assert str(second.value) == (
        f"curate of yellow/2025-01 in {pg.tables.curated} is locked by {holder}; "
        "retry when that run has finished"
    )
    assert str(reader.value) == (
        "reading the curated slices of 2025-01-15T00/2025-01-16T00 is locked by "
        f"{holder}; retry when that run has finished"
    )
    assert {r["run_id"] for r in read_table(spark, pg.tables.curated).collect()} == {"firstrun"}
    assert read_table(spark, pg.tables.quarantine).count() == 1
    stats = BatchAggregator(pg, spark).aggregate_incremental(date(2025, 1, 15), source="curated")
    assert (stats["trips"], stats["kpi_rows"]) == (3, 3)


def test_a_second_curate_of_a_slice_exits_10_naming_the_holder(pg, tmp_path):
    raw = january(tmp_path)
    env = {
        **os.environ,
        "CHILLFLOW_DATA_DIR": str(tmp_path / "data"),
        "CHILLFLOW_LAKE_DIR": str(pg.lake_dir),
        "DATABASE_URL": "",
        "SPARK_MASTER": "local[1]",
    }
    other = slice_locks(pg)
    assert other.try_lock("yellow/2025-01")
    try:
        busy = run_chillflow("curate", "month", str(raw), env=env, timeout=300)
    finally:
        other.close()

    assert busy.returncode == 10, busy.stderr[-3000:]
    assert busy.stderr.strip().splitlines()[-1] == (
        f"error: curate of yellow/2025-01 in {pg.tables.curated} is locked by curate run other "
        "(pid 1 on h); retry when that run has finished"
    )
    assert not pg.tables.curated.exists()


def test_kpi_runs_hold_one_lock_from_computing_to_publishing(spark, pg, monkeypatch):
    url = pg.database_url
    insert_trips(url, [stg_trip("k1", JAN, 4), stg_trip("k2", JAN, 161)])
    aggregator = BatchAggregator(pg, spark)
    other = AdvisoryLocks(url, "aggregate run other (pid 1 on h)")
    assert other.try_lock("aggregate")
    try:
        with pytest.raises(BusyError, match="the KPI table and mart is locked by aggregate run"):
            aggregator.aggregate_incremental(date(2025, 1, 15))
    finally:
        other.close()

    publish = aggregate_stage.replace_mart_rows
    taken_while_publishing = []

    def probe(conn, lines, window):
        probe_store = AdvisoryLocks(url, "probe")
        taken_while_publishing.append(probe_store.try_lock("aggregate"))
        probe_store.close()
        return publish(conn, lines, window)

    monkeypatch.setattr(aggregate_stage, "replace_mart_rows", probe)
    stats = aggregator.aggregate_incremental(date(2025, 1, 15))

    assert taken_while_publishing == [False]
    assert stats["kpi_rows"] == 2


def test_an_aggregate_whose_lock_session_ended_publishes_nothing(spark, pg, monkeypatch):
    url = pg.database_url
    insert_trips(url, [stg_trip("k1", JAN, 4)])

    def end_the_lock_session(name):
        if name == "aggregate.after_merge":  # e.g. a DBA or an idle timeout ends it
            with connect(url) as conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name LIKE 'aggregate run %'"
                    " AND datname = current_database()"
                )

    monkeypatch.setattr(aggregate_stage, "failpoint", end_the_lock_session)
    with pytest.raises(DatabaseError, match="lock.*ended.*another run may hold"):
        BatchAggregator(pg, spark).aggregate_incremental(date(2025, 1, 15))

    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM mart.zone_hourly_kpis")
        assert cur.fetchone() == (0,)


def test_a_backfill_of_a_running_range_refuses(spark, pg):
    other = AdvisoryLocks(pg.database_url, "aggregate_backfill of x (pid 1 on h)")
    assert other.try_lock("aggregate_backfill|2025-01-20/2025-02-13")
    try:
        with pytest.raises(BusyError, match="backfill 2025-01-20/2025-02-13 is locked by"):
            BatchAggregator(pg, spark).aggregate_backfill(date(2025, 1, 20), date(2025, 2, 13))
    finally:
        other.close()
    with connect(pg.database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM ops.job_run")
        assert cur.fetchone() == (0,)


def test_a_resumed_backfill_reruns_a_done_month_whose_trips_were_reloaded(spark, pg, monkeypatch):
    url = pg.database_url
    insert_trips(url, random_trips("b", 150, datetime(2025, 1, 20), 25, seed=4))
    aggregator = BatchAggregator(pg, spark)
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
    # January's trips are reloaded (one more, in a zone without any) after its chunk was done;
    # a process-trips run of another month changes nothing here.
    insert_trips(url, [stg_trip("late", datetime(2025, 1, 25, 7, 30), 265)])
    with connect(url) as conn:
        for run_id, period in (("reload", "yellow/2025-01"), ("other", "green/2024-12")):
            insert_run(conn, job="process_trips", period=period, run_id=run_id)
            finish_run(conn, run_id, status="succeeded")

    resumed = aggregator.aggregate_backfill(date(2025, 1, 20), date(2025, 2, 13))

    assert (resumed["chunks"], resumed["chunks_skipped"], resumed["attempt"]) == (2, 0, 2)
    assert [run["window_start"] for run in resumed["runs"]] == [
        "2025-01-20T00:00:00",
        "2025-02-01T00:00:00",
    ]
    kpis = read_table(spark, pg.tables.kpis).where("zone_id = 265").collect()
    assert [(r["hour_ts"], r["trips"]) for r in kpis] == [(datetime(2025, 1, 25, 7), 1)]


def test_a_curate_failing_after_its_first_commit_puts_only_its_slices_back(
    spark, settings, tmp_path, monkeypatch
):
    """The slices go back to the version before the run; a commit another run made to another
    slice meanwhile stays (a whole-table RESTORE would undo it)."""
    before = curate(spark, settings, january(tmp_path), run_id="before")
    february = write_yellow(
        tmp_path / "feb/yellow_tripdata_2025-02.parquet", [trip(datetime(2025, 2, 3, 10))]
    )
    write = curate_stage.replace_slices
    failed = []

    def metrics_store_down(rows, path, slices, partition_by, *layout):
        if path == settings.tables.dq_metrics and not failed:
            failed.append(path)
            # Meanwhile another run curates February: the same tables, another slice.
            assert curate(spark, settings, february, run_id="february")["output_rows"] == 1
            raise RuntimeError("metrics store down")
        return write(rows, path, slices, partition_by, *layout)

    monkeypatch.setattr(curate_stage, "replace_slices", metrics_store_down)
    with pytest.raises(RuntimeError, match="metrics store down"):
        curate(spark, settings, january(tmp_path, "changed", hours=(11, 12), total=30.0))

    curated = read_table(spark, settings.tables.curated).collect()
    assert sorted((r["month"], r["run_id"], r["pickup_ts"].hour) for r in curated) == [
        ("2025-01", "before", 8),
        ("2025-01", "before", 9),
        ("2025-01", "before", 10),
        ("2025-02", "february", 10),
    ]
    quarantined = read_table(spark, settings.tables.quarantine).collect()
    assert sorted((r["month"], r["run_id"]) for r in quarantined) == [("2025-01", "before")]
    assert before["output_rows"] == 3


def test_a_report_during_a_curate_shows_one_runs_curated_and_quarantine(
    spark, pg, tmp_path, monkeypatch
):
    """A report taken between a curate's commits waits for it, then shows that run alone."""
    curate(spark, pg, january(tmp_path), run_id="firstrun")  # 3 curated, 1 quarantined
    rows = [trip(JAN), trip(JAN.replace(hour=9), total=-1.0), trip(JAN, total=-12.0)]
    again = write_yellow(tmp_path / "again" / "yellow_tripdata_2025-01.parquet", rows)
    waiting = threading.Event()

    def reading_slices(*args, **kwargs):
        waiting.set()
        return locks.reading_slices(*args, **kwargs)

    monkeypatch.setattr(figures, "reading_slices", reading_slices, raising=False)
    pause = Paused(monkeypatch, curate_stage, "curate.after_curated")
    curating = pause.start(lambda: curate(spark, pg, again, run_id="secondrun"))
    report: list = []
    reporting = threading.Thread(
        target=lambda: report.append(collect_figures(spark, pg, pg.database_url, ["2025-01"]))
    )
    reporting.start()
    while reporting.is_alive() and not waiting.wait(0.1):
        pass
    pause.finish(curating)
    reporting.join(300)

    (quality,) = report[0]["quality"]
    assert (quality["run_id"], quality["rows_in"]) == ("secondrun", 3)
    assert (quality["curated"], quality["quarantined"]) == (1, 2)
