"""The process-trips job end to end: curated Delta table -> real PostgreSQL."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import secrets
import socket
from datetime import datetime

import pytest
import structlog
from psycopg2 import sql

import chillflow.api.trips as trips_api
import chillflow.stages.trips as trips_stage
import chillflow.storage.trips_pg as trips_pg
from chillflow.api.trips import BatchTripProducer
from chillflow.errors import ConfigError, DatabaseError, ReconciliationError
from chillflow.logs import configure_logging
from chillflow.stages.curate import curate
from chillflow.stages.trips import process_trips
from chillflow.storage.postgres import connect, init_schema
from chillflow.storage.trips_pg import (
    LOAD_COLUMNS,
    TripSlice,
    claim_staging_table,
    create_staging_table,
    drop_orphaned_staging_tables,
    load_staged,
    staging_table,
)
from tests.conftest import create_database, drop_database, run_chillflow
from tests.integration.rawfiles import trip, write_yellow

pytestmark = pytest.mark.postgres

SALT = "test-salt-5f1c"
JAN = datetime(2025, 1, 15, 8, 30)
# Six clean trips (one with fractional seconds, one at the month's last microsecond) and one
# that curate quarantines.
CLEAN = [trip(JAN.replace(hour=h)) for h in range(4)]
CLEAN += [trip(datetime(2025, 1, 20, 12, 0, 0, 123456)), trip(datetime(2025, 1, 31, 23, 59, 59))]
DIRTY = [trip(JAN, total=-12.0)]
JANUARY = TripSlice("yellow", "2025-01")


@pytest.fixture(scope="module")
def trips_db(database_url):
    """A database of this module's own, on the session's server."""
    url = create_database(database_url, "chillflow_trips")
    with connect(url) as conn:
        init_schema(conn)
    yield url
    drop_database(database_url, url.dbname)


@pytest.fixture
def db(trips_db):
    """The module's database with no trips and no staging tables."""
    with connect(trips_db) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE stg.complete_trip")
        for name in _staging_tables(trips_db):
            cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier("stg", name)))
    return trips_db


@pytest.fixture
def pg(settings, db):
    """Settings with a fresh lake, the test database and a known salt."""
    return dataclasses.replace(settings, database_url=db, hash_salt=SALT)


@contextlib.contextmanager
def info_logging():
    """JSON log lines at INFO to the current sys.stderr (capfd's inside a test), then as before.

    Configured inside the test body: pytest swaps sys.stderr between fixture setup and the call.
    """
    saved = structlog.get_config()
    configure_logging("INFO", json=True)
    try:
        yield
    finally:
        structlog.configure(**saved)


def _curate(spark, settings, tmp_path, rows):
    raw = write_yellow(tmp_path / "raw" / "yellow_tripdata_2025-01.parquet", rows)
    return curate(spark, settings, raw)


def _trips(url):
    """Every stored trip, key -> all columns (created_at and updated_at included)."""
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM stg.complete_trip ORDER BY trip_key")
        names = [d.name for d in cur.description]
        return {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}


def _staging_tables(url):
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'stg' AND tablename LIKE 'load%'"
        )
        return [row[0] for row in cur.fetchall()]


def _load(spark, settings, **kwargs):
    return process_trips(spark, settings, settings.database_url, **kwargs)


def _counts(stats):
    return {
        k: stats[k] for k in ("rows_read", "inserted", "updated", "unchanged", "deleted", "skipped")
    }


def test_load_twice_keeps_rows_and_updated_at(spark, pg, tmp_path):
    _curate(spark, pg, tmp_path, CLEAN + DIRTY)

    first = _load(spark, pg)
    stored = _trips(pg.database_url)
    second = _load(spark, pg, month="2025-01", service="yellow")

    assert _counts(first) == {
        "rows_read": 6,
        "inserted": 6,
        "updated": 0,
        "unchanged": 0,
        "deleted": 0,
        "skipped": 0,
    }
    assert _counts(second) == {
        "rows_read": 6,
        "inserted": 0,
        "updated": 0,
        "unchanged": 6,
        "deleted": 0,
        "skipped": 0,
    }
    assert _trips(pg.database_url) == stored
    assert {r["source_row"] for r in stored.values()} == {0, 1, 2, 3, 4, 5}
    assert {(r["service"], r["pickup_month"]) for r in stored.values()} == {("yellow", "2025-01")}
    assert second["postgres_rows"] == 6 and second["month"] == "2025-01"
    assert _staging_tables(pg.database_url) == []


