"""Fixtures shared by integration modules."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator

import pytest

from chillflow.api.aggregate import BatchAggregator
from chillflow.generator import generate_month
from chillflow.settings import Settings, TablePaths, tlc_file_name
from chillflow.stages.curate import curate
from chillflow.storage.postgres import connect, init_schema, seed_zones
from tests.conftest import create_database, drop_database
from tests.tlc_server import TlcServer

#: Raw rows of the report lake's generated yellow months.
REPORT_MONTHS = {"2024-12": 1500, "2025-01": 1200}


@pytest.fixture(scope="session")
def report_lake(spark, base_settings, database_url, tmp_path_factory) -> Iterator[Settings]:
    """Settings of a lake and database holding what ``chillflow report`` reads.

    Two generated yellow months curated in one run, their hourly KPIs (a full refresh from the
    curated table), a database of its own whose dim.zone names hold markup (``Zone 7 <&>``),
    and a failed run in ops.job_run besides the aggregate's.
    """
    root = tmp_path_factory.mktemp("report")
    url = create_database(database_url, "chillflow_report")
    lookup = root / "taxi_zone_lookup.csv"
    rows = [f"{i},Borough {i % 4},Zone {i} <&>,Yellow Zone" for i in range(1, 266)]
    lookup.write_text("LocationID,Borough,Zone,service_zone\n" + "\n".join(rows) + "\n")
    with connect(url) as conn, conn.cursor() as cur:
        init_schema(conn)
        seed_zones(conn, lookup)
        cur.execute(
            "INSERT INTO ops.job_run (job, period, run_id, status, started_at, finished_at, error)"
            " VALUES ('curate', 'yellow/2024-11', 'failed01', 'failed', '2025-02-01 06:00+00',"
            " '2025-02-01 06:00:04.25+00', 'SchemaError: <no zone ids> in the file')"
        )
    lake = root / "lake"
    tables = ("curated/trips", "curated/quarantine", "curated/dq_metrics", "marts/zone_hourly_kpis")
    settings = dataclasses.replace(
        base_settings,
        lake_dir=lake,
        tables=TablePaths(*(lake / table for table in tables)),
        database_url=url,
    )
    for seed, (month, rows_in) in enumerate(REPORT_MONTHS.items()):
        generate_month(root / "landing" / tlc_file_name("yellow", month), month=month,
                       rows=rows_in, seed=seed)  # fmt: skip
    curate(spark, settings, root / "landing")
    BatchAggregator(settings, spark, url).aggregate_full_refresh(source="curated")
    yield settings
    drop_database(database_url, url.dbname)


@pytest.fixture
def server() -> Iterator[TlcServer]:
    """A TLC-like HTTP server on 127.0.0.1 (``tests/tlc_server.py``), stopped after the test."""
    tlc = TlcServer()
    thread = threading.Thread(target=tlc.serve_forever, daemon=True)
    thread.start()
    yield tlc
    tlc.shutdown()
    tlc.server_close()
