"""psycopg2 storage and the embedded local PostgreSQL, against a real server.

The server comes from DATABASE_URL when set, else from ensure_local_postgres in a temporary
directory; each module gets a database of its own.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from chillflow.database_url import DatabaseUrl, parse_database_url
from chillflow.errors import ConfigError, DatabaseError, DependencyError
from chillflow.storage import pg_install
from chillflow.storage.pg_server import (
    PASSWORD_FILE,
    cluster_dir,
    ensure_local_postgres,
    stop_local_postgres,
)
from chillflow.storage.postgres import connect, init_schema, seed_zones
from tests.conftest import create_database, drop_database

pytestmark = pytest.mark.postgres

REPO_ROOT = Path(__file__).resolve().parents[2]
TLC_DIR = Path(os.environ.get("CHILLFLOW_TLC_DIR", REPO_ROOT.parent / "shared" / "data" / "tlc"))

EXPECTED_COLUMNS = {
    ("dim", "zone"): ["zone_id", "borough", "zone", "service_zone"],
    ("stg", "complete_trip"): [
        "trip_key",
        "vehicle_id_h",
        "service",
        "vendor_id",
        "pickup_ts",
        "dropoff_ts",
        "pickup_month",
        "passenger_count",
        "pu_zone_id",
        "do_zone_id",
        "payment_type",
        "rate_code",
        "trip_distance",
        "distance_km",
        "duration_min",
        "avg_speed_kmh",
        "fare_amount",
        "tip_amount",
        "tolls_amount",
        "total_amount",
        "congestion_surcharge",
        "airport_fee",
        "source_file",
        "source_row",
        "curated_run_id",
        "created_at",
        "updated_at",
    ],
    ("mart", "zone_hourly_kpis"): [
        "zone_id",
        "hour_ts",
        "trips",
        "avg_fare",
        "avg_tip",
        "avg_speed_kmh",
        "avg_distance_km",
        "avg_duration_min",
        "pct_card",
        "unique_vehicles",
        "total_revenue",
        "outlier_rate",
        "computed_at",
    ],
    ("ops", "job_run"): [
        "id",
        "job",
        "period",
        "run_id",
        "attempt",
        "status",
        "started_at",
        "finished_at",
        "pid",
        "host",
        "stats",
        "error",
        "rows_read",
        "rows_written",
    ],
    ("ops", "schema_version"): ["version", "applied_at"],
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory):
    env_url = os.environ.get("DATABASE_URL")
    if env_url:
        yield parse_database_url(env_url)
        return
    data_dir = tmp_path_factory.mktemp("pg") / "postgres"
    yield ensure_local_postgres(data_dir, port=_free_port())
    _remove_local_postgres(data_dir)


def _remove_local_postgres(data_dir: Path) -> None:
    """Stop the server and delete its cluster, relocated out of a private tree as root."""
    private = cluster_dir(data_dir).parent
    stop_local_postgres(data_dir)
    if private != data_dir.parent:
        shutil.rmtree(private, ignore_errors=True)


@pytest.fixture(scope="module")
def db_url(pg_url: DatabaseUrl):
    url = create_database(pg_url, "chillflow_test")
    yield url
    drop_database(pg_url, url.dbname)


@pytest.fixture
def empty_db(db_url: DatabaseUrl) -> DatabaseUrl:
    with connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS dim, stg, mart, ops CASCADE")
    return db_url


@pytest.fixture
def schema_db(empty_db: DatabaseUrl) -> DatabaseUrl:
    with connect(empty_db) as conn:
        init_schema(conn)
    return empty_db


def _columns(url: DatabaseUrl) -> dict[tuple[str, str], list[str]]:
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns"
            " WHERE table_schema IN ('dim', 'stg', 'mart', 'ops')"
            " ORDER BY table_schema, table_name, ordinal_position"
        )
        columns: dict[tuple[str, str], list[str]] = {}
        for schema, table, column in cur.fetchall():
            columns.setdefault((schema, table), []).append(column)
        return columns


def _zone_versions(url: DatabaseUrl) -> dict[int, str]:
    """Map zone_id to the row's xmin: it changes exactly when the row is rewritten."""
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT zone_id, xmin::text FROM dim.zone")
        return dict(cur.fetchall())


def _zones(url: DatabaseUrl) -> list[tuple]:
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT zone_id, borough, zone, service_zone FROM dim.zone ORDER BY zone_id")
        return cur.fetchall()


# --- connections ------------------------------------------------------------------------------


def test_connect_to_closed_port_fails_fast_without_password() -> None:
    port = _free_port()
    started = time.monotonic()

    with (
        pytest.raises(DatabaseError) as caught,
        connect(parse_database_url(f"postgresql://u:hunter2@127.0.0.1:{port}/db")),
    ):
        pass

    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert f"127.0.0.1:{port}/db" in message
    assert "'u'" in message
    assert "hunter2" not in message
    assert "hunter2" not in repr(caught.value)
    assert caught.value.__context__ is None