def test_stored_columns_match_the_curated_row(spark, pg, tmp_path):
    _curate(spark, pg, tmp_path, CLEAN)

    _load(spark, pg)

    row = next(r for r in _trips(pg.database_url).values() if r["source_row"] == 4)
    assert row["pickup_ts"] == datetime(2025, 1, 20, 12, 0, 0, 123456)
    assert row["dropoff_ts"] == datetime(2025, 1, 20, 12, 10, 0, 123456)
    assert (row["vendor_id"], row["pu_zone_id"], row["do_zone_id"]) == (2, 161, 236)
    assert (row["passenger_count"], row["payment_type"], row["rate_code"]) == (1, 1, 1)
    assert (row["fare_amount"], row["tip_amount"], row["total_amount"]) == (15.0, 2.0, 20.0)
    assert row["trip_distance"] == 2.0 and row["distance_km"] == pytest.approx(3.21868)
    assert row["duration_min"] == 10.0
    assert row["source_file"] == "yellow_tripdata_2025-01.parquet"
    assert len(row["curated_run_id"]) == 12
    assert row["created_at"] == row["updated_at"]


def test_changed_and_vanished_trips_are_updated_and_deleted(spark, pg, tmp_path):
    _curate(spark, pg, tmp_path, CLEAN)
    _load(spark, pg)
    before = _trips(pg.database_url)
    changed = [dict(r) for r in CLEAN[:-1]]  # the last trip disappears from the month
    changed[2]["fare_amount"] = 99.0

    _curate(spark, pg, tmp_path, changed)
    stats = _load(spark, pg)

    after = _trips(pg.database_url)
    assert _counts(stats) == {
        "rows_read": 5,
        "inserted": 0,
        "updated": 1,
        "unchanged": 4,
        "deleted": 1,
        "skipped": 0,
    }
    assert set(before) - set(after) == {k for k, r in before.items() if r["source_row"] == 5}
    moved = [k for k in after if after[k]["updated_at"] != before[k]["updated_at"]]
    assert [after[k]["source_row"] for k in moved] == [2]
    (key,) = moved
    assert after[key]["fare_amount"] == 99.0
    assert after[key]["updated_at"] > before[key]["updated_at"]
    assert after[key]["created_at"] == before[key]["created_at"]
    # Re-curating changes every row's curate run id, which alone is not a change.
    assert all(after[k]["curated_run_id"] == before[k]["curated_run_id"] for k in after if k != key)


def test_failure_between_staging_and_commit_changes_nothing(spark, pg, tmp_path):
    _curate(spark, pg, tmp_path, CLEAN)
    _load(spark, pg)
    before = _trips(pg.database_url)
    changed = [dict(r) for r in CLEAN[:-1]]
    changed[0]["tip_amount"] = 7.5
    _curate(spark, pg, tmp_path, changed)

    def crash(conn):
        raise RuntimeError("killed before commit")

    with pytest.raises(RuntimeError, match="killed before commit"):
        _load(spark, pg, _before_commit=crash)

    assert _trips(pg.database_url) == before
    assert _staging_tables(pg.database_url) == []
    rerun = _load(spark, pg)
    assert (rerun["updated"], rerun["deleted"], rerun["unchanged"]) == (1, 1, 4)
    assert len(_trips(pg.database_url)) == 5


