"""Shared fixtures: one local SparkSession, per-test Delta lakes, real data and PostgreSQL."""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from psycopg2 import errors, sql
from pyspark.sql import SparkSession

from chillflow.database_url import DatabaseUrl, parse_database_url
from chillflow.logs import configure_logging
from chillflow.session import build_spark
from chillflow.settings import Settings, TablePaths, load_settings
from chillflow.storage.postgres import open_connection

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Test tiers, one folder each; every test gets its folder's marker.
TIERS = ("unit", "integration", "cluster")

_TEST_SPARK_CONF = {
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.databricks.delta.snapshotPartitions": "1",
    "spark.driver.memory": "2g",
}


# Test JVMs (the session's and every CLI or spark-submit run's) live seconds to minutes on small
# data, where C2's compilations cost more CPU than they repay: C1 alone, unless set otherwise.
os.environ.setdefault("SPARK_SUBMIT_OPTS", "-XX:TieredStopAtLevel=1")


def run_chillflow(
    *args: str, env: Mapping[str, str], timeout: float = 120, **options: Any
) -> subprocess.CompletedProcess:
    """Run ``python -m chillflow ARGS`` from the checkout; output captured, exit code unchecked."""
    return run_command(
        [sys.executable, "-m", "chillflow", *args], env=env, timeout=timeout, **options
    )


def run_command(
    argv: list[str], *, env: Mapping[str, str], timeout: float = 120, **options: Any
) -> subprocess.CompletedProcess:
    """Run ``argv`` from the checkout; output captured, exit code unchecked."""
    return subprocess.run(
        argv,
        cwd=REPO_ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **options,
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, the folder under tests/ it lives in."""
    for item in items:
        for tier in TIERS:
            if REPO_ROOT / "tests" / tier in item.path.parents:
                item.add_marker(tier)


@pytest.fixture(scope="session")
def base_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data_dir = tmp_path_factory.mktemp("chillflow-data")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CHILLFLOW_ENV", "HASH_SALT", "CHILLFLOW_LAKE_DIR", "DATABASE_URL")
    }
    env["CHILLFLOW_DATA_DIR"] = str(data_dir)
    env["SPARK_MASTER"] = "local[2]"
    settings = load_settings(REPO_ROOT / "conf", env)
    configure_logging("WARNING", json=True)
    spark_settings = dataclasses.replace(
        settings.spark,
        conf=MappingProxyType({**settings.spark.conf, **_TEST_SPARK_CONF}),
    )
    return dataclasses.replace(settings, spark=spark_settings)


@pytest.fixture(scope="session")
def spark(base_settings: Settings) -> Iterator[SparkSession]:
    session = build_spark(base_settings.spark, app_name="chillflow-tests")
    yield session
    session.stop()


@pytest.fixture
def settings(base_settings: Settings, tmp_path: Path) -> Settings:
    """Settings whose lake is a fresh directory for this test."""
    lake = tmp_path / "lake"
    return dataclasses.replace(
        base_settings,
        lake_dir=lake,
        tables=TablePaths(
            curated=lake / "curated/trips",
            quarantine=lake / "curated/quarantine",
            dq_metrics=lake / "curated/dq_metrics",
            kpis=lake / "marts/zone_hourly_kpis",
        ),
    )


@pytest.fixture(scope="session")
def tlc_dir() -> Path:
    """The real TLC sample files (``CHILLFLOW_TLC_DIR`` or ``../shared/data/tlc``)."""
    path = Path(os.environ.get("CHILLFLOW_TLC_DIR", REPO_ROOT.parent / "shared/data/tlc"))
    if not (path / "taxi_zone_lookup.csv").is_file():
        pytest.skip(f"real TLC files not found at {path} (set CHILLFLOW_TLC_DIR)")
    return path


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def database_url() -> Iterator[DatabaseUrl]:
    """A database of its own for this test session, with the ChillFlow schema.

    The server is DATABASE_URL's when that is set, else an embedded PostgreSQL started in a
    temporary directory (and stopped at the end). That directory lives outside pytest's
    numbered base directories: a concurrent pytest session may prune those while this one runs.
    """
    import shutil
    import tempfile

    from chillflow.storage.pg_server import cluster_dir, ensure_local_postgres, stop_local_postgres
    from chillflow.storage.postgres import connect, init_schema

    server = os.environ.get("DATABASE_URL")
    server = parse_database_url(server) if server else None
    data_dir = None
    if server is None:
        data_dir = Path(tempfile.mkdtemp(prefix="chillflow-test-pg-")) / "postgres"
        server = ensure_local_postgres(data_dir, port=_free_port())
    url = create_database(server, "chillflow_test")
    with connect(url) as conn:
        init_schema(conn)
    yield url
    drop_database(server, url.dbname)
    if data_dir is not None:
        stop_local_postgres(data_dir)
        for path in {cluster_dir(data_dir).parent, data_dir.parent}:  # relocated as root
            shutil.rmtree(path, ignore_errors=True)


def admin_execute(server: DatabaseUrl, statement: sql.Composable, *args: object) -> None:
    """Execute one statement on ``server`` outside a transaction, with ``args`` as parameters."""
    conn = open_connection(server, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, args or None)
    finally:
        conn.close()


def create_database(server: DatabaseUrl, name_prefix: str) -> DatabaseUrl:
    """Create an empty database named ``name_prefix`` and a random suffix; return its URL."""
    name = f"{name_prefix}_{secrets.token_hex(4)}"
    admin_execute(server, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return dataclasses.replace(server, dbname=name)


def drop_database(server: DatabaseUrl, name: str) -> None:
    """Drop the test database ``name`` on ``server``, ending the sessions still in it.

    ``WITH (FORCE)`` ends the sessions this role may end; an autovacuum worker that happens to
    be in the database is not one of them for a role that is not a superuser, and makes FORCE
    fail with InsufficientPrivilege. A plain DROP DATABASE then asks the worker to exit and
    waits for it.
    """
    drop = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
    try:
        admin_execute(server, drop + sql.SQL(" WITH (FORCE)"))
    except errors.InsufficientPrivilege:
        admin_execute(server, drop)


@pytest.fixture
def pg_settings(settings: Settings, database_url: DatabaseUrl) -> Settings:
    """Settings with a fresh lake for this test and the session's database as DATABASE_URL."""
    return dataclasses.replace(settings, database_url=database_url)
