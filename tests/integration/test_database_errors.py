"""PostgreSQL failures at every point of a run: one ``error:`` line, exit 6, nothing on stdout.

Real processes (``python -m chillflow``) against a private embedded server of this module, so
that a test may create roles and stop the server in the middle of a load.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from chillflow.database_url import DatabaseUrl, parse_database_url
from chillflow.errors import DatabaseError
from chillflow.stages.curate import curate
from chillflow.stages.trips import process_trips
from chillflow.storage.jdbc import append_jdbc, read_complete_trips
from chillflow.storage.pg_server import cluster_dir, ensure_local_postgres, stop_local_postgres
from chillflow.storage.postgres import connect, failure_reason, init_schema
from tests.conftest import REPO_ROOT, admin_execute, create_database
from tests.integration.rawfiles import trip, write_yellow

pytestmark = pytest.mark.postgres

SALT = "db-errors-salt-41"
TRIPS = [trip(datetime(2025, 1, 15, hour, 30)) for hour in range(6)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[Path, DatabaseUrl]]:
    """A private embedded server: its data directory and superuser URL."""
    data_dir = tmp_path_factory.mktemp("private-pg") / "postgres"
    yield data_dir, ensure_local_postgres(data_dir, port=_free_port())
    private = cluster_dir(data_dir).parent
    stop_local_postgres(data_dir)
    if private != data_dir.parent:
        shutil.rmtree(private, ignore_errors=True)


def _new_database(server_url: DatabaseUrl, *, schema: bool = True) -> DatabaseUrl:
    url = create_database(server_url, "errors")
    if schema:
        with connect(url) as conn:
            init_schema(conn)
    return url


def _env(url: DatabaseUrl | None, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CHILLFLOW_FAILPOINT")}
    env.update(CHILLFLOW_DATA_DIR=str(tmp_path / "data"), LOG_LEVEL="INFO", HASH_SALT=SALT)
    env.update(SPARK_MASTER="local[2]", **extra)
    if url is not None:
        env["DATABASE_URL"] = url.url()
    return env


def _cli(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "chillflow", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    process = _cli(args, env)
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _error_line(done: subprocess.CompletedProcess, secret: str) -> str:
    """The one ``error:`` line of a failed command; nothing on stdout, no secret, no trace."""
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert secret not in done.stdout + done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    return line


def test_login_failures_exit_6_with_the_server_named(server, tmp_path):
    _, url = server
    target = url
    wrong = dataclasses.replace(target, password="Wr0ng-" + secrets.token_hex(6))
    closed = dataclasses.replace(target, port=_free_port())

    bad_password = _run(["db", "init", "--json"], _env(wrong, tmp_path))
    no_server = _run(["db", "init", "--json"], _env(closed, tmp_path))

    assert bad_password.returncode == 6
    assert f"{target.host}:{target.port}/{target.dbname}" in _error_line(
        bad_password, wrong.password
    )
    assert no_server.returncode == 6
    assert f"127.0.0.1:{closed.port}/{target.dbname}" in _error_line(no_server, target.password)


def test_a_role_without_create_privilege_exits_6(server, tmp_path):
    _, url = server
    role, password = f"limited_{secrets.token_hex(3)}", "Pw-" + secrets.token_hex(6)
    create_role = sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(role))
    admin_execute(url, create_role, password)
    database = _new_database(url, schema=False)
    limited = dataclasses.replace(database, user=role, password=password)
    target = database

    done = _run(["db", "init", "--json"], _env(limited, tmp_path))

    assert done.returncode == 6, done.stderr[-2000:]
    line = _error_line(done, password)
    assert line.startswith(
        "error: creating or upgrading the schema failed on PostgreSQL at "
        f"127.0.0.1:{target.port}/{target.dbname}: permission denied for database "
        f"{target.dbname} (SQLSTATE 42501)"
    )
    assert f"GRANT CREATE ON DATABASE {target.dbname} TO {role}" in line


def test_a_connection_dropped_inside_a_block_names_the_action_and_the_server(server):
    _, url = server
    target = url

    with (
        pytest.raises(DatabaseError) as dropped,
        connect(url, action="upserting the staged trips") as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT pg_backend_pid()")
        admin_execute(url, sql.SQL("SELECT pg_terminate_backend(%s)"), cur.fetchone()[0])
        cur.execute("SELECT 1")

    message = str(dropped.value)
    assert message.startswith(
        f"upserting the staged trips failed on PostgreSQL at 127.0.0.1:{target.port}/"
        f"{target.dbname}: server closed the connection unexpectedly"
    )
    assert message.endswith("rerun once it is back")
    assert target.password not in message


def test_stdout_holds_only_the_result(server, tmp_path):
    database = _new_database(server[1], schema=False)

    config_error = _run(["db", "init", "--json"], _env(database, tmp_path, LOG_LEVEL="loud"))
    success = _run(["db", "init", "--json"], _env(database, tmp_path))

    assert config_error.returncode == 2
    assert "LOG_LEVEL='LOUD'" in _error_line(config_error, database.password)
    assert success.returncode == 0, success.stderr[-2000:]
    (line,) = success.stdout.splitlines()
    assert json.loads(line)["schema_version"] >= 1
    assert "db.initialised" in success.stderr


def test_spark_readers_and_writers_name_the_server_when_postgres_refuses(spark):
    password = "pw-" + secrets.token_hex(6)
    url = parse_database_url(f"postgresql://loader:{password}@127.0.0.1:{_free_port()}/lake")
    rows = spark.createDataFrame([(1, "a")], "n int, s string")

    with pytest.raises(DatabaseError) as jdbc:
        append_jdbc(rows, url, "stg.t", partitions=1, batch_size=10, rewrite_batched_inserts=True)
    with pytest.raises(DatabaseError) as kpi_read:
        read_complete_trips(spark, url, None, partitions=1, fetch_size=10)
    # A read no storage function reports is still recognised (the CLI's exit 6).
    with pytest.raises(Exception) as read:
        spark.read.jdbc(url.jdbc_url(), "stg.t", properties=url.jdbc_properties()).count()

    port = url.port
    assert str(jdbc.value).startswith(
        f"appending rows to stg.t failed on PostgreSQL at 127.0.0.1:{port}/lake: "
        f"Connection to 127.0.0.1:{port} refused"
    )
    assert str(kpi_read.value).startswith(
        f"reading stg.complete_trip failed on PostgreSQL at 127.0.0.1:{port}/lake: "
        f"Connection to 127.0.0.1:{port} refused"
    )
    assert failure_reason(read.value).startswith(f"Connection to 127.0.0.1:{port} refused")
    for failure in (jdbc.value, kpi_read.value):
        assert password not in str(failure)


def _rows(url: DatabaseUrl) -> dict[str, tuple]:
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM stg.complete_trip ORDER BY trip_key")
        names = [d.name for d in cur.description]
        kept = [i for i, name in enumerate(names) if name not in ("created_at", "updated_at")]
        return {row[0]: tuple(row[i] for i in kept) for row in cur.fetchall()}


def _staging_tables(url: DatabaseUrl) -> list[str]:
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'load%'")
        return [row[0] for row in cur.fetchall()]


def _wait_for(condition: Callable[[], object], process: subprocess.Popen) -> object:
    deadline = time.monotonic() + 180
    while not (found := condition()):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
    return found


def test_server_stopped_mid_load_exits_6_and_a_rerun_converges(spark, settings, server, tmp_path):
    data_dir, server_url = server
    raw = write_yellow(tmp_path / "raw" / "yellow_tripdata_2025-01.parquet", TRIPS)
    curate(spark, settings, raw)
    reference = _new_database(server_url)
    process_trips(spark, dataclasses.replace(settings, hash_salt=SALT), reference)
    database = _new_database(server_url)
    target = database
    args = ["process", "trips", str(settings.tables.curated), "--month", "2025-01", "--json"]

    load = _cli(args, _env(database, tmp_path))
    (staging,) = _wait_for(lambda: _staging_tables(database), load)
    # Hold the staging table so that the load waits on it (JDBC write or upsert), then stop
    # the server under it.
    blocker = psycopg2.connect(**target.dsn_kwargs())
    with blocker.cursor() as cur:
        cur.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier("stg", staging))
        )
    waiting = (
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        " WHERE c.relname = %s AND NOT l.granted"
    )

    def load_waits() -> bool:
        with connect(database) as conn, conn.cursor() as cur:
            cur.execute(waiting, (staging,))
            return cur.fetchone()[0] > 0

    _wait_for(load_waits, load)
    stop_local_postgres(data_dir)
    out, err = load.communicate(timeout=300)
    blocker.close()
    failed = subprocess.CompletedProcess(args, load.returncode, out, err)
    restarted = ensure_local_postgres(data_dir)
    left = _staging_tables(database)
    # The rerun needs no process of its own: it proves the dead run's staging table is dropped.
    rerun = process_trips(spark, dataclasses.replace(settings, hash_salt=SALT), database)

    assert failed.returncode == 6, err[-3000:]
    line = _error_line(failed, target.password)
    assert f"failed on PostgreSQL at 127.0.0.1:{target.port}/{target.dbname}: " in line
    assert restarted == server_url
    assert left == [staging]
    assert rerun["inserted"] == len(TRIPS)
    assert _staging_tables(database) == []
    assert _rows(database) == _rows(reference)