def test_reconciliation_failure_reports_both_numbers(spark, pg, tmp_path):
    _curate(spark, pg, tmp_path, CLEAN)
    columns = sql.SQL(", ").join(map(sql.Identifier, LOAD_COLUMNS))

    def sneak_in_a_trip(conn):
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "INSERT INTO stg.complete_trip ({0}) SELECT repeat('f', 64), {1} "
                    "FROM stg.complete_trip LIMIT 1"
                ).format(columns, sql.SQL(", ").join(map(sql.Identifier, LOAD_COLUMNS[1:])))
            )

    with pytest.raises(ReconciliationError) as failure:
        _load(spark, pg, _before_commit=sneak_in_a_trip)

    assert "holds 7 trips of yellow 2025-01" in str(failure.value)
    assert "6 curated rows were loaded" in str(failure.value)


def test_keys_in_postgres_follow_the_hashlib_formula(spark, pg, tmp_path):
    _curate(spark, pg, tmp_path, CLEAN)

    _load(spark, pg)

    rows = _trips(pg.database_url).values()
    assert len(rows) == 6
    for row in rows:
        material = (
            f"{SALT}|{row['vendor_id']}|{row['pickup_ts'].isoformat()}|"
            f"{row['pu_zone_id']}|{row['source_row']}"
        )
        assert row["trip_key"] == hashlib.sha256(material.encode()).hexdigest()
        vehicle = f"{SALT}|vehicle|{row['vendor_id']}|{row['source_row'] % 5000}"
        assert row["vehicle_id_h"] == "veh_" + hashlib.sha256(vehicle.encode()).hexdigest()[:12]
    fractional = next(r for r in rows if r["source_row"] == 4)
    assert "2025-01-20T12:00:00.123456" in f"{fractional['pickup_ts'].isoformat()}"


def test_missing_month_and_bad_arguments_fail_clearly(spark, pg, tmp_path):
    _curate(spark, pg, tmp_path, CLEAN)

    with pytest.raises(ConfigError, match="no curated trips for green 2025-01 in .*curate"):
        _load(spark, pg, month="2025-01", service="green")
    with pytest.raises(ConfigError, match="no curated trips at .*nowhere"):
        _load(spark, pg, source=tmp_path / "nowhere")
    raw = tmp_path / "raw" / "yellow_tripdata_2025-01.parquet"
    with pytest.raises(ConfigError, match=r"not curated trips: it lacks .*service.*curate month"):
        _load(spark, pg, source=raw, month="2025-01")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="cannot read curated trips at .*empty"):
        _load(spark, pg, source=tmp_path / "empty", month="2025-01")
    assert _trips(pg.database_url) == {}


def test_parquet_in_the_curated_schema_is_a_source(spark, pg, tmp_path):
    _curate(spark, pg, tmp_path, CLEAN)
    parquet = tmp_path / "curated-parquet"
    spark.read.format("delta").load(str(pg.tables.curated)).write.partitionBy(
        "service", "month"
    ).parquet(str(parquet))

    stats = _load(spark, pg, source=parquet)

    assert (stats["inserted"], stats["delta_version"]) == (6, None)


def _closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_server_and_bad_url_fail_without_secrets(spark, settings, tmp_path, capfd):
    password = "pw-" + secrets.token_hex(6)
    unreachable = f"postgresql://loader:{password}@127.0.0.1:{_closed_port()}/chillflow"
    malformed_url = f"postgresql://loader:{password}@127.0.0.1:99999/db"
    salted = dataclasses.replace(settings, hash_salt="salt-" + secrets.token_hex(6))
    _curate(spark, salted, tmp_path, CLEAN)
    with info_logging():
        with pytest.raises(DatabaseError) as down:
            BatchTripProducer(salted, spark, unreachable).process_month()
        with pytest.raises(ConfigError) as malformed:
            BatchTripProducer(salted, spark, malformed_url).process_month()

    assert "cannot connect to PostgreSQL at 127.0.0.1" in str(down.value)
    assert "postgresql://loader:***@127.0.0.1:99999/db" in str(malformed.value)
    captured = capfd.readouterr()
    for text in (str(down.value), str(malformed.value), captured.out, captured.err):
        assert password not in text
        assert salted.hash_salt not in text