def test_connect_with_wrong_password_hides_both_passwords(db_url: DatabaseUrl) -> None:
    target = db_url
    wrong = dataclasses.replace(target, password="Wr0ng-" + secrets.token_hex(8))
    try:
        with connect(wrong):
            pytest.skip("the server does not check passwords (trust authentication)")
    except DatabaseError as exc:
        caught = exc

    shown = str(caught) + repr(caught)
    assert target.user in shown
    assert f"{target.host}:{target.port}" in shown
    assert wrong.password not in shown
    assert target.password is None or target.password not in shown


def test_connect_commits_on_success_and_rolls_back_on_error(db_url: DatabaseUrl) -> None:
    with connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS public.tx_probe")
        cur.execute("CREATE TABLE public.tx_probe (n int)")
        cur.execute("INSERT INTO public.tx_probe VALUES (1)")
    with pytest.raises(ZeroDivisionError), connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO public.tx_probe VALUES (2)")
        _ = 1 / 0

    with connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT n FROM public.tx_probe ORDER BY n")
        assert cur.fetchall() == [(1,)]


def test_connect_rejects_unknown_parameter(db_url: DatabaseUrl) -> None:
    url = dataclasses.replace(db_url, params=(("no_such_option", "1"),))

    with pytest.raises(ConfigError, match="no_such_option") as caught, connect(url):
        pass

    password = db_url.password
    assert password is None or password not in str(caught.value)


# --- schema -----------------------------------------------------------------------------------


def test_init_schema_creates_tables(empty_db: str) -> None:
    with connect(empty_db) as conn:
        init_schema(conn)

    assert _columns(empty_db) == EXPECTED_COLUMNS
    with connect(empty_db) as conn, conn.cursor() as cur:
        cur.execute("SELECT version FROM ops.schema_version")
        assert cur.fetchall() == [(3,)]


def test_init_schema_is_idempotent(schema_db: str) -> None:
    with connect(schema_db) as conn:
        init_schema(conn)
    with connect(schema_db) as conn, conn.cursor() as cur:
        # Forget the version so the DDL itself runs again over existing objects.
        cur.execute("DELETE FROM ops.schema_version")
    with connect(schema_db) as conn:
        init_schema(conn)

    assert _columns(schema_db) == EXPECTED_COLUMNS


def test_init_schema_works_on_autocommit_connection(empty_db: str) -> None:
    with connect(empty_db) as conn:
        conn.autocommit = True
        init_schema(conn)

    assert _columns(empty_db) == EXPECTED_COLUMNS


def test_init_schema_upgrades_table_from_earlier_version(empty_db: str) -> None:
    with connect(empty_db) as conn, conn.cursor() as cur:
        cur.execute("CREATE SCHEMA stg")
        cur.execute("CREATE TABLE stg.complete_trip (trip_key char(64) PRIMARY KEY)")
    with connect(empty_db) as conn:
        init_schema(conn)

    assert (
        _columns(empty_db)[("stg", "complete_trip")] == EXPECTED_COLUMNS[("stg", "complete_trip")]
    )


def test_init_schema_concurrently(empty_db: str) -> None:
    barrier = threading.Barrier(4)
    failures: list[BaseException] = []

    def initialise() -> None:
        try:
            with connect(empty_db) as conn:
                barrier.wait()
                init_schema(conn)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=initialise) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert _columns(empty_db) == EXPECTED_COLUMNS


