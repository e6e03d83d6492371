"""stg.complete_trip's partitions on real PostgreSQL: new months attached, the schema converted."""

from __future__ import annotations

import dataclasses
import threading
from datetime import datetime, timezone

import pytest
from psycopg2 import sql

from chillflow.stages.curate import curate
from chillflow.stages.trips import process_trips
from chillflow.storage.postgres import connect, init_schema, open_connection
from chillflow.storage.trips_pg import (
    LOAD_COLUMNS,
    TripSlice,
    create_staging_table,
    drop_staging_table,
    load_staged,
    staging_table,
)
from tests.conftest import create_database, drop_database
from tests.integration.rawfiles import GREEN_2025, as_green, trip, write_rows, write_yellow

pytestmark = pytest.mark.postgres

SALT = "test-salt-9a2e"
JANUARY = TripSlice("yellow", "2025-01")
YELLOW = [trip(datetime(2025, 1, 15, h, 30)) for h in range(5)]
GREEN = [as_green(trip(datetime(2025, 1, 16, h, 10), pu=42)) for h in range(3)]


@pytest.fixture(scope="module")
def partitions_db(database_url):
    url = create_database(database_url, "chillflow_partitions")
    with connect(url) as conn:
        init_schema(conn)
    yield url
    drop_database(database_url, url.dbname)


@pytest.fixture
def db(partitions_db):
    """The module's database without any partition of stg.complete_trip."""
    with connect(partitions_db) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS stg.complete_trip_yellow, stg.complete_trip_green")
    return partitions_db


@pytest.fixture
def pg(settings, db):
    return dataclasses.replace(settings, database_url=db, hash_salt=SALT)


def _row(key: str, fare: float) -> tuple:
    values = dict.fromkeys(LOAD_COLUMNS)
    values.update(
        trip_key=key * 64,
        vehicle_id_h="veh_0",
        service="yellow",
        pickup_ts=datetime(2025, 1, 2),
        pickup_month="2025-01",
        fare_amount=fare,
    )
    return tuple(values[c] for c in LOAD_COLUMNS)


def _stage(url, run_id: str, rows: list[tuple]) -> tuple[str, str]:
    table = staging_table(run_id, datetime(2025, 2, 1))
    with connect(url) as conn, conn.cursor() as cur:
        create_staging_table(conn, table, [JANUARY])
        cur.executemany(
            sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                sql.Identifier(*table),
                sql.SQL(", ").join(map(sql.Identifier, LOAD_COLUMNS)),
                sql.SQL(", ").join(sql.Placeholder() * len(LOAD_COLUMNS)),
            ),
            rows,
        )
    return table


def _query(url, query: str, args=None) -> list[tuple]:
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall()


def _fares(url) -> dict[str, float]:
    rows = _query(url, "SELECT left(trip_key, 1), fare_amount FROM stg.complete_trip")
    return dict(rows)