def test_logs_carry_run_context_and_no_secret(spark, pg, tmp_path, capfd):
    salted = dataclasses.replace(pg, trips=dataclasses.replace(pg.trips, progress_every_sec=0.2))
    _curate(spark, salted, tmp_path, CLEAN)
    password = pg.database_url.password
    with info_logging():
        stats = _load(spark, salted)

    captured = capfd.readouterr()
    for text in (captured.out, captured.err):
        assert password not in text
        assert SALT not in text
    events = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    mine = [e for e in events if e.get("job") == "process_trips"]
    names = [e["event"] for e in mine]
    assert names[0] == "process_trips.started" and names[-1] == "process_trips.finished"
    assert {"process_trips.staged", "process_trips.committed"} <= set(names)
    assert all(e["run_id"] == stats["run_id"] and e["month"] == "2025-01" for e in mine)
    progress = [e for e in mine if e["event"] == "process_trips.progress"]
    assert progress, names
    assert {"elapsed_sec", "tasks_done", "tasks_total", "expected_rows"} <= set(progress[0])
    assert progress[0]["expected_rows"] == 6
    assert mine[0]["database"].startswith("postgresql://chillflow:***@")


# --- storage: staging tables and the upsert, without Spark ----------------------------------


def _staged_row(key, fare):
    values = dict.fromkeys(LOAD_COLUMNS)
    values.update(
        trip_key=key,
        vehicle_id_h="veh_0",
        service="yellow",
        pickup_ts=datetime(2025, 1, 2),
        pickup_month="2025-01",
        fare_amount=fare,
    )
    return tuple(values[c] for c in LOAD_COLUMNS)


def _stage(url, run_id, rows):
    table = staging_table(run_id, datetime(2025, 2, 1))
    with connect(url) as conn:
        create_staging_table(conn, table, [JANUARY])
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL("INSERT INTO {} VALUES ({})").format(
                    sql.Identifier(*table),
                    sql.SQL(", ").join(sql.Placeholder() * len(LOAD_COLUMNS)),
                ),
                rows,
            )
    return table


def test_duplicates_from_retried_tasks_never_reach_the_target(db):
    rows = [_staged_row("a" * 64, 1.0), _staged_row("b" * 64, 2.0)]
    new_month = _stage(db, "retried", rows + rows)  # a retried task appended its rows again
    with connect(db) as conn:
        inserted = load_staged(conn, new_month, [JANUARY], work_mem="8MB")
    changed = [_staged_row("a" * 64, 1.5), _staged_row("c" * 64, 3.0)]
    rerun = _stage(db, "rerun", changed + changed)

    with connect(db) as conn:
        upserted = load_staged(conn, rerun, [JANUARY], work_mem="8MB")

    stored = _trips(db)

    assert (inserted.inserted, inserted.updated, inserted.deleted) == (2, 0, 0)
    assert (upserted.inserted, upserted.updated, upserted.deleted) == (1, 1, 1)
    assert {k[0]: r["fare_amount"] for k, r in stored.items()} == {"a": 1.5, "c": 3.0}


def test_only_staging_tables_of_dead_runs_are_dropped_whatever_their_age(db):
    live = staging_table("live", datetime(2024, 1, 1))
    dead = staging_table("dead", datetime.now())
    lease = claim_staging_table(db, live, [JANUARY])
    claim_staging_table(db, dead, [JANUARY]).close()  # its run died: the lock went with its session

    try:
        with connect(db) as conn:
            conn.autocommit = True
            first = drop_orphaned_staging_tables(conn)
            again = drop_orphaned_staging_tables(conn)
        left = _staging_tables(db)
    finally:
        lease.close()
    with connect(db) as conn:
        conn.autocommit = True
        after_the_run = drop_orphaned_staging_tables(conn)

    assert (first, again, left) == ([dead[1]], [], [live[1]])
    assert after_the_run == [live[1]]


