"""The run ledger (``ops.job_run``) as the stages write it, the runs command and advisory locks."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime

import pytest

from chillflow.batch import BatchAggregator, BatchTripProducer, MonthlyLoader
from chillflow.errors import BusyError, DataQualityError
from chillflow.settings import CurateSettings, QualityRule
from chillflow.storage.ledger import insert_run
from chillflow.storage.locks import AdvisoryLocks, hold
from chillflow.storage.postgres import connect
from tests.conftest import REPO_ROOT, run_chillflow
from tests.integration.rawfiles import trip, write_yellow

pytestmark = pytest.mark.postgres

HOST = os.uname().nodename
DAY = datetime(2025, 1, 15)
HOLD_ADVISORY_LOCK = """
import sys
from chillflow.storage.locks import AdvisoryLocks

from chillflow.database_url import parse_database_url

store = AdvisoryLocks(parse_database_url(sys.argv[1]), "process_trips run child")
assert store.try_lock("process_trips|yellow/2025-01")
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def pg(pg_settings):
    with connect(pg_settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE stg.complete_trip, mart.zone_hourly_kpis, ops.job_run")
    return pg_settings


@pytest.fixture
def raw(tmp_path):
    """Seven trips of 2025-01-15: four in zone 161 (hours 8, 8, 9, 9), two in zone 4 (hour 8),
    and a refund that curation quarantines."""
    rows = [trip(DAY.replace(hour=h, minute=m)) for h, m in ((8, 5), (8, 20), (9, 10), (9, 40))]
    rows += [trip(DAY.replace(hour=8, minute=m), pu=4) for m in (30, 45)]
    rows.append(trip(DAY.replace(hour=8, minute=50), total=-12.0))
    return write_yellow(tmp_path / "raw/yellow_tripdata_2025-01.parquet", rows)


def ledger(url) -> list[tuple]:
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT job, period, status, rows_read, rows_written, error, pid, host, run_id"
            " FROM ops.job_run ORDER BY id"
        )
        return cur.fetchall()


def dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def wait_until_session_ended(url, application_name: str) -> None:
    """A killed client's session ends when the server reads the closed socket: soon, not at once."""
    deadline = time.monotonic() + 30
    while True:
        with connect(url) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (application_name,),
            )
            if cur.fetchone()[0] == 0:
                return
        assert time.monotonic() < deadline, "the killed client's session is still open"
        time.sleep(0.1)


def test_each_stage_records_one_succeeded_run_with_row_counts(spark, pg, raw):
    url = pg.database_url
    gone = dead_pid()
    with connect(url) as conn:
        # Left 'running' by runs that were killed: the next run of the slice or of the KPIs
        # holds the lock they held, so they are dead.
        insert_run(conn, job="curate", period="yellow/2025-01", run_id="killedcurate")
        insert_run(conn, job="aggregate", period="full", run_id="killedaggr")
        conn.cursor().execute("UPDATE ops.job_run SET pid = %s", (gone,))

    curated = MonthlyLoader(pg, spark).curate_month(raw)
    loaded = BatchTripProducer(pg, spark).process_month(month="2025-01")
    kpis = BatchAggregator(pg, spark).aggregate_incremental(date(2025, 1, 15))

    abandoned = f"abandoned: process {gone} on {HOST} exited without finishing the run"
    assert [row[:6] for row in ledger(url)] == [
        ("curate", "yellow/2025-01", "failed", None, None, abandoned),
        ("aggregate", "full", "failed", None, None, abandoned),
        ("curate", "yellow/2025-01", "succeeded", 7, 7, None),
        ("process_trips", "yellow/2025-01", "succeeded", 6, 6, None),
        ("aggregate", "2025-01-15T00/2025-01-16T00", "succeeded", 6, 3, None),
    ]
    runs = ledger(url)[2:]
    assert [row[8] for row in runs] == [curated["run_id"], loaded["run_id"], kpis["run_id"]]
    assert {(row[6], row[7]) for row in runs} == {(os.getpid(), HOST)}
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT stats FROM ops.job_run WHERE job = 'curate' AND status = 'succeeded'")
        (stats,) = cur.fetchone()
    assert (stats["input_rows"], stats["output_rows"], stats["quarantined_rows"]) == (7, 6, 1)