def _month_partitions(url) -> list[str]:
    return [
        row[0]
        for row in _query(
            url,
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent IN (SELECT inhrelid FROM pg_inherits"
            " WHERE inhparent = 'stg.complete_trip'::regclass) ORDER BY 1",
        )
    ]


def test_a_new_month_staged_twice_by_retried_tasks_is_attached_once(db):
    rows = [_row("a", 1.0), _row("b", 2.0)]
    staged = _stage(db, "retried", rows + rows[:1])

    with connect(db) as conn, conn.cursor() as cur:
        cur.execute("SET client_min_messages = debug1")
        counts = load_staged(conn, staged, [JANUARY], work_mem="8MB")
        cur.execute("RESET client_min_messages")
        drop_staging_table(conn, staged)
        notices = "".join(conn.notices)

    assert (counts.inserted, counts.updated, counts.deleted) == (2, 0, 0)
    assert _fares(db) == {"a": 1.0, "b": 2.0}
    assert _month_partitions(db) == ["complete_trip_yellow_2025_01"]
    assert "is implied by existing constraints" in notices  # ATTACH did not scan the rows
    indexes = _query(
        db,
        "SELECT indexrelid::regclass::text FROM pg_index"
        " WHERE indrelid = 'stg.complete_trip_yellow_2025_01'::regclass ORDER BY 1",
    )
    assert indexes == [
        ("stg.complete_trip_yellow_2025_01_pickup_ts_idx",),
        ("stg.complete_trip_yellow_2025_01_pkey",),
    ]
    checks = _query(
        db,
        "SELECT conname FROM pg_constraint"
        " WHERE conrelid = 'stg.complete_trip_yellow_2025_01'::regclass AND contype = 'c'",
    )
    assert checks == []
    persistence = _query(
        db,
        "SELECT relpersistence, reloptions FROM pg_class"
        " WHERE oid = 'stg.complete_trip_yellow_2025_01'::regclass",
    )
    assert persistence == [("p", None)]


def test_the_second_of_two_concurrent_loads_of_a_new_month_upserts(db):
    first = _stage(db, "first", [_row("a", 1.0), _row("b", 2.0)])
    second = _stage(db, "second", [_row("a", 1.0), _row("b", 2.5), _row("c", 3.0)])
    done = {}
    attaching = open_connection(db)
    try:
        done["first"] = load_staged(attaching, first, [JANUARY], work_mem="8MB")

        def load_second() -> None:
            with connect(db) as conn:
                done["second"] = load_staged(conn, second, [JANUARY], work_mem="8MB")

        waiting = threading.Thread(target=load_second)
        waiting.start()
        waiting.join(3)
        assert waiting.is_alive(), "the second load did not wait for the first"
        attaching.commit()
        waiting.join(60)
    finally:
        attaching.close()

    assert (done["first"].inserted, done["first"].updated, done["first"].deleted) == (2, 0, 0)
    assert (done["second"].inserted, done["second"].updated, done["second"].deleted) == (1, 1, 0)
    assert _fares(db) == {"a": 1.0, "b": 2.5, "c": 3.0}
    assert _query(db, "SELECT count(*), count(DISTINCT trip_key) FROM stg.complete_trip") == [
        (3, 3)
    ]
    assert _month_partitions(db) == ["complete_trip_yellow_2025_01"]


def _curate_both(spark, settings, tmp_path, green=GREEN):
    curate(spark, settings, write_yellow(tmp_path / "raw/yellow_tripdata_2025-01.parquet", YELLOW))
    curate(
        spark,
        settings,
        write_rows(tmp_path / "raw/green_tripdata_2025-01.parquet", green, GREEN_2025),
    )


def test_a_month_of_two_services_attaches_the_new_and_upserts_the_loaded(spark, pg, tmp_path):
    _curate_both(spark, pg, tmp_path)

    first = process_trips(spark, pg, pg.database_url, month="2025-01")
    with connect(pg.database_url) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE stg.complete_trip_green_2025_01")
    _curate_both(spark, pg, tmp_path, GREEN[:2])
    second = process_trips(spark, pg, pg.database_url, month="2025-01")

    assert (first["inserted"], first["updated"], first["deleted"]) == (8, 0, 0)
    assert (second["inserted"], second["unchanged"], second["deleted"]) == (2, 5, 0)
    assert _month_partitions(pg.database_url) == [
        "complete_trip_green_2025_01",
        "complete_trip_yellow_2025_01",
    ]
    assert _query(
        pg.database_url,
        "SELECT service, count(*) FROM stg.complete_trip GROUP BY 1 ORDER BY 1",
    ) == [("green", 2), ("yellow", 5)]


def test_readers_see_nothing_of_a_new_month_before_the_commit(spark, pg, tmp_path):
    curate(spark, pg, write_yellow(tmp_path / "raw/yellow_tripdata_2025-01.parquet", YELLOW))
    seen = []

    def read_from_another_session(conn) -> None:
        reader = open_connection(pg.database_url, autocommit=True)
        try:
            with reader.cursor() as cur:
                cur.execute("SET lock_timeout = '5s'")  # waiting would be a failure too
                cur.execute("SELECT count(*) FROM stg.complete_trip")
                seen.append(cur.fetchone()[0])
        finally:
            reader.close()
        seen.append(_month_partitions(pg.database_url))

    stats = process_trips(spark, pg, pg.database_url, _before_commit=read_from_another_session)

    assert seen == [0, []]
    assert stats["inserted"] == len(YELLOW)
    assert _query(pg.database_url, "SELECT count(*) FROM stg.complete_trip") == [(len(YELLOW),)]


OLD_TABLE = """
CREATE SCHEMA stg;
CREATE TABLE stg.complete_trip (
    trip_key char(64) PRIMARY KEY,
    vehicle_id_h text NOT NULL,
    service text NOT NULL,
    pickup_ts timestamp NOT NULL,
    pickup_month text NOT NULL,
    fare_amount double precision,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX complete_trip_pickup_ts_idx ON stg.complete_trip (pickup_ts);
CREATE INDEX complete_trip_service_month_idx ON stg.complete_trip (service, pickup_month);
"""


def test_db_init_moves_the_trips_of_an_unpartitioned_table_into_partitions(database_url):
    url = create_database(database_url, "chillflow_old")
    created = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    updated = datetime(2024, 6, 1, 8, tzinfo=timezone.utc)
    old = [
        ("a" * 64, "veh_1", "yellow", datetime(2025, 1, 2), "2025-01", 1.0, created, updated),
        ("b" * 64, "veh_2", "yellow", datetime(2025, 2, 3), "2025-02", 2.0, created, created),
        ("c" * 64, "veh_3", "green", datetime(2025, 1, 4), "2025-01", None, updated, updated),
    ]
    query = (
        "SELECT trip_key, vehicle_id_h, service, pickup_ts, pickup_month, fare_amount,"
        " created_at, updated_at, tableoid::regclass::text FROM stg.complete_trip ORDER BY 1"
    )
    try:
        with connect(url) as conn, conn.cursor() as cur:
            cur.execute(OLD_TABLE)
            cur.executemany(
                "INSERT INTO stg.complete_trip VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", old
            )
        with connect(url) as conn:
            conn.autocommit = True
            init_schema(conn)
        moved = _query(url, query)
        _query(url, "DELETE FROM ops.schema_version RETURNING version")
        with connect(url) as conn:
            init_schema(conn)  # the DDL again, over the converted table

        assert _query(url, query) == moved
        assert _query(
            url, "SELECT relkind FROM pg_class WHERE oid = 'stg.complete_trip'::regclass"
        )[0] == ("p",)
        assert [(*row[:8],) for row in moved] == old
        assert [row[8] for row in moved] == [
            "stg.complete_trip_yellow_2025_01",
            "stg.complete_trip_yellow_2025_02",
            "stg.complete_trip_green_2025_01",
        ]
        assert _query(url, "SELECT to_regclass('stg.complete_trip_unpartitioned')") == [(None,)]
    finally:
        drop_database(database_url, url.dbname)