# --- the command line -------------------------------------------------------------------------


def _run_cli(args, env_extra, timeout=300):
    env = {**os.environ, "LOG_LEVEL": "INFO", **env_extra}
    # A failpoint kills the process group: its own, not pytest's.
    return run_chillflow(*args, env=env, timeout=timeout, start_new_session=True)


def test_a_killed_load_is_cleaned_up_by_a_rerun_that_prints_its_result_as_json(spark, pg, tmp_path):
    _curate(spark, pg, tmp_path, CLEAN)
    _load(spark, pg)
    clean = _trips(pg.database_url)
    with connect(pg.database_url) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE stg.complete_trip")
    env = {
        "DATABASE_URL": pg.database_url.url(),
        "HASH_SALT": SALT,
        "CHILLFLOW_DATA_DIR": str(tmp_path / "data"),
        "SPARK_MASTER": "local[2]",
    }
    args = ["process", "trips", str(pg.tables.curated), "--month", "2025-01", "--json"]

    killed = _run_cli(args, {**env, "CHILLFLOW_FAILPOINT": "process_trips.staged"})
    left = _staging_tables(pg.database_url)
    rerun = _run_cli(args, env)

    assert killed.returncode == -9, killed.stderr[-3000:]
    assert len(left) == 1 and _trips(pg.database_url) != clean
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _staging_tables(pg.database_url) == []
    unstamped = ("created_at", "updated_at")
    assert {k: {c: v for c, v in r.items() if c not in unstamped} for k, r in clean.items()} == {
        k: {c: v for c, v in r.items() if c not in unstamped}
        for k, r in _trips(pg.database_url).items()
    }
    (line,) = rerun.stdout.splitlines()  # logs go to stderr
    stats = json.loads(line)
    assert _counts(stats) == {
        "rows_read": 6,
        "inserted": 6,
        "updated": 0,
        "unchanged": 0,
        "deleted": 0,
        "skipped": 0,
    }
    assert set(stats) >= {"duration_sec", "run_id", "postgres_rows"}
    for done in (killed, rerun):
        assert pg.database_url.password not in done.stdout + done.stderr
        assert SALT not in done.stdout + done.stderr


def test_cli_refuses_a_bad_month_or_service_before_it_starts(tmp_path):
    env = {"CHILLFLOW_DATA_DIR": str(tmp_path / "data")}
    lake = str(tmp_path / "lake")

    service = _run_cli(["process", "trips", lake, "--service", "blue"], env, 60)
    month = _run_cli(["process", "trips", lake, "--month", "2025-1"], env, 60)

    assert service.returncode == month.returncode == 2
    assert "service 'blue': expected one of yellow, green" in service.stderr
    assert "invalid month '2025-1'" in month.stderr


def test_cli_fails_fast_on_an_unreachable_database(tmp_path):
    password = "pw-" + secrets.token_hex(6)
    env = {
        "DATABASE_URL": f"postgresql://loader:{password}@127.0.0.1:{_closed_port()}/chillflow",
        "CHILLFLOW_DATA_DIR": str(tmp_path / "data"),
    }

    done = _run_cli(["process", "trips", str(tmp_path / "lake"), "--month", "2025-01"], env, 60)

    assert done.returncode == 6
    assert "error: cannot connect to PostgreSQL at 127.0.0.1" in done.stderr
    assert password not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_a_load_through_the_api_prepares_the_database_once(spark, pg, tmp_path, monkeypatch):
    _curate(spark, pg, tmp_path, CLEAN)
    calls = []

    def counted(url):
        calls.append(url)
        return trips_pg.prepare_database(url)

    monkeypatch.setattr(trips_api, "prepare_database", counted)
    monkeypatch.setattr(trips_stage, "prepare_database", counted)
    stats = BatchTripProducer(pg, spark).process_month(month="2025-01")

    assert stats["rows_read"] == len(CLEAN)
    assert calls == [pg.database_url]