def test_a_failing_run_leaves_a_failed_row_with_a_one_line_error(spark, pg, raw):
    strict = QualityRule("amount_non_negative", "total_amount >= 0", "fail")
    settings = dataclasses.replace(pg, curate=CurateSettings(rules=(strict,)))
    blocked = pg.tables.quarantine
    blocked.parent.mkdir(parents=True)
    blocked.write_text("not a directory")

    with pytest.raises(DataQualityError):
        MonthlyLoader(settings, spark).curate_month(raw)
    with pytest.raises(Exception, match="DELTA_CANNOT_CREATE_LOG_PATH"):
        MonthlyLoader(pg, spark).curate_month(raw)

    (rule_failure, spark_failure) = ledger(pg.database_url)
    assert rule_failure[:6] == (
        "curate",
        "yellow/2025-01",
        "failed",
        None,
        None,
        f"DataQualityError: {raw} (yellow 2025-01): data-quality rules failed the run, nothing "
        "written: amount_non_negative: 1 of 7 rows failed (14.29%), action fail allows none",
    )
    assert spark_failure[2:6] == (
        "failed",
        None,
        None,
        "Py4JJavaError: org.apache.spark.sql.delta.DeltaIOException: "
        f"[DELTA_CANNOT_CREATE_LOG_PATH] Cannot create file:{blocked}/_delta_log",
    )


def test_runs_command_lists_the_ledger_and_schedule_runs_is_the_same(pg, tmp_path):
    url = pg.database_url
    with connect(url) as conn:
        insert_run(conn, job="curate", period="yellow/2025-01", run_id="r1", status="succeeded")
        insert_run(conn, job="aggregate", period="full", run_id="r2", status="failed", error="x")
    env = {**os.environ, "DATABASE_URL": url.url(), "CHILLFLOW_DATA_DIR": str(tmp_path)}

    listed = run_chillflow("runs", "--json", env=env)
    curate_only = run_chillflow("runs", "--job", "curate", "--json", env=env)
    table = run_chillflow("schedule", "runs", "--limit", "1", env=env)

    assert listed.returncode == 0, listed.stderr
    assert [(r["run_id"], r["status"]) for r in json.loads(listed.stdout)["runs"]] == [
        ("r2", "failed"),
        ("r1", "succeeded"),
    ]
    assert [r["run_id"] for r in json.loads(curate_only.stdout)["runs"]] == ["r1"]
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "id", "job", "period", "attempt", "status", "started", "finished", "read", "written",
        "error",
    ]  # fmt: skip
    assert lines[1].split()[1:5] == ["aggregate", "full", "1", "failed"]
    assert len(lines) == 2


def test_advisory_locks_refuse_a_second_writer_and_die_with_their_session(pg):
    url = pg.database_url
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_ADVISORY_LOCK, url.url()],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "locked"
        with (
            pytest.raises(BusyError) as busy,
            hold(
                AdvisoryLocks(url, "process_trips run b"),
                [("process_trips|yellow/2025-01", False)],
                what="process-trips of yellow/2025-01",
                writer=True,
            ),
        ):
            pass
        assert str(busy.value) == (
            "process-trips of yellow/2025-01 is locked by process_trips run child; "
            "retry when that run has finished"
        )
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    wait_until_session_ended(url, "process_trips run child")

    with hold(
        AdvisoryLocks(url, "process_trips run c"),
        [("process_trips|yellow/2025-01", False)],
        what="x",
        writer=True,
    ):
        pass


def test_a_run_leaving_hold_has_released_its_advisory_locks_already(pg):
    """The next run of the same process may take the lock at once: release is not left to the
    server noticing the closed session."""
    name = "aggregate"
    with connect(pg.database_url) as probe:
        probe.autocommit = True
        for _ in range(30):
            with hold(AdvisoryLocks(pg.database_url, "aggregate run a"), [(name, False)],
                      what="the KPI table", writer=True):  # fmt: skip
                pass
            with probe.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                    " AND objid = hashtext(%s)::oid AND database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database())",
                    (name,),
                )
                assert cur.fetchone()[0] == 0