def test_job_run_status_is_checked(schema_db: str) -> None:
    with (
        pytest.raises(DatabaseError, match=r"job_run_status_check.*\(SQLSTATE 23514\)"),
        connect(schema_db) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(
            "INSERT INTO ops.job_run (job, period, run_id, status)"
            " VALUES ('curate', '2025-01', 'r1', 'exploded')"
        )


# --- zones ------------------------------------------------------------------------------------


def test_seed_zones_from_tlc_file_twice_changes_nothing(schema_db: str) -> None:
    csv_path = TLC_DIR / "taxi_zone_lookup.csv"
    if not csv_path.is_file():
        pytest.skip(f"{csv_path} not found; set CHILLFLOW_TLC_DIR")

    with connect(schema_db) as conn:
        assert seed_zones(conn, csv_path) == 265
    first = _zone_versions(schema_db)
    with connect(schema_db) as conn:
        assert seed_zones(conn, csv_path) == 265

    assert _zone_versions(schema_db) == first
    zones = _zones(schema_db)
    assert zones[0] == (1, "EWR", "Newark Airport", "EWR")
    assert zones[-1] == (265, "Unknown", "NA", "N/A")


def test_seed_zones_small_file(schema_db: str, tmp_path: Path) -> None:
    csv_path = tmp_path / "taxi_zone_lookup.csv"
    csv_path.write_text(
        '"LocationID","Borough","Zone","service_zone"\r\n'
        '1,"EWR","Newark Airport","EWR"\r\n'
        '7,"Queens","Astoria, North","Boro Zone"\r\n'
        '264,"Unknown","",""\r\n'
        "\r\n"
    )

    with connect(schema_db) as conn:
        assert seed_zones(conn, csv_path) == 3
    assert _zones(schema_db) == [
        (1, "EWR", "Newark Airport", "EWR"),
        (7, "Queens", "Astoria, North", "Boro Zone"),
        (264, "Unknown", None, None),
    ]
    before = _zone_versions(schema_db)
    with connect(schema_db) as conn:
        assert seed_zones(conn, csv_path) == 3
    assert _zone_versions(schema_db) == before

    csv_path.write_text(
        "LocationID,Borough,Zone,service_zone\n1,EWR,Newark Airport,Airports\n300,Outside,,\n"
    )
    with connect(schema_db) as conn:
        assert seed_zones(conn, csv_path) == 4
    after = _zone_versions(schema_db)
    assert after[1] != before[1]
    assert (after[7], after[264]) == (before[7], before[264])
    assert _zones(schema_db) == [
        (1, "EWR", "Newark Airport", "Airports"),
        (7, "Queens", "Astoria, North", "Boro Zone"),
        (264, "Unknown", None, None),
        (300, "Outside", None, None),
    ]


def test_seed_zones_rejects_wrong_header(schema_db: str, tmp_path: Path) -> None:
    csv_path = tmp_path / "zones.csv"
    csv_path.write_text("id,borough,zone\n1,EWR,Newark Airport\n")

    with pytest.raises(ConfigError) as caught, connect(schema_db) as conn:
        seed_zones(conn, csv_path)

    assert str(csv_path) in str(caught.value)
    assert "expected LocationID,Borough,Zone,service_zone" in str(caught.value)


def test_seed_zones_rejects_missing_file(schema_db: str, tmp_path: Path) -> None:
    csv_path = tmp_path / "absent.csv"

    with pytest.raises(ConfigError) as caught, connect(schema_db) as conn:
        seed_zones(conn, csv_path)

    assert str(csv_path) in str(caught.value)
    assert "LocationID,Borough,Zone,service_zone" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("x,EWR,Newark Airport,EWR\n", "line 2: LocationID 'x' is not an integer"),
        ("1,EWR,Newark Airport\n", "line 2 has 3 fields"),
        ("1,EWR,Newark Airport,EWR\n1,EWR,Newark,EWR\n", "line 3: LocationID 1 appears twice"),
        # An export in cp1252, or another file given by mistake: not UTF-8 text.
        (
            "1,EWR,Newark Airport \x96 Terminal B,EWR\n",
            "zones.csv \\('utf-8' codec can't decode byte 0x96 in position 58: invalid start "
            "byte\\): expected the TLC taxi_zone_lookup.csv",
        ),
    ],
)
def test_seed_zones_rejects_bad_rows(
    schema_db: str, tmp_path: Path, body: str, reason: str
) -> None:
    csv_path = tmp_path / "zones.csv"
    csv_path.write_bytes(("LocationID,Borough,Zone,service_zone\n" + body).encode("latin-1"))

    with pytest.raises(ConfigError, match=reason), connect(schema_db) as conn:
        seed_zones(conn, csv_path)


# --- embedded server --------------------------------------------------------------------------


def test_ensure_local_postgres_starts_reuses_and_stops(tmp_path: Path) -> None:
    data_dir = tmp_path / "state" / "postgres"
    port = _free_port()
    try:
        url = ensure_local_postgres(data_dir, port=port)
        started = time.monotonic()
        again = ensure_local_postgres(data_dir, port=port)
        reuse_seconds = time.monotonic() - started

        assert again == url
        assert reuse_seconds < 1
        assert (url.user, url.host, url.port, url.dbname) == (
            "chillflow",
            "127.0.0.1",
            port,
            "chillflow",
        )
        assert (cluster_dir(data_dir) / PASSWORD_FILE).stat().st_mode & 0o777 == 0o600
        with connect(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_database(), host(inet_server_addr())")
            assert cur.fetchone() == ("chillflow", "127.0.0.1")
        with pytest.raises(DatabaseError, match=f"already running on port {port}"):
            ensure_local_postgres(data_dir, port=_free_port())
    finally:
        stop_local_postgres(data_dir)

    assert not (data_dir / "postmaster.pid").exists()
    with pytest.raises(DatabaseError, match=f"127.0.0.1:{port}"), connect(url):
        pass
    stop_local_postgres(data_dir)
    try:
        assert ensure_local_postgres(data_dir, port=port) == url
    finally:
        _remove_local_postgres(data_dir)


def test_ensure_local_postgres_reports_taken_port(tmp_path: Path) -> None:
    data_dir = tmp_path / "postgres"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]

        with pytest.raises(DatabaseError, match=f"127.0.0.1:{port}.*another program holds"):
            ensure_local_postgres(data_dir, port=port)

    assert not (data_dir / "PG_VERSION").exists()


def test_ensure_local_postgres_without_binaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_install, "_candidate_bindirs", lambda: [])

    with pytest.raises(DependencyError, match="pip install pgserver.*apt-get install postgresql"):
        ensure_local_postgres(tmp_path / "postgres", port=_free_port())
